//! TLS to Redis (`rediss://`), as managed Redis services require: a real
//! redis-server serving TLS with a certificate of a private CA, trusted
//! through `--redis-ca-file`.

use std::time::Duration;

use cluster_tests::free_port;
use cluster_tests::process::{wait_for_tcp, Process};
use rpc::presence::v1::presence_client::PresenceClient;
use rpc::presence::v1::GetPresenceRequest;

use crate::transport_support::TestPki;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_reach_redis_over_tls_with_a_private_ca() {
    let pki = TestPki::new();
    let tls_port = free_port();
    let path = |p: &std::path::Path| p.display().to_string();
    let redis = store::testing::RedisServer::start_with_args(&[
        "--tls-port",
        &tls_port.to_string(),
        "--tls-cert-file",
        &path(&pki.server_cert),
        "--tls-key-file",
        &path(&pki.server_key),
        "--tls-ca-cert-file",
        &path(&pki.ca),
        "--tls-auth-clients",
        "no",
    ])
    .expect("redis-server with TLS");
    let grpc_port = free_port();
    let _presence = Process::spawn(
        "presence-tls",
        "presence",
        &[
            "--listen".to_string(),
            format!("127.0.0.1:{grpc_port}"),
            "--redis-url".into(),
            format!("rediss://127.0.0.1:{tls_port}"),
            "--redis-ca-file".into(),
            path(&pki.ca),
        ],
        &[],
    );
    wait_for_tcp(grpc_port, Duration::from_secs(60));
    let mut client = PresenceClient::connect(format!("http://127.0.0.1:{grpc_port}"))
        .await
        .expect("presence gRPC");
    let state = client
        .get_presence(GetPresenceRequest {
            presentity: "alice@example.com".into(),
        })
        .await
        .expect("GetPresence through a TLS connection to Redis")
        .into_inner();
    assert_eq!(state.version, 0, "nothing published yet");
    // The service's connections are on the TLS port, none on the plain one
    // but this check's own.
    let clients = redis.command("CLIENT LIST").expect("CLIENT LIST");
    let tls_clients = clients
        .lines()
        .filter(|line| line.contains(&format!("laddr=127.0.0.1:{tls_port}")))
        .count();
    assert!(tls_clients >= 1, "no client over TLS:\n{clients}");
    let plain_clients = clients
        .lines()
        .filter(|line| line.contains(&format!("laddr=127.0.0.1:{} ", redis.port())))
        .count();
    assert_eq!(
        plain_clients, 1,
        "only this check is on the plain port:\n{clients}"
    );
}
