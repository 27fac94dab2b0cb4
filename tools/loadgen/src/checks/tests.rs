use super::*;

fn notify(cseq: u32, seq: Option<u64>) -> Observed<'static> {
    Observed {
        cseq,
        from_tag: "srv",
        seq,
        body_digest: seq.map_or(0, |s| s + 1),
        state_digest: seq.map_or(0, |s| s + 1),
        terminated: false,
    }
}

fn terminating(cseq: u32, seq: Option<u64>) -> Observed<'static> {
    Observed {
        terminated: true,
        ..notify(cseq, seq)
    }
}

#[test]
fn an_orderly_dialog_passes() {
    let mut check = DialogCheck::new();
    check.confirm_remote_tag("srv");
    assert_eq!(check.observe(&notify(1, Some(0))), Verdict::Fresh(0));
    assert_eq!(check.observe(&notify(2, Some(1))), Verdict::Fresh(1));
    assert_eq!(check.observe(&notify(3, Some(2))), Verdict::Fresh(2));
    assert!(check.expect_final(2..=2));
    check.unsubscribed();
    assert_eq!(check.observe(&terminating(4, Some(2))), Verdict::Other);
    assert!(check.terminated());
    assert!(check.violations().is_empty(), "{:?}", check.violations());
    assert_eq!(check.repeats, 1);
}

#[test]
fn a_retransmission_is_not_a_duplicate() {
    let mut check = DialogCheck::new();
    check.observe(&notify(1, Some(0)));
    assert_eq!(check.observe(&notify(1, Some(0))), Verdict::Retransmission);
    assert_eq!(check.retransmissions, 1);
    assert!(check.violations().is_empty());
}

#[test]
fn the_same_state_in_a_new_notify_is_a_duplicate() {
    let mut check = DialogCheck::new();
    check.observe(&notify(1, Some(3)));
    assert_eq!(
        check.observe(&notify(2, Some(3))),
        Verdict::Violating(Violation::Duplicate)
    );
    assert_eq!(check.violations(), &[Violation::Duplicate]);
}

#[test]
fn a_refresh_may_repeat_the_current_state_once() {
    let mut check = DialogCheck::new();
    check.observe(&notify(1, Some(3)));
    check.subscribed();
    assert_eq!(check.observe(&notify(2, Some(3))), Verdict::Other);
    assert_eq!(
        check.observe(&notify(3, Some(3))),
        Verdict::Violating(Violation::Duplicate)
    );
}

#[test]
fn a_recomposed_state_is_not_a_duplicate() {
    let mut check = DialogCheck::new();
    let two_publications = Observed {
        state_digest: 99,
        body_digest: 99,
        ..notify(1, Some(3))
    };
    assert_eq!(check.observe(&two_publications), Verdict::Fresh(3));
    assert_eq!(check.observe(&notify(2, Some(3))), Verdict::Other);
    assert_eq!(check.recomposed, 1);
    assert!(check.violations().is_empty());
    assert_eq!(
        check.observe(&notify(3, Some(3))),
        Verdict::Violating(Violation::Duplicate)
    );
    let other_body = Observed {
        body_digest: 7,
        ..notify(4, Some(3))
    };
    assert_eq!(check.observe(&other_body), Verdict::Other);
    assert_eq!(check.recomposed, 2);
}

#[test]
fn sequence_numbers_must_not_go_back() {
    let mut check = DialogCheck::new();
    check.observe(&notify(1, Some(5)));
    assert_eq!(
        check.observe(&notify(2, Some(4))),
        Verdict::Violating(Violation::SequenceBackwards)
    );
}

#[test]
fn skipped_states_are_counted_not_violations() {
    let mut check = DialogCheck::new();
    check.observe(&notify(1, Some(0)));
    assert_eq!(check.observe(&notify(2, Some(4))), Verdict::Fresh(4));
    assert_eq!(check.skipped, 3);
    assert!(check.violations().is_empty());
}

#[test]
fn cseq_must_grow_and_not_be_reused() {
    let mut check = DialogCheck::new();
    check.observe(&notify(5, Some(0)));
    assert_eq!(
        check.observe(&notify(4, Some(1))),
        Verdict::Violating(Violation::CseqBackwards)
    );
    assert_eq!(
        check.observe(&notify(5, Some(2))),
        Verdict::Violating(Violation::CseqReused)
    );
}

#[test]
fn a_foreign_from_tag_is_out_of_dialog() {
    let mut check = DialogCheck::new();
    check.confirm_remote_tag("srv");
    let stranger = Observed {
        from_tag: "other",
        ..notify(1, Some(0))
    };
    assert_eq!(
        check.observe(&stranger),
        Verdict::Violating(Violation::WrongRemoteTag)
    );
    // A 2xx naming another tag than the first NOTIFY's is a violation too.
    let mut late = DialogCheck::new();
    late.observe(&notify(1, Some(0)));
    late.confirm_remote_tag("else");
    assert_eq!(late.violations(), &[Violation::WrongRemoteTag]);
}

#[test]
fn a_stale_final_state_is_caught_before_and_in_the_terminating_notify() {
    let mut check = DialogCheck::new();
    check.observe(&notify(1, Some(1)));
    assert!(!check.expect_final(2..=2));
    check.unsubscribed();
    assert_eq!(
        check.observe(&terminating(2, Some(1))),
        Verdict::Violating(Violation::StaleFinalState)
    );
    assert_eq!(
        check.violations(),
        &[Violation::StaleFinalState, Violation::StaleFinalState]
    );
}

#[test]
fn an_unmarked_state_is_not_the_final_state() {
    let mut check = DialogCheck::new();
    check.observe(&notify(1, Some(2)));
    check.observe(&notify(2, None));
    assert_eq!(check.current(), None);
    assert!(!check.shows(&(2..=2)));
}

#[test]
fn a_failed_last_change_may_or_may_not_be_shown() {
    let mut check = DialogCheck::new();
    check.observe(&notify(1, Some(3)));
    assert!(check.expect_final(2..=3));
}

#[test]
fn notifies_after_termination_and_early_termination_are_violations() {
    let mut check = DialogCheck::new();
    check.observe(&notify(1, Some(0)));
    check.observe(&terminating(2, None));
    assert_eq!(check.violations(), &[Violation::TerminatedEarly]);
    assert_eq!(
        check.observe(&notify(3, Some(1))),
        Verdict::Violating(Violation::AfterTermination)
    );
}

#[test]
fn summaries_add_dialogs_and_keep_examples() {
    let mut ok = DialogCheck::new();
    ok.observe(&notify(1, Some(0)));
    ok.observe(&notify(1, Some(0)));
    let mut bad = DialogCheck::new();
    bad.observe(&notify(1, Some(0)));
    bad.observe(&notify(2, Some(0)));
    bad.missing_final_notify();
    let mut summary = CheckSummary::default();
    summary.add("a", &ok, &[]);
    summary.add("b", &bad, &["0.1 s NOTIFY".to_owned()]);
    summary.add_unattached(Violation::UnknownDialog, 2);
    let summary = summary.finish();
    assert!(!summary.passed);
    assert_eq!(summary.dialogs, 2);
    assert_eq!(summary.notifies, 4);
    assert_eq!(summary.retransmissions, 1);
    assert_eq!(summary.total(), 4);
    assert_eq!(summary.violations[&Violation::Duplicate], 1);
    assert_eq!(
        summary.examples[0],
        "duplicate (NOTIFY CSeq 2 seq Some(0) after highest CSeq Some(1) seq Some(0)) in dialog b"
    );
    assert_eq!(summary.traces.len(), 2);
    assert_eq!(summary.traces[0][1], "0.1 s NOTIFY");
    let empty = CheckSummary::default().finish();
    assert!(empty.passed);
}
