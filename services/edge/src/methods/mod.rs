//! Incoming messages: parsing, transaction matching and one handler per SIP
//! method, each in its own file with the semantics it implements.

pub mod cancel;
pub mod options;
pub mod publish;
pub mod register;
pub mod subscribe;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use sip::{HeaderName, Message, Method, Request, Response, Scheme};

use crate::dialogs::NewDialog;
use crate::packages::{self, EventPackage};
use crate::services::Refusal;
use crate::transaction::{Begin, TransactionKey};
use crate::transport::Source;
use crate::Edge;

/// Methods the edge answers; everything else gets 405 with this list.
pub const ALLOW: &str = "REGISTER, PUBLISH, SUBSCRIBE, NOTIFY, OPTIONS, ACK, CANCEL";

/// What a handler produced: the response, and a dialog to start once the
/// response is on its way (so the 200 OK precedes the first NOTIFY).
pub struct Outcome {
    pub response: Response,
    pub then: Option<NewDialog>,
}

impl From<Response> for Outcome {
    fn from(response: Response) -> Self {
        Outcome {
            response,
            then: None,
        }
    }
}

/// Handles one received message (datagram or framed stream message).
pub async fn receive(edge: Arc<Edge>, data: Bytes, source: Source) {
    let message = match sip::parse_with(data.clone(), &edge.config.limits) {
        Ok(m) => m,
        Err(e) => {
            edge.transports
                .counters
                .unparseable
                .fetch_add(1, Ordering::Relaxed);
            tracing::info!(remote = %source.remote, error = %e, "unparseable message");
            if let Some(response) = sip::error_response(&data, &e) {
                send(&edge, source, response.to_bytes()).await;
            }
            return;
        }
    };
    match message {
        Message::Response(response) => on_response(&edge, &response),
        Message::Request(request) => on_request(edge, request, source).await,
    }
}

fn on_response(edge: &Edge, response: &Response) {
    let branch = response
        .headers()
        .via()
        .ok()
        .and_then(|v| v.first().and_then(|v| v.branch().map(str::to_string)));
    let matched =
        branch.is_some_and(|b| edge.client_transactions.on_response(&b, response.status()));
    if !matched {
        tracing::debug!(status = response.status(), "stray response dropped");
    }
}

async fn on_request(edge: Arc<Edge>, mut request: Request, source: Source) {
    let received = std::time::Instant::now();
    let method = crate::metrics::method_label(request.method());
    let key = match transaction_key(&mut request, source, edge.config.force_rport) {
        Ok(key) => key,
        Err(response) => {
            send(&edge, source, response.to_bytes()).await;
            return;
        }
    };
    // ACK only ever acknowledges a non-2xx final response of ours (the edge
    // accepts no INVITE); it ends the transaction on the client side.
    if *request.method() == Method::Ack {
        return;
    }
    // RFC 3261 §18.2.2 / RFC 3581: where every answer to this request goes.
    let reply_to = match request.headers().via() {
        Ok(vias) => vias.first().map_or(source, |top| {
            crate::transport::Transports::response_destination(top, source)
        }),
        Err(_) => source,
    };
    match edge.server_transactions.begin(&key) {
        Begin::New => {
            crate::metrics::metrics()
                .requests
                .get_or_create(&crate::metrics::MethodLabel { method })
                .inc();
        }
        Begin::Retransmission(Some((response, to))) => {
            crate::metrics::metrics().retransmissions.inc();
            send(&edge, to, response).await;
            return;
        }
        Begin::Retransmission(None) => {
            crate::metrics::metrics().retransmissions.inc();
            return;
        }
        Begin::Overloaded => {
            crate::metrics::metrics().overloaded.inc();
            tracing::warn!(remote = %source.remote, "too many open transactions; answering 503");
            let mut busy = Response::for_request(&request, 503)
                .header(HeaderName::RetryAfter, edge.config.retry_after)
                .build();
            crate::transaction::ensure_to_tag(&mut busy, &key);
            send(&edge, reply_to, busy.to_bytes()).await;
            return;
        }
    }
    let span = request_span(method);
    // Limits first: a refused request costs no token check or service call.
    let refused = crate::limits::check(&edge, &request, source).or_else(|| precheck(&request));
    let outcome = match refused {
        Some(response) => response.into(),
        None if *request.method() == Method::Cancel => cancel::handle(&edge, &request, &key).into(),
        None => {
            tracing::Instrument::instrument(dispatch(&edge, &request, source), span.clone()).await
        }
    };
    let mut response = outcome.response;
    span.record("sip.status_code", response.status());
    crate::transaction::ensure_to_tag(&mut response, &key);
    let bytes = response.to_bytes();
    edge.server_transactions
        .complete(&key, bytes.clone(), reply_to);
    send(&edge, reply_to, bytes).await;
    crate::metrics::answered(method, response.status(), received.elapsed());
    if let Some(dialog) = outcome.then {
        edge.dialogs.activate(&edge, dialog);
    }
}

/// The span of one request (when traces are exported; none otherwise),
/// with the trace id as a field, so that the request's log lines carry it.
fn request_span(method: &'static str) -> tracing::Span {
    if !telemetry::traces::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "sip.request",
        otel.name = method,
        otel.kind = "server",
        sip.method = method,
        sip.status_code = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if let Some(trace_id) = telemetry::traces::trace_id(&span) {
        span.record("trace_id", trace_id);
    }
    span
}

/// Checks every request must pass before its method handler runs.
fn precheck(request: &Request) -> Option<Response> {
    let headers = request.headers();
    match headers.cseq() {
        Ok(cseq) if cseq.method != *request.method() => {
            return Some(
                Response::for_request(request, 400)
                    .reason("CSeq Method Mismatch")
                    .build(),
            );
        }
        Ok(_) => {}
        Err(_) => {
            return Some(
                Response::for_request(request, 400)
                    .reason("Bad CSeq")
                    .build(),
            )
        }
    }
    if matches!(request.uri().scheme(), Scheme::Other(_)) {
        return Some(Response::for_request(request, 416).build());
    }
    // No option-tag is supported, so any Require is unsupported (RFC 3261 §8.2.2.3).
    let required = headers.require();
    if !required.is_empty() && *request.method() != Method::Cancel {
        return Some(
            Response::for_request(request, 420)
                .header(HeaderName::Unsupported, required.join(", "))
                .build(),
        );
    }
    None
}

/// Runs the method's handler. The handlers' futures are boxed: held inline
/// they made every received message's task about 10 KB, copied on each
/// spawn, although a request only ever runs one of them.
async fn dispatch(edge: &Arc<Edge>, request: &Request, source: Source) -> Outcome {
    match request.method() {
        Method::Register => Box::pin(register::handle(edge, request, source))
            .await
            .into(),
        Method::Publish => Box::pin(publish::handle(edge, request, source))
            .await
            .into(),
        Method::Subscribe => Box::pin(subscribe::handle(edge, request, source)).await,
        Method::Options => options::handle(edge, request).into(),
        // The edge never subscribes, so no NOTIFY or BYE belongs to a dialog of ours.
        Method::Notify | Method::Bye => Response::for_request(request, 481).build().into(),
        // Answered before dispatch (it needs the transaction key).
        Method::Cancel => Response::for_request(request, 481).build().into(),
        _ => Response::for_request(request, 405)
            .header(HeaderName::Allow, ALLOW)
            .build()
            .into(),
    }
}

/// Identifies the request's transaction and stamps the top Via with where
/// the request really came from (RFC 3261 §18.2.1, RFC 3581).
fn transaction_key(
    request: &mut Request,
    source: Source,
    force_rport: bool,
) -> Result<TransactionKey, Box<Response>> {
    let headers = request.headers();
    let bad = |reason: &str| Box::new(Response::for_request(request, 400).reason(reason).build());
    let vias = headers.via().map_err(|_| bad("Bad Via"))?;
    let Some(mut top) = vias.into_iter().next() else {
        return Err(bad("Missing Via"));
    };
    let cseq = headers.cseq().map_err(|_| bad("Bad CSeq"))?;
    let sent_by = match top.port {
        Some(port) => format!("{}:{port}", top.host),
        None => top.host.clone(),
    };
    let id = match top.branch() {
        Some(branch) if branch.starts_with("z9hG4bK") => branch.to_string(),
        // RFC 2543 peers: match on the request's identity instead.
        other => format!(
            "{}|{}|{}|{}",
            other.unwrap_or(""),
            headers.call_id().unwrap_or(""),
            cseq.seq,
            headers
                .from()
                .ok()
                .and_then(|f| f.tag().map(str::to_string))
                .unwrap_or_default()
        ),
    };
    let method = match request.method() {
        // The ACK of a non-2xx response belongs to the INVITE's transaction.
        Method::Ack => Method::Invite.as_str().to_string(),
        m => m.as_str().to_string(),
    };
    let ip = source.remote.ip();
    if !crate::transport::host_is(&top.host, ip) {
        top.set_received(ip);
    }
    if top.rport().is_some() || (force_rport && !source.protocol.is_reliable()) {
        top.set_rport(source.remote.port());
    }
    request.set_top_via(&top);
    Ok(TransactionKey {
        id,
        method,
        sent_by,
        cseq: format!("{} {}", cseq.seq, cseq.method.as_str()),
    })
}

/// Sends bytes back to a peer, logging failures (the peer will retransmit).
pub async fn send(edge: &Edge, to: Source, bytes: Bytes) {
    if let Err(e) = edge.transports.send(to.protocol, to.remote, bytes).await {
        tracing::info!(remote = %to.remote, error = %e, "send failed");
    }
}

/// The SIP response for a refused service call.
pub fn refusal_response(request: &Request, refusal: &Refusal) -> Response {
    let mut builder = Response::for_request(request, refusal.status);
    if let Some(reason) = &refusal.reason {
        builder = builder.reason(reason);
    }
    if let Some(min) = refusal.min_expires {
        builder = builder.header(HeaderName::MinExpires, min);
    }
    if let Some(secs) = refusal.retry_after {
        builder = builder.header(HeaderName::RetryAfter, secs);
    }
    if refusal.status == 415 {
        // Only PUBLISH carries a body the services can refuse.
        builder = builder.header(HeaderName::Accept, packages::presence::PIDF);
    }
    builder.build()
}

/// 489 Bad Event unless the request is for the presence package.
pub fn require_presence_event(request: &Request) -> Result<Option<String>, Response> {
    let presence = packages::presence::Presence.event();
    require_event(request, |p| p.event() == presence).map(|(_, id)| id)
}

/// 489 Bad Event unless the request is for a package the edge serves and
/// `wanted` accepts; returns the package and the Event id.
pub fn require_event(
    request: &Request,
    wanted: impl Fn(&dyn EventPackage) -> bool,
) -> Result<(&'static dyn EventPackage, Option<String>), Response> {
    let event = request.headers().event();
    let package = match &event {
        Ok(Some(event)) => packages::by_event(&event.package).filter(|p| wanted(*p)),
        _ => None,
    };
    match (event, package) {
        (Ok(Some(event)), Some(package)) => Ok((package, event.id)),
        (Ok(_), _) => Err(Response::for_request(request, 489)
            .header(HeaderName::AllowEvents, packages::allow_events())
            .build()),
        (Err(_), _) => Err(Response::for_request(request, 400)
            .reason("Bad Event")
            .build()),
    }
}
