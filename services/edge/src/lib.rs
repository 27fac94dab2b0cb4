//! The SIP edge of the presence cluster.
//!
//! An edge parses SIP, authenticates requests, runs transactions and
//! terminates SUBSCRIBE dialogs; it keeps nothing that is lost when it dies.
//! Registrations, publications and subscription records are written by the
//! registrar and presence services over gRPC ([`services`]); changes reach
//! the edge on the presentities' channels ([`fanout`]) and leave it as
//! NOTIFYs ([`dialogs`]).
//!
//! Map of the crate:
//! * [`transport`] — UDP, TCP, TLS and WebSocket (WS/WSS, RFC 7118)
//!   listeners, connection caps, and sending to a peer; received messages
//!   go to a handler.
//! * [`transaction`] — RFC 3261 §17 non-INVITE server and client transactions.
//! * [`limits`] — request rate limits, before authentication.
//! * [`authn`] — who sent a request: bearer tokens (RFC 8898), Digest
//!   (RFC 2617, RFC 8760) against an HA1 file, trusted peers' asserted
//!   identities (RFC 3325), by source network and transport.
//! * [`methods`] — the handler: one file per SIP method the edge serves.
//! * [`packages`] — the event packages served (`presence`, `presence.winfo`):
//!   Event name, body type and how each NOTIFY body is made.
//! * [`dialogs`] — the dialogs this edge holds, their NOTIFY senders and
//!   the NOTIFYs themselves.
//! * [`fanout`] — channel messages to dialogs.
//! * [`lease`] — the edge's lease, claims of gone edges' dialogs, restoring
//!   records after a loss of state; [`drain`] — a draining edge.
//! * [`services`] — the RPCs the edge makes; [`replicas`] — client-side
//!   balancing over the services' replicas.
//! * [`metrics`] — what the edge reports on `--metrics-listen`.
//!
//! Imports go one way: transport → methods → dialogs → dialogs::notify.
//! What the edge shares with the services (dialog records, watcher entries,
//! channel announcements, their protobuf forms) comes from the `contract`
//! crate; the edge depends on no service crate.

// Handlers answer a refused request with the SIP response itself
// (`Result<_, sip::Response>`). A response is large because its headers are
// held inline to avoid allocation; it is built once per request and moved,
// so boxing it would add an allocation and gain nothing.
#![allow(clippy::result_large_err)]

pub mod authn;
pub mod cli;
pub mod command;
pub mod config;
pub mod dialogs;
pub mod drain;
pub mod fanout;
pub mod lease;
pub mod limits;
pub mod methods;
pub mod metrics;
pub mod packages;
pub mod replicas;
pub mod services;
pub mod transaction;
pub mod transport;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use store::Backend;
use tokio::task::JoinHandle;

pub use config::EdgeConfig;

/// Everything a request handler can reach; shared by all tasks of an edge.
pub struct Edge {
    pub config: EdgeConfig,
    pub services: services::Services,
    pub authn: authn::Authenticator,
    pub transports: transport::Transports,
    pub server_transactions: transaction::ServerTransactions,
    pub client_transactions: transaction::ClientTransactions,
    pub dialogs: dialogs::Dialogs,
    /// Set on SIGTERM (see [`drain`]).
    pub draining: std::sync::atomic::AtomicBool,
    pub limiter: limits::Limiter,
}

impl Edge {
    /// Whether the edge is draining (SIGTERM; see [`drain`]).
    pub fn is_draining(&self) -> bool {
        self.draining.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A started edge: its bound addresses and its tasks.
pub struct RunningEdge {
    pub edge: Arc<Edge>,
    pub udp_addrs: Vec<SocketAddr>,
    pub tcp_addrs: Vec<SocketAddr>,
    /// Listeners and housekeeping: stopped when the drain's grace ends.
    tasks: Vec<JoinHandle<()>>,
    /// Hearing the presentities' channels: stopped at the hand-over.
    fanout: JoinHandle<()>,
    /// Lease renewals and claims: stopped first in a drain.
    lease: JoinHandle<()>,
}

impl RunningEdge {
    /// Stops every task of the edge.
    pub fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
        self.fanout.abort();
        self.lease.abort();
    }

    /// Graceful drain (SIGTERM; the steps are described in [`drain`]):
    /// answer every request until the sockets close at the end of
    /// `drain_grace`, and hand the dialogs over at once, with what each
    /// watcher last acknowledged, by releasing the lease.
    pub async fn drain(self) {
        let edge = &self.edge;
        let started = tokio::time::Instant::now();
        let grace = edge.config.drain_grace;
        edge.draining
            .store(true, std::sync::atomic::Ordering::SeqCst);
        tracing::info!(?grace, dialogs = edge.dialogs.len(), "draining");
        // Nothing is renewed or claimed from now on: this edge takes no
        // dialog over, and its lease is only released.
        self.lease.abort();
        let given_up = edge
            .dialogs
            .hand_over(drain::IN_FLIGHT_NOTIFY_WAIT.min(grace))
            .await;
        self.fanout.abort();
        lease::hand_over(edge, given_up).await;
        // Keep answering until the grace ends (peers and load balancers
        // take a while to stop sending here).
        tokio::time::sleep_until(started + grace).await;
        for task in &self.tasks {
            task.abort();
        }
        // Answers of requests already received still go out (sending does
        // not need the receive loops).
        let deadline = tokio::time::Instant::now() + edge.config.rpc_timeout;
        while edge.server_transactions.in_progress() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // A SUBSCRIBE under way when the drain began (or a refresh racing
        // the hand-over) may have activated a dialog here meanwhile.
        let late = edge.dialogs.hand_over(drain::IN_FLIGHT_NOTIFY_WAIT).await;
        if !late.is_empty() {
            tracing::info!(
                dialogs = late.len(),
                "handing over dialogs activated while draining"
            );
        }
        lease::hand_over(edge, late).await;
        tracing::info!("edge drained");
    }
}

impl Drop for RunningEdge {
    fn drop(&mut self) {
        self.abort();
    }
}

/// Binds the configured listeners and starts serving. `feed_backend` is
/// where presentity channels are heard (Redis, or the in-memory backend of
/// a single-process node).
pub async fn start(
    config: EdgeConfig,
    authn: authn::Authenticator,
    feed_backend: Arc<dyn Backend>,
) -> anyhow::Result<RunningEdge> {
    let services = services::Services::connect(&config)?;
    start_with(config, services, authn, feed_backend).await
}

/// [`start`] with the services given: a single-process node passes the
/// presence and registrar services themselves, called in-process.
pub async fn start_with(
    config: EdgeConfig,
    services: services::Services,
    authn: authn::Authenticator,
    feed_backend: Arc<dyn Backend>,
) -> anyhow::Result<RunningEdge> {
    let (feed, feed_rx) = feed_backend
        .open_feed()
        .await
        .context("opening the presentity change feed")?;
    let bound = transport::bind(&config).await?;
    let transports = transport::Transports::new(&config, &bound)?;
    let edge = Arc::new(Edge {
        services,
        authn,
        transports,
        server_transactions: transaction::ServerTransactions::new(config.t1),
        client_transactions: transaction::ClientTransactions::new(),
        dialogs: dialogs::Dialogs::new(feed),
        draining: std::sync::atomic::AtomicBool::new(false),
        limiter: limits::Limiter::new(&config.rate_limits),
        config,
    });
    metrics::register_collector(&edge);
    let handler: transport::Handler =
        Arc::new(|edge, data, source| Box::pin(methods::receive(edge, data, source)));
    let mut tasks = transport::serve(edge.clone(), bound.clone(), handler);
    let fanout = tokio::spawn(fanout::run(edge.clone(), feed_rx));
    tasks.push(tokio::spawn(transaction::purge_loop(edge.clone())));
    tasks.push(tokio::spawn(dialogs::wake_overdue_loop(edge.clone())));
    let lease = tokio::spawn(lease::run(edge.clone()));
    tracing::info!(
        edge_id = %edge.config.edge_id,
        udp = ?bound.udp_addrs(),
        tcp = ?bound.tcp_addrs(),
        "edge listening"
    );
    Ok(RunningEdge {
        udp_addrs: bound.udp_addrs(),
        tcp_addrs: bound.tcp_addrs(),
        edge,
        tasks,
        fanout,
        lease,
    })
}
