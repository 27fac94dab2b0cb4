//! Edge failure: the dialogs of an edge that dies (SIGKILL) or drains
//! (SIGTERM) are continued by a surviving edge, so watchers over UDP keep
//! receiving NOTIFYs in the same dialog with a growing CSeq.

use std::time::{Duration, Instant};

use cluster_tests::cluster::Cluster;
use cluster_tests::free_port;
use cluster_tests::process::{wait_for_tcp, Process};
use cluster_tests::ua::{pidf, Ua, WAIT};
use sip::Request;

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
        "--lease-ttl-ms".into(),
        lease_ms.to_string(),
        "--claim-interval-ms".into(),
        "250".into(),
    ];
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

    let stopped_at = Instant::now();
    assert!(
        cluster.edges[0].terminate(Duration::from_secs(15)),
        "the edge exits by itself on SIGTERM"
    );
    let continued = bob
        .next_notify(Duration::from_secs(20))
        .await
        .expect("a NOTIFY from the edge that took over");
    let takeover = stopped_at.elapsed();
    assert_eq!(dialog_of(&continued), dialog);
    assert!(
        takeover < Duration::from_secs(15),
        "handed over well before the 30 s lease would lapse: {takeover:?}"
    );
    eprintln!("takeover after SIGTERM: {takeover:?}");
}
