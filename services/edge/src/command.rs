//! `edge`: one stateless SIP edge of a presence cluster. Needs the presence
//! and registrar services (gRPC) and the cluster's Redis (channels).

use crate::cli::{AuthArgs, SipArgs, TransportArgs};
use anyhow::Context;
use clap::Parser;

/// SIP edge node of the presence cluster.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    #[command(flatten)]
    sip: SipArgs,
    #[command(flatten)]
    auth: AuthArgs,
    #[command(flatten)]
    transport: TransportArgs,
    /// The token this edge presents to the services.
    #[command(flatten)]
    service_token: grpc_auth::ServiceTokenArgs,
    /// Presence service gRPC URLs, comma-separated: one per replica, or a
    /// name resolving to every replica (a headless service); names are
    /// resolved again every 2 s and calls are balanced over the replicas.
    #[arg(long, env = "PRESENCE_URL", default_value = "http://127.0.0.1:50051")]
    presence_url: String,
    /// Registrar service gRPC URLs (as for the presence service).
    #[arg(long, env = "REGISTRAR_URL", default_value = "http://127.0.0.1:50052")]
    registrar_url: String,
    /// Redis URL of the cluster, where presentity channels are heard.
    #[arg(long, env = "REDIS_URL")]
    redis_url: String,
    #[command(flatten)]
    redis_tls: runtime::RedisTlsArgs,
    /// How `https://` service URLs are checked, and the client
    /// certificate presented to the services.
    #[command(flatten)]
    grpc_tls: runtime::GrpcClientTlsArgs,
    #[command(flatten)]
    metrics: runtime::MetricsArgs,
}

/// Runs the process until it is asked to stop (SIGINT, SIGTERM).
pub async fn run(args: Args) -> anyhow::Result<()> {
    // Served first, so that probes see why a starting edge is not ready
    // (waiting for Redis or the identity provider) and that readiness
    // fails while it drains.
    let _metrics = args.metrics.serve().await?;
    let feed = runtime::backend(Some(&args.redis_url), &args.redis_tls).await?;
    let monitor = runtime::monitor_backend(feed.clone());
    let authn = args.auth.authenticator(None).await?;
    let mut config = args
        .sip
        .to_config(args.presence_url.clone(), args.registrar_url.clone());
    args.transport.apply(&mut config)?;
    config.services_tls = Some(args.grpc_tls.config()?);
    config.service_credentials = args
        .service_token
        .credentials()
        .await
        .context("obtaining the service token")?;
    let running = crate::start(config, authn, feed).await?;
    runtime::shutdown_signal().await;
    running.drain().await;
    monitor.abort();
    Ok(())
}
