//! The result of a run: a serialisable [`Report`] (the `--json` output) and
//! its rendering as a plain-text table.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::checks::CheckSummary;
use crate::stats::{RequestStats, Summary};

/// Everything a run measured and checked.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// `fanout` or `office`.
    pub scenario: String,
    /// The server's address.
    pub target: String,
    /// The run id written into every published document.
    pub run: String,
    /// The scenario's settings, as given.
    pub settings: serde_json::Value,
    /// Seconds spent setting up (registrations, initial publications, subscriptions).
    pub setup_s: f64,
    /// Seconds of the measured phase (changes published).
    pub load_s: f64,
    /// Seconds spent winding down (settling, unsubscribing, removing).
    pub teardown_s: f64,
    /// Requests by method.
    pub requests: BTreeMap<String, MethodReport>,
    /// NOTIFYs received and the PUBLISH → NOTIFY latency of each first delivery.
    pub notify: NotifyReport,
    /// Fan-out only: how long each change took to reach every watcher.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery: Option<DeliveryReport>,
    /// The NOTIFY checks.
    pub checks: CheckSummary,
    /// Datagrams the kernel dropped at full receive buffers during the run.
    pub kernel_drops: KernelDrops,
    /// Requests that failed (non-2xx final response, timeout, send error).
    pub failed_requests: u64,
    /// Whether every check passed and no request failed: the exit status is 0 only then.
    pub passed: bool,
}

/// One method's requests.
#[derive(Clone, Debug, Serialize)]
pub struct MethodReport {
    /// Requests sent.
    pub sent: u64,
    /// Retransmissions (Timer E).
    pub retransmissions: u64,
    /// No final response within Timer F.
    pub timeouts: u64,
    /// Could not be sent.
    pub send_errors: u64,
    /// Final responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// First send → final response.
    pub latency: Summary,
}

/// What the watchers received.
#[derive(Clone, Debug, Default, Serialize)]
pub struct NotifyReport {
    /// NOTIFYs received, retransmissions included.
    pub received: u64,
    /// Of which retransmissions.
    pub retransmissions: u64,
    /// NOTIFYs for dialogs we do not know (answered 481).
    pub unknown_dialog: u64,
    /// PUBLISH sent → NOTIFY received, for the first delivery of each document to each
    /// dialog.
    pub latency: Summary,
    /// Change published → the watcher shows it or a later change, for every change and
    /// dialog (includes waits behind delayed NOTIFYs whose changes were coalesced).
    pub change_latency: Summary,
    /// (dialog, change) pairs never shown to the watcher.
    pub changes_not_shown: u64,
    /// Duplicate NOTIFYs in dialogs one of whose SUBSCRIBEs had been retransmitted (a
    /// hint that the notifier handled a retransmitted SUBSCRIBE as a new request).
    pub duplicates_after_retransmitted_subscribe: u64,
}

/// Receive drops counted by the kernel (`/proc/net/udp`; `null` where unavailable).
#[derive(Clone, Debug, Default, Serialize)]
pub struct KernelDrops {
    /// At the load generator's sockets.
    pub loadgen: Option<u64>,
    /// At the target's socket, when the server runs on this machine.
    pub target: Option<u64>,
}

/// Fan-out: the time from a change's PUBLISH to its arrival at the last watcher.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DeliveryReport {
    /// Changes published.
    pub changes: u64,
    /// Changes that reached every watcher (itself or a later change).
    pub complete: u64,
    /// Median over the complete changes, in milliseconds.
    pub all_watchers_median_ms: f64,
    /// Worst over the complete changes, in milliseconds.
    pub all_watchers_max_ms: f64,
    /// The time of each change (milliseconds; `null` for an incomplete change).
    pub per_change_ms: Vec<Option<f64>>,
}

/// Converts request statistics for the report.
pub fn methods(stats: &RequestStats) -> BTreeMap<String, MethodReport> {
    stats
        .iter()
        .map(|(method, s)| {
            (
                method.to_owned(),
                MethodReport {
                    sent: s.sent,
                    retransmissions: s.retransmissions,
                    timeouts: s.timeouts,
                    send_errors: s.send_errors,
                    statuses: s.statuses.clone(),
                    latency: s.latency.summary(),
                },
            )
        })
        .collect()
}

fn latency_row(out: &mut String, name: &str, s: &Summary) {
    let _ = writeln!(
        out,
        "  {name:<22} {:>9} {:>9.3} {:>9.3} {:>9.3} {:>9.3} {:>9.3}",
        s.count, s.p50_ms, s.p99_ms, s.p999_ms, s.max_ms, s.mean_ms
    );
}

impl Report {
    /// The report as a plain-text table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "loadgen {} against {} (run {})",
            self.scenario, self.target, self.run
        );
        let _ = writeln!(
            out,
            "  setup {:.2} s, load {:.2} s, teardown {:.2} s",
            self.setup_s, self.load_s, self.teardown_s
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  {:<22} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "latency (ms)", "count", "p50", "p99", "p99.9", "max", "mean"
        );
        for (method, m) in &self.requests {
            latency_row(&mut out, method, &m.latency);
        }
        latency_row(&mut out, "PUBLISH -> NOTIFY", &self.notify.latency);
        latency_row(&mut out, "change -> watcher", &self.notify.change_latency);
        if let Some(d) = &self.delivery {
            let _ = writeln!(out);
            let _ = writeln!(
                out,
                "  change to all watchers: median {:.3} ms, worst {:.3} ms ({} of {} changes reached every watcher)",
                d.all_watchers_median_ms, d.all_watchers_max_ms, d.complete, d.changes
            );
        }
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "  {:<22} {:>9} {:>9} {:>9} {:>9}  statuses",
            "requests", "sent", "retrans", "timeouts", "errors"
        );
        for (method, m) in &self.requests {
            let statuses: Vec<String> = m
                .statuses
                .iter()
                .map(|(status, n)| format!("{status}×{n}"))
                .collect();
            let _ = writeln!(
                out,
                "  {method:<22} {:>9} {:>9} {:>9} {:>9}  {}",
                m.sent,
                m.retransmissions,
                m.timeouts,
                m.send_errors,
                statuses.join(" ")
            );
        }
        let _ = writeln!(out);
        let c = &self.checks;
        let _ = writeln!(
            out,
            "  NOTIFY: {} received over {} dialogs, {} retransmissions, {} allowed repeats, {} coalesced changes, {} recomposed documents, {} for unknown dialogs",
            self.notify.received,
            c.dialogs,
            self.notify.retransmissions,
            c.repeats,
            c.skipped,
            c.recomposed,
            self.notify.unknown_dialog
        );
        let drops = |d: Option<u64>| d.map_or("n/a".to_owned(), |n| n.to_string());
        let _ = writeln!(
            out,
            "  kernel receive drops: loadgen sockets {}, target socket {}; changes never shown: {}",
            drops(self.kernel_drops.loadgen),
            drops(self.kernel_drops.target),
            self.notify.changes_not_shown
        );
        if c.violations.is_empty() {
            let _ = writeln!(out, "  checks: no violation");
        } else {
            let _ = writeln!(out, "  checks: {} violations", c.total());
            for (kind, n) in &c.violations {
                let _ = writeln!(out, "    {kind:<22} {n}");
            }
            let _ = writeln!(
                out,
                "    ({} duplicates in dialogs with a retransmitted SUBSCRIBE)",
                self.notify.duplicates_after_retransmitted_subscribe
            );
            for example in &c.examples {
                let _ = writeln!(out, "    e.g. {example}");
            }
        }
        let _ = writeln!(
            out,
            "  result: {} ({} failed requests)",
            if self.passed { "PASS" } else { "FAIL" },
            self.failed_requests
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::{DialogCheck, Violation};
    use crate::stats::RequestStats;

    fn report() -> Report {
        let mut stats = RequestStats::default();
        let publish = stats.method("PUBLISH");
        publish.sent = 2;
        publish.statuses.insert(200, 2);
        publish.latency.record(2_000_000);
        let mut check = DialogCheck::new();
        check.missing_final_notify();
        let mut checks = CheckSummary::default();
        checks.add("d1", &check, &[]);
        Report {
            scenario: "fanout".into(),
            target: "127.0.0.1:5060".into(),
            run: "r".into(),
            settings: serde_json::json!({"watchers": 1}),
            setup_s: 1.0,
            load_s: 2.0,
            teardown_s: 0.5,
            requests: methods(&stats),
            notify: NotifyReport::default(),
            delivery: Some(DeliveryReport::default()),
            checks: checks.finish(),
            kernel_drops: KernelDrops::default(),
            failed_requests: 0,
            passed: false,
        }
    }

    #[test]
    fn the_table_names_methods_and_violations() {
        let table = report().table();
        assert!(table.contains("PUBLISH"), "{table}");
        assert!(table.contains("no-final-notify"), "{table}");
        assert!(table.contains("FAIL"), "{table}");
    }

    #[test]
    fn json_keys_are_stable() {
        let value = serde_json::to_value(report()).expect("serialises");
        assert_eq!(value["checks"]["passed"], false);
        assert_eq!(
            value["checks"]["violations"][Violation::NoFinalNotify.name()],
            1
        );
        assert_eq!(value["requests"]["PUBLISH"]["statuses"]["200"], 2);
        assert_eq!(value["passed"], false);
    }
}
