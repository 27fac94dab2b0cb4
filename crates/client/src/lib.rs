//! Presence for applications, without SIP knowledge.
//!
//! A [`SimplePeer`] is one identity on the network. It publishes its presence, watches
//! others, and keeps everything alive by itself — against the presence cluster of this
//! workspace, against any RFC 3856 presence server, or directly between two peers with no
//! server at all:
//!
//! ```no_run
//! use presence_client::{BuddyList, PresenceStatus, SimplePeer};
//!
//! # async fn run(token: String, bob_token: String) -> presence_client::Result<()> {
//! let alice = SimplePeer::new("alice@example.com").await?;
//! let bob = SimplePeer::new("bob@example.com").await?;
//!
//! // Register with the server using a bearer token (RFC 8898).
//! alice.register("sip:127.0.0.1:5060").auth_bearer(token).await?;
//! bob.register("sip:127.0.0.1:5060").auth_bearer(bob_token).await?;
//!
//! alice.presence(PresenceStatus::Available).note("Working from home").await?;
//! let mut watcher = bob.watch("alice").await?; // the server routes by user name
//! if let Some(status) = watcher.recv().await {
//!     println!("Alice is now: {:?}", status);
//! }
//!
//! let mut buddies = BuddyList::new();
//! buddies.add(&bob, "alice@example.com").await?;
//! for (buddy, status) in buddies.poll().await {
//!     println!("{} is now {:?}", buddy, status);
//! }
//! # Ok(()) }
//! ```
//!
//! Peer to peer, the peers watch each other directly (each answers SUBSCRIBEs for itself
//! and sends NOTIFYs on its own changes), and an OPTIONS heartbeat reports a silent peer
//! Offline:
//!
//! ```
//! use presence_client::{PresenceStatus, SimplePeer};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> presence_client::Result<()> {
//! let loopback = "127.0.0.1:0".parse().unwrap();
//! let alice = SimplePeer::builder("alice@example.com").bind(loopback).build().await?;
//! let bob = SimplePeer::builder("bob@example.com").bind(loopback).build().await?;
//!
//! alice.presence(PresenceStatus::Available).note("Working from home").await?;
//! let mut watcher = bob.watch(&alice.p2p_address()).await?;
//! let info = watcher.recv().await.expect("Alice's presence");
//! assert_eq!(info.status, PresenceStatus::Available);
//! assert_eq!(info.note.as_deref(), Some("Working from home"));
//!
//! alice.busy().await?;
//! assert_eq!(watcher.recv().await.expect("a change").status, PresenceStatus::Busy);
//! # Ok(()) }
//! ```
//!
//! # What the SDK does for you
//! * **Refreshes.** REGISTER, PUBLISH (by entity tag, `SIP-If-Match`) and SUBSCRIBE are
//!   refreshed at four fifths of the interval the server granted. A `412` to a publication
//!   refresh publishes the document again in full; a `481` to a subscription refresh, or a
//!   NOTIFY ending the subscription with a reason that allows it, subscribes again (with a
//!   growing delay between failures); a failed refresh is retried the same way, so the peer
//!   recovers when the network or the server comes back. A closed TCP connection triggers
//!   the refreshes at once.
//! * **Target refresh.** The Contact of every NOTIFY becomes where the subscription's
//!   refreshes go: when a cluster edge dies and another takes its dialogs over, the watcher
//!   follows.
//! * **Authentication.** A bearer token, or a [`TokenSource`] callback called again when the
//!   server answers `401` with `error="invalid_token"`; or Digest credentials. Credentials
//!   go only to the server, never to other peers.
//! * **Clean exit.** [`PresenceWatcher::stop`] (or dropping it) unsubscribes;
//!   [`SimplePeer::shutdown`] (or dropping the last handle) unpublishes, unregisters and
//!   sends its direct watchers a final NOTIFY.
//! * **Bad input.** A malformed NOTIFY body or an unexpected answer is an error item on the
//!   watcher's stream; the watcher keeps working.
//!
//! Transports: UDP (with RFC 3261 retransmissions), TCP (one connection per server or
//! peer, kept open so NOTIFYs come back over it), and to servers TLS
//! ([`PeerBuilder::tls_config`]) and WebSocket (RFC 7118, `;transport=ws`). Secure
//! WebSocket is not implemented.

#![warn(missing_docs)]

mod buddy;
mod config;
mod core;
mod error;
mod notifier;
mod peer;
mod refresh;
mod status;
mod transport;
mod watch;

pub use buddy::BuddyList;
pub use config::{Credentials, Timers, TokenFuture, TokenSource};
pub use error::{Error, Result};
pub use peer::{PeerBuilder, PresenceBuilder, RegisterBuilder, SimplePeer};
pub use status::{PresenceInfo, PresenceStatus};
pub use transport::Transport;
pub use watch::{PresenceWatcher, WatchItem};

/// The PIDF crate, for [`PresenceInfo::extensions`] and whole documents.
pub use pidf;
/// rustls, for [`PeerBuilder::tls_config`].
pub use rustls;
