//! Load profiles, and what they share: the endpoints, the dialog table, the
//! metrics, bounded concurrency, and the end of every run (settle, check the
//! final state, unsubscribe, wait for the terminating NOTIFYs).

pub mod fanout;
pub mod office;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::checks::{CheckSummary, Violation};
use crate::clock::Clock;
use crate::dialog::DialogTable;
use crate::kernel;
use crate::report::{self, KernelDrops, NotifyReport, Report};
use crate::stats::Latency;
use crate::transport::{Endpoint, Failed, Timers, Transaction, TransportError};
use crate::ua::{self, Agent, Metrics, UaError};
use crate::users::User;

/// Errors that stop a scenario before it can report.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// A socket could not be set up.
    #[error(transparent)]
    Transport(#[from] TransportError),
    /// A user makes no valid SIP address.
    #[error(transparent)]
    Ua(#[from] UaError),
    /// The scenario cannot run with these settings.
    #[error("{0}")]
    Config(String),
    /// A request the whole scenario depends on failed.
    #[error("{0}")]
    Setup(String),
}

/// Settings every scenario shares.
#[derive(Clone, Debug)]
pub struct Common {
    /// The server (loopback only: checked by the caller).
    pub target: SocketAddr,
    /// Local address to bind the sockets on.
    pub bind: std::net::IpAddr,
    /// Sockets the user agents are spread over.
    pub sockets: usize,
    /// Most client transactions in flight at once during setup and teardown.
    pub max_inflight: usize,
    /// Longest wait for the watchers to catch up (initial NOTIFYs, final state, final
    /// NOTIFYs).
    pub settle: Duration,
    /// Expires of SUBSCRIBE.
    pub subscribe_expires: u32,
    /// RFC 3261 timers.
    pub timers: Timers,
}

/// The run's shared machinery.
pub struct Bed {
    /// The time base.
    pub clock: Clock,
    /// The run id written into documents.
    pub run: String,
    /// Every dialog.
    pub table: Arc<DialogTable>,
    /// The sockets.
    pub endpoints: Vec<Arc<Endpoint>>,
    /// Request statistics.
    pub metrics: Arc<Metrics>,
    /// Bounds concurrent transactions in bulk phases.
    pub inflight: Arc<Semaphore>,
    /// The settings.
    pub common: Common,
    /// When each presentity published each sequence number (run-clock ns).
    sends: Mutex<HashMap<String, BTreeMap<u64, u64>>>,
    /// The target socket's receive drops when the run began (same machine only).
    target_drops: Option<u64>,
}

impl Bed {
    /// Binds `common.sockets` endpoints (plus `extra` more) and starts their receive loops.
    pub fn new(common: &Common, clock: Clock, extra: usize) -> Result<Bed, ScenarioError> {
        if common.sockets == 0 {
            return Err(ScenarioError::Config("--sockets must be at least 1".into()));
        }
        let run = hex::encode(rand::random::<[u8; 4]>());
        let table = Arc::new(DialogTable::new(&run, clock));
        let endpoints = (0..common.sockets + extra)
            .map(|_| {
                Endpoint::bind(
                    SocketAddr::new(common.bind, 0),
                    common.timers,
                    clock,
                    table.clone(),
                )
                .map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Bed {
            clock,
            run,
            table,
            endpoints,
            metrics: Arc::new(Metrics::default()),
            inflight: Arc::new(Semaphore::new(common.max_inflight.max(1))),
            common: common.clone(),
            sends: Mutex::new(HashMap::new()),
            target_drops: kernel::udp_drops(common.target),
        })
    }

    /// Notes that `presentity` sent the document with sequence number `seq` at `sent_ns`.
    pub fn record_send(&self, presentity: &str, seq: u64, sent_ns: u64) {
        locks::lock(&self.sends)
            .entry(presentity.to_owned())
            .or_default()
            .insert(seq, sent_ns);
    }

    /// When each sequence number of `presentity` was sent.
    pub fn sends_of(&self, presentity: &str) -> BTreeMap<u64, u64> {
        locks::lock(&self.sends)
            .get(presentity)
            .cloned()
            .unwrap_or_default()
    }

    /// For every accepted dialog and every change its presentity published after the
    /// dialog began: the time until the dialog showed that change or a later one. Unlike
    /// the PUBLISH → NOTIFY latency of delivered documents, this counts the wait of a
    /// watcher whose NOTIFYs were delayed and coalesced. Returns the distribution and the
    /// number of (dialog, change) pairs never shown.
    pub fn change_latency(&self) -> (Latency, u64) {
        let sends = locks::lock(&self.sends).clone();
        let mut latency = Latency::new();
        let mut missing = 0;
        self.table.for_each(|s| {
            if !s.accepted {
                return;
            }
            let Some(published) = sends.get(&s.presentity) else {
                return;
            };
            for (&seq, &sent) in published.range(0..) {
                if sent < s.subscribed_ns {
                    continue;
                }
                match s.first_arrival_from(seq) {
                    Some(at) => latency.record(at.saturating_sub(sent)),
                    None => missing += 1,
                }
            }
        });
        (latency, missing)
    }

    /// An agent for `user` on endpoint `socket`, sending to the target.
    pub fn agent(&self, user: User, socket: usize) -> Result<Agent, ScenarioError> {
        self.agent_to(user, socket, self.common.target)
    }

    /// An agent for `user` on endpoint `socket`, sending to `server`.
    pub fn agent_to(
        &self,
        user: User,
        socket: usize,
        server: SocketAddr,
    ) -> Result<Agent, ScenarioError> {
        let endpoint = self.endpoints[socket % self.endpoints.len()].clone();
        Ok(Agent::new(user, endpoint, server, self.metrics.clone())?)
    }

    /// Polls until `done` holds or `timeout` passes; returns whether it held.
    pub async fn wait_until(&self, timeout: Duration, done: impl Fn(&DialogTable) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if done(&self.table) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The end of a run, once the publishers are done: waits until every accepted
    /// dialog shows its presentity's final state (`expected` gives the acceptable range
    /// per presentity), records those that do not, unsubscribes every accepted dialog
    /// and waits for the terminating NOTIFYs.
    pub async fn finish(
        &self,
        agents: &[Arc<Agent>],
        expected: impl Fn(&str) -> Option<RangeInclusive<u64>> + Send + Sync,
    ) {
        let shows_final = |s: &crate::dialog::Subscription| {
            !s.accepted || expected(&s.presentity).is_none_or(|range| s.check.shows(&range))
        };
        let settled = self
            .wait_until(self.common.settle, |t| t.count(|s| !shows_final(s)) == 0)
            .await;
        if !settled {
            let behind = self.table.count(|s| !shows_final(s));
            eprintln!(
                "  {behind} dialogs did not reach the final state within {:?}",
                self.common.settle
            );
        }
        let mut unsubscribe = Vec::new();
        self.table.for_each(|s| {
            if !s.accepted {
                return;
            }
            if let Some(range) = expected(&s.presentity) {
                s.check.expect_final(range);
            }
            unsubscribe.push((s.call_id.clone(), s.watcher));
        });
        eprintln!("  unsubscribing {} dialogs", unsubscribe.len());
        let jobs = unsubscribe.into_iter().filter_map(|(call_id, watcher)| {
            let agent = agents.get(watcher).cloned()?;
            let table = self.table.clone();
            Some(async move {
                let request = table.with(&call_id, |s| agent.subscribe_request(s, 0));
                if let Some(request) = request {
                    // The outcome is counted in the metrics; a failed unsubscription
                    // shows as a missing terminating NOTIFY too.
                    let outcome = agent.send(&request).await;
                    table.subscribed(&call_id, &outcome);
                }
            })
        });
        bounded(self, jobs).await;
        let ended = |s: &crate::dialog::Subscription| !s.accepted || s.check.terminated();
        self.wait_until(self.common.settle, |t| t.count(|s| !ended(s)) == 0)
            .await;
        self.table.for_each(|s| {
            if !ended(s) {
                s.check.missing_final_notify();
            }
        });
    }

    /// The checks of every dialog, added up (dialogs whose SUBSCRIBE was refused are
    /// counted among the failed requests, not here).
    pub fn checks(&self, names: &[String]) -> CheckSummary {
        let mut summary = CheckSummary::default();
        self.table.for_each(|s| {
            let watcher = names.get(s.watcher).map_or("?", String::as_str);
            let name = format!("{} ({watcher} -> {})", s.call_id, s.presentity);
            let history: Vec<String> = s.history.iter().cloned().collect();
            summary.add(&name, &s.check, &history);
        });
        summary.add_unattached(Violation::UnknownDialog, self.table.unknown());
        summary.finish()
    }

    /// The report of the run, from what the bed measured.
    pub fn report(
        &self,
        scenario: &str,
        settings: serde_json::Value,
        phases: [Duration; 3],
        names: &[String],
    ) -> Report {
        let checks = self.checks(names);
        let stats = self.metrics.snapshot();
        let failed_requests = stats.failed();
        let latency = self.table.latency();
        let (change_latency, unshown) = self.change_latency();
        let loadgen_drops = self
            .endpoints
            .iter()
            .map(|e| kernel::udp_drops(e.local()))
            .sum::<Option<u64>>();
        let target_drops = match (self.target_drops, kernel::udp_drops(self.common.target)) {
            (Some(before), Some(after)) => Some(after.saturating_sub(before)),
            _ => None,
        };
        Report {
            scenario: scenario.to_owned(),
            target: self.common.target.to_string(),
            run: self.run.clone(),
            settings,
            setup_s: phases[0].as_secs_f64(),
            load_s: phases[1].as_secs_f64(),
            teardown_s: phases[2].as_secs_f64(),
            requests: report::methods(&stats),
            notify: NotifyReport {
                received: checks.notifies,
                retransmissions: checks.retransmissions,
                unknown_dialog: self.table.unknown(),
                latency: latency.summary(),
                change_latency: change_latency.summary(),
                changes_not_shown: unshown,
                duplicates_after_retransmitted_subscribe: self
                    .table
                    .duplicates_after_retransmission(),
            },
            kernel_drops: KernelDrops {
                loadgen: loadgen_drops,
                target: target_drops,
            },
            delivery: None,
            passed: checks.passed && failed_requests == 0,
            checks,
            failed_requests,
        }
    }
}

/// Runs `jobs` with at most `bed.inflight` at once and waits for all of them.
pub async fn bounded<F>(bed: &Bed, jobs: impl IntoIterator<Item = F>)
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut tasks = Vec::new();
    for job in jobs {
        let Ok(permit) = bed.inflight.clone().acquire_owned().await else {
            break;
        };
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            job.await;
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
}

/// Whether a transaction ended with a 2xx (re-exported for the scenarios).
pub use ua::succeeded;

/// A transaction's outcome in words, for messages.
pub fn describe(outcome: &Result<Transaction, Failed>) -> String {
    match outcome {
        Ok(t) => format!("{} {}", t.response.status(), t.response.reason()),
        Err(failed) => failed.error.to_string(),
    }
}
