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
