//! Client-side balancing on loopback: one edge given three presence URLs —
//! two live replicas and an address where nothing listens — serves every
//! request, and keeps serving after one replica is killed.

use std::net::SocketAddr;
use std::time::Duration;

use cluster_tests::cluster::Tokens;
use cluster_tests::free_port;
use cluster_tests::process::{wait_for_tcp, Process};
use cluster_tests::workload::{check_all, Load, Pace};
use store::testing::RedisServer;

const STARTUP: Duration = Duration::from_secs(60);

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_balances_over_replicas_and_outlives_one() {
    let redis = RedisServer::start().expect("redis-server (Debian package redis-server)");
    let tokens = Tokens::new();
    let mut replicas = Vec::new();
    let mut urls = vec![format!("http://127.0.0.1:{}", free_port())];
    for i in 0..2 {
        let port = free_port();
        let args = strings(&[
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--redis-url",
            &redis.url(),
            "--min-expires",
            "1",
        ]);
        replicas.push(Process::spawn(
            &format!("presence-{i}"),
            "presence",
            &args,
            &[],
        ));
        wait_for_tcp(port, STARTUP);
        urls.push(format!("http://127.0.0.1:{port}"));
    }
    let registrar_port = free_port();
    let _registrar = Process::spawn(
        "registrar",
        "registrar",
        &strings(&[
            "--listen",
            &format!("127.0.0.1:{registrar_port}"),
            "--redis-url",
            &redis.url(),
        ]),
        &[],
    );
    wait_for_tcp(registrar_port, STARTUP);
    let sip_port = free_port();
    let mut args = strings(&[
        "--udp",
        &format!("127.0.0.1:{sip_port}"),
        "--tcp",
        &format!("127.0.0.1:{sip_port}"),
        "--presence-url",
        &urls.join(","),
        "--registrar-url",
        &format!("http://127.0.0.1:{registrar_port}"),
        "--redis-url",
        &redis.url(),
    ]);
    args.extend(tokens.edge_args());
    let _edge = Process::spawn("edge", "edge", &args, &[]);
    wait_for_tcp(sip_port, STARTUP);
    let edge = SocketAddr::from(([127, 0, 0, 1], sip_port));

    let publishers = 2;
    let pace = Pace {
        changes: 30,
        pause: Duration::from_millis(20),
        expires: 600,
        last_expires: 600,
    };
    let mut load = Load::start(&tokens, &[edge], publishers, 2, pace).await;
    // The dead address is tried and set aside; nothing is refused.
    load.progress.reach(20, Duration::from_secs(60)).await;
    assert!(
        load.publishers.iter().all(|p| !p.is_finished()),
        "publishers still running when the replica dies"
    );
    let killed_at = std::time::Instant::now();
    replicas[0].kill();
    let reports = load.finish().await;
    for report in &reports {
        assert!(
            report.refusals.iter().all(|r| r.at >= killed_at),
            "refused while every configured address was either live or never there: {report:#?}"
        );
    }

    // A call in flight on the killed replica may fail (one per publisher);
    // all others reach the live one.
    let refused: usize = reports.iter().map(|r| r.refusals.len()).sum();
    assert!(refused <= publishers, "{reports:#?}");
    let sequences: Vec<_> = load
        .watchers
        .iter()
        .map(|w| (w.name.clone(), w.presentity.clone(), w.seen()))
        .collect();
    check_all(&sequences, &reports, 0);
    assert!(replicas[1].is_running());
}
