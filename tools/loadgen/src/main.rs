//! `loadgen`: load and correctness runs against a SIP presence server.
//!
//! * `loadgen tokens`: bearer tokens for N users and the JWKS to trust them.
//! * `loadgen fanout`: one publisher, N watchers; PUBLISH → NOTIFY latency and
//!   the time a change takes to reach every watcher.
//! * `loadgen office`: many users registering, publishing and watching buddy
//!   lists for a while.
//!
//! Exit status: 0 when every check passed and no request failed, 1 when a
//! check failed or a request failed, 2 when the run could not be made.

#![forbid(unsafe_code)]

use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use loadgen::clock::Clock;
use loadgen::report::Report;
use loadgen::scenarios::{fanout, office, Common};
use loadgen::tokens::{self, Signer};
use loadgen::transport::Timers;
use loadgen::users::{self, User};

/// Most user agents, dialogs' watchers or changes one run may have: a run is always
/// bounded in size.
const MAX_COUNT: u64 = 200_000;
/// Longest measured phase of one run.
const MAX_DURATION: Duration = Duration::from_secs(3600);

/// Load generator for SIP presence servers (RFC 3856, 3903, 6665, PIDF).
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mint a bearer token per user: a sipp injection file and the JWKS to trust them.
    Tokens(TokensArgs),
    /// One publisher, many watchers: fan-out latency and NOTIFY checks.
    Fanout(FanoutArgs),
    /// Many users registering, publishing and watching buddy lists.
    Office(OfficeArgs),
}

#[derive(Args, Debug)]
struct TokensArgs {
    /// Number of users.
    #[arg(long)]
    users: u64,
    /// User name prefix (`user0001`, `user0002`, ...).
    #[arg(long, default_value = "user")]
    prefix: String,
    /// Domain of the users.
    #[arg(long, default_value = "example.com")]
    domain: String,
    /// Number of the first user.
    #[arg(long, default_value_t = 1)]
    first: u64,
    /// Where to write the injection file (`SEQUENTIAL`, then `user;domain;token`).
    #[arg(long)]
    csv: PathBuf,
    /// Where to write the JWKS (public keys) for the server's --auth-jwks-file.
    #[arg(long)]
    jwks: PathBuf,
    /// Ed25519 PKCS#8 PEM signing key, created on first use and reused after, so
    /// repeated runs share one JWKS (default: a fresh key every run).
    #[arg(long)]
    key: Option<PathBuf>,
    /// Token issuer (`iss`).
    #[arg(long, default_value = "loadgen")]
    issuer: String,
    /// Token audience (`aud`).
    #[arg(long, default_value = "presence")]
    audience: String,
    /// Token lifetime in seconds.
    #[arg(long, default_value_t = 86_400)]
    ttl: u64,
    /// Scopes, space-separated.
    #[arg(long, default_value = "sip:register sip:presence")]
    scopes: String,
}

/// Where to send load and as whom.
#[derive(Args, Debug)]
struct TargetArgs {
    /// The server's SIP address (loopback only).
    #[arg(long, default_value = "127.0.0.1:5060")]
    target: SocketAddr,
    /// Transport (UDP only).
    #[arg(long, default_value = "udp", value_parser = ["udp"])]
    transport: String,
    /// Injection file with the users and their bearer tokens (`loadgen tokens`).
    #[arg(long, conflicts_with = "no_auth")]
    tokens: Option<PathBuf>,
    /// Send no credentials (the server runs with --insecure-no-auth).
    #[arg(long)]
    no_auth: bool,
    /// With --no-auth: user name prefix.
    #[arg(long, default_value = "user")]
    prefix: String,
    /// With --no-auth: the users' domain.
    #[arg(long, default_value = "example.com")]
    domain: String,
    /// Sockets the user agents are spread over.
    #[arg(long, default_value_t = 4)]
    sockets: usize,
    /// Most transactions in flight at once while setting up and tearing down.
    #[arg(long, default_value_t = 256)]
    max_inflight: usize,
    /// Longest wait for watchers to catch up (e.g. `30s`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    settle: Duration,
    /// Expires of SUBSCRIBE (seconds).
    #[arg(long, default_value_t = 600)]
    subscribe_expires: u32,
    /// RFC 3261 T1 (milliseconds).
    #[arg(long, default_value_t = 500)]
    t1_ms: u64,
    /// RFC 3261 T2 (milliseconds).
    #[arg(long, default_value_t = 4000)]
    t2_ms: u64,
    /// Print the report as JSON on stdout (the table goes to stderr).
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct FanoutArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Watchers of the publisher (one dialog each).
    #[arg(long, default_value_t = 1000)]
    watchers: usize,
    /// Changes published after the initial document.
    #[arg(long, default_value_t = 50)]
    changes: u64,
    /// Milliseconds between two changes.
    #[arg(long, default_value_t = 200, conflicts_with = "burst")]
    pace_ms: u64,
    /// Publish each change as soon as the previous one is answered.
    #[arg(long)]
    burst: bool,
    /// Expires of PUBLISH (seconds).
    #[arg(long, default_value_t = 3600)]
    publish_expires: u32,
    /// Send the publisher's requests here instead of --target (e.g. another edge of the
    /// same cluster, so every change crosses edges); loopback only.
    #[arg(long)]
    publisher_target: Option<SocketAddr>,
}

#[derive(Args, Debug)]
struct OfficeArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Users (with --tokens: at most the file's).
    #[arg(long, default_value_t = 1000)]
    users: usize,
    /// Length of the measured phase (e.g. `60s`, `5m`).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    /// Buddy list size range, `MIN..MAX` (or one number).
    #[arg(long, default_value = "50..200", value_parser = parse_range)]
    buddies: RangeInclusive<usize>,
    /// Expires of REGISTER (seconds).
    #[arg(long, default_value_t = 120)]
    register_expires: u32,
    /// Mean time between two changes of a user's state (e.g. `30s`).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    publish_interval: Duration,
    /// Expires of PUBLISH (seconds); publications are refreshed at half of it.
    #[arg(long, default_value_t = 60)]
    publish_expires: u32,
    /// Seed of the buddy lists and timings.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `60s`, `500ms`, `2m`, `1h`, or a number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 60s or 500ms"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("unknown unit {other:?} in {text:?}")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// `50..200`, `50..=200` or `50`.
fn parse_range(text: &str) -> Result<RangeInclusive<usize>, String> {
    let bad = || format!("{text:?} is not a range like 50..200");
    let number = |s: &str| s.trim().parse::<usize>().map_err(|_| bad());
    match text.split_once("..") {
        Some((low, high)) => {
            let (low, high) = (number(low)?, number(high.trim_start_matches('='))?);
            if low > high {
                return Err(bad());
            }
            Ok(low..=high)
        }
        None => {
            let n = number(text)?;
            Ok(n..=n)
        }
    }
}

fn check_count(name: &str, n: u64) -> anyhow::Result<()> {
    if n > MAX_COUNT {
        bail!("{name} {n} is above the limit of {MAX_COUNT}");
    }
    Ok(())
}

impl TargetArgs {
    fn common(&self) -> anyhow::Result<Common> {
        // Load is only ever sent to this machine.
        if !self.target.ip().is_loopback() {
            bail!(
                "--target {} is not a loopback address: loadgen only sends load to 127.0.0.0/8 or ::1",
                self.target
            );
        }
        if self.t1_ms == 0 || self.t2_ms < self.t1_ms {
            bail!("the timers need 0 < T1 <= T2");
        }
        check_count("--sockets", self.sockets as u64)?;
        let bind = match self.target.ip() {
            IpAddr::V4(_) => IpAddr::from([127, 0, 0, 1]),
            IpAddr::V6(_) => IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]),
        };
        Ok(Common {
            target: self.target,
            bind,
            sockets: self.sockets,
            max_inflight: self.max_inflight,
            settle: self.settle,
            subscribe_expires: self.subscribe_expires,
            timers: Timers {
                t1: Duration::from_millis(self.t1_ms),
                t2: Duration::from_millis(self.t2_ms),
            },
        })
    }

    /// The users: the injection file's, or `count` generated names without tokens.
    fn users(&self, count: usize) -> anyhow::Result<Vec<User>> {
        match (&self.tokens, self.no_auth) {
            (Some(path), _) => {
                users::load(path).with_context(|| format!("reading --tokens {}", path.display()))
            }
            (None, true) => Ok(users::generated(
                &self.prefix,
                &self.domain,
                1,
                count as u64,
            )),
            (None, false) => {
                bail!("give --tokens users.csv (from `loadgen tokens`), or --no-auth for a server with --insecure-no-auth")
            }
        }
    }
}

fn tokens(args: &TokensArgs) -> anyhow::Result<()> {
    check_count("--users", args.users)?;
    if args.users == 0 {
        bail!("--users must be at least 1");
    }
    let signer = match &args.key {
        Some(path) => Signer::from_key_file(path, &args.issuer, &args.audience)
            .with_context(|| format!("signing key {}", path.display()))?,
        None => Signer::generate(&args.issuer, &args.audience).context("token issuer")?,
    };
    let scopes: Vec<&str> = args.scopes.split_whitespace().collect();
    let mut list = users::generated(&args.prefix, &args.domain, args.first, args.users);
    for user in &mut list {
        let token = signer
            .mint(&user.aor(), &scopes, args.ttl)
            .with_context(|| format!("minting a token for {}", user.aor()))?;
        user.token = Some(token);
    }
    write(&args.csv, &users::to_csv(&list))?;
    write(&args.jwks, &signer.jwks_json())?;
    let jwks = std::path::absolute(&args.jwks).unwrap_or_else(|_| args.jwks.clone());
    eprintln!(
        "{} tokens ({} to {}, valid {} s, scopes {:?}) written to {}",
        list.len(),
        list.first().map(User::aor).unwrap_or_default(),
        list.last().map(User::aor).unwrap_or_default(),
        args.ttl,
        args.scopes,
        args.csv.display()
    );
    eprintln!("JWKS written to {}; start the server with:", jwks.display());
    println!("{}", tokens::server_flags(&jwks, &signer).join(" "));
    Ok(())
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn fanout(args: &FanoutArgs) -> anyhow::Result<Report> {
    check_count("--watchers", args.watchers as u64)?;
    check_count("--changes", args.changes)?;
    if let Some(target) = args.publisher_target {
        if !target.ip().is_loopback() {
            bail!("--publisher-target {target} is not a loopback address");
        }
    }
    let config = fanout::Fanout {
        publisher_target: args.publisher_target,
        common: args.target.common()?,
        watchers: args.watchers,
        changes: args.changes,
        pace: (!args.burst).then(|| Duration::from_millis(args.pace_ms)),
        publish_expires: args.publish_expires,
    };
    let users = args.target.users(args.watchers + 1)?;
    eprintln!(
        "fanout: {} watchers, {} changes {} against {}",
        args.watchers,
        args.changes,
        match config.pace {
            Some(p) => format!("every {} ms", p.as_millis()),
            None => "back to back".to_owned(),
        },
        args.target.target
    );
    let clock = Clock::start();
    runtime()?
        .block_on(fanout::run(&config, users, clock))
        .context("fanout")
}

fn office(args: &OfficeArgs) -> anyhow::Result<Report> {
    check_count("--users", args.users as u64)?;
    if args.duration > MAX_DURATION {
        bail!("--duration is above the limit of {MAX_DURATION:?}");
    }
    let mut users = args.target.users(args.users)?;
    if users.len() < args.users {
        bail!(
            "--users {} but the injection file has only {}",
            args.users,
            users.len()
        );
    }
    users.truncate(args.users);
    let config = office::Office {
        common: args.target.common()?,
        duration: args.duration,
        buddies: args.buddies.clone(),
        register_expires: args.register_expires,
        publish_interval: args.publish_interval,
        publish_expires: args.publish_expires,
        seed: args.seed,
    };
    eprintln!(
        "office: {} users for {:?}, buddy lists {}..{} against {}",
        args.users,
        args.duration,
        args.buddies.start(),
        args.buddies.end(),
        args.target.target
    );
    let clock = Clock::start();
    runtime()?
        .block_on(office::run(&config, users, clock))
        .context("office")
}

fn print(report: &Report, json: bool) -> anyhow::Result<()> {
    if json {
        eprint!("{}", report.table());
        println!(
            "{}",
            serde_json::to_string_pretty(report).context("serialising the report")?
        );
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Tokens(args) => tokens(args).map(|()| true),
        Command::Fanout(args) => {
            fanout(args).and_then(|r| print(&r, args.target.json).map(|()| r.passed))
        }
        Command::Office(args) => {
            office(args).and_then(|r| print(&r, args.target.json).map(|()| r.passed))
        }
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("loadgen: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_ranges_parse() {
        assert_eq!(parse_duration("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert_eq!(parse_range("50..200"), Ok(50..=200));
        assert_eq!(parse_range("3..=4"), Ok(3..=4));
        assert_eq!(parse_range("7"), Ok(7..=7));
        assert!(parse_range("9..2").is_err());
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
