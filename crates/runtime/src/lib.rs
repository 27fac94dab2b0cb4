//! Process plumbing shared by the binaries: logging set-up, choosing the
//! state backend from configuration, the standard gRPC extras (health and
//! reflection, so `grpcurl` works out of the box), shutdown signals and the
//! allocator.

use std::sync::Arc;

use anyhow::Context;
use store::Backend;

/// Every binary linking this crate allocates with mimalloc: a request
/// allocates and frees many small blocks on whichever worker thread runs
/// it, where glibc's malloc spent a fifth of the CPU in arena locks and
/// free-list consolidation (see BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Logging to stderr, filtered by `RUST_LOG` (default `info`); JSON lines when
/// `LOG_FORMAT=json` (what log collectors in Kubernetes want).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = std::env::var("LOG_FORMAT")
        .map(|v| v == "json")
        .unwrap_or(false);
    // A second initialisation (tests running several services in one
    // process) is harmless: the first subscriber stays.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// The state backend: Redis at `redis_url` (`redis://host:port` for one
/// server, `redis+cluster://host:port,host:port` for a Redis Cluster), or a
/// fresh in-memory backend when no URL is given (single-process mode only:
/// nothing is shared).
pub async fn backend(redis_url: Option<&str>) -> anyhow::Result<Arc<dyn Backend>> {
    match redis_url {
        Some(url) => {
            let backend = store::open(url)
                .await
                .with_context(|| format!("connecting to Redis at {url}"))?;
            let kind = if url.starts_with("redis+cluster://") {
                "Redis Cluster"
            } else if url.starts_with("memory") {
                "in-memory (single process)"
            } else {
                "Redis"
            };
            tracing::info!(%url, kind, "state backend");
            Ok(backend)
        }
        None => {
            tracing::info!("state backend: in-memory (single process)");
            Ok(Arc::new(store::memory::MemoryBackend::new()))
        }
    }
}

/// Cancelled streams a gRPC connection may have pending before the server
/// closes it (h2's rapid-reset protection; its default is 20).
const MAX_PENDING_RESETS: usize = 1024;

/// A gRPC server builder with the settings every service shares. Streams a
/// client cancels (a call past its deadline under load) are reset, and h2's
/// default tolerance of 20 such resets in flight closes the whole
/// connection, failing every other call on it; the callers are the
/// cluster's own edges and applications with tokens, so far more are
/// allowed before it counts as an attack.
pub fn grpc_server() -> tonic::transport::Server {
    tonic::transport::Server::builder()
        .http2_max_pending_accept_reset_streams(Some(MAX_PENDING_RESETS))
}

/// The connections a gRPC server accepts on `listener`, with Nagle's
/// algorithm off: a reply written in several frames (headers, message,
/// trailers) must not wait for the peer's delayed ACK (tens of
/// milliseconds on loopback).
pub fn grpc_incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}

/// gRPC server reflection for the cluster's services.
pub fn reflection_service() -> anyhow::Result<
    tonic_reflection::server::v1::ServerReflectionServer<
        impl tonic_reflection::server::v1::ServerReflection,
    >,
> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(rpc::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("building gRPC reflection")
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
}
