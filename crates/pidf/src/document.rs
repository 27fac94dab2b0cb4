//! The presence document model: PIDF (RFC 3863) with the data-model elements of RFC 4479
//! and the rich presence (RPID) elements of RFC 4480.
//!
//! Only the parts that presence applications act on are typed; everything else in a document
//! is kept as an [`Extension`] (an element tree carrying its namespace URIs) so that it can be
//! written back out unchanged in meaning.

/// A presence document (`application/pidf+xml`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Document {
    /// The presentity this document describes (`entity` attribute, e.g. `pres:alice@example.com`).
    pub entity: String,
    /// The `<tuple>` elements: one per service (communication means) of the presentity.
    pub tuples: Vec<Tuple>,
    /// The `<dm:person>` elements: characteristics of the human user.
    pub persons: Vec<Person>,
    /// The `<dm:device>` elements: the physical devices the presentity uses.
    pub devices: Vec<Device>,
    /// Document-level `<note>` elements.
    pub notes: Vec<Note>,
    /// Document-level elements in other namespaces, preserved as found.
    pub extensions: Vec<Extension>,
}

/// The overall reachability of a tuple (`<basic>open|closed</basic>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Basic {
    /// The service can be reached.
    Open,
    /// The service cannot be reached.
    Closed,
}

impl Basic {
    /// The wire form: `"open"` or `"closed"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Basic::Open => "open",
            Basic::Closed => "closed",
        }
    }
}

/// A PIDF `<tuple>`: one service of the presentity.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tuple {
    /// The tuple's `id` attribute, unique within its document.
    pub id: String,
    /// The `<status>` element.
    pub status: Status,
    /// The `<contact>` element: the address this service is reached at.
    pub contact: Option<Contact>,
    /// The tuple's `<note>` elements.
    pub notes: Vec<Note>,
    /// The `<timestamp>` element (an `xs:dateTime`, kept as written).
    pub timestamp: Option<String>,
    /// The `<dm:deviceID>` element: which device (see [`Device::device_id`]) runs this service.
    pub device_id: Option<String>,
    /// Other elements of the tuple (for example RFC 5196 `<caps:servcaps>` or vendor elements).
    pub extensions: Vec<Extension>,
}

impl Tuple {
    /// A tuple with the given id and basic status and nothing else.
    pub fn new(id: impl Into<String>, basic: Basic) -> Tuple {
        Tuple {
            id: id.into(),
            status: Status {
                basic: Some(basic),
                extensions: Vec::new(),
            },
            ..Tuple::default()
        }
    }
}

/// A tuple's `<status>` element.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Status {
    /// The `<basic>` element, absent when the publisher only sent extended status.
    pub basic: Option<Basic>,
    /// Other status elements (for example the pre-RFC 4480 `<es:activities>` some clients send).
    pub extensions: Vec<Extension>,
}

/// A tuple's `<contact>` element.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Contact {
    /// The contact URI.
    pub uri: String,
    /// The `priority` attribute, between 0 and 1 (higher is preferred). Out-of-range or
    /// unparsable priorities are dropped on parse and never written.
    pub priority: Option<f32>,
}

/// A `<note>` (PIDF or data-model): free text for humans.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Note {
    /// The `xml:lang` attribute, if any.
    pub lang: Option<String>,
    /// The text, exactly as found (entity and character references resolved, CDATA unwrapped).
    pub text: String,
}

impl Note {
    /// A note without a language tag.
    pub fn new(text: impl Into<String>) -> Note {
        Note {
            lang: None,
            text: text.into(),
        }
    }
}

/// A data-model `<dm:person>` element (RFC 4479) with its RPID (RFC 4480) characteristics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Person {
    /// The `id` attribute.
    pub id: String,
    /// `<rpid:activities>`: what the person is doing. Several `<rpid:activities>` elements
    /// are merged; their `from`/`until`/`id` attributes, `<rpid:note>` children and
    /// foreign-namespace activities are not kept.
    pub activities: Vec<Activity>,
    /// `<rpid:mood>`: RFC 4480 mood names (`"happy"`, `"sleepy"`, ...); free-text
    /// `<rpid:other>` moods are kept as their text.
    pub mood: Vec<String>,
    /// `<rpid:place-type>`: RFC 4589 location types (`"office"`, `"home"`, ...); free-text
    /// `<rpid:other>` values are kept as their text.
    pub place_type: Vec<String>,
    /// `<rpid:privacy>`: who can overhear (`"audio"`, `"text"`, `"video"`, `"appliance"`,
    /// `"unknown"`); free-text `<rpid:other>` values are kept as their text.
    pub privacy: Vec<String>,
    /// `<rpid:user-input>`: whether the person has been using the device recently.
    pub user_input: Option<UserInput>,
    /// The person's `<dm:note>` elements.
    pub notes: Vec<Note>,
    /// The `<dm:timestamp>` element, kept as written.
    pub timestamp: Option<String>,
    /// Other elements of the person (other RPID elements such as `<rpid:sphere>`, vendor data).
    pub extensions: Vec<Extension>,
}

/// A data-model `<dm:device>` element (RFC 4479).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Device {
    /// The `id` attribute.
    pub id: String,
    /// The `<dm:deviceID>` element: a URN identifying the device (e.g. `urn:uuid:...`).
    /// RFC 4479 requires it; documents that omit it parse with `None`.
    pub device_id: Option<String>,
    /// `<rpid:user-input>` for this device.
    pub user_input: Option<UserInput>,
    /// The device's `<dm:note>` elements.
    pub notes: Vec<Note>,
    /// The `<dm:timestamp>` element, kept as written.
    pub timestamp: Option<String>,
    /// Other elements of the device.
    pub extensions: Vec<Extension>,
}

/// `<rpid:user-input>`: human activity on a device or service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserInput {
    /// Whether input was seen within the idle threshold.
    pub state: InputState,
    /// The `last-input` attribute (an `xs:dateTime`, kept as written).
    pub last_input: Option<String>,
    /// The `idle-threshold` attribute, in seconds.
    pub idle_threshold: Option<u32>,
}

/// The value of `<rpid:user-input>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InputState {
    /// The user has provided input recently.
    Active,
    /// The user has been idle for at least the idle threshold.
    Idle,
}

impl InputState {
    /// The wire form: `"active"` or `"idle"`.
    pub fn as_str(self) -> &'static str {
        match self {
            InputState::Active => "active",
            InputState::Idle => "idle",
        }
    }
}

/// An RPID activity (RFC 4480 section 3.2).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Activity {
    /// `<rpid:away/>`
    Away,
    /// `<rpid:busy/>`
    Busy,
    /// `<rpid:on-the-phone/>`
    OnThePhone,
    /// `<rpid:meeting/>`
    Meeting,
    /// `<rpid:vacation/>`
    Vacation,
    /// `<rpid:appointment/>`
    Appointment,
    /// `<rpid:breakfast/>`
    Breakfast,
    /// `<rpid:dinner/>`
    Dinner,
    /// `<rpid:lunch/>`
    Lunch,
    /// `<rpid:holiday/>`
    Holiday,
    /// `<rpid:meal/>`
    Meal,
    /// `<rpid:working/>`
    Working,
    /// `<rpid:sleeping/>`
    Sleeping,
    /// `<rpid:travel/>`
    Travel,
    /// `<rpid:shopping/>`
    Shopping,
    /// `<rpid:steering/>`
    Steering,
    /// `<rpid:performance/>`
    Performance,
    /// `<rpid:playing/>`
    Playing,
    /// `<rpid:presentation/>`
    Presentation,
    /// `<rpid:spectator/>`
    Spectator,
    /// `<rpid:tv/>`
    TV,
    /// `<rpid:worship/>`
    Worship,
    /// `<rpid:permanent-absence/>`
    PermanentAbsence,
    /// `<rpid:looking-for-work/>`
    LookingForWork,
    /// `<rpid:in-transit/>`
    InTransit,
    /// `<rpid:unknown/>`
    Unknown,
    /// `<rpid:other>text</rpid:other>`: a free-text activity. An unrecognised element in the
    /// RPID namespace also parses to `Other` with its local name.
    Other(String),
}

/// Every activity with a dedicated RFC 4480 element, paired with that element's local name.
const ACTIVITY_NAMES: [(Activity, &str); 26] = [
    (Activity::Away, "away"),
    (Activity::Busy, "busy"),
    (Activity::OnThePhone, "on-the-phone"),
    (Activity::Meeting, "meeting"),
    (Activity::Vacation, "vacation"),
    (Activity::Appointment, "appointment"),
    (Activity::Breakfast, "breakfast"),
    (Activity::Dinner, "dinner"),
    (Activity::Lunch, "lunch"),
    (Activity::Holiday, "holiday"),
    (Activity::Meal, "meal"),
    (Activity::Working, "working"),
    (Activity::Sleeping, "sleeping"),
    (Activity::Travel, "travel"),
    (Activity::Shopping, "shopping"),
    (Activity::Steering, "steering"),
    (Activity::Performance, "performance"),
    (Activity::Playing, "playing"),
    (Activity::Presentation, "presentation"),
    (Activity::Spectator, "spectator"),
    (Activity::TV, "tv"),
    (Activity::Worship, "worship"),
    (Activity::PermanentAbsence, "permanent-absence"),
    (Activity::LookingForWork, "looking-for-work"),
    (Activity::InTransit, "in-transit"),
    (Activity::Unknown, "unknown"),
];

impl Activity {
    /// The RPID element name of this activity (`"on-the-phone"`), or `"other"` for
    /// [`Activity::Other`].
    pub fn element_name(&self) -> &str {
        match self {
            Activity::Other(_) => "other",
            known => ACTIVITY_NAMES
                .iter()
                .find(|(activity, _)| activity == known)
                .map_or("other", |(_, name)| name),
        }
    }

    /// The activity named by an RPID element's local name; `None` for names outside RFC 4480
    /// (including `"other"`, whose meaning is its text).
    pub fn from_element_name(name: &str) -> Option<Activity> {
        ACTIVITY_NAMES
            .iter()
            .find(|(_, known)| *known == name)
            .map(|(activity, _)| activity.clone())
    }

    /// A human-readable label: the element name, or the free text of [`Activity::Other`].
    pub fn label(&self) -> &str {
        match self {
            Activity::Other(text) => text,
            known => known.element_name(),
        }
    }
}

/// A namespace declaration (`xmlns="uri"` or `xmlns:prefix="uri"`) carried by an [`Extension`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NamespaceDecl {
    /// The declared prefix; `None` declares the default namespace.
    pub prefix: Option<String>,
    /// The namespace URI; empty only for `xmlns=""` (no default namespace).
    pub uri: String,
}

/// An attribute of an [`Extension`] element (namespace declarations are kept apart, in
/// [`Extension::namespaces`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute's namespace URI; empty for unprefixed attributes.
    pub namespace: String,
    /// The prefix the attribute was written with.
    pub prefix: Option<String>,
    /// The local name.
    pub name: String,
    /// The value, with references resolved.
    pub value: String,
}

/// A child of an [`Extension`] element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A child element.
    Element(Extension),
    /// Character data (adjacent text, references and CDATA sections are merged).
    Text(String),
}

/// An element this crate does not interpret, preserved as a tree.
///
/// Names are kept with their namespace URI *and* their original prefix, and the extension's
/// root carries every namespace declaration its subtree relies on (including prefixes that
/// appear inside attribute values or text, such as `xsi:type="v:Kind"`). Serialising it
/// therefore yields well-formed XML with the same meaning inside any parent element.
/// Comments and processing instructions are dropped; whitespace text is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extension {
    /// The element's namespace URI; empty when the element is in no namespace.
    pub namespace: String,
    /// The prefix the element was written with (`None`: the default namespace).
    pub prefix: Option<String>,
    /// The element's local name.
    pub name: String,
    /// Namespace declarations made on this element.
    pub namespaces: Vec<NamespaceDecl>,
    /// The element's attributes, in document order.
    pub attributes: Vec<Attribute>,
    /// The element's content, in document order.
    pub children: Vec<Node>,
}

impl Extension {
    /// An empty element `name` in `namespace`, declaring that namespace as its default so
    /// that it is self-contained.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Extension {
        let namespace = namespace.into();
        Extension {
            namespaces: vec![NamespaceDecl {
                prefix: None,
                uri: namespace.clone(),
            }],
            namespace,
            prefix: None,
            name: name.into(),
            attributes: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Adds an unprefixed attribute.
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push(Attribute {
            namespace: String::new(),
            prefix: None,
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Appends text content.
    pub fn with_text(mut self, text: impl Into<String>) -> Self {
        self.children.push(Node::Text(text.into()));
        self
    }

    /// Appends a child element.
    pub fn with_child(mut self, child: Extension) -> Self {
        self.children.push(Node::Element(child));
        self
    }

    /// Whether this element is `name` in `namespace`.
    pub fn is(&self, namespace: &str, name: &str) -> bool {
        self.namespace == namespace && self.name == name
    }

    /// The value of the attribute `name` in `namespace` (empty for unprefixed attributes).
    pub fn attribute(&self, namespace: &str, name: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|attribute| attribute.namespace == namespace && attribute.name == name)
            .map(|attribute| attribute.value.as_str())
    }

    /// The concatenation of this element's direct text children.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for child in &self.children {
            if let Node::Text(part) = child {
                text.push_str(part);
            }
        }
        text
    }

    /// The child elements, in document order.
    pub fn elements(&self) -> impl Iterator<Item = &Extension> {
        self.children.iter().filter_map(|child| match child {
            Node::Element(element) => Some(element),
            Node::Text(_) => None,
        })
    }

    /// The first child element `name` in `namespace`.
    pub fn child(&self, namespace: &str, name: &str) -> Option<&Extension> {
        self.elements().find(|element| element.is(namespace, name))
    }

    /// This element serialised on its own, with every namespace declaration it needs.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        crate::write::write_extension_standalone(&mut out, self);
        out
    }
}

impl Document {
    /// An empty document for `entity` (no tuples).
    pub fn new(entity: impl Into<String>) -> Document {
        Document {
            entity: entity.into(),
            ..Document::default()
        }
    }

    /// The neutral "closed" document: `entity` with a single closed tuple, no person and no
    /// notes. It is what watchers are told when the presentity has no live publication.
    pub fn closed(entity: &str) -> Document {
        Document {
            entity: entity.to_owned(),
            tuples: vec![Tuple::new("closed", Basic::Closed)],
            ..Document::default()
        }
    }

    /// The overall basic status: [`Basic::Open`] if any tuple is open, else [`Basic::Closed`]
    /// (a document without tuples, or whose tuples carry no `<basic>`, is closed).
    pub fn basic(&self) -> Basic {
        if self
            .tuples
            .iter()
            .any(|tuple| tuple.status.basic == Some(Basic::Open))
        {
            Basic::Open
        } else {
            Basic::Closed
        }
    }

    /// The simple status-model view of this document; see [`crate::status`].
    pub fn summary(&self) -> crate::PresenceInfo {
        crate::PresenceInfo::from_document(self)
    }

    /// Serialises the document as `application/pidf+xml`.
    ///
    /// Output is deterministic and well-formed: the PIDF namespace is the default and the
    /// `dm:` and `rpid:` prefixes are declared on the root; elements follow the schema order of
    /// RFC 3863 and RFC 4479; extensions keep their prefixes and carry their own namespace
    /// declarations. Characters XML cannot carry (NUL and other C0 controls except tab, CR and
    /// LF, U+FFFE, U+FFFF) are left out, and hand-built extensions with invalid names are
    /// skipped. For every document this crate parsed, `parse(to_xml(d)) == d`.
    pub fn to_xml(&self) -> String {
        crate::write::document_to_xml(self)
    }

    /// Parses a PIDF document with the default [`Limits`](crate::Limits).
    pub fn parse(xml: &[u8]) -> Result<Document, crate::PidfError> {
        crate::parse::parse_document(xml, &crate::Limits::DEFAULT)
    }

    /// Parses a PIDF document within `limits`.
    pub fn parse_with(xml: &[u8], limits: &crate::Limits) -> Result<Document, crate::PidfError> {
        crate::parse::parse_document(xml, limits)
    }

    /// Parses a document published for `expected_aor` and checks that its `entity` names that
    /// address-of-record. Both are compared as AORs: the scheme (`pres:`, `sip:`, `sips:`,
    /// `im:`, `tel:`), angle brackets, URI parameters and headers are ignored, the host compares
    /// case-insensitively and the user part after percent-decoding. So
    /// `pres:alice@example.com`, `sip:alice@example.com` and `sips:alice@EXAMPLE.com` all
    /// match `alice@example.com`.
    pub fn parse_publication(
        xml: &[u8],
        expected_aor: &str,
        limits: &crate::Limits,
    ) -> Result<Document, crate::PidfError> {
        let document = crate::parse::parse_document(xml, limits)?;
        if crate::aor::same_aor(&document.entity, expected_aor) {
            Ok(document)
        } else {
            Err(crate::PidfError::WrongEntity {
                expected: expected_aor.to_owned(),
                found: document.entity,
            })
        }
    }

    /// Every element id (tuple, person and device `id` attributes) used in the document.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.tuples
            .iter()
            .map(|tuple| tuple.id.as_str())
            .chain(self.persons.iter().map(|person| person.id.as_str()))
            .chain(self.devices.iter().map(|device| device.id.as_str()))
    }
}
