//! REGISTER (RFC 3261 §10): binds the authenticated user's address-of-record
//! to contacts through the registrar service.
//!
//! * The token's identity must be the AOR in To (a token registers only for
//!   its own address), else 403.
//! * Each Contact's expiry is its `expires` parameter, else the Expires
//!   header, else the registrar's default; `Contact: *` needs `Expires: 0`.
//! * No Contact at all is a query: 200 with the current bindings.
//! * 200 OK lists every binding with the seconds it has left.

use std::sync::Arc;

use rpc::registrar::v1::{ContactUpdate, LookupRequest, RegisterRequest};
use sip::{Contacts, HeaderName, NameAddr, Request, Response, Uri};

use crate::methods::refusal_response;
use crate::services::Refusal;
use crate::transport::Source;
use crate::Edge;

pub async fn handle(edge: &Arc<Edge>, request: &Request, source: Source) -> Response {
    let identity = match edge.authn.authenticate(request, &source).await {
        Ok(identity) => identity,
        Err(response) => return *response,
    };
    match Register::parse(request, &identity.aor) {
        Ok(register) => register.apply(edge, request, source).await,
        Err(response) => response,
    }
}

/// A REGISTER as read from the message (RFC 3261 §10.2): the address-of-record
/// whose bindings change, the contacts to add, refresh or remove, and the
/// Call-ID/CSeq that order registrations from one client (§10.3 step 7).
/// No contacts and no `remove_all` is a query for the current bindings.
#[derive(Debug, Clone, PartialEq)]
pub struct Register {
    pub aor: String,
    /// One update per Contact, its expiry already resolved to the Contact's
    /// `expires` parameter or the Expires header (`None`: registrar default).
    pub contacts: Vec<ContactUpdate>,
    /// `Contact: *` with `Expires: 0`: remove every binding of the AOR.
    pub remove_all: bool,
    pub call_id: String,
    pub cseq: u32,
    pub user_agent: String,
}

impl Register {
    /// Reads the request; every refusal that depends only on the message and
    /// the authenticated identity's AOR is returned as the response to send.
    pub fn parse(request: &Request, identity_aor: &str) -> Result<Register, Response> {
        let headers = request.headers();
        let Ok(to) = headers.to() else {
            return Err(Response::for_request(request, 400).reason("Bad To").build());
        };
        let aor = to.uri.aor();
        if aor != identity_aor {
            tracing::info!(%aor, identity = %identity_aor, "REGISTER for another user's address refused");
            return Err(Response::for_request(request, 403)
                .reason("Identity does not match the address-of-record")
                .build());
        }
        let Ok(expires_header) = headers.expires() else {
            return Err(Response::for_request(request, 400)
                .reason("Bad Expires")
                .build());
        };
        let Ok(contacts) = headers.contacts() else {
            return Err(Response::for_request(request, 400)
                .reason("Bad Contact")
                .build());
        };
        let (contacts, remove_all) = match contacts {
            Contacts::Star => {
                if expires_header != Some(0) {
                    return Err(Response::for_request(request, 400)
                        .reason("Wildcard Contact requires Expires: 0")
                        .build());
                }
                (Vec::new(), true)
            }
            Contacts::List(list) => (
                list.iter()
                    .map(|c| ContactUpdate {
                        uri: c.name_addr.uri.to_string(),
                        expires: c.expires().or(expires_header),
                        q_milli: c
                            .q()
                            .map(|q| (q * 1000.0).round().clamp(0.0, 1000.0) as u32),
                        instance_id: c.instance().unwrap_or_default(),
                        reg_id: c.reg_id(),
                    })
                    .collect::<Vec<_>>(),
                false,
            ),
        };
        Ok(Register {
            aor,
            contacts,
            remove_all,
            call_id: headers.call_id().unwrap_or_default().to_string(),
            cseq: headers.cseq().map(|c| c.seq).unwrap_or(0),
            user_agent: headers.user_agent().unwrap_or_default().to_string(),
        })
    }

    /// True when the request only asks for the current bindings.
    pub fn is_query(&self) -> bool {
        self.contacts.is_empty() && !self.remove_all
    }

    /// Calls the registrar and answers with every binding and the seconds it
    /// has left.
    pub async fn apply(self, edge: &Arc<Edge>, request: &Request, source: Source) -> Response {
        let client = &edge.services.registrar;
        let aor = self.aor.clone();
        let result = if self.is_query() {
            client
                .lookup(LookupRequest { aor: self.aor })
                .await
                .map(|r| r.bindings)
        } else {
            client
                .register(RegisterRequest {
                    aor: self.aor,
                    contacts: self.contacts,
                    remove_all: self.remove_all,
                    call_id: self.call_id,
                    cseq: self.cseq,
                    transport: source.protocol.as_str().to_string(),
                    source: source.remote.to_string(),
                    user_agent: self.user_agent,
                })
                .await
                .map(|r| r.bindings)
        };
        let bindings = match result {
            Ok(b) => b,
            Err(status) => {
                tracing::info!(%aor, code = ?status.code(), message = status.message(), "REGISTER failed");
                return refusal_response(
                    request,
                    &Refusal::from_status(&status, edge.config.retry_after),
                );
            }
        };
        let mut builder = Response::for_request(request, 200);
        for binding in &bindings {
            let Ok(uri) = Uri::parse(&binding.uri) else {
                tracing::warn!(%aor, uri = %binding.uri, "stored binding has an unparseable URI");
                continue;
            };
            builder = builder.header(
                HeaderName::Contact,
                NameAddr {
                    display_name: None,
                    uri,
                    params: vec![("expires".into(), Some(binding.expires.to_string()))],
                },
            );
        }
        builder.build()
    }
}

#[cfg(test)]
mod tests;
