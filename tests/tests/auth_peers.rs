//! Trusted peers (RFC 3325 P-Asserted-Identity), per-network and
//! per-transport authentication modes, explicit no-authentication, and
//! start-up refusal of configurations that cannot work — through real edge
//! processes.

use std::io::Write as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::auth_support::{
    asserted, bearer, digest_challenges, ha1, publish, register, stored_subscriptions, subscribe,
    www_authenticate, Extra,
};
use cluster_tests::cluster::Cluster;
use cluster_tests::free_port;
use cluster_tests::process::binary;
use cluster_tests::ua::Ua;
use sip::HeaderName;
use tokio::task::block_in_place;

fn with(mut args: Vec<String>, extra: &[&str]) -> Vec<String> {
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn join(a: Extra, b: Extra) -> Extra {
    a.into_iter().chain(b).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asserted_identities_count_only_from_trusted_networks() {
    let mut cluster = block_in_place(|| Cluster::start(0));
    let tokens = cluster.tokens.edge_args();
    let trusting = block_in_place(|| {
        cluster.add_edge_with_auth(
            "edge-trusting",
            &with(tokens.clone(), &["--auth-trusted-peer", "127.0.0.0/8"]),
        )
    });
    let distrusting = block_in_place(|| {
        cluster.add_edge_with_auth(
            "edge-distrusting",
            &with(tokens, &["--auth-trusted-peer", "10.0.0.0/8,192.0.2.7"]),
        )
    });
    let bob_token = cluster.tokens.token("bob@example.com");

    // From a trusted address, P-Asserted-Identity is the identity.
    let mut proxy = Ua::udp("alice@example.com", cluster.edge(trusting)).await;
    let ok = register(
        &mut proxy,
        "alice@example.com",
        asserted("alice@example.com"),
    )
    .await;
    assert_eq!(ok.status(), 200, "REGISTER asserted by a trusted peer");
    let ok = publish(
        &mut proxy,
        "alice@example.com",
        asserted("alice@example.com"),
    )
    .await;
    assert_eq!(ok.status(), 200, "PUBLISH asserted by a trusted peer");
    // ... and the identity-binding rules hold for it too.
    let foreign = register(&mut proxy, "bob@example.com", asserted("alice@example.com")).await;
    assert_eq!(foreign.status(), 403, "asserted Alice registering Bob");
    let mut mallory = Ua::udp("mallory@example.com", cluster.edge(trusting)).await;
    let watched = subscribe(
        &mut mallory,
        "alice@example.com",
        asserted("bob@example.com"),
    )
    .await;
    assert!(
        (200..300).contains(&watched.status()),
        "{}",
        watched.status()
    );
    let stored = stored_subscriptions(&cluster.redis.url(), "alice@example.com").await;
    assert_eq!(
        stored,
        vec![(
            "bob@example.com".to_string(),
            "sip:mallory@example.com".to_string()
        )]
    );
    // Nothing asserted, or only a telephone number: the request's own
    // credentials decide.
    let none = register(&mut proxy, "alice@example.com", Vec::new()).await;
    assert_eq!(none.status(), 401, "trusted source without an assertion");
    let tel: Extra = vec![(HeaderName::PAssertedIdentity, "<tel:+15551234567>".into())];
    let tel_only = register(&mut proxy, "alice@example.com", tel).await;
    assert_eq!(tel_only.status(), 401, "only a tel: identity asserted");
    let tel_and_token: Extra = vec![
        (HeaderName::PAssertedIdentity, "<tel:+15551234567>".into()),
        (HeaderName::Authorization, format!("Bearer {bob_token}")),
    ];
    let by_token = register(&mut proxy, "bob@example.com", tel_and_token).await;
    assert_eq!(by_token.status(), 200, "tel: assertion, Bob's token");
    let garbled: Extra = vec![(
        HeaderName::PAssertedIdentity,
        "<sip:alice@example.com".into(),
    )];
    let garbled = register(&mut proxy, "alice@example.com", garbled).await;
    assert_eq!(garbled.status(), 400, "unparseable P-Asserted-Identity");

    // From anyone else it is ignored: no credentials is a challenge...
    let mut outsider = Ua::udp("alice@example.com", cluster.edge(distrusting)).await;
    let ignored = register(
        &mut outsider,
        "alice@example.com",
        asserted("alice@example.com"),
    )
    .await;
    assert_eq!(ignored.status(), 401, "assertion from an untrusted address");
    assert_eq!(
        www_authenticate(&ignored),
        ["Bearer realm=\"presence-test\", scope=\"sip:register\""]
    );
    let ignored = publish(
        &mut outsider,
        "alice@example.com",
        asserted("alice@example.com"),
    )
    .await;
    assert_eq!(
        ignored.status(),
        401,
        "PUBLISH asserted by an untrusted address"
    );
    // ... and with credentials, the credentials' identity counts.
    let bobs = register(
        &mut outsider,
        "bob@example.com",
        join(asserted("alice@example.com"), bearer(&bob_token)),
    )
    .await;
    assert_eq!(bobs.status(), 200, "Bob's token, Alice asserted: Bob");
    let not_alice = register(
        &mut outsider,
        "alice@example.com",
        join(asserted("alice@example.com"), bearer(&bob_token)),
    )
    .await;
    assert_eq!(
        not_alice.status(),
        403,
        "Bob's token cannot become Alice by assertion"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_follow_source_network_and_transport_and_no_auth_is_explicit() {
    let mut file = tempfile::NamedTempFile::new().expect("credentials file");
    writeln!(
        file,
        "alice:example.com:{}",
        ha1("MD5", "alice", "example.com", "pw")
    )
    .expect("write");
    file.flush().expect("flush");
    let mut cluster = block_in_place(|| Cluster::start(0));
    let rules = with(
        cluster.tokens.edge_args(),
        &[
            "--auth-mode",
            "bearer",
            "--auth-mode-for",
            "udp@127.0.0.0/8=digest",
            "--auth-mode-for",
            "tcp=deny",
            "--auth-digest-ha1-file",
            &file.path().display().to_string(),
            "--auth-digest-realm",
            "example.com",
        ],
    );
    let by_rules = block_in_place(|| cluster.add_edge_with_auth("edge-rules", &rules));
    let open = block_in_place(|| {
        cluster.add_edge_with_auth("edge-open", &["--insecure-no-auth".to_string()])
    });
    let alice_token = cluster.tokens.token("alice@example.com");

    // UDP from loopback: Digest only, so a token is not even looked at.
    let mut udp = Ua::udp("alice@example.com", cluster.edge(by_rules)).await;
    let challenged = register(&mut udp, "alice@example.com", bearer(&alice_token)).await;
    assert_eq!(
        challenged.status(),
        401,
        "token where only Digest is accepted"
    );
    // One Digest challenge, MD5 (the default algorithms), and no Bearer.
    let values = www_authenticate(&challenged);
    assert_eq!(values.len(), 1, "{values:?}");
    let digests = digest_challenges(&challenged);
    assert_eq!(digests.len(), 1, "{values:?}");
    assert_eq!(digests[0].algorithm, "MD5", "{values:?}");
    // TCP: nothing is accepted, whatever the credentials.
    let mut tcp = Ua::tcp("alice@example.com", cluster.edge(by_rules)).await;
    let denied = register(&mut tcp, "alice@example.com", bearer(&alice_token)).await;
    assert_eq!(denied.status(), 403, "TCP is denied");
    assert!(www_authenticate(&denied).is_empty());

    // No authentication: From is believed, identity binding still holds.
    let mut anyone = Ua::udp("alice@example.com", cluster.edge(open)).await;
    let ok = register(&mut anyone, "alice@example.com", Vec::new()).await;
    assert_eq!(ok.status(), 200, "REGISTER without authentication");
    let ok = publish(&mut anyone, "alice@example.com", Vec::new()).await;
    assert_eq!(ok.status(), 200, "PUBLISH without authentication");
    let foreign = register(&mut anyone, "bob@example.com", Vec::new()).await;
    assert_eq!(
        foreign.status(),
        403,
        "Alice registering Bob without authentication"
    );
}

/// Runs `edge` with `args` and returns its exit status and standard error;
/// fails if it is still running after a minute.
fn run_edge(args: &[String]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(binary("edge"))
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting edge");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for edge") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("edge with {args:?} kept running");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        std::io::Read::read_to_string(&mut pipe, &mut stderr).expect("reading stderr");
    }
    (status, stderr)
}

#[test]
fn configurations_that_cannot_work_are_refused_at_start() {
    let redis = store::testing::RedisServer::start().expect("redis-server");
    let port = free_port();
    let base: Vec<String> = vec![
        "--udp".into(),
        format!("127.0.0.1:{port}"),
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--redis-url".into(),
        redis.url(),
    ];
    let cases: [(&[&str], &str); 5] = [
        (&["--auth-mode", "digest"], "--auth-digest-ha1-file"),
        (
            &["--auth-mode", "bearer"],
            "no token provider is configured",
        ),
        (&["--auth-mode", "digest,deny"], "deny"),
        (
            &["--auth-mode", "deny", "--auth-mode-for", "sctp=bearer"],
            "sctp=bearer",
        ),
        (
            &["--auth-mode", "deny", "--auth-trusted-peer", "10.0.0.0/40"],
            "--auth-trusted-peer",
        ),
    ];
    for (flags, expected) in cases {
        let (status, stderr) = run_edge(&with(base.clone(), flags));
        assert!(!status.success(), "edge started with {flags:?}");
        assert!(
            stderr.contains(expected),
            "edge with {flags:?} should mention {expected:?}:\n{stderr}"
        );
    }
}
