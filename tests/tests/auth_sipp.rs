//! A phone that only speaks Digest, played by sipp: `tests/sipp/digest.xml`
//! is challenged on every REGISTER and PUBLISH and answers with sipp's own
//! RFC 2617 implementation (MD5, qop=auth) — an independent client checking
//! the edge's challenges, over UDP and TCP. sipp's exit status is 0 only when
//! every call completed.
//!
//! sipp puts the server's address, not the Request-URI, in the Digest `uri`;
//! the edge refuses that by default, so this edge allows it
//! (`--auth-digest-allow-uri-mismatch`), as an operator testing with sipp
//! would.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use cluster_tests::cluster::Cluster;
use md5::{Digest, Md5};

const CALLS: usize = 10;

fn scenario() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("sipp/digest.xml")
}

/// The user sipp plays over `transport`, and its password.
fn user(transport: &str) -> (String, String) {
    (
        format!("digest-{transport}"),
        format!("password-of-{transport}"),
    )
}

fn run_sipp(cluster: &Cluster, edge: usize, transport: &str, dir: &Path) {
    let (user, password) = user(transport);
    let output = Command::new("sipp")
        .current_dir(dir)
        .args(["-sf", &scenario().display().to_string()])
        .args(["-s", &user, "-au", &user, "-ap", &password])
        .args(["-t", transport, "-i", "127.0.0.1", "-p", "0"])
        .args(["-m", &CALLS.to_string(), "-r", "10", "-l", "10"])
        .args([
            "-timeout",
            "60s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .arg(cluster.edge(edge).to_string())
        .output()
        .expect("sipp (Debian package sip-tester) must be installed");
    let errors = std::fs::read_dir(dir)
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
fn sipp_answers_digest_challenges_over_udp_and_tcp() {
    let dir = tempfile::tempdir().expect("temporary directory");
    // MD5 HA1s only, as a legacy credential store would hold them.
    let ha1_path = dir.path().join("ha1");
    let mut ha1_file = std::fs::File::create(&ha1_path).expect("credentials file");
    for transport in ["u1", "t1"] {
        let (user, password) = user(transport);
        let ha1 = hex::encode(Md5::digest(
            format!("{user}:example.com:{password}").as_bytes(),
        ));
        writeln!(ha1_file, "{user}:example.com:{ha1}").expect("writing");
    }
    drop(ha1_file);
    let mut cluster = Cluster::start(0);
    let args: Vec<String> = [
        "--auth-mode",
        "digest",
        "--auth-digest-ha1-file",
        &ha1_path.display().to_string(),
        "--auth-digest-realm",
        "example.com",
        "--auth-digest-algorithms",
        "MD5",
        "--auth-digest-allow-uri-mismatch",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let edge = cluster.add_edge_with_auth("edge-digest-sipp", &args);
    run_sipp(&cluster, edge, "u1", dir.path());
    run_sipp(&cluster, edge, "t1", dir.path());
}
