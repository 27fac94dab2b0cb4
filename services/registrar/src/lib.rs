//! The registrar service: RFC 3261 §10.3 bindings of addresses-of-record to
//! contacts, kept in the state backend and served over gRPC.
//!
//! * [`bindings`] — the registrar's rules as plain Rust over a [`store::Backend`].
//! * [`grpc`] — the `registrar.v1` adapter.
//! * [`sweeper`] — removes expired bindings on time.

pub mod bindings;
pub mod command;
pub mod grpc;
pub mod sweeper;

pub use bindings::{
    Binding, ContactUpdate, RegisterCommand, RegisterError, Registrar, RegistrarConfig,
};

/// Serves `registrar.v1` (with gRPC health and reflection) on `listener` and
/// sweeps expired bindings every `sweep_interval`, until `shutdown` resolves.
/// `auth` decides who may call which RPC (health and reflection stay open);
/// `tls`, when given, puts the server behind TLS.
pub async fn serve(
    listener: tokio::net::TcpListener,
    backend: std::sync::Arc<dyn store::Backend>,
    config: RegistrarConfig,
    sweep_interval: std::time::Duration,
    auth: grpc_auth::ApiAuth,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let monitor = runtime::monitor_backend(backend.clone());
    let counts =
        store::metrics::watch_scheduled(backend.clone(), &[(store::Schedule::Bindings, "binding")]);
    let (service, sweeper) = start(backend, config, sweep_interval);
    let result = serve_service(listener, service, auth, tls, shutdown).await;
    sweeper.abort();
    monitor.abort();
    counts.abort();
    result
}

/// The registrar service and its sweeper, without a server: the service
/// answers calls made in the same process (a single-process node's edge)
/// and can be served over gRPC as well ([`serve_service`]).
pub fn start(
    backend: std::sync::Arc<dyn store::Backend>,
    config: RegistrarConfig,
    sweep_interval: std::time::Duration,
) -> (
    std::sync::Arc<grpc::RegistrarService>,
    tokio::task::JoinHandle<()>,
) {
    let registrar = Registrar::new(backend.clone(), config);
    store::metrics::register_expiry("binding", sweeper::stats);
    let sweeper = tokio::spawn(sweeper::run(registrar.clone(), backend, sweep_interval));
    (
        std::sync::Arc::new(grpc::RegistrarService::new(registrar)),
        sweeper,
    )
}

/// Serves a started registrar service over gRPC (with health and
/// reflection) until `shutdown` resolves.
pub async fn serve_service(
    listener: tokio::net::TcpListener,
    service: std::sync::Arc<grpc::RegistrarService>,
    auth: grpc_auth::ApiAuth,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    let health_follower = runtime::follow_health(health_reporter, &[runtime::REGISTRAR_SERVICE]);
    let (reflection_v1, reflection_v1alpha) =
        runtime::reflection_services(&[runtime::REGISTRAR_SERVICE])?;
    let served = runtime::grpc_server(tls)?
        .layer(runtime::GrpcMetricsLayer)
        .layer(auth.layer())
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(rpc::registrar::v1::registrar_server::RegistrarServer::from_arc(service))
        .serve_with_incoming_shutdown(runtime::grpc_incoming(listener), shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("registrar gRPC server: {e}"));
    health_follower.abort();
    served
}
