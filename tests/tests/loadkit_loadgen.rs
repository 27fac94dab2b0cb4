//! `loadgen`, the built binary, in small runs against the real servers: the
//! fan-out and office profiles against `presence-node` with the harness's
//! tokens, `loadgen tokens` minting the tokens and JWKS a node is started
//! with, and a fan-out across two edges of a Redis-backed cluster. Each run
//! must exit 0 and its `--json` report must show no check violation and no
//! failed request. No timing is asserted: the figures are for people.

use std::path::Path;
use std::process::Command;

use cluster_tests::cluster::{Cluster, Node, Tokens};
use cluster_tests::free_port;
use cluster_tests::process::{binary, wait_for_tcp, Process};
use serde_json::Value;

/// Writes an injection file with `count` users of `tokens`, named like `loadgen`'s.
fn users_csv(dir: &Path, tokens: &Tokens, prefix: &str, count: usize) -> String {
    let mut lines = String::from("SEQUENTIAL\n");
    for i in 1..=count {
        let user = format!("{prefix}{i:04}");
        let token = tokens.token(&format!("{user}@example.com"));
        lines.push_str(&format!("{user};example.com;{token}\n"));
    }
    let path = dir.join(format!("{prefix}.csv"));
    std::fs::write(&path, lines).expect("writing the injection file");
    path.display().to_string()
}

/// Runs `loadgen` with `args` and `--json`, and returns its report after checking that
/// it passed.
fn loadgen(args: &[String]) -> Value {
    let output = Command::new(binary("loadgen"))
        .args(args)
        .arg("--json")
        .output()
        .expect("running loadgen");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "loadgen {args:?} exited with {:?}:\n{stderr}\n{stdout}",
        output.status.code()
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("loadgen printed no JSON report ({e}):\n{stdout}\n{stderr}"));
    assert_eq!(report["passed"], true, "{stderr}");
    assert_eq!(report["checks"]["passed"], true, "{stderr}");
    assert_eq!(
        report["checks"]["violations"].as_object().map(|v| v.len()),
        Some(0),
        "violations: {stderr}"
    );
    assert_eq!(report["failed_requests"], 0, "{stderr}");
    eprint!("{stderr}");
    report
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| s.to_string()).collect()
}

/// A paced fan-out run (100 ms between changes).
fn fanout_args(target: &str, tokens: &str, watchers: usize, changes: u64) -> Vec<String> {
    let mut args = burst_args(target, tokens, watchers, changes);
    args.retain(|a| a != "--burst");
    args.extend(strings(&["--pace-ms", "100"]));
    args
}

/// A fan-out run publishing each change as soon as the previous one is answered.
fn burst_args(target: &str, tokens: &str, watchers: usize, changes: u64) -> Vec<String> {
    strings(&[
        "fanout",
        "--target",
        target,
        "--tokens",
        tokens,
        "--watchers",
        &watchers.to_string(),
        "--changes",
        &changes.to_string(),
        "--burst",
        "--sockets",
        "2",
        "--settle",
        "20s",
    ])
}

fn assert_fanout(report: &Value, watchers: u64, changes: u64) {
    assert_eq!(report["checks"]["dialogs"], watchers);
    assert_eq!(report["delivery"]["changes"], changes);
    assert_eq!(
        report["delivery"]["complete"], changes,
        "every change reached every watcher"
    );
    // Initial state, every change at least once coalesced, and the terminating NOTIFY.
    let notifies = report["notify"]["received"].as_u64().unwrap_or_default();
    assert!(notifies >= watchers * 3, "{notifies} NOTIFYs");
}

#[test]
fn loadgen_fanout_and_office_against_presence_node() {
    let node = Node::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    let target = node.sip().to_string();

    let csv = users_csv(dir.path(), &node.tokens, "fan", 51);
    let report = loadgen(&fanout_args(&target, &csv, 50, 5));
    assert_fanout(&report, 50, 5);

    let burst = loadgen(&burst_args(&target, &csv, 20, 5));
    assert_eq!(burst["delivery"]["changes"], 5);

    let csv = users_csv(dir.path(), &node.tokens, "office", 20);
    let report = loadgen(&strings(&[
        "office",
        "--target",
        &target,
        "--tokens",
        &csv,
        "--users",
        "20",
        "--duration",
        "4s",
        "--buddies",
        "3..8",
        "--publish-interval",
        "1s",
        // Short intervals (the node allows 1 s) so refreshes happen within the run.
        "--register-expires",
        "4",
        "--publish-expires",
        "4",
        "--subscribe-expires",
        "6",
        "--sockets",
        "2",
        "--settle",
        "20s",
    ]));
    let requests = &report["requests"];
    for method in ["REGISTER", "PUBLISH", "SUBSCRIBE"] {
        assert!(
            requests[method]["sent"].as_u64().unwrap_or_default() > 0,
            "{method} sent"
        );
    }
    // Registrations were refreshed: more than one REGISTER and one removal per user.
    assert!(requests["REGISTER"]["sent"].as_u64().unwrap_or_default() > 40);
}

#[test]
fn loadgen_tokens_are_accepted_by_a_node_started_with_its_jwks() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let csv = dir.path().join("users.csv");
    let jwks = dir.path().join("jwks.json");
    let key = dir.path().join("key.pem");
    let minted = Command::new(binary("loadgen"))
        .args(["tokens", "--users", "11", "--csv"])
        .arg(&csv)
        .arg("--jwks")
        .arg(&jwks)
        .arg("--key")
        .arg(&key)
        .output()
        .expect("running loadgen tokens");
    assert!(
        minted.status.success(),
        "{}",
        String::from_utf8_lossy(&minted.stderr)
    );
    // The flags to start the server with, printed on stdout.
    let flags: Vec<String> = String::from_utf8_lossy(&minted.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(flags.first().map(String::as_str), Some("--auth-jwks-file"));
    let port = free_port();
    let mut args = strings(&[
        "--udp",
        &format!("127.0.0.1:{port}"),
        "--tcp",
        &format!("127.0.0.1:{port}"),
        "--presence-listen",
        &format!("127.0.0.1:{}", free_port()),
        "--registrar-listen",
        &format!("127.0.0.1:{}", free_port()),
    ]);
    args.extend(flags);
    let _node = Process::spawn("presence-node", "presence-node", &args, &[]);
    wait_for_tcp(port, std::time::Duration::from_secs(60));
    let report = loadgen(&fanout_args(
        &format!("127.0.0.1:{port}"),
        &csv.display().to_string(),
        10,
        2,
    ));
    assert_fanout(&report, 10, 2);
}

#[test]
fn loadgen_fanout_across_two_edges_of_a_cluster() {
    let cluster = Cluster::start(2);
    let dir = tempfile::tempdir().expect("temporary directory");
    let csv = users_csv(dir.path(), &cluster.tokens, "edge", 31);
    // Watchers on edge 1, the publisher on edge 0: every change crosses Redis.
    let mut args = fanout_args(&cluster.edge(1).to_string(), &csv, 30, 5);
    args.extend(strings(&[
        "--publisher-target",
        &cluster.edge(0).to_string(),
    ]));
    let report = loadgen(&args);
    assert_fanout(&report, 30, 5);
}
