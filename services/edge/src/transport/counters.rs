//! Counters of what the transports refused or cut off, reported as metrics
//! and logged once a minute when they change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::Edge;

/// Counters of what the transports refused or cut off.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Datagrams over the size limit (answered 513 when they can be).
    pub oversized_datagrams: AtomicU64,
    /// Connections refused because the cap was reached.
    pub refused_connections: AtomicU64,
    /// Connections refused because their source held its share of the cap.
    pub refused_source_connections: AtomicU64,
    /// Messages that could not be parsed or framed.
    pub unparseable: AtomicU64,
    /// Connections closed because a message did not arrive in time (slow-loris).
    pub slow_connections: AtomicU64,
    /// Connections closed because no whole SIP message came in time after
    /// they opened (keep-alives do not count).
    pub silent_connections: AtomicU64,
    /// Connections closed after the idle timeout.
    pub idle_connections: AtomicU64,
    /// Stream messages or WebSocket frames over the size limit.
    pub oversized_stream_messages: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: AtomicU64,
    /// WebSocket upgrades refused (no `sip` subprotocol, bad request, timeout).
    pub ws_handshake_failures: AtomicU64,
    /// Sends given up because a connection did not drain its queue.
    pub stalled_writes: AtomicU64,
}

impl TransportCounters {
    /// Every counter with its name.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("oversized_datagrams", get(&self.oversized_datagrams)),
            ("refused_connections", get(&self.refused_connections)),
            (
                "refused_source_connections",
                get(&self.refused_source_connections),
            ),
            ("unparseable", get(&self.unparseable)),
            ("slow_connections", get(&self.slow_connections)),
            ("silent_connections", get(&self.silent_connections)),
            ("idle_connections", get(&self.idle_connections)),
            (
                "oversized_stream_messages",
                get(&self.oversized_stream_messages),
            ),
            ("tls_handshake_failures", get(&self.tls_handshake_failures)),
            ("ws_handshake_failures", get(&self.ws_handshake_failures)),
            ("stalled_writes", get(&self.stalled_writes)),
        ]
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Logs the transport counters once a minute when they changed.
pub(super) async fn log_counters(edge: Arc<Edge>) {
    let mut last = edge.transports.counters.snapshot();
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = edge.transports.counters.snapshot();
        if now != last {
            let text: Vec<String> = now.iter().map(|(k, v)| format!("{k}={v}")).collect();
            tracing::info!(
                open_connections = edge.transports.open_connections(),
                counters = %text.join(" "),
                "transport counters"
            );
            last = now;
        }
    }
}
