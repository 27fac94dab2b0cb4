use std::net::IpAddr;
use std::sync::Arc;

use super::super::Watched;
use super::SourceCounts;
use crate::transport::SourceKey;

fn key(text: &str) -> SourceKey {
    SourceKey::of(text.parse::<IpAddr>().unwrap())
}

#[test]
fn a_source_gets_as_many_places_as_the_cap_and_a_dropped_one_comes_back() {
    let counts = Arc::new(SourceCounts::default());
    let first = counts.take(key("192.0.2.1"), 2).unwrap();
    let _second = counts.take(key("192.0.2.1"), 2).unwrap();
    assert!(counts.take(key("192.0.2.1"), 2).is_none());
    assert_eq!(counts.held(key("192.0.2.1")), 2);
    // Another address has places of its own; one IPv6 /64 is one source.
    assert!(counts.take(key("192.0.2.2"), 2).is_some());
    let _v6 = counts.take(key("2001:db8:1:2::1"), 1).unwrap();
    assert!(counts.take(key("2001:db8:1:2::ffff"), 1).is_none());
    drop(first);
    assert_eq!(counts.held(key("192.0.2.1")), 1);
    assert!(counts.take(key("192.0.2.1"), 2).is_some());
}

#[test]
fn a_forced_place_passes_the_cap_and_counts() {
    let counts = Arc::new(SourceCounts::default());
    let _held = counts.take(key("192.0.2.1"), 1).unwrap();
    let continued = counts.force(key("192.0.2.1"));
    assert_eq!(counts.held(key("192.0.2.1")), 2);
    assert!(counts.take(key("192.0.2.1"), 2).is_none());
    drop(continued);
    assert!(counts.take(key("192.0.2.1"), 2).is_some());
}

#[test]
fn no_cap_and_empty_sources_leave_the_table() {
    let counts = Arc::new(SourceCounts::default());
    let slots: Vec<_> = (0..100)
        .map(|_| counts.take(key("192.0.2.1"), 0).unwrap())
        .collect();
    assert_eq!(counts.held(key("192.0.2.1")), 100);
    drop(slots);
    assert!(locks::lock(&counts.table).is_empty());
}

#[test]
fn dialogs_starting_with_the_same_document_share_one_copy() {
    let mut watched = Watched::default();
    let first = watched.share("<presence>open</presence>");
    let second = watched.share("<presence>open</presence>");
    assert!(Arc::ptr_eq(&first, &second));
    // Another document is a copy of its own, and then the one shared.
    let closed = watched.share("<presence>closed</presence>");
    assert_eq!(&*closed, "<presence>closed</presence>");
    assert!(Arc::ptr_eq(
        &closed,
        &watched.share("<presence>closed</presence>")
    ));
    // The latest state heard is shared when it is the same text.
    let heard: Arc<str> = Arc::from("<presence>busy</presence>");
    watched.latest = Some((7, heard.clone()));
    assert!(Arc::ptr_eq(
        &heard,
        &watched.share("<presence>busy</presence>")
    ));
}

#[test]
fn dialog_ids_need_no_set_until_a_second_dialog() {
    use super::super::DialogIds;
    let mut ids = DialogIds::default();
    assert!(ids.is_empty());
    let a: Arc<str> = Arc::from("a");
    ids.insert(a.clone());
    ids.insert(a.clone());
    assert!(matches!(ids, DialogIds::One(_)));
    ids.insert(Arc::from("b"));
    assert!(matches!(ids, DialogIds::Many(_)));
    let mut seen: Vec<&str> = ids.iter().map(|id| &**id).collect();
    seen.sort_unstable();
    assert_eq!(seen, ["a", "b"]);
    ids.remove("unknown");
    ids.remove("a");
    assert_eq!(ids.iter().count(), 1);
    ids.remove("b");
    assert!(ids.is_empty());
    assert_eq!(ids.iter().count(), 0);
}

#[tokio::test]
async fn a_presentity_is_heard_while_held_and_forgotten_with_its_last_holder() {
    use store::Backend;
    let backend = store::memory::MemoryBackend::new();
    let (feed, _items) = backend.open_feed().await.unwrap();
    let dialogs = super::Dialogs::new(feed);
    dialogs.hold("sip:a@example.com").await.unwrap();
    dialogs.hold("sip:a@example.com").await.unwrap();
    dialogs.hold("sip:b@example.com").await.unwrap();
    let mut heard = dialogs.watched();
    heard.sort();
    assert_eq!(heard, ["sip:a@example.com", "sip:b@example.com"]);
    dialogs.offer(
        "sip:a@example.com",
        3,
        "<presence/>",
        super::Change::default(),
    );
    dialogs.release("sip:a@example.com").await;
    // One holder left: the state heard stays.
    {
        let index = locks::lock(&dialogs.index);
        let a = &index.presentities["sip:a@example.com"];
        assert_eq!(a.holders, 1);
        assert_eq!(a.latest.as_ref().map(|(v, _)| *v), Some(3));
    }
    dialogs.release("sip:a@example.com").await;
    dialogs.release("sip:b@example.com").await;
    assert!(dialogs.watched().is_empty());
    assert!(locks::lock(&dialogs.index).presentities.is_empty());
    // A release without a hold changes nothing.
    dialogs.release("sip:c@example.com").await;
    assert!(locks::lock(&dialogs.index).presentities.is_empty());
}
