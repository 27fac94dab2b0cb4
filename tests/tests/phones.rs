//! Real phones against the service: baresip 1.0 (`baresip-core`) and
//! linphonec 5.1 (`linphone-cli`) as Debian ships them, installed by
//! `scripts/test.sh`, driven through their consoles (see `phones_support`).
//!
//! Each exchange runs one baresip and one linphonec that watch each other:
//! both register; baresip (Alice) publishes open, closed, open; linphonec
//! (Bob) publishes open, quits (un-PUBLISH, un-SUBSCRIBE, un-REGISTER) and
//! starts again (open); then both quit. Each phone must show every change
//! of the other, and the service must show each step on its own: the
//! bindings (registrar Lookup), the active watchers (ListWatchers), the
//! composed status (GetPresence) and, at the end, the list of every basic
//! status it streamed (WatchPresence). Everything is gone when both quit.
//!
//! The matrix — both phones in every exchange, so each phone runs on each
//! transport as publisher and as watcher:
//!
//! | test | topology | transport | authentication |
//! |---|---|---|---|
//! | `udp_on_one_node_with_default_digest` | `presence-node` | UDP | Digest, default algorithms (MD5) |
//! | `tcp_across_two_edges_without_authentication` | two edges, presence, registrar, Redis | TCP | none (`--insecure-no-auth`) |
//! | `tls_across_two_edges_with_default_digest` | two edges, … | TLS (CA made at run time) | Digest, default algorithms |
//! | `sha256_digest_across_two_edges` | two edges, … | UDP | Digest SHA-256 only: two linphonecs log in and watch each other; baresip cannot (libre 1.1 answers MD5 only) |
//! | `wrong_passwords_are_refused` | `presence-node` | TCP | Digest: both phones with a wrong password get nothing — no binding, publication or subscription |
//!
//! So: each phone × UDP/TCP/TLS; no authentication, Digest MD5 (the
//! default), Digest SHA-256 (linphonec; baresip 1.0 has none) and a wrong
//! password for each phone; one node and two edges (a watcher on one edge,
//! the watched phone on the other). What baresip 1.0 and linphonec 5.1 can
//! and cannot do is in `docs/authentication.md` ("Phones tested").
//!
//! Two phone quirks shape the steps:
//! * linphonec has no command to change its own status (its console has
//!   none; liblinphone's presence model is set through its API only), so
//!   Bob's open/closed/open is a PUBLISH at start, an un-PUBLISH when it
//!   quits and a PUBLISH when it starts again.
//! * baresip 1.0's presence module publishes once when it starts and once
//!   more when a registration succeeds; when the registration completes
//!   while the first PUBLISH is still being challenged (most runs on TLS,
//!   some on TCP), it makes two publications and withdraws only one when it
//!   quits, so it would stay open for its publication interval. Alice therefore loads
//!   the module after registering, as a user can (`/insmod presence`): its
//!   first PUBLISH (`<basic>unknown</basic>`, shown as closed) is then the
//!   only publication, and every later one refreshes it.
//!
//! Phones bind random ports (baresip `sip_listen 127.0.0.1:0`, linphonec
//! ports `-1`) and the services take free ports, so tests never collide;
//! every phone and service process is killed when its test ends, passed or
//! failed, and each test is bounded by [`LIMIT`].

use std::time::{Duration, Instant};

use crate::phones_support::{
    credentials_file, Kind, Phone, Pki, Proxy, Service, Transport, User, DOMAIN,
};
use cluster_tests::cluster::{Cluster, Node};
use cluster_tests::free_port;
use cluster_tests::process::wait_for_tcp;
use cluster_tests::ua::Ua;
use rpc::presence::v1::Basic;
use tokio::task::block_in_place;

/// Longest a test may run (each takes 10–25 s on the 2-core VM).
const LIMIT: Duration = Duration::from_secs(150);

/// How requests are authenticated.
#[derive(Clone, Copy)]
enum Auth {
    None,
    /// Digest; `Some` overrides the offered algorithms.
    Digest(Option<&'static str>),
}

/// The service under test and where each phone sends its requests.
struct Setup {
    presence_url: String,
    registrar_url: String,
    /// Alice's edge, then Bob's (the same listener on one node).
    proxies: [Proxy; 2],
    _node: Option<Node>,
    _cluster: Option<Cluster>,
    _pki: Option<Pki>,
    _credentials: Option<tempfile::NamedTempFile>,
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

impl Setup {
    /// `presence-node` with one SIP listener per transport.
    fn one_node(transport: Transport, auth: Auth, users: &[&User]) -> Setup {
        let (auth_args, credentials) = auth_args(auth, users);
        let pki = (transport == Transport::Tls).then(Pki::new);
        let tls_port = free_port();
        let node = block_in_place(|| {
            Node::start_with(|_| {
                let mut args = auth_args.clone();
                if let Some(pki) = &pki {
                    args.extend(pki.edge_args(tls_port));
                }
                args
            })
        });
        if pki.is_some() {
            block_in_place(|| wait_for_tcp(tls_port, Duration::from_secs(60)));
        }
        let sip_port = if pki.is_some() {
            tls_port
        } else {
            node.sip_port
        };
        let proxy = Proxy {
            addr: ([127, 0, 0, 1], sip_port).into(),
            transport,
            ca: pki.as_ref().map(|p| p.ca.clone()),
        };
        Setup {
            presence_url: node.presence_url(),
            registrar_url: node.registrar_url(),
            proxies: [proxy.clone(), proxy],
            _node: Some(node),
            _cluster: None,
            _pki: pki,
            _credentials: credentials,
        }
    }

    /// Redis, presence, registrar and two edges: Alice on the first, Bob
    /// on the second.
    fn two_edges(transport: Transport, auth: Auth, users: &[&User]) -> Setup {
        let (auth_args, credentials) = auth_args(auth, users);
        let pki = (transport == Transport::Tls).then(Pki::new);
        let mut cluster = block_in_place(|| Cluster::start(0));
        let mut proxies = Vec::new();
        for id in ["edge-alice", "edge-bob"] {
            let mut args = auth_args.clone();
            let tls_port = free_port();
            if let Some(pki) = &pki {
                args.extend(pki.edge_args(tls_port));
            }
            let edge = block_in_place(|| cluster.add_edge_with_auth(id, &args));
            let addr = if pki.is_some() {
                block_in_place(|| wait_for_tcp(tls_port, Duration::from_secs(60)));
                ([127, 0, 0, 1], tls_port).into()
            } else {
                cluster.edge(edge)
            };
            proxies.push(Proxy {
                addr,
                transport,
                ca: pki.as_ref().map(|p| p.ca.clone()),
            });
        }
        let [alice, bob]: [Proxy; 2] = proxies.try_into().expect("two edges");
        Setup {
            presence_url: cluster.presence_url(),
            registrar_url: cluster.registrar_url(),
            proxies: [alice, bob],
            _node: None,
            _cluster: Some(cluster),
            _pki: pki,
            _credentials: credentials,
        }
    }
}

/// Edge flags for `auth`, and the credentials file they name.
fn auth_args(auth: Auth, users: &[&User]) -> (Vec<String>, Option<tempfile::NamedTempFile>) {
    match auth {
        Auth::None => (strings(&["--insecure-no-auth"]), None),
        Auth::Digest(algorithms) => {
            let file = credentials_file(users);
            let mut args = strings(&[
                "--auth-mode",
                "digest",
                "--auth-digest-ha1-file",
                &file.path().display().to_string(),
                "--auth-digest-realm",
                DOMAIN,
                "--auth-digest-secret",
                "one key for the edges of this test",
            ]);
            if let Some(algorithms) = algorithms {
                args.extend(strings(&["--auth-digest-algorithms", algorithms]));
            }
            (args, Some(file))
        }
    }
}

fn alice() -> User {
    User::new("alice", "alice-password")
}

fn bob() -> User {
    User::new("bob", "bob-password")
}

/// The exchange described at the top: baresip Alice and linphonec Bob.
async fn baresip_and_linphone_watch_each_other(setup: &Setup) {
    let (alice, bob) = (alice(), bob());
    let mut service =
        Service::connect(&setup.presence_url, &setup.registrar_url, &[&alice, &bob]).await;

    // Alice registers, then loads presence: a PUBLISH, and a SUBSCRIBE to
    // Bob a second later.
    let mut alice_phone = Phone::baresip("alice (baresip)", &alice, &setup.proxies[0], &[&bob]);
    alice_phone.registered().await;
    service.wait_registered(&alice, Some(Kind::Baresip)).await;
    alice_phone.load_presence().await;
    service.wait_watchers(&bob, &[&alice]).await;
    alice_phone.set_open(true).await;
    service.wait_basic(&alice, Basic::Open).await;

    // Bob registers, publishes and watches Alice; each sees the other.
    let mut bob_phone = Phone::linphone("bob (linphonec)", &bob, &setup.proxies[1], &[&alice]);
    bob_phone.registered().await;
    service.wait_registered(&bob, Some(Kind::Linphone)).await;
    service.wait_basic(&bob, Basic::Open).await;
    service.wait_watchers(&alice, &[&bob]).await;
    bob_phone.sees(&alice, true).await;
    alice_phone.sees(&bob, true).await;

    // Alice: closed, open.
    alice_phone.set_open(false).await;
    service.wait_basic(&alice, Basic::Closed).await;
    bob_phone.sees(&alice, false).await;
    alice_phone.set_open(true).await;
    service.wait_basic(&alice, Basic::Open).await;
    bob_phone.sees(&alice, true).await;

    // Bob quits: un-PUBLISH, un-SUBSCRIBE, un-REGISTER.
    bob_phone.quit().await;
    service.wait_registered(&bob, None).await;
    service.wait_watchers(&alice, &[]).await;
    service.wait_basic(&bob, Basic::Closed).await;
    alice_phone.sees(&bob, false).await;

    // Bob is back.
    bob_phone.restart();
    bob_phone.registered().await;
    service.wait_basic(&bob, Basic::Open).await;
    service.wait_watchers(&alice, &[&bob]).await;
    alice_phone.sees(&bob, true).await;
    bob_phone.sees(&alice, true).await;

    // Both quit: nothing of them is left.
    alice_phone.quit().await;
    service.wait_registered(&alice, None).await;
    service.wait_watchers(&bob, &[]).await;
    service.wait_basic(&alice, Basic::Closed).await;
    bob_phone.sees(&alice, false).await;
    bob_phone.quit().await;
    service.wait_registered(&bob, None).await;
    service.wait_watchers(&alice, &[]).await;
    service.wait_basic(&bob, Basic::Closed).await;
    for user in [&alice, &bob] {
        assert_eq!(service.tuples(user).await, ["closed"], "{}", user.aor());
    }

    // Every status the service streamed, after the initial "nothing"
    // (closed): Alice open by registration, closed by baresip's first
    // PUBLISH ("unknown"), then her open, closed, open and the end; Bob's
    // open, quit, open, quit.
    use Basic::{Closed, Open};
    assert_eq!(
        changes(&service, &alice),
        [Open, Closed, Open, Closed, Open, Closed],
        "Alice on the service"
    );
    assert_eq!(
        changes(&service, &bob),
        [Open, Closed, Open, Closed],
        "Bob on the service"
    );
}

/// The basic statuses streamed for `user`, without the first snapshot of
/// a presentity with nothing published.
fn changes(service: &Service, user: &User) -> Vec<Basic> {
    let mut seen = service.basics(user);
    if seen.first() == Some(&Basic::Closed) {
        seen.remove(0);
    }
    seen
}

async fn bounded(test: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(LIMIT, test)
        .await
        .unwrap_or_else(|_| panic!("the phones did not finish within {LIMIT:?}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_on_one_node_with_default_digest() {
    let setup = Setup::one_node(Transport::Udp, Auth::Digest(None), &[&alice(), &bob()]);
    bounded(baresip_and_linphone_watch_each_other(&setup)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_across_two_edges_without_authentication() {
    let setup = Setup::two_edges(Transport::Tcp, Auth::None, &[]);
    bounded(baresip_and_linphone_watch_each_other(&setup)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_across_two_edges_with_default_digest() {
    let setup = Setup::two_edges(Transport::Tls, Auth::Digest(None), &[&alice(), &bob()]);
    bounded(baresip_and_linphone_watch_each_other(&setup)).await;
}

/// linphonec answers SHA-256 challenges (RFC 8760): two of them log in and
/// watch each other across edges that offer nothing else. baresip 1.0
/// cannot: libre 1.1 answers MD5 challenges only and gives up — why MD5
/// is the default.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sha256_digest_across_two_edges() {
    let carol = User::new("carol", "carol-password");
    let setup = Setup::two_edges(
        Transport::Udp,
        Auth::Digest(Some("SHA-256")),
        &[&alice(), &bob(), &carol],
    );
    bounded(async {
        let (alice, bob) = (alice(), bob());
        let mut service = Service::connect(
            &setup.presence_url,
            &setup.registrar_url,
            &[&alice, &bob, &carol],
        )
        .await;
        let mut alice_phone =
            Phone::linphone("alice (linphonec)", &alice, &setup.proxies[0], &[&bob]);
        alice_phone.registered().await;
        service.wait_registered(&alice, Some(Kind::Linphone)).await;
        service.wait_basic(&alice, Basic::Open).await;
        service.wait_watchers(&bob, &[&alice]).await;
        alice_phone.sees(&bob, false).await;

        let mut bob_phone = Phone::linphone("bob (linphonec)", &bob, &setup.proxies[1], &[&alice]);
        bob_phone.registered().await;
        service.wait_registered(&bob, Some(Kind::Linphone)).await;
        service.wait_watchers(&alice, &[&bob]).await;
        bob_phone.sees(&alice, true).await;
        alice_phone.sees(&bob, true).await;

        alice_phone.quit().await;
        service.wait_registered(&alice, None).await;
        service.wait_basic(&alice, Basic::Closed).await;
        bob_phone.sees(&alice, false).await;
        alice_phone.restart();
        alice_phone.registered().await;
        bob_phone.sees(&alice, true).await;
        alice_phone.sees(&bob, true).await;

        let mut carol_phone = Phone::baresip("carol (baresip)", &carol, &setup.proxies[0], &[]);
        carol_phone
            .expect(
                "Register: Function not implemented",
                Duration::from_secs(15),
            )
            .await;
        assert!(service.bindings(&carol).await.is_empty());

        for phone in [&mut alice_phone, &mut bob_phone, &mut carol_phone] {
            phone.quit().await;
        }
        for user in [&alice, &bob] {
            service.wait_registered(user, None).await;
            service.wait_watchers(user, &[]).await;
            service.wait_basic(user, Basic::Closed).await;
            assert_eq!(service.tuples(user).await, ["closed"], "{}", user.aor());
        }
        use Basic::{Closed, Open};
        assert_eq!(changes(&service, &alice), [Open, Closed, Open, Closed]);
        assert_eq!(changes(&service, &bob), [Open, Closed]);
        assert!(changes(&service, &carol).is_empty());
    })
    .await;
}

/// A wrong password gets a phone nothing: no binding, no publication, no
/// subscription — whichever phone, whatever it tries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_refused() {
    let setup = Setup::one_node(Transport::Tcp, Auth::Digest(None), &[&alice(), &bob()]);
    bounded(async {
        let (alice, bob) = (alice(), bob());
        let mut service =
            Service::connect(&setup.presence_url, &setup.registrar_url, &[&alice, &bob]).await;
        let wrong = |user: &User| User::new(&user.name, "not-the-password");
        let mut alice_phone = Phone::baresip(
            "alice (baresip)",
            &wrong(&alice),
            &setup.proxies[0],
            &[&bob],
        );
        let mut bob_phone = Phone::linphone(
            "bob (linphonec)",
            &wrong(&bob),
            &setup.proxies[1],
            &[&alice],
        );
        alice_phone.refused().await;
        bob_phone.refused().await;
        // baresip tries PUBLISH and SUBSCRIBE anyway: both refused too.
        alice_phone.load_presence().await;
        alice_phone
            .expect(
                "publisher got error response 401 Unauthorized",
                Duration::from_secs(15),
            )
            .await;
        alice_phone
            .expect(
                &format!("subscriber closed <sip:{}>: 401 Unauthorized", bob.aor()),
                Duration::from_secs(15),
            )
            .await;
        for user in [&alice, &bob] {
            assert!(service.bindings(user).await.is_empty(), "{}", user.aor());
            assert!(service.watchers(user).await.is_empty(), "{}", user.aor());
            assert_eq!(
                service.basic(user).await,
                (Basic::Closed, 0),
                "{}",
                user.aor()
            );
            assert_eq!(service.tuples(user).await, ["closed"], "{}", user.aor());
        }
        alice_phone.quit().await;
        bob_phone.quit().await;
        for user in [&alice, &bob] {
            let seen = changes(&service, user);
            assert!(seen.is_empty(), "{} went through {seen:?}", user.aor());
        }
    })
    .await;
}

/// With `TCP_NODELAY` on both ends of the edge's connection to a separate
/// registrar, the first REGISTER across it takes a few milliseconds on
/// loopback. With Nagle's algorithm on either end it waits for a delayed
/// ACK (about 40 ms on Linux) — long enough for baresip's first PUBLISH to
/// overtake its registration. A fresh edge for each try, so each REGISTER
/// is the first on its connection, without authentication so that nothing
/// but the SIP and gRPC round trips is measured; the fastest of five, so a
/// busy machine does not fail the test.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_register_across_a_fresh_grpc_connection_is_not_delayed() {
    let mut cluster = block_in_place(|| Cluster::start(0));
    let mut took = Vec::new();
    for i in 0..5 {
        let edge = block_in_place(|| {
            cluster.add_edge_with_auth(
                &format!("edge-fresh-{i}"),
                &strings(&["--insecure-no-auth"]),
            )
        });
        let aor = format!("fresh-{i}@{DOMAIN}");
        let mut ua = Ua::udp(&aor, cluster.edge(edge)).await;
        let started = Instant::now();
        let response = ua.register(None, 600).await;
        took.push(started.elapsed());
        assert_eq!(response.status(), 200, "REGISTER through a fresh edge");
    }
    let fastest = took.iter().min().copied().unwrap_or_default();
    assert!(
        fastest < Duration::from_millis(30),
        "first REGISTER across a fresh gRPC connection: {took:?}"
    );
}
