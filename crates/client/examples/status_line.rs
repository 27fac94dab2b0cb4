//! A status line: watches buddies and prints one line with everybody's presence each time
//! somebody's changes.
//!
//! ```text
//! scripts/run.sh                      # prints a development token for bob@example.com
//! TOKEN=eyJ... cargo run -p presence-client --example status_line -- \
//!     bob@example.com sip:127.0.0.1:5060 alice@example.com carol@example.com
//! ```
//!
//! Optional: `SECONDS=30` stops after that long (default: until Ctrl-C).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use presence_client::{BuddyList, PresenceInfo, SimplePeer};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: status_line <me@domain> <sip:server> <buddy>... (TOKEN=<bearer token>)";
    let me = args.next().context(usage)?;
    let server = args.next().context(usage)?;
    let buddy_names: Vec<String> = args.collect();
    anyhow::ensure!(!buddy_names.is_empty(), usage);
    let token = std::env::var("TOKEN")
        .context("TOKEN must hold a bearer token (scripts/run.sh prints them)")?;
    let run_for = std::env::var("SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs);

    let peer = SimplePeer::new(&me).await?;
    peer.register(&server)
        .auth_bearer(token)
        .await
        .with_context(|| format!("registering {me} at {server}"))?;
    peer.available().await.context("publishing my presence")?;

    let mut buddies = BuddyList::new();
    for name in &buddy_names {
        buddies
            .add(&peer, name)
            .await
            .with_context(|| format!("watching {name}"))?;
    }
    let mut seen: BTreeMap<String, PresenceInfo> = BTreeMap::new();
    let deadline = tokio::time::sleep(run_for.unwrap_or(Duration::from_secs(u64::MAX / 4)));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            change = buddies.next() => {
                let Some((name, info)) = change else { break };
                seen.insert(name, info);
                println!("{}", line(&buddy_names, &seen));
            }
            _ = tokio::signal::ctrl_c() => break,
            _ = &mut deadline => break,
        }
    }
    peer.shutdown().await;
    Ok(())
}

/// `alice: available (Working from home) | carol: ?`
fn line(names: &[String], seen: &BTreeMap<String, PresenceInfo>) -> String {
    names
        .iter()
        .map(|name| match seen.get(name) {
            Some(info) => match &info.note {
                Some(note) => format!("{name}: {} ({note})", info.status),
                None => format!("{name}: {}", info.status),
            },
            None => format!("{name}: ?"),
        })
        .collect::<Vec<_>>()
        .join(" | ")
}
