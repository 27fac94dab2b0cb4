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
    static METRICS: LazyLock<StoreMetrics> = LazyLock::new(|| StoreMetrics {
        round_trips: telemetry::register(
            "redis_round_trip_duration_seconds",
            "Redis round trips (command, script or pipeline), by outcome.",
            Family::new_with_constructor(telemetry::latency_histogram),
        ),
        feed_reconnects: telemetry::register(
            "redis_feed_reconnects",
            "Times the pub/sub connection of the change feed was re-established.",
            Counter::default(),
        ),
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
