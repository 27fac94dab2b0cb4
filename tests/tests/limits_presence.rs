//! The presence service's per-client limits and the registration hold-off,
//! over real SIP against `presence-node` (README, Limits).

use std::time::Duration;

use cluster_tests::cluster::Node;
use cluster_tests::ua::{body_text, pidf, Ua, WAIT};
use sip::{HeaderName, Request};

const ALICE: &str = "alice@example.com";
const BOB: &str = "bob@example.com";

/// Every NOTIFY that arrives within `window`.
async fn notifies_within(ua: &mut Ua, window: Duration) -> Vec<Request> {
    let deadline = tokio::time::Instant::now() + window;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return seen;
        }
        match ua.next_notify(left).await {
            Some(notify) => seen.push(notify),
            None => return seen,
        }
    }
}

/// One token sent thousands of initial PUBLISHes for its own presentity:
/// beyond the cap each is refused with 503 and Retry-After before anything
/// is composed, while the publications that exist still refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_publications_beyond_the_cap_get_503() {
    let node = Node::start_with(|_| vec!["--max-publications-per-presentity".into(), "3".into()]);
    let token = node.tokens.token(ALICE);
    let mut phone = Ua::udp(ALICE, node.sip()).await;
    let mut tags = Vec::new();
    for i in 0..3 {
        let body = pidf(ALICE, "open", &format!("device {i}"));
        let response = phone.publish(&token, None, Some(&body), 600).await;
        assert_eq!(response.status(), 200);
        tags.push(response.headers().sip_etag().expect("SIP-ETag").to_string());
    }
    for i in 3..6 {
        let body = pidf(ALICE, "open", &format!("device {i}"));
        let response = phone.publish(&token, None, Some(&body), 600).await;
        assert_eq!(response.status(), 503, "{response:?}");
        assert!(
            response.reason().starts_with("Too Many Publications"),
            "{}",
            response.reason()
        );
        assert!(response.headers().get(HeaderName::RetryAfter).is_some());
    }
    // What exists still refreshes; a removal frees a slot.
    let refreshed = phone.publish(&token, Some(&tags[0]), None, 600).await;
    assert_eq!(refreshed.status(), 200);
    let removed = phone.publish(&token, Some(&tags[1]), None, 0).await;
    assert_eq!(removed.status(), 200);
    let body = pidf(ALICE, "open", "device 6");
    assert_eq!(
        phone.publish(&token, None, Some(&body), 600).await.status(),
        200
    );
}

/// A phone quitting un-PUBLISHes and then un-REGISTERs: its watcher goes
/// from the published state straight to `closed`, with no `open` from the
/// registration in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_quitting_does_not_blink_open() {
    let node = Node::start();
    let alice_token = node.tokens.token(ALICE);
    let bob_token = node.tokens.token(BOB);
    let mut bob = Ua::udp(BOB, node.sip()).await;
    let (ok, _) = bob.subscribe(ALICE, &bob_token, 300).await;
    assert_eq!(ok.status(), 200);
    bob.next_notify(WAIT).await.expect("initial NOTIFY");

    let mut alice = Ua::udp(ALICE, node.sip()).await;
    assert_eq!(alice.register(Some(&alice_token), 600).await.status(), 200);
    bob.next_notify(WAIT).await.expect("NOTIFY on registration");
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf(ALICE, "closed", "in a meeting")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let own = bob
        .next_notify(WAIT)
        .await
        .expect("NOTIFY of the publication");
    assert!(body_text(&own).contains("in a meeting"));
    let tag = published
        .headers()
        .sip_etag()
        .expect("SIP-ETag")
        .to_string();

    // Quit: un-PUBLISH, then un-REGISTER, as linphone and baresip do.
    assert_eq!(
        alice
            .publish(&alice_token, Some(&tag), None, 0)
            .await
            .status(),
        200
    );
    // A phone sends its un-REGISTER a moment after the un-PUBLISH's answer;
    // back to back, the edge would fold the two changes into one NOTIFY
    // and hide the blink.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(alice.register(Some(&alice_token), 0).await.status(), 200);
    let seen = notifies_within(&mut bob, Duration::from_secs(4)).await;
    let bodies: Vec<String> = seen.iter().map(body_text).collect();
    assert!(
        bodies.iter().all(|b| !b.contains("<basic>open</basic>")),
        "no open between the un-PUBLISH and the un-REGISTER: {bodies:#?}"
    );
    assert!(
        bodies
            .last()
            .is_some_and(|b| b.contains("<basic>closed</basic>") && !b.contains("in a meeting")),
        "{bodies:#?}"
    );
}

/// The hold-off only holds back the registration's state for a moment: a
/// phone that un-PUBLISHes and stays registered is shown `open` soon after.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_phone_that_stays_registered_shows_open_after_the_hold_off() {
    let node = Node::start();
    let alice_token = node.tokens.token(ALICE);
    let bob_token = node.tokens.token(BOB);
    let mut bob = Ua::udp(BOB, node.sip()).await;
    let (ok, _) = bob.subscribe(ALICE, &bob_token, 300).await;
    assert_eq!(ok.status(), 200);
    bob.next_notify(WAIT).await.expect("initial NOTIFY");
    let mut alice = Ua::udp(ALICE, node.sip()).await;
    assert_eq!(alice.register(Some(&alice_token), 600).await.status(), 200);
    bob.next_notify(WAIT).await.expect("NOTIFY on registration");
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf(ALICE, "closed", "away")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    bob.next_notify(WAIT)
        .await
        .expect("NOTIFY of the publication");
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
    let shown = bob
        .next_notify(WAIT)
        .await
        .expect("NOTIFY after the hold-off");
    assert!(
        body_text(&shown).contains("<basic>open</basic>"),
        "{}",
        body_text(&shown)
    );
}

/// One token created 20,000 subscriptions: beyond the per-watcher cap a new
/// SUBSCRIBE gets 503 with Retry-After, refreshes still pass, and an
/// un-SUBSCRIBE gives the slot back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_beyond_the_watcher_cap_get_503() {
    let node = Node::start_with(|_| vec!["--max-subscriptions-per-watcher".into(), "3".into()]);
    let bob_token = node.tokens.token(BOB);
    let mut bob = Ua::udp(BOB, node.sip()).await;
    let mut dialogs = Vec::new();
    for i in 0..3 {
        let (ok, dialog) = bob
            .subscribe(&format!("user{i}@example.com"), &bob_token, 300)
            .await;
        assert_eq!(ok.status(), 200);
        dialogs.push(dialog.expect("dialog"));
    }
    let (refused, none) = bob.subscribe("user3@example.com", &bob_token, 300).await;
    assert_eq!(refused.status(), 503, "{refused:?}");
    assert!(none.is_none());
    assert!(
        refused.reason().starts_with("Too Many Subscriptions"),
        "{}",
        refused.reason()
    );
    assert!(refused.headers().get(HeaderName::RetryAfter).is_some());
    // Another watcher is not affected.
    let alice_token = node.tokens.token(ALICE);
    let mut alice = Ua::udp(ALICE, node.sip()).await;
    let (ok, _) = alice
        .subscribe("user3@example.com", &alice_token, 300)
        .await;
    assert_eq!(ok.status(), 200);
    // Refreshes pass; an un-SUBSCRIBE frees a slot.
    assert_eq!(
        bob.resubscribe(&mut dialogs[0], &bob_token, 300)
            .await
            .status(),
        200
    );
    assert_eq!(
        bob.resubscribe(&mut dialogs[1], &bob_token, 0)
            .await
            .status(),
        200
    );
    let (ok, _) = bob.subscribe("user3@example.com", &bob_token, 300).await;
    assert_eq!(ok.status(), 200);
}
