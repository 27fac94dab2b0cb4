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
        let (presentity, id) = (record.presentity.as_str(), record.dialog.id.as_str());
        assert_eq!(
            SubscriptionRecord::decode(presentity, id, &bytes).unwrap(),
            record
        );
        for len in 0..bytes.len() {
            let truncated = SubscriptionRecord::decode(presentity, id, &bytes[..len]);
            assert!(truncated.is_err(), "{len}");
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
    assert_eq!(
        SubscriptionRecord::decode("", "", &bare.encode()).unwrap(),
        bare
    );
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
    let record = SubscriptionRecord::decode(ALICE, "d", json).unwrap();
    assert_eq!(record.presentity, ALICE);
    assert_eq!(record.status, SubscriptionStatus::Pending);
    assert_eq!(record.expires_at_ms, 42);
    assert_eq!(record.dialog.notify_cseq, 3);
    assert!(record.dialog.route_set.is_empty());
    assert!(!record.masked && !record.approved && !record.dialog.is_winfo());
    let full = full_record(SubscriptionStatus::Active);
    let old = serde_json::to_vec(&full).unwrap();
    assert_eq!(
        SubscriptionRecord::decode(&full.presentity, &full.dialog.id, &old).unwrap(),
        full
    );
}

#[test]
fn garbage_is_not_a_subscription_record() {
    for garbage in [
        &b""[..],
        b"\x01\x01",
        b"\x01\x02",
        b"\x01\x09",
        b"[]",
        b"{\"presentity\":1}",
    ] {
        let decoded = SubscriptionRecord::decode(ALICE, "d1", garbage);
        assert!(decoded.is_err(), "{garbage:?}");
    }
    // A status that does not exist, or flags that do not.
    for flags in [3, 0x40, 0x80] {
        let mut bytes = full_record(SubscriptionStatus::Active).encode();
        bytes[2] = flags;
        assert!(matches!(
            SubscriptionRecord::decode("ålice@example.com", "d1", &bytes),
            Err(contract::CodecError::Invalid { .. })
        ));
    }
    let mut bytes = encode_v1(&full_record(SubscriptionStatus::Active));
    let status_at = bytes.len() - 3;
    bytes[status_at] = 9;
    assert!(matches!(
        SubscriptionRecord::decode("ålice@example.com", "d1", &bytes),
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
    let refreshed = SubscriptionRecord::decode(ALICE, "d1", &raw).unwrap();
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
    assert_eq!(
        SubscriptionRecord::decode(&record.presentity, &record.dialog.id, &json).unwrap(),
        record
    );
}

/// A record as the previous release wrote it in the binary encoding
/// (version 1: every field, the presentity and dialog id included).
fn encode_v1(record: &SubscriptionRecord) -> Vec<u8> {
    let mut w = Writer::record(1, 256);
    w.str(&record.presentity);
    record.dialog.encode_into(&mut w);
    w.varint(record.expires_at_ms);
    w.u8(record.status.code());
    w.bool(record.masked);
    w.bool(record.approved);
    w.into_vec()
}

#[test]
fn a_subscription_record_of_the_first_binary_version_is_still_read() {
    for status in [SubscriptionStatus::Active, SubscriptionStatus::Pending] {
        let record = full_record(status);
        let v1 = encode_v1(&record);
        assert_eq!(EntryForm::of_stored(&v1), EntryForm::Legacy);
        assert_eq!(
            SubscriptionRecord::decode(&record.presentity, &record.dialog.id, &v1).unwrap(),
            record
        );
    }
    let json = full_record(SubscriptionStatus::Active).encode_with(true);
    assert_eq!(EntryForm::of_stored(&json), EntryForm::Legacy);
    let compact = full_record(SubscriptionStatus::Active).encode_with(false);
    assert_eq!(EntryForm::of_stored(&compact), EntryForm::Compact);
}

/// A dialog as an edge makes it for a SUBSCRIBE of sipp's (bench/memory.sh).
fn typical_dialog(n: u32) -> DialogRecord {
    let user = format!("user{n:06}@example.com");
    DialogRecord {
        id: "0f1e2d3c4b5a6978".into(),
        call_id: format!("{n}-23456@127.0.0.1"),
        local_tag: "0f1e2d3c4b5a6978".into(),
        remote_tag: format!("23456-{n}"),
        remote_uri: format!("sip:{user}"),
        local_uri: format!("sip:{user}"),
        remote_target: format!("sip:user{n:06}@127.0.0.1:5061;transport=UDP"),
        route_set: Vec::new(),
        transport: "udp".into(),
        remote_addr: "127.0.0.1:5061".into(),
        edge_id: "bench-edge".into(),
        notify_cseq: 1,
        event_id: String::new(),
        watcher: user,
        package: contract::PRESENCE.into(),
    }
}

#[test]
fn a_typical_subscription_record_fits_a_112_byte_allocation() {
    // Redis stores the value with 4 bytes of header and terminator; jemalloc
    // serves 112 bytes for up to 112. The previous encoding took 320.
    let record = SubscriptionRecord {
        presentity: "user099999@example.com".into(),
        dialog: typical_dialog(99_999),
        expires_at_ms: 1_765_100_000_000,
        status: SubscriptionStatus::Active,
        masked: false,
        approved: false,
    };
    let compact = record.encode_with(false).len();
    let v1 = encode_v1(&record).len();
    assert!(compact + 4 <= 112, "{compact} bytes");
    assert!(v1 > 256, "{v1} bytes before");
    // A watcher of somebody else costs the watcher's AOR more.
    let other = SubscriptionRecord {
        presentity: "alice.liddell@example.com".into(),
        ..record
    };
    let (compact, v1) = (other.encode_with(false).len(), encode_v1(&other).len());
    assert!(
        compact + 4 <= 160 + 32 && v1 > 256,
        "{compact} bytes, {v1} before"
    );
}

/// Stores a subscription as the previous release did: `raw` (JSON or
/// binary version 1) under its dialog id, and the schedule, edge and
/// watcher entries under `presentity '\n' dialog-id`.
async fn store_as_previous_release(
    backend: &dyn store::Backend,
    record: &SubscriptionRecord,
    raw: Vec<u8>,
) {
    let member = schedule_member(&record.presentity, &record.dialog.id);
    backend
        .schedule(Schedule::Subscriptions, &member, record.expires_at_ms)
        .await
        .unwrap();
    backend
        .map_put(
            &map_key(&record.presentity),
            &record.dialog.id,
            Bytes::from(raw),
        )
        .await
        .unwrap();
    backend
        .map_put(
            &Key::new(Kind::EdgeDialogs, record.dialog.edge_id.clone()),
            &member,
            Bytes::new(),
        )
        .await
        .unwrap();
    backend
        .map_put(
            &watching_key(&record.dialog.watcher),
            &member,
            Bytes::from(record.expires_at_ms.to_string()),
        )
        .await
        .unwrap();
}

fn previous_release_record(id: &str) -> SubscriptionRecord {
    SubscriptionRecord {
        presentity: ALICE.into(),
        dialog: dialog(id, "bob@example.com"),
        expires_at_ms: T0 + 600_000,
        status: SubscriptionStatus::Active,
        masked: false,
        approved: false,
    }
}

/// Every field of a map, sorted.
async fn fields(backend: &dyn store::Backend, key: &Key) -> Vec<String> {
    let mut fields: Vec<String> = backend
        .map_list(key)
        .await
        .unwrap()
        .into_iter()
        .map(|(field, _)| field)
        .collect();
    fields.sort();
    fields
}

/// Every field of every map of `edge`'s index, the legacy one included.
async fn indexed(backend: &dyn store::Backend, edge: &str) -> Vec<String> {
    let mut all = fields(backend, &Key::new(Kind::EdgeDialogs, edge)).await;
    for shard in 0..crate::ownership::INDEX_SHARDS {
        let key = Key::new(Kind::EdgeDialogShard, format!("{edge}/{shard}"));
        all.extend(fields(backend, &key).await);
    }
    all.sort();
    all
}

#[tokio::test]
async fn subscriptions_with_entries_of_the_previous_release_expire_and_end_cleanly() {
    let subscriptions = subscriptions();
    let backend = subscriptions.compositor.backend().clone();
    let b = backend.as_ref();
    // d1 in JSON, d2 in binary version 1, both with old-form entries.
    let (d1, d2) = (previous_release_record("d1"), previous_release_record("d2"));
    store_as_previous_release(b, &d1, serde_json::to_vec(&d1).unwrap()).await;
    store_as_previous_release(b, &d2, encode_v1(&d2)).await;
    let watching = watching_key("bob@example.com");
    assert_eq!(fields(b, &watching).await.len(), 2);
    // The old schedule member expires the record and finds and removes
    // both of its entries.
    let member = schedule_member(ALICE, "d1");
    assert!(subscriptions.expire(&member, T0 + 600_000).await.unwrap());
    assert_eq!(indexed(b, "edge-1").await, [schedule_member(ALICE, "d2")]);
    assert_eq!(fields(b, &watching).await, [schedule_member(ALICE, "d2")]);
    // An unsubscribe does too.
    assert!(subscriptions.unsubscribe(ALICE, "d2").await.unwrap());
    assert!(indexed(b, "edge-1").await.is_empty());
    assert!(fields(b, &watching).await.is_empty());
    assert_eq!(b.schedule_len(Schedule::Subscriptions).await.unwrap(), 0);

    // An un-SUBSCRIBE of an old one, and a rule that blocks another.
    let (d3, d4) = (previous_release_record("d3"), previous_release_record("d4"));
    store_as_previous_release(b, &d3, encode_v1(&d3)).await;
    store_as_previous_release(b, &d4, serde_json::to_vec(&d4).unwrap()).await;
    let end = SubscribeCommand {
        expires: Some(0),
        refresh: true,
        ..new_subscription(ALICE, "d3", "bob@example.com")
    };
    subscriptions.subscribe(&end, T0 + 1).await.unwrap();
    assert_eq!(indexed(b, "edge-1").await, [schedule_member(ALICE, "d4")]);
    set_rule(&subscriptions, "bob@example.com", Action::Block).await;
    assert_eq!(subscriptions.apply_rules(ALICE).await.unwrap(), 1);
    assert!(indexed(b, "edge-1").await.is_empty());
    assert!(fields(b, &watching).await.is_empty());
    assert!(subscriptions.list(ALICE).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_rewritten_old_subscription_moves_its_entries_to_the_compact_form() {
    let subscriptions = subscriptions();
    let backend = subscriptions.compositor.backend().clone();
    let b = backend.as_ref();
    let d1 = previous_release_record("d1");
    store_as_previous_release(b, &d1, encode_v1(&d1)).await;
    let member = schedule_member(ALICE, "d1");
    let watching = watching_key("bob@example.com");
    // A refresh through another edge: the record in version 2, the edge's
    // entry in the new owner's shard, the watcher's under the dialog id.
    let refresh = SubscribeCommand {
        refresh: true,
        dialog: DialogRecord {
            edge_id: "edge-2".into(),
            ..dialog("d1", "bob@example.com")
        },
        ..new_subscription(ALICE, "d1", "bob@example.com")
    };
    subscriptions.subscribe(&refresh, T0 + 1).await.unwrap();
    let raw = b.map_get(&map_key(ALICE), "d1").await.unwrap().unwrap();
    assert_eq!(EntryForm::of_stored(&raw), EntryForm::Compact);
    assert!(indexed(b, "edge-1").await.is_empty());
    assert_eq!(indexed(b, "edge-2").await, std::slice::from_ref(&member));
    assert_eq!(fields(b, &watching).await, ["d1"]);
    // A rule change rewriting an old record moves its entries as well.
    let d2 = SubscriptionRecord {
        status: SubscriptionStatus::Pending,
        ..previous_release_record("d2")
    };
    store_as_previous_release(b, &d2, serde_json::to_vec(&d2).unwrap()).await;
    set_rule(&subscriptions, "bob@example.com", Action::Allow).await;
    assert_eq!(subscriptions.apply_rules(ALICE).await.unwrap(), 1);
    assert_eq!(indexed(b, "edge-1").await, [schedule_member(ALICE, "d2")]);
    assert!(fields(b, &Key::new(Kind::EdgeDialogs, "edge-1"))
        .await
        .is_empty());
    assert_eq!(fields(b, &watching).await, ["d1", "d2"]);
    // Expiry then finds them where they are now.
    assert!(subscriptions.expire(&member, T0 + 600_001).await.unwrap());
    let d2_member = schedule_member(ALICE, "d2");
    assert!(subscriptions
        .expire(&d2_member, T0 + 600_001)
        .await
        .unwrap());
    assert!(indexed(b, "edge-1").await.is_empty());
    assert!(indexed(b, "edge-2").await.is_empty());
    assert!(fields(b, &watching).await.is_empty());
}

#[tokio::test]
async fn in_upgrade_mode_entries_are_written_as_the_previous_release_reads_them() {
    let subscriptions = subscriptions();
    let backend = subscriptions.compositor.backend().clone();
    let b = backend.as_ref();
    // A compact subscription, then the upgrade mode switched on (a
    // rollback being prepared): its refresh writes JSON and moves the
    // entries to the old form, where the previous release looks.
    subscriptions
        .subscribe(&new_subscription(ALICE, "d1", "bob@example.com"), T0)
        .await
        .unwrap();
    let member = schedule_member(ALICE, "d1");
    assert_eq!(fields(b, &watching_key("bob@example.com")).await, ["d1"]);
    let json = SubscriptionRecord {
        expires_at_ms: T0 + 700_000,
        ..previous_release_record("d1")
    };
    // What a refresh in upgrade mode does, without switching the
    // process-wide mode under the other tests.
    let raw = b.map_get(&map_key(ALICE), "d1").await.unwrap().unwrap();
    assert!(b
        .map_replace(
            &map_key(ALICE),
            "d1",
            &raw,
            Bytes::from(json.encode_with(true))
        )
        .await
        .unwrap());
    crate::ownership::index(b, EntryForm::Legacy, "edge-1", (ALICE, "d1"))
        .await
        .unwrap();
    crate::ownership::unindex(b, EntryForm::Compact, "edge-1", (ALICE, "d1"))
        .await
        .unwrap();
    move_watching(b, EntryForm::Compact, EntryForm::Legacy, &json)
        .await
        .unwrap();
    assert_eq!(
        fields(b, &Key::new(Kind::EdgeDialogs, "edge-1")).await,
        std::slice::from_ref(&member)
    );
    assert_eq!(
        fields(b, &watching_key("bob@example.com")).await,
        std::slice::from_ref(&member)
    );
    assert!(subscriptions.expire(&member, T0 + 700_000).await.unwrap());
    assert!(indexed(b, "edge-1").await.is_empty());
    assert!(fields(b, &watching_key("bob@example.com")).await.is_empty());
}

#[tokio::test]
async fn the_watcher_limit_counts_entries_of_both_forms_once_each() {
    let subscriptions = subscriptions_with(PresenceConfig {
        max_subscriptions_per_watcher: 2,
        ..PresenceConfig::default()
    });
    let backend = subscriptions.compositor.backend().clone();
    let b = backend.as_ref();
    let d1 = previous_release_record("d1");
    store_as_previous_release(b, &d1, encode_v1(&d1)).await;
    // A left-over compact entry of the same dialog counts once.
    b.map_put(
        &watching_key("bob@example.com"),
        "d1",
        Bytes::from((T0 + 600_000).to_string()),
    )
    .await
    .unwrap();
    subscriptions
        .subscribe(
            &new_subscription("carol@example.com", "d2", "bob@example.com"),
            T0,
        )
        .await
        .unwrap();
    let third = subscriptions
        .subscribe(
            &new_subscription("dave@example.com", "d3", "bob@example.com"),
            T0,
        )
        .await;
    assert!(
        matches!(third, Err(SubscriptionError::TooMany { limit: 2 })),
        "{third:?}"
    );
}
