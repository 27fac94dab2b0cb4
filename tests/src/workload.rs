//! A load of publishers and watchers, and the check of what every watcher
//! received: complete, in order, no duplicates, right final state.
//!
//! Each presentity has one publisher that sends numbered changes (a note
//! `"<presentity> change <k>"`) and behaves like a phone: after `503` it
//! tries again, after `412` it publishes in full (RFC 3903 §4.1), after no
//! answer it sends again. A change counts as *applied* when it got `200`.
//! Before the next change the publisher waits until every watcher of the
//! presentity has the current one, so that every applied change must reach
//! every watcher (none can be coalesced away by a newer one).
//!
//! Each watcher is one UA with one subscription dialog, run in its own task
//! that answers NOTIFYs at once. Retransmissions of one NOTIFY (same CSeq)
//! are folded into one observation.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::{Event, HeaderName, Method, Response, SubState};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cluster::Tokens;
use crate::ua::{pidf, Dialog, Ua};

mod verdict;

pub use verdict::{
    check_all, check_sequence, fold_takeover, is_neutral, takeover_index, without_neutral, Verdict,
    TAKEOVER_CSEQ_GAP,
};

/// How long one PUBLISH waits for its answer before it is sent again.
const ANSWER_WAIT: Duration = Duration::from_secs(8);
/// How long a publisher waits for its watchers to have a change.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);
/// How long one change may take, retries included, before the run fails.
const CHANGE_DEADLINE: Duration = Duration::from_secs(90);
/// Pause before trying again after a 503 or no answer. (A phone honours
/// Retry-After; the tests retry sooner to stay short.)
const RETRY_PAUSE: Duration = Duration::from_millis(250);

use locks::lock;

/// The note carried by the changes of a load.
pub fn note_of(presentity: &str, change: usize) -> String {
    format!("{presentity} change {change}")
}

/// One NOTIFY as a watcher saw it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    pub cseq: u32,
    pub state: SubState,
    /// The `<note>` of the document, if any.
    pub note: Option<String>,
    pub basic_open: bool,
}

impl Seen {
    fn of(notify: &sip::Request) -> Seen {
        let body = String::from_utf8_lossy(notify.body()).into_owned();
        let note = body.find("<note>").and_then(|start| {
            let rest = &body[start + "<note>".len()..];
            rest.find("</note>").map(|end| rest[..end].to_string())
        });
        let state = notify
            .headers()
            .subscription_state()
            .ok()
            .flatten()
            .map(|s| s.state)
            .unwrap_or(SubState::Active);
        Seen {
            cseq: notify.headers().cseq().map(|c| c.seq).unwrap_or(0),
            state,
            note,
            basic_open: body.contains("<basic>open</basic>"),
        }
    }
}

/// What one watcher saw, shared with the publisher waiting on it.
#[derive(Default, Debug)]
pub struct Observations {
    pub seen: Vec<Seen>,
    /// NOTIFYs received again with a CSeq already seen.
    pub retransmissions: usize,
}

/// One watcher: a UA subscribed to one presentity, answering NOTIFYs in
/// its own task until stopped.
pub struct Watcher {
    pub name: String,
    pub presentity: String,
    pub token: String,
    pub dialog: Dialog,
    pub observations: Arc<Mutex<Observations>>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Ua>,
}

impl Watcher {
    /// Subscribes `name` to `presentity` through `edge`; the 200 OK and the
    /// first NOTIFY must come within `wait`, retrying the SUBSCRIBE after a
    /// 503.
    pub async fn subscribe(
        tokens: &Tokens,
        name: &str,
        presentity: &str,
        edge: SocketAddr,
        expires: u32,
    ) -> Watcher {
        Watcher::subscribe_from(tokens, name, presentity, edge, expires, None).await
    }

    /// Like [`Watcher::subscribe`], the UA bound to `bind` (loopback when
    /// `None`).
    pub async fn subscribe_from(
        tokens: &Tokens,
        name: &str,
        presentity: &str,
        edge: SocketAddr,
        expires: u32,
        bind: Option<IpAddr>,
    ) -> Watcher {
        let token = tokens.token(name);
        let mut ua = match bind {
            Some(ip) => Ua::udp_from(name, ip, edge).await,
            None => Ua::udp(name, edge).await,
        };
        let deadline = Instant::now() + CHANGE_DEADLINE;
        let dialog = loop {
            let (response, dialog) = ua.subscribe(presentity, &token, expires).await;
            match (response.status(), dialog) {
                (200, Some(dialog)) => break dialog,
                (503, _) if Instant::now() < deadline => tokio::time::sleep(RETRY_PAUSE).await,
                (status, _) => panic!("{name}: SUBSCRIBE to {presentity} answered {status}"),
            }
        };
        let observations = Arc::new(Mutex::new(Observations::default()));
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(answer_notifies(ua, observations.clone(), stopped));
        let watcher = Watcher {
            name: name.to_string(),
            presentity: presentity.to_string(),
            token,
            dialog,
            observations,
            stop,
            task,
        };
        watcher
            .wait_for(|seen| !seen.is_empty(), Duration::from_secs(30))
            .await
            .unwrap_or_else(|| panic!("{name}: no initial NOTIFY"));
        watcher
    }

    /// Waits until `condition` holds on what was seen; `None` on timeout.
    pub async fn wait_for(
        &self,
        condition: impl Fn(&[Seen]) -> bool,
        timeout: Duration,
    ) -> Option<()> {
        wait_on(&self.observations, condition, timeout).await
    }

    /// A copy of what was seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        lock(&self.observations).seen.clone()
    }

    /// Stops answering and returns the UA (with its dialog state).
    pub async fn stop(self) -> (Ua, Dialog, String, Arc<Mutex<Observations>>) {
        let _ = self.stop.send(true);
        let ua = self.task.await.expect("watcher task");
        (ua, self.dialog, self.token, self.observations)
    }

    /// Ends the subscription (`Expires: 0`) and waits for the final
    /// NOTIFY; returns the status of the unsubscribe.
    pub async fn unsubscribe(self) -> (u16, Vec<Seen>, usize) {
        let (mut ua, mut dialog, token, observations) = self.stop().await;
        let response = ua.resubscribe(&mut dialog, &token, 0).await;
        let status = response.status();
        if status == 200 {
            // The final NOTIFY may have come while waiting for the 200 (the
            // UA queued it) or still be on its way.
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let Some(notify) = ua.next_notify(left).await else {
                    break;
                };
                record(&observations, &notify);
                if Seen::of(&notify).state == SubState::Terminated {
                    break;
                }
            }
        }
        let observations = lock(&observations);
        (
            status,
            observations.seen.clone(),
            observations.retransmissions,
        )
    }
}

fn record(observations: &Mutex<Observations>, notify: &sip::Request) {
    let seen = Seen::of(notify);
    let mut observations = lock(observations);
    if observations.seen.iter().any(|s| s.cseq == seen.cseq) {
        observations.retransmissions += 1;
    } else {
        observations.seen.push(seen);
    }
}

async fn answer_notifies(
    mut ua: Ua,
    observations: Arc<Mutex<Observations>>,
    stopped: watch::Receiver<bool>,
) -> Ua {
    while !*stopped.borrow() {
        if let Some(notify) = ua.next_notify(Duration::from_millis(100)).await {
            record(&observations, &notify);
        }
    }
    ua
}

async fn wait_on(
    observations: &Mutex<Observations>,
    condition: impl Fn(&[Seen]) -> bool,
    timeout: Duration,
) -> Option<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if condition(&lock(observations).seen) {
            return Some(());
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A refused or unanswered attempt.
#[derive(Clone, Debug)]
pub struct Refusal {
    pub at: Instant,
    /// `None`: no answer in time.
    pub status: Option<u16>,
    pub retry_after: bool,
}

/// What one publisher did.
#[derive(Clone, Debug, Default)]
pub struct PublishReport {
    pub presentity: String,
    /// Notes answered 200, in order.
    pub applied: Vec<String>,
    /// Notes sent again after an outcome that may have applied them (503
    /// or no answer): a watcher may see these twice in a row.
    pub resent: HashSet<String>,
    pub refusals: Vec<Refusal>,
    /// Times a 412 made the publisher publish in full.
    pub republished_after_412: usize,
    /// When each change was answered 200.
    pub applied_at: Vec<Instant>,
    /// Changes some watcher did not have within the delivery wait.
    pub undelivered: Vec<String>,
}

/// Sends one PUBLISH and waits up to `timeout` for its final answer.
pub async fn publish_once(
    ua: &mut Ua,
    token: &str,
    if_match: Option<&str>,
    body: Option<&str>,
    expires: u32,
    timeout: Duration,
) -> Option<Response> {
    let aor = ua.aor.clone();
    let mut builder = ua
        .request(Method::Publish, &aor, &aor)
        .header(
            HeaderName::Event,
            Event {
                package: "presence".into(),
                id: None,
                params: Vec::new(),
            },
        )
        .header(HeaderName::Expires, expires)
        .header(HeaderName::Authorization, format!("Bearer {token}"));
    if let Some(tag) = if_match {
        builder = builder.header(HeaderName::SipIfMatch, tag);
    }
    if let Some(b) = body {
        builder = builder.body("application/pidf+xml", Bytes::copy_from_slice(b.as_bytes()));
    }
    let request = builder.build();
    ua.send(&request).await;
    ua.try_response_to(&request, timeout).await
}

/// How a publisher paces its changes.
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub changes: usize,
    /// Pause after each delivered change.
    pub pause: Duration,
    /// `Expires` of each publication.
    pub expires: u32,
    /// `Expires` of the last change (a short one makes it expire).
    pub last_expires: u32,
}

/// Progress of all publishers: changes applied so far, summed.
#[derive(Clone, Default)]
pub struct Progress(Arc<AtomicUsize>);

impl Progress {
    pub fn applied(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Waits until at least `n` changes were applied in all.
    pub async fn reach(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.applied() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} changes applied after {timeout:?}",
                self.applied()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Runs one publisher's changes; see the module documentation.
pub async fn publish_series(
    mut ua: Ua,
    token: String,
    watchers: Vec<Arc<Mutex<Observations>>>,
    pace: Pace,
    progress: Progress,
) -> (Ua, PublishReport) {
    let presentity = ua.aor.clone();
    let mut report = PublishReport {
        presentity: presentity.clone(),
        ..PublishReport::default()
    };
    let mut etag: Option<String> = None;
    for change in 1..=pace.changes {
        let note = note_of(&presentity, change);
        let body = pidf(&presentity, "open", &note);
        let expires = if change == pace.changes {
            pace.last_expires
        } else {
            pace.expires
        };
        let deadline = Instant::now() + CHANGE_DEADLINE;
        loop {
            assert!(
                Instant::now() < deadline,
                "{presentity}: change {change} not applied within {CHANGE_DEADLINE:?}: {:?}",
                report.refusals.last()
            );
            let answer = publish_once(
                &mut ua,
                &token,
                etag.as_deref(),
                Some(&body),
                expires,
                ANSWER_WAIT,
            )
            .await;
            match answer.as_ref().map(Response::status) {
                Some(200) => {
                    etag = Some(
                        answer
                            .as_ref()
                            .and_then(|a| a.headers().sip_etag())
                            .expect("SIP-ETag in 200")
                            .to_string(),
                    );
                    break;
                }
                Some(412) => {
                    // The tag is unknown (the state was lost): publish in full.
                    report.republished_after_412 += 1;
                    etag = None;
                }
                Some(503) | None => {
                    report.refusals.push(Refusal {
                        at: Instant::now(),
                        status: answer.as_ref().map(Response::status),
                        retry_after: answer
                            .as_ref()
                            .is_some_and(|a| a.headers().get(&HeaderName::RetryAfter).is_some()),
                    });
                    report.resent.insert(note.clone());
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Some(other) => panic!("{presentity}: PUBLISH of change {change} answered {other}"),
            }
        }
        report.applied.push(note.clone());
        report.applied_at.push(Instant::now());
        progress.0.fetch_add(1, Ordering::Relaxed);
        for observations in &watchers {
            let delivered = wait_on(
                observations,
                |seen| {
                    seen.iter()
                        .any(|s| s.note.as_deref() == Some(note.as_str()))
                },
                DELIVERY_WAIT,
            )
            .await;
            if delivered.is_none() {
                report.undelivered.push(note.clone());
            }
        }
        tokio::time::sleep(pace.pause).await;
    }
    (ua, report)
}

/// Which edges a load's publishers and watchers use, and where their UAs
/// are bound.
#[derive(Clone, Copy, Debug)]
pub struct Spread<'a> {
    pub publisher_edges: &'a [SocketAddr],
    pub watcher_edges: &'a [SocketAddr],
    pub bind: Option<IpAddr>,
}

/// A whole load: publishers and their watchers.
pub struct Load {
    pub watchers: Vec<Watcher>,
    pub publishers: Vec<JoinHandle<(Ua, PublishReport)>>,
    pub progress: Progress,
}

impl Load {
    /// `presentities` publishers, publisher `i` on edge `i % edges`; for
    /// each presentity, `watchers_per_presentity` watchers spread over the
    /// edges. Subscriptions are made first, then every publisher starts.
    pub async fn start(
        tokens: &Tokens,
        edges: &[SocketAddr],
        presentities: usize,
        watchers_per_presentity: usize,
        pace: Pace,
    ) -> Load {
        let spread = Spread {
            publisher_edges: edges,
            watcher_edges: edges,
            bind: None,
        };
        Load::start_spread(tokens, spread, presentities, watchers_per_presentity, pace).await
    }

    /// Like [`Load::start`], with publishers and watchers on edges of
    /// their own: publisher `i` on `publisher_edges[i % len]`, watcher `w`
    /// of presentity `i` on `watcher_edges[(i + w + 1) % len]`, every UA
    /// bound to `spread.bind`.
    pub async fn start_spread(
        tokens: &Tokens,
        spread: Spread<'_>,
        presentities: usize,
        watchers_per_presentity: usize,
        pace: Pace,
    ) -> Load {
        let Spread {
            publisher_edges,
            watcher_edges,
            bind,
        } = spread;
        let run = hex::encode(rand::random::<[u8; 3]>());
        let names: Vec<String> = (0..presentities)
            .map(|i| format!("pub{i}-{run}@example.com"))
            .collect();
        let mut watchers = Vec::new();
        for (i, presentity) in names.iter().enumerate() {
            for w in 0..watchers_per_presentity {
                let name = format!("watch{w}-of-pub{i}-{run}@example.com");
                let edge = watcher_edges[(i + w + 1) % watcher_edges.len()];
                watchers.push(
                    Watcher::subscribe_from(tokens, &name, presentity, edge, 600, bind).await,
                );
            }
        }
        let progress = Progress::default();
        let mut publishers = Vec::new();
        for (i, presentity) in names.iter().enumerate() {
            let edge = publisher_edges[i % publisher_edges.len()];
            let ua = match bind {
                Some(ip) => Ua::udp_from(presentity, ip, edge).await,
                None => Ua::udp(presentity, edge).await,
            };
            let observed: Vec<_> = watchers
                .iter()
                .filter(|w| &w.presentity == presentity)
                .map(|w| w.observations.clone())
                .collect();
            publishers.push(tokio::spawn(publish_series(
                ua,
                tokens.token(presentity),
                observed,
                pace,
                progress.clone(),
            )));
        }
        Load {
            watchers,
            publishers,
            progress,
        }
    }

    /// Waits for every publisher to finish.
    pub async fn finish(&mut self) -> Vec<PublishReport> {
        let mut reports = Vec::new();
        for publisher in self.publishers.drain(..) {
            let (_ua, report) = publisher.await.expect("publisher task");
            reports.push(report);
        }
        reports
    }
}
