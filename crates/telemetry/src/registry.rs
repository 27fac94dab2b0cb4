//! The process's metric registry.
//!
//! One registry per process, so a single-process node (edge, presence and
//! registrar in one binary) serves every family on one endpoint. Families
//! are registered by the crate that records them, at first use, through a
//! `LazyLock` holding the crate's metrics; a family registered twice (a test
//! starting two services in one process) is kept once.

use std::collections::HashSet;
use std::sync::{LazyLock, Mutex, MutexGuard};

use prometheus_client::collector::Collector;
use prometheus_client::registry::{Metric, Registry};

struct Shared {
    registry: Registry,
    names: HashSet<&'static str>,
}

static SHARED: LazyLock<Mutex<Shared>> = LazyLock::new(|| {
    Mutex::new(Shared {
        registry: Registry::default(),
        names: HashSet::new(),
    })
});

fn shared() -> MutexGuard<'static, Shared> {
    // A panic while registering leaves the registry usable: registering
    // is a map insert that cannot leave it half-written.
    locks::lock(&SHARED)
}

/// Registers `metric` as `name` (without the `_total` suffix of a counter,
/// which the encoder adds) and returns it, to be kept in the caller's
/// metrics struct. A second registration of the same name is ignored.
pub fn register<M: Metric + Clone>(name: &'static str, help: &'static str, metric: M) -> M {
    let mut shared = shared();
    if shared.names.insert(name) {
        shared.registry.register(name, help, metric.clone());
    }
    metric
}

/// Registers a collector: metrics computed when scraped (e.g. kernel
/// counters read from /proc). `key` names it for deduplication.
pub fn register_collector(key: &'static str, collector: Box<dyn Collector>) {
    let mut shared = shared();
    if shared.names.insert(key) {
        shared.registry.register_collector(collector);
    }
}

/// Every registered metric in the OpenMetrics text format (which
/// Prometheus scrapes).
pub fn encode() -> String {
    let shared = shared();
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &shared.registry) {
        tracing::warn!(error = %e, "encoding metrics failed");
    }
    text
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;

    use super::*;

    #[test]
    fn registered_counters_appear_once_with_their_labels() {
        let requests: Family<[(&'static str, &'static str); 1], Counter> =
            register("test_requests", "Requests.", Family::default());
        let again: Family<[(&'static str, &'static str); 1], Counter> =
            register("test_requests", "Requests.", Family::default());
        requests.get_or_create(&[("method", "PUBLISH")]).inc_by(3);
        again.get_or_create(&[("method", "PUBLISH")]).inc();
        let text = encode();
        assert!(
            text.contains("test_requests_total{method=\"PUBLISH\"} 3"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE test_requests counter").count(), 1);
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
