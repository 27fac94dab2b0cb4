//! OPTIONS (RFC 3261 §11): what the edge supports. Phones send it as a
//! keep-alive, so it is answered without authentication and without
//! touching any service.

use sip::{HeaderName, Request, Response};

use crate::methods::ALLOW;
use crate::packages;
use crate::Edge;

pub fn handle(_edge: &Edge, request: &Request) -> Response {
    Response::for_request(request, 200)
        .header(HeaderName::Allow, ALLOW)
        .header(HeaderName::AllowEvents, packages::allow_events())
        .header(HeaderName::Accept, packages::presence::PIDF)
        .build()
}
