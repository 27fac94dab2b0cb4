//! An edge container SIGKILLed under load: two edges, presence, registrar
//! and Redis on a Docker network; publishers on the surviving edge keep
//! changing their state while UDP watchers hold dialogs on both edges.
//! When the killed edge's lease lapses the survivor claims its dialogs and
//! continues them (same dialog, CSeq jumping above anything used), so the
//! watchers of the dead edge keep receiving without re-subscribing.
//!
//! The UAs talk to the edges' own addresses on the network, from this
//! machine's address on it: a dialog's remote address is then the UA's real
//! one, which the survivor can reach. (Through a published port the edge
//! would see Docker's proxy for that port, which dies with the edge.)

use std::time::{Duration, Instant};

use cluster_tests::containers::{kill, logs, ContainerCluster, Shape};
use cluster_tests::workload::{
    check_all, fold_takeover, takeover_index, Load, Pace, Spread, TAKEOVER_CSEQ_GAP,
};
use sip::SubState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_edges_udp_watchers_get_every_change_from_the_survivor() {
    // Two edges with the default lease (1.5 s) and claim interval (250 ms).
    let cluster = ContainerCluster::start(Shape::default()).await;
    let doomed = cluster.edge_on_network(0);
    let survivor = cluster.edge_on_network(1);
    let publishers = 3;
    let watchers_per_presentity = 3;
    // Watcher w of presentity i is on watcher_edges[(i + w + 1) % 3]: two of
    // each presentity's three watchers on the edge that dies.
    let watcher_edges = [doomed, doomed, survivor];
    let pace = Pace {
        changes: 30,
        pause: Duration::from_millis(100),
        expires: 600,
        last_expires: 600,
    };
    let mut load = Load::start_spread(
        &cluster.tokens,
        Spread {
            publisher_edges: &[survivor],
            watcher_edges: &watcher_edges,
            bind: Some(cluster.gateway()),
        },
        publishers,
        watchers_per_presentity,
        pace,
    )
    .await;
    let on_doomed: Vec<bool> = (0..publishers)
        .flat_map(|i| {
            (0..watchers_per_presentity).map(move |w| watcher_edges[(i + w + 1) % 3] == doomed)
        })
        .collect();
    assert_eq!(on_doomed.len(), load.watchers.len());
    assert_eq!(on_doomed.iter().filter(|d| **d).count(), 6);

    load.progress.reach(30, Duration::from_secs(120)).await;
    kill(&cluster.edges[0]).await;
    let killed_at = Instant::now();
    let applied_at_kill = load.progress.applied();

    // Each watcher of the dead edge: how long until the survivor's first
    // NOTIFY in its dialog.
    let mut takeovers = Vec::new();
    for (watcher, _) in load
        .watchers
        .iter()
        .zip(&on_doomed)
        .filter(|(_, doomed)| **doomed)
    {
        if watcher
            .wait_for(
                |seen| takeover_index(seen).is_some(),
                Duration::from_secs(30),
            )
            .await
            .is_none()
        {
            panic!(
                "{}: no NOTIFY from the survivor: {:?}\nthe survivor logged:\n{}",
                watcher.name,
                watcher.seen().iter().map(|s| s.cseq).collect::<Vec<_>>(),
                logs(&cluster.edges[1], 60).await
            );
        }
        takeovers.push(killed_at.elapsed());
    }
    let applied_during_takeover = load.progress.applied() - applied_at_kill;
    let reports = load.finish().await;
    for report in &reports {
        assert!(
            report.refusals.is_empty() && report.undelivered.is_empty(),
            "{report:#?}"
        );
        assert_eq!(report.applied.len(), pace.changes);
    }

    // Every watcher: every applied change once, in order, ending with the
    // last; on the dead edge's dialogs the only repeat allowed is the
    // survivor's first NOTIFY when it carries the state the watcher had.
    let mut sequences = Vec::new();
    let mut repeated_at_takeover = 0;
    for (watcher, doomed) in load.watchers.iter().zip(&on_doomed) {
        let seen = watcher.seen();
        assert!(
            seen.iter().all(|s| s.state == SubState::Active),
            "{}: {seen:#?}",
            watcher.name
        );
        let takeover = takeover_index(&seen);
        if *doomed {
            let at = takeover.unwrap_or_else(|| panic!("{}: {seen:#?}", watcher.name));
            assert!(
                at > 1,
                "{}: changes before the kill: {seen:#?}",
                watcher.name
            );
            assert_eq!(
                seen.iter()
                    .skip(1)
                    .filter(|s| s.cseq >= seen[0].cseq + TAKEOVER_CSEQ_GAP)
                    .count(),
                seen.len() - at,
                "{}: one takeover only: {seen:#?}",
                watcher.name
            );
        } else {
            assert_eq!(takeover, None, "{}: {seen:#?}", watcher.name);
        }
        let (folded, repeated) = fold_takeover(&seen);
        repeated_at_takeover += usize::from(repeated);
        sequences.push((watcher.name.clone(), watcher.presentity.clone(), folded));
    }
    let verdicts = check_all(&sequences, &reports, 0);
    let notifies: usize = verdicts.iter().map(|v| v.notifies).sum();
    let (fastest, slowest) = (
        takeovers.iter().min().copied().unwrap_or_default(),
        takeovers.iter().max().copied().unwrap_or_default(),
    );
    eprintln!(
        "figures: edge container SIGKILLed under load (lease 1.5 s, claims every 250 ms): its {} UDP \
         watchers got the survivor's first NOTIFY {:.1}–{:.1} s after the kill; {} changes \
         applied meanwhile; {} NOTIFYs checked over {} dialogs, {} of them the survivor \
         repeating the state a watcher already had",
        takeovers.len(),
        fastest.as_secs_f64(),
        slowest.as_secs_f64(),
        applied_during_takeover,
        notifies + repeated_at_takeover,
        verdicts.len(),
        repeated_at_takeover,
    );
}

/// The image explains itself: `docker run IMAGE --help` lists the
/// processes, `docker run IMAGE edge --help` an edge's options, and a
/// process named by its path runs as well (what manifests written for
/// separate executables pass).
#[test]
fn the_image_answers_help_for_itself_and_each_process() {
    cluster_tests::containers::ensure_images();
    let image = format!(
        "{}:{}",
        cluster_tests::containers::APP_IMAGE,
        cluster_tests::containers::TAG
    );
    let run = |args: &[&str]| {
        let output = std::process::Command::new("docker")
            .args(["run", "--rm", "--network", "none", &image])
            .args(args)
            .output()
            .expect("docker run");
        assert!(output.status.success(), "docker run {args:?}: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    };
    let help = run(&["--help"]);
    for process in ["edge", "presence", "registrar", "presence-node"] {
        assert!(help.contains(process), "{process} missing from:\n{help}");
    }
    assert!(run(&["edge", "--help"]).contains("Usage: edge"));
    assert!(run(&["registrar", "--help"]).contains("--metrics-listen"));
    assert!(run(&["/usr/local/bin/presence", "--version"]).starts_with("presence "));
}
