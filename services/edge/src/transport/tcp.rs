//! SIP over a byte stream — TCP, and TLS once its handshake is done:
//! Content-Length framing (RFC 3261 §18.3), CRLF keep-alives (RFC 5626
//! §3.5.1: a double CRLF "ping" gets a single CRLF "pong"), the idle and
//! per-message deadlines, a buffer bounded by the message size limit, and a
//! writer task so NOTIFYs reuse the connection the SUBSCRIBE came on.

use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::mpsc;

use super::connections::ConnectionTable;
use super::stream::{self, Closed, Deadlines, Next, Writer};
use super::{Handler, ReadClock, Source, TransportCounters};
use crate::Edge;

pub(super) async fn serve<S>(
    edge: &Arc<Edge>,
    handler: &Handler,
    connection: S,
    clock: Arc<ReadClock>,
    source: Source,
) -> Closed
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(connection);
    let (queue, rx) = mpsc::channel::<Bytes>(stream::WRITE_QUEUE);
    let mut writer = Writer::spawn(writer, rx, edge.config.message_timeout, source.remote);
    let registration =
        ConnectionTable::register(edge, source.protocol, source.remote, queue.clone());
    let closed = tokio::select! {
        closed = read_loop(edge, handler, &mut reader, clock, source, &queue) => closed,
        closed = writer.ended() => closed,
    };
    drop(registration);
    drop(queue);
    writer.drain().await;
    if matches!(closed, Closed::Refused) {
        // The answer to the refused message is written and the stream shut
        // down for writing; read what the peer still sends so that closing
        // does not reset the connection under the answer.
        stream::linger(reader).await;
    }
    closed
}

async fn read_loop<R: AsyncRead + Unpin>(
    edge: &Arc<Edge>,
    handler: &Handler,
    reader: &mut R,
    clock: Arc<ReadClock>,
    source: Source,
    queue: &mpsc::Sender<Bytes>,
) -> Closed {
    let limits = &edge.config.limits;
    let mut deadlines = Deadlines::new(edge, clock);
    // Grows up to one message (the framing refuses more) plus one read.
    let mut buf = BytesMut::with_capacity(4096);
    // Bytes of a double-CRLF ping seen so far: a ping split across two
    // reads still gets its pong.
    let mut ping_progress = 0;
    loop {
        let wait = match deadlines.next() {
            Next::Read(wait) => wait,
            Next::Close(closed) => return closed,
        };
        match tokio::time::timeout(wait, reader.read_buf(&mut buf)).await {
            Err(_) => continue,
            Ok(Err(e)) => {
                tracing::debug!(remote = %source.remote, error = %e, "read failed");
                return Closed::Peer;
            }
            Ok(Ok(0)) => return Closed::Peer,
            Ok(Ok(_)) => {}
        }
        loop {
            let framing = match sip::frame(&buf, limits) {
                Ok(framing) => framing,
                Err(e) => {
                    let counters = &edge.transports.counters;
                    if matches!(e.status_code(), 413 | 513) {
                        TransportCounters::bump(&counters.oversized_stream_messages);
                    } else {
                        TransportCounters::bump(&counters.unparseable);
                    }
                    tracing::warn!(remote = %source.remote, protocol = %source.protocol, error = %e, "unframeable stream data; closing");
                    // The stream cannot be resynchronised: answer what can
                    // be answered (413, 513, 400) and close.
                    if let Some(response) = sip::error_response(&buf, &e) {
                        let _ = queue.try_send(response.to_bytes());
                    }
                    return Closed::Refused;
                }
            };
            if framing.skip > 0 {
                let pings = count_pings(&mut ping_progress, &buf[..framing.skip]);
                buf.advance(framing.skip);
                for _ in 0..pings {
                    let _ = queue.try_send(Bytes::from_static(b"\r\n"));
                }
                deadlines.activity(buf.is_empty());
            }
            let Some(len) = framing.len else {
                break;
            };
            ping_progress = 0;
            let message = buf.split_to(len).freeze();
            deadlines.message(buf.is_empty());
            super::deliver(handler, edge, message, source).await;
        }
    }
}

/// Counts the double-CRLF keep-alive pings in `skipped` (bytes between
/// messages), continuing a ping begun in earlier bytes.
fn count_pings(progress: &mut usize, skipped: &[u8]) -> usize {
    const PING: &[u8; 4] = b"\r\n\r\n";
    let mut pings = 0;
    for &byte in skipped {
        if byte == PING[*progress] {
            *progress += 1;
            if *progress == PING.len() {
                pings += 1;
                *progress = 0;
            }
        } else if byte == b'\r' {
            *progress = 1;
        } else {
            *progress = 0;
        }
    }
    pings
}

#[cfg(test)]
mod tests {
    use super::count_pings;

    #[test]
    fn a_ping_split_across_reads_is_counted_once() {
        let mut progress = 0;
        assert_eq!(count_pings(&mut progress, b"\r\n"), 0);
        assert_eq!(count_pings(&mut progress, b"\r\n"), 1);
        assert_eq!(count_pings(&mut progress, b"\r\n\r\n\r\n\r\n"), 2);
        assert_eq!(count_pings(&mut progress, b"\r\n\r\r\n\r\n"), 1);
        assert_eq!(progress, 0);
    }
}
