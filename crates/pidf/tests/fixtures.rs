//! Real-world and RFC example documents parse to the expected model, and survive a
//! write/parse round trip unchanged.

use pidf::{ns, Activity, Basic, Document, InputState, Note, PresenceStatus};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("reading {path}: {error}"))
}

fn parse(name: &str) -> Document {
    let document =
        Document::parse(&fixture(name)).unwrap_or_else(|error| panic!("{name}: {error}"));
    let again = Document::parse(document.to_xml().as_bytes())
        .unwrap_or_else(|error| panic!("{name} rewritten: {error}\n{}", document.to_xml()));
    assert_eq!(
        again,
        document,
        "{name} changed in a round trip:\n{}",
        document.to_xml()
    );
    document
}

const ALL: &[&str] = &[
    "rfc3863_basic.xml",
    "rfc4479_example.xml",
    "rfc4480_example.xml",
    "polycom_busy.xml",
    "yealink_dnd.xml",
    "cisco_on_the_phone.xml",
    "bria_legacy_away.xml",
    "xlite_old_rpid.xml",
    "linphone.xml",
    "baresip.xml",
    "microsoft_style.xml",
    "arbitrary_prefixes.xml",
];

#[test]
fn every_fixture_round_trips() {
    for name in ALL {
        parse(name);
    }
}

#[test]
fn rfc3863_example() {
    let document = parse("rfc3863_basic.xml");
    assert_eq!(document.entity, "pres:someone@example.com");
    assert_eq!(document.tuples.len(), 2);
    let first = &document.tuples[0];
    assert_eq!(first.id, "bs35r9");
    assert_eq!(first.status.basic, Some(Basic::Open));
    let status_extensions: Vec<_> = first
        .status
        .extensions
        .iter()
        .map(|extension| {
            (
                extension.namespace.as_str(),
                extension.name.as_str(),
                extension.text(),
            )
        })
        .collect();
    assert_eq!(
        status_extensions,
        vec![
            ("urn:ietf:params:xml:ns:pidf:im", "im", "busy".to_owned()),
            (
                "http://id.example.com/presence/",
                "location",
                "home".to_owned()
            ),
        ]
    );
    let contact = first.contact.as_ref().expect("contact");
    assert_eq!(contact.uri, "im:someone@mobilecarrier.net");
    assert_eq!(contact.priority, Some(0.8));
    assert_eq!(
        first.notes,
        vec![
            Note {
                lang: Some("en".into()),
                text: "Don't Disturb Please!".into()
            },
            Note {
                lang: Some("fr".into()),
                text: "Ne dérangez pas, s'il vous plait".into()
            },
        ]
    );
    assert_eq!(first.timestamp.as_deref(), Some("2001-10-27T16:49:29Z"));
    assert_eq!(
        document.tuples[1].contact.as_ref().and_then(|c| c.priority),
        Some(1.0)
    );
    assert_eq!(
        document.notes,
        vec![Note::new("I'll be in Tokyo next week")]
    );
    assert_eq!(document.basic(), Basic::Open);
}

#[test]
fn rfc4479_example() {
    let document = parse("rfc4479_example.xml");
    let tuple = &document.tuples[0];
    assert_eq!(tuple.device_id.as_deref(), Some("mac:8asd7d7d70"));
    assert_eq!(tuple.extensions.len(), 1);
    assert!(tuple.extensions[0].is(ns::CAPS, "servcaps"));
    let person = &document.persons[0];
    assert_eq!(person.id, "p1");
    assert_eq!(person.activities, vec![Activity::OnThePhone]);
    assert_eq!(person.timestamp.as_deref(), Some("2005-10-27T16:49:29Z"));
    let device = &document.devices[0];
    assert_eq!(device.id, "pc122");
    assert_eq!(device.device_id.as_deref(), Some("mac:8asd7d7d70"));
    let input = device.user_input.as_ref().expect("user input");
    assert_eq!(input.state, InputState::Idle);
    assert_eq!(input.last_input.as_deref(), Some("2005-10-27T16:44:12Z"));
    let summary = document.summary();
    assert_eq!(summary.status, PresenceStatus::OnThePhone);
    assert_eq!(summary.device.as_deref(), Some("mac:8asd7d7d70"));
    assert_eq!(
        summary.capabilities,
        vec!["audio".to_owned(), "video".to_owned()]
    );
}

#[test]
fn rfc4480_example() {
    let document = parse("rfc4480_example.xml");
    let person = &document.persons[0];
    assert_eq!(person.activities, vec![Activity::Away]);
    assert_eq!(person.mood, vec!["angry".to_owned(), "brooding".to_owned()]);
    assert_eq!(person.place_type, vec!["residence".to_owned()]);
    assert_eq!(person.privacy, vec!["unknown".to_owned()]);
    let input = person.user_input.as_ref().expect("user input");
    assert_eq!(input.state, InputState::Idle);
    assert_eq!(input.idle_threshold, Some(600));
    let kept: Vec<&str> = person.extensions.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(
        kept,
        ["class", "place-is", "sphere", "status-icon", "time-offset"]
    );
    assert!(person.extensions.iter().all(|e| e.namespace == ns::RPID));
    assert_eq!(person.notes, vec![Note::new("Scoring 120")]);
    let tuple_kept: Vec<&str> = document.tuples[0]
        .extensions
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(tuple_kept, ["relationship", "service-class"]);
    assert_eq!(document.devices[0].notes, vec![Note::new("PDA")]);
    let summary = document.summary();
    assert_eq!(summary.status, PresenceStatus::Away);
    assert_eq!(summary.location.as_deref(), Some("residence"));
    assert_eq!(summary.note.as_deref(), Some("Scoring 120"));
}

#[test]
fn polycom_busy() {
    let document = parse("polycom_busy.xml");
    assert_eq!(document.entity, "sip:1001@pbx.example.com");
    assert_eq!(document.persons[0].activities, vec![Activity::Busy]);
    let cipid = &document.persons[0].extensions[0];
    assert!(cipid.is("urn:ietf:params:xml:ns:pidf:cipid", "display-name"));
    assert_eq!(cipid.text(), "Reception Desk");
    let summary = document.summary();
    assert_eq!(summary.status, PresenceStatus::Busy);
    assert_eq!(
        summary.device.as_deref(),
        Some("urn:uuid:00000000-0000-1000-8000-0004f2a1b2c3")
    );
}

#[test]
fn yealink_dnd_is_closed_and_busy() {
    let document = parse("yealink_dnd.xml");
    assert_eq!(document.basic(), Basic::Closed);
    let summary = document.summary();
    assert_eq!(summary.status, PresenceStatus::DoNotDisturb);
    assert_eq!(summary.note.as_deref(), Some("Do Not Disturb"));
}

#[test]
fn cisco_on_the_phone() {
    let document = parse("cisco_on_the_phone.xml");
    let tuple = &document.tuples[0];
    assert_eq!(tuple.id, "cisco-id");
    assert_eq!(
        tuple.contact.as_ref().map(|c| c.uri.as_str()),
        Some("sip:3003@10.1.1.20:5060;transport=tcp")
    );
    assert_eq!(tuple.extensions.len(), 2);
    assert_eq!(document.summary().status, PresenceStatus::OnThePhone);
}

#[test]
fn bria_status_in_note() {
    let document = parse("bria_legacy_away.xml");
    assert!(document.persons.is_empty());
    assert_eq!(document.tuples[0].status.extensions[0].name, "statusIcon");
    assert_eq!(document.summary().status, PresenceStatus::Away);
}

#[test]
fn xlite_legacy_rpid_namespaces() {
    let document = parse("xlite_old_rpid.xml");
    assert!(document.persons.is_empty());
    assert_eq!(document.extensions.len(), 1);
    assert_eq!(document.summary().status, PresenceStatus::OnThePhone);
}

#[test]
fn linphone_cdata_note() {
    let document = parse("linphone.xml");
    let person = &document.persons[0];
    assert_eq!(person.activities, vec![Activity::Lunch]);
    assert_eq!(
        person.notes,
        vec![Note {
            lang: Some("en".into()),
            text: "Back in <30> min & counting".into()
        }]
    );
    assert_eq!(document.summary().status, PresenceStatus::Away);
}

#[test]
fn baresip_person_before_tuple() {
    let document = parse("baresip.xml");
    assert_eq!(document.tuples.len(), 1);
    assert_eq!(document.summary().status, PresenceStatus::Away);
}

#[test]
fn microsoft_style_character_references() {
    let document = parse("microsoft_style.xml");
    assert_eq!(
        document.tuples[0].notes[0].text,
        "In a meeting \u{2013} until 3pm"
    );
    assert_eq!(document.summary().status, PresenceStatus::InMeeting);
}

#[test]
fn arbitrary_prefixes_are_matched_by_namespace() {
    let document = parse("arbitrary_prefixes.xml");
    assert_eq!(document.entity, "pres:frank@example.com");
    let tuple = &document.tuples[0];
    assert_eq!(tuple.status.basic, Some(Basic::Closed));
    assert_eq!(
        tuple.device_id.as_deref(),
        Some("urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6")
    );
    assert_eq!(
        tuple.notes,
        vec![Note {
            lang: Some("de".into()),
            text: "Feierabend".into()
        }]
    );
    let vendor = &tuple.extensions[0];
    assert!(vendor.is("urn:x-vendor:foo", "ring-profile"));
    assert_eq!(vendor.attribute("urn:x-vendor:foo", "level"), Some("3"));
    assert_eq!(vendor.attribute("", "mode"), Some("silent"));
    assert_eq!(vendor.text(), "quiet & <low>");
    assert_eq!(
        vendor
            .child("urn:x-vendor:foo", "sub")
            .map(|sub| sub.text()),
        Some("x".to_owned())
    );
    let person = &document.persons[0];
    assert_eq!(
        person.activities,
        vec![Activity::Vacation, Activity::Other("sailing".into())]
    );
    assert!(person.extensions[0].is("urn:x-vendor:foo", "foo"));
    let level = &document.extensions[0];
    assert!(level.is("urn:x-vendor:bar", "presence-level"));
    // The QName in xsi:type keeps its prefix bound.
    let rewritten = level.to_xml();
    assert!(
        rewritten.contains("xmlns:ext=\"urn:x-vendor:bar\""),
        "{rewritten}"
    );
    assert_eq!(document.summary().status, PresenceStatus::Away);
}
