//! sipp, the SIP load tool operators use, runs the presence client scenario
//! of `tests/sipp/presence.xml` against the cluster over UDP and TCP, with
//! bearer tokens injected from a CSV file. sipp's exit status is 0 only when
//! every call completed, and the scenario checks the NOTIFY contents.

use std::path::PathBuf;
use std::process::Command;

use cluster_tests::cluster::Cluster;

const CALLS: usize = 20;

fn scenario() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sipp/presence.xml")
}

fn run_sipp(cluster: &Cluster, transport: &str) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let csv = dir.path().join("users.csv");
    let mut lines = String::from("SEQUENTIAL\n");
    for i in 0..CALLS {
        let user = format!("sipp{transport}{i}");
        let token = cluster.tokens.token(&format!("{user}@example.com"));
        lines.push_str(&format!("{user};example.com;{token}\n"));
    }
    std::fs::write(&csv, lines).expect("writing the injection file");
    let output = Command::new("sipp")
        .current_dir(dir.path())
        .args(["-sf", &scenario().display().to_string()])
        .args(["-inf", &csv.display().to_string()])
        .args(["-t", transport, "-i", "127.0.0.1", "-p", "0"])
        .args(["-m", &CALLS.to_string(), "-r", "10", "-l", "10"])
        .args([
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .arg(cluster.edge(0).to_string())
        .output()
        .expect("sipp (Debian package sip-tester) must be installed");
    let errors = std::fs::read_dir(dir.path())
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with("_errors.log"))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default();
    assert!(
        output.status.success(),
        "sipp over {transport} failed ({:?}):\n{}\n{}\n{errors}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn sipp_presence_scenario_over_udp() {
    let cluster = Cluster::start(1);
    run_sipp(&cluster, "u1");
}

#[test]
fn sipp_presence_scenario_over_tcp() {
    let cluster = Cluster::start(1);
    run_sipp(&cluster, "t1");
}
