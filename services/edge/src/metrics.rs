//! The edge's metrics (served by `telemetry` on `--metrics-listen`).
//!
//! Recorded where the event happens: requests and responses in
//! `methods::on_request`, authentication outcomes in `authn`, NOTIFYs in
//! `dialogs::notify::send`, fan-out in `dialogs::offer`, service calls in
//! `services`. Gauges and kernel counters (dialogs, transactions, UDP
//! receive drops, transport refusals) are read when scraped, by
//! [`EdgeCollector`], so nothing is maintained for them on the hot path.

use std::sync::{LazyLock, Weak};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use sip::Method;

use crate::Edge;

/// A request's method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabel {
    pub method: &'static str,
}

/// A final response's method and status code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResponseLabels {
    pub method: &'static str,
    pub code: u16,
}

/// An authentication decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthLabels {
    /// `bearer`, `digest`, `trusted-peer`, `none`.
    pub scheme: &'static str,
    /// `accepted`, `challenged`, `refused`, `unavailable`.
    pub outcome: &'static str,
}

/// The result of a NOTIFY.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NotifyLabels {
    /// `delivered`, `refused` (a non-2xx final answer), `gone` (481, 408
    /// or no answer: the subscription ends).
    pub result: &'static str,
}

/// A call to the presence or registrar service.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RpcLabels {
    pub rpc: &'static str,
    /// `ok`, or the gRPC status code's name.
    pub code: &'static str,
}

/// Which limit refused a request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabel {
    /// `blocked` (403), `source` or `identity` (503).
    pub limit: &'static str,
}

/// The edge's metric families.
pub struct EdgeMetrics {
    pub limited: Family<LimitLabel, Counter>,
    pub requests: Family<MethodLabel, Counter>,
    pub responses: Family<ResponseLabels, Counter>,
    pub request_duration: Family<MethodLabel, Histogram, fn() -> Histogram>,
    pub retransmissions: Counter,
    pub overloaded: Counter,
    pub auth: Family<AuthLabels, Counter>,
    pub notifies: Family<NotifyLabels, Counter>,
    pub coalesced: Counter,
    pub fanout_size: Histogram,
    pub change_to_notify: Histogram,
    pub takeovers: Counter,
    pub rpc_duration: Family<RpcLabels, Histogram, fn() -> Histogram>,
}

/// The edge's metrics, registered at first use.
pub fn metrics() -> &'static EdgeMetrics {
    static METRICS: LazyLock<EdgeMetrics> = LazyLock::new(|| {
        EdgeMetrics {
        limited: telemetry::register(
            "sip_requests_limited",
            "Requests refused by a rate limit (503) or the source block list (403), by limit.",
            Family::default(),
        ),
        requests: telemetry::register(
            "sip_requests",
            "SIP requests received (new transactions; retransmissions not counted).",
            Family::default(),
        ),
        responses: telemetry::register(
            "sip_responses",
            "Final SIP responses sent, by request method and status code.",
            Family::default(),
        ),
        request_duration: telemetry::register(
            "sip_request_duration_seconds",
            "Time from receiving a SIP request to sending its final response.",
            Family::new_with_constructor(telemetry::latency_histogram),
        ),
        retransmissions: telemetry::register(
            "sip_request_retransmissions",
            "Retransmitted requests absorbed by their server transaction.",
            Counter::default(),
        ),
        overloaded: telemetry::register(
            "sip_transactions_overloaded",
            "Requests answered 503 because the transaction table was full.",
            Counter::default(),
        ),
        auth: telemetry::register(
            "sip_auth",
            "Authentication decisions by scheme and outcome.",
            Family::default(),
        ),
        notifies: telemetry::register(
            "sip_notifies",
            "NOTIFY requests sent, by result.",
            Family::default(),
        ),
        coalesced: telemetry::register(
            "sip_notifies_coalesced",
            "Changes never sent on their own: a newer one for the same dialog replaced them first (rate limiting, a NOTIFY still in flight).",
            Counter::default(),
        ),
        fanout_size: telemetry::register(
            "presence_fanout_dialogs",
            "Dialogs on this edge signalled by one presence change.",
            Histogram::new([1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 1000.0, 10000.0]),
        ),
        change_to_notify: telemetry::register(
            "presence_change_to_notify_seconds",
            "From a change accepted by the presence service to a watcher's 200 OK for its NOTIFY.",
            telemetry::latency_histogram(),
        ),
        takeovers: telemetry::register(
            "sip_dialogs_taken_over",
            "Dialogs of gone edges claimed and continued by this edge.",
            Counter::default(),
        ),
        rpc_duration: telemetry::register(
            "grpc_client_duration_seconds",
            "Calls to the presence and registrar services, by RPC and result.",
            Family::new_with_constructor(telemetry::latency_histogram),
        ),
    }
    });
    &METRICS
}

/// A method's label: the methods the edge knows by name, `other` for the
/// rest (so a flood of invented methods cannot create series).
pub fn method_label(method: &Method) -> &'static str {
    match method {
        Method::Register => "REGISTER",
        Method::Publish => "PUBLISH",
        Method::Subscribe => "SUBSCRIBE",
        Method::Notify => "NOTIFY",
        Method::Options => "OPTIONS",
        Method::Invite => "INVITE",
        Method::Ack => "ACK",
        Method::Cancel => "CANCEL",
        Method::Bye => "BYE",
        Method::Message => "MESSAGE",
        _ => "other",
    }
}

/// Records one answered request.
pub fn answered(method: &'static str, code: u16, took: Duration) {
    let metrics = metrics();
    metrics
        .responses
        .get_or_create(&ResponseLabels { method, code })
        .inc();
    metrics
        .request_duration
        .get_or_create(&MethodLabel { method })
        .observe(took.as_secs_f64());
}

/// Records a request refused by a limit.
pub fn limited(limit: &'static str) {
    metrics().limited.get_or_create(&LimitLabel { limit }).inc();
}

/// Records a NOTIFY delivered for a change accepted at `changed_at_ms`
/// (ms since the epoch; 0 when unknown, and nothing is recorded). Clocks
/// of different hosts differ: a negative delay counts as zero.
pub fn notified(changed_at_ms: u64) {
    if changed_at_ms == 0 {
        return;
    }
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let delay_ms = now_ms.saturating_sub(changed_at_ms);
    metrics().change_to_notify.observe(delay_ms as f64 / 1000.0);
}

/// Records one service call.
pub fn rpc(rpc: &'static str, result: Result<(), tonic::Code>, took: Duration) {
    let code = match result {
        Ok(()) => "ok",
        Err(code) => grpc_code_name(code),
    };
    metrics()
        .rpc_duration
        .get_or_create(&RpcLabels { rpc, code })
        .observe(took.as_secs_f64());
}

fn grpc_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// Metrics read from the edge when scraped.
#[derive(Debug)]
pub struct EdgeCollector {
    edge: Weak<Edge>,
}

/// Registers the scrape-time metrics of `edge` (the first edge of the
/// process: a process runs one).
pub fn register_collector(edge: &std::sync::Arc<Edge>) {
    // Families recorded on the hot path appear from the start, at zero.
    let _ = metrics();
    telemetry::register_collector(
        "edge",
        Box::new(EdgeCollector {
            edge: std::sync::Arc::downgrade(edge),
        }),
    );
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabel {
    event: &'static str,
}

impl Collector for EdgeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(edge) = self.edge.upgrade() else {
            return Ok(());
        };
        let gauge = |encoder: &mut DescriptorEncoder, name, help, value: i64| {
            let gauge = ConstGauge::new(value);
            let metric = encoder.encode_descriptor(name, help, None, gauge.metric_type())?;
            gauge.encode(metric)
        };
        gauge(
            &mut encoder,
            "sip_dialogs",
            "SUBSCRIBE dialogs held by this edge.",
            edge.dialogs.len() as i64,
        )?;
        gauge(
            &mut encoder,
            "sip_server_transactions",
            "Server transactions in the table (in progress or completed).",
            edge.server_transactions.len() as i64,
        )?;
        gauge(
            &mut encoder,
            "sip_server_transactions_in_progress",
            "Server transactions still waiting for their final response.",
            edge.server_transactions.in_progress() as i64,
        )?;
        let drops = udp_receive_drops(&edge.transports.udp_ports());
        let counter = ConstCounter::new(drops);
        let metric = encoder.encode_descriptor(
            "udp_receive_drops",
            "Datagrams the kernel dropped at this edge's SIP sockets (full receive buffer).",
            None,
            counter.metric_type(),
        )?;
        counter.encode(metric)?;
        let mut family = encoder.encode_descriptor(
            "sip_transport_refusals",
            "What the transports refused or cut off, by event.",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (event, value) in edge.transports.counters.snapshot() {
            let counter = ConstCounter::new(value);
            counter.encode(family.encode_family(&EventLabel { event })?)?;
        }
        Ok(())
    }
}

/// Datagrams dropped by the kernel at the UDP sockets bound to `ports`,
/// from /proc/net/udp and udp6 (the last column of a socket's line).
/// 0 where /proc is not there to read.
fn udp_receive_drops(ports: &[u16]) -> u64 {
    let mut drops = 0;
    for table in ["/proc/self/net/udp", "/proc/self/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        drops += drops_in_table(&text, ports);
    }
    drops
}

fn drops_in_table(text: &str, ports: &[u16]) -> u64 {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1)?;
            let port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            if !ports.contains(&port) {
                return None;
            }
            line.split_whitespace().last()?.parse::<u64>().ok()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receive_drops_are_read_for_the_edges_ports_only() {
        let table = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
         1: 0100007F:13C4 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 17\n\
         2: 0100007F:13C5 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 2 2 0000000000000000 5\n";
        assert_eq!(drops_in_table(table, &[5060]), 17);
        assert_eq!(drops_in_table(table, &[5060, 5061]), 22);
        assert_eq!(drops_in_table(table, &[5062]), 0);
    }
}
