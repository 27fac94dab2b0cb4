//! NOTIFY (RFC 6665 §4.2.2, RFC 3856): what the edge sends inside a
//! subscription dialog, built from the stored dialog record.
//!
//! A NOTIFY is one client transaction. A 2xx means delivered; 481, 408 or no
//! final response at all (Timer F) mean the watcher is gone, and the
//! subscription is removed everywhere; any other failure is logged and the
//! dialog goes on (the next change is sent as usual).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use contract::DialogRecord;
use rpc::presence::v1::UnsubscribeRequest;
use sip::{
    CSeq, Event, HeaderName, Method, NameAddr, Request, SubState, SubscriptionState, Uri, Via,
};

use crate::transport::Protocol;
use crate::Edge;

/// What became of one NOTIFY.
#[derive(Debug)]
pub enum Delivery {
    /// A 2xx came back.
    Delivered,
    /// A failure response that does not end the subscription.
    Refused(u16),
    /// 481, 408, a timeout or an unreachable watcher: the subscription ends.
    Gone(String),
}

fn new_branch() -> String {
    format!("z9hG4bK{}", hex::encode(rand::random::<[u8; 8]>()))
}

/// The Subscription-State of one NOTIFY (RFC 6665 §4.1.3).
#[derive(Clone, Copy, Debug)]
pub enum NotifyState<'a> {
    /// `active;expires=N`: seconds left.
    Active(u32),
    /// `pending;expires=N`: waiting for the presentity's authorisation.
    Pending(u32),
    /// `terminated[;reason=...]`: the final NOTIFY (an empty reason is left out).
    Terminated(&'a str),
}

/// The body of one NOTIFY: media type and text. A pending subscription's
/// NOTIFY has none (RFC 3856 §6.6: no state before authorisation).
pub type NotifyBody<'a> = Option<(&'a str, &'a str)>;

/// Builds a NOTIFY of `record`'s dialog.
pub fn build(
    edge: &Edge,
    record: &DialogRecord,
    protocol: Protocol,
    cseq: u32,
    state: NotifyState<'_>,
    body: NotifyBody<'_>,
    branch: &str,
) -> Result<Request, String> {
    let target =
        Uri::parse(&record.remote_target).map_err(|e| format!("bad remote target: {e}"))?;
    let local = Uri::parse(&record.local_uri).map_err(|e| format!("bad local URI: {e}"))?;
    let remote = Uri::parse(&record.remote_uri).map_err(|e| format!("bad remote URI: {e}"))?;
    // The listener of the watcher's address family; sips: toward a sips: target.
    let remote_addr = record.remote_addr.parse().ok();
    let (host, port) = edge.transports.sent_by_for(protocol, remote_addr);
    let contact = edge
        .transports
        .contact_for(protocol, remote_addr, Some(&target));
    let via = Via {
        transport: protocol.via_name().to_string(),
        host,
        port,
        params: vec![
            ("branch".into(), Some(branch.to_string())),
            ("rport".into(), None),
        ],
    };
    let (sub_state, expires, reason) = match state {
        NotifyState::Active(seconds) => (SubState::Active, Some(seconds), None),
        NotifyState::Pending(seconds) => (SubState::Pending, Some(seconds), None),
        NotifyState::Terminated(reason) => (
            SubState::Terminated,
            None,
            (!reason.is_empty()).then(|| reason.to_string()),
        ),
    };
    let state = SubscriptionState {
        state: sub_state,
        expires,
        reason,
        retry_after: None,
        params: Vec::new(),
    };
    let event = Event {
        package: crate::packages::of(record).event().into(),
        id: (!record.event_id.is_empty()).then(|| record.event_id.clone()),
        params: Vec::new(),
    };
    let mut builder = Request::builder(Method::Notify, target)
        .header(HeaderName::Via, via)
        .header(HeaderName::MaxForwards, 70)
        .header(
            HeaderName::From,
            NameAddr {
                display_name: None,
                uri: local,
                params: vec![("tag".into(), Some(record.local_tag.clone()))],
            },
        )
        .header(
            HeaderName::To,
            NameAddr {
                display_name: None,
                uri: remote,
                params: vec![("tag".into(), Some(record.remote_tag.clone()))],
            },
        )
        .header(HeaderName::CallId, &record.call_id)
        .header(
            HeaderName::CSeq,
            CSeq {
                seq: cseq,
                method: Method::Notify,
            },
        )
        .header(
            HeaderName::Contact,
            NameAddr {
                display_name: None,
                uri: contact,
                params: Vec::new(),
            },
        )
        .header(HeaderName::Event, event)
        .header(HeaderName::SubscriptionState, state);
    for route in &record.route_set {
        builder = builder.header(HeaderName::Route, route);
    }
    Ok(match body {
        Some((content_type, text)) => builder
            .body(content_type, Bytes::copy_from_slice(text.as_bytes()))
            .build(),
        None => builder.build(),
    })
}

/// Sends one NOTIFY and waits for its outcome.
#[allow(clippy::too_many_arguments)]
pub async fn send(
    edge: &Arc<Edge>,
    record: &DialogRecord,
    protocol: Protocol,
    remote: SocketAddr,
    cseq: u32,
    state: NotifyState<'_>,
    body: NotifyBody<'_>,
) -> Delivery {
    let branch = new_branch();
    let request = match build(edge, record, protocol, cseq, state, body, &branch) {
        Ok(r) => r,
        Err(e) => return Delivery::Gone(e),
    };
    let delivery = match edge
        .client_transactions
        .request(edge, protocol, remote, &branch, request.to_bytes())
        .await
    {
        Ok(status) if (200..300).contains(&status) => Delivery::Delivered,
        Ok(status @ (408 | 481)) => Delivery::Gone(format!("NOTIFY answered {status}")),
        Ok(status) => Delivery::Refused(status),
        Err(e) => Delivery::Gone(e.to_string()),
    };
    let result = match delivery {
        Delivery::Delivered => "delivered",
        Delivery::Refused(_) => "refused",
        Delivery::Gone(_) => "gone",
    };
    crate::metrics::metrics()
        .notifies
        .get_or_create(&crate::metrics::NotifyLabels { result })
        .inc();
    delivery
}

/// Removes a subscription from the presence service (idempotent).
pub async fn forget_subscription(edge: &Edge, presentity: &str, dialog_id: &str) {
    if let Err(e) = edge
        .services
        .presence
        .unsubscribe(UnsubscribeRequest {
            presentity: presentity.to_string(),
            dialog_id: dialog_id.to_string(),
        })
        .await
    {
        tracing::warn!(%presentity, %dialog_id, error = %e, "removing subscription failed; the sweeper will expire it");
    }
}
