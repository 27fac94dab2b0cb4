//! `presence`: the presence service as its own process (cluster mode).

use std::net::SocketAddr;
use std::time::Duration;

use crate::PresenceConfig;
use clap::Parser;

/// Presence service of the presence cluster.
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    /// gRPC listen address.
    #[arg(long, env = "PRESENCE_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Redis URL (`redis://host:port`); without it state is kept in memory
    /// and is not shared with any other process.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Shortest publication / subscription interval accepted (seconds).
    #[arg(long, env = "PRESENCE_MIN_EXPIRES", default_value_t = 60)]
    min_expires: u32,
    /// Longest publication / subscription interval granted (seconds).
    #[arg(long, env = "PRESENCE_MAX_EXPIRES", default_value_t = 7200)]
    max_expires: u32,
    /// Who may watch a presentity that has no rule for the watcher:
    /// `same-domain` (watchers of the presentity's domain are allowed,
    /// others wait for approval), `allow` or `confirm`.
    #[arg(long, env = "PRESENCE_DEFAULT_POLICY", default_value = "same-domain", value_parser = parse_policy)]
    default_policy: crate::rules::DefaultPolicy,
    #[command(flatten)]
    limits: LimitArgs,
    /// How often expired publications and subscriptions are swept (ms).
    #[arg(long, env = "PRESENCE_SWEEP_MS", default_value_t = 500)]
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

/// Per-client limits of the presence service (README, Limits); shared by
/// `presence` and `presence-node`.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Most live publications of one presentity (PUBLISH and SetPresence
    /// together); an initial PUBLISH beyond it gets 503 with Retry-After.
    #[arg(long, env = "PRESENCE_MAX_PUBLICATIONS", default_value_t = crate::compositor::DEFAULT_MAX_PUBLICATIONS, value_parser = parse_positive)]
    pub max_publications_per_presentity: usize,
    /// Most bytes of published documents one presentity's state is
    /// composed from; a PUBLISH growing them beyond it gets 503.
    #[arg(long, env = "PRESENCE_MAX_DOCUMENT_BYTES", default_value_t = crate::compositor::DEFAULT_MAX_DOCUMENT_BYTES)]
    pub max_document_bytes: usize,
    /// Most live subscriptions of one watcher identity, cluster-wide; a new
    /// SUBSCRIBE beyond it gets 503 with Retry-After.
    #[arg(long, env = "PRESENCE_MAX_SUBSCRIPTIONS_PER_WATCHER", default_value_t = crate::compositor::DEFAULT_MAX_SUBSCRIPTIONS_PER_WATCHER, value_parser = parse_positive)]
    pub max_subscriptions_per_watcher: usize,
    /// After a presentity's own publications go, how long its
    /// registration-driven `open` waits (ms), so a phone quitting
    /// (un-PUBLISH, then un-REGISTER) goes straight to `closed`; 0 shows
    /// it at once.
    #[arg(long, env = "PRESENCE_REGISTRATION_HOLDOFF_MS", default_value_t = crate::compositor::DEFAULT_REGISTRATION_HOLDOFF_MS)]
    pub registration_holdoff_ms: u64,
}

/// A limit of at least one (0 would refuse everything).
fn parse_positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

impl LimitArgs {
    /// `config` with these limits.
    pub fn apply(&self, config: PresenceConfig) -> PresenceConfig {
        PresenceConfig {
            max_publications: self.max_publications_per_presentity,
            max_document_bytes: self.max_document_bytes,
            max_subscriptions_per_watcher: self.max_subscriptions_per_watcher,
            registration_holdoff_ms: self.registration_holdoff_ms,
            ..config
        }
    }
}

fn parse_policy(name: &str) -> Result<crate::rules::DefaultPolicy, String> {
    crate::rules::DefaultPolicy::parse(name)
        .ok_or_else(|| format!("unknown policy {name:?}: use same-domain, allow or confirm"))
}

/// Runs the process until it is asked to stop (SIGINT, SIGTERM).
pub async fn run(args: Args) -> anyhow::Result<()> {
    args.record_encoding.apply();
    let config = args.limits.apply(PresenceConfig {
        min_publish_expires: args.min_expires,
        max_publish_expires: args.max_expires,
        min_subscribe_expires: args.min_expires,
        max_subscribe_expires: args.max_expires,
        default_policy: args.default_policy,
        ..PresenceConfig::default()
    });
    let sweep_interval = Duration::from_millis(args.sweep_ms);
    let start = runtime::ServiceStart {
        name: "presence",
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
                .api_auth("presence", crate::access::access_policy()),
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
