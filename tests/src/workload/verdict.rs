//! The check of what every watcher of a load received: complete, in order, no duplicates, right
//! final state; with the allowances for a dialog taken over by another edge and for neutral
//! (polite-blocked) documents.

use std::collections::HashMap;

use sip::SubState;

use super::{PublishReport, Seen};

/// The verdict on one watcher's sequence.
#[derive(Debug)]
pub struct Verdict {
    pub watcher: String,
    /// NOTIFYs (distinct CSeqs) received.
    pub notifies: usize,
    /// Consecutive repeats explained by a publisher's re-send.
    pub explained_repeats: usize,
}

/// Checks that `seen` (one watcher of `report.presentity`) is complete, in
/// order, without duplicates and ends in the last applied state. The first
/// NOTIFY is the state at subscription time; `tail` more NOTIFYs may
/// follow the last change (an expiry, the final one), checked by the
/// caller.
pub fn check_sequence(
    watcher: &str,
    seen: &[Seen],
    report: &PublishReport,
    tail: usize,
) -> Result<Verdict, String> {
    let describe = || format!("{watcher} saw {seen:#?}\nthe publisher applied {report:#?}");
    let first = seen
        .first()
        .ok_or_else(|| format!("{watcher}: no NOTIFY"))?;
    if first.state != SubState::Active {
        return Err(format!(
            "{watcher}: first NOTIFY not active\n{}",
            describe()
        ));
    }
    for pair in seen.windows(2) {
        if pair[1].cseq <= pair[0].cseq {
            return Err(format!("{watcher}: CSeq went back\n{}", describe()));
        }
    }
    if seen.len() < 1 + tail {
        return Err(format!("{watcher}: too few NOTIFYs\n{}", describe()));
    }
    let changes = &seen[1..seen.len() - tail];
    let mut notes: Vec<&str> = Vec::new();
    let mut explained_repeats = 0;
    for s in changes {
        let Some(note) = s.note.as_deref() else {
            return Err(format!(
                "{watcher}: a NOTIFY without the publisher's note among the changes\n{}",
                describe()
            ));
        };
        if notes.last() == Some(&note) {
            if report.resent.contains(note) {
                explained_repeats += 1;
                continue;
            }
            return Err(format!(
                "{watcher}: duplicate NOTIFY of {note:?}\n{}",
                describe()
            ));
        }
        notes.push(note);
    }
    let applied: Vec<&str> = report.applied.iter().map(String::as_str).collect();
    if notes != applied {
        return Err(format!(
            "{watcher}: the changes seen are not the changes applied, in order\n{}",
            describe()
        ));
    }
    Ok(Verdict {
        watcher: watcher.to_string(),
        notifies: seen.len(),
        explained_repeats,
    })
}

/// Checks every watcher of a load against its publisher's report and
/// returns the verdicts (panics with the full sequences on a failure).
pub fn check_all(
    sequences: &[(String, String, Vec<Seen>)],
    reports: &[PublishReport],
    tail: usize,
) -> Vec<Verdict> {
    let by_presentity: HashMap<&str, &PublishReport> =
        reports.iter().map(|r| (r.presentity.as_str(), r)).collect();
    let mut verdicts = Vec::new();
    let mut failures = Vec::new();
    for (watcher, presentity, seen) in sequences {
        let report = by_presentity
            .get(presentity.as_str())
            .unwrap_or_else(|| panic!("no publisher of {presentity}"));
        match check_sequence(watcher, seen, report, tail) {
            Ok(verdict) => verdicts.push(verdict),
            Err(failure) => failures.push(failure),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    verdicts
}

/// CSeq numbers an edge skips when it takes a dialog over (the edge's
/// `TAKEOVER_CSEQ_GAP`).
pub const TAKEOVER_CSEQ_GAP: u32 = 10_000;

/// Where in `seen` another edge took the dialog over: the first NOTIFY
/// whose CSeq is the takeover gap above the first NOTIFY's. (The new owner
/// starts the gap above the CSeq stored with the dialog, which may be lower
/// than the last one used but never lower than the first one's predecessor.)
pub fn takeover_index(seen: &[Seen]) -> Option<usize> {
    let first = seen.first()?.cseq;
    seen.iter()
        .position(|s| s.cseq >= first.saturating_add(TAKEOVER_CSEQ_GAP))
}

/// `seen` without the NOTIFY a takeover sends of the state the watcher
/// already had (the new owner cannot know whether the old one delivered
/// it), and whether there was one.
pub fn fold_takeover(seen: &[Seen]) -> (Vec<Seen>, bool) {
    let mut folded = seen.to_vec();
    if let Some(at) = takeover_index(seen) {
        if seen[at].note == seen[at - 1].note {
            folded.remove(at);
            return (folded, true);
        }
    }
    (folded, false)
}

/// Whether a NOTIFY carries the neutral document of a presentity with
/// nothing published: what a watcher is sent when its presentity's state
/// was lost with the data.
pub fn is_neutral(seen: &Seen) -> bool {
    seen.state == SubState::Active && seen.note.is_none() && !seen.basic_open
}

/// `seen` without the neutral NOTIFYs after the first one (see
/// [`is_neutral`]), and how many were removed.
pub fn without_neutral(seen: &[Seen]) -> (Vec<Seen>, usize) {
    let mut kept = Vec::with_capacity(seen.len());
    let mut removed = 0;
    for (i, s) in seen.iter().enumerate() {
        if i > 0 && is_neutral(s) {
            removed += 1;
        } else {
            kept.push(s.clone());
        }
    }
    (kept, removed)
}
