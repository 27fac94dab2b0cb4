//! Single-process mode: `presence-node` runs edge, presence and registrar
//! in one process on the in-memory backend — the README's first command.

use std::process::Command;
use std::time::Duration;

use cluster_tests::cluster::Node;
use cluster_tests::free_port;
use cluster_tests::process::{binary, wait_for_tcp, Process};
use cluster_tests::ua::{pidf, Ua, WAIT};
use rpc::presence::v1::presence_client::PresenceClient;
use rpc::presence::v1::GetPresenceRequest;
use sip::SubState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_serves_register_publish_subscribe_in_memory() {
    let node = Node::start();
    let alice_token = node.tokens.token("alice@example.com");
    let bob_token = node.tokens.token("bob@example.com");

    let mut alice = Ua::udp("alice@example.com", node.sip()).await;
    assert_eq!(alice.register(Some(&alice_token), 600).await.status(), 200);

    // Bob watches over TCP, Alice publishes over UDP: one process, both transports.
    let mut bob = Ua::tcp("bob@example.com", node.sip()).await;
    let (response, dialog) = bob.subscribe("alice@example.com", &bob_token, 120).await;
    assert_eq!(response.status(), 200);
    let mut dialog = dialog.expect("dialog");
    let initial = bob.next_notify(WAIT).await.expect("initial NOTIFY");
    // Registered and nothing published: open (registration-driven presence).
    assert!(String::from_utf8_lossy(initial.body()).contains("<basic>open</basic>"));

    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "in memory")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let changed = bob.next_notify(WAIT).await.expect("NOTIFY after PUBLISH");
    assert!(String::from_utf8_lossy(changed.body()).contains("in memory"));

    let mut presence = PresenceClient::connect(node.presence_url())
        .await
        .expect("presence gRPC");
    let state = presence
        .get_presence(GetPresenceRequest {
            presentity: "alice@example.com".into(),
        })
        .await
        .expect("GetPresence")
        .into_inner();
    assert_eq!(state.basic, rpc::presence::v1::Basic::Open as i32);

    assert_eq!(
        bob.resubscribe(&mut dialog, &bob_token, 0).await.status(),
        200
    );
    let last = bob.next_notify(WAIT).await.expect("final NOTIFY");
    let state = last
        .headers()
        .subscription_state()
        .expect("Subscription-State")
        .expect("present");
    assert_eq!(state.state, SubState::Terminated);
}

/// A newcomer runs the node with no token provider: it prints development
/// tokens (and writes them for sipp), and those tokens work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_tokens_printed_at_start_are_accepted() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let csv = dir.path().join("tokens.csv");
    let sip_port = free_port();
    let args = vec![
        "--udp".to_string(),
        format!("127.0.0.1:{sip_port}"),
        "--tcp".into(),
        format!("127.0.0.1:{sip_port}"),
        "--presence-listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--registrar-listen".into(),
        format!("127.0.0.1:{}", free_port()),
        "--dev-tokens-csv".into(),
        csv.display().to_string(),
    ];
    let _node = Process::spawn("presence-node", "presence-node", &args, &[]);
    wait_for_tcp(sip_port, Duration::from_secs(60));
    let text = std::fs::read_to_string(&csv).expect("token file written at start");
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("SEQUENTIAL"));
    let alice = lines.next().expect("a line for alice");
    let fields: Vec<&str> = alice.split(';').collect();
    assert_eq!(&fields[..2], &["alice", "example.com"]);

    let mut ua = Ua::udp(
        "alice@example.com",
        format!("127.0.0.1:{sip_port}").parse().expect("address"),
    )
    .await;
    assert_eq!(ua.register(None, 300).await.status(), 401);
    assert_eq!(ua.register(Some(fields[2]), 300).await.status(), 200);
}

#[test]
fn presence_node_help_documents_its_flags() {
    let output = Command::new(binary("presence-node"))
        .arg("--help")
        .output()
        .expect("running presence-node --help");
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--udp",
        "--tcp",
        "--redis-url",
        "--auth-jwks-file",
        "--dev-tokens-csv",
    ] {
        assert!(help.contains(flag), "--help lists {flag}");
    }
}
