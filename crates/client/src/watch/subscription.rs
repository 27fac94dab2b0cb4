//! The task that keeps one watch's subscription alive: subscribing, refreshing, following
//! target refreshes, resubscribing after a loss, and heartbeats to a peer.

use std::sync::Arc;
use std::time::Duration;

use sip::{HeaderName, Method, NameAddr, Request, Response, SubState, Uri};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;

use super::{Control, WatchItem, WatchTarget};
use crate::config::refresh_after;
use crate::core::{granted_expires, presence_event, random_token, rejected, Core, Outgoing};
use crate::error::{Error, Result};
use crate::refresh::Backoff;
use crate::status::{PresenceInfo, PresenceStatus};
use crate::transport::Link;

/// The subscriber's side of the dialog.
pub(super) struct Dialog {
    call_id: String,
    local_tag: String,
    remote_tag: Option<String>,
    remote_target: Uri,
    route: Vec<NameAddr>,
    cseq: u32,
    link: Link,
    last_notify_cseq: Option<u32>,
    /// Until when the notifier keeps the subscription without a refresh.
    expires_at: Instant,
    notifies: mpsc::UnboundedReceiver<Request>,
}

/// What the task does next.
enum Next {
    /// A new subscription at this instant.
    Subscribe(Instant),
    /// Refresh the dialog at this instant.
    RefreshAt(Instant),
}

pub(super) struct Subscription {
    pub(super) core: Arc<Core>,
    pub(super) target: WatchTarget,
    pub(super) events: mpsc::UnboundedSender<WatchItem>,
    pub(super) current: watch::Sender<Option<PresenceInfo>>,
    pub(super) last_sent: Option<PresenceInfo>,
    pub(super) dialog: Option<Dialog>,
    pub(super) backoff: Backoff,
    pub(super) first: Option<oneshot::Sender<Result<()>>>,
}

impl Subscription {
    fn emit(&mut self, info: PresenceInfo) {
        self.current.send_replace(Some(info.clone()));
        if self.last_sent.as_ref() != Some(&info) {
            self.last_sent = Some(info.clone());
            let _ = self.events.send(Ok(info));
        }
    }

    fn error(&mut self, error: Error) {
        let _ = self.events.send(Err(error));
    }

    fn first_outcome(&mut self, result: Result<()>) {
        if let Some(first) = self.first.take() {
            let _ = first.send(result);
        }
    }

    pub(super) async fn run(mut self, mut control: mpsc::UnboundedReceiver<Control>) {
        let timers = self.core.timers.clone();
        let mut next = subscribe_in(Duration::ZERO);
        let mut heartbeat = tokio::time::interval(timers.heartbeat_interval);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_seen = Instant::now();
        let mut offline = false;
        let mut lost = self.core.net.lost();
        loop {
            let wake_at = match &next {
                Next::Subscribe(at) | Next::RefreshAt(at) => *at,
            };
            tokio::select! {
                biased;
                command = control.recv() => {
                    let done = command.map(|Control::Stop(done)| done);
                    self.unsubscribe().await;
                    if let Some(done) = done {
                        let _ = done.send(());
                    }
                    return;
                }
                notify = recv_notify(&mut self.dialog) => {
                    let Some(notify) = notify else { continue };
                    last_seen = Instant::now();
                    offline = false;
                    if let Some(n) = self.on_notify(notify).await {
                        next = n;
                    }
                }
                _ = tokio::time::sleep_until(wake_at) => {
                    next = match next {
                        Next::Subscribe(_) => self.subscribe().await,
                        Next::RefreshAt(_) => self.refresh().await,
                    };
                    if self.dialog.is_some() {
                        last_seen = Instant::now();
                        offline = false;
                    }
                }
                changed = lost.changed(), if !self.target.direct => {
                    // A connection closed: if it carried this dialog, the notifier cannot
                    // reach us any more; refresh now to find out (and to open a new one).
                    if changed.is_ok() && self.dialog.is_some() {
                        next = Next::RefreshAt(Instant::now() + timers.retry_min);
                    }
                }
                _ = heartbeat.tick(), if self.target.direct => {
                    match self.ping().await {
                        Ok(()) => {
                            last_seen = Instant::now();
                            if offline {
                                // Back: subscribe again for the current state.
                                offline = false;
                                self.drop_dialog();
                                self.backoff.reset();
                                next = subscribe_in(Duration::ZERO);
                            }
                        }
                        Err(_) if !offline && last_seen.elapsed() >= timers.offline_threshold => {
                            offline = true;
                            self.emit(PresenceInfo::new(PresenceStatus::Offline));
                        }
                        Err(_) => {}
                    }
                }
            }
        }
    }

    fn drop_dialog(&mut self) {
        if let Some(dialog) = self.dialog.take() {
            self.core.remove_subscription(&dialog.call_id);
        }
    }

    /// A new subscription (new dialog).
    async fn subscribe(&mut self) -> Next {
        self.drop_dialog();
        let (sender, notifies) = mpsc::unbounded_channel();
        let call_id = format!("{}@presence-client", random_token());
        self.core.add_subscription(&call_id, sender);
        self.dialog = Some(Dialog {
            call_id,
            local_tag: random_token(),
            remote_tag: None,
            remote_target: self.target.uri.clone(),
            route: Vec::new(),
            cseq: self.core.next_cseq(),
            link: self.target.link,
            last_notify_cseq: None,
            expires_at: Instant::now(),
            notifies,
        });
        let mut expires = self.core.timers.subscribe_expires;
        for _ in 0..3 {
            let Some(dialog) = self.dialog.as_mut() else {
                break;
            };
            let mut out = Subscription::request_for(&self.core, &self.target, dialog, expires);
            let result = self.core.request(&mut out).await;
            if let Some(dialog) = self.dialog.as_mut() {
                dialog.cseq = out.cseq;
            }
            match result {
                Ok(response) if (200..300).contains(&response.status()) => {
                    self.established(&response).await;
                    self.backoff.reset();
                    self.first_outcome(Ok(()));
                    let granted = granted_expires(&response, expires);
                    if let Some(dialog) = self.dialog.as_mut() {
                        dialog.expires_at = Instant::now() + Duration::from_secs(granted.into());
                    }
                    return Next::RefreshAt(Instant::now() + refresh_after(granted));
                }
                Ok(response) if response.status() == 423 => {
                    expires = response
                        .headers()
                        .min_expires()
                        .ok()
                        .flatten()
                        .unwrap_or(expires.saturating_mul(2));
                }
                Ok(response) => {
                    let error = rejected(&Method::Subscribe, &response);
                    let retry_after = retry_after(&response);
                    return self.failed(error, retry_after, true);
                }
                Err(e) => return self.failed(e, None, false),
            }
        }
        self.failed(
            Error::BadMessage("SUBSCRIBE interval refused repeatedly".into()),
            None,
            true,
        )
    }

    fn request_for(core: &Core, target: &WatchTarget, dialog: &Dialog, expires: u32) -> Outgoing {
        let (uri, to) = match &dialog.remote_tag {
            Some(tag) => (
                dialog.remote_target.clone(),
                NameAddr::new(target.uri.clone()).with_tag(tag.clone()),
            ),
            None => (target.uri.clone(), NameAddr::new(target.uri.clone())),
        };
        Outgoing {
            method: Method::Subscribe,
            uri,
            from: core.me(&dialog.local_tag),
            to,
            call_id: dialog.call_id.clone(),
            cseq: dialog.cseq,
            route: dialog.route.clone(),
            headers: vec![
                (HeaderName::Event, presence_event().to_string()),
                (HeaderName::Accept, "application/pidf+xml".to_owned()),
                (HeaderName::Expires, expires.to_string()),
            ],
            body: None,
            link: dialog.link,
            credentials: !target.direct,
            timeout: None,
        }
    }

    /// A failed attempt: reported, and retried after a delay. The very first failure of a
    /// refusal (`refused`) is the error of `watch()` itself.
    fn failed(&mut self, error: Error, retry_after: Option<Duration>, refused: bool) -> Next {
        if refused && self.first.is_some() {
            self.first_outcome(Err(error));
            self.drop_dialog();
            return subscribe_in(Duration::from_secs(86_400));
        }
        self.first_outcome(Ok(()));
        self.drop_dialog();
        self.error(error);
        let delay = self.backoff.next_delay();
        subscribe_in(retry_after.map_or(delay, |r| r.max(delay)))
    }

    /// The 2xx of an initial SUBSCRIBE: the dialog's remote tag, route set and target.
    async fn established(&mut self, response: &Response) {
        let headers = response.headers();
        let tag = headers.to().ok().and_then(|to| to.tag().map(str::to_owned));
        let mut route = headers.record_route().unwrap_or_default();
        route.reverse();
        let contact = first_contact(response.headers());
        let Some(dialog) = self.dialog.as_mut() else {
            return;
        };
        if dialog.remote_tag.is_none() {
            dialog.remote_tag = tag;
        }
        dialog.route = route;
        if let Some(contact) = contact {
            retarget(&self.core, dialog, contact).await;
        }
    }

    /// Refreshes the dialog in place.
    async fn refresh(&mut self) -> Next {
        let expires = self.core.timers.subscribe_expires;
        let Some(dialog) = self.dialog.as_mut() else {
            return subscribe_in(Duration::ZERO);
        };
        if dialog.remote_tag.is_none() {
            return subscribe_in(Duration::ZERO);
        }
        let mut out = Subscription::request_for(&self.core, &self.target, dialog, expires);
        let result = self.core.request(&mut out).await;
        if let Some(dialog) = self.dialog.as_mut() {
            dialog.cseq = out.cseq;
        }
        match result {
            Ok(response) if (200..300).contains(&response.status()) => {
                if let (Some(contact), Some(dialog)) =
                    (first_contact(response.headers()), self.dialog.as_mut())
                {
                    retarget(&self.core, dialog, contact).await;
                }
                self.backoff.reset();
                let granted = granted_expires(&response, expires);
                if let Some(dialog) = self.dialog.as_mut() {
                    dialog.expires_at = Instant::now() + Duration::from_secs(granted.into());
                }
                Next::RefreshAt(Instant::now() + refresh_after(granted))
            }
            // The notifier no longer knows the dialog: start a new one at once.
            Ok(response) if response.status() == 481 => {
                self.drop_dialog();
                subscribe_in(self.backoff.next_delay().min(self.core.timers.retry_min))
            }
            Ok(response) => {
                let error = rejected(&Method::Subscribe, &response);
                let retry_after = retry_after(&response);
                self.failed(error, retry_after, false)
            }
            // Unreachable target (its edge died, the network went away). While the
            // subscription lasts, try the dialog again: a NOTIFY from whoever took it over
            // may bring a new target meanwhile. After that, a new subscription.
            Err(e) => {
                let retry_at = Instant::now() + self.backoff.next_delay();
                match self.dialog.as_ref() {
                    Some(dialog) if retry_at < dialog.expires_at => {
                        self.error(e);
                        Next::RefreshAt(retry_at)
                    }
                    _ => self.failed(e, None, false),
                }
            }
        }
    }

    /// A NOTIFY of the dialog (already answered 200 by the core).
    async fn on_notify(&mut self, notify: Request) -> Option<Next> {
        let headers = notify.headers();
        let cseq = headers.cseq().ok().map(|c| c.seq);
        let contact = first_contact(headers);
        let from_tag = headers.from().ok().and_then(|f| f.tag().map(str::to_owned));
        let state = headers.subscription_state().ok().flatten();
        {
            let dialog = self.dialog.as_mut()?;
            // Out-of-order over UDP: an older NOTIFY carries nothing new.
            if let (Some(seq), Some(last)) = (cseq, dialog.last_notify_cseq) {
                if seq <= last {
                    return None;
                }
            }
            dialog.last_notify_cseq = cseq;
            if dialog.remote_tag.is_none() {
                dialog.remote_tag = from_tag;
            }
        }
        // Target refresh (RFC 6665 §4.1.2.1): the notifier's Contact is where requests of the
        // dialog go from now on.
        if let (Some(contact), Some(dialog)) = (contact, self.dialog.as_mut()) {
            retarget(&self.core, dialog, contact).await;
        }
        self.first_outcome(Ok(()));
        let body = notify.body();
        if !body.is_empty() {
            match PresenceInfo::from_xml(body) {
                Ok(info) => self.emit(info),
                Err(e) => self.error(Error::BadMessage(format!("NOTIFY body: {e}"))),
            }
        }
        let state = state?;
        match state.state {
            SubState::Terminated => {
                self.drop_dialog();
                let reason = state.reason.unwrap_or_default();
                let retry = state.retry_after.map(|s| Duration::from_secs(s.into()));
                Some(match reason.as_str() {
                    // RFC 6665 §4.1.3: subscribe again at once.
                    "deactivated" | "timeout" | "" => subscribe_in(Duration::ZERO),
                    // Later (after retry-after when given).
                    "probation" | "giveup" | "noresource" => {
                        let delay = self.backoff.next_delay();
                        subscribe_in(retry.map_or(delay, |r| r.max(delay)))
                    }
                    // Refused: report it, and look again only rarely (the rules may change).
                    other => {
                        self.error(Error::Terminated(other.to_owned()));
                        subscribe_in(retry.unwrap_or(self.core.timers.retry_max))
                    }
                })
            }
            _ => {
                // The notifier may shorten the subscription (RFC 6665 §4.1.2.4 of the
                // NOTIFY's expires).
                let expires = state.expires?;
                let dialog = self.dialog.as_mut()?;
                let expires_at = Instant::now() + Duration::from_secs(expires.into());
                if expires_at < dialog.expires_at {
                    dialog.expires_at = expires_at;
                    return Some(Next::RefreshAt(Instant::now() + refresh_after(expires)));
                }
                None
            }
        }
    }

    /// An OPTIONS heartbeat to the watched peer; any answer means it is there.
    async fn ping(&self) -> Result<()> {
        let mut out = self.core.out_of_dialog(
            Method::Options,
            self.target.uri.clone(),
            NameAddr::new(self.target.uri.clone()),
            self.target.link,
            false,
        );
        let timers = &self.core.timers;
        out.timeout = Some(timers.heartbeat_interval.min(timers.transaction_timeout));
        self.core.request(&mut out).await.map(|_| ())
    }

    /// Ends the subscription (best effort: the notifier expires it anyway).
    async fn unsubscribe(&mut self) {
        let Some(dialog) = self.dialog.take() else {
            return;
        };
        self.core.remove_subscription(&dialog.call_id);
        if dialog.remote_tag.is_none() {
            return;
        }
        let mut out = Subscription::request_for(&self.core, &self.target, &dialog, 0);
        out.timeout = Some(
            self.core
                .timers
                .transaction_timeout
                .min(Duration::from_secs(5)),
        );
        if let Err(e) = self.core.request(&mut out).await {
            tracing::debug!(error = %e, "unsubscribing failed; the subscription expires by itself");
        }
    }
}

fn subscribe_in(delay: Duration) -> Next {
    Next::Subscribe(Instant::now() + delay)
}

async fn recv_notify(dialog: &mut Option<Dialog>) -> Option<Request> {
    match dialog {
        Some(dialog) => dialog.notifies.recv().await,
        None => std::future::pending().await,
    }
}

fn first_contact(headers: &sip::Headers) -> Option<Uri> {
    match headers.contacts() {
        Ok(sip::Contacts::List(list)) => list.first().map(|c| c.name_addr.uri.clone()),
        _ => None,
    }
}

/// Makes `contact` the dialog's remote target, and sends there from now on when no route
/// set says otherwise.
async fn retarget(core: &Core, dialog: &mut Dialog, contact: Uri) {
    if contact.as_str() == dialog.remote_target.as_str() && dialog.remote_tag.is_some() {
        return;
    }
    if dialog.route.is_empty() {
        match core.net.resolve(&contact, dialog.link.transport).await {
            Ok(link) => dialog.link = link,
            Err(e) => {
                tracing::debug!(error = %e, "new remote target not resolved; keeping the old")
            }
        }
    }
    dialog.remote_target = contact;
}

fn retry_after(response: &Response) -> Option<Duration> {
    response
        .headers()
        .get(HeaderName::RetryAfter)
        .and_then(|v| v.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
        .map(Duration::from_secs)
}
