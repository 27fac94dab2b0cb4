//! `registrar`: the registrar service as its own process (cluster mode).

use std::net::SocketAddr;
use std::time::Duration;

use crate::RegistrarConfig;
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
    record_encoding: runtime::RecordEncodingArgs,
    #[command(flatten)]
    grpc_tls: runtime::GrpcServerTlsArgs,
    #[command(flatten)]
    metrics: runtime::MetricsArgs,
}

/// Runs the process until it is asked to stop (SIGINT, SIGTERM).
pub async fn run(args: Args) -> anyhow::Result<()> {
    args.record_encoding.apply();
    let config = RegistrarConfig {
        min_expires: args.min_expires,
        max_expires: args.max_expires,
        default_expires: args.default_expires,
        registration_presence: args.registration_presence,
    };
    let sweep_interval = Duration::from_millis(args.sweep_ms);
    let start = runtime::ServiceStart {
        name: "registrar",
        listen: args.listen,
        redis_url: args.redis_url.as_deref(),
        expires: (args.min_expires, args.max_expires),
        redis_tls: &args.redis_tls,
        grpc_tls: &args.grpc_tls,
        metrics: &args.metrics,
    };
    start
        .run(
            args.auth
                .api_auth("registrar", crate::grpc::access_policy()),
            |parts| {
                crate::serve(
                    parts.listener,
                    parts.backend,
                    config,
                    sweep_interval,
                    parts.auth,
                    parts.tls,
                    runtime::shutdown_signal(),
                )
            },
        )
        .await
}
