//! What every stream transport shares: accepting under the connection cap,
//! the TLS handshake (TLS, WSS), read deadlines, and the writer task that
//! lets NOTIFYs and responses reuse the connection a request came on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tls::ReloadingTls;
use bytes::Bytes;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Metered, Protocol, ReadClock, Slot, Source, TransportCounters, Transports};
use crate::Edge;

/// Messages queued for one connection's writer; a sender waits at most the
/// message timeout for room, then gives up (the peer is not reading).
pub(super) const WRITE_QUEUE: usize = 256;
/// How long queued messages may take to leave once a connection is closing.
const DRAIN: Duration = Duration::from_secs(2);

pub(super) async fn accept_loop(
    edge: Arc<Edge>,
    protocol: Protocol,
    listener: Arc<TcpListener>,
    tls: Option<Arc<ReloadingTls>>,
) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(r) => r,
            Err(e) => {
                // Out of file descriptors, typically: back off, keep serving.
                tracing::warn!(%protocol, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = Transports::admit(&edge, protocol, remote) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            edge.clone(),
            protocol,
            stream,
            remote,
            tls.as_ref().and_then(|t| t.acceptor()),
            slot,
        ));
    }
}

async fn connection(
    edge: Arc<Edge>,
    protocol: Protocol,
    stream: TcpStream,
    remote: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    _slot: Slot,
) {
    let clock = ReadClock::new();
    let metered = Metered::new(stream, clock.clone());
    let source = Source { protocol, remote };
    let closed = match (protocol, tls) {
        (Protocol::Tcp, _) => super::tcp::serve(&edge, metered, clock, source).await,
        (Protocol::Ws, _) => super::ws::serve(&edge, metered, clock, source).await,
        (Protocol::Tls | Protocol::Wss, Some(acceptor)) => {
            let handshake =
                tokio::time::timeout(edge.config.message_timeout, acceptor.accept(metered)).await;
            let tls_stream = match handshake {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    TransportCounters::bump(&edge.transports.counters.tls_handshake_failures);
                    tracing::info!(%remote, %protocol, error = %e, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    TransportCounters::bump(&edge.transports.counters.tls_handshake_failures);
                    tracing::info!(%remote, %protocol, "TLS handshake timed out");
                    return;
                }
            };
            clock.clear();
            if let Some(peer) = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
            {
                tracing::debug!(%remote, certificate_bytes = peer.len(), "client certificate verified");
            }
            if protocol == Protocol::Tls {
                super::tcp::serve(&edge, tls_stream, clock, source).await
            } else {
                super::ws::serve(&edge, tls_stream, clock, source).await
            }
        }
        (Protocol::Tls | Protocol::Wss, None) | (Protocol::Udp, _) => {
            tracing::error!(%protocol, "stream listener without its TLS configuration");
            return;
        }
    };
    closed.record(&edge, source);
}

/// Why a connection ended.
#[derive(Debug)]
pub(super) enum Closed {
    /// The peer closed it (or it failed under us).
    Peer,
    /// Nothing for the idle timeout.
    Idle,
    /// A message did not complete within the message timeout.
    Slow,
    /// A message or frame over the size limit, or unframeable bytes.
    Refused,
    /// The writer gave up (the peer stopped reading).
    WriteStalled,
    /// A WebSocket upgrade that was refused or failed.
    Handshake,
}

impl Closed {
    fn record(&self, edge: &Edge, source: Source) {
        let counters = &edge.transports.counters;
        match self {
            Closed::Idle => {
                TransportCounters::bump(&counters.idle_connections);
                tracing::debug!(remote = %source.remote, protocol = %source.protocol, "idle connection closed");
            }
            Closed::Slow => {
                TransportCounters::bump(&counters.slow_connections);
                tracing::info!(remote = %source.remote, protocol = %source.protocol, "connection closed: message not complete within the message timeout");
            }
            Closed::WriteStalled => {
                TransportCounters::bump(&counters.stalled_writes);
                tracing::info!(remote = %source.remote, protocol = %source.protocol, "connection closed: peer does not read");
            }
            Closed::Peer | Closed::Refused | Closed::Handshake => {
                tracing::debug!(remote = %source.remote, protocol = %source.protocol, reason = ?self, "connection closed");
            }
        }
    }
}

/// The idle and per-message deadlines of one connection.
pub(super) struct Deadlines {
    idle: Duration,
    message: Duration,
    last_activity: Instant,
    clock: Arc<ReadClock>,
}

/// What a reader should do next.
pub(super) enum Next {
    /// Read, for at most this long before asking again.
    Read(Duration),
    Close(Closed),
}

impl Deadlines {
    pub(super) fn new(edge: &Edge, clock: Arc<ReadClock>) -> Self {
        Deadlines {
            idle: edge.config.idle_timeout,
            message: edge.config.message_timeout,
            last_activity: Instant::now(),
            clock,
        }
    }

    /// A message or keep-alive was taken whole.
    pub(super) fn activity(&mut self, buffer_empty: bool) {
        self.last_activity = Instant::now();
        if buffer_empty {
            self.clock.clear();
        }
    }

    pub(super) fn next(&self) -> Next {
        let now = Instant::now();
        // Bytes may start arriving during a long idle wait: look again
        // often enough to hold the message deadline.
        let recheck = (self.message / 2).max(Duration::from_millis(50));
        if let Some(started) = self.clock.pending_since() {
            let deadline = started + self.message;
            if now >= deadline {
                return Next::Close(Closed::Slow);
            }
            return Next::Read((deadline - now).min(recheck));
        }
        let deadline = self.last_activity + self.idle;
        if now >= deadline {
            return Next::Close(Closed::Idle);
        }
        Next::Read((deadline - now).min(recheck))
    }
}

/// Spawns the task that writes queued messages to a byte-stream
/// connection. It ends when every queue sender is gone or a write does not
/// complete within `timeout`; a clean end shuts the stream down (TLS
/// close_notify).
pub(super) fn spawn_writer<W>(
    mut writer: W,
    mut queue: mpsc::Receiver<Bytes>,
    timeout: Duration,
    remote: SocketAddr,
) -> JoinHandle<bool>
where
    W: AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        while let Some(bytes) = queue.recv().await {
            match tokio::time::timeout(timeout, writer.write_all(&bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "write failed");
                    return true;
                }
                Err(_) => return false,
            }
        }
        let _ = tokio::time::timeout(DRAIN, writer.shutdown()).await;
        true
    })
}

/// Waits (bounded) for a closing connection's writer to send what is queued.
pub(super) async fn drain(mut writer: JoinHandle<bool>) {
    if tokio::time::timeout(DRAIN, &mut writer).await.is_err() {
        writer.abort();
    }
}
