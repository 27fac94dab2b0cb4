//! The SDK against the real thing: the single-process `presence-node`, a Redis-backed
//! cluster of two edges (edges, presence, registrar, redis-server on loopback), and other
//! peers directly — over UDP and TCP, with short intervals so refreshes happen in seconds.
//!
//! Needs the service binaries (`cargo build --workspace --bins`, built on first use
//! otherwise) and `redis-server` for the cluster test.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use cluster_tests::cluster::{Cluster, Node};
use cluster_tests::free_port;
use cluster_tests::process::{wait_for_tcp, Process};
use futures::StreamExt;
use presence_client::{
    Error, PresenceInfo, PresenceStatus, PresenceWatcher, SimplePeer, Timers, TokenSource,
    Transport,
};
use rpc::presence::v1::presence_client::PresenceClient;
use rpc::presence::v1::GetPresenceRequest;
use sip::{HeaderName, Message, Method, Request, Response};
use tokio::net::UdpSocket;

/// How long a test waits for a change it expects.
const WAIT: Duration = Duration::from_secs(15);

/// Intervals short enough for several refresh cycles in a few seconds.
fn quick_timers(expires: u32) -> Timers {
    Timers {
        t1: Duration::from_millis(100),
        t2: Duration::from_millis(800),
        transaction_timeout: Duration::from_secs(3),
        register_expires: expires,
        publish_expires: expires,
        subscribe_expires: expires,
        heartbeat_interval: Duration::from_millis(200),
        offline_threshold: Duration::from_secs(1),
        retry_min: Duration::from_millis(200),
        retry_max: Duration::from_secs(1),
    }
}

async fn peer(identity: &str, transport: Transport, expires: u32) -> SimplePeer {
    SimplePeer::builder(identity)
        .bind("127.0.0.1:0".parse().expect("address"))
        .transport(transport)
        .timers(quick_timers(expires))
        .build()
        .await
        .expect("peer starts")
}

fn server_uri(addr: SocketAddr, transport: Transport) -> String {
    match transport {
        Transport::Udp => format!("sip:{addr}"),
        Transport::Tcp => format!("sip:{addr};transport=tcp"),
        Transport::Tls => format!("sip:{addr};transport=tls"),
        Transport::Ws => format!("sip:{addr};transport=ws"),
    }
}

/// The next presence the watcher reports, failing the test after [`WAIT`].
async fn next_info(watcher: &mut PresenceWatcher) -> PresenceInfo {
    tokio::time::timeout(WAIT, watcher.recv())
        .await
        .unwrap_or_else(|_| panic!("no presence from {} within {WAIT:?}", watcher.target()))
        .expect("the watcher is running")
}

/// Waits until the watcher reports `status` (earlier states may come first).
async fn wait_for(watcher: &mut PresenceWatcher, status: PresenceStatus) -> PresenceInfo {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match tokio::time::timeout(left, watcher.recv()).await {
            Ok(Some(info)) if info.status == status => return info,
            Ok(Some(_)) => {}
            Ok(None) => panic!("the watcher of {} stopped", watcher.target()),
            Err(_) => panic!(
                "{} not {status:?} within {WAIT:?} (last {:?})",
                watcher.target(),
                watcher.current()
            ),
        }
    }
}

async fn stored_presence(url: String, aor: &str) -> rpc::presence::v1::PresenceState {
    let mut client = PresenceClient::connect(url).await.expect("presence gRPC");
    client
        .get_presence(GetPresenceRequest {
            presentity: aor.into(),
        })
        .await
        .expect("GetPresence")
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_register_publish_watch_through_refresh_cycles_and_clean_exit() {
    let node = Node::start();
    // Alice over UDP, Bob over TCP; everything granted for 2 s, so refreshed every 1.6 s.
    let alice = peer("alice@example.com", Transport::Udp, 2).await;
    alice
        .register(server_uri(node.sip(), Transport::Udp))
        .auth_bearer(node.tokens.token("alice@example.com"))
        .await
        .expect("Alice registers");
    alice
        .presence(PresenceStatus::Available)
        .note("Working from home")
        .device("urn:uuid:alice-laptop")
        .capabilities(["audio", "video"])
        .await
        .expect("Alice publishes");

    let bob = peer("bob@example.com", Transport::Tcp, 2).await;
    bob.register(server_uri(node.sip(), Transport::Tcp))
        .auth_bearer(node.tokens.token("bob@example.com"))
        .await
        .expect("Bob registers");
    let mut watcher = bob.watch("alice").await.expect("Bob watches Alice");
    let info = next_info(&mut watcher).await;
    assert_eq!(info.status, PresenceStatus::Available);
    assert_eq!(info.note.as_deref(), Some("Working from home"));
    assert_eq!(info.device.as_deref(), Some("urn:uuid:alice-laptop"));
    assert_eq!(info.capabilities, ["audio", "video"]);
    assert_eq!(watcher.current(), Some(info));

    // Three intervals later the publication, the registrations and the subscription are
    // all still there: each was refreshed before it expired.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let stored = stored_presence(node.presence_url(), "alice@example.com").await;
    assert_eq!(stored.note, "Working from home", "publication refreshed");
    alice
        .busy()
        .note("Budget review")
        .await
        .expect("Alice modifies");
    let info = wait_for(&mut watcher, PresenceStatus::Busy).await;
    assert_eq!(info.note.as_deref(), Some("Budget review"));

    // Leaving: the publication and the registration are removed, so Alice is closed again.
    alice.shutdown().await;
    let info = wait_for(&mut watcher, PresenceStatus::Offline).await;
    assert_eq!(info.note, None);
    let stored = stored_presence(node.presence_url(), "alice@example.com").await;
    assert_eq!(stored.basic, rpc::presence::v1::Basic::Closed as i32);
    watcher.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_restart_over_tcp_is_recovered_by_republishing_and_resubscribing() {
    let mut node = Node::start();
    let alice = peer("alice@example.com", Transport::Tcp, 2).await;
    alice
        .register(server_uri(node.sip(), Transport::Tcp))
        .auth_bearer(node.tokens.token("alice@example.com"))
        .await
        .expect("Alice registers");
    alice
        .available()
        .note("before the restart")
        .await
        .expect("Alice publishes");
    let bob = peer("bob@example.com", Transport::Tcp, 2).await;
    bob.register(server_uri(node.sip(), Transport::Tcp))
        .auth_bearer(node.tokens.token("bob@example.com"))
        .await
        .expect("Bob registers");
    let mut watcher = bob.watch("alice@example.com").await.expect("Bob watches");
    assert_eq!(
        next_info(&mut watcher).await.note.as_deref(),
        Some("before the restart")
    );

    // The node restarts with empty memory: every connection closes, every publication,
    // registration and subscription is forgotten.
    node.process.restart();
    let port = node.sip_port;
    tokio::task::spawn_blocking(move || wait_for_tcp(port, Duration::from_secs(30)))
        .await
        .expect("node back");

    // Alice's publication comes back (412, then in full), and Bob's subscription (481 or
    // expiry, then a new one): a change reaches Bob.
    alice
        .away()
        .note("after the restart")
        .await
        .expect("Alice publishes after the restart");
    let info = wait_for(&mut watcher, PresenceStatus::Away).await;
    assert_eq!(info.note.as_deref(), Some("after the restart"));
    let stored = stored_presence(node.presence_url(), "alice@example.com").await;
    assert_eq!(stored.note, "after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_renewed_through_the_callback() {
    // No clock-skew tolerance: a token is refused the second it expires.
    let node = Arc::new(Node::start_with(|_| {
        vec!["--auth-leeway-s".into(), "0".into()]
    }));
    // The callback mints a token when asked: the first lives 3 s, the next an hour.
    let lifetimes = Arc::new(Mutex::new(VecDeque::from([3u64, 3600])));
    let calls = Arc::new(AtomicUsize::new(0));
    let source = {
        let (node, lifetimes, calls) = (node.clone(), lifetimes.clone(), calls.clone());
        TokenSource::from_fn(move || {
            calls.fetch_add(1, Ordering::SeqCst);
            let token = lifetimes.lock().expect("lifetimes").pop_front().map(|ttl| {
                node.tokens.token_with_ttl(
                    "alice@example.com",
                    &["sip:register", "sip:presence"],
                    ttl,
                )
            });
            async move { token.ok_or("no more tokens") }
        })
    };
    let alice = peer("alice@example.com", Transport::Udp, 2).await;
    alice
        .register(server_uri(node.sip(), Transport::Udp))
        .auth_bearer(source)
        .await
        .expect("Alice registers");
    alice
        .available()
        .note("first token")
        .await
        .expect("Alice publishes");
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    let bob = peer("bob@example.com", Transport::Udp, 60).await;
    bob.register(server_uri(node.sip(), Transport::Udp))
        .auth_bearer(node.tokens.token("bob@example.com"))
        .await
        .expect("Bob registers");
    let mut watcher = bob.watch("alice").await.expect("Bob watches");
    assert_eq!(
        next_info(&mut watcher).await.status,
        PresenceStatus::Available
    );

    // Refreshes after the first token expired were answered 401 invalid_token; the
    // callback gave the second token and they went through.
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(calls.load(Ordering::SeqCst), 2, "renewed exactly once");
    assert!(lifetimes.lock().expect("lifetimes").is_empty());
    alice
        .dnd()
        .note("second token")
        .await
        .expect("publishing with the renewed token");
    let info = wait_for(&mut watcher, PresenceStatus::DoNotDisturb).await;
    assert_eq!(info.note.as_deref(), Some("second token"));
    let stored = stored_presence(node.presence_url(), "alice@example.com").await;
    assert_eq!(stored.note, "second token");
}

/// Starts an edge with a 2 s lease that looks for orphaned dialogs every 250 ms.
fn add_edge(cluster: &mut Cluster, id: &str) {
    let port = free_port();
    let mut args = vec![
        "--udp".to_string(),
        format!("127.0.0.1:{port}"),
        "--tcp".into(),
        format!("127.0.0.1:{port}"),
        "--edge-id".into(),
        id.into(),
        "--presence-url".into(),
        cluster.presence_url(),
        "--registrar-url".into(),
        cluster.registrar_url(),
        "--redis-url".into(),
        cluster.redis.url(),
        "--lease-ttl-ms".into(),
        "2000".into(),
        "--claim-interval-ms".into(),
        "250".into(),
    ];
    args.extend(cluster.tokens.edge_args());
    let process = Process::spawn(id, "edge", &args, &[]);
    wait_for_tcp(port, Duration::from_secs(60));
    cluster.edges.push(process);
    cluster.edge_ports.push(port);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_watcher_follows_the_takeover_when_its_edge_is_killed() {
    let mut cluster = Cluster::start(0);
    add_edge(&mut cluster, "edge-a");
    add_edge(&mut cluster, "edge-b");
    let alice = peer("alice@example.com", Transport::Udp, 60).await;
    alice
        .register(server_uri(cluster.edge(1), Transport::Udp))
        .auth_bearer(cluster.tokens.token("alice@example.com"))
        .await
        .expect("Alice registers on edge b");
    alice.available().note("first").await.expect("publishes");

    // Bob's subscription lasts 6 s: refreshed at 4.8 s, after the takeover.
    let bob = peer("bob@example.com", Transport::Udp, 6).await;
    bob.register(server_uri(cluster.edge(0), Transport::Udp))
        .auth_bearer(cluster.tokens.token("bob@example.com"))
        .await
        .expect("Bob registers on edge a");
    let mut watcher = bob
        .watch("alice")
        .await
        .expect("Bob watches through edge a");
    assert_eq!(next_info(&mut watcher).await.note.as_deref(), Some("first"));

    cluster.edges[0].kill();
    alice.busy().note("second").await.expect("publishes");
    let info = wait_for(&mut watcher, PresenceStatus::Busy).await;
    assert_eq!(info.note.as_deref(), Some("second"));

    // Past the original expiry: the refresh went to edge b (the Contact of its NOTIFY), so
    // the subscription still lives and the next change arrives too.
    tokio::time::sleep(Duration::from_secs(7)).await;
    alice.away().note("third").await.expect("publishes");
    let info = wait_for(&mut watcher, PresenceStatus::Away).await;
    assert_eq!(info.note.as_deref(), Some("third"));
}

async fn p2p_pair_watch_each_other(transport: Transport) {
    let alice = peer("alice@example.com", transport, 2).await;
    let bob = peer("bob@example.com", transport, 2).await;
    alice
        .available()
        .note("at my desk")
        .await
        .expect("Alice sets");
    bob.in_call().await.expect("Bob sets");

    let mut alice_watches_bob = alice.watch(&bob.p2p_address()).await.expect("watch Bob");
    let mut bob_watches_alice = bob.watch(&alice.p2p_address()).await.expect("watch Alice");
    assert_eq!(
        next_info(&mut alice_watches_bob).await.status,
        PresenceStatus::InCall
    );
    let info = next_info(&mut bob_watches_alice).await;
    assert_eq!(info.status, PresenceStatus::Available);
    assert_eq!(info.note.as_deref(), Some("at my desk"));
    assert_eq!(alice.direct_watchers(), 1);
    assert_eq!(bob.direct_watchers(), 1);

    // Past two subscription intervals: refreshed, still delivering.
    tokio::time::sleep(Duration::from_secs(4)).await;
    bob.available().await.expect("Bob hangs up");
    wait_for(&mut alice_watches_bob, PresenceStatus::Available).await;
    alice.away().await.expect("Alice leaves her desk");
    wait_for(&mut bob_watches_alice, PresenceStatus::Away).await;

    // Alice goes away properly: Bob is told at once.
    alice_watches_bob.stop().await;
    alice.shutdown().await;
    wait_for(&mut bob_watches_alice, PresenceStatus::Offline).await;
    // Bob forgets her subscription once its final NOTIFY is answered.
    let deadline = tokio::time::Instant::now() + WAIT;
    while bob.direct_watchers() > 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bob.direct_watchers(), 0, "Alice's stop unsubscribed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_peers_watch_each_other_over_udp() {
    p2p_pair_watch_each_other(Transport::Udp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_peers_watch_each_other_over_tcp() {
    p2p_pair_watch_each_other(Transport::Tcp).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2p_a_peer_that_stops_answering_is_reported_offline_by_the_heartbeat() {
    // Carol runs in a runtime of her own, which is torn down without a word: her sockets
    // stay open but nothing answers any more, like a machine that froze.
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    let (crash_tx, crash_rx) = std::sync::mpsc::channel::<()>();
    let carol_thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let carol = runtime.block_on(async {
            let carol = peer("carol@example.com", Transport::Udp, 60).await;
            carol.available().await.expect("Carol sets");
            carol
        });
        address_tx.send(carol.p2p_address()).expect("address sent");
        let _ = crash_rx.recv();
        std::mem::forget(carol);
        runtime.shutdown_background();
    });
    let carol = address_rx.recv().expect("Carol's address");
    let dave = peer("dave@example.com", Transport::Udp, 60).await;
    let mut watcher = dave.watch(&carol).await.expect("Dave watches Carol");
    assert_eq!(
        next_info(&mut watcher).await.status,
        PresenceStatus::Available
    );

    crash_tx.send(()).expect("crash");
    carol_thread.join().expect("Carol's thread");
    let silent_since = tokio::time::Instant::now();
    wait_for(&mut watcher, PresenceStatus::Offline).await;
    let after = silent_since.elapsed();
    // The threshold is 1 s with a heartbeat every 200 ms.
    assert!(
        after >= Duration::from_millis(800),
        "reported after {after:?}"
    );
}

/// A notifier written by hand with the `sip` crate, for answers no well-behaved peer gives.
struct RawNotifier {
    socket: UdpSocket,
}

impl RawNotifier {
    /// The next request other than an OPTIONS heartbeat (which is answered).
    async fn next_request(&self) -> (Request, SocketAddr) {
        let mut buf = vec![0u8; 65_536];
        loop {
            let (n, from) = tokio::time::timeout(WAIT, self.socket.recv_from(&mut buf))
                .await
                .expect("a request in time")
                .expect("UDP receive");
            let message = sip::parse(Bytes::copy_from_slice(&buf[..n])).expect("the SDK sends SIP");
            match message {
                Message::Request(request) if *request.method() == Method::Options => {
                    self.send(
                        &Response::for_request(&request, 200).build().to_bytes(),
                        from,
                    )
                    .await;
                }
                Message::Request(request) => return (request, from),
                Message::Response(_) => {}
            }
        }
    }

    async fn send(&self, bytes: &[u8], to: SocketAddr) {
        self.socket.send_to(bytes, to).await.expect("UDP send");
    }

    fn notify(subscribe: &Request, cseq: u32, state: &str, body: &str) -> Request {
        let headers = subscribe.headers();
        let watcher = headers.from().expect("From");
        let target = match headers.contacts().expect("Contact") {
            sip::Contacts::List(list) => list[0].name_addr.uri.clone(),
            sip::Contacts::Star => panic!("Contact *"),
        };
        let me = headers.to().expect("To").with_tag("raw-notifier");
        sip::Request::builder(Method::Notify, target)
            .typed(sip::Via::new(
                "UDP",
                "127.0.0.1",
                None,
                &format!("z9hG4bK-raw-{cseq}"),
            ))
            .header(HeaderName::MaxForwards, 70)
            .from(&me)
            .to(&watcher)
            .header(HeaderName::CallId, headers.call_id().expect("Call-ID"))
            .typed(sip::CSeq::new(cseq, Method::Notify))
            .typed(sip::Event::new("presence"))
            .header(HeaderName::SubscriptionState, state)
            .header(HeaderName::Contact, "<sip:alice@127.0.0.1>")
            .body("application/pidf+xml", Bytes::from(body.to_owned()))
            .build()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_an_error_item_and_the_watcher_keeps_working() {
    let raw = RawNotifier {
        socket: UdpSocket::bind("127.0.0.1:0").await.expect("UDP"),
    };
    let port = raw.socket.local_addr().expect("address").port();
    let bob = SimplePeer::builder("bob@example.com")
        .bind("127.0.0.1:0".parse().expect("address"))
        .timers(Timers {
            transaction_timeout: Duration::from_secs(3),
            ..Timers::default()
        })
        .build()
        .await
        .expect("Bob starts");
    let watching = tokio::spawn(async move { bob.watch(&format!("alice@127.0.0.1:{port}")).await });
    let (subscribe, from) = raw.next_request().await;
    assert_eq!(*subscribe.method(), Method::Subscribe);
    let ok = Response::for_request(&subscribe, 200)
        .to_tag("raw-notifier")
        .header(HeaderName::Contact, format!("<sip:alice@127.0.0.1:{port}>"))
        .header(HeaderName::Expires, 600)
        .build();
    raw.send(&ok.to_bytes(), from).await;
    let mut watcher = watching.await.expect("task").expect("watch started");

    // A body that is not XML: answered, reported, nothing else happens.
    let broken = RawNotifier::notify(&subscribe, 1, "active;expires=600", "<presence><tuple");
    raw.send(&broken.to_bytes(), from).await;
    let (answer, _) = loop {
        let mut buf = vec![0u8; 65_536];
        let (n, from) = raw.socket.recv_from(&mut buf).await.expect("UDP");
        if let Ok(Message::Response(r)) = sip::parse(Bytes::copy_from_slice(&buf[..n])) {
            break (r, from);
        }
    };
    assert_eq!(answer.status(), 200);
    let item = tokio::time::timeout(WAIT, watcher.next())
        .await
        .expect("an item in time")
        .expect("stream open");
    assert!(matches!(item, Err(Error::BadMessage(_))), "{item:?}");

    // A response nobody asked for, and a NOTIFY for a dialog that does not exist: ignored
    // and refused respectively.
    let stray = Response::for_request(&subscribe, 500).build();
    raw.send(&stray.to_bytes(), from).await;
    let mut unknown = RawNotifier::notify(&subscribe, 2, "active", "");
    unknown
        .headers_mut()
        .set(&HeaderName::CallId, "nobody@example.com");
    raw.send(&unknown.to_bytes(), from).await;

    // Then a good document: the watcher still works.
    let busy = PresenceInfo::new(PresenceStatus::Busy)
        .to_document("sip:alice@example.com")
        .to_xml();
    let good = RawNotifier::notify(&subscribe, 3, "active;expires=600", &busy);
    raw.send(&good.to_bytes(), from).await;
    let item = tokio::time::timeout(WAIT, watcher.next())
        .await
        .expect("an item in time")
        .expect("stream open");
    assert_eq!(item.expect("a presence").status, PresenceStatus::Busy);
    assert_eq!(
        watcher.current().map(|info| info.status),
        Some(PresenceStatus::Busy)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_credentials_work_where_the_server_takes_no_tokens() {
    let path = std::env::temp_dir().join(format!("presence-client-ha1-{}", std::process::id()));
    std::fs::write(&path, "alice:alice-password\nbob:bob-password\n").expect("credentials file");
    let file = path.display().to_string();
    let node = Node::start_with(move |_| {
        [
            "--auth-mode",
            "digest",
            "--auth-digest-realm",
            "example.com",
        ]
        .into_iter()
        .map(String::from)
        .chain(["--auth-digest-ha1-file".to_string(), file])
        .collect()
    });
    let alice = SimplePeer::builder("alice@example.com")
        .bind("127.0.0.1:0".parse().expect("address"))
        .digest("alice", "alice-password")
        .timers(quick_timers(60))
        .build()
        .await
        .expect("Alice starts");
    alice
        .register(server_uri(node.sip(), Transport::Udp))
        .await
        .expect("Alice registers with Digest");
    alice.away().note("digest").await.expect("Alice publishes");
    let bob = peer("bob@example.com", Transport::Tcp, 60).await;
    bob.register(server_uri(node.sip(), Transport::Tcp))
        .auth_digest("bob", "bob-password")
        .await
        .expect("Bob registers with Digest");
    let mut watcher = bob.watch("alice").await.expect("Bob watches");
    let info = wait_for(&mut watcher, PresenceStatus::Away).await;
    assert_eq!(info.note.as_deref(), Some("digest"));

    // A wrong password is refused, not retried forever.
    let mallory = SimplePeer::builder("bob@example.com")
        .bind("127.0.0.1:0".parse().expect("address"))
        .digest("bob", "guess")
        .timers(quick_timers(60))
        .build()
        .await
        .expect("starts");
    let refused = mallory
        .register(server_uri(node.sip(), Transport::Udp))
        .await;
    assert!(
        matches!(refused, Err(Error::Rejected { status: 401, .. })),
        "{refused:?}"
    );
    let _ = std::fs::remove_file(&path);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_of_one_identity_are_seen_composed() {
    let node = Node::start();
    let token = node.tokens.token("alice@example.com");
    let phone = peer("alice@example.com", Transport::Udp, 60).await;
    let laptop = peer("alice@example.com", Transport::Tcp, 60).await;
    for device in [&phone, &laptop] {
        device
            .register(server_uri(node.sip(), Transport::Udp))
            .auth_bearer(token.clone())
            .await
            .expect("registers");
    }
    phone
        .available()
        .device("urn:uuid:phone")
        .capabilities(["audio"])
        .await
        .expect("phone publishes");
    let bob = peer("bob@example.com", Transport::Udp, 60).await;
    bob.register(server_uri(node.sip(), Transport::Udp))
        .auth_bearer(node.tokens.token("bob@example.com"))
        .await
        .expect("Bob registers");
    let mut watcher = bob.watch("alice").await.expect("Bob watches");
    wait_for(&mut watcher, PresenceStatus::Available).await;

    // The laptop's publication joins the phone's: the latest person element wins the
    // status, and the capabilities of both devices' tuples are there.
    laptop
        .busy()
        .note("typing")
        .capabilities(["message"])
        .await
        .expect("laptop publishes");
    let info = wait_for(&mut watcher, PresenceStatus::Busy).await;
    assert_eq!(info.note.as_deref(), Some("typing"));
    assert!(info.capabilities.contains(&"audio".to_string()), "{info:?}");
    assert!(
        info.capabilities.contains(&"message".to_string()),
        "{info:?}"
    );

    // The laptop leaves; the phone's publication alone remains.
    laptop.shutdown().await;
    let info = wait_for(&mut watcher, PresenceStatus::Available).await;
    assert_eq!(info.capabilities, ["audio"]);
}

/// A certificate authority and a server certificate for `localhost` and `127.0.0.1`, made at
/// test time: the PEM files for the node, and the client configuration trusting the CA.
fn test_pki(dir: &std::path::Path) -> (String, String, Arc<presence_client::rustls::ClientConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().expect("CA key");
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().expect("server key");
    let cert = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .expect("server params")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    let cert_path = dir.join("server.pem");
    let key_path = dir.join("server.key");
    std::fs::write(&cert_path, cert.pem()).expect("writing the certificate");
    std::fs::write(&key_path, key.serialize_pem()).expect("writing the key");
    let mut roots = presence_client::rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).expect("CA trusted");
    let provider = Arc::new(presence_client::rustls::crypto::ring::default_provider());
    let config = presence_client::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        cert_path.display().to_string(),
        key_path.display().to_string(),
        Arc::new(config),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_the_node_registers_publishes_and_watches() {
    let dir = std::env::temp_dir().join(format!("presence-client-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("directory");
    let (cert, key, client_config) = test_pki(&dir);
    let tls_port = free_port();
    let node = Node::start_with(move |_| {
        vec![
            "--tls".into(),
            format!("127.0.0.1:{tls_port}"),
            "--tls-cert".into(),
            cert,
            "--tls-key".into(),
            key,
        ]
    });
    let tls_server = format!("sip:localhost:{tls_port};transport=tls");
    let tls_peer = |identity: &str| {
        SimplePeer::builder(identity)
            .bind("127.0.0.1:0".parse().expect("address"))
            .tls_config(client_config.clone())
            .timers(quick_timers(2))
            .build()
    };
    let alice = tls_peer("alice@example.com").await.expect("Alice starts");
    alice
        .register(tls_server.clone())
        .auth_bearer(node.tokens.token("alice@example.com"))
        .await
        .expect("Alice registers over TLS");
    alice
        .in_call()
        .note("over TLS")
        .await
        .expect("Alice publishes");
    let bob = tls_peer("bob@example.com").await.expect("Bob starts");
    bob.register(tls_server)
        .auth_bearer(node.tokens.token("bob@example.com"))
        .await
        .expect("Bob registers over TLS");
    let mut watcher = bob.watch("alice").await.expect("Bob watches over TLS");
    let info = wait_for(&mut watcher, PresenceStatus::InCall).await;
    assert_eq!(info.note.as_deref(), Some("over TLS"));
    // Through refresh cycles, over the same TLS connections.
    tokio::time::sleep(Duration::from_secs(4)).await;
    alice.available().await.expect("Alice hangs up");
    wait_for(&mut watcher, PresenceStatus::Available).await;

    // A server whose certificate is not trusted is refused.
    let untrusted = SimplePeer::builder("bob@example.com")
        .bind("127.0.0.1:0".parse().expect("address"))
        .tls_config(Arc::new(
            presence_client::rustls::ClientConfig::builder_with_provider(Arc::new(
                presence_client::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(presence_client::rustls::RootCertStore::empty())
            .with_no_client_auth(),
        ))
        .timers(quick_timers(2))
        .build()
        .await
        .expect("starts");
    let refused = untrusted
        .register(format!("sip:localhost:{tls_port};transport=tls"))
        .auth_bearer(node.tokens.token("bob@example.com"))
        .await;
    assert!(matches!(refused, Err(Error::Network(_))), "{refused:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_to_the_node_registers_publishes_and_watches() {
    let ws_port = free_port();
    let node = Node::start_with(move |_| vec!["--ws".into(), format!("127.0.0.1:{ws_port}")]);
    let ws = SocketAddr::from(([127, 0, 0, 1], ws_port));
    let alice = peer("alice@example.com", Transport::Ws, 2).await;
    alice
        .register(server_uri(ws, Transport::Ws))
        .auth_bearer(node.tokens.token("alice@example.com"))
        .await
        .expect("Alice registers over WebSocket");
    alice
        .away()
        .note("over WebSocket")
        .await
        .expect("publishes");
    let bob = peer("bob@example.com", Transport::Ws, 2).await;
    bob.register(server_uri(ws, Transport::Ws))
        .auth_bearer(node.tokens.token("bob@example.com"))
        .await
        .expect("Bob registers over WebSocket");
    let mut watcher = bob.watch("alice").await.expect("Bob watches");
    let info = wait_for(&mut watcher, PresenceStatus::Away).await;
    assert_eq!(info.note.as_deref(), Some("over WebSocket"));
    // Through refresh cycles, over the same WebSocket connections.
    tokio::time::sleep(Duration::from_secs(4)).await;
    alice.busy().await.expect("publishes");
    wait_for(&mut watcher, PresenceStatus::Busy).await;
}
