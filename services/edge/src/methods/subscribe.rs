//! SUBSCRIBE (RFC 6665 §4.2.1) for the presence event package (RFC 3856).
//!
//! * Out of a dialog: creates one. The edge starts hearing the presentity's
//!   channel, asks the presence service to store the subscription (which
//!   returns the current state), answers 200 OK with a fresh To tag and the
//!   granted Expires, then sends the first NOTIFY.
//! * Inside a dialog (To tag present): a refresh — 200 OK, then a NOTIFY
//!   with the current state. The dialog may belong to another (or a dead)
//!   edge: the stored record is taken over and continued here. Unknown
//!   dialogs get 481.
//! * `Expires: 0`: 200 OK and a final NOTIFY (`terminated`); out of a dialog
//!   this is a one-time fetch of the state.
//! * The watcher is the token's identity, never the From header's claim.
//! * The presentity's rules decide a new subscription (presence service):
//!   `403` when blocked; `pending` (a `Subscription-State: pending` NOTIFY
//!   without state) until approved; polite blocking looks active but only
//!   ever carries a neutral document.
//! * `Event: presence.winfo` (RFC 3857) is the presentity's own client
//!   watching its watchers: `application/watcherinfo+xml` NOTIFYs.

use std::net::SocketAddr;
use std::sync::Arc;

use contract::{DialogRecord, WatcherEntry};
use rpc::presence::v1::{SubscribeRequest, SubscribeResponse, SubscriptionStatus};
use sip::{HeaderName, NameAddr, Request, Response};

use crate::dialogs::notify::NotifyState;
use crate::dialogs::{mode_of, Mode, NewDialog, TAKEOVER_CSEQ_GAP};
use crate::methods::{refusal_response, require_event, Outcome};
use crate::packages::{self, EventPackage};
use crate::services::Refusal;
use crate::transport::{Protocol, Source};
use crate::Edge;

fn new_tag() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

pub async fn handle(edge: &Arc<Edge>, request: &Request, source: Source) -> Outcome {
    // A package the edge does not serve, or a body the subscriber cannot
    // read, costs no token check.
    if let Err(response) = acceptable(request) {
        return response.into();
    }
    let identity = match edge.authn.authenticate(request, &source).await {
        Ok(identity) => identity,
        Err(response) => return (*response).into(),
    };
    match Subscribe::parse(request) {
        Ok(subscribe) => subscribe.apply(edge, request, source, &identity.aor).await,
        Err(response) => response.into(),
    }
}

/// 489 unless the Event is a package the edge serves, 406 (with Accept)
/// unless the subscriber accepts that package's body type; else the
/// package and the Event id.
fn acceptable(request: &Request) -> Result<(&'static dyn EventPackage, String), Response> {
    let (package, event_id) = require_event(request, |_| true)?;
    let body_type = package.content_type();
    if let Ok(accept) = request.headers().accept() {
        if !accept.is_empty() && !accept.iter().any(|t| t.matches(body_type)) {
            return Err(Response::for_request(request, 406)
                .header(HeaderName::Accept, body_type)
                .build());
        }
    }
    Ok((package, event_id.unwrap_or_default()))
}

/// A SUBSCRIBE as read from the message (RFC 6665 §4.2.1; RFC 3261 §12.1.1
/// for the dialog it creates): the event package and id, the subscriber's
/// side of the dialog (From tag, Contact as remote target, Record-Route as
/// route set), the To tag when it refreshes or ends an existing dialog, and
/// the requested Expires (0: end it, or a one-time fetch out of a dialog).
pub struct Subscribe {
    pub package: &'static dyn EventPackage,
    pub event_id: String,
    pub call_id: String,
    /// The From tag.
    pub remote_tag: String,
    /// The From URI.
    pub remote_uri: String,
    /// The To URI.
    pub local_uri: String,
    /// The To URI's address-of-record: the presentity of an in-dialog
    /// request whose dialog this edge does not hold.
    pub to_aor: String,
    /// The Request-URI's address-of-record: the presentity of a new dialog.
    pub request_aor: String,
    /// The To tag: the dialog this request refreshes or ends.
    pub in_dialog: Option<String>,
    pub expires: Option<u32>,
    /// The first Contact's URI.
    pub remote_target: String,
    pub route_set: Vec<String>,
}

impl Subscribe {
    /// Reads the request; every refusal that depends only on the message is
    /// returned as the response to send.
    pub fn parse(request: &Request) -> Result<Subscribe, Response> {
        let (package, event_id) = acceptable(request)?;
        let headers = request.headers();
        let (Ok(from), Ok(to), Ok(call_id)) = (headers.from(), headers.to(), headers.call_id())
        else {
            return Err(Response::for_request(request, 400)
                .reason("Bad From, To or Call-ID")
                .build());
        };
        let Some(remote_tag) = from.tag().map(str::to_string) else {
            return Err(Response::for_request(request, 400)
                .reason("Missing From tag")
                .build());
        };
        let Ok(expires) = headers.expires() else {
            return Err(Response::for_request(request, 400)
                .reason("Bad Expires")
                .build());
        };
        let remote_target = match headers.contacts() {
            Ok(sip::Contacts::List(list)) if !list.is_empty() => list[0].name_addr.uri.to_string(),
            _ => {
                return Err(Response::for_request(request, 400)
                    .reason("Missing Contact")
                    .build())
            }
        };
        let route_set: Vec<String> = match headers.record_route() {
            Ok(routes) => routes.iter().map(|r| r.to_string()).collect(),
            Err(_) => {
                return Err(Response::for_request(request, 400)
                    .reason("Bad Record-Route")
                    .build())
            }
        };
        Ok(Subscribe {
            package,
            event_id,
            call_id: call_id.to_string(),
            remote_tag,
            remote_uri: from.uri.to_string(),
            local_uri: to.uri.to_string(),
            to_aor: to.uri.aor(),
            request_aor: request.uri().aor(),
            in_dialog: to.tag().map(str::to_string),
            expires,
            remote_target,
            route_set,
        })
    }

    /// Creates, refreshes, takes over or ends the subscription of `watcher`
    /// (the authenticated identity, never the From header's claim).
    pub async fn apply(
        self,
        edge: &Arc<Edge>,
        request: &Request,
        source: Source,
        watcher: &str,
    ) -> Outcome {
        let in_dialog = self.in_dialog;
        let presentity = match &in_dialog {
            Some(id) => edge
                .dialogs
                .presentity_of(id)
                .unwrap_or_else(|| self.to_aor.clone()),
            None => self.request_aor,
        };
        let id = in_dialog.clone().unwrap_or_else(new_tag);
        let record = DialogRecord {
            id: id.clone(),
            call_id: self.call_id,
            local_tag: id,
            remote_tag: self.remote_tag,
            remote_uri: self.remote_uri,
            local_uri: self.local_uri,
            remote_target: self.remote_target,
            route_set: self.route_set,
            transport: source.protocol.as_str().to_string(),
            remote_addr: source.remote.to_string(),
            edge_id: edge.config.edge_id.clone(),
            notify_cseq: 0,
            event_id: self.event_id,
            watcher: watcher.to_string(),
            package: self.package.event().to_string(),
        };
        let expires = self.expires;
        if let Some(busy) =
            crate::drain::refuse_subscribe(edge, request, in_dialog.as_deref(), expires)
        {
            return busy.into();
        }
        match in_dialog {
            None => create(edge, request, source, presentity, record, expires).await,
            Some(_) => refresh(edge, request, source, presentity, record, expires).await,
        }
    }
}

#[cfg(test)]
mod tests;

async fn call(
    edge: &Edge,
    presentity: &str,
    record: &DialogRecord,
    expires: Option<u32>,
    refresh: bool,
) -> Result<SubscribeResponse, Refusal> {
    edge.services
        .presence
        .subscribe(SubscribeRequest {
            presentity: presentity.to_string(),
            dialog: Some(record.clone().into()),
            expires,
            refresh,
        })
        .await
        .map_err(|status| {
            tracing::info!(%presentity, code = ?status.code(), message = status.message(), "SUBSCRIBE failed");
            Refusal::from_status(&status, edge.config.retry_after)
        })
}

fn ok(
    edge: &Edge,
    request: &Request,
    local_tag: &str,
    expires: u32,
    protocol: Protocol,
) -> Response {
    Response::for_request(request, 200)
        .to_tag(local_tag)
        .header(HeaderName::Expires, expires)
        .header(
            HeaderName::Contact,
            NameAddr {
                display_name: None,
                uri: edge
                    .transports
                    .contact_for(protocol, None, Some(request.uri())),
                params: Vec::new(),
            },
        )
        .build()
}

fn new_dialog(
    record: DialogRecord,
    presentity: String,
    reply: &SubscribeResponse,
    first_cseq: u32,
    source: Source,
) -> NewDialog {
    let state = reply.state.clone().unwrap_or_default();
    NewDialog {
        mode: mode_of(&record, reply.status, reply.masked),
        watchers: reply
            .watchers
            .iter()
            .cloned()
            .map(WatcherEntry::from)
            .collect(),
        record,
        presentity,
        version: state.version,
        pidf: String::from_utf8_lossy(&state.pidf).into_owned(),
        expires: reply.expires,
        first_cseq,
        protocol: source.protocol,
        remote: source.remote,
        source_slot: None,
    }
}

/// A final NOTIFY for a subscription that ends with this very request.
async fn final_notify(
    edge: &Arc<Edge>,
    record: DialogRecord,
    cseq: u32,
    remote: SocketAddr,
    protocol: Protocol,
    reply: SubscribeResponse,
) {
    let state = reply.state.unwrap_or_default();
    let pidf = String::from_utf8_lossy(&state.pidf).into_owned();
    let mode = mode_of(&record, reply.status, reply.masked);
    let edge = edge.clone();
    // After the 200 OK has left (the caller sends it first).
    tokio::spawn(async move {
        tokio::task::yield_now().await;
        let package = packages::of(&record);
        let body = package
            .final_body(mode == Mode::Pending, &pidf, "")
            .map(|text| (package.content_type(), text));
        let _ = crate::dialogs::notify::send(
            &edge,
            &record,
            protocol,
            remote,
            cseq,
            NotifyState::Terminated(""),
            body,
        )
        .await;
    });
}

async fn create(
    edge: &Arc<Edge>,
    request: &Request,
    source: Source,
    presentity: String,
    record: DialogRecord,
    expires: Option<u32>,
) -> Outcome {
    // A fetch (Expires: 0) leaves no dialog: no place in the source's count.
    let slot = match expires {
        Some(0) => None,
        _ => match crate::limits::subscription_slot(edge, request, source) {
            Ok(slot) => Some(Arc::new(slot)),
            Err(busy) => return busy.into(),
        },
    };
    // Hear the channel before reading the state: nothing published in
    // between can be missed.
    if let Err(e) = edge.dialogs.hold(&presentity).await {
        tracing::warn!(%presentity, error = %e, "cannot watch presentity");
        return refusal_response(request, &Refusal::unavailable(edge.config.retry_after)).into();
    }
    let reply = match call(edge, &presentity, &record, expires, false).await {
        Ok(reply) => reply,
        Err(refusal) => {
            edge.dialogs.release(&presentity).await;
            return refusal_response(request, &refusal).into();
        }
    };
    let response = ok(
        edge,
        request,
        &record.local_tag,
        reply.expires,
        source.protocol,
    );
    if reply.status == SubscriptionStatus::Terminated as i32 {
        edge.dialogs.release(&presentity).await;
        final_notify(edge, record, 1, source.remote, source.protocol, reply).await;
        return response.into();
    }
    Outcome {
        response,
        then: Some(NewDialog {
            source_slot: slot,
            ..new_dialog(record, presentity, &reply, 0, source)
        }),
    }
}

async fn refresh(
    edge: &Arc<Edge>,
    request: &Request,
    source: Source,
    presentity: String,
    record: DialogRecord,
    expires: Option<u32>,
) -> Outcome {
    let held_here = edge.dialogs.presentity_of(&record.id).is_some();
    let reply = match call(edge, &presentity, &record, expires, true).await {
        Ok(reply) => reply,
        Err(refusal) => return refusal_response(request, &refusal).into(),
    };
    let response = ok(
        edge,
        request,
        &record.local_tag,
        reply.expires,
        source.protocol,
    );
    if reply.status == SubscriptionStatus::Terminated as i32 {
        if !held_here || !edge.dialogs.terminate(&record.id, "") {
            let stored = reply
                .dialog
                .clone()
                .map(DialogRecord::from)
                .unwrap_or(record);
            let cseq = stored.notify_cseq + TAKEOVER_CSEQ_GAP;
            final_notify(edge, stored, cseq, source.remote, source.protocol, reply).await;
        }
        return response.into();
    }
    let state = reply.state.clone().unwrap_or_default();
    if held_here {
        edge.dialogs
            .reroute(&record.id, source.protocol, source.remote);
    }
    if held_here
        && edge.dialogs.refresh(
            &record.id,
            reply.expires,
            state.version,
            &String::from_utf8_lossy(&state.pidf),
        )
    {
        return response.into();
    }
    // Taking over a dialog another edge held: continue it from its record.
    let stored = reply
        .dialog
        .clone()
        .map(DialogRecord::from)
        .unwrap_or(record);
    if let Err(e) = edge.dialogs.hold(&presentity).await {
        tracing::warn!(%presentity, error = %e, "cannot watch presentity");
        return refusal_response(request, &Refusal::unavailable(edge.config.retry_after)).into();
    }
    let first_cseq = stored.notify_cseq + TAKEOVER_CSEQ_GAP;
    tracing::info!(dialog = %stored.id, %presentity, "continuing a dialog held elsewhere");
    Outcome {
        response,
        then: Some(new_dialog(stored, presentity, &reply, first_cseq, source)),
    }
}
