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
//! * [`transport`] — UDP and TCP listeners, and sending to a peer.
//! * [`transaction`] — RFC 3261 §17 non-INVITE server and client transactions.
//! * [`authn`] — who sent a request (RFC 8898 bearer tokens).
//! * [`methods`] — one file per SIP method the edge serves.
//! * [`dialogs`] — the dialogs this edge holds and their NOTIFY senders.
//! * [`fanout`] — channel messages to NOTIFYs.
//! * [`replicas`] — client-side balancing over the services' replicas.
//! * [`metrics`] — what the edge reports on `--metrics-listen`.

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
pub mod fanout;
pub mod lease;
pub mod methods;
pub mod metrics;
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
}

/// A started edge: its bound addresses and its tasks.
pub struct RunningEdge {
    pub edge: Arc<Edge>,
    pub udp_addrs: Vec<SocketAddr>,
    pub tcp_addrs: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningEdge {
    /// Stops every task of the edge.
    pub fn abort(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }

    /// Graceful drain (SIGTERM): stop taking requests and hearing channels,
    /// hand the dialogs over at once by releasing the lease, and give
    /// in-flight transactions up to `drain_grace` to finish.
    pub async fn drain(self) {
        self.abort();
        match lease::renew(&self.edge, true).await {
            Ok(_) => tracing::info!("lease released; dialogs are being taken over"),
            Err(e) => {
                tracing::warn!(error = %e, "releasing the lease failed; dialogs move when it lapses")
            }
        }
        let deadline = tokio::time::Instant::now() + self.edge.config.drain_grace;
        while self.edge.server_transactions.in_progress() > 0
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
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
        config,
    });
    metrics::register_collector(&edge);
    let mut tasks = transport::serve(edge.clone(), bound.clone());
    tasks.push(tokio::spawn(fanout::run(edge.clone(), feed_rx)));
    tasks.push(tokio::spawn(transaction::purge_loop(edge.clone())));
    tasks.push(tokio::spawn(lease::run(edge.clone())));
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
    })
}
