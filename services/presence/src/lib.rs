//! The presence service: the RFC 3903 event state compositor and the
//! RFC 6665 / RFC 3856 subscription records, kept in the state backend and
//! served over gRPC.
//!
//! * [`compositor`] — PUBLISH semantics and the composed state of a presentity.
//! * [`subscriptions`] — subscription (dialog) records of watchers.
//! * [`rules`] — who may watch whom (allow, block, polite-block, confirm).
//! * [`sweeper`] — expiry of publications and subscriptions, exactly once.
//! * [`grpc`] — the `presence.v1` adapter.
//! * [`watch`] — `WatchPresence` streams over one change feed per replica.
//! * [`sources`] — presence set by applications (`SetPresence`).
//! * [`access`] — the scope each RPC requires.
//! * [`ownership`] — edges' leases and the claims of gone edges' dialogs.
//! * [`epoch`] — noticing that the state backend lost its data.
//! * [`parsed`] — parsed publication bodies, so composing parses each once.

pub mod access;
pub mod command;
pub mod compositor;
pub mod epoch;
pub mod grpc;
pub mod ownership;
pub mod parsed;
pub mod rules;
pub mod sources;
pub mod subscriptions;
pub mod sweeper;
pub mod watch;

pub use compositor::{
    Compositor, PresenceConfig, PresenceView, PublishCommand, PublishError, PublishOutcome,
};
pub use subscriptions::{
    SubscribeCommand, SubscribeOutcome, SubscriptionError, SubscriptionRecord, Subscriptions,
};

/// Serves `presence.v1` (with gRPC health and reflection) on `listener` and
/// sweeps expiries every `sweep_interval`, until `shutdown` resolves.
/// `auth` decides who may call which RPC (health and reflection stay open);
/// `tls`, when given, puts the server behind TLS.
pub async fn serve(
    listener: tokio::net::TcpListener,
    backend: std::sync::Arc<dyn store::Backend>,
    config: PresenceConfig,
    sweep_interval: std::time::Duration,
    auth: grpc_auth::ApiAuth,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let monitor = runtime::monitor_backend(backend.clone());
    let counts = store::metrics::watch_scheduled(
        backend.clone(),
        &[
            (store::Schedule::Publications, "publication"),
            (store::Schedule::Subscriptions, "subscription"),
        ],
    );
    let (service, sweeper) = start(backend, config, sweep_interval);
    let result = serve_service(listener, service, auth, tls, shutdown).await;
    sweeper.abort();
    monitor.abort();
    counts.abort();
    result
}

/// The presence service and its sweeper, without a server: the service
/// answers calls made in the same process (a single-process node's edge)
/// and can be served over gRPC as well ([`serve_service`]).
pub fn start(
    backend: std::sync::Arc<dyn store::Backend>,
    config: PresenceConfig,
    sweep_interval: std::time::Duration,
) -> (
    std::sync::Arc<grpc::PresenceService>,
    tokio::task::JoinHandle<()>,
) {
    let compositor = Compositor::new(backend, config);
    let subscriptions = Subscriptions::new(compositor.clone());
    store::metrics::register_expiry("publication", sweeper::publication_stats);
    store::metrics::register_expiry("subscription", sweeper::subscription_stats);
    let sweeper = tokio::spawn(sweeper::run(
        compositor.clone(),
        subscriptions.clone(),
        sweep_interval,
    ));
    let service = std::sync::Arc::new(grpc::PresenceService::new(compositor, subscriptions));
    (service, sweeper)
}

/// Serves a started presence service over gRPC (with health and
/// reflection) until `shutdown` resolves.
pub async fn serve_service(
    listener: tokio::net::TcpListener,
    service: std::sync::Arc<grpc::PresenceService>,
    auth: grpc_auth::ApiAuth,
    tls: Option<tonic::transport::ServerTlsConfig>,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let (health_reporter, health) = tonic_health::server::health_reporter();
    let health_follower = runtime::follow_health(health_reporter, &[runtime::PRESENCE_SERVICE]);
    let (reflection_v1, reflection_v1alpha) =
        runtime::reflection_services(&[runtime::PRESENCE_SERVICE])?;
    let served = runtime::grpc_server(tls)?
        // WatchPresence streams live for hours: pings keep idle connections
        // open through load balancers and let a vanished client's stream
        // end within a minute.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(20)))
        .layer(runtime::GrpcMetricsLayer)
        .layer(auth.layer())
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(rpc::presence::v1::presence_server::PresenceServer::from_arc(service))
        .serve_with_incoming_shutdown(runtime::grpc_incoming(listener), shutdown)
        .await
        .map_err(|e| anyhow::anyhow!("presence gRPC server: {e}"));
    health_follower.abort();
    served
}
