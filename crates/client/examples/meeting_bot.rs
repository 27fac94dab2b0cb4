//! A bot that is available, busy "In a meeting" for a while, then available again — the
//! way a calendar integration would drive presence — and unpublishes when it exits.
//!
//! ```text
//! scripts/run.sh                      # prints a development token for alice@example.com
//! TOKEN=eyJ... cargo run -p presence-client --example meeting_bot -- \
//!     alice@example.com sip:127.0.0.1:5060 10
//! ```
//!
//! The last argument is the meeting's length in seconds (default 10).

use std::time::Duration;

use anyhow::Context;
use presence_client::{PresenceStatus, SimplePeer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: meeting_bot <me@domain> <sip:server> [seconds] (TOKEN=<bearer token>)";
    let me = args.next().context(usage)?;
    let server = args.next().context(usage)?;
    let meeting = Duration::from_secs(args.next().and_then(|s| s.parse().ok()).unwrap_or(10));
    let token = std::env::var("TOKEN")
        .context("TOKEN must hold a bearer token (scripts/run.sh prints them)")?;

    let bot = SimplePeer::new(&me).await?;
    bot.register(&server)
        .auth_bearer(token)
        .await
        .with_context(|| format!("registering {me} at {server}"))?;

    bot.presence(PresenceStatus::Available)
        .note("Free")
        .capabilities(["audio", "message"])
        .await
        .context("publishing")?;
    println!("{me}: available");
    tokio::time::sleep(Duration::from_secs(2)).await;

    bot.busy()
        .note("In a meeting")
        .location("office")
        .await
        .context("publishing")?;
    println!("{me}: busy, in a meeting for {meeting:?}");
    tokio::time::sleep(meeting).await;

    bot.available().note("Free").await.context("publishing")?;
    println!("{me}: available again");
    tokio::time::sleep(Duration::from_secs(2)).await;

    bot.shutdown().await;
    println!("{me}: unpublished and unregistered");
    Ok(())
}
