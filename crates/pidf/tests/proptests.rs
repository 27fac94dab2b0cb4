//! Property tests: arbitrary and mutated input never panics, whatever is accepted is written
//! back identically, and generated documents round-trip through XML.

use proptest::prelude::*;

use pidf::watcherinfo::WatcherInfo;
use pidf::{
    compose, Activity, Attribute, Basic, Contact, Device, Document, Extension, InputState,
    NamespaceDecl, Node, Note, Person, PresenceInfo, PresenceStatus, Publication, Status, Tuple,
    UserInput,
};

const FIXTURES: &[&str] = &[
    include_str!("fixtures/rfc3863_basic.xml"),
    include_str!("fixtures/rfc4479_example.xml"),
    include_str!("fixtures/rfc4480_example.xml"),
    include_str!("fixtures/polycom_busy.xml"),
    include_str!("fixtures/cisco_on_the_phone.xml"),
    include_str!("fixtures/xlite_old_rpid.xml"),
    include_str!("fixtures/linphone.xml"),
    include_str!("fixtures/microsoft_style.xml"),
    include_str!("fixtures/arbitrary_prefixes.xml"),
];

const WATCHERINFO: &str = r#"<?xml version="1.0"?><watcherinfo xmlns="urn:ietf:params:xml:ns:watcherinfo" version="0" state="full"><watcher-list resource="sip:p@example.net" package="presence"><watcher status="active" id="8a" duration-subscribed="509" event="approved">sip:a@example.net</watcher></watcher-list></watcherinfo>"#;

const TOKENS: &[&str] = &[
    "<",
    ">",
    "&",
    "&amp;",
    "&lt;",
    "&#65;",
    "&#x0;",
    "&#xD800;",
    "&#x110000;",
    "&bogus;",
    "<!DOCTYPE x>",
    "<![CDATA[",
    "]]>",
    "<!--",
    "-->",
    "<?",
    "?>",
    "<a>",
    "</a>",
    "<b/>",
    "xmlns:x=\"urn:y\"",
    "xmlns=\"\"",
    "x:y=\"1\"",
    "\"",
    "'",
    "=",
    "\u{0}",
    "\u{1}",
    "\u{FFFE}",
    "\r\n",
    "\t",
    "<rpid:other>",
    "</tuple>",
    "<tuple id=\"z\">",
    "<dm:person>",
    "xml:lang=\"en\"",
    "é",
];

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, token: usize },
    InsertByte { at: usize, byte: u8 },
    Flip { at: usize, bit: u8 },
    Truncate { at: usize },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1usize..16).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(at, token)| Mutation::Insert { at, token }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::InsertByte { at, byte }),
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for mutation in mutations {
        let len = bytes.len().max(1);
        match *mutation {
            Mutation::Delete { at, len: count } => {
                let start = at % len;
                let end = (start + count).min(bytes.len());
                if start < end {
                    bytes.drain(start..end);
                }
            }
            Mutation::Insert { at, token } => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, TOKENS[token].bytes());
            }
            Mutation::InsertByte { at, byte } => bytes.insert(at % (bytes.len() + 1), byte),
            Mutation::Flip { at, bit } => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] ^= 1 << bit;
                }
            }
            Mutation::Truncate { at } => bytes.truncate(at % len),
        }
    }
    bytes
}

/// Whatever the parser accepts, the writer reproduces: parse(to_xml(d)) == d.
fn check_accepted(bytes: &[u8]) {
    if let Ok(document) = Document::parse(bytes) {
        let xml = document.to_xml();
        let again = Document::parse(xml.as_bytes());
        assert_eq!(again.as_ref(), Ok(&document), "rewritten:\n{xml}");
        let _ = document.summary();
    }
    if let Ok(info) = WatcherInfo::parse(bytes) {
        let xml = info.to_xml();
        assert_eq!(
            WatcherInfo::parse(xml.as_bytes()),
            Ok(info),
            "rewritten:\n{xml}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        check_accepted(&bytes);
        let _ = Document::parse_publication(&bytes, "alice@example.com", &pidf::Limits::default());
    }

    #[test]
    fn arbitrary_text_never_panics(text in "[<>&;#a-z:=\"' /!?\\[\\]-]{0,200}") {
        check_accepted(text.as_bytes());
        let wrapped = format!(r#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="e">{text}</presence>"#);
        check_accepted(wrapped.as_bytes());
    }

    #[test]
    fn mutated_documents_never_panic(
        fixture in 0..FIXTURES.len() + 1,
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        let original = FIXTURES.get(fixture).copied().unwrap_or(WATCHERINFO);
        check_accepted(&mutate(original.as_bytes().to_vec(), &mutations));
    }
}

// ---- generated documents -------------------------------------------------------------

/// Text as found in element content: any characters XML can carry.
fn text() -> impl Strategy<Value = String> {
    "[\\PC\t\n\r<>&\"']{0,12}"
}

/// Values that are trimmed on parse (URIs, ids, timestamps).
fn token() -> impl Strategy<Value = String> {
    "[\\PC]{0,10}".prop_map(|s| s.trim().to_owned())
}

fn ncname() -> impl Strategy<Value = String> {
    "[a-zA-Z_][a-zA-Z0-9._-]{0,8}"
}

fn note() -> impl Strategy<Value = Note> {
    (
        proptest::option::of("[a-zA-Z]{1,3}(-[a-zA-Z0-9]{1,8})?"),
        text(),
    )
        .prop_map(|(lang, text)| Note { lang, text })
}

fn notes() -> impl Strategy<Value = Vec<Note>> {
    proptest::collection::vec(note(), 0..3)
}

/// Extension text and attribute values: no colon, so nothing reads as a QName.
fn extension_text() -> impl Strategy<Value = String> {
    "[\\PC\t\n\r<>&\"']{1,10}".prop_filter_map("text without a colon", |s| {
        let s = s.replace(':', "");
        (!s.is_empty()).then_some(s)
    })
}

/// The shape of an extension element, before namespaces are chosen.
#[derive(Debug, Clone)]
struct Shape {
    name: String,
    attributes: Vec<(String, String)>,
    text: Option<String>,
    children: Vec<Shape>,
}

fn shape() -> impl Strategy<Value = Shape> {
    let attributes = || proptest::collection::vec((ncname(), extension_text()), 0..3);
    let leaf = (
        ncname(),
        attributes(),
        proptest::option::of(extension_text()),
    )
        .prop_map(|(name, attributes, text)| Shape {
            name,
            attributes,
            text,
            children: Vec::new(),
        });
    leaf.prop_recursive(3, 12, 3, move |inner| {
        (
            ncname(),
            attributes(),
            proptest::option::of(extension_text()),
            proptest::collection::vec(inner, 0..3),
        )
            .prop_map(|(name, attributes, text, children)| Shape {
                name,
                attributes,
                text,
                children,
            })
    })
}

fn build(namespace: &str, prefix: &Option<String>, shape: &Shape) -> Extension {
    let mut attributes: Vec<Attribute> = Vec::new();
    for (name, value) in &shape.attributes {
        if !attributes.iter().any(|existing| existing.name == *name) {
            attributes.push(Attribute {
                namespace: String::new(),
                prefix: None,
                name: name.clone(),
                value: value.clone(),
            });
        }
    }
    let mut children: Vec<Node> = shape.text.iter().cloned().map(Node::Text).collect();
    children.extend(
        shape
            .children
            .iter()
            .map(|child| Node::Element(build(namespace, prefix, child))),
    );
    Extension {
        namespace: namespace.to_owned(),
        prefix: prefix.clone(),
        name: shape.name.clone(),
        namespaces: Vec::new(),
        attributes,
        children,
    }
}

/// An extension subtree in one namespace and prefix, in the form the parser produces: the
/// root declares exactly the binding its subtree uses.
fn extension() -> impl Strategy<Value = Extension> {
    let binding = prop_oneof![
        Just(("urn:x-vendor:foo".to_owned(), Some("v".to_owned()))),
        Just(("urn:x-vendor:foo".to_owned(), None)),
        Just(("urn:x-b".to_owned(), Some("dm".to_owned()))),
        Just((String::new(), None)),
    ];
    (binding, shape()).prop_map(|((namespace, prefix), shape)| {
        let mut root = build(&namespace, &prefix, &shape);
        root.namespaces = vec![NamespaceDecl {
            prefix,
            uri: namespace,
        }];
        root
    })
}

fn extensions() -> impl Strategy<Value = Vec<Extension>> {
    proptest::collection::vec(extension(), 0..3)
}

fn activity() -> impl Strategy<Value = Activity> {
    prop_oneof![
        Just(Activity::Away),
        Just(Activity::Busy),
        Just(Activity::OnThePhone),
        Just(Activity::Meeting),
        Just(Activity::TV),
        Just(Activity::PermanentAbsence),
        Just(Activity::LookingForWork),
        Just(Activity::Unknown),
        text().prop_map(Activity::Other),
    ]
}

fn value_list(known: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec(
        prop_oneof![
            proptest::sample::select(known).prop_map(str::to_owned),
            text()
        ],
        0..3,
    )
}

fn user_input() -> impl Strategy<Value = UserInput> {
    (
        any::<bool>(),
        proptest::option::of(token()),
        proptest::option::of(any::<u32>()),
    )
        .prop_map(|(active, last_input, idle_threshold)| UserInput {
            state: if active {
                InputState::Active
            } else {
                InputState::Idle
            },
            last_input,
            idle_threshold,
        })
}

fn basic() -> impl Strategy<Value = Option<Basic>> {
    proptest::option::of(prop_oneof![Just(Basic::Open), Just(Basic::Closed)])
}

fn tuple() -> impl Strategy<Value = Tuple> {
    (
        token(),
        (basic(), extensions()),
        proptest::option::of((token(), proptest::option::of(0u16..=1000))),
        notes(),
        proptest::option::of(token()),
        proptest::option::of(token()),
        extensions(),
    )
        .prop_map(
            |(id, (basic, status_extensions), contact, notes, timestamp, device_id, extensions)| {
                Tuple {
                    id,
                    status: Status {
                        basic,
                        extensions: status_extensions,
                    },
                    contact: contact.map(|(uri, priority)| Contact {
                        uri,
                        priority: priority.map(|p| f32::from(p) / 1000.0),
                    }),
                    notes,
                    timestamp,
                    device_id,
                    extensions,
                }
            },
        )
}

fn person() -> impl Strategy<Value = Person> {
    (
        token(),
        proptest::collection::vec(activity(), 0..4),
        value_list(&["happy", "sleepy", "in_love", "unknown"]),
        value_list(&["office", "home", "bus-station", "aircraft"]),
        value_list(&["audio", "text", "video", "appliance"]),
        proptest::option::of(user_input()),
        (notes(), proptest::option::of(token()), extensions()),
    )
        .prop_map(
            |(
                id,
                activities,
                mood,
                place_type,
                privacy,
                user_input,
                (notes, timestamp, extensions),
            )| Person {
                id,
                activities,
                mood,
                place_type,
                privacy,
                user_input,
                notes,
                timestamp,
                extensions,
            },
        )
}

fn device() -> impl Strategy<Value = Device> {
    (
        token(),
        proptest::option::of(token()),
        proptest::option::of(user_input()),
        notes(),
        proptest::option::of(token()),
        extensions(),
    )
        .prop_map(
            |(id, device_id, user_input, notes, timestamp, extensions)| Device {
                id,
                device_id,
                user_input,
                notes,
                timestamp,
                extensions,
            },
        )
}

fn document() -> impl Strategy<Value = Document> {
    (
        token(),
        proptest::collection::vec(tuple(), 0..3),
        proptest::collection::vec(person(), 0..2),
        proptest::collection::vec(device(), 0..2),
        notes(),
        extensions(),
    )
        .prop_map(
            |(entity, tuples, persons, devices, notes, extensions)| Document {
                entity,
                tuples,
                persons,
                devices,
                notes,
                extensions,
            },
        )
}

fn status() -> impl Strategy<Value = PresenceStatus> {
    prop_oneof![
        Just(PresenceStatus::Available),
        Just(PresenceStatus::Away),
        Just(PresenceStatus::Busy),
        Just(PresenceStatus::DoNotDisturb),
        Just(PresenceStatus::OnThePhone),
        Just(PresenceStatus::InMeeting),
        Just(PresenceStatus::Offline),
        text().prop_map(PresenceStatus::Custom),
    ]
}

fn presence_info() -> impl Strategy<Value = PresenceInfo> {
    (
        status(),
        proptest::option::of(text()),
        proptest::option::of(token()),
        proptest::option::of(prop_oneof![Just("office".to_owned()), text()]),
        proptest::collection::hash_set(ncname(), 0..4),
    )
        .prop_map(
            |(status, note, device, location, capabilities)| PresenceInfo {
                status,
                note,
                device,
                location,
                capabilities: capabilities.into_iter().collect(),
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn generated_documents_round_trip(document in document()) {
        let xml = document.to_xml();
        let parsed = Document::parse(xml.as_bytes());
        prop_assert_eq!(parsed.as_ref(), Ok(&document), "{}", xml);
    }

    #[test]
    fn composition_is_valid_and_order_independent(
        documents in proptest::collection::vec((document(), 0u64..4), 0..4),
    ) {
        let etags: Vec<String> = (0..documents.len()).map(|i| format!("etag {i}")).collect();
        let mut publications: Vec<Publication<'_>> = documents
            .iter()
            .zip(&etags)
            .map(|((document, at), etag)| Publication { etag, published_at_ms: *at, document })
            .collect();
        let composed = compose("pres:alice@example.com", &publications);
        publications.reverse();
        prop_assert_eq!(&compose("pres:alice@example.com", &publications), &composed);
        let mut ids: Vec<&str> = composed.ids().collect();
        let count = ids.len();
        ids.sort_unstable();
        ids.dedup();
        prop_assert_eq!(ids.len(), count);
        let tuple_count: usize = documents.iter().map(|(document, _)| document.tuples.len()).sum();
        prop_assert_eq!(composed.tuples.len(), if documents.is_empty() { 1 } else { tuple_count });
        let xml = composed.to_xml();
        prop_assert_eq!(Document::parse(xml.as_bytes()), Ok(composed));
    }

    #[test]
    fn presence_info_round_trips(info in presence_info()) {
        let document = info.to_document("sip:alice@example.com");
        let xml = document.to_xml();
        let parsed = Document::parse(xml.as_bytes());
        prop_assert_eq!(parsed.as_ref(), Ok(&document), "{}", xml);
        prop_assert_eq!(PresenceInfo::from_document(&document), info);
    }
}
