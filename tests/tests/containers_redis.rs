//! Redis faults on a Docker network: under a load of publishers and
//! watchers, a restart that loses every key (no persistence) and a pause
//! (the process frozen: connections open, nothing answered — what a
//! partition looks like to the services); and a restart of a Redis with an
//! append-only file, which loses nothing.

use std::time::{Duration, Instant};

use cluster_tests::containers::{logs, wait_for_log, ContainerCluster, Shape};
use cluster_tests::ua::{pidf, Ua, WAIT};
use cluster_tests::workload::{check_all, without_neutral, Load, Pace, PublishReport};
use rpc::presence::v1::presence_client::PresenceClient;
use rpc::presence::v1::{GetPresenceRequest, PresenceState};
use rpc::registrar::v1::registrar_client::RegistrarClient;
use rpc::registrar::v1::LookupRequest;
use sip::{HeaderName, Response, SubState};
use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

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
    // The services say so to the load balancer...
    let presence_url = cluster.presence_url(0).await;
    wait_for_health(
        &presence_url,
        ServingStatus::NotServing,
        Duration::from_secs(15),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3).saturating_sub(stopped.elapsed())).await;
    cluster.redis.start().await.expect("starting Redis again");
    let started = Instant::now();
    // ...and take themselves back into rotation once it answers.
    wait_for_health(
        &presence_url,
        ServingStatus::Serving,
        Duration::from_secs(30),
    )
    .await;

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
    // Each edge heard of the new state epoch at a lease renewal and
    // restored the subscription records of the dialogs it holds.
    for edge in &cluster.edges {
        wait_for_log(edge, "dialogs restored after the loss of state", 1).await;
    }
    // The dialogs live on at the edges, and their records again in Redis:
    // no watcher re-subscribed, each saw every applied change once, in
    // order, and its unsubscribe is accepted (a lost record answers 481)
    // with a final NOTIFY.
    let mut sequences = Vec::new();
    let mut neutral = 0;
    for watcher in load.watchers.drain(..) {
        let name = watcher.name.clone();
        let presentity = watcher.presentity.clone();
        let (status, seen, _) = watcher.unsubscribe().await;
        assert_eq!(status, 200, "{name}: unsubscribe after the loss of state");
        assert_eq!(
            seen.last().map(|s| s.state.clone()),
            Some(SubState::Terminated),
            "{name}: {seen:#?}"
        );
        assert!(
            seen[..seen.len() - 1]
                .iter()
                .all(|s| s.state == SubState::Active),
            "{name}: {seen:#?}"
        );
        // The state after the loss, before the publisher published again:
        // nothing (a neutral document), at most once.
        let (kept, removed) = without_neutral(&seen);
        assert!(removed <= 1, "{name}: {seen:#?}");
        neutral += removed;
        sequences.push((name, presentity, kept));
    }
    let verdicts = check_all(&sequences, &reports, 1);
    eprintln!(
        "figures: Redis restarted without persistence under load: down {:.1} s; REGISTER \
         answered 503 in {:?} while down; first REGISTER 200 {:.1} s after Redis started; \
         {} PUBLISHes refused (all 503 + Retry-After), {} re-published after 412; {} NOTIFYs \
         checked over {} dialogs, {} of them the state after the loss (nothing published yet)",
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
        neutral,
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
    // Health tells the load balancer the truth: every call would fail.
    let presence_url = cluster.presence_url(0).await;
    let registrar_url = cluster.registrar_url(0).await;
    for url in [&presence_url, &registrar_url] {
        wait_for_health(url, ServingStatus::NotServing, Duration::from_secs(15)).await;
    }
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
    for url in [&presence_url, &registrar_url] {
        wait_for_health(url, ServingStatus::Serving, Duration::from_secs(15)).await;
    }

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

/// Polls the gRPC health service at `url` (the server as a whole) until it
/// reports `wanted`; fails after `timeout`.
async fn wait_for_health(url: &str, wanted: ServingStatus, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(channel) = Channel::from_shared(url.to_string())
            .expect("health URL")
            .tcp_nodelay(true)
            .connect()
            .await
        {
            let mut health = HealthClient::new(channel);
            if let Ok(answer) = health.check(HealthCheckRequest::default()).await {
                let status = answer.into_inner().status;
                if status == wanted as i32 {
                    return;
                }
                last = Some(status);
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("{url}: health never became {wanted:?} within {timeout:?} (last: {last:?})");
}

/// Reads until the services answer again after a Redis restart.
async fn get_presence_until_ok(
    client: &mut PresenceClient<Channel>,
    presentity: &str,
) -> PresenceState {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match client
            .get_presence(GetPresenceRequest {
                presentity: presentity.to_string(),
            })
            .await
        {
            Ok(state) => return state.into_inner(),
            Err(status) => {
                assert!(
                    Instant::now() < deadline,
                    "GetPresence still failing: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

async fn lookup(client: &mut RegistrarClient<Channel>, aor: &str) -> Vec<String> {
    client
        .lookup(LookupRequest {
            aor: aor.to_string(),
        })
        .await
        .expect("Lookup")
        .into_inner()
        .bindings
        .into_iter()
        .map(|b| b.uri)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_with_persistence_loses_nothing() {
    let cluster = ContainerCluster::start(Shape {
        redis_persistence: true,
        ..Shape::default()
    })
    .await;
    let mut presence = PresenceClient::new(
        Channel::from_shared(cluster.presence_url(0).await)
            .expect("presence URL")
            .tcp_nodelay(true)
            .connect_lazy(),
    );
    let mut registrar = RegistrarClient::new(
        Channel::from_shared(cluster.registrar_url(0).await)
            .expect("registrar URL")
            .tcp_nodelay(true)
            .connect_lazy(),
    );
    let (phone_aor, alice_aor, bob_aor) = (
        "deskphone@example.com",
        "alice@example.com",
        "bob@example.com",
    );
    let mut phone = Ua::udp(phone_aor, cluster.edge(0)).await;
    assert_eq!(
        phone
            .register(Some(&cluster.tokens.token(phone_aor)), 600)
            .await
            .status(),
        200
    );
    let alice_token = cluster.tokens.token(alice_aor);
    let mut alice = Ua::udp(alice_aor, cluster.edge(0)).await;
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf(alice_aor, "open", "before the restart")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let etag = published
        .headers()
        .sip_etag()
        .expect("SIP-ETag")
        .to_string();
    let bob_token = cluster.tokens.token(bob_aor);
    let mut bob = Ua::udp(bob_aor, cluster.edge(1)).await;
    let (response, dialog) = bob.subscribe(alice_aor, &bob_token, 600).await;
    assert_eq!(response.status(), 200);
    let mut dialog = dialog.expect("a dialog");
    let initial = bob.next_notify(WAIT).await.expect("initial NOTIFY");
    assert!(String::from_utf8_lossy(initial.body()).contains("before the restart"));
    let before = get_presence_until_ok(&mut presence, alice_aor).await;
    let bindings = lookup(&mut registrar, phone_aor).await;
    assert_eq!(bindings.len(), 1, "{bindings:?}");

    // Redis dies at once (no shutdown save) and starts again from its
    // append-only file, synced on every write.
    cluster
        .redis
        .stop_with_timeout(Some(0))
        .await
        .expect("stopping Redis");
    cluster.redis.start().await.expect("starting Redis again");
    let started = Instant::now();

    // The publication, with its version, and the registration are there.
    let after = get_presence_until_ok(&mut presence, alice_aor).await;
    let answered_after = started.elapsed();
    assert_eq!(after, before);
    assert_eq!(after.note, "before the restart");
    assert_eq!(lookup(&mut registrar, phone_aor).await, bindings);

    // The subscription is there: a refresh is accepted (a lost record
    // answers 481) and NOTIFYs the stored state.
    let refreshed = bob.resubscribe(&mut dialog, &bob_token, 600).await;
    assert_eq!(refreshed.status(), 200);
    let after_refresh = bob.next_notify(WAIT).await.expect("NOTIFY after refresh");
    assert!(String::from_utf8_lossy(after_refresh.body()).contains("before the restart"));
    // The entity-tag is there: a modification with it is accepted (a lost
    // one answers 412), and the watcher is told.
    let modified = alice
        .publish(
            &alice_token,
            Some(&etag),
            Some(&pidf(alice_aor, "open", "after the restart")),
            600,
        )
        .await;
    assert_eq!(modified.status(), 200);
    let change = bob.next_notify(WAIT).await.expect("NOTIFY of the change");
    assert!(String::from_utf8_lossy(change.body()).contains("after the restart"));
    let cseqs: Vec<u32> = [&initial, &after_refresh, &change]
        .iter()
        .map(|n| n.headers().cseq().expect("CSeq").seq)
        .collect();
    assert!(cseqs.windows(2).all(|w| w[1] > w[0]), "{cseqs:?}");
    assert!(
        bob.next_notify(Duration::from_secs(1)).await.is_none(),
        "one NOTIFY per event"
    );

    // The state epoch survived too: after the edges' next renewals (every
    // 2 s), none of them restored anything.
    tokio::time::sleep(Duration::from_secs(5).saturating_sub(started.elapsed())).await;
    for edge in &cluster.edges {
        let text = logs(edge, 400).await;
        assert!(!text.contains("LOST ITS DATA"), "{text}");
    }
    let text = logs(&cluster.presence[0], 400).await;
    assert_eq!(text.matches("holds no epoch").count(), 1, "{text}");
    eprintln!(
        "figures: Redis with an append-only file killed and started again: the services \
         answered {answered_after:?} after it started; the publication (version {}), the \
         registration, the subscription and its entity-tag all kept",
        after.version
    );
}
