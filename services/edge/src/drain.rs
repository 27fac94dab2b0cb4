//! Graceful drain (SIGTERM): the edge answers every request that reaches it
//! until its sockets close, hands its dialogs over to the other edges at
//! once, and closes at the end of `--drain-grace-ms`.
//!
//! In order ([`crate::RunningEdge::drain`]):
//! 1. The edge is marked draining. From now on a SUBSCRIBE that would
//!    create a dialog here — a new subscription, or a refresh of a dialog
//!    this edge does not hold (which would take it over) — is answered
//!    `503` with `Retry-After`: the client retries and reaches another edge
//!    (the load balancer stops sending here; the readiness probe fails).
//!    Everything else is processed as usual: refreshes and unsubscriptions
//!    of dialogs held here, fetches (`Expires: 0`), PUBLISH, REGISTER,
//!    OPTIONS. None of them leaves state on the edge.
//! 2. Lease renewals and claims stop: a draining edge takes nothing over.
//! 3. Every dialog's NOTIFY sender stops, after the NOTIFY it has in
//!    flight (waited for up to [`IN_FLIGHT_NOTIFY_WAIT`]); the edge stops
//!    hearing channels.
//! 4. The presence service records, per dialog, what its watcher last
//!    acknowledged, then the lease is released: the other edges claim the
//!    dialogs at their next claim and send a NOTIFY only when the state
//!    changed since (no repeat of the state the watcher has).
//! 5. Requests keep being answered until the grace ends; then the
//!    listeners close, requests already received get their answers (up to
//!    the RPC deadline), and anything a racing SUBSCRIBE activated during
//!    the grace is handed over the same way, with a second release.

use std::time::Duration;

use sip::{HeaderName, Request, Response};

use crate::Edge;

/// How long a hand-over waits for the NOTIFYs in flight (a watcher over
/// UDP answers within a round trip; one that does not is not waited for
/// to the end of Timer F, and its next owner sends the state again).
pub const IN_FLIGHT_NOTIFY_WAIT: Duration = Duration::from_secs(1);

/// The answer to a SUBSCRIBE that would create a dialog on a draining edge
/// (`503` with `Retry-After`), or `None` when it may be processed:
/// `in_dialog` is the request's To tag, `expires` its Expires.
pub fn refuse_subscribe(
    edge: &Edge,
    request: &Request,
    in_dialog: Option<&str>,
    expires: Option<u32>,
) -> Option<Response> {
    if !edge.is_draining() || expires == Some(0) {
        return None;
    }
    if in_dialog.is_some_and(|id| edge.dialogs.presentity_of(id).is_some()) {
        return None;
    }
    Some(
        Response::for_request(request, 503)
            .header(HeaderName::RetryAfter, edge.config.retry_after)
            .build(),
    )
}
