//! The watchers' subscription dialogs, and the answering of their NOTIFYs.
//!
//! A [`Subscription`] is one SUBSCRIBE dialog as the subscriber sees it
//! (RFC 6665 §4.1, RFC 3261 §12): Call-ID, local and remote tags, remote
//! target, route set and CSeq, plus its [`DialogCheck`] and the arrival time
//! of each new document. [`DialogTable`] holds every dialog of a run, keyed
//! by Call-ID, and is the [`Inbound`] handler of the endpoints: it answers
//! each NOTIFY (200, or 481 for a dialog it does not know), checks it, and
//! records the PUBLISH → NOTIFY latency of every first delivery.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};

use sip::{Method, NameAddr, Request, Response, SubState, Uri};

use crate::checks::{DialogCheck, Observed, Verdict, Violation};
use crate::clock::Clock;
use crate::marker;
use crate::stats::Latency;
use crate::transport::{Failed, Inbound, Transaction};

/// One subscription dialog, subscriber side.
#[derive(Debug)]
pub struct Subscription {
    /// The Call-ID.
    pub call_id: String,
    /// Our address with our tag (From of our requests).
    pub local: NameAddr,
    /// The presentity's address (To of our requests, without tag).
    pub remote: NameAddr,
    /// Request-URI of in-dialog requests: the presentity until the notifier's Contact
    /// is known, then that Contact (RFC 3261 §12.1.2).
    pub target: Uri,
    /// The route set, from the 2xx's Record-Route in reverse order.
    pub route_set: Vec<String>,
    /// The CSeq of our last request in the dialog.
    pub cseq: u32,
    /// The presentity's address-of-record.
    pub presentity: String,
    /// Which watcher (user index) holds the dialog.
    pub watcher: usize,
    /// The NOTIFY checks.
    pub check: DialogCheck,
    /// The first arrival of each new document: (sequence number, run-clock ns).
    pub arrivals: Vec<(u64, u64)>,
    /// When the dialog was added to the table, just before its SUBSCRIBE was sent
    /// (run-clock ns). Documents published before it reach the dialog as its initial
    /// state, not as a change, so their latency is not a PUBLISH → NOTIFY latency.
    pub subscribed_ns: u64,
    /// Whether the SUBSCRIBE was accepted (2xx).
    pub accepted: bool,
    /// How many of the dialog's SUBSCRIBEs had to be retransmitted.
    pub retransmitted_subscribes: u32,
    /// The dialog's last events (SUBSCRIBE transactions, NOTIFYs), for reports of its
    /// violations.
    pub history: VecDeque<String>,
}

/// Events kept in a dialog's history.
const HISTORY: usize = 12;

impl Subscription {
    /// Our tag.
    pub fn local_tag(&self) -> &str {
        self.local.tag().unwrap_or_default()
    }

    /// Adds an event at `at_ns` (run clock) to the history, forgetting the oldest.
    pub fn note(&mut self, at_ns: u64, event: String) {
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history
            .push_back(format!("{:.3} s {event}", at_ns as f64 / 1e9));
    }

    /// When the document with sequence number `seq` or a later one first arrived.
    pub fn first_arrival_from(&self, seq: u64) -> Option<u64> {
        self.arrivals
            .iter()
            .filter(|(s, _)| *s >= seq)
            .map(|(_, at)| *at)
            .min()
    }
}

#[derive(Default)]
struct Inner {
    dialogs: HashMap<String, Subscription>,
    latency: Latency,
    unknown: u64,
    other_requests: u64,
    duplicates_after_retransmission: u64,
}

/// Every dialog of a run.
pub struct DialogTable {
    run: String,
    clock: Clock,
    inner: Mutex<Inner>,
}

impl DialogTable {
    /// An empty table for run `run` (whose markers it looks for in NOTIFY bodies).
    pub fn new(run: &str, clock: Clock) -> DialogTable {
        DialogTable {
            run: run.to_owned(),
            clock,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic under the lock leaves plain data that is still usable for a report.
        locks::lock(&self.inner)
    }

    /// Adds a dialog (before its SUBSCRIBE is sent, since the NOTIFY may come first).
    pub fn insert(&self, mut subscription: Subscription) {
        subscription.subscribed_ns = self.clock.now_ns();
        self.lock()
            .dialogs
            .insert(subscription.call_id.clone(), subscription);
    }

    /// Runs `f` on the dialog with this Call-ID.
    pub fn with<R>(&self, call_id: &str, f: impl FnOnce(&mut Subscription) -> R) -> Option<R> {
        self.lock().dialogs.get_mut(call_id).map(f)
    }

    /// Takes in the 2xx to the dialog's SUBSCRIBE: remote tag, remote target, route set.
    pub fn confirm(&self, call_id: &str, response: &Response) {
        let headers = response.headers();
        let to_tag = headers.to().ok().and_then(|to| to.tag().map(str::to_owned));
        let contact = match headers.contacts() {
            Ok(sip::Contacts::List(list)) => list.first().map(|c| c.name_addr.uri.clone()),
            _ => None,
        };
        let routes: Vec<String> = headers
            .record_route()
            .map(|r| r.iter().rev().map(ToString::to_string).collect())
            .unwrap_or_default();
        self.with(call_id, |s| {
            s.accepted = true;
            if let Some(tag) = &to_tag {
                s.check.confirm_remote_tag(tag);
            }
            if let Some(uri) = contact {
                s.target = uri;
            }
            if s.route_set.is_empty() {
                s.route_set = routes;
            }
        });
    }

    /// Takes in the outcome of a SUBSCRIBE of the dialog: a 2xx is confirmed (see
    /// [`DialogTable::confirm`]), and a retransmission is remembered, to tell
    /// duplicates that followed one.
    pub fn subscribed(&self, call_id: &str, outcome: &Result<Transaction, Failed>) {
        let now = self.clock.now_ns();
        self.with(call_id, |s| match outcome {
            Ok(t) => {
                if t.retransmissions > 0 {
                    s.retransmitted_subscribes += 1;
                }
                let cseq = t.response.headers().cseq().map(|c| c.seq).unwrap_or(0);
                s.note(t.sent_ns, format!("SUBSCRIBE CSeq {cseq} sent"));
                s.note(
                    t.answered_ns,
                    format!(
                        "SUBSCRIBE CSeq {cseq} answered {} after {} retransmissions",
                        t.response.status(),
                        t.retransmissions
                    ),
                );
            }
            Err(f) => {
                if f.retransmissions > 0 {
                    s.retransmitted_subscribes += 1;
                }
                s.note(now, format!("SUBSCRIBE failed: {}", f.error));
            }
        });
        if let Ok(t) = outcome {
            if (200..300).contains(&t.response.status()) {
                self.confirm(call_id, &t.response);
            }
        }
    }

    /// Duplicate NOTIFYs in dialogs one of whose SUBSCRIBEs had been retransmitted.
    pub fn duplicates_after_retransmission(&self) -> u64 {
        self.lock().duplicates_after_retransmission
    }

    /// How many dialogs satisfy `predicate`.
    pub fn count(&self, predicate: impl Fn(&Subscription) -> bool) -> usize {
        self.lock()
            .dialogs
            .values()
            .filter(|s| predicate(s))
            .count()
    }

    /// Runs `f` on every dialog.
    pub fn for_each(&self, mut f: impl FnMut(&mut Subscription)) {
        for s in self.lock().dialogs.values_mut() {
            f(s);
        }
    }

    /// The Call-IDs of every dialog.
    pub fn call_ids(&self) -> Vec<String> {
        self.lock().dialogs.keys().cloned().collect()
    }

    /// The PUBLISH → NOTIFY latencies recorded so far.
    pub fn latency(&self) -> Latency {
        self.lock().latency.clone()
    }

    /// NOTIFYs for dialogs the table does not know (answered 481).
    pub fn unknown(&self) -> u64 {
        self.lock().unknown
    }

    /// Requests other than NOTIFY received.
    pub fn other_requests(&self) -> u64 {
        self.lock().other_requests
    }

    fn notify(&self, request: &Request, at_ns: u64) -> u16 {
        let headers = request.headers();
        let Ok(call_id) = headers.call_id() else {
            return 400;
        };
        let to_tag = headers.to().ok().and_then(|to| to.tag().map(str::to_owned));
        let mut inner = self.lock();
        let inner = &mut *inner;
        let Some(dialog) = inner.dialogs.get_mut(call_id) else {
            inner.unknown += 1;
            return 481;
        };
        if to_tag.as_deref() != Some(dialog.local_tag()) {
            inner.unknown += 1;
            return 481;
        }
        let from_tag = headers.from().ok().and_then(|f| f.tag().map(str::to_owned));
        let cseq = headers.cseq().ok().filter(|c| c.method == Method::Notify);
        let event = headers.event().ok().flatten().filter(|e| e.is("presence"));
        let state = headers.subscription_state().ok().flatten();
        let (Some(from_tag), Some(cseq), Some(_event), Some(state)) =
            (from_tag, cseq, event, state)
        else {
            dialog.check.record(Violation::Malformed);
            return 400;
        };
        let body = request.body();
        let mut shown = DefaultHasher::new();
        let seq_marker = if body.is_empty() {
            None
        } else {
            match pidf::Document::parse(body) {
                Ok(document) => {
                    marker::state(&document, &self.run).hash(&mut shown);
                    marker::find(&document, &self.run)
                }
                Err(_) => {
                    dialog.check.record(Violation::UnparseableBody);
                    // Answered 200 all the same: the dialog is fine, the document is not.
                    return 200;
                }
            }
        };
        let mut hasher = DefaultHasher::new();
        body.hash(&mut hasher);
        let observed = Observed {
            cseq: cseq.seq,
            from_tag: &from_tag,
            seq: seq_marker.as_ref().map(|m| m.seq),
            body_digest: hasher.finish(),
            state_digest: shown.finish(),
            terminated: state.state == SubState::Terminated,
        };
        let verdict = dialog.check.observe(&observed);
        dialog.note(
            at_ns,
            format!(
                "NOTIFY CSeq {} seq {:?} {} body {:04x} -> {verdict:?}",
                observed.cseq,
                observed.seq,
                state.state.as_str(),
                observed.body_digest & 0xffff
            ),
        );
        if verdict == Verdict::Violating(Violation::Duplicate)
            && dialog.retransmitted_subscribes > 0
        {
            inner.duplicates_after_retransmission += 1;
        }
        if let (Verdict::Fresh(seq), Some(m)) = (verdict, &seq_marker) {
            if m.sent_ns >= dialog.subscribed_ns {
                inner.latency.record(at_ns.saturating_sub(m.sent_ns));
            }
            dialog.arrivals.push((seq, at_ns));
        }
        // A NOTIFY's Contact is the dialog's new remote target (RFC 6665 §4.1.2.2).
        if let Ok(sip::Contacts::List(list)) = headers.contacts() {
            if let Some(contact) = list.first() {
                dialog.target = contact.name_addr.uri.clone();
            }
        }
        200
    }
}

impl Inbound for DialogTable {
    fn request(&self, request: &Request, _source: SocketAddr, at_ns: u64) -> u16 {
        match request.method() {
            Method::Notify => self.notify(request, at_ns),
            Method::Options => {
                self.lock().other_requests += 1;
                200
            }
            _ => {
                self.lock().other_requests += 1;
                405
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn subscription(call_id: &str) -> Subscription {
        let local = NameAddr::new(Uri::parse("sip:w@example.com").expect("uri")).with_tag("me");
        let remote = NameAddr::new(Uri::parse("sip:p@example.com").expect("uri"));
        Subscription {
            call_id: call_id.into(),
            target: remote.uri.clone(),
            local,
            remote,
            route_set: Vec::new(),
            cseq: 1,
            presentity: "p@example.com".into(),
            watcher: 0,
            check: DialogCheck::new(),
            arrivals: Vec::new(),
            subscribed_ns: 0,
            accepted: false,
            retransmitted_subscribes: 0,
            history: VecDeque::new(),
        }
    }

    fn notify(call_id: &str, to_tag: &str, cseq: u32, body: &str) -> Request {
        let text = format!(
            "NOTIFY sip:w@127.0.0.1:5070 SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK{cseq}\r\n\
             From: <sip:p@example.com>;tag=srv\r\n\
             To: <sip:w@example.com>;tag={to_tag}\r\n\
             Call-ID: {call_id}\r\n\
             CSeq: {cseq} NOTIFY\r\n\
             Max-Forwards: 70\r\n\
             Contact: <sip:127.0.0.1:5060>\r\n\
             Event: presence\r\n\
             Subscription-State: active;expires=600\r\n\
             Content-Type: application/pidf+xml\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        match sip::parse(Bytes::from(text)).expect("parses") {
            sip::Message::Request(r) => r,
            sip::Message::Response(_) => panic!("a request"),
        }
    }

    fn source() -> SocketAddr {
        "127.0.0.1:5060".parse().expect("address")
    }

    #[test]
    fn notifies_are_answered_checked_and_timed() {
        let table = DialogTable::new("run1", Clock::start());
        table.insert(subscription("c1"));
        let body = marker::document(
            "p@example.com",
            "t",
            &marker::Marker {
                run: "run1".into(),
                seq: 0,
                sent_ns: u64::MAX / 2,
            },
        );
        let at = u64::MAX / 2 + 5_000;
        assert_eq!(
            table.request(&notify("c1", "me", 1, &body), source(), at),
            200
        );
        assert_eq!(
            table.request(&notify("c1", "me", 1, &body), source(), at + 1),
            200
        );
        assert_eq!(table.latency().count(), 1);
        table.with("c1", |s| {
            assert_eq!(s.arrivals, vec![(0, at)]);
            assert_eq!(s.check.retransmissions, 1);
            assert_eq!(s.target.as_str(), "sip:127.0.0.1:5060");
            assert_eq!(s.first_arrival_from(0), Some(at));
            assert_eq!(s.first_arrival_from(1), None);
        });
    }

    #[test]
    fn the_initial_state_is_not_a_change() {
        let clock = Clock::start();
        let published = clock.now_ns();
        let table = DialogTable::new("run1", clock);
        table.insert(subscription("c1"));
        let body = marker::document(
            "p@example.com",
            "t",
            &marker::Marker {
                run: "run1".into(),
                seq: 0,
                sent_ns: published,
            },
        );
        let at = clock.now_ns() + 1;
        assert_eq!(
            table.request(&notify("c1", "me", 1, &body), source(), at),
            200
        );
        assert_eq!(table.latency().count(), 0);
        table.with("c1", |s| assert_eq!(s.arrivals, vec![(0, at)]));
    }

    #[test]
    fn unknown_dialogs_get_481_and_bad_bodies_are_violations() {
        let table = DialogTable::new("run1", Clock::start());
        table.insert(subscription("c1"));
        assert_eq!(table.request(&notify("c2", "me", 1, ""), source(), 1), 481);
        assert_eq!(
            table.request(&notify("c1", "other", 1, ""), source(), 1),
            481
        );
        assert_eq!(table.unknown(), 2);
        assert_eq!(
            table.request(&notify("c1", "me", 1, "<oops"), source(), 1),
            200
        );
        table.with("c1", |s| {
            assert_eq!(s.check.violations(), &[Violation::UnparseableBody]);
        });
    }
}
