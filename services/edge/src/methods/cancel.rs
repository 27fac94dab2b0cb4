//! CANCEL (RFC 3261 §9.2).
//!
//! A CANCEL names the request it cancels by sharing its top Via branch and
//! sent-by. When that request's server transaction is still known here
//! (being handled, or completed and held for retransmissions on UDP), the
//! CANCEL itself is answered 200 OK; otherwise 481. Either way the
//! cancelled request is not affected: every request the edge serves is
//! answered at once with a final response, and an INVITE has already had
//! its 405 — so the client's CANCEL transaction ends, and a phone never
//! retransmits it for long.

use sip::{Request, Response};

use crate::transaction::TransactionKey;
use crate::Edge;

/// Answers a CANCEL whose own transaction is `key`.
pub fn handle(edge: &Edge, request: &Request, key: &TransactionKey) -> Response {
    if edge.server_transactions.has_cancelled_request(key) {
        Response::for_request(request, 200).build()
    } else {
        Response::for_request(request, 481).build()
    }
}
