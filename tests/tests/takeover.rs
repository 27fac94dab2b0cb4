//! Edge failure: the dialogs of an edge that dies (SIGKILL) or drains
//! (SIGTERM) are continued by a surviving edge, so watchers over UDP keep
//! receiving NOTIFYs in the same dialog with a growing CSeq. A draining
//! edge answers every request until its sockets close and tells the
//! survivor what each watcher has, so nothing is sent twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use cluster_tests::cluster::Cluster;
use cluster_tests::free_port;
use cluster_tests::process::{wait_for_tcp, Process};
use cluster_tests::ua::{body_text, pidf, Ua, WAIT};
use presence::SubscriptionRecord;
use sip::{HeaderName, Method, Request};
use store::{Backend, Key, Kind};

fn dialog_of(notify: &Request) -> (String, String, String) {
    let h = notify.headers();
    (
        h.call_id().expect("Call-ID").to_string(),
        h.from().expect("From").tag().expect("From tag").to_string(),
        h.to().expect("To").tag().expect("To tag").to_string(),
    )
}

/// Starts an edge with a lease of `lease_ms` that looks for orphaned
/// dialogs every 250 ms.
fn add_edge(cluster: &mut Cluster, id: &str, lease_ms: u64) {
    add_edge_with(
        cluster,
        id,
        &[
            "--lease-ttl-ms",
            &lease_ms.to_string(),
            "--claim-interval-ms",
            "250",
        ],
    );
}

/// Starts an edge with `extra` flags (the defaults otherwise).
fn add_edge_with(cluster: &mut Cluster, id: &str, extra: &[&str]) {
    let port = free_port();
    let mut args = vec![
        "--udp".to_string(),
        format!("127.0.0.1:{port}"),
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--edge-id".into(),
        id.into(),
        "--presence-url".into(),
        cluster.presence_url(),
        "--registrar-url".into(),
        cluster.registrar_url(),
        "--redis-url".into(),
        cluster.redis.url(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args.extend(cluster.tokens.edge_args());
    let process = Process::spawn(id, "edge", &args, &[]);
    wait_for_tcp(port, Duration::from_secs(60));
    cluster.edges.push(process);
    cluster.edge_ports.push(port);
}

/// Watches Alice through edge 0 and returns the initial NOTIFY.
async fn watch_through_first_edge(cluster: &Cluster, bob: &mut Ua) -> Request {
    let token = cluster.tokens.token("bob@example.com");
    let (response, _) = bob.subscribe("alice@example.com", &token, 600).await;
    assert_eq!(response.status(), 200);
    bob.next_notify(WAIT).await.expect("initial NOTIFY")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_edges_dialogs_continue_on_a_survivor() {
    let mut cluster = Cluster::start(0);
    add_edge(&mut cluster, "edge-a", 2000);
    add_edge(&mut cluster, "edge-b", 2000);
    let alice_token = cluster.tokens.token("alice@example.com");
    let mut alice = Ua::udp("alice@example.com", cluster.edge(1)).await;
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "first")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let etag = published
        .headers()
        .sip_etag()
        .expect("SIP-ETag")
        .to_string();

    let mut bob = Ua::udp("bob@example.com", cluster.edge(0)).await;
    let initial = watch_through_first_edge(&cluster, &mut bob).await;
    let dialog = dialog_of(&initial);
    let initial_cseq = initial.headers().cseq().expect("CSeq").seq;

    // Edge 0 dies without a word.
    cluster.edges[0].kill();
    let killed_at = Instant::now();

    // The survivor takes the dialog over and sends the current state at once.
    let continued = bob
        .next_notify(Duration::from_secs(20))
        .await
        .expect("a NOTIFY from the surviving edge");
    let takeover = killed_at.elapsed();
    assert_eq!(dialog_of(&continued), dialog, "same dialog");
    let continued_cseq = continued.headers().cseq().expect("CSeq").seq;
    assert!(
        continued_cseq > initial_cseq,
        "{initial_cseq} then {continued_cseq}"
    );
    assert!(String::from_utf8_lossy(continued.body()).contains("first"));
    assert!(
        takeover < Duration::from_secs(10),
        "takeover took {takeover:?}"
    );
    eprintln!("takeover after SIGKILL: {takeover:?}");

    // Changes keep flowing in that dialog: exactly one NOTIFY per change.
    let modified = alice
        .publish(
            &alice_token,
            Some(&etag),
            Some(&pidf("alice@example.com", "closed", "second")),
            600,
        )
        .await;
    assert_eq!(modified.status(), 200);
    let next = bob
        .next_notify(WAIT)
        .await
        .expect("NOTIFY of the next change");
    assert_eq!(dialog_of(&next), dialog);
    assert!(next.headers().cseq().expect("CSeq").seq > continued_cseq);
    assert!(String::from_utf8_lossy(next.body()).contains("second"));
    assert!(
        bob.next_notify(Duration::from_millis(1500)).await.is_none(),
        "no duplicate NOTIFY"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_edge_hands_its_dialogs_over_at_once() {
    let mut cluster = Cluster::start(0);
    // A long lease: only an explicit release can explain a fast takeover.
    add_edge(&mut cluster, "edge-a", 30_000);
    add_edge(&mut cluster, "edge-b", 30_000);
    let mut bob = Ua::udp("bob@example.com", cluster.edge(0)).await;
    let initial = watch_through_first_edge(&cluster, &mut bob).await;
    let dialog = dialog_of(&initial);
    let alice_token = cluster.tokens.token("alice@example.com");
    let mut alice = Ua::udp("alice@example.com", cluster.edge(1)).await;

    cluster.edges[0].signal_terminate();
    let stopped_at = Instant::now();
    // Bob has the initial state, so the survivor tells him only of a
    // change: one published right after the SIGTERM.
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "after the drain began")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let continued = bob
        .next_notify(Duration::from_secs(20))
        .await
        .expect("a NOTIFY from the edge that took over");
    let takeover = stopped_at.elapsed();
    assert_eq!(dialog_of(&continued), dialog);
    assert!(body_text(&continued).contains("after the drain began"));
    assert!(
        continued.headers().cseq().expect("CSeq").seq > initial.headers().cseq().expect("CSeq").seq
    );
    assert!(
        takeover < Duration::from_secs(15),
        "handed over well before the 30 s lease would lapse: {takeover:?}"
    );
    eprintln!("change reached the watcher through the new owner {takeover:?} after SIGTERM");
    assert!(
        cluster.edges[0].terminate(Duration::from_secs(15)),
        "the edge exits by itself on SIGTERM"
    );
}

/// The next NOTIFY with a CSeq above `last_cseq`, which it updates: a
/// NOTIFY sent again because its answer came late (the test answers one
/// watcher at a time) is the same NOTIFY, not a repeat.
async fn next_new_notify(ua: &mut Ua, last_cseq: &mut u32, timeout: Duration) -> Option<Request> {
    let deadline = Instant::now() + timeout;
    loop {
        let notify = ua
            .next_notify(deadline.saturating_duration_since(Instant::now()))
            .await?;
        let cseq = notify.headers().cseq().expect("CSeq").seq;
        if cseq > *last_cseq {
            *last_cseq = cseq;
            return Some(notify);
        }
    }
}

/// The owner named by each stored subscription record of `presentity`.
async fn owners(backend: &dyn Backend, presentity: &str) -> Vec<String> {
    backend
        .map_list(&Key::new(Kind::Subscriptions, presentity))
        .await
        .expect("reading the subscription records")
        .into_iter()
        .map(|(dialog_id, raw)| {
            SubscriptionRecord::decode(presentity, &dialog_id, &raw)
                .expect("a subscription record")
                .dialog
                .edge_id
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_edge_answers_every_request_until_its_sockets_close() {
    let mut cluster = Cluster::start(0);
    add_edge_with(
        &mut cluster,
        "edge-a",
        &["--lease-ttl-ms", "30000", "--drain-grace-ms", "3000"],
    );
    add_edge_with(&mut cluster, "edge-b", &["--lease-ttl-ms", "30000"]);
    let alice_token = cluster.tokens.token("alice@example.com");
    let bob_token = cluster.tokens.token("bob@example.com");
    let carol_token = cluster.tokens.token("carol@example.com");
    let mut bob = Ua::udp("bob@example.com", cluster.edge(0)).await;
    let (subscribed, dialog) = bob.subscribe("alice@example.com", &bob_token, 600).await;
    assert_eq!(subscribed.status(), 200);
    let mut dialog = dialog.expect("a dialog");
    bob.next_notify(WAIT).await.expect("initial NOTIFY");
    let mut alice = Ua::udp("alice@example.com", cluster.edge(0)).await;
    let mut carol = Ua::udp("carol@example.com", cluster.edge(0)).await;

    cluster.edges[0].signal_terminate();
    let signalled = Instant::now();
    // Where aborting every task at once left requests unanswered.
    tokio::time::sleep(Duration::from_millis(400)).await;

    // Requests that leave no state on the edge are processed.
    let registered = alice.register(Some(&alice_token), 600).await;
    assert_eq!(registered.status(), 200, "REGISTER while draining");
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "while draining")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200, "PUBLISH while draining");

    // A new subscription would create a dialog here: 503 and Retry-After,
    // so the client comes back through another edge.
    let (refused, _) = carol
        .subscribe("alice@example.com", &carol_token, 600)
        .await;
    assert_eq!(refused.status(), 503, "new SUBSCRIBE while draining");
    assert!(refused.headers().get(&HeaderName::RetryAfter).is_some());

    // The dialog was handed over at once: its watcher hears the change
    // from the edge that continues it.
    // (The REGISTER may have changed Alice's state first.)
    let continued = loop {
        let notify = bob
            .next_notify(Duration::from_secs(10))
            .await
            .expect("the change, from the edge that took the dialog over");
        if body_text(&notify).contains("while draining") {
            break notify;
        }
    };
    assert_eq!(
        continued.headers().call_id().expect("Call-ID"),
        dialog.call_id
    );
    // Its refresh reaching the draining edge is not taken back: 503.
    let refreshed = bob.resubscribe(&mut dialog, &bob_token, 600).await;
    assert_eq!(refreshed.status(), 503, "refresh of a handed-over dialog");
    assert!(refreshed.headers().get(&HeaderName::RetryAfter).is_some());

    // Still answering near the end of the grace.
    tokio::time::sleep_until((signalled + Duration::from_millis(2400)).into()).await;
    let options = carol
        .request(Method::Options, "example.com", "example.com")
        .build();
    carol.send(&options).await;
    let answered = carol
        .try_response_to(&options, Duration::from_secs(2))
        .await
        .expect("OPTIONS answered within the grace");
    assert_eq!(answered.status(), 200);

    assert!(
        cluster.edges[0].terminate(Duration::from_secs(15)),
        "the edge exits by itself once the grace is over"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handed_over_watchers_are_not_sent_the_state_they_have() {
    let mut cluster = Cluster::start(0);
    // A long lease: only the hand-over explains a move.
    add_edge_with(
        &mut cluster,
        "edge-a",
        &["--lease-ttl-ms", "30000", "--drain-grace-ms", "2000"],
    );
    add_edge_with(&mut cluster, "edge-b", &["--lease-ttl-ms", "30000"]);
    let backend: Arc<dyn Backend> = store::open(&cluster.redis.url())
        .await
        .expect("connecting to Redis");
    let alice_token = cluster.tokens.token("alice@example.com");
    let mut alice = Ua::udp("alice@example.com", cluster.edge(1)).await;
    let note = |n: &str| pidf("alice@example.com", "open", n);
    let published = alice
        .publish(&alice_token, None, Some(&note("first")), 600)
        .await;
    assert_eq!(published.status(), 200);
    let etag = published
        .headers()
        .sip_etag()
        .expect("SIP-ETag")
        .to_string();

    let mut watchers = Vec::new();
    for name in ["bob", "carol", "dave", "erin", "frank", "grace"] {
        let aor = format!("{name}@example.com");
        let mut ua = Ua::udp(&aor, cluster.edge(0)).await;
        let token = cluster.tokens.token(&aor);
        let (response, _) = ua.subscribe("alice@example.com", &token, 600).await;
        assert_eq!(response.status(), 200);
        let initial = ua.next_notify(WAIT).await.expect("initial NOTIFY");
        assert!(body_text(&initial).contains("first"));
        let cseq = initial.headers().cseq().expect("CSeq").seq;
        watchers.push((ua, cseq));
    }
    // A change every watcher acknowledges before the drain.
    let modified = alice
        .publish(&alice_token, Some(&etag), Some(&note("second")), 600)
        .await;
    assert_eq!(modified.status(), 200);
    let etag = modified.headers().sip_etag().expect("SIP-ETag").to_string();
    for (ua, cseq) in &mut watchers {
        let notify = next_new_notify(ua, cseq, WAIT)
            .await
            .expect("NOTIFY of the change");
        assert!(body_text(&notify).contains("second"), "{}", ua.aor);
    }

    cluster.edges[0].signal_terminate();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let owners = owners(backend.as_ref(), "alice@example.com").await;
        if owners.len() == watchers.len() && owners.iter().all(|o| o == "edge-b") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the dialogs were not taken over: {owners:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The survivor has every dialog now: any NOTIFY it sends without a
    // change would be a repeat.
    let mut repeated = 0;
    for (ua, cseq) in &mut watchers {
        while let Some(notify) = next_new_notify(ua, cseq, Duration::from_millis(300)).await {
            eprintln!("{} got a repeat: {}", ua.aor, body_text(&notify));
            repeated += 1;
        }
    }
    assert_eq!(repeated, 0, "NOTIFYs repeating a state the watcher had");

    // The next change reaches every watcher once, from the survivor.
    let changed = alice
        .publish(&alice_token, Some(&etag), Some(&note("third")), 600)
        .await;
    assert_eq!(changed.status(), 200);
    for (ua, cseq) in &mut watchers {
        let notify = next_new_notify(ua, cseq, WAIT)
            .await
            .expect("NOTIFY of the next change");
        assert!(body_text(&notify).contains("third"), "{}", ua.aor);
    }
    for (ua, cseq) in &mut watchers {
        if let Some(extra) = next_new_notify(ua, cseq, Duration::from_millis(300)).await {
            panic!(
                "{}: one NOTIFY per change; then\n{}",
                ua.aor,
                String::from_utf8_lossy(&extra.to_bytes()),
            );
        }
    }
    assert!(cluster.edges[0].terminate(Duration::from_secs(15)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_default_lease_a_killed_edges_watchers_hear_the_next_change_within_two_seconds() {
    // Default lease and claim interval.
    let mut cluster = Cluster::start(0);
    add_edge_with(&mut cluster, "edge-a", &[]);
    add_edge_with(&mut cluster, "edge-b", &[]);
    let alice_token = cluster.tokens.token("alice@example.com");
    let mut alice = Ua::udp("alice@example.com", cluster.edge(1)).await;
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "before the kill")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let etag = published
        .headers()
        .sip_etag()
        .expect("SIP-ETag")
        .to_string();
    let mut bob = Ua::udp("bob@example.com", cluster.edge(0)).await;
    let initial = watch_through_first_edge(&cluster, &mut bob).await;
    let dialog = dialog_of(&initial);
    cluster.edges[0].kill();
    let killed_at = Instant::now();
    let changed = alice
        .publish(
            &alice_token,
            Some(&etag),
            Some(&pidf("alice@example.com", "closed", "after the kill")),
            600,
        )
        .await;
    assert_eq!(changed.status(), 200);
    let notify = loop {
        let notify = bob
            .next_notify(Duration::from_secs(10))
            .await
            .expect("a NOTIFY from the surviving edge");
        if body_text(&notify).contains("after the kill") {
            break notify;
        }
    };
    let delay = killed_at.elapsed();
    assert_eq!(dialog_of(&notify), dialog, "same dialog");
    eprintln!("change after a SIGKILL reached the watcher {delay:?} after the kill");
    assert!(
        delay < Duration::from_secs(3),
        "the survivor took {delay:?} (a 1.5 s lease, claims every 250 ms)"
    );
}
