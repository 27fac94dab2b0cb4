//! The edge's request limits over real sockets: the per-identity and
//! per-source token buckets (503 with Retry-After), the source block list
//! (403), limits applied before token validation, the cap on dialogs held
//! per source address, and the metric counting what they refused.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::transport_support::start_edge;
use cluster_tests::cluster::Cluster;
use cluster_tests::free_port;
use cluster_tests::ua::Ua;
use sip::{HeaderName, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn ip(text: &str) -> IpAddr {
    text.parse().expect("an address")
}

async fn options(ua: &mut Ua) -> sip::Response {
    let request = ua
        .request(Method::Options, "example.com", "example.com")
        .build();
    ua.call(request).await
}

/// The body of `GET /metrics` on the edge's metrics listener.
async fn metrics(port: u16) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting to the metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("sending the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("reading the response");
    response
}

fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_identity_over_its_rate_gets_503_before_its_token_is_looked_at() {
    let cluster = Cluster::start(0);
    let metrics_port = free_port();
    let flags = vec![
        "--rate-per-identity".into(),
        "0.2".into(),
        "--burst-per-identity".into(),
        "3".into(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics_port}"),
    ];
    let edge = start_edge(&cluster, "edge-identity-limit", &flags);

    // Alice's burst of three passes; the fourth request is refused.
    let mut alice = Ua::udp("alice@example.com", edge.sip()).await;
    for _ in 0..3 {
        assert_eq!(options(&mut alice).await.status(), 200);
    }
    let refused = options(&mut alice).await;
    assert_eq!(refused.status(), 503);
    let retry_after: u64 = refused
        .headers()
        .get(&HeaderName::RetryAfter)
        .expect("Retry-After on a rate-limited answer")
        .trim()
        .parse()
        .expect("Retry-After in seconds");
    // One token every five seconds.
    assert!((1..=5).contains(&retry_after), "Retry-After {retry_after}");

    // Over the limit, a REGISTER with a made-up token is refused by the
    // limit, not by token validation (401/403): nothing expensive ran.
    let register = alice
        .request(Method::Register, "example.com", "alice@example.com")
        .header(HeaderName::Authorization, "Bearer not-a-token")
        .header(HeaderName::Expires, 600)
        .build();
    assert_eq!(alice.call(register).await.status(), 503);

    // Bob, from the same address, has a bucket of his own.
    let mut bob = Ua::udp("bob@example.com", edge.sip()).await;
    assert_eq!(options(&mut bob).await.status(), 200);

    let text = metrics(metrics_port).await;
    let limited = sample(&text, "sip_requests_limited_total{limit=\"identity\"}");
    assert_eq!(limited, Some(2.0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_over_its_rate_gets_503_and_other_sources_are_served() {
    let cluster = Cluster::start(0);
    let flags = vec![
        "--rate-per-source".into(),
        "0.2".into(),
        "--burst-per-source".into(),
        "4".into(),
        "--rate-per-identity".into(),
        "0".into(),
    ];
    let edge = start_edge(&cluster, "edge-source-limit", &flags);

    // Four identities from 127.0.0.1 use up its burst; a fifth is refused.
    for user in ["a", "b", "c", "d"] {
        let mut ua = Ua::udp(&format!("{user}@example.com"), edge.sip()).await;
        assert_eq!(options(&mut ua).await.status(), 200, "{user}");
    }
    let mut fifth = Ua::udp("e@example.com", edge.sip()).await;
    let refused = options(&mut fifth).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().get(&HeaderName::RetryAfter).is_some());

    // 127.0.0.2 (loopback is all of 127/8) is another source.
    let mut other = Ua::udp_from("e@example.com", ip("127.0.0.2"), edge.sip()).await;
    assert_eq!(options(&mut other).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_source_gets_403_and_others_are_served() {
    let cluster = Cluster::start(0);
    let flags = vec!["--block-source".into(), "127.0.0.2/32,192.0.2.0/24".into()];
    let edge = start_edge(&cluster, "edge-blocked", &flags);

    let mut blocked = Ua::udp_from("mallory@example.com", ip("127.0.0.2"), edge.sip()).await;
    assert_eq!(options(&mut blocked).await.status(), 403);
    let mut allowed = Ua::udp("alice@example.com", edge.sip()).await;
    assert_eq!(options(&mut allowed).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_defaults_let_one_address_send_many_identities_quickly() {
    let cluster = Cluster::start(0);
    let edge = start_edge(&cluster, "edge-defaults", &[]);
    let server: SocketAddr = edge.sip();
    // 400 requests from one address as fast as they are answered, 40
    // identities of ten each: a load generator's pattern, never limited.
    let mut uas = Vec::new();
    for i in 0..40 {
        uas.push(Ua::udp(&format!("load{i}@example.com"), server).await);
    }
    for _ in 0..10 {
        for ua in &mut uas {
            assert_eq!(options(ua).await.status(), 200);
        }
    }
    // One identity is limited at its default burst (200), not before.
    let mut busy = Ua::udp("busy@example.com", server).await;
    let mut answered = 0;
    for _ in 0..200 {
        if options(&mut busy).await.status() == 200 {
            answered += 1;
        }
    }
    assert_eq!(answered, 200);
}

/// The `sip_dialogs` gauge of the edge serving metrics on `port`.
async fn dialogs_held(port: u16) -> u64 {
    let text = metrics(port).await;
    sample(&text, "sip_dialogs").expect("the sip_dialogs gauge") as u64
}

/// The presentity every watcher of the subscription-cap tests watches.
const WATCHED: &str = "alice@example.com";

/// A watcher UA from `from` with its own identity (so the per-watcher cap
/// and the identity rate limit play no part) and its token.
async fn watcher(cluster: &Cluster, name: &str, from: &str, edge: SocketAddr) -> (Ua, String) {
    let aor = format!("{name}@example.com");
    (
        Ua::udp_from(&aor, ip(from), edge).await,
        cluster.tokens.token(&aor),
    )
}

/// Two dialogs fill the cap of 127.0.0.1: a third new SUBSCRIBE gets 503
/// with Retry-After and is counted, while a refresh, a fetch (Expires: 0)
/// and another address are served; an un-SUBSCRIBE gives the place back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_from_one_source_beyond_the_cap_get_503() {
    let cluster = Cluster::start(0);
    let metrics_port = free_port();
    let flags = vec![
        "--max-subscriptions-per-source".into(),
        "2".into(),
        "--metrics-listen".into(),
        format!("127.0.0.1:{metrics_port}"),
    ];
    let edge = start_edge(&cluster, "edge-subscription-cap", &flags);

    let mut dialogs = Vec::new();
    let mut uas = Vec::new();
    for name in ["w0", "w1"] {
        let (mut ua, token) = watcher(&cluster, name, "127.0.0.1", edge.sip()).await;
        let (ok, dialog) = ua.subscribe(WATCHED, &token, 300).await;
        assert_eq!(ok.status(), 200, "{name}: {ok:?}");
        dialogs.push(dialog.expect("a dialog"));
        uas.push((ua, token));
    }

    let (mut third, third_token) = watcher(&cluster, "w2", "127.0.0.1", edge.sip()).await;
    let (refused, none) = third.subscribe(WATCHED, &third_token, 300).await;
    assert_eq!(refused.status(), 503, "{refused:?}");
    assert!(none.is_none());
    assert!(
        refused.reason().starts_with("Too Many Subscriptions"),
        "{}",
        refused.reason()
    );
    assert!(refused.headers().get(&HeaderName::RetryAfter).is_some());

    // A fetch holds no dialog: it is answered at the cap.
    let (fetched, _) = third.subscribe(WATCHED, &third_token, 0).await;
    assert_eq!(fetched.status(), 200, "{fetched:?}");
    // A refresh of a dialog the source holds passes.
    let (w1, w1_token) = &mut uas[1];
    assert_eq!(
        w1.resubscribe(&mut dialogs[1], w1_token, 300)
            .await
            .status(),
        200
    );
    // 127.0.0.2 (loopback is all of 127/8) is another source.
    let (mut other, other_token) = watcher(&cluster, "w3", "127.0.0.2", edge.sip()).await;
    let (ok, _) = other.subscribe(WATCHED, &other_token, 300).await;
    assert_eq!(ok.status(), 200, "{ok:?}");

    // w0 ends its subscription: once its dialog is gone (after the final
    // NOTIFY), the place is free again.
    let (w0, w0_token) = &mut uas[0];
    assert_eq!(
        w0.resubscribe(&mut dialogs[0], w0_token, 0).await.status(),
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let admitted = loop {
        // Answers the final NOTIFY, so the dialog can end.
        let _ = w0.next_notify(Duration::from_millis(100)).await;
        let (answer, _) = third.subscribe(WATCHED, &third_token, 300).await;
        if answer.status() == 200 || tokio::time::Instant::now() > deadline {
            break answer;
        }
        assert_eq!(answer.status(), 503, "{answer:?}");
    };
    assert_eq!(admitted.status(), 200, "{admitted:?}");

    let text = metrics(metrics_port).await;
    let limited = sample(
        &text,
        "sip_requests_limited_total{limit=\"subscriptions_per_source\"}",
    )
    .expect("the refusals are counted");
    assert!(limited >= 1.0, "{text}");
}

/// A dialog continued from another edge counts against its source there,
/// and is continued even past the cap; a new SUBSCRIBE from that source
/// then waits until the count is below the cap again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dialogs_taken_over_count_against_the_source_but_are_not_refused() {
    let cluster = Cluster::start(0);
    let first = start_edge(
        &cluster,
        "edge-cap-first",
        &["--max-subscriptions-per-source".into(), "5".into()],
    );
    let metrics_port = free_port();
    let second = start_edge(
        &cluster,
        "edge-cap-second",
        &[
            "--max-subscriptions-per-source".into(),
            "1".into(),
            "--metrics-listen".into(),
            format!("127.0.0.1:{metrics_port}"),
        ],
    );

    // w0 subscribes through the first edge; w1 fills the second's cap.
    let (mut w0, w0_token) = watcher(&cluster, "w0", "127.0.0.1", first.sip()).await;
    let (ok, dialog) = w0.subscribe(WATCHED, &w0_token, 300).await;
    assert_eq!(ok.status(), 200, "{ok:?}");
    let mut moved = dialog.expect("a dialog");
    let (mut w1, w1_token) = watcher(&cluster, "w1", "127.0.0.1", second.sip()).await;
    let (ok, dialog) = w1.subscribe(WATCHED, &w1_token, 300).await;
    assert_eq!(ok.status(), 200, "{ok:?}");
    let mut held = dialog.expect("a dialog");

    // w0 refreshes through the second edge (its SBC moved it, say): the
    // dialog is continued there although the source is at the cap.
    let (mut w0_moved, _) = watcher(&cluster, "w0", "127.0.0.1", second.sip()).await;
    let refreshed = w0_moved.resubscribe(&mut moved, &w0_token, 300).await;
    assert_eq!(refreshed.status(), 200, "{refreshed:?}");
    assert!(
        w0_moved.next_notify(Duration::from_secs(5)).await.is_some(),
        "the second edge sends the continued dialog's NOTIFY"
    );

    assert_eq!(dialogs_held(metrics_port).await, 2);

    // The second edge holds two dialogs of 127.0.0.1: w1 ending its own
    // leaves one, still the cap, so a new SUBSCRIBE is refused.
    assert_eq!(w1.resubscribe(&mut held, &w1_token, 0).await.status(), 200);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while dialogs_held(metrics_port).await != 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "w1's dialog did not end"
        );
        // Answers the final NOTIFY, so the dialog can end.
        let _ = w1.next_notify(Duration::from_millis(100)).await;
    }
    let (mut w2, w2_token) = watcher(&cluster, "w2", "127.0.0.1", second.sip()).await;
    let (refused, _) = w2.subscribe(WATCHED, &w2_token, 300).await;
    assert_eq!(refused.status(), 503, "{refused:?}");

    // Once the continued dialog ends too, there is room.
    assert_eq!(
        w0_moved
            .resubscribe(&mut moved, &w0_token, 0)
            .await
            .status(),
        200
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let admitted = loop {
        let _ = w0_moved.next_notify(Duration::from_millis(100)).await;
        let (answer, _) = w2.subscribe(WATCHED, &w2_token, 300).await;
        if answer.status() == 200 || tokio::time::Instant::now() > deadline {
            break answer;
        }
    };
    assert_eq!(admitted.status(), 200, "{admitted:?}");
}
