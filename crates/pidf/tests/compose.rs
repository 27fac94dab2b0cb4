//! Composition policy and preservation of vendor extensions through composition.

use pidf::{
    compose, Activity, Basic, Device, Document, Extension, Node, Note, Person, Publication, Tuple,
};

const VENDOR: &str = "urn:x-vendor:foo";

fn publication(etag: &str, at: u64, document: &Document) -> (String, u64, Document) {
    (etag.to_owned(), at, document.clone())
}

fn compose_owned(entity: &str, publications: &[(String, u64, Document)]) -> Document {
    let borrowed: Vec<Publication<'_>> = publications
        .iter()
        .map(|(etag, at, document)| Publication {
            etag,
            published_at_ms: *at,
            document,
        })
        .collect();
    compose(entity, &borrowed)
}

fn person(id: &str, activity: Activity) -> Person {
    Person {
        id: id.into(),
        activities: vec![activity],
        ..Person::default()
    }
}

#[test]
fn no_publication_is_closed() {
    let composed = compose("pres:alice@example.com", &[]);
    assert_eq!(composed, Document::closed("pres:alice@example.com"));
    assert_eq!(composed.basic(), Basic::Closed);
    assert_eq!(composed.tuples.len(), 1);
}

#[test]
fn tuples_from_all_publications_with_unique_ids() {
    let mut phone = Document::new("sip:alice@example.com");
    phone.tuples.push(Tuple::new("t1", Basic::Closed));
    phone.devices.push(Device {
        id: "d1".into(),
        device_id: Some("urn:uuid:phone".into()),
        ..Device::default()
    });
    let mut laptop = Document::new("pres:alice@example.com");
    laptop.tuples.push(Tuple::new("t1", Basic::Open));
    laptop.tuples.push(Tuple::new("t2", Basic::Open));
    laptop.devices.push(Device {
        id: "d1".into(),
        device_id: Some("urn:uuid:laptop".into()),
        ..Device::default()
    });
    let publications = [
        publication("etag/phone", 1_000, &phone),
        publication("etag-laptop", 2_000, &laptop),
    ];
    let composed = compose_owned("pres:alice@example.com", &publications);
    assert_eq!(composed.entity, "pres:alice@example.com");
    let ids: Vec<&str> = composed.tuples.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["t1", "t2", "t1-etag_phone"]);
    let devices: Vec<(&str, Option<&str>)> = composed
        .devices
        .iter()
        .map(|d| (d.id.as_str(), d.device_id.as_deref()))
        .collect();
    assert_eq!(
        devices,
        [
            ("d1", Some("urn:uuid:laptop")),
            ("d1-etag_phone", Some("urn:uuid:phone"))
        ]
    );
    assert_eq!(composed.basic(), Basic::Open);

    // The input order does not matter.
    let reversed = [publications[1].clone(), publications[0].clone()];
    assert_eq!(compose_owned("pres:alice@example.com", &reversed), composed);

    // Ids stay unique across tuples, persons and devices, and the result is valid PIDF.
    let mut all: Vec<&str> = composed.ids().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), composed.ids().count());
    assert_eq!(
        Document::parse(composed.to_xml().as_bytes()).unwrap(),
        composed
    );
}

#[test]
fn repeated_collisions_get_counters() {
    let mut a = Document::new("e");
    a.tuples.push(Tuple::new("x", Basic::Open));
    a.tuples.push(Tuple::new("x-e", Basic::Open));
    let mut b = Document::new("e");
    b.tuples.push(Tuple::new("x", Basic::Open));
    b.tuples.push(Tuple::new("x", Basic::Closed));
    b.tuples.push(Tuple::new("", Basic::Closed));
    let composed = compose_owned("e", &[publication("n", 2, &a), publication("e", 1, &b)]);
    let ids: Vec<&str> = composed.tuples.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["x", "x-e", "x-e-2", "x-e-3", "id-e"]);
}

#[test]
fn equal_timestamps_are_ordered_by_etag() {
    let mut a = Document::new("e");
    a.tuples.push(Tuple::new("t", Basic::Open));
    a.notes.push(Note::new("from a"));
    let mut b = Document::new("e");
    b.tuples.push(Tuple::new("t", Basic::Closed));
    b.notes.push(Note::new("from b"));
    let one = compose_owned("e", &[publication("a", 5, &a), publication("b", 5, &b)]);
    let two = compose_owned("e", &[publication("b", 5, &b), publication("a", 5, &a)]);
    assert_eq!(one, two);
    assert_eq!(one.notes, vec![Note::new("from a")]);
    assert_eq!(one.tuples[0].status.basic, Some(Basic::Open));
}

#[test]
fn person_and_document_notes_come_from_the_newest() {
    let mut old = Document::new("e");
    old.tuples.push(Tuple::new("a", Basic::Open));
    old.persons.push(person("p", Activity::Busy));
    old.notes.push(Note::new("old note"));
    let mut new = Document::new("e");
    new.tuples.push(Tuple::new("b", Basic::Open));
    new.persons.push(person("p", Activity::Away));
    new.notes.push(Note::new("new note"));
    let composed = compose_owned(
        "e",
        &[publication("1", 10, &old), publication("2", 20, &new)],
    );
    assert_eq!(composed.persons, vec![person("p", Activity::Away)]);
    assert_eq!(composed.notes, vec![Note::new("new note")]);
    assert_eq!(composed.tuples.len(), 2);
}

#[test]
fn a_newer_publication_without_person_keeps_the_older_person() {
    let mut desk = Document::new("e");
    desk.tuples.push(Tuple::new("p", Basic::Open));
    desk.persons.push(person("p", Activity::Meeting));
    let mut mobile = Document::new("e");
    mobile.tuples.push(Tuple::new("m", Basic::Closed));
    let composed = compose_owned(
        "e",
        &[publication("d", 1, &desk), publication("m", 2, &mobile)],
    );
    assert_eq!(composed.persons.len(), 1);
    assert_eq!(composed.persons[0].activities, vec![Activity::Meeting]);
    // The newest publication keeps its ids; the older person gives way.
    assert_eq!(composed.tuples[0].id, "m");
    assert_eq!(composed.tuples[1].id, "p");
    assert_eq!(composed.persons[0].id, "p-d");
}

#[test]
fn overall_status_is_open_if_any_tuple_is_open() {
    let mut closed = Document::new("e");
    closed.tuples.push(Tuple::new("a", Basic::Closed));
    let mut open = Document::new("e");
    open.tuples.push(Tuple::new("b", Basic::Open));
    let both = compose_owned(
        "e",
        &[publication("1", 2, &closed), publication("2", 1, &open)],
    );
    assert_eq!(both.basic(), Basic::Open);
    let only_closed = compose_owned("e", &[publication("1", 2, &closed)]);
    assert_eq!(only_closed.basic(), Basic::Closed);
}

/// A vendor element inside a tuple keeps its namespace, name, attributes and text through
/// parse, composition, serialisation and parse again, whatever prefixes the publishers used.
#[test]
fn vendor_extension_survives_composition() {
    let first = br#"<?xml version="1.0"?>
<p:presence xmlns:p="urn:ietf:params:xml:ns:pidf" xmlns:v="urn:x-vendor:foo" xmlns:dm="urn:x-not-the-data-model" entity="sip:alice@example.com">
  <p:tuple id="t1">
    <p:status><p:basic>open</p:basic><v:mode v:level="2">quiet</v:mode></p:status>
    <v:ring-profile v:volume="3" mode="silent" xml:lang="en">quiet &amp; low<v:detail>inner</v:detail></v:ring-profile>
    <dm:thing>prefix dm bound elsewhere</dm:thing>
    <plain xmlns="">no namespace</plain>
  </p:tuple>
</p:presence>"#;
    let second = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:alice@example.com">
  <tuple id="t1"><status><basic>closed</basic></status>
    <ring-profile xmlns="urn:x-vendor:foo" volume="9">loud</ring-profile>
  </tuple>
</presence>"#;
    let first = Document::parse(first).unwrap();
    let second = Document::parse(second).unwrap();
    let publications = [
        publication("aaa", 100, &first),
        publication("bbb", 50, &second),
    ];
    let composed = compose_owned("pres:alice@example.com", &publications);
    let xml = composed.to_xml();
    let reparsed = Document::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    assert_eq!(reparsed, composed, "{xml}");

    let tuple = &reparsed.tuples[0];
    let ring = &tuple.extensions[0];
    assert!(ring.is(VENDOR, "ring-profile"));
    assert_eq!(ring.attribute(VENDOR, "volume"), Some("3"));
    assert_eq!(ring.attribute("", "mode"), Some("silent"));
    assert_eq!(ring.attribute(pidf::ns::XML, "lang"), Some("en"));
    assert_eq!(ring.text(), "quiet & low");
    assert_eq!(
        ring.child(VENDOR, "detail").map(Extension::text).as_deref(),
        Some("inner")
    );
    assert!(tuple.extensions[1].is("urn:x-not-the-data-model", "thing"));
    assert!(tuple.extensions[2].is("", "plain"));
    assert_eq!(tuple.extensions[2].text(), "no namespace");
    let mode = &tuple.status.extensions[0];
    assert!(mode.is(VENDOR, "mode"));
    assert_eq!(mode.attribute(VENDOR, "level"), Some("2"));

    let other = &reparsed.tuples[1];
    assert_eq!(other.id, "t1-bbb");
    assert!(other.extensions[0].is(VENDOR, "ring-profile"));
    assert_eq!(other.extensions[0].attribute("", "volume"), Some("9"));
    assert_eq!(other.extensions[0].text(), "loud");
}

#[test]
fn hand_built_extensions_are_written_well_formed() {
    let mut document = Document::new("e");
    let mut tuple = Tuple::new("t", Basic::Open);
    // Prefix never declared, attribute in a namespace without a prefix, element in no namespace.
    tuple.extensions.push(Extension {
        namespace: VENDOR.into(),
        prefix: Some("undeclared".into()),
        name: "a".into(),
        namespaces: vec![],
        attributes: vec![pidf::Attribute {
            namespace: "urn:x-other".into(),
            prefix: None,
            name: "attr".into(),
            value: "v".into(),
        }],
        children: vec![Node::Element(Extension {
            namespace: String::new(),
            prefix: None,
            name: "bare".into(),
            namespaces: vec![],
            attributes: vec![],
            children: vec![Node::Text("t".into())],
        })],
    });
    tuple.extensions.push(
        Extension::new(VENDOR, "b")
            .with_attribute("k", "v\"<&>\t")
            .with_text("x"),
    );
    // Invalid names are skipped rather than producing broken XML.
    tuple.extensions.push(Extension::new(VENDOR, "not a name"));
    document.tuples.push(tuple);
    let xml = document.to_xml();
    let reparsed = Document::parse(xml.as_bytes()).unwrap_or_else(|e| panic!("{e}\n{xml}"));
    let extensions = &reparsed.tuples[0].extensions;
    assert_eq!(extensions.len(), 2, "{xml}");
    assert!(extensions[0].is(VENDOR, "a"));
    assert_eq!(extensions[0].attribute("urn:x-other", "attr"), Some("v"));
    assert!(extensions[0].child("", "bare").is_some(), "{xml}");
    assert_eq!(extensions[1].attribute("", "k"), Some("v\"<&>\t"));
    // Standalone serialisation is self-contained too.
    let standalone = extensions[0].to_xml();
    assert!(standalone.starts_with("<undeclared:a "), "{standalone}");
    assert!(
        standalone.contains(" xmlns:undeclared=\"urn:x-vendor:foo\""),
        "{standalone}"
    );
}
