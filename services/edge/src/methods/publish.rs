//! PUBLISH (RFC 3903) for the presence event package (RFC 3856).
//!
//! The presentity is the Request-URI's address-of-record, and a token may
//! publish only its own presence (403 otherwise). The compositor decides
//! the rest: initial (body, no SIP-If-Match), refresh (SIP-If-Match, no
//! body), modify (both) and remove (SIP-If-Match with Expires: 0); 200 OK
//! carries the new SIP-ETag and the granted Expires.

use std::sync::Arc;

use rpc::presence::v1::PublishRequest;
use sip::{HeaderName, Request, Response};

use crate::methods::{refusal_response, require_presence_event};
use crate::packages::presence::PIDF;
use crate::services::Refusal;
use crate::transport::Source;
use crate::Edge;

pub async fn handle(edge: &Arc<Edge>, request: &Request, source: Source) -> Response {
    if let Err(response) = require_presence_event(request) {
        return response;
    }
    let identity = match edge.authn.authenticate(request, &source).await {
        Ok(identity) => identity,
        Err(response) => return *response,
    };
    let presentity = request.uri().aor();
    if presentity != identity.aor {
        tracing::info!(%presentity, identity = %identity.aor, "PUBLISH for another user refused");
        return Response::for_request(request, 403)
            .reason("Identity does not match the presentity")
            .build();
    }
    let headers = request.headers();
    let Ok(expires) = headers.expires() else {
        return Response::for_request(request, 400)
            .reason("Bad Expires")
            .build();
    };
    let content_type = if request.body().is_empty() {
        String::new()
    } else {
        match headers.content_type() {
            Ok(Some(t)) if t.essence() == PIDF => t.essence(),
            Ok(_) => {
                return Response::for_request(request, 415)
                    .header(HeaderName::Accept, PIDF)
                    .build()
            }
            Err(_) => {
                return Response::for_request(request, 400)
                    .reason("Bad Content-Type")
                    .build()
            }
        }
    };
    let result = edge
        .services
        .presence
        .publish(PublishRequest {
            presentity: presentity.clone(),
            if_match: headers.sip_if_match().unwrap_or_default().to_string(),
            expires,
            content_type,
            body: request.body().to_vec(),
            publisher: identity.aor.clone(),
        })
        .await;
    match result {
        Ok(reply) => {
            let mut builder =
                Response::for_request(request, 200).header(HeaderName::Expires, reply.expires);
            if !reply.etag.is_empty() {
                builder = builder.header(HeaderName::SipETag, &reply.etag);
            }
            builder.build()
        }
        Err(status) => {
            tracing::info!(%presentity, code = ?status.code(), message = status.message(), "PUBLISH failed");
            refusal_response(
                request,
                &Refusal::from_status(&status, edge.config.retry_after),
            )
        }
    }
}
