//! What a process of the presence cluster tells its operators about itself:
//! Prometheus metrics and health, served over HTTP on the port given by
//! `--metrics-listen`, and traces, exported over OTLP when configured.
//!
//! * [`registry`] — the process's one metric registry; each crate registers
//!   its own metric families once, at first use ([`register`]).
//! * [`health`] — readiness conditions (backend reachable, not draining),
//!   shared by the HTTP probes and the gRPC health service.
//! * [`http`] — `/metrics`, `/livez` and `/readyz`.
//! * [`traces`] — OpenTelemetry spans exported over OTLP, and the trace
//!   context carried across gRPC and Redis channels.
//!
//! Recording a metric is an atomic add (counters, gauges) or a bucket search
//! and two atomic adds (histograms): cheap enough for every request. Label
//! values are `&'static str` or integers, so looking a series up allocates
//! nothing.

#![forbid(unsafe_code)]

pub mod health;
pub mod http;
pub mod registry;
pub mod traces;

pub use health::{health, Health};
pub use registry::{encode, register, register_collector};

/// Histogram buckets (seconds) for request latencies: 100 µs to 10 s.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];

/// A histogram with [`LATENCY_BUCKETS`].
pub fn latency_histogram() -> prometheus_client::metrics::histogram::Histogram {
    prometheus_client::metrics::histogram::Histogram::new(LATENCY_BUCKETS)
}

pub use prometheus_client;
