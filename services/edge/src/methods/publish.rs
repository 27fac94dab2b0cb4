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
    // A package the edge does not serve costs no token check.
    if let Err(response) = require_presence_event(request) {
        return response;
    }
    let identity = match edge.authn.authenticate(request, &source).await {
        Ok(identity) => identity,
        Err(response) => return *response,
    };
    match Publish::parse(request, &identity.aor) {
        Ok(publish) => publish.apply(edge, request).await,
        Err(response) => response,
    }
}

/// A PUBLISH as read from the message (RFC 3903 §4, §6): the presentity
/// (the Request-URI's AOR), the entity-tag it refreshes, modifies or removes
/// (SIP-If-Match), the requested Expires, and the PIDF body if any. Which of
/// initial, refresh, modify or remove it is falls to the compositor.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    pub presentity: String,
    /// SIP-If-Match, empty for an initial publication.
    pub if_match: String,
    /// `None`: the compositor's default.
    pub expires: Option<u32>,
    /// The body's media type (always PIDF), empty when there is no body.
    pub content_type: String,
    pub body: Vec<u8>,
    /// The authenticated identity that publishes.
    pub publisher: String,
}

impl Publish {
    /// Reads the request; every refusal that depends only on the message and
    /// the authenticated identity's AOR is returned as the response to send:
    /// 489 for another event package, 403 for another user's presentity,
    /// 400 for a bad Expires or Content-Type, 415 for a body that is not PIDF.
    pub fn parse(request: &Request, identity_aor: &str) -> Result<Publish, Response> {
        require_presence_event(request)?;
        let presentity = request.uri().aor();
        if presentity != identity_aor {
            tracing::info!(%presentity, identity = %identity_aor, "PUBLISH for another user refused");
            return Err(Response::for_request(request, 403)
                .reason("Identity does not match the presentity")
                .build());
        }
        let headers = request.headers();
        let Ok(expires) = headers.expires() else {
            return Err(Response::for_request(request, 400)
                .reason("Bad Expires")
                .build());
        };
        let content_type = if request.body().is_empty() {
            String::new()
        } else {
            match headers.content_type() {
                Ok(Some(t)) if t.essence() == PIDF => t.essence(),
                Ok(_) => {
                    return Err(Response::for_request(request, 415)
                        .header(HeaderName::Accept, PIDF)
                        .build())
                }
                Err(_) => {
                    return Err(Response::for_request(request, 400)
                        .reason("Bad Content-Type")
                        .build())
                }
            }
        };
        Ok(Publish {
            presentity,
            if_match: headers.sip_if_match().unwrap_or_default().to_string(),
            expires,
            content_type,
            body: request.body().to_vec(),
            publisher: identity_aor.to_string(),
        })
    }

    /// Hands the publication to the presence service; 200 OK carries the
    /// new SIP-ETag and the granted Expires.
    pub async fn apply(self, edge: &Arc<Edge>, request: &Request) -> Response {
        let presentity = self.presentity.clone();
        let result = edge
            .services
            .presence
            .publish(PublishRequest {
                presentity: self.presentity,
                if_match: self.if_match,
                expires: self.expires,
                content_type: self.content_type,
                body: self.body,
                publisher: self.publisher,
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
}

#[cfg(test)]
mod tests;
