//! The backend's metrics: Redis round trips (a command, a script or a
//! pipeline each count once) by outcome, and change-feed reconnections.

use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;

/// How a round trip ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `ok`, `error` (Redis answered an error or the connection failed) or
    /// `timeout`.
    pub outcome: &'static str,
}

/// The backend's metric families.
pub struct StoreMetrics {
    /// Duration of each Redis round trip, by outcome.
    pub round_trips: Family<OutcomeLabel, Histogram, fn() -> Histogram>,
    /// Reconnections of the change feed's pub/sub connection.
    pub feed_reconnects: Counter,
}

/// The backend's metrics, registered at first use.
pub fn metrics() -> &'static StoreMetrics {
    static METRICS: LazyLock<StoreMetrics> = LazyLock::new(|| {
        StoreMetrics {
        round_trips: telemetry::register(
            "redis_round_trip_duration_seconds",
            "Redis round trips (command, script or pipeline), by outcome.",
            Family::new_with_constructor(telemetry::latency_histogram),
        ),
        feed_reconnects: telemetry::register(
            "redis_feed_reconnects",
            "Times the change feed's pub/sub connection was re-established (and its channels subscribed again) after it was lost.",
            Counter::default(),
        ),
    }
    });
    &METRICS
}

/// Records one round trip.
pub(crate) fn command(outcome: &'static str, took: Duration) {
    metrics()
        .round_trips
        .get_or_create(&OutcomeLabel { outcome })
        .observe(took.as_secs_f64());
}

/// Registers the expiry metrics of one kind of item (`publication`,
/// `subscription`, `binding`), read from `stats` when scraped: how overdue
/// the oldest due item was at the latest claim (the backlog: it stays
/// near zero while expiry keeps pace), items expired, failures, passes.
pub fn register_expiry(kind: &'static str, stats: fn() -> crate::sweep::SweepSnapshot) {
    telemetry::register_collector(kind, Box::new(ExpiryCollector { kind, stats }));
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Debug)]
struct ExpiryCollector {
    kind: &'static str,
    stats: fn() -> crate::sweep::SweepSnapshot,
}

impl prometheus_client::collector::Collector for ExpiryCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        let stats = (self.stats)();
        let label = KindLabel { kind: self.kind };
        let age = ConstGauge::new(stats.oldest_due_age_ms as f64 / 1000.0);
        let mut family = encoder.encode_descriptor(
            "expiry_oldest_due_age_seconds",
            "How overdue the oldest due item was when the sweeper last claimed (the expiry backlog).",
            None,
            age.metric_type(),
        )?;
        age.encode(family.encode_family(&label)?)?;
        for (name, help, value) in [
            (
                "expiry_removed",
                "Items expired (removed and announced).",
                stats.removed_total,
            ),
            (
                "expiry_failed",
                "Expiries whose handling failed and was retried.",
                stats.failed_total,
            ),
            ("expiry_passes", "Sweep passes run.", stats.sweeps_total),
        ] {
            let counter = ConstCounter::new(value);
            let mut family = encoder.encode_descriptor(name, help, None, counter.metric_type())?;
            counter.encode(family.encode_family(&label)?)?;
        }
        Ok(())
    }
}

/// Keeps `scheduled_items{kind}` (gauges: members of each schedule — AORs
/// with live bindings, presentities with publications, subscriptions)
/// up to date, read from the backend every 10 s for as long as the task
/// runs. Those counts live in the backend, shared by every replica, so
/// each replica reports the same cluster-wide figure.
pub fn watch_scheduled(
    backend: std::sync::Arc<dyn crate::Backend>,
    schedules: &'static [(crate::Schedule, &'static str)],
) -> tokio::task::JoinHandle<()> {
    static SCHEDULED: LazyLock<Family<KindLabel, prometheus_client::metrics::gauge::Gauge>> =
        LazyLock::new(|| {
            telemetry::register(
            "scheduled_items",
            "Items with a pending expiry, cluster-wide: AORs with live bindings, presentities with publications, subscriptions.",
            Family::default(),
        )
        });
    for (_, kind) in schedules {
        SCHEDULED.get_or_create(&KindLabel { kind }).set(0);
    }
    tokio::spawn(async move {
        loop {
            for (schedule, kind) in schedules {
                match backend.schedule_len(*schedule).await {
                    Ok(n) => {
                        SCHEDULED
                            .get_or_create(&KindLabel { kind })
                            .set(i64::try_from(n).unwrap_or(i64::MAX));
                    }
                    Err(e) => tracing::debug!(error = %e, kind, "counting scheduled items"),
                }
            }
            tokio::time::sleep(std::time::Duration::from_secs(10)).await;
        }
    })
}
