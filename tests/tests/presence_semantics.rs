//! What phones see, over real SIP: the RFC 3903 PUBLISH answers, two
//! devices composed into one view and one of them expiring, subscription
//! expiry, the per-dialog NOTIFY rate limit, and registration-driven
//! presence.

use std::time::Duration;

use bytes::Bytes;
use cluster_tests::cluster::{Cluster, Node};
use cluster_tests::ua::{body_text, pidf, sub_state, Ua, WAIT};
use sip::{Event, HeaderName, Method, SubState};

fn presence_event() -> Event {
    Event {
        package: "presence".into(),
        id: None,
        params: Vec::new(),
    }
}

/// A device's document: one tuple `tuple` with its own note.
fn device_pidf(aor: &str, tuple: &str, basic: &str, note: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:{aor}\">\n\
         <tuple id=\"{tuple}\"><status><basic>{basic}</basic></status><note>{note}</note></tuple>\n\
         </presence>\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_is_answered_as_rfc_3903_says() {
    let node = Node::start_with(|_| vec!["--min-expires".into(), "60".into()]);
    let token = node.tokens.token("alice@example.com");
    let mut alice = Ua::udp("alice@example.com", node.sip()).await;
    let aor = "alice@example.com";

    // Initial PUBLISH without a body: 400.
    let empty = alice.publish(&token, None, None, 600).await;
    assert_eq!(empty.status(), 400);

    // Too short: 423 with Min-Expires.
    let brief = alice
        .publish(&token, None, Some(&pidf(aor, "open", "x")), 30)
        .await;
    assert_eq!(brief.status(), 423);
    assert_eq!(
        brief
            .headers()
            .get(&HeaderName::MinExpires)
            .map(|v| v.to_string()),
        Some("60".to_string())
    );

    // Too long: granted, clamped to the maximum.
    let long = alice
        .publish(&token, None, Some(&pidf(aor, "open", "x")), 1_000_000)
        .await;
    assert_eq!(long.status(), 200);
    assert_eq!(long.headers().expires().expect("Expires"), Some(7200));

    // An unknown event package: 489 with Allow-Events.
    let request = alice
        .request(Method::Publish, aor, aor)
        .header(
            HeaderName::Event,
            Event {
                package: "dialog".into(),
                id: None,
                params: Vec::new(),
            },
        )
        .header(HeaderName::Expires, 600)
        .header(HeaderName::Authorization, format!("Bearer {token}"))
        .body("application/pidf+xml", Bytes::from(pidf(aor, "open", "x")))
        .build();
    let bad_event = alice.call(request).await;
    assert_eq!(bad_event.status(), 489);
    let allow = bad_event
        .headers()
        .get(&HeaderName::AllowEvents)
        .map(|v| v.to_string())
        .unwrap_or_default();
    assert!(allow.contains("presence"), "{allow}");

    // A body that is not PIDF: 415 with Accept.
    let request = alice
        .request(Method::Publish, aor, aor)
        .header(HeaderName::Event, presence_event())
        .header(HeaderName::Expires, 600)
        .header(HeaderName::Authorization, format!("Bearer {token}"))
        .body("text/plain", Bytes::from_static(b"available"))
        .build();
    let unsupported = alice.call(request).await;
    assert_eq!(unsupported.status(), 415);
    assert_eq!(
        unsupported
            .headers()
            .get(&HeaderName::Accept)
            .map(|v| v.to_string()),
        Some("application/pidf+xml".to_string())
    );

    // A refresh with an entity-tag nobody issued: 412.
    let unknown = alice.publish(&token, Some("not-a-tag"), None, 600).await;
    assert_eq!(unknown.status(), 412);

    // Refresh, modify and remove with the issued tag: each success a new tag.
    let first = alice
        .publish(&token, None, Some(&pidf(aor, "open", "one")), 600)
        .await;
    let tag1 = first.headers().sip_etag().expect("SIP-ETag").to_string();
    let refreshed = alice.publish(&token, Some(&tag1), None, 600).await;
    assert_eq!(refreshed.status(), 200);
    let tag2 = refreshed
        .headers()
        .sip_etag()
        .expect("SIP-ETag")
        .to_string();
    assert_ne!(tag1, tag2);
    let stale = alice.publish(&token, Some(&tag1), None, 600).await;
    assert_eq!(stale.status(), 412, "a replaced tag is no longer valid");
    let modified = alice
        .publish(&token, Some(&tag2), Some(&pidf(aor, "closed", "two")), 600)
        .await;
    assert_eq!(modified.status(), 200);
    let tag3 = modified.headers().sip_etag().expect("SIP-ETag").to_string();
    let removed = alice.publish(&token, Some(&tag3), None, 0).await;
    assert_eq!(removed.status(), 200);
    let gone = alice.publish(&token, Some(&tag3), None, 600).await;
    assert_eq!(gone.status(), 412);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_devices_are_composed_and_one_expiring_is_recomposed() {
    let cluster = Cluster::start(1);
    let alice_token = cluster.tokens.token("alice@example.com");
    let bob_token = cluster.tokens.token("bob@example.com");
    let aor = "alice@example.com";
    let mut desk = Ua::udp(aor, cluster.edge(0)).await;
    let mut mobile = Ua::udp(aor, cluster.edge(0)).await;
    let mut bob = Ua::udp("bob@example.com", cluster.edge(0)).await;
    let (ok, _) = bob.subscribe(aor, &bob_token, 300).await;
    assert_eq!(ok.status(), 200);
    bob.next_notify(WAIT).await.expect("initial NOTIFY");

    // The desk phone adds a vendor element of its own (prefix of its
    // choosing): other phones of that vendor must get it back.
    let desk_document = format!(
        "<?xml version=\"1.0\"?>\n\
         <p:presence xmlns:p=\"urn:ietf:params:xml:ns:pidf\" xmlns:acme=\"urn:x-acme:phone\" entity=\"sip:{aor}\">\n\
         <p:tuple id=\"desk\"><p:status><p:basic>open</p:basic></p:status>\
         <acme:line-key acme:index=\"3\">speed dial</acme:line-key>\
         <p:note>desk phone</p:note></p:tuple>\n\
         </p:presence>\n"
    );
    let desk_published = desk
        .publish(&alice_token, None, Some(&desk_document), 600)
        .await;
    assert_eq!(desk_published.status(), 200);
    bob.next_notify(WAIT)
        .await
        .expect("NOTIFY for the desk phone");
    // The mobile's publication lives three seconds.
    let mobile_published = mobile
        .publish(
            &alice_token,
            None,
            Some(&device_pidf(aor, "mobile", "open", "on the road")),
            3,
        )
        .await;
    assert_eq!(mobile_published.status(), 200);
    assert_ne!(
        mobile_published.headers().sip_etag().expect("SIP-ETag"),
        desk_published.headers().sip_etag().expect("SIP-ETag"),
        "each device has its own publication"
    );
    let both = bob
        .next_notify(WAIT)
        .await
        .expect("NOTIFY with both devices");
    let text = body_text(&both);
    assert!(
        text.contains("desk phone") && text.contains("on the road"),
        "{text}"
    );
    assert_eq!(text.matches("<tuple").count(), 2, "{text}");

    // The mobile's publication expires: watchers get the desk phone alone.
    let after = bob
        .next_notify(Duration::from_secs(10))
        .await
        .expect("NOTIFY after expiry");
    let text = body_text(&after);
    assert!(
        text.contains("desk phone") && !text.contains("on the road"),
        "{text}"
    );
    assert!(after.headers().cseq().expect("CSeq").seq > both.headers().cseq().expect("CSeq").seq);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_on_time_with_one_timeout_notify() {
    let cluster = Cluster::start(1);
    let bob_token = cluster.tokens.token("bob@example.com");
    let mut bob = Ua::udp("bob@example.com", cluster.edge(0)).await;
    let (ok, _) = bob.subscribe("alice@example.com", &bob_token, 2).await;
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers().expires().expect("Expires"), Some(2));
    let first = bob.next_notify(WAIT).await.expect("initial NOTIFY");
    assert_eq!(sub_state(&first).state, SubState::Active);
    let last = bob
        .next_notify(Duration::from_secs(10))
        .await
        .expect("NOTIFY at expiry");
    let state = sub_state(&last);
    assert_eq!(state.state, SubState::Terminated);
    assert_eq!(state.reason.as_deref(), Some("timeout"));
    assert!(
        bob.next_notify(Duration::from_secs(2)).await.is_none(),
        "exactly one final NOTIFY"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_rate_limited_per_dialog_latest_state_winning() {
    let mut cluster = Cluster::start(0);
    let mut args = cluster.tokens.edge_args();
    args.extend(["--notify-min-interval-ms".into(), "1500".into()]);
    let edge = cluster.add_edge_with_auth("edge-rate", &args);
    let alice_token = cluster.tokens.token("alice@example.com");
    let bob_token = cluster.tokens.token("bob@example.com");
    let aor = "alice@example.com";
    let mut alice = Ua::udp(aor, cluster.edge(edge)).await;
    let mut bob = Ua::udp("bob@example.com", cluster.edge(edge)).await;
    let (ok, dialog) = bob.subscribe(aor, &bob_token, 300).await;
    assert_eq!(ok.status(), 200);
    let mut dialog = dialog.expect("dialog");
    bob.next_notify(WAIT).await.expect("initial NOTIFY");

    // Six changes in quick succession, well inside one interval.
    let mut tag = None::<String>;
    for i in 0..6 {
        let response = alice
            .publish(
                &alice_token,
                tag.as_deref(),
                Some(&pidf(aor, "open", &format!("change {i}"))),
                600,
            )
            .await;
        assert_eq!(response.status(), 200);
        tag = Some(response.headers().sip_etag().expect("SIP-ETag").to_string());
    }
    let mut seen = Vec::new();
    while let Some(notify) = bob.next_notify(Duration::from_secs(4)).await {
        let text = body_text(&notify);
        let change = (0..6).find(|i| text.contains(&format!("change {i}")));
        seen.push((notify.headers().cseq().expect("CSeq").seq, change));
        if change == Some(5) {
            break;
        }
    }
    assert_eq!(
        seen.last().map(|s| s.1),
        Some(Some(5)),
        "the latest state arrives: {seen:?}"
    );
    assert!(seen.len() < 6, "changes were coalesced: {seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
        "in order: {seen:?}"
    );

    // A termination is never held back or dropped by the limit.
    let bye = bob.resubscribe(&mut dialog, &bob_token, 0).await;
    assert_eq!(bye.status(), 200);
    let last = bob.next_notify(WAIT).await.expect("final NOTIFY");
    assert_eq!(sub_state(&last).state, SubState::Terminated);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registrations_drive_presence_when_nothing_is_published() {
    let cluster = Cluster::start(1);
    let alice_token = cluster.tokens.token("alice@example.com");
    let bob_token = cluster.tokens.token("bob@example.com");
    let aor = "alice@example.com";
    let mut bob = Ua::udp("bob@example.com", cluster.edge(0)).await;
    let (ok, _) = bob.subscribe(aor, &bob_token, 300).await;
    assert_eq!(ok.status(), 200);
    let first = bob.next_notify(WAIT).await.expect("initial NOTIFY");
    assert!(
        body_text(&first).contains("<basic>closed</basic>"),
        "{}",
        body_text(&first)
    );

    // Alice's phone registers (for three seconds): she is open.
    let mut alice = Ua::udp(aor, cluster.edge(0)).await;
    assert_eq!(alice.register(Some(&alice_token), 3).await.status(), 200);
    let registered = bob.next_notify(WAIT).await.expect("NOTIFY on registration");
    assert!(
        body_text(&registered).contains("<basic>open</basic>"),
        "{}",
        body_text(&registered)
    );

    // Her own publication wins over the registration...
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf(aor, "closed", "do not disturb")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let own = bob
        .next_notify(WAIT)
        .await
        .expect("NOTIFY of the publication");
    let text = body_text(&own);
    assert!(
        text.contains("do not disturb") && !text.contains("<basic>open</basic>"),
        "{text}"
    );
    // ...and when it is removed, the registration shows again.
    let tag = published
        .headers()
        .sip_etag()
        .expect("SIP-ETag")
        .to_string();
    assert_eq!(
        alice
            .publish(&alice_token, Some(&tag), None, 0)
            .await
            .status(),
        200
    );
    let again = bob.next_notify(WAIT).await.expect("NOTIFY after removal");
    assert!(
        body_text(&again).contains("<basic>open</basic>"),
        "{}",
        body_text(&again)
    );

    // The registration lapses: closed, told to the watcher.
    let lapsed = bob
        .next_notify(Duration::from_secs(10))
        .await
        .expect("NOTIFY when the last registration goes");
    assert!(
        body_text(&lapsed).contains("<basic>closed</basic>"),
        "{}",
        body_text(&lapsed)
    );
}
