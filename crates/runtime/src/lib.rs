//! Process plumbing shared by the binaries: logging set-up, choosing the
//! state backend from configuration, the standard gRPC extras (health and
//! reflection, so `grpcurl` works out of the box), shutdown signals and the
//! allocator.

mod grpc_metrics;
mod service;

use std::sync::Arc;

use anyhow::Context;

pub use grpc_metrics::GrpcMetricsLayer;
pub use service::{ServiceParts, ServiceStart};
use store::Backend;

/// Every binary linking this crate allocates with mimalloc: a request
/// allocates and frees many small blocks on whichever worker thread runs
/// it, where glibc's malloc spent a fifth of the CPU in arena locks and
/// free-list consolidation (see BENCHMARKS.md). The `system-allocator`
/// feature leaves the system's malloc in place, for heap profilers that
/// intercept it (`bench/heap.sh`).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logging to stderr, filtered by `RUST_LOG` (default `info`); JSON lines when
/// `LOG_FORMAT=json` (what log collectors in Kubernetes want), with the
/// current span's fields (a request's `trace_id` among them when traces
/// are exported); colours only when stderr is a terminal. Spans go to an
/// OTLP collector when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (see
/// `telemetry::traces`), named `service_name` unless `OTEL_SERVICE_NAME`
/// says otherwise. Keep the returned guard for the life of the process: it
/// flushes the last spans when dropped.
pub fn init_tracing(service_name: &str) -> telemetry::traces::TraceGuard {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;

    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("LOG_FORMAT")
        .map(|v| v == "json")
        .unwrap_or(false);
    // Colour only for a person at a terminal: escape codes in a file or a
    // log collector's pipe are noise.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    let fmt = if json {
        fmt.json()
            .with_current_span(true)
            .with_span_list(false)
            .with_filter(filter)
            .boxed()
    } else {
        fmt.with_filter(filter).boxed()
    };
    let (otlp, guard) = match telemetry::traces::otlp_layer(service_name) {
        Ok(exporting) => exporting,
        Err(e) => {
            eprintln!("traces are not exported: {e}");
            (None, telemetry::traces::TraceGuard::default())
        }
    };
    // A second initialisation (tests running several services in one
    // process) is harmless: the first subscriber stays.
    // `RUST_LOG` filters the log lines only: spans are exported at info
    // and above whatever the log level (a quiet log must not lose traces).
    let otlp = otlp.map(|layer| layer.with_filter(tracing_subscriber::filter::LevelFilter::INFO));
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otlp)
        .try_init();
    if telemetry::traces::enabled() {
        tracing::info!(service_name, "exporting traces over OTLP");
    }
    guard
}

/// The state backend: Redis at `redis_url` (`redis://host:port` for one
/// server, `redis+cluster://host:port,host:port` for a Redis Cluster), or a
/// fresh in-memory backend when no URL is given (single-process mode only:
/// nothing is shared).
///
/// While Redis cannot be reached the process waits, retrying with backoff
/// and saying why, instead of exiting: in a rolling start the services
/// often come up before Redis does, and a crash loop only delays them. A
/// URL that can never work (a syntax error) fails at once.
pub async fn backend(
    redis_url: Option<&str>,
    tls: &RedisTlsArgs,
) -> anyhow::Result<Arc<dyn Backend>> {
    match redis_url {
        Some(url) => {
            let tls = tls.files()?;
            let shown = redact_url(url);
            let url = url.to_owned();
            let kind =
                if url.starts_with("redis+cluster://") || url.starts_with("rediss+cluster://") {
                    "Redis Cluster"
                } else if url.starts_with("memory") {
                    "in-memory (single process)"
                } else {
                    "Redis"
                };
            let mut backoff = Backoff::new();
            let backend = loop {
                match store::open_with_tls(&url, tls.clone()).await {
                    Ok(backend) => break backend,
                    Err(store::StoreError::Unavailable(reason)) => {
                        let wait = backoff.next_wait();
                        telemetry::health().fail("backend", reason.clone());
                        tracing::warn!(
                            url = %shown,
                            %reason,
                            retry_in_ms = wait.as_millis() as u64,
                            "waiting for the state backend"
                        );
                        tokio::time::sleep(wait).await;
                    }
                    Err(e) => {
                        return Err(e).with_context(|| format!("connecting to Redis at {shown}"))
                    }
                }
            };
            telemetry::health().pass("backend");
            tracing::info!(url = %shown, kind, "state backend");
            Ok(backend)
        }
        None => {
            tracing::info!("state backend: in-memory (single process)");
            Ok(Arc::new(store::memory::MemoryBackend::new()))
        }
    }
}

/// Exponential backoff for waiting on a dependency at start: 250 ms,
/// doubling, at most 10 s between attempts.
pub struct Backoff {
    next: std::time::Duration,
}

impl Backoff {
    const FIRST: std::time::Duration = std::time::Duration::from_millis(250);
    const MAX: std::time::Duration = std::time::Duration::from_secs(10);

    pub fn new() -> Self {
        Backoff { next: Self::FIRST }
    }

    /// The wait before the next attempt.
    pub fn next_wait(&mut self) -> std::time::Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        wait
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

/// How often [`monitor_backend`] pings the backend.
const BACKEND_PING_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
/// How long a ping may take before the backend counts as unreachable.
const BACKEND_PING_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// Pings the backend every 2 s for as long as the task runs and keeps the
/// `backend` readiness condition true to the answer: a replica whose Redis
/// is gone fails every call, so it must stop looking healthy. Transitions
/// are logged once each, not every ping.
pub fn monitor_backend(backend: Arc<dyn Backend>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reachable = true;
        loop {
            let result = tokio::time::timeout(BACKEND_PING_TIMEOUT, backend.ping()).await;
            let failure = match result {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!(
                    "no answer to a ping within {} ms",
                    BACKEND_PING_TIMEOUT.as_millis()
                )),
            };
            match failure {
                None => {
                    if !reachable {
                        tracing::info!("the state backend answers again: ready");
                    }
                    reachable = true;
                    telemetry::health().pass("backend");
                }
                Some(reason) => {
                    if reachable {
                        tracing::warn!(%reason, "the state backend is unreachable: not ready");
                    }
                    reachable = false;
                    telemetry::health().fail("backend", reason);
                }
            }
            tokio::time::sleep(BACKEND_PING_EVERY).await;
        }
    })
}

/// Keeps `reporter`'s statuses for `services` (and the server as a whole)
/// equal to the process's readiness until the task is aborted.
pub fn follow_health(
    reporter: tonic_health::server::HealthReporter,
    services: &'static [&'static str],
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut ready = telemetry::health().subscribe();
        loop {
            let status = if *ready.borrow_and_update() {
                tonic_health::ServingStatus::Serving
            } else {
                tonic_health::ServingStatus::NotServing
            };
            reporter.set_service_status("", status).await;
            for service in services {
                reporter.set_service_status(*service, status).await;
            }
            if ready.changed().await.is_err() {
                return;
            }
        }
    })
}

/// Serves metrics and health on `listen` when given (`--metrics-listen`).
pub async fn metrics_endpoint(
    listen: Option<std::net::SocketAddr>,
) -> anyhow::Result<Option<telemetry::http::MetricsServer>> {
    match listen {
        Some(addr) => Ok(Some(telemetry::http::serve(addr).await?)),
        None => Ok(None),
    }
}

/// Cancelled streams a gRPC connection may have pending before the server
/// closes it (h2's rapid-reset protection; its default is 20).
const MAX_PENDING_RESETS: usize = 1024;

/// A gRPC server builder with the settings every service shares, over TLS
/// when `tls` is given. Streams a
/// client cancels (a call past its deadline under load) are reset, and h2's
/// default tolerance of 20 such resets in flight closes the whole
/// connection, failing every other call on it; the callers are the
/// cluster's own edges and applications with tokens, so far more are
/// allowed before it counts as an attack.
///
/// Every call's duration and status is recorded
/// (`grpc_server_duration_seconds`): add [`GrpcMetricsLayer`] with
/// `.layer(runtime::GrpcMetricsLayer)` before the other layers.
pub fn grpc_server(
    tls: Option<tonic::transport::ServerTlsConfig>,
) -> anyhow::Result<tonic::transport::Server> {
    let server = tonic::transport::Server::builder()
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS));
    match tls {
        Some(tls) => server.tls_config(tls).context("gRPC server TLS"),
        None => Ok(server),
    }
}

/// The connections a gRPC server accepts on `listener`, with Nagle's
/// algorithm off: a reply written in several frames (headers, message,
/// trailers) must not wait for the peer's delayed ACK (tens of
/// milliseconds on loopback).
pub fn grpc_incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// The gRPC services' full names, as health and reflection know them.
pub const PRESENCE_SERVICE: &str = "presence.v1.Presence";
pub const REGISTRAR_SERVICE: &str = "registrar.v1.Registrar";
const HEALTH_SERVICE: &str = "grpc.health.v1.Health";
const REFLECTION_V1: &str = "grpc.reflection.v1.ServerReflection";
const REFLECTION_V1ALPHA: &str = "grpc.reflection.v1alpha.ServerReflection";

/// gRPC server reflection listing exactly `services` (plus health and
/// reflection itself), in both protocol versions: `grpcurl` speaks v1,
/// many tools still speak only v1alpha (grpcio-reflection, older grpcurl).
pub fn reflection_services(
    services: &[&str],
) -> anyhow::Result<(
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
    tonic_reflection::server::v1alpha::ServerReflectionServer<
        impl tonic_reflection::server::v1alpha::ServerReflection,
    >,
)> {
    let builder = || {
        let mut builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(rpc::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
            .include_reflection_service(false);
        for name in
            services
                .iter()
                .copied()
                .chain([HEALTH_SERVICE, REFLECTION_V1, REFLECTION_V1ALPHA])
        {
            builder = builder.with_service_name(name);
        }
        builder
    };
    let v1 = builder()
        .build_v1()
        .context("building gRPC reflection v1")?;
    let v1alpha = builder()
        .build_v1alpha()
        .context("building gRPC reflection v1alpha")?;
    Ok((v1, v1alpha))
}

/// Resolves when the process is asked to stop (SIGINT or SIGTERM).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
    telemetry::health().start_draining();
}

/// `--metrics-listen`: where a process serves its metrics and health.
#[derive(clap::Args, Debug, Clone)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics (`/metrics`) and health probes (`/livez`,
    /// `/readyz`) over HTTP on this address, e.g. `0.0.0.0:9090`. Off when
    /// not given.
    #[arg(long, env = "METRICS_LISTEN")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl MetricsArgs {
    /// Starts the endpoint when configured; keep the result alive for as
    /// long as it should serve.
    pub async fn serve(&self) -> anyhow::Result<Option<telemetry::http::MetricsServer>> {
        metrics_endpoint(self.metrics_listen).await
    }
}

/// Refuses an expiry range that cannot work (`min` above `max`, or a
/// zero `max`), naming the flags.
pub fn check_expires_range(
    min_flag: &str,
    min: u32,
    max_flag: &str,
    max: u32,
) -> anyhow::Result<()> {
    if max == 0 {
        anyhow::bail!("{max_flag} must be at least 1 second");
    }
    if min > max {
        anyhow::bail!("{min_flag} ({min}) is greater than {max_flag} ({max})");
    }
    Ok(())
}

/// How stored records are written, in the processes that write them
/// (presence, registrar, presence-node).
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RecordEncoding {
    /// The compact binary encoding (`contract::codec`).
    #[default]
    Binary,
    /// JSON, which a release before the binary encoding can read.
    Json,
}

/// `--record-encoding`: binary records, or JSON while a cluster is being
/// upgraded from a release that reads only JSON (both are always read).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RecordEncodingArgs {
    /// How records are written to the state backend: `binary` (the
    /// default) or `json`. Both are read. Write `json` while upgrading a
    /// cluster from a release that reads only JSON (old and new replicas
    /// side by side, or a rollback possible), then switch to `binary`.
    #[arg(long, env = "RECORD_ENCODING", value_enum, default_value_t = RecordEncoding::Binary)]
    pub record_encoding: RecordEncoding,
}

impl RecordEncodingArgs {
    /// Applies the choice to every record this process writes.
    pub fn apply(&self) {
        contract::codec::set_write_json(self.record_encoding == RecordEncoding::Json);
        if self.record_encoding == RecordEncoding::Json {
            tracing::info!("writing stored records as JSON (--record-encoding json)");
        }
    }
}

/// `--redis-ca-file`, `--redis-cert-file`, `--redis-key-file`: the
/// certificates of a TLS connection to Redis (`rediss://`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RedisTlsArgs {
    /// CA certificates (PEM) to trust for `rediss://` instead of the
    /// system's roots (a managed Redis with a private CA).
    #[arg(long, env = "REDIS_CA_FILE")]
    pub redis_ca_file: Option<std::path::PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS with Redis; needs
    /// --redis-key-file.
    #[arg(long, env = "REDIS_CERT_FILE", requires = "redis_key_file")]
    pub redis_cert_file: Option<std::path::PathBuf>,
    /// Private key (PEM) of --redis-cert-file.
    #[arg(long, env = "REDIS_KEY_FILE", requires = "redis_cert_file")]
    pub redis_key_file: Option<std::path::PathBuf>,
}

impl RedisTlsArgs {
    /// The certificates, read from their files.
    pub fn files(&self) -> anyhow::Result<store::redis::TlsFiles> {
        let read = |path: &std::path::Path| {
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))
        };
        let ca = self.redis_ca_file.as_deref().map(read).transpose()?;
        let client = match (&self.redis_cert_file, &self.redis_key_file) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            (None, None) => None,
            _ => anyhow::bail!("--redis-cert-file and --redis-key-file go together"),
        };
        Ok(store::redis::TlsFiles { ca, client })
    }
}

/// `--grpc-tls-cert-file`, `--grpc-tls-key-file`, `--grpc-client-ca-file`:
/// TLS on a gRPC server, optionally requiring client certificates.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GrpcServerTlsArgs {
    /// Serve gRPC over TLS with this certificate chain (PEM); plaintext
    /// when not given.
    #[arg(long, env = "GRPC_TLS_CERT_FILE", requires = "grpc_tls_key_file")]
    pub grpc_tls_cert_file: Option<std::path::PathBuf>,
    /// Private key (PEM) of --grpc-tls-cert-file.
    #[arg(long, env = "GRPC_TLS_KEY_FILE", requires = "grpc_tls_cert_file")]
    pub grpc_tls_key_file: Option<std::path::PathBuf>,
    /// Require client certificates issued by these CAs (PEM): mutual TLS,
    /// so only the cluster's edges (and holders of its certificates)
    /// connect at all.
    #[arg(long, env = "GRPC_CLIENT_CA_FILE", requires = "grpc_tls_cert_file")]
    pub grpc_client_ca_file: Option<std::path::PathBuf>,
}

impl GrpcServerTlsArgs {
    /// The server's TLS settings, `None` for plaintext.
    pub fn config(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        let (Some(cert), Some(key)) = (&self.grpc_tls_cert_file, &self.grpc_tls_key_file) else {
            return Ok(None);
        };
        let identity = tonic::transport::Identity::from_pem(read_pem(cert)?, read_pem(key)?);
        let mut config = tonic::transport::ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.grpc_client_ca_file {
            config = config.client_ca_root(tonic::transport::Certificate::from_pem(read_pem(ca)?));
        }
        Ok(Some(config))
    }
}

/// `--grpc-ca-file`, `--grpc-cert-file`, `--grpc-key-file`: how a client
/// (an edge) checks the services' TLS certificates for `https://` service
/// URLs, and the certificate it presents for mutual TLS.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct GrpcClientTlsArgs {
    /// CA certificates (PEM) to trust for `https://` service URLs instead
    /// of the system's roots.
    #[arg(long, env = "GRPC_CA_FILE")]
    pub grpc_ca_file: Option<std::path::PathBuf>,
    /// Client certificate chain (PEM) presented to the services (mutual
    /// TLS); needs --grpc-key-file.
    #[arg(long, env = "GRPC_CERT_FILE", requires = "grpc_key_file")]
    pub grpc_cert_file: Option<std::path::PathBuf>,
    /// Private key (PEM) of --grpc-cert-file.
    #[arg(long, env = "GRPC_KEY_FILE", requires = "grpc_cert_file")]
    pub grpc_key_file: Option<std::path::PathBuf>,
}

impl GrpcClientTlsArgs {
    /// The client's TLS settings (used for `https://` URLs only).
    pub fn config(&self) -> anyhow::Result<tonic::transport::ClientTlsConfig> {
        let mut config = tonic::transport::ClientTlsConfig::new();
        config = match &self.grpc_ca_file {
            Some(ca) => {
                config.ca_certificate(tonic::transport::Certificate::from_pem(read_pem(ca)?))
            }
            None => config.with_native_roots(),
        };
        if let (Some(cert), Some(key)) = (&self.grpc_cert_file, &self.grpc_key_file) {
            config = config.identity(tonic::transport::Identity::from_pem(
                read_pem(cert)?,
                read_pem(key)?,
            ));
        }
        Ok(config)
    }
}

fn read_pem(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// `url` with any password replaced by `***`, for logs and errors.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(user, _)| user);
            let shown = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                // A lone userinfo is the password for Redis (`redis://secret@host`).
                "***".to_owned()
            };
            format!("{scheme}://{shown}@{hosts}{tail}")
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(
            redact_url("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            redact_url("redis://:s3cret@redis:6379/0"),
            "redis://:***@redis:6379/0"
        );
        assert_eq!(
            redact_url("rediss://app:s3cret@redis.example.com:6380"),
            "rediss://app:***@redis.example.com:6380"
        );
        assert_eq!(
            redact_url("redis+cluster://:pw@a:7000,b:7001"),
            "redis+cluster://:***@a:7000,b:7001"
        );
        assert_eq!(redact_url("redis://pw@host"), "redis://***@host");
    }
}
