//! Subscription records over the in-memory backend: creation under the
//! rules, rule changes, expiry, restore and the per-watcher limit.

use std::sync::Arc;
use std::time::Duration;

use contract::WINFO;
use store::FeedItem;

use super::watching::watching_key;
use super::*;
use crate::PresenceConfig;

const ALICE: &str = "alice@example.com";
const T0: u64 = 1_000_000_000;

fn subscriptions_with(config: PresenceConfig) -> Subscriptions {
    Subscriptions::new(Compositor::new(
        Arc::new(store::memory::MemoryBackend::new()),
        config,
    ))
}

fn subscriptions() -> Subscriptions {
    subscriptions_with(PresenceConfig::default())
}

fn dialog(id: &str, watcher: &str) -> DialogRecord {
    DialogRecord {
        id: id.into(),
        call_id: format!("{id}@test"),
        local_tag: "l".into(),
        remote_tag: "r".into(),
        watcher: watcher.into(),
        edge_id: "edge-1".into(),
        ..DialogRecord::default()
    }
}

fn new_subscription(presentity: &str, id: &str, watcher: &str) -> SubscribeCommand {
    SubscribeCommand {
        presentity: presentity.into(),
        dialog: dialog(id, watcher),
        expires: Some(600),
        refresh: false,
    }
}

async fn set_rule(subscriptions: &Subscriptions, watcher: &str, action: Action) {
    let watcher = watcher.to_string();
    rules::update(
        subscriptions.compositor.backend().as_ref(),
        ALICE,
        move |r| {
            r.watchers.insert(watcher.clone(), action);
        },
    )
    .await
    .unwrap();
}

/// The announcements on `ALICE`'s channel within a short wait.
async fn heard(feed: &mut tokio::sync::mpsc::Receiver<FeedItem>) -> Vec<String> {
    let mut seen = Vec::new();
    while let Ok(Some(item)) = tokio::time::timeout(Duration::from_millis(200), feed.recv()).await {
        seen.push(format!("{item:?}"));
    }
    seen
}

#[tokio::test]
async fn the_rules_decide_a_new_subscription() {
    let subscriptions = subscriptions();
    // Same domain: active.
    let colleague = subscriptions
        .subscribe(&new_subscription(ALICE, "d1", "bob@example.com"), T0)
        .await
        .unwrap();
    assert_eq!(colleague.status, SubscriptionStatus::Active);
    // Another domain: pending, shown the neutral document.
    let stranger = subscriptions
        .subscribe(&new_subscription(ALICE, "d2", "eve@elsewhere.org"), T0)
        .await
        .unwrap();
    assert_eq!(stranger.status, SubscriptionStatus::Pending);
    assert_eq!(stranger.view, neutral_view(ALICE));
    set_rule(&subscriptions, "mallory@example.com", Action::Block).await;
    assert!(matches!(
        subscriptions
            .subscribe(&new_subscription(ALICE, "d3", "mallory@example.com"), T0)
            .await,
        Err(SubscriptionError::Forbidden(_))
    ));
    // Watcher information is only for the presentity itself.
    let mut winfo = new_subscription(ALICE, "d4", "bob@example.com");
    winfo.dialog.package = WINFO.into();
    assert!(matches!(
        subscriptions.subscribe(&winfo, T0).await,
        Err(SubscriptionError::Forbidden(_))
    ));
    winfo.dialog.watcher = ALICE.into();
    let own = subscriptions.subscribe(&winfo, T0).await.unwrap();
    let watchers: Vec<&str> = own.watchers.iter().map(|w| w.watcher.as_str()).collect();
    assert_eq!(watchers, ["bob@example.com", "eve@elsewhere.org"]);
    // A refresh of an unknown dialog is 481's.
    let refresh = SubscribeCommand {
        refresh: true,
        ..new_subscription(ALICE, "gone", "bob@example.com")
    };
    assert!(matches!(
        subscriptions.subscribe(&refresh, T0).await,
        Err(SubscriptionError::NotFound(_))
    ));
}

#[tokio::test]
async fn a_rule_change_moves_live_subscriptions() {
    let subscriptions = subscriptions();
    let (control, mut feed) = subscriptions
        .compositor
        .backend()
        .open_feed()
        .await
        .unwrap();
    control.watch(ALICE).await.unwrap();
    subscriptions
        .subscribe(&new_subscription(ALICE, "d1", "bob@example.com"), T0)
        .await
        .unwrap();
    subscriptions
        .subscribe(&new_subscription(ALICE, "d2", "eve@elsewhere.org"), T0)
        .await
        .unwrap();
    heard(&mut feed).await;
    // Nothing changes: nothing moves.
    assert_eq!(subscriptions.apply_rules(ALICE).await.unwrap(), 0);

    set_rule(&subscriptions, "eve@elsewhere.org", Action::Allow).await;
    set_rule(&subscriptions, "bob@example.com", Action::Block).await;
    assert_eq!(subscriptions.apply_rules(ALICE).await.unwrap(), 2);
    let listed = subscriptions.list(ALICE).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].dialog.watcher, "eve@elsewhere.org");
    assert_eq!(listed[0].status, SubscriptionStatus::Active);
    assert!(listed[0].approved);
    let announced = heard(&mut feed).await.join("\n");
    assert!(announced.contains("rejected"), "{announced}");

    set_rule(&subscriptions, "eve@elsewhere.org", Action::PoliteBlock).await;
    assert_eq!(subscriptions.apply_rules(ALICE).await.unwrap(), 1);
    assert!(subscriptions.list(ALICE).await.unwrap()[0].masked);
    // The blocked watcher's slot is given back.
    let index = subscriptions
        .compositor
        .backend()
        .map_list(&watching_key("bob@example.com"))
        .await
        .unwrap();
    assert!(index.is_empty());
}

#[tokio::test]
async fn expiry_ends_a_subscription_once_and_a_refresh_postpones_it() {
    let subscriptions = subscriptions();
    let created = subscriptions
        .subscribe(&new_subscription(ALICE, "d1", "bob@example.com"), T0)
        .await
        .unwrap();
    let member = schedule_member(ALICE, "d1");
    let due = T0 + u64::from(created.expires) * 1000;
    // Not yet due.
    assert!(!subscriptions.expire(&member, due - 1).await.unwrap());
    // Refreshed: the old due time finds it alive.
    let refresh = SubscribeCommand {
        refresh: true,
        ..new_subscription(ALICE, "d1", "bob@example.com")
    };
    subscriptions
        .subscribe(&refresh, T0 + 10_000)
        .await
        .unwrap();
    assert!(!subscriptions.expire(&member, due).await.unwrap());
    let refreshed_due = T0 + 10_000 + u64::from(created.expires) * 1000;
    assert!(subscriptions.expire(&member, refreshed_due).await.unwrap());
    // Exactly once.
    assert!(!subscriptions.expire(&member, refreshed_due).await.unwrap());
    assert!(subscriptions.list(ALICE).await.unwrap().is_empty());
    assert!(!subscriptions.expire("no newline", T0).await.unwrap());
}

#[tokio::test]
async fn restore_recreates_a_lost_record_once_and_asks_the_rules_again() {
    let subscriptions = subscriptions();
    let (control, mut feed) = subscriptions
        .compositor
        .backend()
        .open_feed()
        .await
        .unwrap();
    control.watch(ALICE).await.unwrap();
    let bob = dialog("d1", "bob@example.com");
    assert!(subscriptions
        .restore(ALICE, bob.clone(), 60_000, T0)
        .await
        .unwrap());
    // Already there: left alone.
    assert!(!subscriptions.restore(ALICE, bob, 60_000, T0).await.unwrap());
    let listed = subscriptions.list(ALICE).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].expires_at_ms, T0 + 60_000);
    // A watcher the rules no longer simply allow is told to subscribe
    // again instead.
    set_rule(&subscriptions, "carol@example.com", Action::Confirm).await;
    assert!(!subscriptions
        .restore(ALICE, dialog("d2", "carol@example.com"), 60_000, T0)
        .await
        .unwrap());
    let announced = heard(&mut feed).await.join("\n");
    assert!(announced.contains("deactivated"), "{announced}");
    assert_eq!(subscriptions.list(ALICE).await.unwrap().len(), 1);
}

#[tokio::test]
async fn a_watcher_beyond_its_limit_is_refused_until_a_subscription_ends() {
    let subscriptions = subscriptions_with(PresenceConfig {
        max_subscriptions_per_watcher: 2,
        ..PresenceConfig::default()
    });
    let bob = "bob@example.com";
    subscriptions
        .subscribe(&new_subscription(ALICE, "d1", bob), T0)
        .await
        .unwrap();
    subscriptions
        .subscribe(&new_subscription("carol@example.com", "d2", bob), T0)
        .await
        .unwrap();
    let third = subscriptions
        .subscribe(&new_subscription("dave@example.com", "d3", bob), T0)
        .await;
    assert!(
        matches!(third, Err(SubscriptionError::TooMany { limit: 2 })),
        "{third:?}"
    );
    assert!(subscriptions
        .list("dave@example.com")
        .await
        .unwrap()
        .is_empty());
    // Other watchers are not affected, and refreshes pass.
    subscriptions
        .subscribe(
            &new_subscription("dave@example.com", "d4", "erin@example.com"),
            T0,
        )
        .await
        .unwrap();
    let refresh = SubscribeCommand {
        refresh: true,
        ..new_subscription(ALICE, "d1", bob)
    };
    subscriptions.subscribe(&refresh, T0 + 1).await.unwrap();
    // An un-SUBSCRIBE frees a slot…
    let end = SubscribeCommand {
        expires: Some(0),
        refresh: true,
        ..new_subscription(ALICE, "d1", bob)
    };
    subscriptions.subscribe(&end, T0 + 2).await.unwrap();
    subscriptions
        .subscribe(&new_subscription("dave@example.com", "d5", bob), T0 + 3)
        .await
        .unwrap();
    // …and so do unsubscribe and expiry.
    assert!(subscriptions
        .unsubscribe("dave@example.com", "d5")
        .await
        .unwrap());
    subscriptions
        .subscribe(&new_subscription("dave@example.com", "d6", bob), T0 + 4)
        .await
        .unwrap();
    let carol = schedule_member("carol@example.com", "d2");
    assert!(subscriptions.expire(&carol, T0 + 600_000).await.unwrap());
    subscriptions
        .subscribe(&new_subscription(ALICE, "d7", bob), T0 + 600_000)
        .await
        .unwrap();
    // An entry whose subscription silently lapsed stops counting.
    let lapsed = T0 + 10_000_000;
    subscriptions
        .subscribe(&new_subscription(ALICE, "d8", bob), lapsed)
        .await
        .unwrap();
    assert!(telemetry::encode()
        .contains("presence_limit_refusals_total{limit=\"subscriptions_per_watcher\"}"));
}

fn full_record(status: SubscriptionStatus) -> SubscriptionRecord {
    SubscriptionRecord {
        presentity: "ålice@example.com".into(),
        dialog: DialogRecord {
            remote_uri: "sip:bob@example.com".into(),
            local_uri: "sip:ålice@example.com".into(),
            remote_target: "sip:bob@192.0.2.7:5070;transport=tls;ob".into(),
            route_set: vec![
                "<sip:edge-1.example.com;lr>".into(),
                "<sip:[2001:db8::1]:5061;transport=tls;lr>".into(),
            ],
            transport: "tls".into(),
            remote_addr: "192.0.2.7:5070".into(),
            notify_cseq: 17,
            event_id: "🙂".into(),
            package: WINFO.into(),
            ..dialog("d1", "bob@example.com")
        },
        expires_at_ms: T0 + 3_600_000,
        status,
        masked: true,
        approved: true,
    }
}

#[test]
fn a_subscription_record_round_trips_in_the_binary_encoding() {
    for status in [
        SubscriptionStatus::Active,
        SubscriptionStatus::Pending,
        SubscriptionStatus::Terminated,
    ] {
        let record = full_record(status);
        let bytes = record.encode();
        assert_eq!(bytes[0], contract::codec::TAG);
        assert_eq!(SubscriptionRecord::decode(&bytes).unwrap(), record);
        for len in 0..bytes.len() {
            assert!(SubscriptionRecord::decode(&bytes[..len]).is_err(), "{len}");
        }
    }
    // Empty route set, empty strings, flags off.
    let bare = SubscriptionRecord {
        presentity: String::new(),
        dialog: DialogRecord::default(),
        expires_at_ms: 0,
        status: SubscriptionStatus::Active,
        masked: false,
        approved: false,
    };
    assert_eq!(SubscriptionRecord::decode(&bare.encode()).unwrap(), bare);
}

#[test]
fn a_subscription_record_is_smaller_than_its_json() {
    let record = full_record(SubscriptionStatus::Active);
    let binary = record.encode().len();
    let json = serde_json::to_vec(&record).unwrap().len();
    assert!(binary * 10 < json * 6, "binary {binary} B, JSON {json} B");
    eprintln!("subscription record: binary {binary} B, JSON {json} B");
}

#[test]
fn a_subscription_record_in_the_old_json_encoding_is_still_read() {
    // As the previous release wrote it (no `masked`, `approved`, `package`,
    // `route_set`: records older than those fields).
    let json = br#" {"presentity":"alice@example.com","dialog":{"id":"d","call_id":"c",
        "local_tag":"l","remote_tag":"r","remote_uri":"sip:b@x","local_uri":"sip:a@x",
        "remote_target":"sip:b@1.2.3.4","transport":"udp","remote_addr":"1.2.3.4:5060",
        "edge_id":"e","notify_cseq":3,"watcher":"sip:b@x"},"expires_at_ms":42,
        "status":"pending"}"#;
    let record = SubscriptionRecord::decode(json).unwrap();
    assert_eq!(record.presentity, ALICE);
    assert_eq!(record.status, SubscriptionStatus::Pending);
    assert_eq!(record.expires_at_ms, 42);
    assert_eq!(record.dialog.notify_cseq, 3);
    assert!(record.dialog.route_set.is_empty());
    assert!(!record.masked && !record.approved && !record.dialog.is_winfo());
    let full = full_record(SubscriptionStatus::Active);
    let old = serde_json::to_vec(&full).unwrap();
    assert_eq!(SubscriptionRecord::decode(&old).unwrap(), full);
}

#[test]
fn garbage_is_not_a_subscription_record() {
    for garbage in [
        &b""[..],
        b"\x01\x01",
        b"\x01\x09",
        b"[]",
        b"{\"presentity\":1}",
    ] {
        assert!(SubscriptionRecord::decode(garbage).is_err(), "{garbage:?}");
    }
    // A status that does not exist.
    let mut bytes = full_record(SubscriptionStatus::Active).encode();
    let status_at = bytes.len() - 3;
    bytes[status_at] = 9;
    assert!(matches!(
        SubscriptionRecord::decode(&bytes),
        Err(contract::CodecError::Invalid { .. })
    ));
}

#[tokio::test]
async fn subscriptions_the_previous_release_wrote_keep_working() {
    let subscriptions = subscriptions();
    let backend = subscriptions.compositor.backend().clone();
    let old = SubscriptionRecord {
        presentity: ALICE.into(),
        dialog: dialog("d1", "bob@example.com"),
        expires_at_ms: T0 + 600_000,
        status: SubscriptionStatus::Active,
        masked: false,
        approved: false,
    };
    let json = serde_json::to_vec(&old).unwrap();
    backend
        .map_put(&map_key(ALICE), "d1", Bytes::from(json))
        .await
        .unwrap();
    assert_eq!(
        subscriptions.list(ALICE).await.unwrap(),
        std::slice::from_ref(&old)
    );
    // A refresh reads the old record and writes the binary one.
    let refresh = SubscribeCommand {
        refresh: true,
        ..new_subscription(ALICE, "d1", "bob@example.com")
    };
    subscriptions.subscribe(&refresh, T0 + 1).await.unwrap();
    let raw = backend
        .map_get(&map_key(ALICE), "d1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw[0], contract::codec::TAG);
    let refreshed = SubscriptionRecord::decode(&raw).unwrap();
    assert_eq!(refreshed.dialog.call_id, old.dialog.call_id);
    assert!(refreshed.expires_at_ms > old.expires_at_ms);
}

#[test]
fn in_upgrade_mode_a_subscription_record_is_written_as_json_and_read_back() {
    // `--record-encoding json`: what a release before the binary encoding
    // reads, and what this one reads as well.
    let record = full_record(SubscriptionStatus::Pending);
    let json = record.encode_with(true);
    assert_eq!(json[0], b'{');
    assert!(serde_json::from_slice::<SubscriptionRecord>(&json).is_ok());
    assert_eq!(SubscriptionRecord::decode(&json).unwrap(), record);
}
