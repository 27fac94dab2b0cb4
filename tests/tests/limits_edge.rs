//! The edge's request limits over real sockets: the per-identity and
//! per-source token buckets (503 with Retry-After), the source block list
//! (403), limits applied before token validation, and the metric counting
//! what they refused.

use std::net::{IpAddr, SocketAddr};

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
