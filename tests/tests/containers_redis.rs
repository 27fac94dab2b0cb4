//! Redis faults on a Docker network, under a load of publishers and
//! watchers: a restart that loses every key (no persistence), and a pause
//! (the process frozen: connections open, nothing answered — what a
//! partition looks like to the services).

use std::time::{Duration, Instant};

use cluster_tests::containers::{ContainerCluster, Shape};
use cluster_tests::ua::Ua;
use cluster_tests::workload::{check_all, Load, Pace, PublishReport};
use sip::{HeaderName, Response, SubState};

/// REGISTERs until one is answered 200; returns when, and the refusals
/// seen (status, has Retry-After).
async fn register_until_ok(
    ua: &mut Ua,
    token: &str,
    timeout: Duration,
) -> (Instant, Vec<(u16, bool)>) {
    let deadline = Instant::now() + timeout;
    let mut refused = Vec::new();
    loop {
        let response: Response = ua.register(Some(token), 600).await;
        if response.status() == 200 {
            return (Instant::now(), refused);
        }
        refused.push((
            response.status(),
            response.headers().get(&HeaderName::RetryAfter).is_some(),
        ));
        assert!(
            Instant::now() < deadline,
            "REGISTER still refused after {timeout:?}: {refused:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn all_503_have_retry_after(reports: &[PublishReport]) {
    for report in reports {
        for refusal in &report.refusals {
            if refusal.status == Some(503) {
                assert!(
                    refusal.retry_after,
                    "{}: 503 without Retry-After",
                    report.presentity
                );
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_losing_every_key_gives_503_then_recovers_and_watchers_converge() {
    let cluster = ContainerCluster::start(Shape::default()).await;
    let publishers = 3;
    let pace = Pace {
        changes: 30,
        pause: Duration::from_millis(100),
        expires: 600,
        last_expires: 600,
    };
    let registered_aor = "phone@example.com";
    let reg_token = cluster.tokens.token(registered_aor);
    let mut phone = Ua::udp(registered_aor, cluster.edge(0)).await;
    assert_eq!(phone.register(Some(&reg_token), 600).await.status(), 200);

    let mut load = Load::start(&cluster.tokens, cluster.edge_addrs(), publishers, 2, pace).await;
    load.progress.reach(20, Duration::from_secs(120)).await;

    // Redis goes away with all its data.
    cluster
        .redis
        .stop_with_timeout(Some(0))
        .await
        .expect("stopping Redis");
    let stopped = Instant::now();
    let refused = phone.register(Some(&reg_token), 600).await;
    assert_eq!(refused.status(), 503, "REGISTER while Redis is down");
    assert!(refused.headers().get(&HeaderName::RetryAfter).is_some());
    let answered_in = stopped.elapsed();
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(stopped.elapsed())).await;
    cluster.redis.start().await.expect("starting Redis again");
    let started = Instant::now();

    // The services reconnect by themselves; the registration, lost with
    // the data, comes back at the phone's next REGISTER.
    let (recovered_at, refusals) =
        register_until_ok(&mut phone, &reg_token, Duration::from_secs(60)).await;
    assert!(refusals
        .iter()
        .all(|(status, retry_after)| *status == 503 && *retry_after));

    let reports = load.finish().await;
    all_503_have_retry_after(&reports);
    // Every publisher published after the restart with a tag Redis no
    // longer knew: 412, and a publication in full.
    for report in &reports {
        assert!(
            report.republished_after_412 >= 1,
            "{}: no 412 after the data loss: {report:#?}",
            report.presentity
        );
    }
    // The dialogs live on at the edges; every watcher saw each applied
    // change once, in order, and ends with the last one.
    let sequences: Vec<_> = load
        .watchers
        .iter()
        .map(|w| (w.name.clone(), w.presentity.clone(), w.seen()))
        .collect();
    let verdicts = check_all(&sequences, &reports, 0);
    for (name, _, seen) in &sequences {
        assert!(
            seen.iter().all(|s| s.state == SubState::Active),
            "{name}: {seen:#?}"
        );
    }
    eprintln!(
        "figures: Redis restarted without persistence under load: down {:.1} s; REGISTER \
         answered 503 in {:?} while down; first REGISTER 200 {:.1} s after Redis started; \
         {} PUBLISHes refused (all 503 + Retry-After), {} re-published after 412; {} NOTIFYs \
         checked over {} dialogs",
        (started - stopped).as_secs_f64(),
        answered_in,
        (recovered_at - started).as_secs_f64(),
        reports.iter().map(|r| r.refusals.len()).sum::<usize>(),
        reports
            .iter()
            .map(|r| r.republished_after_412)
            .sum::<usize>(),
        verdicts.iter().map(|v| v.notifies).sum::<usize>(),
        verdicts.len(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_paused_gives_503_with_retry_after_no_crash_and_recovers() {
    let cluster = ContainerCluster::start(Shape::default()).await;
    let publishers = 2;
    let pace = Pace {
        changes: 20,
        pause: Duration::from_millis(100),
        expires: 600,
        last_expires: 600,
    };
    let aor = "desk@example.com";
    let token = cluster.tokens.token(aor);
    let mut phone = Ua::udp(aor, cluster.edge(1)).await;
    assert_eq!(phone.register(Some(&token), 600).await.status(), 200);

    let mut load = Load::start(&cluster.tokens, cluster.edge_addrs(), publishers, 2, pace).await;
    load.progress.reach(8, Duration::from_secs(120)).await;

    cluster.redis.pause().await.expect("pausing Redis");
    let paused = Instant::now();
    let refused = phone.register(Some(&token), 600).await;
    let answered_in = paused.elapsed();
    assert_eq!(refused.status(), 503, "REGISTER while Redis is frozen");
    assert!(refused.headers().get(&HeaderName::RetryAfter).is_some());
    tokio::time::sleep(Duration::from_secs(6).saturating_sub(paused.elapsed())).await;
    for (container, running) in cluster.all_running().await {
        assert!(
            running,
            "container {container} stopped while Redis was frozen"
        );
    }
    cluster.redis.unpause().await.expect("unpausing Redis");
    let unpaused = Instant::now();
    let (recovered_at, _) = register_until_ok(&mut phone, &token, Duration::from_secs(60)).await;

    let reports = load.finish().await;
    all_503_have_retry_after(&reports);
    for report in &reports {
        assert!(
            !report.refusals.is_empty(),
            "{}: published through the pause without a refusal?",
            report.presentity
        );
    }
    let mut sequences = Vec::new();
    for watcher in load.watchers.drain(..) {
        let name = watcher.name.clone();
        let presentity = watcher.presentity.clone();
        let (status, seen, _) = watcher.unsubscribe().await;
        assert_eq!(status, 200, "{name}: unsubscribe after the pause");
        assert_eq!(
            seen.last().map(|s| s.state.clone()),
            Some(SubState::Terminated)
        );
        sequences.push((name, presentity, seen));
    }
    let verdicts = check_all(&sequences, &reports, 1);
    eprintln!(
        "figures: Redis frozen {:.1} s under load: REGISTER answered 503 in {:?}; first \
         REGISTER 200 {:.1} s after unpause; {} PUBLISHes refused, {} repeats explained by \
         re-sends; {} NOTIFYs checked over {} dialogs",
        (unpaused - paused).as_secs_f64(),
        answered_in,
        (recovered_at - unpaused).as_secs_f64(),
        reports.iter().map(|r| r.refusals.len()).sum::<usize>(),
        verdicts.iter().map(|v| v.explained_repeats).sum::<usize>(),
        verdicts.iter().map(|v| v.notifies).sum::<usize>(),
        verdicts.len(),
    );
}
