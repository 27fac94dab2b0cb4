//! The simple status model maps to PIDF and back for every variant.

use pidf::{Activity, Basic, Document, PresenceInfo, PresenceStatus};

const ENTITY: &str = "pres:alice@example.com";

fn all_statuses() -> Vec<PresenceStatus> {
    vec![
        PresenceStatus::Available,
        PresenceStatus::Away,
        PresenceStatus::Busy,
        PresenceStatus::DoNotDisturb,
        PresenceStatus::OnThePhone,
        PresenceStatus::InMeeting,
        PresenceStatus::Offline,
        PresenceStatus::Custom("Writing the quarterly report".into()),
        PresenceStatus::Custom("dnd".into()),
        PresenceStatus::Custom("busy".into()),
        PresenceStatus::Custom(String::new()),
    ]
}

#[test]
fn every_status_round_trips_through_xml() {
    for status in all_statuses() {
        for full in [false, true] {
            let info = if full {
                PresenceInfo {
                    status: status.clone(),
                    note: Some("Back at 3 <pm> & later".into()),
                    device: Some("urn:uuid:6ba7b810-9dad-11d1-80b4-00c04fd430c8".into()),
                    location: Some("office".into()),
                    capabilities: vec!["audio".into(), "video".into(), "message".into()],
                }
            } else {
                PresenceInfo::new(status.clone())
            };
            let document = info.to_document(ENTITY);
            assert_eq!(document.entity, ENTITY);
            assert_eq!(
                PresenceInfo::from_document(&document),
                info,
                "in memory: {status:?}"
            );
            let xml = document.to_xml();
            let parsed = Document::parse(xml.as_bytes()).unwrap();
            assert_eq!(parsed, document, "{xml}");
            assert_eq!(parsed.summary(), info, "{xml}");
        }
    }
}

#[test]
fn table_of_basic_and_activities() {
    let expect = |status: PresenceStatus, basic: Basic, activities: Vec<Activity>| {
        let document = PresenceInfo::new(status.clone()).to_document(ENTITY);
        assert_eq!(document.basic(), basic, "{status:?}");
        let written: Vec<Activity> = document
            .persons
            .iter()
            .flat_map(|person| person.activities.clone())
            .collect();
        assert_eq!(written, activities, "{status:?}");
    };
    expect(PresenceStatus::Available, Basic::Open, vec![]);
    expect(PresenceStatus::Away, Basic::Open, vec![Activity::Away]);
    expect(PresenceStatus::Busy, Basic::Open, vec![Activity::Busy]);
    expect(
        PresenceStatus::DoNotDisturb,
        Basic::Closed,
        vec![Activity::Busy, Activity::Other("dnd".into())],
    );
    expect(
        PresenceStatus::OnThePhone,
        Basic::Open,
        vec![Activity::OnThePhone],
    );
    expect(
        PresenceStatus::InMeeting,
        Basic::Open,
        vec![Activity::Meeting],
    );
    expect(PresenceStatus::Offline, Basic::Closed, vec![]);
    expect(
        PresenceStatus::Custom("x".into()),
        Basic::Open,
        vec![Activity::Other("x".into())],
    );
}

#[test]
fn free_text_location_and_duplicate_capabilities() {
    let info = PresenceInfo {
        status: PresenceStatus::Available,
        note: None,
        device: None,
        location: Some("Building 4, room 2.17".into()),
        capabilities: vec![
            "audio".into(),
            "audio".into(),
            "not a name".into(),
            "text".into(),
        ],
    };
    let parsed = Document::parse(info.to_document(ENTITY).to_xml().as_bytes()).unwrap();
    let summary = parsed.summary();
    assert_eq!(summary.location.as_deref(), Some("Building 4, room 2.17"));
    assert_eq!(
        summary.capabilities,
        vec!["audio".to_owned(), "text".to_owned()]
    );
}

fn summary_of(xml: &str) -> PresenceStatus {
    Document::parse(xml.as_bytes()).unwrap().summary().status
}

fn with_person(basic: &str, activities: &str) -> String {
    format!(
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:r="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@b">
<tuple id="t"><status><basic>{basic}</basic></status></tuple>
<dm:person id="p"><r:activities>{activities}</r:activities></dm:person></presence>"#
    )
}

#[test]
fn reading_rich_activities() {
    assert_eq!(
        summary_of(&with_person("open", "<r:vacation/>")),
        PresenceStatus::Away
    );
    assert_eq!(
        summary_of(&with_person("open", "<r:appointment/>")),
        PresenceStatus::Busy
    );
    assert_eq!(
        summary_of(&with_person("closed", "<r:away/>")),
        PresenceStatus::Away
    );
    assert_eq!(
        summary_of(&with_person("closed", "<r:busy/>")),
        PresenceStatus::DoNotDisturb
    );
    assert_eq!(
        summary_of(&with_person(
            "open",
            "<r:busy/><r:other>Do Not Disturb</r:other>"
        )),
        PresenceStatus::DoNotDisturb
    );
    assert_eq!(
        summary_of(&with_person("open", "<r:away/><r:on-the-phone/>")),
        PresenceStatus::OnThePhone
    );
    assert_eq!(
        summary_of(&with_person("open", "<r:meeting/><r:busy/>")),
        PresenceStatus::InMeeting
    );
    assert_eq!(
        summary_of(&with_person("open", "<r:looking-for-work/>")),
        PresenceStatus::Custom("looking-for-work".into())
    );
    assert_eq!(
        summary_of(&with_person("open", "<r:unknown/>")),
        PresenceStatus::Available
    );
    assert_eq!(
        summary_of(&with_person("closed", "<r:unknown/>")),
        PresenceStatus::Offline
    );
    // A person is present, so a note reading "Away" is just a note.
    let with_note =
        with_person("open", "").replace("</dm:person>", "<dm:note>Away</dm:note></dm:person>");
    assert_eq!(summary_of(&with_note), PresenceStatus::Available);
}

#[test]
fn reading_notes_of_clients_without_rpid() {
    let note_only = |note: &str| {
        format!(
            r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@b"><tuple id="t"><status><basic>open</basic></status><note>{note}</note></tuple></presence>"#
        )
    };
    assert_eq!(summary_of(&note_only("Busy")), PresenceStatus::Busy);
    assert_eq!(
        summary_of(&note_only("On the phone")),
        PresenceStatus::OnThePhone
    );
    assert_eq!(
        summary_of(&note_only("In a meeting.")),
        PresenceStatus::InMeeting
    );
    assert_eq!(
        summary_of(&note_only("Do Not Disturb")),
        PresenceStatus::DoNotDisturb
    );
    assert_eq!(
        summary_of(&note_only("Be right back")),
        PresenceStatus::Away
    );
    assert_eq!(summary_of(&note_only("Online")), PresenceStatus::Available);
    assert_eq!(
        summary_of(&note_only("Hello there")),
        PresenceStatus::Available
    );
}

#[test]
fn closed_document_is_offline() {
    let summary = Document::closed(ENTITY).summary();
    assert_eq!(summary, PresenceInfo::new(PresenceStatus::Offline));
}

#[test]
fn labels() {
    assert_eq!(PresenceStatus::DoNotDisturb.label(), "do-not-disturb");
    assert_eq!(PresenceStatus::Custom("x y".into()).label(), "x y");
}

#[test]
fn a_person_is_written_only_with_something_in_it() {
    // Available with nothing else (the registrar's document): a tuple alone.
    let bare = PresenceInfo::new(PresenceStatus::Available).to_document(ENTITY);
    assert!(bare.persons.is_empty());
    let xml = bare.to_xml();
    assert!(!xml.contains("person"), "{xml}");
    // A note alone is carried by the person too, so that reading does not
    // take "Away" for an old client's status phrase.
    let noted = PresenceInfo {
        note: Some("Away".into()),
        ..PresenceInfo::new(PresenceStatus::Available)
    };
    let document = noted.to_document(ENTITY);
    assert_eq!(document.persons.len(), 1);
    assert_eq!(document.persons[0].notes.len(), 1);
    assert_eq!(document.persons[0].notes[0].text, "Away");
    let parsed = Document::parse(document.to_xml().as_bytes()).unwrap();
    assert_eq!(parsed.summary(), noted);
}
