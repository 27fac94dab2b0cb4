//! Latency histograms, percentiles and per-method request counters.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency a histogram tracks exactly: one hour, in nanoseconds.
/// Longer values are recorded as this (nothing in a run waits that long).
const MAX_NS: u64 = 3_600_000_000_000;

/// A latency distribution in nanoseconds, with three significant digits.
#[derive(Clone, Debug)]
pub struct Latency {
    histogram: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty distribution.
    pub fn new() -> Latency {
        let histogram =
            Histogram::new_with_bounds(1, MAX_NS, 3).expect("constant histogram bounds are valid");
        Latency { histogram }
    }

    /// Records one latency.
    pub fn record(&mut self, ns: u64) {
        self.histogram.saturating_record(ns.clamp(1, MAX_NS));
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Latency) {
        // Both histograms have the same bounds, so adding never fails; a failure would
        // only lose values of an impossible configuration.
        let _ = self.histogram.add(&other.histogram);
    }

    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The distribution's summary in milliseconds.
    pub fn summary(&self) -> Summary {
        if self.histogram.is_empty() {
            return Summary::default();
        }
        let ms = |ns: u64| ns as f64 / 1e6;
        Summary {
            count: self.histogram.len(),
            mean_ms: self.histogram.mean() / 1e6,
            p50_ms: ms(self.histogram.value_at_quantile(0.5)),
            p99_ms: ms(self.histogram.value_at_quantile(0.99)),
            p999_ms: ms(self.histogram.value_at_quantile(0.999)),
            max_ms: ms(self.histogram.max()),
        }
    }
}

/// Percentiles of a latency distribution, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Number of values.
    pub count: u64,
    /// Arithmetic mean.
    pub mean_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Largest value.
    pub max_ms: f64,
}

/// Median and maximum of a list of durations (nanoseconds), in milliseconds; `None`
/// when the list is empty. The median of an even count is the lower middle value.
pub fn median_and_max(values: &[u64]) -> Option<(f64, f64)> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let max = *sorted.last()?;
    let median = sorted[(sorted.len() - 1) / 2];
    Some((median as f64 / 1e6, max as f64 / 1e6))
}

/// Counters and latency of the requests of one method.
#[derive(Clone, Debug, Default)]
pub struct MethodStats {
    /// Requests sent (first transmissions).
    pub sent: u64,
    /// Retransmissions of those requests (Timer E).
    pub retransmissions: u64,
    /// Transactions that ended without a final response (Timer F).
    pub timeouts: u64,
    /// Requests that could not be sent at all.
    pub send_errors: u64,
    /// Final responses by status code.
    pub statuses: BTreeMap<u16, u64>,
    /// First transmission to final response, for every final response.
    pub latency: Latency,
}

impl MethodStats {
    /// Final responses outside 2xx, timeouts and send errors: requests that failed.
    pub fn failed(&self) -> u64 {
        let refused: u64 = self
            .statuses
            .iter()
            .filter(|(status, _)| !(200..300).contains(*status))
            .map(|(_, n)| n)
            .sum();
        refused + self.timeouts + self.send_errors
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &MethodStats) {
        self.sent += other.sent;
        self.retransmissions += other.retransmissions;
        self.timeouts += other.timeouts;
        self.send_errors += other.send_errors;
        for (status, n) in &other.statuses {
            *self.statuses.entry(*status).or_default() += n;
        }
        self.latency.merge(&other.latency);
    }
}

/// Request statistics by method name.
#[derive(Clone, Debug, Default)]
pub struct RequestStats {
    by_method: BTreeMap<String, MethodStats>,
}

impl RequestStats {
    /// The statistics of one method, created empty when first used.
    pub fn method(&mut self, method: &str) -> &mut MethodStats {
        self.by_method.entry(method.to_owned()).or_default()
    }

    /// Every method's statistics, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &MethodStats)> {
        self.by_method.iter().map(|(m, s)| (m.as_str(), s))
    }

    /// Failed requests over all methods.
    pub fn failed(&self) -> u64 {
        self.by_method.values().map(MethodStats::failed).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_uniform_distribution() {
        let mut latency = Latency::new();
        for ms in 1..=1000u64 {
            latency.record(ms * 1_000_000);
        }
        let s = latency.summary();
        assert_eq!(s.count, 1000);
        // Three significant digits: values are exact to 0.1 %.
        assert!((s.p50_ms - 500.0).abs() <= 0.5, "{s:?}");
        assert!((s.p99_ms - 990.0).abs() <= 1.0, "{s:?}");
        assert!((s.p999_ms - 999.0).abs() <= 1.0, "{s:?}");
        assert!((s.max_ms - 1000.0).abs() <= 1.0, "{s:?}");
        assert!((s.mean_ms - 500.5).abs() <= 0.5, "{s:?}");
    }

    #[test]
    fn an_empty_distribution_summarises_to_zero() {
        assert_eq!(Latency::new().summary(), Summary::default());
    }

    #[test]
    fn merging_adds_values_and_extremes_are_clamped() {
        let mut a = Latency::new();
        a.record(0);
        let mut b = Latency::new();
        b.record(u64::MAX);
        a.merge(&b);
        assert_eq!(a.count(), 2);
        assert!(a.summary().max_ms >= 3_599_000.0);
    }

    #[test]
    fn median_and_max_of_lists() {
        assert_eq!(median_and_max(&[]), None);
        assert_eq!(median_and_max(&[5_000_000]), Some((5.0, 5.0)));
        assert_eq!(
            median_and_max(&[3_000_000, 1_000_000, 2_000_000, 10_000_000]),
            Some((2.0, 10.0))
        );
    }

    #[test]
    fn failures_count_refusals_timeouts_and_send_errors() {
        let mut stats = RequestStats::default();
        let publish = stats.method("PUBLISH");
        publish.statuses.insert(200, 10);
        publish.statuses.insert(412, 1);
        publish.timeouts = 2;
        let subscribe = stats.method("SUBSCRIBE");
        subscribe.statuses.insert(202, 3);
        subscribe.send_errors = 1;
        assert_eq!(stats.failed(), 4);
        let mut total = MethodStats::default();
        for (_, s) in stats.iter() {
            total.merge(s);
        }
        assert_eq!(total.statuses.values().sum::<u64>(), 14);
    }
}
