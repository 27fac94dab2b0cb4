//! `registrar`: the registrar service as its own process (cluster mode).

use std::net::SocketAddr;
use std::time::Duration;

use crate::RegistrarConfig;
use anyhow::Context;
use clap::Parser;

/// Registrar service of the presence cluster.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    /// gRPC listen address.
    #[arg(long, env = "REGISTRAR_LISTEN", default_value = "127.0.0.1:50052")]
    listen: SocketAddr,
    /// Redis URL (`redis://host:port`); without it state is kept in memory
    /// and is not shared with any other process.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Shortest registration interval accepted (seconds).
    #[arg(long, env = "REGISTRAR_MIN_EXPIRES", default_value_t = 60)]
    min_expires: u32,
    /// Longest registration interval granted (seconds).
    #[arg(long, env = "REGISTRAR_MAX_EXPIRES", default_value_t = 7200)]
    max_expires: u32,
    /// Interval granted when the request names none (seconds).
    #[arg(long, env = "REGISTRAR_DEFAULT_EXPIRES", default_value_t = 3600)]
    default_expires: u32,
    /// Registration-driven presence: an address-of-record with live
    /// registrations and no publication is shown `open`, and `closed` when
    /// its last registration goes.
    #[arg(long, env = "REGISTRATION_PRESENCE", default_value_t = true, action = clap::ArgAction::Set)]
    registration_presence: bool,
    /// How often expired bindings are swept (milliseconds).
    #[arg(long, env = "REGISTRAR_SWEEP_MS", default_value_t = 1000)]
    sweep_ms: u64,
    /// Who may call the gRPC API (bearer tokens with presence:* scopes).
    #[command(flatten)]
    auth: grpc_auth::ApiAuthArgs,
    #[command(flatten)]
    redis_tls: runtime::RedisTlsArgs,
    #[command(flatten)]
    grpc_tls: runtime::GrpcServerTlsArgs,
    #[command(flatten)]
    metrics: runtime::MetricsArgs,
}

/// Runs the process until it is asked to stop (SIGINT, SIGTERM).
pub async fn run(args: Args) -> anyhow::Result<()> {
    runtime::check_expires_range(
        "--min-expires",
        args.min_expires,
        "--max-expires",
        args.max_expires,
    )?;
    let _metrics = args.metrics.serve().await?;
    let backend = runtime::backend(args.redis_url.as_deref(), &args.redis_tls).await?;
    let config = RegistrarConfig {
        min_expires: args.min_expires,
        max_expires: args.max_expires,
        default_expires: args.default_expires,
        registration_presence: args.registration_presence,
    };
    let auth = args
        .auth
        .api_auth("registrar", crate::grpc::access_policy())
        .await
        .context("setting up gRPC authentication")?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    tracing::info!(listen = %args.listen, "registrar serving gRPC");
    crate::serve(
        listener,
        backend,
        config,
        Duration::from_millis(args.sweep_ms),
        auth,
        args.grpc_tls.config()?,
        runtime::shutdown_signal(),
    )
    .await
}
