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
