//! `presence-node`: the whole presence service in one process — SIP edge,
//! presence and registrar — on the in-memory backend (or one Redis).
//!
//! With no token provider configured it starts a development issuer and
//! prints ready-to-use bearer tokens, so a SIP client or sipp can be pointed
//! at it at once.
//!
//! The node's edge calls the presence and registrar services in-process
//! (`local.rs`), behind the same interface a standalone edge uses over
//! gRPC; the gRPC API is still served for applications. It is open unless
//! `--grpc-auth` is given: then it takes the SIP listener's bearer tokens
//! (or the development issuer's) with `presence:*` scopes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use auth::dev::DevIssuer;
use clap::Parser;
use edge::cli::{AuthArgs, SipArgs, TransportArgs};

/// Single-process presence server (edge + presence + registrar).
#[derive(Parser, Debug)]
#[command(version, about)]
pub struct Args {
    #[command(flatten)]
    sip: SipArgs,
    #[command(flatten)]
    auth: AuthArgs,
    #[command(flatten)]
    transport: TransportArgs,
    /// gRPC address of the presence service (also usable by gRPC clients).
    #[arg(long, env = "PRESENCE_LISTEN", default_value = "127.0.0.1:50051")]
    presence_listen: SocketAddr,
    /// gRPC address of the registrar service.
    #[arg(long, env = "REGISTRAR_LISTEN", default_value = "127.0.0.1:50052")]
    registrar_listen: SocketAddr,
    /// Redis URL; without it all state is kept in this process's memory.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Shortest registration/publication/subscription interval (seconds).
    #[arg(long, env = "MIN_EXPIRES", default_value_t = 60)]
    min_expires: u32,
    /// Who may watch a presentity that has no rule for the watcher:
    /// `same-domain` (watchers of the presentity's domain are allowed,
    /// others wait for approval), `allow` or `confirm`.
    #[arg(long, env = "PRESENCE_DEFAULT_POLICY", default_value = "same-domain", value_parser = parse_policy)]
    default_policy: presence::rules::DefaultPolicy,
    #[command(flatten)]
    presence_limits: presence::command::LimitArgs,
    /// Registration-driven presence: an address-of-record with live
    /// registrations and no publication is shown `open`, and `closed` when
    /// its last registration goes.
    #[arg(long, env = "REGISTRATION_PRESENCE", default_value_t = true, action = clap::ArgAction::Set)]
    registration_presence: bool,
    /// Users the development issuer prints tokens for (comma-separated AORs).
    #[arg(
        long,
        env = "DEV_USERS",
        value_delimiter = ',',
        default_value = "alice@example.com,bob@example.com"
    )]
    dev_users: Vec<String>,
    /// Also write the development tokens as a sipp injection file (`user;domain;token`).
    #[arg(long, env = "DEV_TOKENS_CSV")]
    dev_tokens_csv: Option<PathBuf>,
    /// Require bearer tokens with presence:* scopes on the gRPC API.
    #[arg(long, env = "GRPC_AUTH", default_value_t = false)]
    grpc_auth: bool,
    #[command(flatten)]
    redis_tls: runtime::RedisTlsArgs,
    #[command(flatten)]
    record_encoding: runtime::RecordEncodingArgs,
    #[command(flatten)]
    grpc_tls: runtime::GrpcServerTlsArgs,
    #[command(flatten)]
    metrics: runtime::MetricsArgs,
}

fn parse_policy(name: &str) -> Result<presence::rules::DefaultPolicy, String> {
    presence::rules::DefaultPolicy::parse(name)
        .ok_or_else(|| format!("unknown policy {name:?}: use same-domain, allow or confirm"))
}

/// Runs the node until it is asked to stop (SIGINT, SIGTERM).
pub async fn run(args: Args) -> anyhow::Result<()> {
    args.record_encoding.apply();
    let _metrics = args.metrics.serve().await?;
    let backend = runtime::backend(args.redis_url.as_deref(), &args.redis_tls).await?;
    let monitor = runtime::monitor_backend(backend.clone());
    let counts = store::metrics::watch_scheduled(
        backend.clone(),
        &[
            (store::Schedule::Bindings, "binding"),
            (store::Schedule::Publications, "publication"),
            (store::Schedule::Subscriptions, "subscription"),
        ],
    );

    let presence_listener = tokio::net::TcpListener::bind(args.presence_listen)
        .await
        .with_context(|| format!("binding {}", args.presence_listen))?;
    let registrar_listener = tokio::net::TcpListener::bind(args.registrar_listen)
        .await
        .with_context(|| format!("binding {}", args.registrar_listen))?;
    let presence_url = format!("http://{}", presence_listener.local_addr()?);
    let registrar_url = format!("http://{}", registrar_listener.local_addr()?);
    let presence_config = args.presence_limits.apply(presence::PresenceConfig {
        min_publish_expires: args.min_expires,
        min_subscribe_expires: args.min_expires,
        default_policy: args.default_policy,
        ..presence::PresenceConfig::default()
    });
    let registrar_config = registrar::RegistrarConfig {
        min_expires: args.min_expires,
        registration_presence: args.registration_presence,
        ..registrar::RegistrarConfig::default()
    };
    let dev_issuer = if args.auth.has_provider() || !args.auth.uses_bearer()? {
        None
    } else {
        let issuer = DevIssuer::generate("presence-node-dev", "presence")
            .context("creating the development issuer")?;
        Some(Arc::new(issuer))
    };
    let (presence_auth, registrar_auth) = api_auth(&args, dev_issuer.clone()).await?;
    let (presence_service, presence_sweeper) =
        presence::start(backend.clone(), presence_config, Duration::from_millis(500));
    let (registrar_service, registrar_sweeper) = registrar::start(
        backend.clone(),
        registrar_config,
        Duration::from_millis(1000),
    );
    let grpc_tls = args.grpc_tls.config()?;
    let presence_task = tokio::spawn(presence::serve_service(
        presence_listener,
        presence_service.clone(),
        presence_auth,
        grpc_tls.clone(),
        runtime::shutdown_signal(),
    ));
    let registrar_task = tokio::spawn(registrar::serve_service(
        registrar_listener,
        registrar_service.clone(),
        registrar_auth,
        grpc_tls.clone(),
        runtime::shutdown_signal(),
    ));

    let authn = if let Some(issuer) = &dev_issuer {
        print_dev_tokens(issuer, &args)?;
        args.auth
            .authenticator(Some(issuer.bearer_config()))
            .await?
    } else {
        args.auth.authenticator(None).await?
    };

    let mut config = args.sip.to_config(presence_url, registrar_url);
    args.transport.apply(&mut config)?;
    let services = edge::services::Services {
        presence: Arc::new(crate::local::LocalPresence {
            service: presence_service,
            deadline: config.rpc_timeout,
        }),
        registrar: Arc::new(crate::local::LocalRegistrar {
            service: registrar_service,
            deadline: config.rpc_timeout,
        }),
    };
    let running = edge::start_with(config, services, authn, backend).await?;
    tokio::select! {
        _ = runtime::shutdown_signal() => {}
        r = presence_task => tracing::error!(result = ?r, "presence service stopped"),
        r = registrar_task => tracing::error!(result = ?r, "registrar service stopped"),
    }
    running.abort();
    monitor.abort();
    counts.abort();
    presence_sweeper.abort();
    registrar_sweeper.abort();
    Ok(())
}

/// The authentication of the presence and registrar gRPC APIs.
async fn api_auth(
    args: &Args,
    dev_issuer: Option<Arc<DevIssuer>>,
) -> anyhow::Result<(grpc_auth::ApiAuth, grpc_auth::ApiAuth)> {
    if !args.grpc_auth {
        grpc_auth::args::warn_unauthenticated("presence-node");
        return Ok((
            grpc_auth::ApiAuth::disabled(),
            grpc_auth::ApiAuth::disabled(),
        ));
    }
    if dev_issuer.is_none() && !args.auth.has_provider() {
        anyhow::bail!("--grpc-auth needs bearer tokens: configure a token provider (--auth-jwks-file, --auth-jwks-url, --auth-discovery-url, --auth-introspection-url) or keep bearer authentication on for the development issuer");
    }
    let bearer = args
        .auth
        .bearer_config(dev_issuer.as_ref().map(|issuer| issuer.bearer_config()))?;
    let validator = auth::BearerValidator::new(grpc_auth::api_bearer_config(bearer))
        .await
        .context("setting up gRPC authentication")?;
    if let Some(issuer) = &dev_issuer {
        let token = issuer
            .mint("presencectl", &[grpc_auth::SCOPE_ADMIN], 24 * 3600)
            .context("minting a gRPC token")?;
        eprintln!("gRPC API token (scope presence:admin, 24 hours), for presencectl and grpcurl:");
        eprintln!("  export PRESENCE_TOKEN={token}");
    }
    Ok((
        grpc_auth::ApiAuth::new(validator.clone(), presence::access::access_policy()),
        grpc_auth::ApiAuth::new(validator, registrar::grpc::access_policy()),
    ))
}

/// Prints a token per development user (and writes the sipp file).
fn print_dev_tokens(issuer: &DevIssuer, args: &Args) -> anyhow::Result<()> {
    let mut csv = String::from("SEQUENTIAL\n");
    eprintln!("Development issuer active: tokens below are valid for 24 hours (scopes sip:register sip:presence).");
    for aor in &args.dev_users {
        let token = issuer
            .mint(aor, &["sip:register", "sip:presence"], 24 * 3600)
            .with_context(|| format!("minting a token for {aor}"))?;
        eprintln!("  {aor}: Authorization: Bearer {token}");
        let (user, domain) = aor.split_once('@').unwrap_or((aor.as_str(), "example.com"));
        csv.push_str(&format!("{user};{domain};{token}\n"));
    }
    if let Some(path) = &args.dev_tokens_csv {
        std::fs::write(path, csv).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("  (also written to {} for sipp -inf)", path.display());
    }
    Ok(())
}
