//! The sipp side of the load kit (`bench/`), in small runs: every bench
//! scenario (`bench/sipp/*.xml`) at a low rate over UDP against
//! `presence-node` and a Redis-backed cluster with the harness's bearer
//! tokens, the no-auth variants against a node with `--insecure-no-auth`,
//! the SUBSCRIBE scenarios against a notifier that sends each NOTIFY before
//! its 200, and `bench/ladder.sh` end to end. sipp must exit 0 with every
//! call successful. No timing is asserted: the kit's figures are for people.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cluster_tests::cluster::{Cluster, Node, Tokens};
use cluster_tests::free_port;

const CALLS: usize = 20;
const RATE: usize = 20;
/// How long each call of the watcher scenario stays subscribed (seconds).
const HOLD_S: &str = "2";

/// Every scenario of the kit.
const SCENARIOS: [&str; 5] = [
    "register",
    "publish",
    "publish-cycle",
    "subscribe-cycle",
    "watcher",
];

fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../bench")
}

fn scenario_file(name: &str) -> PathBuf {
    bench_dir().join("sipp").join(format!("{name}.xml"))
}

/// An injection file of `CALLS` users with tokens of `tokens` (or `-`).
fn users_csv(dir: &Path, tokens: Option<&Tokens>, prefix: &str) -> PathBuf {
    let mut lines = String::from("SEQUENTIAL\n");
    for i in 0..CALLS {
        let user = format!("{prefix}{i}");
        let token = tokens
            .map(|t| t.token(&format!("{user}@example.com")))
            .unwrap_or_else(|| "-".into());
        lines.push_str(&format!("{user};example.com;{token}\n"));
    }
    let path = dir.join(format!("{prefix}.csv"));
    std::fs::write(&path, lines).expect("writing the injection file");
    path
}

/// Text of the files sipp left in `dir` whose name ends with `suffix`.
fn sipp_files(dir: &Path, suffix: &str) -> String {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// `SuccessfulCall(C)` of the last line of sipp's statistics file.
fn successful_calls(stat: &Path) -> usize {
    let text = std::fs::read_to_string(stat).expect("sipp's statistics file");
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split(';').collect();
    let last: Vec<&str> = lines
        .last()
        .expect("a statistics line")
        .split(';')
        .collect();
    let column = header
        .iter()
        .position(|h| *h == "SuccessfulCall(C)")
        .expect("SuccessfulCall(C) column");
    last[column].parse().expect("a number of calls")
}

/// Runs `scenario` (a file of bench/sipp) for `CALLS` calls at `RATE`/s over
/// UDP and asserts that sipp exited 0 with every call successful.
fn run_scenario(scenario: &Path, inf: &Path, target: SocketAddr) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let stat = dir.path().join("stat.csv");
    let output: Output = Command::new("sipp")
        .current_dir(dir.path())
        .args(["-sf", &scenario.display().to_string()])
        .args(["-inf", &inf.display().to_string()])
        .args(["-key", "hold_s", HOLD_S])
        .args(["-t", "u1", "-i", "127.0.0.1", "-p", "0"])
        .args(["-m", &CALLS.to_string(), "-r", &RATE.to_string()])
        .args(["-l", &(CALLS * 2).to_string()])
        .args([
            "-timeout",
            "90s",
            "-timeout_error",
            "-nostdin",
            "-trace_err",
        ])
        .args([
            "-trace_stat",
            "-stf",
            &stat.display().to_string(),
            "-fd",
            "1",
        ])
        .arg(target.to_string())
        .output()
        .expect("sipp (Debian package sip-tester) must be installed");
    let context = || {
        format!(
            "{} against {target}: exit {:?}\n{}\n{}\n{}",
            scenario.display(),
            output.status.code(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            sipp_files(dir.path(), "_errors.log")
        )
    };
    assert!(output.status.success(), "{}", context());
    assert_eq!(successful_calls(&stat), CALLS, "{}", context());
}

/// The no-auth variant of a scenario is the scenario without its
/// Authorization lines (what bench/sipp/make-noauth.sh writes).
#[test]
fn noauth_variants_are_the_scenarios_without_authorization() {
    for name in SCENARIOS {
        let source = std::fs::read_to_string(scenario_file(name)).expect("scenario");
        let variant =
            std::fs::read_to_string(scenario_file(&format!("{name}-noauth"))).expect("variant");
        assert!(
            source.contains("Authorization: Bearer [field2]"),
            "{name}.xml sends no bearer token"
        );
        let expected: Vec<&str> = source
            .lines()
            .filter(|l| l.trim() != "Authorization: Bearer [field2]")
            .collect();
        let actual: Vec<&str> = variant
            .lines()
            .filter(|l| !l.starts_with("<!-- Generated from "))
            .collect();
        assert_eq!(
            actual, expected,
            "{name}-noauth.xml is stale: run bench/sipp/make-noauth.sh"
        );
    }
}

#[test]
fn bench_scenarios_with_bearer_tokens_against_the_node() {
    let node = Node::start();
    let dir = tempfile::tempdir().expect("temporary directory");
    for name in SCENARIOS {
        let inf = users_csv(dir.path(), Some(&node.tokens), &format!("n{name}"));
        run_scenario(&scenario_file(name), &inf, node.sip());
    }
}

#[test]
fn bench_scenarios_with_bearer_tokens_against_a_cluster() {
    let cluster = Cluster::start(1);
    let dir = tempfile::tempdir().expect("temporary directory");
    for name in SCENARIOS {
        let inf = users_csv(dir.path(), Some(&cluster.tokens), &format!("c{name}"));
        run_scenario(&scenario_file(name), &inf, cluster.edge(0));
    }
}

#[test]
fn noauth_scenarios_against_a_node_without_authentication() {
    let node = Node::start_with(|_| vec!["--insecure-no-auth".into()]);
    let dir = tempfile::tempdir().expect("temporary directory");
    for name in SCENARIOS {
        let inf = users_csv(dir.path(), None, &format!("x{name}"));
        run_scenario(&scenario_file(&format!("{name}-noauth")), &inf, node.sip());
    }
}

/// A notifier may send the NOTIFY before the 200 of the SUBSCRIBE: the
/// SUBSCRIBE scenarios accept both orders (the servers under test send the
/// 200 first, so this order is checked against sipp playing the notifier).
#[test]
fn subscribe_scenarios_accept_the_notify_before_the_200() {
    for name in ["subscribe-cycle-noauth", "watcher-noauth"] {
        let dir = tempfile::tempdir().expect("temporary directory");
        let port = free_port();
        let mut notifier = Command::new("sipp")
            .current_dir(dir.path())
            .args([
                "-sf",
                &bench_dir()
                    .join("sipp/selftest/notify-first-uas.xml")
                    .display()
                    .to_string(),
            ])
            .args(["-t", "u1", "-i", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &CALLS.to_string(), "-timeout", "90s", "-nostdin"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sipp (Debian package sip-tester) must be installed");
        // sipp binds its port at once; give it a moment before calling.
        std::thread::sleep(std::time::Duration::from_millis(500));
        let inf = users_csv(dir.path(), None, "o");
        run_scenario(
            &scenario_file(name),
            &inf,
            SocketAddr::from(([127, 0, 0, 1], port)),
        );
        let status = notifier.wait().expect("waiting for the notifier");
        assert!(status.success(), "the notifier sipp failed: {status:?}");
    }
}

/// bench/ladder.sh end to end: two small steps of the SUBSCRIBE cycle with
/// the node metered (found by its SIP port); every call must succeed and
/// the metering columns be filled.
#[test]
fn ladder_script_runs_a_small_ladder() {
    let node = Node::start_with(|_| vec!["--insecure-no-auth".into()]);
    let out = tempfile::tempdir().expect("temporary directory");
    let output = Command::new("bash")
        .arg(bench_dir().join("ladder.sh"))
        .args(["--scenario", "subscribe-cycle", "--transport", "udp"])
        .args(["--target", &node.sip().to_string()])
        .args(["--pids", "auto"])
        .args(["--rates", "10 20", "--seconds", "1", "--settle", "0"])
        .args(["--label", "presence-node", "--keep-going"])
        .args(["--out", &out.path().display().to_string()])
        .output()
        .expect("running bench/ladder.sh");
    let log = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "ladder.sh failed:\n{log}");
    let csv = std::fs::read_to_string(out.path().join("ladder.csv")).expect("ladder.csv");
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().expect("header").split(',').collect();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2, "{csv}\n{log}");
    let col = |name: &str| header.iter().position(|h| *h == name).expect(name);
    for row in &rows {
        assert_eq!(row[col("successful")], row[col("calls")], "{csv}\n{log}");
        assert_eq!(row[col("failed")], "0", "{csv}\n{log}");
        assert_eq!(row[col("sipp_exit")], "0", "{csv}\n{log}");
        for name in [
            "server_cpu_pct",
            "server_cpu_us_per_call",
            "rss_mb",
            "udp_drops",
        ] {
            assert!(!row[col(name)].is_empty(), "{name} is empty:\n{csv}");
        }
    }
}
