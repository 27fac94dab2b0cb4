//! What an operator sees: the metrics endpoint (`--metrics-listen`) counts
//! real SIP and gRPC traffic, and readiness follows the state backend.
//! (Health going NOT_SERVING while Redis is frozen, and back, is checked
//! on containers in `containers_redis`.)

use std::time::{Duration, Instant};

use cluster_tests::cluster::{Cluster, Node};
use cluster_tests::free_port;
use cluster_tests::ua::{pidf, Ua, WAIT};
use rpc::presence::v1::presence_client::PresenceClient;
use rpc::presence::v1::GetPresenceRequest;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET path` on the metrics endpoint: (status code, body).
async fn http_get(port: u16, path: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connecting to the metrics endpoint");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream
        .write_all(request.as_bytes())
        .await
        .expect("sending the request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .await
        .expect("reading the response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .expect("an HTTP status line");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of the sample `series` (name with its labels, exactly as
/// written) in an OpenMetrics text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok())?
    })
}

/// Polls `path` until `check` accepts the body.
async fn wait_for(port: u16, path: &str, timeout: Duration, check: impl Fn(u16, &str) -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        let (status, body) = http_get(port, path).await;
        if check(status, &body) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{path} never passed the check within {timeout:?}; last answer {status}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_sip_and_grpc_traffic_of_a_node() {
    let metrics_port = free_port();
    let node = Node::start_with(|_| {
        vec![
            "--metrics-listen".into(),
            format!("127.0.0.1:{metrics_port}"),
        ]
    });
    let (status, _) = http_get(metrics_port, "/livez").await;
    assert_eq!(status, 200);
    let (status, ready) = http_get(metrics_port, "/readyz").await;
    assert_eq!(status, 200, "{ready}");

    let alice_token = node.tokens.token("alice@example.com");
    let bob_token = node.tokens.token("bob@example.com");
    let mut alice = Ua::udp("alice@example.com", node.sip()).await;
    assert_eq!(alice.register(Some(&alice_token), 600).await.status(), 200);
    // No credentials: challenged, counted as such.
    assert_eq!(alice.register(None, 600).await.status(), 401);
    let mut bob = Ua::udp("bob@example.com", node.sip()).await;
    let (subscribed, _dialog) = bob.subscribe("alice@example.com", &bob_token, 300).await;
    assert_eq!(subscribed.status(), 200);
    assert!(bob.next_notify(WAIT).await.is_some(), "initial NOTIFY");
    for note in ["one", "two"] {
        let published = alice
            .publish(
                &alice_token,
                None,
                Some(&pidf("alice@example.com", "open", note)),
                600,
            )
            .await;
        assert_eq!(published.status(), 200);
        assert!(bob.next_notify(WAIT).await.is_some(), "NOTIFY after {note}");
    }
    let mut presence = PresenceClient::connect(node.presence_url())
        .await
        .expect("presence gRPC");
    presence
        .get_presence(GetPresenceRequest {
            presentity: "alice@example.com".into(),
        })
        .await
        .expect("GetPresence");

    // A NOTIFY's 200 OK is counted when it arrives: wait for the last one.
    wait_for(metrics_port, "/metrics", WAIT, |_, text| {
        sample(text, "sip_notifies_total{result=\"delivered\"}") == Some(3.0)
    })
    .await;
    let (status, text) = http_get(metrics_port, "/metrics").await;
    assert_eq!(status, 200);
    let expect = |series: &str, value: f64| {
        assert_eq!(sample(&text, series), Some(value), "{series} in:\n{text}");
    };
    expect("sip_requests_total{method=\"REGISTER\"}", 2.0);
    expect("sip_requests_total{method=\"PUBLISH\"}", 2.0);
    expect("sip_requests_total{method=\"SUBSCRIBE\"}", 1.0);
    expect("sip_responses_total{method=\"REGISTER\",code=\"200\"}", 1.0);
    expect("sip_responses_total{method=\"REGISTER\",code=\"401\"}", 1.0);
    expect("sip_responses_total{method=\"PUBLISH\",code=\"200\"}", 2.0);
    expect(
        "sip_request_duration_seconds_count{method=\"PUBLISH\"}",
        2.0,
    );
    expect(
        "sip_auth_total{scheme=\"bearer\",outcome=\"accepted\"}",
        4.0,
    );
    expect(
        "sip_auth_total{scheme=\"none\",outcome=\"challenged\"}",
        1.0,
    );
    expect("sip_dialogs", 1.0);
    expect("udp_receive_drops_total", 0.0);
    expect("presence_fanout_dialogs_count", 2.0);
    expect(
        "grpc_server_duration_seconds_count{method=\"/presence.v1.Presence/GetPresence\",code=\"ok\"}",
        1.0,
    );
    expect("expiry_removed_total{kind=\"publication\"}", 0.0);
    expect("expiry_oldest_due_age_seconds{kind=\"binding\"}", 0.0);
    assert!(
        text.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_follows_redis_and_the_edge_counts_service_calls() {
    let mut cluster = Cluster::start(1);
    // A second edge with its metrics endpoint (the cluster's own edges have none).
    let metrics_port = free_port();
    let sip_port = free_port();
    let mut edge = cluster_tests::process::Process::spawn(
        "edge-metrics",
        "edge",
        &[
            vec![
                "--udp".to_string(),
                format!("127.0.0.1:{sip_port}"),
                "--tcp".into(),
                format!("127.0.0.1:{sip_port}"),
                "--edge-id".into(),
                "edge-metrics".into(),
                "--presence-url".into(),
                cluster.presence_url(),
                "--registrar-url".into(),
                cluster.registrar_url(),
                "--redis-url".into(),
                cluster.redis.url(),
                "--metrics-listen".into(),
                format!("127.0.0.1:{metrics_port}"),
            ],
            cluster.tokens.edge_args(),
        ]
        .concat(),
        &[],
    );
    cluster_tests::process::wait_for_tcp(sip_port, Duration::from_secs(30));
    let edge_addr = std::net::SocketAddr::from(([127, 0, 0, 1], sip_port));

    let token = cluster.tokens.token("carol@example.com");
    let mut carol = Ua::udp("carol@example.com", edge_addr).await;
    assert_eq!(carol.register(Some(&token), 600).await.status(), 200);
    let (_, text) = http_get(metrics_port, "/metrics").await;
    assert_eq!(
        sample(
            &text,
            "grpc_client_duration_seconds_count{rpc=\"register\",code=\"ok\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "redis_feed_reconnects_total"),
        Some(0.0),
        "{text}"
    );
    wait_for(metrics_port, "/readyz", WAIT, |status, _| status == 200).await;

    cluster.redis.stop().expect("stopping Redis");
    wait_for(
        metrics_port,
        "/readyz",
        Duration::from_secs(20),
        |status, body| status == 503 && body.contains("backend"),
    )
    .await;
    cluster.redis.restart().expect("restarting Redis");
    wait_for(
        metrics_port,
        "/readyz",
        Duration::from_secs(20),
        |status, _| status == 200,
    )
    .await;
    assert!(edge.is_running(), "the edge stays up while Redis is away");
}

/// In a rolling start Redis may come up after the services: they wait for
/// it (not ready meanwhile, saying why) instead of exiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_started_before_redis_waits_for_it() {
    let mut redis = store::testing::RedisServer::start().expect("redis-server");
    redis
        .stop()
        .expect("stopping Redis before the service starts");
    let metrics_port = free_port();
    let grpc_port = free_port();
    let mut presence = cluster_tests::process::Process::spawn(
        "presence-early",
        "presence",
        &[
            "--listen".to_string(),
            format!("127.0.0.1:{grpc_port}"),
            "--redis-url".into(),
            redis.url(),
            "--metrics-listen".into(),
            format!("127.0.0.1:{metrics_port}"),
        ],
        &[],
    );
    cluster_tests::process::wait_for_tcp(metrics_port, Duration::from_secs(30));
    wait_for(metrics_port, "/readyz", WAIT, |status, body| {
        status == 503 && body.contains("backend")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        presence.is_running(),
        "presence exited while Redis was away"
    );

    redis.restart().expect("starting Redis");
    cluster_tests::process::wait_for_tcp(grpc_port, Duration::from_secs(30));
    wait_for(
        metrics_port,
        "/readyz",
        Duration::from_secs(20),
        |status, _| status == 200,
    )
    .await;
}
