//! Peer to peer, each peer is the notifier of its own presence (RFC 6665 §4.2): it answers
//! SUBSCRIBEs for itself and sends each subscriber a NOTIFY at once and on every change of
//! its presence, one at a time per subscriber, newest state only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sip::{HeaderName, Method, NameAddr, Request, Response, SubState, SubscriptionState, Uri};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::core::{presence_event, random_token, Core, Outgoing};
use crate::status::{PresenceInfo, PresenceStatus};
use crate::transport::Link;

/// The longest subscription a peer grants (RFC 3856 §6.4 suggests an hour).
const MAX_EXPIRES: u32 = 3600;
/// How long a shutting-down peer waits for its final NOTIFYs to be answered.
const FAREWELL: Duration = Duration::from_secs(2);

struct Subscriber {
    local_tag: String,
    remote_tag: String,
    remote_uri: Uri,
    target: Uri,
    link: Link,
    cseq: u32,
    expires_at: Instant,
    /// Set once: the reason of the final NOTIFY.
    ended: Option<&'static str>,
}

struct Handle {
    state: Arc<Mutex<Subscriber>>,
    wake: Arc<Notify>,
    task: Option<JoinHandle<()>>,
}

pub(crate) struct Notifier {
    own: watch::Sender<Option<PresenceInfo>>,
    subscribers: Mutex<HashMap<String, Handle>>,
}

impl Default for Notifier {
    fn default() -> Self {
        Notifier {
            own: watch::channel(None).0,
            subscribers: Mutex::new(HashMap::new()),
        }
    }
}

impl Notifier {
    /// The peer's presence changed: every subscriber is told.
    pub fn set_own(&self, info: PresenceInfo) {
        self.own.send_replace(Some(info));
    }

    /// How many peers watch this one.
    pub fn subscriber_count(&self) -> usize {
        locks::lock(&self.subscribers).len()
    }

    /// The answer to a SUBSCRIBE for this peer.
    pub async fn on_subscribe(&self, core: &Arc<Core>, request: &Request, link: Link) -> Response {
        let headers = request.headers();
        match headers.event() {
            Ok(Some(event)) if event.is("presence") => {}
            _ => {
                return Response::for_request(request, 489)
                    .header(HeaderName::AllowEvents, "presence")
                    .build()
            }
        }
        let (Ok(call_id), Ok(from), Ok(to)) = (headers.call_id(), headers.from(), headers.to())
        else {
            return Response::for_request(request, 400).build();
        };
        let Some(remote_tag) = from.tag().map(str::to_owned) else {
            return Response::for_request(request, 400).build();
        };
        let target = match headers.contacts() {
            Ok(sip::Contacts::List(list)) if !list.is_empty() => list[0].name_addr.uri.clone(),
            _ => {
                return Response::for_request(request, 400)
                    .reason("Missing Contact")
                    .build()
            }
        };
        let expires = headers
            .expires()
            .ok()
            .flatten()
            .unwrap_or(MAX_EXPIRES)
            .min(MAX_EXPIRES);
        let contact = core.contact(link.transport);
        let mut subscribers = locks::lock(&self.subscribers);
        let local_tag = match to.tag() {
            Some(tag) => {
                let Some(handle) = subscribers.get(call_id) else {
                    return Response::for_request(request, 481).build();
                };
                let mut state = locks::lock(&handle.state);
                if state.local_tag != tag || state.remote_tag != remote_tag {
                    return Response::for_request(request, 481).build();
                }
                state.target = target;
                state.link = link;
                state.expires_at = Instant::now() + Duration::from_secs(expires.into());
                if expires == 0 {
                    state.ended = Some("timeout");
                }
                tag.to_owned()
            }
            None => {
                let local_tag = random_token();
                let state = Subscriber {
                    local_tag: local_tag.clone(),
                    remote_tag,
                    remote_uri: from.uri.clone(),
                    target,
                    link,
                    cseq: core.next_cseq(),
                    expires_at: Instant::now() + Duration::from_secs(expires.into()),
                    ended: (expires == 0).then_some("timeout"),
                };
                subscribers.insert(
                    call_id.to_owned(),
                    Handle {
                        state: Arc::new(Mutex::new(state)),
                        wake: Arc::new(Notify::new()),
                        task: None,
                    },
                );
                local_tag
            }
        };
        Response::for_request(request, 200)
            .to_tag(&local_tag)
            .header(HeaderName::Contact, contact)
            .header(HeaderName::Expires, expires)
            .build()
    }

    /// After the 200 OK went out: the first NOTIFY of a new subscription, or the NOTIFY a
    /// refresh calls for.
    pub fn after_subscribe(&self, core: &Arc<Core>, request: &Request) {
        let Ok(call_id) = request.headers().call_id() else {
            return;
        };
        let mut subscribers = locks::lock(&self.subscribers);
        let Some(handle) = subscribers.get_mut(call_id) else {
            return;
        };
        if handle.task.is_some() {
            handle.wake.notify_one();
            return;
        }
        handle.task = Some(tokio::spawn(run_subscriber(
            Arc::downgrade(core),
            call_id.to_owned(),
            handle.state.clone(),
            handle.wake.clone(),
            self.own.subscribe(),
        )));
    }

    /// Ends every subscription with a final NOTIFY (the peer is going away) and waits a
    /// little for them to be answered.
    pub async fn shutdown(&self) {
        let tasks: Vec<JoinHandle<()>> = locks::lock(&self.subscribers)
            .values_mut()
            .filter_map(|handle| {
                locks::lock(&handle.state).ended.get_or_insert("noresource");
                handle.wake.notify_one();
                handle.task.take()
            })
            .collect();
        let _ = tokio::time::timeout(FAREWELL, futures::future::join_all(tasks)).await;
    }

    fn forget(&self, call_id: &str) {
        locks::lock(&self.subscribers).remove(call_id);
    }
}

async fn run_subscriber(
    core: std::sync::Weak<Core>,
    call_id: String,
    state: Arc<Mutex<Subscriber>>,
    wake: Arc<Notify>,
    mut own: watch::Receiver<Option<PresenceInfo>>,
) {
    loop {
        let Some(core) = core.upgrade() else { return };
        let info = own
            .borrow_and_update()
            .clone()
            .unwrap_or_else(|| PresenceInfo::new(PresenceStatus::Offline));
        let (mut out, ended) = notify_of(&core, &call_id, &state, &info);
        let outcome = core.request(&mut out).await;
        let gone = match &outcome {
            Ok(response) if (200..300).contains(&response.status()) => false,
            // RFC 6665 §4.2.2: 481 and 408 mean the subscriber is gone; so does silence.
            Ok(response) => matches!(response.status(), 408 | 481),
            Err(_) => true,
        };
        if gone || ended {
            core.notifier.forget(&call_id);
            return;
        }
        let expires_at = locks::lock(&state).expires_at;
        drop(core);
        tokio::select! {
            changed = own.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = wake.notified() => {}
            _ = tokio::time::sleep_until(expires_at) => {
                locks::lock(&state).ended.get_or_insert("timeout");
            }
        }
    }
}

/// The next NOTIFY of a subscription, and whether it is the last.
fn notify_of(
    core: &Core,
    call_id: &str,
    state: &Mutex<Subscriber>,
    info: &PresenceInfo,
) -> (Outgoing, bool) {
    let mut state = locks::lock(state);
    state.cseq += 1;
    let subscription_state = match state.ended {
        Some(reason) => SubscriptionState::terminated(reason),
        None => {
            let left = state.expires_at.saturating_duration_since(Instant::now());
            SubscriptionState::active(left.as_secs() as u32)
        }
    };
    // A peer that is going away says so in the last document too.
    let info = match state.ended {
        Some("noresource") => PresenceInfo::new(PresenceStatus::Offline),
        _ => info.clone(),
    };
    let body = info.to_document(&core.identity.uri.to_string()).to_xml();
    let out = Outgoing {
        method: Method::Notify,
        uri: state.target.clone(),
        from: core.me(&state.local_tag),
        to: NameAddr::new(state.remote_uri.clone()).with_tag(state.remote_tag.clone()),
        call_id: call_id.to_owned(),
        cseq: state.cseq,
        route: Vec::new(),
        headers: vec![
            (HeaderName::Event, presence_event().to_string()),
            (
                HeaderName::SubscriptionState,
                subscription_state.to_string(),
            ),
        ],
        body: Some(("application/pidf+xml".to_owned(), Bytes::from(body))),
        link: state.link,
        credentials: false,
        timeout: Some(core.timers.transaction_timeout.min(Duration::from_secs(8))),
    };
    let ended = matches!(subscription_state.state, SubState::Terminated);
    (out, ended)
}
