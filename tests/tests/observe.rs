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
    expect("presence_change_to_notify_seconds_count", 2.0);
    expect("sip_dialogs_taken_over_total", 0.0);
    expect(
        "grpc_server_duration_seconds_count{method=\"/presence.v1.Presence/GetPresence\",code=\"ok\"}",
        1.0,
    );
    expect("expiry_removed_total{kind=\"publication\"}", 0.0);
    // Counted every 10 s: the series exist from the start.
    assert!(
        sample(&text, "scheduled_items{kind=\"subscription\"}").is_some(),
        "{text}"
    );
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
    // The change feed came back (and says so).
    wait_for(
        metrics_port,
        "/metrics",
        Duration::from_secs(20),
        |_, text| sample(text, "redis_feed_reconnects_total").is_some_and(|n| n >= 1.0),
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

/// Spans received by the in-process OTLP collector: (service name, span).
type Received =
    std::sync::Arc<std::sync::Mutex<Vec<(String, opentelemetry_proto::tonic::trace::v1::Span)>>>;

/// An OTLP/gRPC trace collector, as an operator's would be.
struct Collector {
    received: Received,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Collector
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        let mut received = self.received.lock().expect("collector lock");
        for resource_spans in request.into_inner().resource_spans {
            let service = resource_spans
                .resource
                .iter()
                .flat_map(|resource| &resource.attributes)
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| attribute.value.as_ref())
                .and_then(|value| match &value.value {
                    Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(name),
                    ) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource_spans.scope_spans {
                for span in scope.spans {
                    received.push((service.clone(), span));
                }
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

/// One PUBLISH is one trace: the edge's span, the presence service's span
/// as its child across gRPC, and — linked to it through the announcement on
/// Redis — the NOTIFY another edge sends for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_is_one_trace_from_the_edge_through_presence_to_the_notify() {
    use cluster_tests::process::{wait_for_tcp, Process};
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;

    let received: Received = Default::default();
    let collector_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("collector port");
    let collector_addr = collector_listener.local_addr().expect("collector address");
    let collector = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector {
                received: received.clone(),
            }))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(
                collector_listener,
            )),
    );
    let otel = |name: &str| {
        vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".to_string(),
                format!("http://{collector_addr}"),
            ),
            ("OTEL_SERVICE_NAME".to_string(), name.to_string()),
            ("OTEL_BSP_SCHEDULE_DELAY".to_string(), "100".to_string()),
        ]
    };

    let redis = store::testing::RedisServer::start().expect("redis-server");
    let tokens = cluster_tests::cluster::Tokens::new();
    let mut processes = Vec::new();
    let mut grpc_ports = Vec::new();
    for service in ["presence", "registrar"] {
        let port = free_port();
        let args = vec![
            "--listen".to_string(),
            format!("127.0.0.1:{port}"),
            "--redis-url".into(),
            redis.url(),
        ];
        processes.push(Process::spawn(service, service, &args, &otel(service)));
        wait_for_tcp(port, Duration::from_secs(60));
        grpc_ports.push(port);
    }
    let mut edges = Vec::new();
    for name in ["edge-a", "edge-b"] {
        let port = free_port();
        let mut args = vec![
            "--udp".to_string(),
            format!("127.0.0.1:{port}"),
            "--tcp".into(),
            format!("127.0.0.1:{port}"),
            "--edge-id".into(),
            name.into(),
            "--presence-url".into(),
            format!("http://127.0.0.1:{}", grpc_ports[0]),
            "--registrar-url".into(),
            format!("http://127.0.0.1:{}", grpc_ports[1]),
            "--redis-url".into(),
            redis.url(),
        ];
        args.extend(tokens.edge_args());
        processes.push(Process::spawn(name, "edge", &args, &otel(name)));
        wait_for_tcp(port, Duration::from_secs(60));
        edges.push(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }

    let alice_token = tokens.token("alice@example.com");
    let bob_token = tokens.token("bob@example.com");
    let mut bob = Ua::udp("bob@example.com", edges[1]).await;
    let (subscribed, _dialog) = bob.subscribe("alice@example.com", &bob_token, 300).await;
    assert_eq!(subscribed.status(), 200);
    assert!(bob.next_notify(WAIT).await.is_some(), "initial NOTIFY");
    let mut alice = Ua::udp("alice@example.com", edges[0]).await;
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "traced")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    assert!(
        bob.next_notify(WAIT).await.is_some(),
        "NOTIFY after PUBLISH"
    );

    // Find the three spans and their relations, waiting for the exports.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (publish, server, notify) = loop {
        let found = {
            let spans = received.lock().expect("collector lock");
            let publish = spans
                .iter()
                .find(|(service, span)| service == "edge-a" && span.name == "PUBLISH")
                .map(|(_, span)| span.clone());
            let server = publish.as_ref().and_then(|publish| {
                spans
                    .iter()
                    .find(|(service, span)| {
                        service == "presence"
                            && span.name == "/presence.v1.Presence/Publish"
                            && span.trace_id == publish.trace_id
                    })
                    .map(|(_, span)| span.clone())
            });
            let notify = server.as_ref().and_then(|server| {
                spans
                    .iter()
                    .find(|(service, span)| {
                        service == "edge-b"
                            && span.name == "NOTIFY"
                            && span.links.iter().any(|link| {
                                link.trace_id == server.trace_id && link.span_id == server.span_id
                            })
                    })
                    .map(|(_, span)| span.clone())
            });
            match (publish, server, notify) {
                (Some(p), Some(s), Some(n)) => Some((p, s, n)),
                _ => None,
            }
        };
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "spans never arrived; received: {:?}",
            received
                .lock()
                .expect("collector lock")
                .iter()
                .map(|(service, span)| format!("{service}:{}", span.name))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(
        server.parent_span_id, publish.span_id,
        "the presence service's span is the PUBLISH span's child"
    );
    assert_ne!(
        notify.trace_id, publish.trace_id,
        "the NOTIFY has a trace of its own"
    );
    collector.abort();
}

/// Rate limiting coalesces changes, and the metrics account for every one:
/// each change a dialog was offered is either sent on its own or counted
/// as coalesced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coalesced_changes_are_counted() {
    let metrics_port = free_port();
    let node = Node::start_with(|_| {
        vec![
            "--metrics-listen".into(),
            format!("127.0.0.1:{metrics_port}"),
            "--notify-min-interval-ms".into(),
            "1500".into(),
        ]
    });
    let alice_token = node.tokens.token("alice@example.com");
    let bob_token = node.tokens.token("bob@example.com");
    let mut bob = Ua::udp("bob@example.com", node.sip()).await;
    let (subscribed, _dialog) = bob.subscribe("alice@example.com", &bob_token, 300).await;
    assert_eq!(subscribed.status(), 200);
    assert!(bob.next_notify(WAIT).await.is_some(), "initial NOTIFY");
    let mut alice = Ua::udp("alice@example.com", node.sip()).await;
    let changes = 5;
    for n in 1..=changes {
        let published = alice
            .publish(
                &alice_token,
                None,
                Some(&pidf("alice@example.com", "open", &format!("change {n}"))),
                600,
            )
            .await;
        assert_eq!(published.status(), 200);
    }
    // The last change always reaches the watcher.
    let deadline = Instant::now() + WAIT * 2;
    loop {
        let notify = bob.next_notify(WAIT).await.expect("a NOTIFY");
        if cluster_tests::ua::body_text(&notify).contains(&format!("change {changes}")) {
            break;
        }
        assert!(Instant::now() < deadline, "the last change never arrived");
    }
    wait_for(metrics_port, "/metrics", WAIT, |_, text| {
        let delivered = sample(text, "sip_notifies_total{result=\"delivered\"}").unwrap_or(0.0);
        let coalesced = sample(text, "sip_notifies_coalesced_total").unwrap_or(0.0);
        // The initial NOTIFY was no change.
        coalesced >= 1.0 && delivered - 1.0 + coalesced == f64::from(changes)
    })
    .await;
}
