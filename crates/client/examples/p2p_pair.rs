//! Two peers with no server: each watches the other directly (SUBSCRIBE/NOTIFY between
//! them, each its own notifier), changes its status a few times, and finally one leaves.
//!
//! ```text
//! cargo run -p presence-client --example p2p_pair            # both on loopback, UDP
//! cargo run -p presence-client --example p2p_pair -- tcp
//! ```
//!
//! On a LAN, run one peer per machine: bind to a known port
//! (`SimplePeer::builder(..).bind("0.0.0.0:5070".parse()?)`) and watch
//! `"alice@192.168.1.100:5070"`.

use std::time::Duration;

use anyhow::Context;
use presence_client::{PresenceWatcher, SimplePeer, Transport};

async fn show(who: &str, watcher: &mut PresenceWatcher) -> anyhow::Result<()> {
    let info = tokio::time::timeout(Duration::from_secs(10), watcher.recv())
        .await
        .context("no change within 10 s")?
        .context("watcher stopped")?;
    match &info.note {
        Some(note) => println!("{who} sees {}: {} ({note})", watcher.target(), info.status),
        None => println!("{who} sees {}: {}", watcher.target(), info.status),
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let transport = match std::env::args().nth(1).as_deref() {
        Some("tcp") => Transport::Tcp,
        _ => Transport::Udp,
    };
    let loopback = "127.0.0.1:0".parse()?;
    let alice = SimplePeer::builder("alice@example.com")
        .bind(loopback)
        .transport(transport)
        .build()
        .await?;
    let bob = SimplePeer::builder("bob@example.com")
        .bind(loopback)
        .transport(transport)
        .build()
        .await?;
    println!(
        "alice at {}, bob at {} ({transport:?})",
        alice.p2p_address(),
        bob.p2p_address()
    );

    alice.available().note("Working from home").await?;
    bob.away().await?;
    let mut alice_watches_bob = alice.watch(&bob.p2p_address()).await?;
    let mut bob_watches_alice = bob.watch(&alice.p2p_address()).await?;
    show("alice", &mut alice_watches_bob).await?;
    show("bob", &mut bob_watches_alice).await?;

    bob.available().note("Back").await?;
    show("alice", &mut alice_watches_bob).await?;
    alice.in_call().await?;
    show("bob", &mut bob_watches_alice).await?;

    // Alice leaves: her final NOTIFY tells Bob at once.
    alice_watches_bob.stop().await;
    alice.shutdown().await;
    show("bob", &mut bob_watches_alice).await?;
    Ok(())
}
