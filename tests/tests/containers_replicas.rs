//! Presence replicas on a Docker network: two replicas, two edges that
//! balance over them, Redis; publishers and watchers over UDP through the
//! edges' published ports.
//!
//! * One presence and one registrar replica are killed (SIGKILL) while
//!   phones publish and register, started again, then the other two are
//!   killed: the edges keep serving through whichever replicas are alive,
//!   and every watcher's NOTIFYs are complete, in order, without duplicates.
//! * With two edges and two replicas and no fault, each change and each
//!   expiry gives exactly one NOTIFY per dialog (counted).

use std::time::{Duration, Instant};

use cluster_tests::containers::{kill, wait_for_log, ContainerCluster, Shape};
use cluster_tests::ua::Ua;
use cluster_tests::workload::{check_all, Load, Pace, PublishReport, Seen};
use sip::SubState;
use tokio::sync::watch;

fn refusals(reports: &[PublishReport]) -> usize {
    reports.iter().map(|r| r.refusals.len()).sum()
}

/// The longest time between two changes applied by one publisher.
fn longest_gap(reports: &[PublishReport]) -> Duration {
    reports
        .iter()
        .flat_map(|r| r.applied_at.windows(2).map(|w| w[1] - w[0]))
        .max()
        .unwrap_or_default()
}

/// A phone REGISTERing every 100 ms until stopped; what each REGISTER got.
async fn keep_registering(
    mut phone: Ua,
    token: String,
    stop: watch::Receiver<bool>,
) -> Vec<(Instant, u16)> {
    let mut answers = Vec::new();
    while !*stop.borrow() {
        let answer = phone.register(Some(&token), 600).await;
        answers.push((Instant::now(), answer.status()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    answers
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_presence_and_registrar_replicas_one_at_a_time_loses_no_change() {
    let cluster = ContainerCluster::start(Shape {
        presence_replicas: 2,
        registrar_replicas: 2,
        edges: 2,
        ..Shape::default()
    })
    .await;
    let phone_aor = "roaming@example.com";
    let phone = Ua::udp(phone_aor, cluster.edge(0)).await;
    let (stop_registering, registering) = watch::channel(false);
    let registrations = tokio::spawn(keep_registering(
        phone,
        cluster.tokens.token(phone_aor),
        registering,
    ));
    let publishers = 3;
    let pace = Pace {
        changes: 40,
        pause: Duration::from_millis(50),
        expires: 600,
        last_expires: 600,
    };
    let mut load = Load::start(&cluster.tokens, cluster.edge_addrs(), publishers, 2, pace).await;

    // A third of the way: replicas 1 die.
    load.progress.reach(40, Duration::from_secs(120)).await;
    kill(&cluster.presence[1]).await;
    kill(&cluster.registrar[1]).await;
    let first_kill = Instant::now();

    // They come back; once the edges can have heard of them (names are
    // resolved every 2 s), replicas 0 die.
    load.progress.reach(70, Duration::from_secs(120)).await;
    cluster.presence[1]
        .start()
        .await
        .expect("starting presence replica 1 again");
    cluster.registrar[1]
        .start()
        .await
        .expect("starting registrar replica 1 again");
    wait_for_log(&cluster.presence[1], "presence serving gRPC", 2).await;
    wait_for_log(&cluster.registrar[1], "registrar serving gRPC", 2).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    kill(&cluster.presence[0]).await;
    kill(&cluster.registrar[0]).await;
    let second_kill = Instant::now();

    let reports = load.finish().await;
    // The phone registers through the surviving registrar too.
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(second_kill.elapsed())).await;
    let _ = stop_registering.send(true);
    let registered = registrations.await.expect("registering task");
    let register_refusals: Vec<u16> = registered
        .iter()
        .filter(|(_, status)| *status != 200)
        .map(|(_, status)| *status)
        .collect();
    assert!(
        register_refusals.len() <= 2 && register_refusals.iter().all(|s| *s == 503),
        "REGISTERs refused: {register_refusals:?}"
    );
    assert!(
        registered
            .iter()
            .any(|(at, status)| *at > second_kill && *status == 200),
        "no REGISTER succeeded after the second kill"
    );
    let mut sequences = Vec::new();
    for watcher in load.watchers.drain(..) {
        let name = watcher.name.clone();
        let presentity = watcher.presentity.clone();
        let (status, seen, _) = watcher.unsubscribe().await;
        assert_eq!(
            status, 200,
            "{name}: unsubscribe through the surviving replica"
        );
        assert_eq!(
            seen.last().map(|s| s.state.clone()),
            Some(SubState::Terminated),
            "{name}: final NOTIFY"
        );
        sequences.push((name, presentity, seen));
    }
    let verdicts = check_all(&sequences, &reports, 1);

    // Only a call in flight on a replica at the moment it died may have
    // failed (one per publisher and kill); every other call went to a live
    // replica.
    let refused = refusals(&reports);
    assert!(
        refused <= 2 * publishers,
        "{refused} PUBLISHes refused: {:#?}",
        reports.iter().map(|r| &r.refusals).collect::<Vec<_>>()
    );
    for report in &reports {
        for refusal in &report.refusals {
            if refusal.status == Some(503) {
                assert!(refusal.retry_after, "503 without Retry-After");
            }
        }
    }
    let notifies: usize = verdicts.iter().map(|v| v.notifies).sum();
    eprintln!(
        "figures: presence and registrar replicas SIGKILLed twice under load: {} changes \
         applied, {} NOTIFYs checked over {} dialogs, {refused} PUBLISHes refused, longest gap \
         between two changes of one publisher {:?}; {} REGISTERs, {} refused; kills at +0 s \
         and +{:.1} s",
        reports.iter().map(|r| r.applied.len()).sum::<usize>(),
        notifies,
        verdicts.len(),
        longest_gap(&reports),
        registered.len(),
        register_refusals.len(),
        (second_kill - first_kill).as_secs_f64(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_two_replicas_exactly_one_notify_per_change_and_expiry() {
    let cluster = ContainerCluster::start(Shape {
        presence_replicas: 2,
        edges: 2,
        ..Shape::default()
    })
    .await;
    let changes = 12;
    let pace = Pace {
        changes,
        pause: Duration::ZERO,
        expires: 600,
        // The last change expires by itself: both replicas sweep, one notifies.
        last_expires: 3,
    };
    let mut load = Load::start(&cluster.tokens, cluster.edge_addrs(), 4, 3, pace).await;
    let reports = load.finish().await;
    assert_eq!(refusals(&reports), 0, "nothing failed, nothing refused");

    // The expiry: one more NOTIFY per dialog, the neutral closed document.
    for watcher in &load.watchers {
        watcher
            .wait_for(
                |seen| seen.len() > changes + 1 && seen.last().is_some_and(|s| s.note.is_none()),
                Duration::from_secs(30),
            )
            .await
            .unwrap_or_else(|| {
                panic!(
                    "{}: no NOTIFY for the expiry: {:#?}",
                    watcher.name,
                    watcher.seen()
                )
            });
    }
    // Room for a second notifier to show itself, were there one (the
    // sweepers run every 200 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;

    let mut sequences = Vec::new();
    let mut retransmissions = 0;
    for watcher in load.watchers.drain(..) {
        let name = watcher.name.clone();
        let presentity = watcher.presentity.clone();
        let (status, seen, resent) = watcher.unsubscribe().await;
        assert_eq!(status, 200, "{name}: unsubscribe");
        retransmissions += resent;
        // initial + every change + expiry + final, each exactly once
        assert_eq!(seen.len(), changes + 3, "{name}: NOTIFYs {seen:#?}");
        let expiry: &Seen = &seen[changes + 1];
        assert_eq!(expiry.state, SubState::Active, "{name}: {expiry:?}");
        assert!(!expiry.basic_open, "{name}: expired state is closed");
        assert_eq!(seen[changes + 2].state, SubState::Terminated, "{name}");
        sequences.push((name, presentity, seen));
    }
    let verdicts = check_all(&sequences, &reports, 2);
    assert!(verdicts.iter().all(|v| v.explained_repeats == 0));
    eprintln!(
        "figures: 2 edges x 2 presence replicas, {} dialogs, {} changes: {} NOTIFYs, exactly \
         {} per dialog (initial + {changes} changes + expiry + final); {retransmissions} \
         retransmissions absorbed",
        verdicts.len(),
        reports.len() * changes,
        verdicts.iter().map(|v| v.notifies).sum::<usize>(),
        changes + 3,
    );
}
