//! Each dialog's NOTIFY sender: at most one task per dialog, and only while
//! it has something to tell (see `slot`), sending strictly one NOTIFY after
//! another, with what its package makes of the latest signal.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use contract::DialogRecord;
use tokio::time::Instant;

use super::compact::CompactRecord;
use super::notify::{forget_subscription, send, Delivery, NotifyBody, NotifyState};
use super::slot::{Parked, Slot};
use super::{Mode, Signal};
use crate::packages::{EventPackage, Known, Made, Notifier};
use crate::transport::Protocol;

/// When a dialog outlives its expiry by this much without the presence
/// service ending it (its announcement lost), the edge ends it itself.
pub(super) const EXPIRY_GRACE: Duration = Duration::from_secs(10);

/// A dialog's mode and the version of the state its watcher last
/// acknowledged (a 2xx to the NOTIFY), packed into one atomic word: the
/// mode in the top two bits (0 = nothing acknowledged yet), the version in
/// the others. Versions are milliseconds since the Unix epoch or small
/// counters, far below 2^62. Watcher-information dialogs record nothing:
/// their documents are numbered per dialog, so a new owner starts over
/// with a full one.
pub(super) struct Acknowledged;

impl Acknowledged {
    const VERSION_BITS: u64 = (1 << 62) - 1;

    pub(super) fn pack(mode: Mode, version: u64) -> u64 {
        let code = match mode {
            Mode::Presence => 1,
            Mode::Masked => 2,
            Mode::Pending => 3,
            Mode::Winfo => return 0,
        };
        (code << 62) | (version & Self::VERSION_BITS)
    }

    pub(super) fn unpack(word: u64) -> Option<(Mode, u64)> {
        let mode = match word >> 62 {
            1 => Mode::Presence,
            2 => Mode::Masked,
            3 => Mode::Pending,
            _ => return None,
        };
        Some((mode, word & Self::VERSION_BITS))
    }
}

/// What one dialog's NOTIFY sender owns.
pub(super) struct Sender {
    /// Shared with the index entry; decoded while the sender runs.
    pub(super) record: Arc<CompactRecord>,
    /// The dialog's id, shared with the index.
    pub(super) id: Arc<str>,
    pub(super) presentity: Arc<str>,
    pub(super) last_version: u64,
    /// `Signal::offers` when last looked at.
    pub(super) offers_seen: u32,
    pub(super) refreshes_seen: u32,
    /// The dialog's event package, and what it told the watcher so far.
    pub(super) package: &'static dyn EventPackage,
    pub(super) notifier: Box<dyn Notifier>,
    pub(super) resets_seen: u32,
}

impl Sender {
    /// The body of the dialog's final NOTIFY, as its package says.
    fn final_body<'a>(&self, signal: &'a Signal, reason: &str) -> NotifyBody<'a> {
        let pending = signal.mode == Mode::Pending;
        self.package
            .final_body(pending, &signal.pidf, reason)
            .map(|text| (self.package.content_type(), text))
    }
}

/// A dialog's sender: sends a NOTIFY whenever its signal says there is
/// something to tell, and the final one when the dialog ends; parks itself
/// in the dialog's slot when there is nothing to tell (see [`Slot`]).
///
/// The NOTIFY sends and the clean-up are boxed: the task is sized for its
/// largest state only while it runs.
///
/// `at_hand` is the dialog's record when the caller has it decoded already
/// (the dialog's first run); otherwise it is decoded here.
pub(super) async fn run_sender(
    slot: Arc<Slot>,
    parked: Parked,
    at_hand: Option<Box<DialogRecord>>,
) {
    let Parked {
        mut edge,
        sender: mut d,
    } = parked;
    // Decoded for as long as this task runs; a parked sender holds only
    // the compact form.
    let decoded = match at_hand {
        Some(record) => Ok(*record),
        None => d.record.decode(&d.id, &d.presentity),
    };
    // Where NOTIFYs go: the record's transport and address as the dialog
    // started (the parked sender keeps no copy), unless a refresh came
    // over another connection since (the signal's route).
    let destination = decoded.map_err(|e| e.to_string()).and_then(|record| {
        let protocol = Protocol::parse(&record.transport)
            .ok_or_else(|| format!("unknown transport {:?}", record.transport))?;
        let remote = record
            .remote_addr
            .parse::<SocketAddr>()
            .map_err(|e| format!("bad remote address {:?}: {e}", record.remote_addr))?;
        Ok((record, protocol, remote))
    });
    let (mut record, mut protocol, mut remote) = match destination {
        Ok(destination) => destination,
        Err(e) => {
            tracing::error!(dialog = %d.id, error = %e, "held dialog record unreadable; ending the subscription");
            Box::pin(forget_subscription(&edge, &d.presentity, &d.id)).await;
            Box::pin(edge.dialogs.remove(&d.id)).await;
            return;
        }
    };
    loop {
        let (signal, seen) = slot.snapshot();
        if let Some(route) = signal.route {
            if (protocol, remote) != route {
                (protocol, remote) = route;
                record.transport = protocol.as_str().to_string();
                record.remote_addr = remote.to_string();
            }
        }
        if let Some(reason) = &signal.end {
            let cseq = slot.next_cseq();
            let body = d.final_body(&signal, reason);
            let _ = Box::pin(send(
                &edge,
                &record,
                protocol,
                remote,
                cseq,
                NotifyState::Terminated(reason),
                body,
            ))
            .await;
            break;
        }
        if signal.handed_over {
            // Another edge continues the dialog; the index forgot it.
            return;
        }
        let refreshed = signal.refreshes != d.refreshes_seen;
        let reset = signal.resets != d.resets_seen;
        let known = Known {
            presentity: &d.presentity,
            pending: signal.mode == Mode::Pending,
            pidf: &signal.pidf,
            state_changed: reset || signal.version > d.last_version,
            watchers: &signal.watchers,
            ended: &signal.ended,
            refreshed,
        };
        let made = d.notifier.next(&known);
        if refreshed || reset {
            // Seen, whether or not there was something to tell.
            d.refreshes_seen = signal.refreshes;
            d.resets_seen = signal.resets;
        }
        if let Made::Notify(text) = made {
            // Changes offered since the last look, all but the newest never
            // sent on their own (rate limiting, a NOTIFY still in flight).
            let coalesced = signal.offers.wrapping_sub(d.offers_seen).saturating_sub(1);
            if coalesced > 0 {
                crate::metrics::metrics()
                    .coalesced
                    .inc_by(u64::from(coalesced));
            }
            d.offers_seen = signal.offers;
            let remaining = signal
                .expires_at
                .saturating_duration_since(Instant::now())
                .as_secs() as u32;
            let state = match signal.mode {
                Mode::Pending => NotifyState::Pending(remaining),
                _ => NotifyState::Active(remaining),
            };
            let body = text.as_deref().map(|t| (d.package.content_type(), t));
            let cseq = slot.next_cseq();
            let span = notify_span(signal.trace.as_deref());
            let outcome = tracing::Instrument::instrument(
                Box::pin(send(&edge, &record, protocol, remote, cseq, state, body)),
                span,
            )
            .await;
            match outcome {
                Delivery::Delivered => {
                    d.last_version = signal.version;
                    slot.acknowledged.store(
                        Acknowledged::pack(signal.mode, signal.version),
                        Ordering::SeqCst,
                    );
                    crate::metrics::notified(signal.changed_at_ms);
                }
                Delivery::Refused(status) => {
                    tracing::info!(dialog = %d.id, status, "NOTIFY refused; state kept for the next change");
                    d.last_version = signal.version;
                }
                Delivery::Gone(why) => {
                    // RFC 6665 §4.2.2: a 481 or a timeout ends the subscription.
                    tracing::info!(dialog = %d.id, presentity = %d.presentity, %why, "watcher gone; ending subscription");
                    Box::pin(forget_subscription(&edge, &d.presentity, &d.id)).await;
                    break;
                }
            }
            if !edge.config.notify_min_interval.is_zero() {
                tokio::time::sleep(edge.config.notify_min_interval).await;
            }
            continue;
        }
        if Instant::now() >= signal.expires_at + EXPIRY_GRACE {
            // The presence service should have ended it by now; do it here
            // so no dialog outlives its subscription.
            tracing::info!(dialog = %d.id, "subscription expired without a termination; ending it");
            let cseq = slot.next_cseq();
            let body = d.final_body(&signal, "timeout");
            let _ = Box::pin(send(
                &edge,
                &record,
                protocol,
                remote,
                cseq,
                NotifyState::Terminated("timeout"),
                body,
            ))
            .await;
            Box::pin(forget_subscription(&edge, &d.presentity, &d.id)).await;
            break;
        }
        match slot.park(seen, Parked { edge, sender: d }) {
            // A later change, or the expiry sweep, starts it again.
            Ok(()) => return,
            Err(parked) => {
                // The signal changed meanwhile: go on with it.
                edge = parked.edge;
                d = parked.sender;
            }
        }
    }
    Box::pin(edge.dialogs.remove(&d.id)).await;
}

/// The span of one NOTIFY, linked to the change that caused it (when traces
/// are exported; none otherwise).
fn notify_span(trace: Option<&str>) -> tracing::Span {
    if !telemetry::traces::enabled() {
        return tracing::Span::none();
    }
    let span = tracing::info_span!(
        "sip.notify",
        otel.name = "NOTIFY",
        otel.kind = "client",
        sip.method = "NOTIFY"
    );
    if let Some(trace) = trace {
        telemetry::traces::link(&span, trace);
    }
    span
}
