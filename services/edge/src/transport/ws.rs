//! SIP over WebSocket (RFC 7118), plain (WS) or over TLS (WSS).
//!
//! * The upgrade must offer the `sip` subprotocol, which the answer selects
//!   (RFC 7118 §4); other upgrades are refused with 400. With an origin
//!   allow-list, a browser's upgrade from another origin is refused with 403
//!   (cross-site WebSocket hijacking); clients sending no Origin pass.
//! * Each WebSocket message, text or binary, carries exactly one SIP message
//!   (§5.1): no stream framing. What the edge sends goes as a text message
//!   (SIP is UTF-8), as a binary one otherwise.
//! * A message of CRLFs only is a keep-alive; a double CRLF gets a CRLF
//!   back, as on TCP. WebSocket pings are answered by the library.
//! * Messages and frames are bounded by the SIP message size limit; the
//!   upgrade request must complete within the message timeout, and so must
//!   every later message once its first byte arrived.

use std::sync::Arc;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::server::{
    Callback, ErrorResponse, Request, Response,
};
use tokio_tungstenite::tungstenite::http::{HeaderValue, StatusCode};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use super::connections::ConnectionTable;
use super::stream::{self, Closed, Deadlines, Next, Writer};
use super::{Handler, ReadClock, Source, TransportCounters};
use crate::Edge;

/// The WebSocket subprotocol of SIP (RFC 7118 §4).
pub const SUBPROTOCOL: &str = "sip";

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
    let max = edge.config.limits.max_message;
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    let upgrade = tokio::time::timeout(
        edge.config.message_timeout,
        tokio_tungstenite::accept_hdr_async_with_config(
            connection,
            SelectSip {
                allowed_origins: &edge.config.ws_allowed_origins,
            },
            Some(config),
        ),
    )
    .await;
    let socket = match upgrade {
        Ok(Ok(socket)) => socket,
        Ok(Err(e)) => {
            TransportCounters::bump(&edge.transports.counters.ws_handshake_failures);
            tracing::info!(remote = %source.remote, protocol = %source.protocol, error = %e, "WebSocket upgrade refused");
            return Closed::Handshake;
        }
        Err(_) => {
            TransportCounters::bump(&edge.transports.counters.ws_handshake_failures);
            tracing::info!(remote = %source.remote, protocol = %source.protocol, "WebSocket upgrade timed out");
            return Closed::Handshake;
        }
    };
    let (mut sink, mut messages) = socket.split();
    let (queue, mut rx) = mpsc::channel::<Bytes>(stream::WRITE_QUEUE);
    let write_timeout = edge.config.message_timeout;
    let remote = source.remote;
    let mut writer = Writer::from_task(tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            let message = match Utf8Bytes::try_from(bytes.clone()) {
                Ok(text) => Message::Text(text),
                Err(_) => Message::Binary(bytes),
            };
            match tokio::time::timeout(write_timeout, sink.send(message)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::debug!(%remote, error = %e, "WebSocket write failed");
                    return true;
                }
                Err(_) => return false,
            }
        }
        let _ = tokio::time::timeout(write_timeout, sink.close()).await;
        true
    }));
    let registration =
        ConnectionTable::register(edge, source.protocol, source.remote, queue.clone());
    clock.clear();
    let mut deadlines = Deadlines::new(edge, clock);
    let read = async {
        loop {
            let wait = match deadlines.next() {
                Next::Read(wait) => wait,
                Next::Close(closed) => return closed,
            };
            let data = match tokio::time::timeout(wait, messages.next()).await {
                Err(_) => continue,
                Ok(None) => return Closed::Peer,
                Ok(Some(Err(tungstenite::Error::Capacity(e)))) => {
                    TransportCounters::bump(&edge.transports.counters.oversized_stream_messages);
                    tracing::warn!(%remote, error = %e, "WebSocket message over the size limit; closing");
                    return Closed::Refused;
                }
                Ok(Some(Err(e))) => {
                    tracing::debug!(%remote, error = %e, "WebSocket read failed");
                    return Closed::Peer;
                }
                Ok(Some(Ok(Message::Text(text)))) => Bytes::from(text),
                Ok(Some(Ok(Message::Binary(data)))) => data,
                Ok(Some(Ok(Message::Close(_)))) => return Closed::Peer,
                Ok(Some(Ok(_))) => {
                    // Ping or pong: alive, nothing to hand on.
                    deadlines.activity(true);
                    continue;
                }
            };
            if data.iter().all(|b| matches!(b, b'\r' | b'\n')) {
                deadlines.activity(true);
                if data.windows(4).any(|w| w == b"\r\n\r\n") {
                    let _ = queue.try_send(Bytes::from_static(b"\r\n"));
                }
                continue;
            }
            deadlines.message(true);
            super::deliver(handler, edge, data, source).await;
        }
    };
    let closed = tokio::select! {
        closed = read => closed,
        closed = writer.ended() => closed,
    };
    drop(registration);
    drop(queue);
    writer.drain().await;
    closed
}

/// The upgrade check, as the WebSocket library calls it.
struct SelectSip<'a> {
    allowed_origins: &'a [String],
}

impl Callback for SelectSip<'_> {
    #[allow(clippy::result_large_err)]
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        select_sip(self.allowed_origins, request, response)
    }
}

/// Accepts an upgrade offering the `sip` subprotocol, and selects it.
#[allow(clippy::result_large_err)]
fn select_sip(
    allowed_origins: &[String],
    request: &Request,
    mut response: Response,
) -> Result<Response, ErrorResponse> {
    if !allowed_origins.is_empty() {
        if let Some(origin) = request.headers().get("Origin") {
            let origin = origin.to_str().unwrap_or_default();
            if !allowed_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
            {
                let mut refusal =
                    ErrorResponse::new(Some("this origin may not open a SIP WebSocket\n".into()));
                *refusal.status_mut() = StatusCode::FORBIDDEN;
                return Err(refusal);
            }
        }
    }
    let offered = request
        .headers()
        .get_all("Sec-WebSocket-Protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == SUBPROTOCOL);
    if !offered {
        let mut refusal = ErrorResponse::new(Some(
            "the SIP WebSocket subprotocol (Sec-WebSocket-Protocol: sip) is required\n".into(),
        ));
        *refusal.status_mut() = StatusCode::BAD_REQUEST;
        return Err(refusal);
    }
    response.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static(SUBPROTOCOL),
    );
    Ok(response)
}
