//! UDP: receive loops per socket (`--udp-receivers`, one per core by
//! default), reading the same socket concurrently; each datagram is handled
//! on the loop that read it, and in a task of its own once it has to wait
//! ([`super::deliver`]).
//!
//! A datagram over the size limit is never parsed: it is counted, and
//! answered `513 Message Too Large` (RFC 3261 §18.1.1) when its first bytes
//! hold the Via and CSeq needed to build an answer.

use std::sync::Arc;

use bytes::Bytes;
use tokio::net::UdpSocket;

use super::{Handler, Protocol, Source, TransportCounters};
use crate::Edge;

pub(super) async fn receive_loop(edge: Arc<Edge>, socket: Arc<UdpSocket>, handler: Handler) {
    // One byte more than the largest datagram, to tell "exactly at the
    // limit" from "over it".
    let max = edge.config.max_datagram.min(edge.config.limits.max_message);
    let mut buf = vec![0u8; max + 1];
    loop {
        let (n, remote) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some
                // systems; they concern another peer, so keep serving.
                tracing::debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        let source = Source {
            protocol: Protocol::Udp,
            remote,
        };
        if n > max {
            TransportCounters::bump(&edge.transports.counters.oversized_datagrams);
            tracing::warn!(%remote, "oversized datagram refused");
            let head = Bytes::copy_from_slice(&buf[..n]);
            let limits = sip::Limits {
                max_message: max,
                ..edge.config.limits.clone()
            };
            // Parsing against the datagram limit yields the datagram-size
            // error, whose answer is 513.
            if let Err(e) = sip::parse_with(head.clone(), &limits) {
                if let Some(response) = sip::error_response(&head, &e) {
                    let edge = edge.clone();
                    tokio::spawn(async move {
                        if let Err(e) = edge
                            .transports
                            .send(source.protocol, source.remote, response.to_bytes())
                            .await
                        {
                            tracing::info!(%remote, error = %e, "send failed");
                        }
                    });
                }
            }
            continue;
        }
        let data = Bytes::copy_from_slice(&buf[..n]);
        super::deliver(&handler, &edge, data, source).await;
    }
}
