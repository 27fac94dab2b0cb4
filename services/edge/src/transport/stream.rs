//! What every stream transport shares: accepting under the connection caps,
//! the TLS handshake (TLS, WSS), read deadlines (first message, idle, per
//! message), and the writer task that lets NOTIFYs and responses reuse the
//! connection a request came on.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tls::ReloadingTls;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::connections::ConnectionTable;
use super::{Handler, Metered, Protocol, ReadClock, Slot, Source, TransportCounters};
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
    handler: Handler,
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
        let Some(slot) = ConnectionTable::admit(&edge, protocol, remote) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            edge.clone(),
            protocol,
            stream,
            remote,
            tls.as_ref().map(|t| t.acceptor()),
            slot,
            handler.clone(),
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
    handler: Handler,
) {
    let clock = ReadClock::new();
    let metered = Metered::new(stream, clock.clone());
    let source = Source { protocol, remote };
    let closed = match (protocol, tls) {
        (Protocol::Tcp, _) => super::tcp::serve(&edge, &handler, metered, clock, source).await,
        (Protocol::Ws, _) => super::ws::serve(&edge, &handler, metered, clock, source).await,
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
                super::tcp::serve(&edge, &handler, tls_stream, clock, source).await
            } else {
                super::ws::serve(&edge, &handler, tls_stream, clock, source).await
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
    /// No whole SIP message within the first-message timeout of opening.
    Silent,
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
            Closed::Silent => {
                TransportCounters::bump(&counters.silent_connections);
                tracing::info!(remote = %source.remote, protocol = %source.protocol, "connection closed: no SIP message within the first-message timeout");
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

/// The first-message, idle and per-message deadlines of one connection.
pub(super) struct Deadlines {
    idle: Duration,
    message: Duration,
    last_activity: Instant,
    /// Until a whole SIP message has arrived: when the connection is
    /// closed unless one does. Keep-alives do not push it back, so CRLFs
    /// alone cannot hold a slot of the connection cap.
    first_message_by: Option<Instant>,
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
        let now = Instant::now();
        Deadlines {
            idle: edge.config.idle_timeout,
            message: edge.config.message_timeout,
            last_activity: now,
            first_message_by: Some(now + edge.config.first_message_timeout),
            clock,
        }
    }

    /// A keep-alive (or a WebSocket ping) was taken whole.
    pub(super) fn activity(&mut self, buffer_empty: bool) {
        self.last_activity = Instant::now();
        if buffer_empty {
            self.clock.clear();
        }
    }

    /// A whole SIP message was taken.
    pub(super) fn message(&mut self, buffer_empty: bool) {
        self.first_message_by = None;
        self.activity(buffer_empty);
    }

    pub(super) fn next(&self) -> Next {
        let now = Instant::now();
        // Bytes may start arriving during a long idle wait: look again
        // often enough to hold the message deadline.
        let recheck = (self.message / 2).max(Duration::from_millis(50));
        let first = match self.first_message_by {
            Some(by) if now >= by => return Next::Close(Closed::Silent),
            Some(by) => by - now,
            None => Duration::MAX,
        };
        if let Some(started) = self.clock.pending_since() {
            let deadline = started + self.message;
            if now >= deadline {
                return Next::Close(Closed::Slow);
            }
            return Next::Read((deadline - now).min(recheck).min(first));
        }
        let deadline = self.last_activity + self.idle;
        if now >= deadline {
            return Next::Close(Closed::Idle);
        }
        Next::Read((deadline - now).min(recheck).min(first))
    }
}

/// The task writing queued messages to one connection.
///
/// It may end before the reader does (the peer stopped reading, a write
/// failed): then its outcome is taken once, and the closing connection
/// does not wait for it again — a finished `JoinHandle` must not be polled
/// a second time.
pub(super) struct Writer {
    task: Option<JoinHandle<bool>>,
}

impl Writer {
    /// Spawns the task that writes queued messages to a byte-stream
    /// connection. It ends when every queue sender is gone or a write does
    /// not complete within `timeout`; a clean end shuts the stream down
    /// (TLS close_notify).
    pub(super) fn spawn<W>(
        mut writer: W,
        mut queue: mpsc::Receiver<Bytes>,
        timeout: Duration,
        remote: SocketAddr,
    ) -> Writer
    where
        W: AsyncWrite + Unpin + Send + 'static,
    {
        Writer::from_task(tokio::spawn(async move {
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
            // Flushed and shut down (FIN, or TLS close_notify): what was
            // queued last — a 400 before closing — reaches the peer.
            let _ = tokio::time::timeout(DRAIN, writer.flush()).await;
            let _ = tokio::time::timeout(DRAIN, writer.shutdown()).await;
            true
        }))
    }

    /// A writer task returning `true` for a clean end, `false` for a stall.
    pub(super) fn from_task(task: JoinHandle<bool>) -> Writer {
        Writer { task: Some(task) }
    }

    /// Waits for the task to end by itself (select on it against the
    /// reader); pending forever once its outcome was taken.
    pub(super) async fn ended(&mut self) -> Closed {
        let Some(task) = self.task.as_mut() else {
            return std::future::pending().await;
        };
        let outcome = task.await;
        self.task = None;
        match outcome {
            Ok(false) => Closed::WriteStalled,
            _ => Closed::Peer,
        }
    }

    /// Waits (bounded) for a closing connection's writer to send what is
    /// queued; nothing to wait for if it already ended.
    pub(super) async fn drain(mut self) {
        let Some(mut task) = self.task.take() else {
            return;
        };
        if tokio::time::timeout(DRAIN, &mut task).await.is_err() {
            task.abort();
        }
    }
}

/// Reads and discards what a refused peer still sends, until it closes or
/// `DRAIN` passes, so that the socket is not closed with unread bytes in it:
/// that would reset the connection, and a reset may destroy the answer
/// (413, 400) the peer has not read yet.
pub(super) async fn linger<R: AsyncRead + Unpin>(mut reader: R) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(DRAIN, async {
        let mut total = 0usize;
        // Bounded: a peer streaming at full speed is cut off regardless.
        while total < (1 << 20) {
            match reader.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// The writer ends first (the peer reset the connection while the
    /// edge was writing to it); the reader ends later, when data arrives
    /// or the peer goes. Closing must then not wait on the finished writer
    /// again — that panicked with "JoinHandle polled after completion".
    #[tokio::test]
    async fn a_writer_that_ended_first_is_not_awaited_again() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let peer = tokio::spawn(async move {
            let socket = std::net::TcpStream::connect(addr).unwrap();
            // A zero linger makes the close a reset: the edge's writes fail.
            socket2::SockRef::from(&socket)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(socket);
        });
        let (stream, remote) = listener.accept().await.unwrap();
        peer.await.unwrap();
        let (mut reader, writer_half) = stream.into_split();
        let (queue, rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);
        let mut writer = Writer::spawn(writer_half, rx, Duration::from_secs(5), remote);
        // Write until the reset is noticed and the writer gives up.
        let feed = {
            let queue = queue.clone();
            tokio::spawn(async move {
                for _ in 0..1000 {
                    if queue.send(Bytes::from(vec![b'x'; 65536])).await.is_err() {
                        return;
                    }
                }
            })
        };
        let read = async {
            // The reader notices later: after the writer has ended.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let mut buf = [0u8; 16];
            let _ = reader.read(&mut buf).await;
            // Told apart from the writer's outcome below.
            Closed::Idle
        };
        let closed = tokio::select! {
            closed = read => closed,
            closed = writer.ended() => closed,
        };
        assert!(
            matches!(closed, Closed::Peer),
            "the writer ends first: {closed:?}"
        );
        drop(queue);
        feed.abort();
        // Before the fix this polled the finished JoinHandle and panicked.
        tokio::time::timeout(Duration::from_secs(5), writer.drain())
            .await
            .expect("draining a finished writer returns at once");
    }
}
