//! RFC 3858 watcher information documents.

use pidf::watcherinfo::{DocState, Watcher, WatcherEvent, WatcherInfo, WatcherList, WatcherStatus};
use pidf::PidfError;

const RFC3858_EXAMPLE: &str = r#"<?xml version="1.0"?>
<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo"
             version="0" state="full">
  <watcher-list resource="sip:professor@example.net" package="presence">
    <watcher status="active"
             id="8ajksjda7s"
             duration-subscribed="509"
             event="approved" >sip:userA@example.net</watcher>
    <watcher status="pending"
             id="hh8juja87s997-ass7"
             display-name="Mr. Subscriber"
             event="subscribe">sip:userB@example.org</watcher>
  </watcher-list>
</watcherinfo>"#;

#[test]
fn rfc3858_example() {
    let info = WatcherInfo::parse(RFC3858_EXAMPLE.as_bytes()).unwrap();
    assert_eq!(info.version, 0);
    assert_eq!(info.state, DocState::Full);
    assert_eq!(info.lists.len(), 1);
    let list = &info.lists[0];
    assert_eq!(list.resource, "sip:professor@example.net");
    assert_eq!(list.package, "presence");
    assert_eq!(
        list.watchers,
        vec![
            Watcher {
                id: "8ajksjda7s".into(),
                uri: "sip:userA@example.net".into(),
                display_name: None,
                status: WatcherStatus::Active,
                event: WatcherEvent::Approved,
                duration_subscribed: Some(509),
                expiration: None,
            },
            Watcher {
                id: "hh8juja87s997-ass7".into(),
                uri: "sip:userB@example.org".into(),
                display_name: Some("Mr. Subscriber".into()),
                status: WatcherStatus::Pending,
                event: WatcherEvent::Subscribe,
                duration_subscribed: None,
                expiration: None,
            },
        ]
    );
    assert_eq!(WatcherInfo::parse(info.to_xml().as_bytes()).unwrap(), info);
}

#[test]
fn every_status_and_event_round_trips() {
    let statuses = [
        WatcherStatus::Pending,
        WatcherStatus::Active,
        WatcherStatus::Waiting,
        WatcherStatus::Terminated,
    ];
    let events = [
        WatcherEvent::Subscribe,
        WatcherEvent::Approved,
        WatcherEvent::Deactivated,
        WatcherEvent::Probation,
        WatcherEvent::Rejected,
        WatcherEvent::Timeout,
        WatcherEvent::Giveup,
        WatcherEvent::Noresource,
    ];
    let mut watchers = Vec::new();
    for (index, status) in statuses.iter().enumerate() {
        for event in events {
            watchers.push(Watcher {
                id: format!("w{index}-{}", event.as_str()),
                uri: format!("sip:watcher{index}@example.com"),
                display_name: Some("Bob \"the <watcher>\" & co".into()),
                status: *status,
                event,
                duration_subscribed: Some(u64::MAX),
                expiration: Some(3600),
            });
        }
    }
    let info = WatcherInfo {
        version: 42,
        state: DocState::Partial,
        lists: vec![
            WatcherList {
                resource: "sip:alice@example.com".into(),
                package: "presence".into(),
                watchers,
            },
            WatcherList {
                resource: "sip:alice@example.com".into(),
                package: "message-summary".into(),
                watchers: vec![],
            },
        ],
    };
    let xml = info.to_xml();
    assert_eq!(WatcherInfo::parse(xml.as_bytes()).unwrap(), info, "{xml}");
}

#[test]
fn foreign_elements_are_ignored_and_prefixes_are_free() {
    let xml = r#"<w:watcherinfo xmlns:w="urn:ietf:params:xml:ns:watcherinfo" xmlns:x="urn:x" version="7" state="partial">
  <x:extra/>
  <w:watcher-list resource="sip:a@b" package="presence"><x:also/>
    <w:watcher id="1" status="terminated" event="timeout" expiration="0">sip:c@d</w:watcher>
  </w:watcher-list></w:watcherinfo>"#;
    let info = WatcherInfo::parse(xml.as_bytes()).unwrap();
    assert_eq!(info.version, 7);
    assert_eq!(info.lists[0].watchers[0].status, WatcherStatus::Terminated);
    assert_eq!(info.lists[0].watchers[0].expiration, Some(0));
}

#[test]
fn invalid_documents_are_refused() {
    for xml in [
        r#"<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" state="full"/>"#,
        r#"<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="-1" state="full"/>"#,
        r#"<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="1" state="some"/>"#,
        r#"<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="1" state="full"><watcher-list package="presence"/></watcherinfo>"#,
        r#"<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="1" state="full"><watcher-list resource="r" package="p"><watcher id="1" status="happy" event="subscribe">u</watcher></watcher-list></watcherinfo>"#,
        r#"<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="1" state="full"><watcher-list resource="r" package="p"><watcher id="1" status="active" event="party">u</watcher></watcher-list></watcherinfo>"#,
        r#"<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="1" state="full"><watcher-list resource="r" package="p"><watcher status="active" event="approved">u</watcher></watcher-list></watcherinfo>"#,
    ] {
        assert!(
            matches!(
                WatcherInfo::parse(xml.as_bytes()),
                Err(PidfError::Malformed(_))
            ),
            "accepted: {xml}"
        );
    }
    assert!(matches!(
        WatcherInfo::parse(br#"<watcherinfo version="1" state="full"/>"#),
        Err(PidfError::NotWatcherInfo { .. })
    ));
}
