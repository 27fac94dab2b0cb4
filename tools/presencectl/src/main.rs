//! `presencectl`: the presence cluster's gRPC API from the command line.
//!
//! Readable tables by default, `--json` for scripts (one JSON document per
//! command; `watch` prints one JSON object per line). The bearer token comes
//! from `--token` or `PRESENCE_TOKEN`. Errors go to standard error with the
//! gRPC status code, and the exit status is non-zero.

mod authorization;
mod bindings;
mod clear;
mod get;
mod set;
mod table;
mod unregister;
mod watch;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use grpc_auth::{ServiceCredentials, TokenSource};
use rpc::presence::v1 as presence;
use rpc::registrar::v1 as registrar;
use serde_json::{json, Value};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};

/// Command-line client of the presence cluster's gRPC API.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Presence service gRPC URL.
    #[arg(
        long,
        env = "PRESENCE_URL",
        default_value = "http://127.0.0.1:50051",
        global = true
    )]
    presence_url: String,
    /// Registrar service gRPC URL.
    #[arg(
        long,
        env = "REGISTRAR_URL",
        default_value = "http://127.0.0.1:50052",
        global = true
    )]
    registrar_url: String,
    /// Bearer token (scopes presence:read, presence:write or presence:admin).
    #[arg(long, env = "PRESENCE_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    /// Deadline of each call, in seconds (not of `watch`).
    #[arg(long, default_value_t = 10, global = true)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// The composed presence of one or more addresses-of-record.
    Get {
        #[arg(required = true)]
        presentities: Vec<String>,
    },
    /// Follow presence live: the current state, then a line per change.
    /// Reconnects by itself without missing a change.
    Watch {
        #[arg(required = true)]
        presentities: Vec<String>,
    },
    /// Publish presence for an application (one publication per source).
    Set {
        presentity: String,
        /// available, away, busy, do-not-disturb, on-the-phone, in-meeting,
        /// offline, or any other word (custom status).
        #[arg(required_unless_present = "pidf_file")]
        status: Option<String>,
        /// Free text shown with the status.
        #[arg(long)]
        note: Option<String>,
        /// Name of the publishing application.
        #[arg(long, default_value = "presencectl")]
        source: String,
        /// Seconds until the publication lapses (server default if absent).
        #[arg(long)]
        expires: Option<u32>,
        /// Publish this PIDF document instead of a status.
        #[arg(long, conflicts_with = "status")]
        pidf_file: Option<PathBuf>,
    },
    /// Remove an application's publication.
    Clear {
        presentity: String,
        #[arg(long, default_value = "presencectl")]
        source: String,
    },
    /// The registered contacts of one or more addresses-of-record.
    Bindings {
        #[arg(required = true)]
        aors: Vec<String>,
    },
    /// Who watches a presentity, and whether each watcher is active or
    /// pending (awaiting approval).
    Watchers { presentity: String },
    /// Show a presentity's authorization rules, or change them. Actions:
    /// allow, block, polite-block (the watcher sees "closed"), confirm.
    Rules {
        presentity: String,
        /// Start from no rules.
        #[arg(long)]
        clear: bool,
        /// Action for watchers no rule names (`none`: the service policy).
        #[arg(long)]
        default: Option<String>,
        /// A watcher's rule, `AOR=ACTION` (repeatable).
        #[arg(long = "watcher", value_name = "AOR=ACTION")]
        watchers: Vec<String>,
        /// A domain's rule, `DOMAIN=ACTION` (repeatable).
        #[arg(long = "domain", value_name = "DOMAIN=ACTION")]
        domains: Vec<String>,
        /// Remove the rule of a watcher or domain (repeatable).
        #[arg(long, value_name = "AOR|DOMAIN")]
        remove: Vec<String>,
    },
    /// Allow a watcher: its pending subscriptions become active at once.
    Approve { presentity: String, watcher: String },
    /// Block a watcher: its subscriptions end (`--polite`: it keeps seeing
    /// "closed" instead).
    Reject {
        presentity: String,
        watcher: String,
        #[arg(long)]
        polite: bool,
    },
    /// Remove one registration (by contact URI or +sip.instance) or all of
    /// an address-of-record.
    Unregister {
        aor: String,
        /// Contact URI or +sip.instance; every binding when absent.
        #[arg(long)]
        contact: Option<String>,
    },
}

type Authed = InterceptedService<Channel, ServiceCredentials>;

struct Clients {
    presence_url: String,
    registrar_url: String,
    credentials: ServiceCredentials,
    timeout: Duration,
}

impl Clients {
    fn channel(url: &str) -> anyhow::Result<Channel> {
        Ok(Endpoint::from_shared(url.to_string())
            .with_context(|| format!("invalid URL {url}"))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            // A watch may sit idle for hours: pings keep the connection
            // open through middleboxes and detect a dead server.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .connect_lazy())
    }

    fn presence(&self) -> anyhow::Result<presence::presence_client::PresenceClient<Authed>> {
        Ok(presence::presence_client::PresenceClient::with_interceptor(
            Self::channel(&self.presence_url)?,
            self.credentials.clone(),
        ))
    }

    fn registrar(&self) -> anyhow::Result<registrar::registrar_client::RegistrarClient<Authed>> {
        Ok(
            registrar::registrar_client::RegistrarClient::with_interceptor(
                Self::channel(&self.registrar_url)?,
                self.credentials.clone(),
            ),
        )
    }

    /// A request with this command's deadline.
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }
}

/// A failed call as a one-line error naming the gRPC code.
fn call_error(what: &str, status: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("{what} failed: {:?}: {}", status.code(), status.message())
}

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(Args::parse())) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let credentials = match args.token.as_deref().filter(|t| !t.is_empty()) {
        Some(token) => ServiceCredentials::start(TokenSource::Static(token.to_string()))
            .await
            .context("the token cannot be sent")?,
        None => ServiceCredentials::none(),
    };
    let clients = Clients {
        presence_url: args.presence_url.clone(),
        registrar_url: args.registrar_url.clone(),
        credentials,
        timeout: Duration::from_secs(args.timeout.max(1)),
    };
    let json = args.json;
    match args.command {
        Command::Get { presentities } => get::get(&clients, presentities, json).await,
        Command::Watch { presentities } => watch::watch(&clients, presentities, json).await,
        Command::Set {
            presentity,
            status,
            note,
            source,
            expires,
            pidf_file,
        } => {
            let pidf = match pidf_file {
                Some(path) => {
                    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?
                }
                None => Vec::new(),
            };
            let request = presence::SetPresenceRequest {
                presentity,
                source,
                status: status.unwrap_or_default(),
                note: note.unwrap_or_default(),
                expires,
                pidf,
            };
            set::set(&clients, request, json).await
        }
        Command::Clear { presentity, source } => {
            clear::clear(&clients, presentity, source, json).await
        }
        Command::Bindings { aors } => bindings::bindings(&clients, aors, json).await,
        Command::Unregister { aor, contact } => {
            unregister::unregister(&clients, aor, contact, json).await
        }
        Command::Watchers { presentity } => {
            authorization::watchers(&clients, presentity, json).await
        }
        Command::Rules {
            presentity,
            clear,
            default,
            watchers,
            domains,
            remove,
        } => {
            let edits = authorization::RuleEdits {
                clear,
                default,
                watchers,
                domains,
                remove,
            };
            authorization::rules(&clients, presentity, edits, json).await
        }
        Command::Approve {
            presentity,
            watcher,
        } => authorization::decide(&clients, presentity, watcher, true, false, json).await,
        Command::Reject {
            presentity,
            watcher,
            polite,
        } => authorization::decide(&clients, presentity, watcher, false, polite, json).await,
    }
}

fn basic_name(basic: i32) -> &'static str {
    match presence::Basic::try_from(basic) {
        Ok(presence::Basic::Open) => "open",
        Ok(presence::Basic::Closed) => "closed",
        _ => "-",
    }
}

fn state_json(state: &presence::PresenceState) -> Value {
    json!({
        "presentity": state.presentity,
        "version": state.version,
        "basic": basic_name(state.basic),
        "status": state.status,
        "note": state.note,
        "pidf": String::from_utf8_lossy(&state.pidf),
    })
}

fn print_json(value: &Value) {
    println!("{value:#}");
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;
    use crate::watch::{clock, retriable};

    #[test]
    fn the_clock_has_a_fixed_width() {
        assert_eq!(clock().len(), 12);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        assert!(retriable(Code::Unavailable));
        assert!(!retriable(Code::Unauthenticated));
        assert!(!retriable(Code::PermissionDenied));
        assert!(!retriable(Code::InvalidArgument));
    }

    #[test]
    fn set_needs_a_status_or_a_document() {
        assert!(Args::try_parse_from(["presencectl", "set", "a@x"]).is_err());
        assert!(Args::try_parse_from(["presencectl", "set", "a@x", "busy"]).is_ok());
        assert!(
            Args::try_parse_from(["presencectl", "set", "a@x", "--pidf-file", "f.xml"]).is_ok()
        );
        assert!(Args::try_parse_from([
            "presencectl",
            "set",
            "a@x",
            "busy",
            "--pidf-file",
            "f.xml"
        ])
        .is_err());
    }
}
