//! SIP transports: UDP, TCP, TLS, WebSocket and secure WebSocket (RFC 7118)
//! listeners on IPv4 and IPv6, and sending to a peer.
//!
//! Datagrams and framed stream messages are handed to the [`Handler`] the
//! edge was started with (the transports know nothing of SIP methods). What
//! the edge sends goes back the way the peer came in: UDP to the address
//! RFC 3261 §18.2.2 and RFC 3581 name, stream transports over the
//! connection the request arrived on while it is open.
//!
//! Every stream connection (TCP, TLS, WS, WSS alike) counts against one cap
//! ([`EdgeConfig::max_connections`]) and against its source's share
//! ([`EdgeConfig::max_connections_per_source`]), must deliver a whole SIP
//! message within [`EdgeConfig::first_message_timeout`] of opening
//! (keep-alives do not count), is closed when idle
//! ([`EdgeConfig::idle_timeout`]) and must deliver each message within
//! [`EdgeConfig::message_timeout`] of its first byte — raw bytes, so a peer
//! trickling a TLS record or a WebSocket frame is caught as well as one
//! trickling SIP text. What is refused is counted in [`TransportCounters`]
//! and logged.
//!
//! Files: [`protocol`] (what a message came over), [`binding`] (listeners),
//! [`connections`] (the connection table and caps), [`adverts`] (Via and
//! Contact), [`metering`] (raw read clocks), [`counters`], and one file per
//! transport plus [`stream`] for what the stream transports share.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Edge, EdgeConfig};

mod adverts;
mod binding;
mod connections;
mod counters;
mod metering;
mod protocol;
mod stream;
mod tcp;
pub mod tls;
mod udp;
mod ws;

pub use binding::{bind, Bound};
pub(crate) use connections::Slot;
pub use counters::TransportCounters;
pub(crate) use metering::{Metered, ReadClock};
pub use protocol::{host_is, Protocol, Source, SourceKey};
pub use tls::TlsSettings;

/// What the transports hand every received message to (datagram or framed
/// stream message): the edge wires it to SIP request handling. The future
/// is polled once on the transport's own task and only spawned if it has
/// to wait (see [`deliver`]).
pub type Handler = Arc<dyn Fn(Arc<Edge>, Bytes, Source) -> BoxFuture<'static, ()> + Send + Sync>;

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no {0} transport is configured")]
    NoTransport(Protocol),
    #[error("no open {0} connection to {1}")]
    NoConnection(Protocol, SocketAddr),
    #[error("the {0} connection to {1} is not draining its queue")]
    Stalled(Protocol, SocketAddr),
    #[error("send failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Sending side of the transports.
pub struct Transports {
    /// UDP sockets with their address family (`true`: IPv6), known once
    /// rather than asked of the kernel on every send.
    udp: Vec<(bool, Arc<UdpSocket>)>,
    connections: connections::ConnectionTable,
    adverts: adverts::Adverts,
    message_timeout: Duration,
    pub counters: TransportCounters,
}

impl Transports {
    /// The local ports of the UDP sockets (for their kernel counters).
    pub fn udp_ports(&self) -> Vec<u16> {
        self.udp
            .iter()
            .filter_map(|(_, socket)| socket.local_addr().ok().map(|a| a.port()))
            .collect()
    }

    /// Fails when the advertised host does not make a valid SIP URI.
    pub fn new(config: &EdgeConfig, bound: &Bound) -> anyhow::Result<Self> {
        let adverts = adverts::Adverts::new(config.advertised_host.as_deref(), &bound.all())?;
        Ok(Transports {
            udp: bound
                .udp
                .iter()
                .filter_map(|s| Some((s.local_addr().ok()?.is_ipv6(), s.clone())))
                .collect(),
            connections: connections::ConnectionTable::new(
                config.max_connections,
                config.max_connections_per_source,
            ),
            adverts,
            message_timeout: config.message_timeout,
            counters: TransportCounters::default(),
        })
    }

    /// Host and port this edge writes in Via for `protocol`.
    pub fn sent_by(&self, protocol: Protocol) -> (String, Option<u16>) {
        self.sent_by_for(protocol, None)
    }

    /// Host and port this edge writes in Via for `protocol` toward `remote`
    /// (the listener of the remote's address family, when there is one).
    pub fn sent_by_for(
        &self,
        protocol: Protocol,
        remote: Option<SocketAddr>,
    ) -> (String, Option<u16>) {
        let advert = self.adverts.get(protocol, remote);
        (advert.host.clone(), advert.port)
    }

    /// The edge's own URI for Contact headers on `protocol`.
    pub fn contact_uri(&self, protocol: Protocol) -> sip::Uri {
        self.contact_for(protocol, None, None)
    }

    /// The edge's Contact toward `remote` on `protocol`: a `sips:` URI when
    /// `peer_uri` (the Request-URI of a dialog-creating request, or a
    /// dialog's remote target) is `sips:` and the transport is secure
    /// (RFC 3261 §12.1.1), else `sip:` with a `transport` parameter.
    pub fn contact_for(
        &self,
        protocol: Protocol,
        remote: Option<SocketAddr>,
        peer_uri: Option<&sip::Uri>,
    ) -> sip::Uri {
        let wants_sips = peer_uri.is_some_and(|u| *u.scheme() == sip::Scheme::Sips);
        let advert = self.adverts.get(protocol, remote);
        match (&advert.sips_contact, wants_sips) {
            (Some(sips), true) => sips.clone(),
            _ => advert.contact.clone(),
        }
    }

    /// Where the response to a request whose (already stamped) top Via is
    /// `via` goes, per RFC 3261 §18.2.2 and RFC 3581 §4: over the same
    /// connection on stream transports; on UDP to the source address and
    /// port when `rport` is present, else to the source address (the
    /// `received` address) and the port in sent-by (default 5060).
    pub fn response_destination(via: &sip::Via, source: Source) -> Source {
        if source.protocol.is_reliable() || via.rport().is_some() {
            return source;
        }
        Source {
            protocol: source.protocol,
            remote: SocketAddr::new(source.remote.ip(), via.port.unwrap_or(5060)),
        }
    }

    /// Sends one message to a peer.
    pub async fn send(
        &self,
        protocol: Protocol,
        remote: SocketAddr,
        bytes: Bytes,
    ) -> Result<(), SendError> {
        if protocol == Protocol::Udp {
            let (_, socket) = self
                .udp
                .iter()
                .find(|(v6, _)| *v6 == remote.is_ipv6())
                .or_else(|| self.udp.first())
                .ok_or(SendError::NoTransport(protocol))?;
            socket.send_to(&bytes, remote).await?;
            return Ok(());
        }
        let queue = self
            .connections
            .queue(protocol, remote)
            .ok_or(SendError::NoConnection(protocol, remote))?;
        match queue.send_timeout(bytes, self.message_timeout).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                TransportCounters::bump(&self.counters.stalled_writes);
                Err(SendError::Stalled(protocol, remote))
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => {
                Err(SendError::NoConnection(protocol, remote))
            }
        }
    }

    /// Whether a stream connection of `protocol` to `remote` is open.
    pub fn has_connection(&self, protocol: Protocol, remote: SocketAddr) -> bool {
        self.connections.contains(protocol, remote)
    }

    /// Number of open stream connections.
    pub fn open_connections(&self) -> usize {
        self.connections.open()
    }
}

/// Hands one received message to `handler`, on the transport's own task as
/// far as it goes, and gives it a task of its own only if it has to wait.
///
/// Most messages are answered without waiting for anything (a
/// single-process node calls its services in-process, a UDP send does not
/// block), so most need no task: no allocation and copy of a task, no
/// hand-off to another worker thread and no wake-up of one. A message that
/// must wait (a remote service call, a full connection queue) continues in
/// its own task, so the transport goes on reading meanwhile. A future may
/// be polled from different tasks: each poll registers the waker it is
/// given, and the spawned task's first poll registers its own.
pub(crate) async fn deliver(handler: &Handler, edge: &Arc<Edge>, data: Bytes, source: Source) {
    let mut handling = handler(edge.clone(), data, source);
    let done = std::future::poll_fn(|cx| {
        std::task::Poll::Ready(Future::poll(Pin::as_mut(&mut handling), cx).is_ready())
    })
    .await;
    if !done {
        tokio::spawn(handling);
    }
}

/// Starts the receive loops of every bound socket and the counters log;
/// every received message goes to `handler`.
pub fn serve(edge: Arc<Edge>, bound: Bound, handler: Handler) -> Vec<JoinHandle<()>> {
    for (protocol, addr) in bound.all() {
        tracing::info!(%protocol, %addr, "SIP listener");
    }
    let mut tasks = Vec::new();
    for socket in bound.udp {
        for _ in 0..edge.config.udp_receivers.max(1) {
            tasks.push(tokio::spawn(udp::receive_loop(
                edge.clone(),
                socket.clone(),
                handler.clone(),
            )));
        }
    }
    if let Some(reloading) = &bound.tls {
        tasks.push(tokio::spawn(tls::watch(reloading.clone())));
    }
    for (protocol, listener) in bound.streams {
        let tls = if protocol.is_secure() {
            bound.tls.clone()
        } else {
            None
        };
        tasks.push(tokio::spawn(stream::accept_loop(
            edge.clone(),
            protocol,
            listener,
            tls,
            handler.clone(),
        )));
    }
    tasks.push(tokio::spawn(counters::log_counters(edge)));
    tasks
}
