//! The spine on a Redis Cluster: the real presence, registrar and two edge
//! processes pointed at a three-master Redis Cluster on loopback (a
//! `redis+cluster://` URL), REGISTER, PUBLISH and SUBSCRIBE across the two
//! edges, with presentities whose keys live on every master, and a slot
//! migration in the middle of a subscription.

use std::time::Duration;

use cluster_tests::cluster::Tokens;
use cluster_tests::free_port;
use cluster_tests::process::{wait_for_tcp, Process};
use cluster_tests::ua::{pidf, Ua, WAIT};
use sip::SubState;
use store::testing::RedisCluster;

const STARTUP: Duration = Duration::from_secs(60);

/// The services and two edges, all on one Redis Cluster.
struct ClusterOnRedisCluster {
    redis: RedisCluster,
    tokens: Tokens,
    _services: Vec<Process>,
    _edges: Vec<Process>,
    edge_ports: Vec<u16>,
}

impl ClusterOnRedisCluster {
    fn start() -> ClusterOnRedisCluster {
        let redis = RedisCluster::start(3)
            .expect("a Redis Cluster (Debian package redis-server must be installed)");
        let url = redis.url();
        assert!(url.starts_with("redis+cluster://"), "{url}");
        let tokens = Tokens::new();
        let presence_port = free_port();
        let registrar_port = free_port();
        let service = |port: u16| -> Vec<String> {
            [
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--redis-url",
                &url,
                "--min-expires",
                "1",
                "--sweep-ms",
                "200",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect()
        };
        let services = vec![
            Process::spawn("presence", "presence", &service(presence_port), &[]),
            Process::spawn("registrar", "registrar", &service(registrar_port), &[]),
        ];
        wait_for_tcp(presence_port, STARTUP);
        wait_for_tcp(registrar_port, STARTUP);
        let mut edges = Vec::new();
        let mut edge_ports = Vec::new();
        for i in 0..2 {
            let port = free_port();
            let mut args: Vec<String> = [
                "--udp",
                &format!("127.0.0.1:{port}"),
                "--tcp",
                &format!("127.0.0.1:{port}"),
                "--edge-id",
                &format!("edge-{i}"),
                "--presence-url",
                &format!("http://127.0.0.1:{presence_port}"),
                "--registrar-url",
                &format!("http://127.0.0.1:{registrar_port}"),
                "--redis-url",
                &url,
                "--rpc-timeout-ms",
                "2000",
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            args.extend(tokens.edge_args());
            edges.push(Process::spawn(&format!("edge-{i}"), "edge", &args, &[]));
            wait_for_tcp(port, STARTUP);
            edge_ports.push(port);
        }
        ClusterOnRedisCluster {
            redis,
            tokens,
            _services: services,
            _edges: edges,
            edge_ports,
        }
    }

    fn edge(&self, i: usize) -> std::net::SocketAddr {
        std::net::SocketAddr::from(([127, 0, 0, 1], self.edge_ports[i]))
    }

    /// The master index that holds `key`.
    fn owner(&self, key: &str) -> usize {
        let slot = self.redis.slot_of(key).expect("CLUSTER KEYSLOT");
        self.redis.owner_of(slot).expect("CLUSTER SLOTS")
    }

    /// Whether `key` exists on the master that owns its slot.
    fn exists_on_owner(&self, key: &str) -> bool {
        let node = &self.redis.nodes()[self.owner(key)];
        let reply = node
            .command(&format!("EXISTS {key}"))
            .expect("EXISTS on the owning master");
        reply.trim() == ":1"
    }
}

fn body(request: &sip::Request) -> String {
    String::from_utf8_lossy(request.body()).into_owned()
}

/// The next NOTIFY, which must be active and carry `note`.
async fn expect_note(watcher: &mut Ua, note: &str) {
    let notify = watcher
        .next_notify(WAIT)
        .await
        .unwrap_or_else(|| panic!("{}: no NOTIFY carrying {note:?}", watcher.aor));
    let state = notify
        .headers()
        .subscription_state()
        .expect("Subscription-State")
        .expect("present");
    assert_eq!(state.state, SubState::Active, "{}", body(&notify));
    assert!(body(&notify).contains(note), "{note:?}: {}", body(&notify));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_flows_across_edges_on_a_three_master_redis_cluster() {
    let cluster = ClusterOnRedisCluster::start();

    // One presentity per master, so every shard's channels and keys are used.
    let mut presentities: Vec<Option<String>> = vec![None; 3];
    for i in 0.. {
        if presentities.iter().all(Option::is_some) {
            break;
        }
        assert!(i < 10_000, "no name maps to every master");
        let aor = format!("user{i}@example.com");
        let owner = cluster.owner(&format!("pres:{{{aor}}}"));
        if presentities[owner].is_none() {
            presentities[owner] = Some(aor);
        }
    }
    let presentities: Vec<String> = presentities.into_iter().flatten().collect();

    let mut publishers = Vec::new();
    let mut watchers = Vec::new();
    let mut dialogs = Vec::new();
    for aor in &presentities {
        let token = cluster.tokens.token(aor);
        // REGISTER through edge 0: the binding lands on the AOR's master.
        let mut publisher = Ua::udp(aor, cluster.edge(0)).await;
        let registered = publisher.register(Some(&token), 600).await;
        assert_eq!(registered.status(), 200, "REGISTER {aor}");
        assert!(
            cluster.exists_on_owner(&format!("reg:{{{aor}}}")),
            "binding of {aor} on its master"
        );

        // A watcher on edge 1: 200 OK and an initial NOTIFY showing the
        // registered, unpublished AOR open (registration-driven presence).
        let watcher_aor = format!("watcher-of-{aor}");
        let watcher_token = cluster.tokens.token(&watcher_aor);
        let mut watcher = Ua::udp(&watcher_aor, cluster.edge(1)).await;
        let (response, dialog) = watcher.subscribe(aor, &watcher_token, 300).await;
        assert_eq!(response.status(), 200, "SUBSCRIBE to {aor}");
        let initial = watcher.next_notify(WAIT).await.expect("initial NOTIFY");
        assert!(
            body(&initial).contains("<basic>open</basic>"),
            "{}",
            body(&initial)
        );
        assert!(
            cluster.exists_on_owner(&format!("subs:{{{aor}}}:m")),
            "subscription record of {aor} on its master"
        );
        publishers.push((publisher, token));
        watchers.push((watcher, watcher_token));
        dialogs.push(dialog.expect("dialog"));
    }

    // Each publication reaches its watcher through the other edge.
    let mut etags = Vec::new();
    for (i, aor) in presentities.iter().enumerate() {
        let (publisher, token) = &mut publishers[i];
        let note = format!("first note of {aor}");
        let published = publisher
            .publish(token, None, Some(&pidf(aor, "open", &note)), 600)
            .await;
        assert_eq!(published.status(), 200, "PUBLISH {aor}");
        etags.push(
            published
                .headers()
                .sip_etag()
                .expect("SIP-ETag")
                .to_string(),
        );
        assert!(cluster.exists_on_owner(&format!("pres:{{{aor}}}")));
        expect_note(&mut watchers[i].0, &note).await;
    }

    // Move the first presentity's slot to another master while its watcher
    // is subscribed: the next change still arrives.
    let moved = &presentities[0];
    let key = format!("pres:{{{moved}}}");
    let slot = cluster.redis.slot_of(&key).expect("slot");
    let from = cluster.owner(&key);
    let to = (from + 1) % 3;
    cluster
        .redis
        .migrate_slot(slot, to)
        .expect("slot migration");
    assert_eq!(cluster.owner(&key), to);
    let note = "after the slot moved";
    let (publisher, token) = &mut publishers[0];
    let mut delivered = false;
    // The edges and services learn the new slot owner from a MOVED reply;
    // a 503 while that happens is allowed, a lost NOTIFY is not.
    for _ in 0..20 {
        let modified = publisher
            .publish(
                token,
                Some(&etags[0]),
                Some(&pidf(moved, "open", note)),
                600,
            )
            .await;
        if modified.status() == 200 {
            etags[0] = modified.headers().sip_etag().expect("SIP-ETag").to_string();
            delivered = true;
            break;
        }
        assert_eq!(modified.status(), 503, "only 503 while the slot moves");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(delivered, "PUBLISH succeeds after the slot moved");
    assert!(cluster.exists_on_owner(&key), "record moved with its slot");
    expect_note(&mut watchers[0].0, note).await;

    // Unsubscribing gives the final NOTIFY on every shard.
    for (i, dialog) in dialogs.iter_mut().enumerate() {
        let (watcher, token) = &mut watchers[i];
        let bye = watcher.resubscribe(dialog, token, 0).await;
        assert_eq!(bye.status(), 200);
        let last = watcher.next_notify(WAIT).await.expect("final NOTIFY");
        let state = last
            .headers()
            .subscription_state()
            .expect("Subscription-State")
            .expect("present");
        assert_eq!(state.state, SubState::Terminated);
        // Exactly one NOTIFY per change: initial, each publication, final.
        let expected = if i == 0 { 4 } else { 3 };
        assert_eq!(
            watcher.notifies.len(),
            expected,
            "NOTIFYs of {}",
            watcher.aor
        );
    }
}

/// A resharding during traffic is invisible: while one presentity's slot
/// is held in migration (IMPORTING on the target, MIGRATING on the owner)
/// for seconds, every PUBLISH for it is answered 200, a new SUBSCRIBE is
/// accepted, and the watcher gets a NOTIFY carrying each change; the same
/// once the slot has been handed over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_served_while_its_slot_migrates() {
    let cluster = ClusterOnRedisCluster::start();
    let aor = "mover@example.com";
    let token = cluster.tokens.token(aor);
    let mut publisher = Ua::udp(aor, cluster.edge(0)).await;
    assert_eq!(publisher.register(Some(&token), 600).await.status(), 200);
    let watcher_aor = "watcher-of-mover@example.com";
    let watcher_token = cluster.tokens.token(watcher_aor);
    let mut watcher = Ua::udp(watcher_aor, cluster.edge(1)).await;
    let (response, _dialog) = watcher.subscribe(aor, &watcher_token, 300).await;
    assert_eq!(response.status(), 200, "SUBSCRIBE before the migration");
    watcher.next_notify(WAIT).await.expect("initial NOTIFY");
    let published = publisher
        .publish(&token, None, Some(&pidf(aor, "open", "before")), 600)
        .await;
    assert_eq!(published.status(), 200, "PUBLISH before the migration");
    let mut etag = published
        .headers()
        .sip_etag()
        .expect("SIP-ETag")
        .to_string();
    expect_note(&mut watcher, "before").await;

    let key = format!("pres:{{{aor}}}");
    let slot = cluster.redis.slot_of(&key).expect("slot");
    let from = cluster.owner(&key);
    let to = (from + 1) % 3;
    let migration = cluster
        .redis
        .begin_migration(slot, to)
        .expect("slot put in migration");
    // Several seconds of traffic in the migrating slot: each answer must
    // be 200 (no 503 after a timeout), each change must reach the watcher.
    let mut late_watcher = None;
    for round in 0..6 {
        let note = format!("during migration {round}");
        let modified = publisher
            .publish(&token, Some(&etag), Some(&pidf(aor, "open", &note)), 600)
            .await;
        assert_eq!(modified.status(), 200, "PUBLISH in round {round}");
        etag = modified.headers().sip_etag().expect("SIP-ETag").to_string();
        expect_note(&mut watcher, &note).await;
        if round == 2 {
            // A subscription that starts during the migration.
            let aor2 = "late-watcher@example.com";
            let token2 = cluster.tokens.token(aor2);
            let mut late = Ua::udp(aor2, cluster.edge(0)).await;
            let (response, _dialog) = late.subscribe(aor, &token2, 300).await;
            assert_eq!(response.status(), 200, "SUBSCRIBE during the migration");
            expect_note(&mut late, &note).await;
            late_watcher = Some(late);
        }
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    assert_eq!(cluster.owner(&key), from, "the slot was still migrating");

    cluster
        .redis
        .finish_migration(migration)
        .expect("slot handed over");
    assert_eq!(cluster.owner(&key), to);
    let modified = publisher
        .publish(&token, Some(&etag), Some(&pidf(aor, "open", "after")), 600)
        .await;
    assert_eq!(modified.status(), 200, "PUBLISH after the migration");
    assert!(cluster.exists_on_owner(&key), "record moved with its slot");
    // The feeds re-subscribed at the new owner and re-read: every later
    // NOTIFY carries the latest state.
    let mut late = late_watcher.expect("late watcher");
    for ua in [&mut watcher, &mut late] {
        let mut seen = false;
        while let Some(notify) = ua.next_notify(WAIT).await {
            if body(&notify).contains("after") {
                seen = true;
                break;
            }
        }
        assert!(seen, "{}: no NOTIFY after the migration", ua.aor);
    }
}
