//! TLS inside the cluster. To Redis (`rediss://`), as managed Redis
//! services require: a real redis-server serving TLS with a certificate of
//! a private CA, trusted through `--redis-ca-file`. Between edges and
//! services: gRPC over mutual TLS, so that only holders of the cluster's
//! client certificates reach the services at all.

use std::time::Duration;

use cluster_tests::cluster::Tokens;
use cluster_tests::free_port;
use cluster_tests::process::{wait_for_tcp, Process};
use cluster_tests::ua::Ua;
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_reach_the_services_over_mutual_tls_and_nothing_else_does() {
    let pki = TestPki::new();
    let (client_cert, client_key) = pki.client_files();
    let path = |p: &std::path::Path| p.display().to_string();
    let redis = store::testing::RedisServer::start().expect("redis-server");
    let tokens = Tokens::new();
    let server_tls = [
        "--grpc-tls-cert-file".to_string(),
        path(&pki.server_cert),
        "--grpc-tls-key-file".into(),
        path(&pki.server_key),
        "--grpc-client-ca-file".into(),
        path(&pki.ca),
    ];
    let mut services = Vec::new();
    let mut ports = Vec::new();
    for service in ["presence", "registrar"] {
        let port = free_port();
        let mut args = vec![
            "--listen".to_string(),
            format!("127.0.0.1:{port}"),
            "--redis-url".into(),
            redis.url(),
        ];
        args.extend(server_tls.iter().cloned());
        services.push(Process::spawn(service, service, &args, &[]));
        wait_for_tcp(port, Duration::from_secs(60));
        ports.push(port);
    }
    let sip_port = free_port();
    let mut edge_args = vec![
        "--udp".to_string(),
        format!("127.0.0.1:{sip_port}"),
        "--tcp".into(),
        format!("127.0.0.1:{sip_port}"),
        "--presence-url".into(),
        format!("https://localhost:{}", ports[0]),
        "--registrar-url".into(),
        format!("https://localhost:{}", ports[1]),
        "--redis-url".into(),
        redis.url(),
        "--grpc-ca-file".into(),
        path(&pki.ca),
        "--grpc-cert-file".into(),
        path(&client_cert),
        "--grpc-key-file".into(),
        path(&client_key),
    ];
    edge_args.extend(tokens.edge_args());
    let _edge = Process::spawn("edge-tls", "edge", &edge_args, &[]);
    wait_for_tcp(sip_port, Duration::from_secs(60));

    // A REGISTER crosses the edge's mutual-TLS connection to the registrar.
    let token = tokens.token("alice@example.com");
    let edge = std::net::SocketAddr::from(([127, 0, 0, 1], sip_port));
    let mut alice = Ua::udp("alice@example.com", edge).await;
    assert_eq!(alice.register(Some(&token), 600).await.status(), 200);

    // Plaintext gRPC gets nowhere.
    let plaintext = PresenceClient::connect(format!("http://127.0.0.1:{}", ports[0])).await;
    let refused = match plaintext {
        Ok(mut client) => client
            .get_presence(GetPresenceRequest {
                presentity: "alice@example.com".into(),
            })
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(refused, "a plaintext client was served");

    // TLS without a client certificate: the handshake is refused.
    let anonymous =
        tonic::transport::Endpoint::from_shared(format!("https://localhost:{}", ports[0]))
            .expect("endpoint")
            .tls_config(
                tonic::transport::ClientTlsConfig::new()
                    .ca_certificate(tonic::transport::Certificate::from_pem(
                        std::fs::read(&pki.ca).expect("CA"),
                    ))
                    .domain_name("localhost"),
            )
            .expect("TLS settings");
    let refused = match anonymous.connect().await {
        Ok(channel) => PresenceClient::new(channel)
            .get_presence(GetPresenceRequest {
                presentity: "alice@example.com".into(),
            })
            .await
            .is_err(),
        Err(_) => true,
    };
    assert!(refused, "a client without a certificate was served");
}
