//! The application-facing gRPC API against real processes: a cluster on a
//! real redis-server and the single-process node on its memory backend.
//! WatchPresence (snapshot, changes, resume without loss), SetPresence and
//! ClearPresence (seen by SIP watchers and GetPresence), BatchGetPresence of
//! hundreds, ListBindings and Unregister, and bearer-token scopes.

use std::collections::HashMap;
use std::time::Duration;

use cluster_tests::cluster::{Cluster, Node};
use cluster_tests::ua::{pidf, Ua, WAIT};
use grpc_auth::{ServiceCredentials, TokenSource};
use rpc::presence::v1 as pb;
use rpc::presence::v1::presence_client::PresenceClient;
use rpc::presence::v1::watch_presence_event::Event;
use rpc::registrar::v1 as rb;
use rpc::registrar::v1::registrar_client::RegistrarClient;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::Code;

/// Generous: the machine is shared and loaded.
const EVENT_WAIT: Duration = Duration::from_secs(15);

type Authed = InterceptedService<Channel, ServiceCredentials>;

async fn credentials(token: Option<String>) -> ServiceCredentials {
    match token {
        Some(token) => ServiceCredentials::start(TokenSource::Static(token))
            .await
            .expect("credentials"),
        None => ServiceCredentials::none(),
    }
}

fn channel(url: String) -> Channel {
    tonic::transport::Endpoint::from_shared(url)
        .expect("URL")
        .tcp_nodelay(true)
        .connect_lazy()
}

async fn presence(url: String, token: Option<String>) -> PresenceClient<Authed> {
    PresenceClient::with_interceptor(channel(url), credentials(token).await)
}

async fn registrar(url: String, token: Option<String>) -> RegistrarClient<Authed> {
    RegistrarClient::with_interceptor(channel(url), credentials(token).await)
}

type Events = tonic::Streaming<pb::WatchPresenceEvent>;

async fn watch(
    client: &mut PresenceClient<Authed>,
    presentities: &[&str],
    known: &HashMap<String, u64>,
) -> Events {
    client
        .watch_presence(pb::WatchPresenceRequest {
            presentities: presentities.iter().map(|p| p.to_string()).collect(),
            known_versions: known.clone(),
        })
        .await
        .expect("WatchPresence")
        .into_inner()
}

async fn next_event(events: &mut Events) -> Event {
    tokio::time::timeout(EVENT_WAIT, events.message())
        .await
        .expect("a WatchPresence event in time")
        .expect("stream healthy")
        .expect("stream open")
        .event
        .expect("event set")
}

/// The snapshot up to `synced`: states by presentity.
async fn snapshot(events: &mut Events) -> HashMap<String, pb::PresenceState> {
    let mut states = HashMap::new();
    loop {
        match next_event(events).await {
            Event::State(state) => {
                assert!(
                    states.insert(state.presentity.clone(), state).is_none(),
                    "a presentity twice in one snapshot"
                );
            }
            Event::Synced(_) => return states,
        }
    }
}

async fn next_state(events: &mut Events) -> pb::PresenceState {
    match next_event(events).await {
        Event::State(state) => state,
        Event::Synced(_) => panic!("synced twice"),
    }
}

/// Waits for a state of `presentity` matching `check`; every state on the
/// way must be newer than the one before (per presentity).
async fn state_where(
    events: &mut Events,
    seen: &mut HashMap<String, u64>,
    presentity: &str,
    check: impl Fn(&pb::PresenceState) -> bool,
) -> pb::PresenceState {
    loop {
        let state = next_state(events).await;
        let last = seen.insert(state.presentity.clone(), state.version);
        assert!(
            last.is_none_or(|last| state.version > last),
            "version went backwards or repeated: {last:?} then {}",
            state.version
        );
        if state.presentity == presentity && check(&state) {
            return state;
        }
    }
}

async fn set(
    client: &mut PresenceClient<Authed>,
    presentity: &str,
    status: &str,
    note: &str,
) -> Result<pb::SetPresenceResponse, tonic::Status> {
    client
        .set_presence(pb::SetPresenceRequest {
            presentity: presentity.into(),
            source: "calendar".into(),
            status: status.into(),
            note: note.into(),
            expires: Some(600),
            pidf: Vec::new(),
        })
        .await
        .map(|r| r.into_inner())
}

async fn clear(
    client: &mut PresenceClient<Authed>,
    presentity: &str,
) -> Result<pb::ClearPresenceResponse, tonic::Status> {
    client
        .clear_presence(pb::ClearPresenceRequest {
            presentity: presentity.into(),
            source: "calendar".into(),
        })
        .await
        .map(|r| r.into_inner())
}

/// Snapshot, live changes from SIP and from SetPresence, then a reconnect
/// with the last versions: what changed while away arrives, nothing else.
async fn watch_resumes_without_loss(
    presence_url: String,
    edge: std::net::SocketAddr,
    alice_token: &str,
) {
    let mut client = presence(presence_url, None).await;
    let first = set(&mut client, "alice@example.com", "available", "at desk")
        .await
        .expect("SetPresence");

    let mut events = watch(
        &mut client,
        &["alice@example.com", "bob@example.com", "alice@example.com"],
        &HashMap::new(),
    )
    .await;
    let states = snapshot(&mut events).await;
    assert_eq!(states.len(), 2, "{states:?}");
    let alice = &states["alice@example.com"];
    assert_eq!(alice.version, first.version);
    assert_eq!(alice.status, "available");
    assert_eq!(alice.note, "at desk");
    assert_eq!(states["bob@example.com"].version, 0);
    assert_eq!(states["bob@example.com"].basic, pb::Basic::Closed as i32);
    let mut seen: HashMap<String, u64> =
        states.iter().map(|(p, s)| (p.clone(), s.version)).collect();

    // A phone publishes over SIP: the stream hears it.
    let mut phone = Ua::udp("alice@example.com", edge).await;
    let published = phone
        .publish(
            alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "from the phone")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let state = state_where(&mut events, &mut seen, "alice@example.com", |s| {
        String::from_utf8_lossy(&s.pidf).contains("from the phone")
    })
    .await;
    assert!(state.version > first.version);

    // An application changes the status: the stream hears it.
    let busy = set(&mut client, "alice@example.com", "busy", "budget review")
        .await
        .expect("SetPresence");
    let state = state_where(&mut events, &mut seen, "alice@example.com", |s| {
        s.version == busy.version
    })
    .await;
    assert_eq!(state.status, "busy");
    assert_eq!(state.note, "budget review");

    // The client goes away; changes happen meanwhile.
    drop(events);
    let known = seen.clone();
    set(&mut client, "alice@example.com", "in-meeting", "offsite")
        .await
        .expect("SetPresence");
    let cleared = clear(&mut client, "alice@example.com")
        .await
        .expect("ClearPresence");
    assert!(cleared.removed);

    // Reconnecting with the versions it had: Alice's latest state, not
    // Bob's (unchanged), then live changes again.
    let mut events = watch(
        &mut client,
        &["alice@example.com", "bob@example.com"],
        &known,
    )
    .await;
    let states = snapshot(&mut events).await;
    assert_eq!(states.len(), 1, "{states:?}");
    let alice = &states["alice@example.com"];
    assert_eq!(alice.version, cleared.version);
    assert!(String::from_utf8_lossy(&alice.pidf).contains("from the phone"));
    seen.insert("alice@example.com".into(), alice.version);
    let bob_set = set(&mut client, "bob@example.com", "away", "")
        .await
        .expect("SetPresence");
    let state = state_where(&mut events, &mut seen, "bob@example.com", |s| {
        s.version == bob_set.version
    })
    .await;
    assert_eq!(state.status, "away");

    // Reconnecting already up to date: nothing but `synced`.
    let mut events = watch(
        &mut client,
        &["alice@example.com", "bob@example.com"],
        &seen,
    )
    .await;
    assert!(snapshot(&mut events).await.is_empty());

    // Bad requests are refused.
    let empty = client
        .watch_presence(pb::WatchPresenceRequest::default())
        .await
        .expect_err("refused");
    assert_eq!(empty.code(), Code::InvalidArgument);
    let too_many = client
        .watch_presence(pb::WatchPresenceRequest {
            presentities: (0..1001).map(|i| format!("u{i}@example.com")).collect(),
            known_versions: HashMap::new(),
        })
        .await
        .expect_err("refused");
    assert_eq!(too_many.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_presence_resumes_without_loss_on_redis() {
    let cluster = Cluster::start(1);
    let token = cluster.tokens.token("alice@example.com");
    watch_resumes_without_loss(cluster.presence_url(), cluster.edge(0), &token).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_presence_resumes_without_loss_in_memory() {
    let node = Node::start();
    let token = node.tokens.token("alice@example.com");
    watch_resumes_without_loss(node.presence_url(), node.sip(), &token).await;
}

/// Many streams, many changes: each stream sees every presentity's final
/// state, versions only ever going forward.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_watchers_all_converge() {
    let cluster = Cluster::start(0);
    let presentities: Vec<String> = (0..20).map(|i| format!("user{i}@example.com")).collect();
    let names: Vec<&str> = presentities.iter().map(String::as_str).collect();
    let mut client = presence(cluster.presence_url(), None).await;
    let mut streams = Vec::new();
    for _ in 0..5 {
        let mut events = watch(&mut client, &names, &HashMap::new()).await;
        let states = snapshot(&mut events).await;
        assert_eq!(states.len(), presentities.len());
        streams.push(events);
    }
    let mut last = HashMap::new();
    for round in 0..5 {
        for presentity in &presentities {
            let done = set(&mut client, presentity, "busy", &format!("round {round}"))
                .await
                .expect("SetPresence");
            last.insert(presentity.clone(), done.version);
        }
    }
    for events in &mut streams {
        let mut seen = HashMap::new();
        let mut converged = 0;
        while converged < presentities.len() {
            let state = next_state(events).await;
            let previous = seen.insert(state.presentity.clone(), state.version);
            assert!(previous.is_none_or(|p| state.version > p));
            if last.get(&state.presentity) == Some(&state.version) {
                assert_eq!(state.note, "round 4");
                converged += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_presence_reaches_sip_watchers_and_get_presence() {
    let cluster = Cluster::start(1);
    let bob_token = cluster.tokens.token("bob@example.com");
    let mut bob = Ua::udp("bob@example.com", cluster.edge(0)).await;
    let (response, _dialog) = bob.subscribe("alice@example.com", &bob_token, 300).await;
    assert_eq!(response.status(), 200);
    let initial = bob.next_notify(WAIT).await.expect("initial NOTIFY");
    assert!(String::from_utf8_lossy(initial.body()).contains("closed"));

    let mut client = presence(cluster.presence_url(), None).await;
    let done = set(
        &mut client,
        "alice@example.com",
        "in-meeting",
        "Quarterly review",
    )
    .await
    .expect("SetPresence");
    assert_eq!(done.expires, 600);
    let notify = bob
        .next_notify(WAIT)
        .await
        .expect("NOTIFY after SetPresence");
    let body = String::from_utf8_lossy(notify.body()).to_string();
    assert!(body.contains("Quarterly review"), "{body}");
    assert!(body.contains("meeting"), "{body}");
    assert!(body.contains("<basic>open</basic>"), "{body}");

    let state = client
        .get_presence(pb::GetPresenceRequest {
            presentity: "alice@example.com".into(),
        })
        .await
        .expect("GetPresence")
        .into_inner();
    assert_eq!(state.status, "in-meeting");
    assert_eq!(state.note, "Quarterly review");
    assert_eq!(state.version, done.version);

    // A whole document from an application.
    let document = pidf("alice@example.com", "open", "custom document");
    let response = client
        .set_presence(pb::SetPresenceRequest {
            presentity: "alice@example.com".into(),
            source: "crm".into(),
            pidf: document.into_bytes(),
            ..pb::SetPresenceRequest::default()
        })
        .await;
    assert!(response.is_ok(), "{response:?}");
    let notify = bob
        .next_notify(WAIT)
        .await
        .expect("NOTIFY after the document");
    let body = String::from_utf8_lossy(notify.body()).to_string();
    assert!(
        body.contains("custom document") && body.contains("Quarterly review"),
        "{body}"
    );

    // Clearing both leaves nothing: the watcher sees closed.
    assert!(
        clear(&mut client, "alice@example.com")
            .await
            .expect("clear")
            .removed
    );
    let _ = bob
        .next_notify(WAIT)
        .await
        .expect("NOTIFY after the first clear");
    let crm = client
        .clear_presence(pb::ClearPresenceRequest {
            presentity: "alice@example.com".into(),
            source: "crm".into(),
        })
        .await
        .expect("ClearPresence")
        .into_inner();
    assert!(crm.removed);
    let notify = bob
        .next_notify(WAIT)
        .await
        .expect("NOTIFY after the last clear");
    let body = String::from_utf8_lossy(notify.body()).to_string();
    assert!(
        body.contains("closed") && !body.contains("custom document"),
        "{body}"
    );
    assert!(
        !clear(&mut client, "alice@example.com")
            .await
            .expect("clear")
            .removed
    );

    // Invalid requests.
    let refused = set(&mut client, "alice@example.com", "", "")
        .await
        .expect_err("no status");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let refused = client
        .set_presence(pb::SetPresenceRequest {
            presentity: "alice@example.com".into(),
            source: "crm".into(),
            pidf: b"<presence>".to_vec(),
            ..pb::SetPresenceRequest::default()
        })
        .await
        .expect_err("invalid document");
    assert_eq!(refused.code(), Code::InvalidArgument);
    let refused = client
        .set_presence(pb::SetPresenceRequest {
            presentity: "alice@example.com".into(),
            source: "crm".into(),
            status: "busy".into(),
            expires: Some(0),
            ..pb::SetPresenceRequest::default()
        })
        .await
        .expect_err("zero interval");
    assert_eq!(refused.code(), Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_get_presence_of_three_hundred() {
    let cluster = Cluster::start(0);
    let mut client = presence(cluster.presence_url(), None).await;
    let presentities: Vec<String> = (0..300)
        .map(|i| format!("member{i:03}@example.com"))
        .collect();
    for (i, presentity) in presentities.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let status = if i % 4 == 0 { "busy" } else { "away" };
        set(&mut client, presentity, status, &format!("n{i}"))
            .await
            .expect("SetPresence");
    }
    let states = client
        .batch_get_presence(pb::BatchGetPresenceRequest {
            presentities: presentities.clone(),
        })
        .await
        .expect("BatchGetPresence")
        .into_inner()
        .states;
    assert_eq!(states.len(), 300);
    for (i, (state, presentity)) in states.iter().zip(&presentities).enumerate() {
        assert_eq!(&state.presentity, presentity, "order kept");
        match i % 4 {
            0 => assert_eq!(
                (state.status.as_str(), state.note.clone()),
                ("busy", format!("n{i}"))
            ),
            2 => assert_eq!(
                (state.status.as_str(), state.note.clone()),
                ("away", format!("n{i}"))
            ),
            _ => {
                assert_eq!(state.version, 0, "{presentity}");
                assert_eq!(state.basic, pb::Basic::Closed as i32);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unregister_removes_bindings() {
    let cluster = Cluster::start(1);
    let token = cluster.tokens.token("alice@example.com");
    let mut desk = Ua::udp("alice@example.com", cluster.edge(0)).await;
    let mut mobile = Ua::udp("alice@example.com", cluster.edge(0)).await;
    assert_eq!(desk.register(Some(&token), 600).await.status(), 200);
    assert_eq!(mobile.register(Some(&token), 600).await.status(), 200);

    let mut client = registrar(cluster.registrar_url(), None).await;
    let list = |aors: Vec<&str>| rb::ListBindingsRequest {
        aors: aors.into_iter().map(String::from).collect(),
    };
    let listed = client
        .list_bindings(list(vec!["alice@example.com", "nobody@example.com"]))
        .await
        .expect("ListBindings")
        .into_inner()
        .aors;
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0].aor, "alice@example.com");
    assert_eq!(listed[0].bindings.len(), 2);
    assert!(listed[1].bindings.is_empty());
    let desk_contact = listed[0]
        .bindings
        .iter()
        .find(|b| b.uri.contains(&desk.local.port().to_string()))
        .expect("the desk phone's binding")
        .uri
        .clone();

    // One binding by its contact.
    let removed = client
        .unregister(rb::UnregisterRequest {
            aor: "alice@example.com".into(),
            contact: desk_contact.clone(),
        })
        .await
        .expect("Unregister")
        .into_inner()
        .removed;
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].uri, desk_contact);
    let left = client
        .lookup(rb::LookupRequest {
            aor: "alice@example.com".into(),
        })
        .await
        .expect("Lookup")
        .into_inner()
        .bindings;
    assert_eq!(left.len(), 1);
    assert!(left[0].uri.contains(&mobile.local.port().to_string()));

    // A phone's REGISTER query (no Contact) agrees.
    let query = desk.register(Some(&token), 600).await;
    assert_eq!(query.status(), 200);

    // All of them.
    let removed = client
        .unregister(rb::UnregisterRequest {
            aor: "alice@example.com".into(),
            contact: String::new(),
        })
        .await
        .expect("Unregister")
        .into_inner()
        .removed;
    assert!(!removed.is_empty());
    let listed = client
        .list_bindings(list(vec!["alice@example.com"]))
        .await
        .expect("ListBindings")
        .into_inner()
        .aors;
    assert!(listed[0].bindings.is_empty(), "{listed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_callers_need_the_right_scope() {
    let mut cluster = Cluster::start_authenticated(1);
    let tokens = &cluster.tokens;
    let read = tokens.api_token(&["presence:read"]);
    let write = tokens.api_token(&["presence:write"]);
    let admin = tokens.api_token(&["presence:admin"]);
    let internal = tokens.internal_token();
    let url = cluster.presence_url();
    let get = pb::GetPresenceRequest {
        presentity: "alice@example.com".into(),
    };

    // No token, or a SIP-only token: refused.
    let refused = presence(url.clone(), None)
        .await
        .get_presence(get.clone())
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let challenge = refused
        .metadata()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(challenge.contains("scope=\"presence:read\""), "{challenge}");
    let sip_token = tokens.token("alice@example.com");
    let refused = presence(url.clone(), Some(sip_token.clone()))
        .await
        .get_presence(get.clone())
        .await
        .expect_err("SIP scopes only");
    assert_eq!(refused.code(), Code::PermissionDenied);

    // Read: queries yes, changes no.
    let mut reader = presence(url.clone(), Some(read.clone())).await;
    assert!(reader.get_presence(get.clone()).await.is_ok());
    let refused = set(&mut reader, "alice@example.com", "busy", "")
        .await
        .expect_err("read only");
    assert_eq!(refused.code(), Code::PermissionDenied);
    // Write: changes yes.
    let mut writer = presence(url.clone(), Some(write.clone())).await;
    assert!(set(&mut writer, "alice@example.com", "busy", "")
        .await
        .is_ok());

    // The internal RPCs: an edge's token yes, even an admin's no.
    let publish = pb::PublishRequest {
        presentity: "carol@example.com".into(),
        body: pidf("carol@example.com", "open", "internal").into_bytes(),
        content_type: "application/pidf+xml".into(),
        expires: Some(600),
        publisher: "carol@example.com".into(),
        ..pb::PublishRequest::default()
    };
    let refused = presence(url.clone(), Some(admin.clone()))
        .await
        .publish(publish.clone())
        .await
        .expect_err("admin is not an edge");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let allowed = presence(url.clone(), Some(internal.clone()))
        .await
        .publish(publish)
        .await;
    assert!(allowed.is_ok(), "{allowed:?}");

    // Registrar: reading needs read, removing needs admin.
    let registrar_url = cluster.registrar_url();
    let list = rb::ListBindingsRequest {
        aors: vec!["alice@example.com".into()],
    };
    assert!(registrar(registrar_url.clone(), Some(read.clone()))
        .await
        .list_bindings(list)
        .await
        .is_ok());
    let unregister = rb::UnregisterRequest {
        aor: "alice@example.com".into(),
        contact: String::new(),
    };
    let refused = registrar(registrar_url.clone(), Some(write))
        .await
        .unregister(unregister.clone())
        .await
        .expect_err("write is not admin");
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert!(registrar(registrar_url.clone(), Some(admin))
        .await
        .unregister(unregister)
        .await
        .is_ok());

    // Health needs no token.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel(url.clone()));
    let serving = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        serving.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // Phones keep working: the edge presents its internal token.
    let alice_token = tokens.token("alice@example.com");
    let bob_token = tokens.token("bob@example.com");
    let mut alice = Ua::udp("alice@example.com", cluster.edge(0)).await;
    assert_eq!(alice.register(Some(&alice_token), 600).await.status(), 200);
    let mut bob = Ua::udp("bob@example.com", cluster.edge(0)).await;
    let (response, _) = bob.subscribe("alice@example.com", &bob_token, 300).await;
    assert_eq!(response.status(), 200);
    assert!(bob.next_notify(WAIT).await.is_some());
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "via edge")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let notify = bob.next_notify(WAIT).await.expect("NOTIFY");
    assert!(String::from_utf8_lossy(notify.body()).contains("via edge"));

    // An edge without the service token is refused by the services: its
    // phones get a server error, not a challenge for their own credentials.
    cluster.service_token = None;
    let bare = cluster.add_edge("edge-without-token");
    let mut dave = Ua::udp("dave@example.com", cluster.edge(bare)).await;
    let dave_token = cluster.tokens.token("dave@example.com");
    let response = dave.register(Some(&dave_token), 600).await;
    assert_eq!(response.status(), 500);

    // A stream ends when its token expires.
    let short = cluster
        .tokens
        .token_with_ttl("app@example.com", &["presence:read"], 3);
    let mut client = presence(url, Some(short)).await;
    let mut events = watch(&mut client, &["alice@example.com"], &HashMap::new()).await;
    let _ = snapshot(&mut events).await;
    let ended = tokio::time::timeout(EVENT_WAIT, async {
        loop {
            match events.message().await {
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => return Some(status.code()),
            }
        }
    })
    .await
    .expect("the stream ends in time");
    assert_eq!(ended, Some(Code::Unauthenticated));
}

/// The single-process node with `--grpc-auth`: its gRPC API takes the SIP
/// provider's tokens with presence scopes, and its own edge keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_grpc_auth() {
    let node = Node::start_with(|_| vec!["--grpc-auth".into()]);
    let get = pb::GetPresenceRequest {
        presentity: "alice@example.com".into(),
    };
    let refused = presence(node.presence_url(), None)
        .await
        .get_presence(get.clone())
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated);
    let read = node.tokens.api_token(&["presence:read"]);
    let mut reader = presence(node.presence_url(), Some(read)).await;
    let alice_token = node.tokens.token("alice@example.com");
    let mut alice = Ua::udp("alice@example.com", node.sip()).await;
    assert_eq!(alice.register(Some(&alice_token), 600).await.status(), 200);
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "node")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let state = reader
        .get_presence(get)
        .await
        .expect("GetPresence")
        .into_inner();
    assert_eq!(state.note, "node");
    let refused = registrar(node.registrar_url(), None)
        .await
        .lookup(rb::LookupRequest {
            aor: "alice@example.com".into(),
        })
        .await
        .expect_err("no token");
    assert_eq!(refused.code(), Code::Unauthenticated);
}

/// Redis restarts empty: no announcement tells anyone, but the feed's
/// resynchronisation makes the stream re-read, so the watcher learns that
/// Alice's state is gone; later changes flow again. A stream that fails
/// meanwhile is reopened with the versions seen, as a client would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_presence_resynchronises_after_a_redis_restart() {
    let mut cluster = Cluster::start(0);
    let mut client = presence(cluster.presence_url(), None).await;
    let first = set(&mut client, "alice@example.com", "busy", "before")
        .await
        .expect("SetPresence");
    let mut events = watch(&mut client, &["alice@example.com"], &HashMap::new()).await;
    let states = snapshot(&mut events).await;
    assert_eq!(states["alice@example.com"].version, first.version);
    let mut known: HashMap<String, u64> =
        HashMap::from([("alice@example.com".to_string(), first.version)]);

    tokio::task::block_in_place(|| cluster.redis.restart()).expect("Redis restarts");

    // Wait for the vanished state (version 0), reopening the stream on
    // failure with the versions seen.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no resynchronisation"
        );
        match tokio::time::timeout(EVENT_WAIT, events.message()).await {
            Ok(Ok(Some(pb::WatchPresenceEvent {
                event: Some(Event::State(state)),
            }))) => {
                known.insert(state.presentity.clone(), state.version);
                if state.version == 0 {
                    assert_eq!(state.basic, pb::Basic::Closed as i32);
                    break;
                }
            }
            Ok(Ok(Some(_))) => {}
            _ => {
                tokio::time::sleep(Duration::from_millis(500)).await;
                if let Ok(response) = client
                    .watch_presence(pb::WatchPresenceRequest {
                        presentities: vec!["alice@example.com".into()],
                        known_versions: known.clone(),
                    })
                    .await
                {
                    events = response.into_inner();
                }
            }
        }
    }

    // The feed watches Alice again: a new change arrives.
    let after = loop {
        match set(&mut client, "alice@example.com", "away", "after").await {
            Ok(done) => break done,
            Err(status) => {
                assert_eq!(status.code(), Code::Unavailable, "{status:?}");
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "presence never recovered"
                );
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    };
    // The stream in hand may be a reopened one, still sending its snapshot.
    loop {
        match next_event(&mut events).await {
            Event::State(state) if state.version == after.version => {
                assert_eq!(state.note, "after");
                break;
            }
            Event::State(state) => {
                let last = known.insert(state.presentity.clone(), state.version);
                assert!(last.is_none_or(|last| state.version > last || state.version == 0));
            }
            Event::Synced(_) => {}
        }
    }
}
