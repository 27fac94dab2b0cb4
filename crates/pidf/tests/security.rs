//! Hostile and broken input is refused with the right error, within the limits.

use pidf::watcherinfo::WatcherInfo;
use pidf::{Document, Limits, PidfError};

const MINIMAL: &str = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com"><tuple id="t"><status><basic>open</basic></status></tuple></presence>"#;

fn is_malformed(result: Result<Document, PidfError>) -> bool {
    matches!(result, Err(PidfError::Malformed(_)))
}

#[test]
fn minimal_document_parses() {
    let document = Document::parse(MINIMAL.as_bytes()).unwrap();
    assert_eq!(document.entity, "sip:a@example.com");
}

#[test]
fn billion_laughs_is_refused() {
    let bomb = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com"><note>&lol3;</note></presence>"#;
    assert_eq!(
        Document::parse(bomb.as_bytes()),
        Err(PidfError::DoctypeForbidden)
    );
    assert_eq!(
        WatcherInfo::parse(bomb.as_bytes()),
        Err(PidfError::DoctypeForbidden)
    );
}

#[test]
fn external_entities_are_refused() {
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE presence [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a@example.com"><note>&xxe;</note></presence>"#;
    assert_eq!(
        Document::parse(xxe.as_bytes()),
        Err(PidfError::DoctypeForbidden)
    );
    let plain_doctype =
        r#"<!DOCTYPE presence><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"/>"#;
    assert_eq!(
        Document::parse(plain_doctype.as_bytes()),
        Err(PidfError::DoctypeForbidden)
    );
}

#[test]
fn undeclared_entity_references_are_refused() {
    let text = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><note>&nbsp;</note></presence>"#;
    assert!(is_malformed(Document::parse(text.as_bytes())));
    let attribute = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="&foo;"/>"#;
    assert!(is_malformed(Document::parse(attribute.as_bytes())));
}

#[test]
fn predefined_and_character_references_resolve() {
    let xml = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:a&amp;b@example.com&#x3B;x"><note>&lt;&gt;&amp;&apos;&quot;&#65;&#x1F600;</note></presence>"#;
    let document = Document::parse(xml.as_bytes()).unwrap();
    assert_eq!(document.entity, "sip:a&b@example.com;x");
    assert_eq!(document.notes[0].text, "<>&'\"A\u{1F600}");
    let nul =
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><note>&#0;</note></presence>"#;
    assert!(is_malformed(Document::parse(nul.as_bytes())));
}

#[test]
fn size_limit() {
    let limits = Limits {
        max_bytes: MINIMAL.len() - 1,
        ..Limits::default()
    };
    assert_eq!(
        Document::parse_with(MINIMAL.as_bytes(), &limits),
        Err(PidfError::TooLarge {
            limit: MINIMAL.len() - 1
        })
    );
    let limits = Limits {
        max_bytes: MINIMAL.len(),
        ..Limits::default()
    };
    assert!(Document::parse_with(MINIMAL.as_bytes(), &limits).is_ok());
    let huge = format!(
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><note>{}</note></presence>"#,
        "x".repeat(70 * 1024)
    );
    assert_eq!(
        Document::parse(huge.as_bytes()),
        Err(PidfError::TooLarge { limit: 64 * 1024 })
    );
}

#[test]
fn depth_limit() {
    let nested = |depth: usize| {
        format!(
            r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e">{}{}</presence>"#,
            "<x:a xmlns:x=\"urn:x\">".repeat(depth - 1),
            "</x:a>".repeat(depth - 1)
        )
    };
    assert!(Document::parse(nested(32).as_bytes()).is_ok());
    assert_eq!(
        Document::parse(nested(33).as_bytes()),
        Err(PidfError::TooDeep { limit: 32 })
    );
    let deep = nested(100_000);
    let limits = Limits {
        max_bytes: usize::MAX,
        ..Limits::default()
    };
    assert_eq!(
        Document::parse_with(deep.as_bytes(), &limits),
        Err(PidfError::TooDeep { limit: 32 })
    );
}

#[test]
fn element_limit() {
    let wide = |count: usize| {
        format!(
            r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e">{}</presence>"#,
            "<note/>".repeat(count - 1)
        )
    };
    assert_eq!(
        Document::parse(wide(4096).as_bytes()).map(|d| d.notes.len()),
        Ok(4095)
    );
    assert_eq!(
        Document::parse(wide(4097).as_bytes()),
        Err(PidfError::TooManyElements { limit: 4096 })
    );
    let limits = Limits {
        max_elements: 3,
        ..Limits::default()
    };
    assert_eq!(
        Document::parse_with(MINIMAL.as_bytes(), &limits),
        Err(PidfError::TooManyElements { limit: 3 })
    );
}

#[test]
fn not_pidf() {
    for xml in [
        r#"<presence entity="e"/>"#,
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf:data-model" entity="e"/>"#,
        r#"<p:tuple xmlns:p="urn:ietf:params:xml:ns:pidf" id="x"/>"#,
        r#"<watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full"/>"#,
    ] {
        assert!(
            matches!(
                Document::parse(xml.as_bytes()),
                Err(PidfError::NotPidf { .. })
            ),
            "{xml}"
        );
    }
    assert!(matches!(
        WatcherInfo::parse(MINIMAL.as_bytes()),
        Err(PidfError::NotWatcherInfo { .. })
    ));
}

#[test]
fn malformed_documents() {
    for xml in [
        "",
        "   ",
        "not xml",
        "<presence",
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e">"#,
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><tuple></presence>"#,
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"></tuple>"#,
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"/><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"/>"#,
        r#"text<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"/>"#,
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"/>trailing"#,
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf"/>"#,
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e" entity="f"/>"#,
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><v:x/></presence>"#,
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e" v:a="1"/>"#,
        r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity='e"/>"#,
    ] {
        assert!(
            is_malformed(Document::parse(xml.as_bytes())),
            "accepted: {xml}"
        );
    }
}

#[test]
fn non_utf8_is_refused() {
    let mut latin1 =
        br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><note>caf"#.to_vec();
    latin1.extend_from_slice(&[0xE9]);
    latin1.extend_from_slice(b"</note></presence>");
    assert!(is_malformed(Document::parse(&latin1)));
    let mut bad_name =
        b"<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"><\xFF/></presence>".to_vec();
    bad_name.push(b' ');
    assert!(Document::parse(&bad_name).is_err());
}

#[test]
fn byte_order_mark_and_misc_markup_are_accepted() {
    let mut xml = b"\xEF\xBB\xBF".to_vec();
    xml.extend_from_slice(
        br#"<?xml version="1.0"?><!-- comment --><?pi data?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><!-- inside --><note>a<!-- c -->b</note></presence><!-- after -->"#,
    );
    let document = Document::parse(&xml).unwrap();
    assert_eq!(document.notes[0].text, "ab");
}

#[test]
fn attribute_values_are_normalised() {
    let xml = "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"><note xml:lang=\"en\tGB\r\nx&#10;y\">n</note></presence>";
    let document = Document::parse(xml.as_bytes()).unwrap();
    assert_eq!(document.notes[0].lang.as_deref(), Some("en GB x\ny"));
    let again = Document::parse(document.to_xml().as_bytes()).unwrap();
    assert_eq!(again, document);
}

#[test]
fn line_endings_are_normalised_in_text() {
    let xml = "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"><note>a\r\nb\rc&#13;d</note></presence>";
    let document = Document::parse(xml.as_bytes()).unwrap();
    assert_eq!(document.notes[0].text, "a\nb\nc\rd");
    let again = Document::parse(document.to_xml().as_bytes()).unwrap();
    assert_eq!(again, document);
}

#[test]
fn parse_publication_checks_the_entity() {
    let xml = MINIMAL.replace("sip:a@example.com", "pres:alice@EXAMPLE.com");
    let limits = Limits::default();
    assert!(Document::parse_publication(xml.as_bytes(), "alice@example.com", &limits).is_ok());
    assert!(Document::parse_publication(xml.as_bytes(), "sips:alice@example.com", &limits).is_ok());
    assert_eq!(
        Document::parse_publication(xml.as_bytes(), "bob@example.com", &limits),
        Err(PidfError::WrongEntity {
            expected: "bob@example.com".into(),
            found: "pres:alice@EXAMPLE.com".into()
        })
    );
}

#[test]
fn characters_and_names_outside_xml_are_refused() {
    for xml in [
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"><note>a\u{0}b</note></presence>",
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\u{1}\"/>",
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"><note>&#x1;</note></presence>",
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"><note>&#xFFFE;</note></presence>",
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"><x:1a xmlns:x=\"urn:x\"/></presence>",
        "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"><x:a xmlns:x=\"urn:x\" x:-b=\"1\"/></presence>",
    ] {
        assert!(is_malformed(Document::parse(xml.as_bytes())), "accepted: {xml:?}");
    }
    // Non-ASCII names are fine.
    let xml = "<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"e\"><v:état xmlns:v=\"urn:x\" v:clé=\"é\"/></presence>";
    let document = Document::parse(xml.as_bytes()).unwrap();
    assert_eq!(document.extensions[0].name, "état");
    assert_eq!(
        Document::parse(document.to_xml().as_bytes()).unwrap(),
        document
    );
}

#[test]
fn escaped_namespace_names_are_decoded() {
    let xml = r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><v:a xmlns:v="urn:x&amp;y"/></presence>"#;
    let document = Document::parse(xml.as_bytes()).unwrap();
    assert_eq!(document.extensions[0].namespace, "urn:x&y");
    let escaped_pidf = r#"<presence xmlns="urn:ietf:params:xml:ns:&#112;idf" entity="e"/>"#;
    assert!(Document::parse(escaped_pidf.as_bytes()).is_ok());
}

#[test]
fn attribute_count_is_bounded() {
    let element = |count: usize| {
        let attributes: String = (0..count).map(|i| format!(" a{i}=\"{i}\"")).collect();
        format!(
            r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e"><x:a xmlns:x="urn:x"{attributes}/></presence>"#
        )
    };
    let accepted = Document::parse(element(127).as_bytes()).unwrap();
    assert_eq!(accepted.extensions[0].attributes.len(), 127);
    assert_eq!(
        Document::parse(element(128).as_bytes()),
        Err(PidfError::TooManyAttributes { limit: 128 })
    );
}
