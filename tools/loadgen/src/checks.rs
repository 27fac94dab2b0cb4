//! The NOTIFY checks of one subscription dialog, as pure logic over what the
//! watcher saw.
//!
//! Each NOTIFY is reduced to an [`Observed`]: its CSeq, its From tag, the
//! sequence number of the published document it carries (see
//! [`crate::marker`]) and whether it ends the subscription. [`DialogCheck`]
//! then decides, per dialog:
//!
//! * **in-dialog**: the From tag is the dialog's remote tag (learned from the
//!   2xx to SUBSCRIBE or the first NOTIFY); CSeq only grows.
//! * **retransmissions** are not duplicates: a NOTIFY whose CSeq was already
//!   seen, with the same content, is the notifier retransmitting (our 200 was
//!   late or lost). The same CSeq with other content is a violation.
//! * **order**: the sequence numbers a dialog sees never go back.
//! * **no duplicates**: a new NOTIFY (new CSeq) repeating the previous one —
//!   the same sequence numbers in the same document — is a duplicate
//!   delivery, except right after the watcher's own SUBSCRIBE (a refresh is
//!   answered with the current state, RFC 6665 §4.2.2) and in the terminating
//!   NOTIFY. The same highest sequence number in a different document (an
//!   older publication of the presentity expired or was removed, another
//!   part of the composed document changed) is counted as
//!   [`DialogCheck::recomposed`], not as a duplicate.
//! * **final state**: once the publisher is done, the last state the dialog
//!   saw must be the final one ([`DialogCheck::expect_final`]), and the
//!   unsubscription must be answered by a terminating NOTIFY.
//!
//! Skipped sequence numbers are not violations: a notifier may coalesce
//! changes that come faster than it notifies (RFC 6665 §4.2.2); they are
//! counted as [`DialogCheck::skipped`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::RangeInclusive;

use serde::Serialize;

/// A kind of violation of the checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Violation {
    /// A NOTIFY whose Call-ID and To tag name no dialog of ours.
    UnknownDialog,
    /// A NOTIFY whose From tag is not the dialog's remote tag.
    WrongRemoteTag,
    /// A NOTIFY without a valid CSeq, Event, Subscription-State or From.
    Malformed,
    /// A body that is not a PIDF document.
    UnparseableBody,
    /// A CSeq seen before, carrying different content.
    CseqReused,
    /// A new CSeq below the highest seen in the dialog.
    CseqBackwards,
    /// A sequence number below one the dialog already saw.
    SequenceBackwards,
    /// The same sequence number delivered again in a new NOTIFY.
    Duplicate,
    /// A NOTIFY after the dialog's terminating NOTIFY.
    AfterTermination,
    /// The last state the dialog saw is not the publisher's final state.
    StaleFinalState,
    /// No terminating NOTIFY after the unsubscription.
    NoFinalNotify,
    /// The subscription was ended by the notifier before the watcher ended it.
    TerminatedEarly,
}

impl Violation {
    /// Every kind, in report order.
    pub const ALL: [Violation; 12] = [
        Violation::UnknownDialog,
        Violation::WrongRemoteTag,
        Violation::Malformed,
        Violation::UnparseableBody,
        Violation::CseqReused,
        Violation::CseqBackwards,
        Violation::SequenceBackwards,
        Violation::Duplicate,
        Violation::AfterTermination,
        Violation::StaleFinalState,
        Violation::NoFinalNotify,
        Violation::TerminatedEarly,
    ];

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Violation::UnknownDialog => "unknown-dialog",
            Violation::WrongRemoteTag => "wrong-remote-tag",
            Violation::Malformed => "malformed",
            Violation::UnparseableBody => "unparseable-body",
            Violation::CseqReused => "cseq-reused",
            Violation::CseqBackwards => "cseq-backwards",
            Violation::SequenceBackwards => "sequence-backwards",
            Violation::Duplicate => "duplicate",
            Violation::AfterTermination => "after-termination",
            Violation::StaleFinalState => "stale-final-state",
            Violation::NoFinalNotify => "no-final-notify",
            Violation::TerminatedEarly => "terminated-early",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What the checks need of one received NOTIFY.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed<'a> {
    /// The CSeq number.
    pub cseq: u32,
    /// The From tag (the notifier's tag).
    pub from_tag: &'a str,
    /// The sequence number of this run's document in the body, if any.
    pub seq: Option<u64>,
    /// A digest of the body, telling a retransmission from a reused CSeq.
    pub body_digest: u64,
    /// A digest of the state the body shows: every sequence number of this run in it
    /// (several when the server composes more than one live publication). The same
    /// highest sequence number in another state or another body is a recomposition
    /// (an older publication expired or was removed), not a duplicate.
    pub state_digest: u64,
    /// Whether `Subscription-State` is `terminated`.
    pub terminated: bool,
}

/// What a NOTIFY was, once checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A new NOTIFY carrying, for the first time in this dialog, the document with this
    /// sequence number (the one whose latency counts).
    Fresh(u64),
    /// A new NOTIFY without a new document: no marked body, or an allowed repeat of the
    /// current state after our SUBSCRIBE or in the terminating NOTIFY.
    Other,
    /// A retransmission of a NOTIFY already seen.
    Retransmission,
    /// A NOTIFY that broke a rule (recorded in the dialog's violations).
    Violating(Violation),
}

/// The checks of one subscription dialog.
#[derive(Clone, Debug, Default)]
pub struct DialogCheck {
    remote_tag: Option<String>,
    /// Every CSeq seen, with the digest of its body.
    seen: HashMap<u32, u64>,
    max_cseq: Option<u32>,
    /// The highest sequence number seen.
    max_seq: Option<u64>,
    /// The sequence number of the state the dialog currently shows (`None`: a state
    /// without this run's document, or nothing yet).
    current: Option<u64>,
    repeats_allowed: u32,
    terminated: bool,
    unsubscribed: bool,
    expected_final: Option<RangeInclusive<u64>>,
    /// NOTIFYs received, retransmissions included.
    pub received: u64,
    /// Retransmitted NOTIFYs.
    pub retransmissions: u64,
    /// Repeats of the current state answered to our own SUBSCRIBEs or in the
    /// terminating NOTIFY (allowed).
    pub repeats: u64,
    /// Sequence numbers never shown because a later one came first (coalescing).
    pub skipped: u64,
    /// New NOTIFYs showing the same latest sequence number in another document.
    pub recomposed: u64,
    /// The state and body digests of the last new NOTIFY.
    last_state: Option<(u64, u64)>,
    violations: Vec<Violation>,
    /// What the first few violations looked like, for reports.
    details: Vec<(Violation, String)>,
}

/// How many violations of one dialog are described in detail.
const DETAILS: usize = 3;

impl DialogCheck {
    /// The checks of a new dialog.
    pub fn new() -> DialogCheck {
        DialogCheck::default()
    }

    /// The remote tag of a 2xx to our SUBSCRIBE (the NOTIFY may have come first).
    pub fn confirm_remote_tag(&mut self, tag: &str) {
        match &self.remote_tag {
            None => self.remote_tag = Some(tag.to_owned()),
            Some(known) if known == tag => {}
            Some(known) => {
                let detail = format!("2xx To tag {tag:?}, first NOTIFY's From tag {known:?}");
                self.flag(Violation::WrongRemoteTag, detail);
            }
        }
    }

    fn flag(&mut self, violation: Violation, detail: String) {
        self.violations.push(violation);
        if self.details.len() < DETAILS {
            self.details
                .push((violation, format!("{violation} ({detail})")));
        }
    }

    /// The dialog's remote tag, once known.
    pub fn remote_tag(&self) -> Option<&str> {
        self.remote_tag.as_deref()
    }

    /// We sent a SUBSCRIBE in this dialog: the notifier answers it with the current
    /// state, which may repeat the last one.
    pub fn subscribed(&mut self) {
        self.repeats_allowed += 1;
    }

    /// We sent the unsubscription (Expires: 0): a terminating NOTIFY is due.
    pub fn unsubscribed(&mut self) {
        self.unsubscribed = true;
        self.repeats_allowed += 1;
    }

    /// Checks one NOTIFY and records any violation.
    pub fn observe(&mut self, notify: &Observed<'_>) -> Verdict {
        self.received += 1;
        let before = (self.max_cseq, self.max_seq);
        match self.classify(notify) {
            Verdict::Violating(v) => {
                let detail = format!(
                    "NOTIFY CSeq {} seq {:?}{} after highest CSeq {:?} seq {:?}",
                    notify.cseq,
                    notify.seq,
                    if notify.terminated { " terminated" } else { "" },
                    before.0,
                    before.1
                );
                self.flag(v, detail);
                Verdict::Violating(v)
            }
            verdict => verdict,
        }
    }

    fn classify(&mut self, notify: &Observed<'_>) -> Verdict {
        match &self.remote_tag {
            None => self.remote_tag = Some(notify.from_tag.to_owned()),
            Some(tag) if tag != notify.from_tag => {
                return Verdict::Violating(Violation::WrongRemoteTag)
            }
            Some(_) => {}
        }
        if let Some(&digest) = self.seen.get(&notify.cseq) {
            if digest == notify.body_digest {
                self.retransmissions += 1;
                return Verdict::Retransmission;
            }
            return Verdict::Violating(Violation::CseqReused);
        }
        self.seen.insert(notify.cseq, notify.body_digest);
        if self.terminated {
            return Verdict::Violating(Violation::AfterTermination);
        }
        let backwards = self.max_cseq.is_some_and(|max| notify.cseq < max);
        self.max_cseq = Some(self.max_cseq.map_or(notify.cseq, |m| m.max(notify.cseq)));
        if notify.terminated {
            self.terminated = true;
            if !self.unsubscribed {
                let detail = format!("NOTIFY CSeq {} before our unsubscription", notify.cseq);
                self.flag(Violation::TerminatedEarly, detail);
            }
        }
        if backwards {
            return Verdict::Violating(Violation::CseqBackwards);
        }
        let Some(seq) = notify.seq else {
            if !notify.terminated {
                self.current = None;
                self.last_state = None;
            }
            return Verdict::Other;
        };
        let previous_state = self
            .last_state
            .replace((notify.state_digest, notify.body_digest));
        if let (true, Some(expected)) = (notify.terminated, &self.expected_final) {
            if !expected.contains(&seq) {
                return Verdict::Violating(Violation::StaleFinalState);
            }
        }
        match self.max_seq {
            Some(max) if seq < max => Verdict::Violating(Violation::SequenceBackwards),
            Some(max) if seq == max => {
                if previous_state != Some((notify.state_digest, notify.body_digest)) {
                    self.recomposed += 1;
                    self.current = Some(seq);
                    Verdict::Other
                } else if self.repeats_allowed > 0 || notify.terminated {
                    self.repeats_allowed = self.repeats_allowed.saturating_sub(1);
                    self.repeats += 1;
                    self.current = Some(seq);
                    Verdict::Other
                } else {
                    Verdict::Violating(Violation::Duplicate)
                }
            }
            previous => {
                if let Some(max) = previous {
                    self.skipped += seq - max - 1;
                }
                self.max_seq = Some(seq);
                self.current = Some(seq);
                Verdict::Fresh(seq)
            }
        }
    }

    /// The publisher is done: the dialog must now show a state within `expected`
    /// (the last confirmed sequence number up to the last attempted one, since a
    /// change whose request failed may still have been applied). Records a violation
    /// when it does not, and checks the terminating NOTIFY against it later.
    pub fn expect_final(&mut self, expected: RangeInclusive<u64>) -> bool {
        let ok = self.current.is_some_and(|seq| expected.contains(&seq));
        if !ok {
            let detail = format!(
                "shows seq {:?}, expected {}..={} (highest seq seen {:?})",
                self.current,
                expected.start(),
                expected.end(),
                self.max_seq
            );
            self.flag(Violation::StaleFinalState, detail);
        }
        self.expected_final = Some(expected);
        ok
    }

    /// Whether the dialog now shows a state within `expected`.
    pub fn shows(&self, expected: &RangeInclusive<u64>) -> bool {
        self.current.is_some_and(|seq| expected.contains(&seq))
    }

    /// Records a violation found outside [`DialogCheck::observe`] (a NOTIFY that could
    /// not be reduced to an [`Observed`]).
    pub fn record(&mut self, violation: Violation) {
        self.received += 1;
        self.flag(violation, "a NOTIFY that could not be read".to_owned());
    }

    /// The unsubscription got no terminating NOTIFY in time.
    pub fn missing_final_notify(&mut self) {
        let detail = format!("{} NOTIFYs before", self.received);
        self.flag(Violation::NoFinalNotify, detail);
    }

    /// The sequence number of the state the dialog currently shows.
    pub fn current(&self) -> Option<u64> {
        self.current
    }

    /// Whether the terminating NOTIFY arrived.
    pub fn terminated(&self) -> bool {
        self.terminated
    }

    /// Every violation recorded, in order.
    pub fn violations(&self) -> &[Violation] {
        &self.violations
    }

    /// Descriptions of the first few violations.
    pub fn details(&self) -> impl Iterator<Item = &str> {
        self.details.iter().map(|(_, d)| d.as_str())
    }
}

/// The checks of many dialogs, added up.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CheckSummary {
    /// Whether no violation was recorded.
    pub passed: bool,
    /// Dialogs checked.
    pub dialogs: u64,
    /// NOTIFYs received, retransmissions included.
    pub notifies: u64,
    /// Retransmitted NOTIFYs (not duplicates).
    pub retransmissions: u64,
    /// Allowed repeats of the current state (after our SUBSCRIBEs, terminating NOTIFYs).
    pub repeats: u64,
    /// Sequence numbers coalesced away (not violations).
    pub skipped: u64,
    /// Same latest sequence number in another composed state (not violations).
    pub recomposed: u64,
    /// Violations by kind.
    pub violations: BTreeMap<Violation, u64>,
    /// A few violations of each kind with their dialog, to start investigating from.
    pub examples: Vec<String>,
    /// The last events of one dialog per kind of violation.
    pub traces: Vec<Vec<String>>,
    #[serde(skip)]
    example_kinds: BTreeMap<Violation, usize>,
}

/// How many example violations of each kind a summary keeps.
const EXAMPLES_PER_KIND: usize = 3;

impl CheckSummary {
    /// Adds one dialog's checks, `name` identifying it in examples and `history` its
    /// last events (kept for the first dialog with each kind of violation).
    pub fn add(&mut self, name: &str, check: &DialogCheck, history: &[String]) {
        self.dialogs += 1;
        self.notifies += check.received;
        self.retransmissions += check.retransmissions;
        self.repeats += check.repeats;
        self.skipped += check.skipped;
        self.recomposed += check.recomposed;
        for v in &check.violations {
            *self.violations.entry(*v).or_default() += 1;
        }
        for (kind, detail) in &check.details {
            let shown = self.example_kinds.entry(*kind).or_default();
            if *shown == 0 && !history.is_empty() {
                let mut trace = vec![format!("{kind} in dialog {name}")];
                trace.extend(history.iter().cloned());
                self.traces.push(trace);
            }
            if *shown < EXAMPLES_PER_KIND {
                *shown += 1;
                self.examples.push(format!("{detail} in dialog {name}"));
            }
        }
    }

    /// Counts a violation outside any known dialog (an unknown dialog's NOTIFY).
    pub fn add_unattached(&mut self, violation: Violation, count: u64) {
        if count > 0 {
            *self.violations.entry(violation).or_default() += count;
        }
    }

    /// Total violations.
    pub fn total(&self) -> u64 {
        self.violations.values().sum()
    }

    /// Sets `passed` from the violations.
    pub fn finish(mut self) -> CheckSummary {
        self.passed = self.total() == 0;
        self
    }
}

#[cfg(test)]
mod tests;
