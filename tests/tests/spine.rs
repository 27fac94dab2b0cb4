//! The spine, end to end: a presence change travels edge → gRPC → Redis →
//! edge, over real UDP, with real processes and a real redis-server.

use std::time::Duration;

use cluster_tests::cluster::Cluster;
use cluster_tests::ua::{pidf, Ua, WAIT};
use rpc::presence::v1::presence_client::PresenceClient;
use rpc::presence::v1::GetPresenceRequest;
use rpc::registrar::v1::registrar_client::RegistrarClient;
use rpc::registrar::v1::LookupRequest;
use sip::{HeaderName, Method, SubState};

fn body_text(request: &sip::Request) -> String {
    String::from_utf8_lossy(request.body()).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_change_reaches_a_watcher_on_another_edge() {
    let cluster = Cluster::start(2);
    let alice_token = cluster.tokens.token("alice@example.com");
    let bob_token = cluster.tokens.token("bob@example.com");

    // REGISTER without credentials: RFC 8898 challenge.
    let mut alice = Ua::udp("alice@example.com", cluster.edge(0)).await;
    let challenge = alice.register(None, 600).await;
    assert_eq!(challenge.status(), 401);
    let www = challenge
        .headers()
        .get(&HeaderName::WwwAuthenticate)
        .expect("WWW-Authenticate")
        .to_string();
    assert!(www.starts_with("Bearer"), "{www}");
    assert!(www.contains("realm=\"presence-test\""), "{www}");

    // An invalid token: 401 with error="invalid_token".
    let refused = alice.register(Some("not.a.token"), 600).await;
    assert_eq!(refused.status(), 401);
    let www = refused
        .headers()
        .get(&HeaderName::WwwAuthenticate)
        .unwrap_or_default()
        .to_string();
    assert!(www.contains("invalid_token"), "{www}");

    // A valid token for someone else's AOR: 403.
    let mut mallory = Ua::udp("alice@example.com", cluster.edge(0)).await;
    assert_eq!(mallory.register(Some(&bob_token), 600).await.status(), 403);

    // REGISTER with the right token: 200 OK listing the contact and its expiry.
    let ok = alice.register(Some(&alice_token), 600).await;
    assert_eq!(ok.status(), 200);
    let contacts = match ok.headers().contacts().expect("Contact in 200") {
        sip::Contacts::List(list) => list,
        sip::Contacts::Star => panic!("star in 200 OK"),
    };
    assert_eq!(contacts.len(), 1);
    let expires = contacts[0].expires().expect("expires parameter");
    assert!((595..=600).contains(&expires), "{expires}");

    // The registrar's Lookup shows the binding.
    let mut registrar = RegistrarClient::connect(cluster.registrar_url())
        .await
        .expect("registrar gRPC");
    let bindings = registrar
        .lookup(LookupRequest {
            aor: "alice@example.com".into(),
        })
        .await
        .expect("Lookup")
        .into_inner()
        .bindings;
    assert_eq!(bindings.len(), 1);
    assert!(
        bindings[0].uri.contains(&alice.local.port().to_string()),
        "{:?}",
        bindings[0]
    );

    // Bob watches Alice through the *other* edge.
    let mut bob = Ua::udp("bob@example.com", cluster.edge(1)).await;
    let (response, dialog) = bob.subscribe("alice@example.com", &bob_token, 300).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().to().expect("To").tag().is_some(),
        "200 OK carries a To tag"
    );
    assert_eq!(response.headers().expires().expect("Expires"), Some(300));
    let mut dialog = dialog.expect("dialog");
    let initial = bob.next_notify(WAIT).await.expect("initial NOTIFY");
    let state = initial
        .headers()
        .subscription_state()
        .expect("Subscription-State")
        .expect("present");
    assert_eq!(state.state, SubState::Active);
    assert!(
        state.expires.is_some_and(|e| (295..=300).contains(&e)),
        "{state:?}"
    );
    assert_eq!(
        initial
            .headers()
            .content_type()
            .expect("Content-Type")
            .expect("present")
            .essence(),
        "application/pidf+xml"
    );
    assert!(
        body_text(&initial).contains("<basic>open</basic>"),
        "registered, nothing published yet: registration-driven presence: {}",
        body_text(&initial)
    );
    let first_cseq = initial.headers().cseq().expect("CSeq").seq;

    // Alice publishes through edge 0; Bob hears it through edge 1.
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "at my desk")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let etag = published
        .headers()
        .sip_etag()
        .expect("SIP-ETag")
        .to_string();
    assert_eq!(published.headers().expires().expect("Expires"), Some(600));
    let changed = bob.next_notify(WAIT).await.expect("NOTIFY after PUBLISH");
    assert!(
        body_text(&changed).contains("open"),
        "{}",
        body_text(&changed)
    );
    assert!(
        body_text(&changed).contains("at my desk"),
        "{}",
        body_text(&changed)
    );
    let second_cseq = changed.headers().cseq().expect("CSeq").seq;
    assert!(
        second_cseq > first_cseq,
        "CSeq grows: {first_cseq} then {second_cseq}"
    );

    // gRPC GetPresence shows what the watcher saw.
    let mut presence = PresenceClient::connect(cluster.presence_url())
        .await
        .expect("presence gRPC");
    let state = presence
        .get_presence(GetPresenceRequest {
            presentity: "alice@example.com".into(),
        })
        .await
        .expect("GetPresence")
        .into_inner();
    assert_eq!(state.basic, rpc::presence::v1::Basic::Open as i32);
    assert!(String::from_utf8_lossy(&state.pidf).contains("at my desk"));
    assert!(state.version > 0);

    // A modify with SIP-If-Match: a new ETag and a NOTIFY with the new state.
    let modified = alice
        .publish(
            &alice_token,
            Some(&etag),
            Some(&pidf("alice@example.com", "closed", "gone home")),
            600,
        )
        .await;
    assert_eq!(modified.status(), 200);
    let new_etag = modified.headers().sip_etag().expect("SIP-ETag").to_string();
    assert_ne!(new_etag, etag);
    let changed = bob.next_notify(WAIT).await.expect("NOTIFY after modify");
    assert!(body_text(&changed).contains("gone home"));
    let third_cseq = changed.headers().cseq().expect("CSeq").seq;
    assert!(third_cseq > second_cseq);

    // The old ETag is spent: 412.
    let stale = alice.publish(&alice_token, Some(&etag), None, 600).await;
    assert_eq!(stale.status(), 412);

    // Unsubscribe: 200 OK, then a final NOTIFY with terminated.
    let bye = bob.resubscribe(&mut dialog, &bob_token, 0).await;
    assert_eq!(bye.status(), 200);
    let last = bob.next_notify(WAIT).await.expect("final NOTIFY");
    let state = last
        .headers()
        .subscription_state()
        .expect("Subscription-State")
        .expect("present");
    assert_eq!(state.state, SubState::Terminated);
    assert!(last.headers().cseq().expect("CSeq").seq > third_cseq);

    // Nothing more reaches Bob after the subscription ended.
    let after = alice
        .publish(
            &alice_token,
            Some(&new_etag),
            Some(&pidf("alice@example.com", "open", "back")),
            600,
        )
        .await;
    assert_eq!(after.status(), 200);
    assert!(bob.next_notify(Duration::from_millis(700)).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_oversized_input_is_refused_without_harm() {
    let cluster = Cluster::start(1);
    let mut ua = Ua::udp("carol@example.com", cluster.edge(0)).await;

    // A request with a broken CSeq: 400 built from what could be read.
    let garbage = b"OPTIONS sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKbad1\r\n\
From: <sip:carol@example.com>;tag=1\r\n\
To: <sip:example.com>\r\n\
Call-ID: bad-cseq@test\r\n\
CSeq: not-a-number OPTIONS\r\n\
Max-Forwards: 70\r\n\
Content-Length: 0\r\n\r\n";
    ua.send_bytes(garbage).await;
    let bad = ua
        .next_raw(WAIT)
        .await
        .expect("a response to the malformed request");
    let bad = String::from_utf8_lossy(&bad);
    assert!(bad.starts_with("SIP/2.0 400 "), "{bad}");
    assert!(bad.contains("Call-ID: bad-cseq@test\r\n"), "{bad}");

    // Pure noise and an oversized datagram: dropped, the edge keeps serving.
    ua.send_bytes(&[0xff; 512]).await;
    ua.send_bytes(&vec![b'A'; 70_000][..65_000]).await;
    let probe = ua
        .request(Method::Options, "example.com", "example.com")
        .build();
    ua.send(&probe).await;
    let ok = ua.response_to(&probe).await;
    assert_eq!(ok.status(), 200);
    assert!(ok
        .headers()
        .get_all(&HeaderName::Allow)
        .any(|m| m == "SUBSCRIBE"));

    // A method the service does not serve: 405 with Allow.
    let invite = ua
        .request(Method::Invite, "dave@example.com", "dave@example.com")
        .build();
    let refused = ua.call(invite).await;
    assert_eq!(refused.status(), 405);
    assert!(refused.headers().get(&HeaderName::Allow).is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn services_and_redis_going_away_give_503_then_recover() {
    let mut cluster = Cluster::start(1);
    let token = cluster.tokens.token("erin@example.com");
    let mut ua = Ua::udp("erin@example.com", cluster.edge(0)).await;
    assert_eq!(ua.register(Some(&token), 600).await.status(), 200);

    // Redis down: 503 with Retry-After, within the deadline (no hang).
    cluster.redis.stop().expect("stopping redis");
    let started = std::time::Instant::now();
    let refused = ua.register(Some(&token), 600).await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().get(&HeaderName::RetryAfter).is_some());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // Redis back (empty): the services reconnect by themselves.
    cluster.redis.restart().expect("restarting redis");
    let mut recovered = false;
    for _ in 0..40 {
        if ua.register(Some(&token), 600).await.status() == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(recovered, "REGISTER succeeds again after Redis restarted");

    // The presence service down: the edge answers 503, not a hang.
    cluster.presence.kill();
    let started = std::time::Instant::now();
    let refused = ua
        .publish(
            &token,
            None,
            Some(&pidf("erin@example.com", "open", "")),
            600,
        )
        .await;
    assert_eq!(refused.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(5));
}
