//! Reading presence documents.
//!
//! Parsing happens in two passes. [`read_tree`] turns the bytes into a namespace-resolved
//! element tree while enforcing the [`Limits`] and refusing DTDs; the interpreter then walks
//! that tree, matching elements by namespace URI and local name (prefixes are arbitrary), and
//! moves every element it does not understand into an [`Extension`] made self-contained by
//! [`capture`].

use std::borrow::Cow;
use std::mem::take;

use quick_xml::events::{BytesStart, Event};
use quick_xml::name::{PrefixDeclaration, QName, ResolveResult};
use quick_xml::NsReader;

use crate::document::{
    Activity, Attribute, Basic, Contact, Device, Document, Extension, InputState, NamespaceDecl,
    Node, Note, Person, Status, Tuple, UserInput,
};
use crate::{ns, Limits, PidfError};

/// Most attributes (namespace declarations included) accepted on one element. Real presence
/// elements carry a handful; the bound keeps a 64 KiB document of attributes cheap to refuse.
pub(crate) const MAX_ATTRIBUTES: usize = 128;

/// Parses and interprets a PIDF document.
pub(crate) fn parse_document(xml: &[u8], limits: &Limits) -> Result<Document, PidfError> {
    let root = read_tree(xml, limits)?;
    document_from_tree(root)
}

fn malformed(error: impl std::fmt::Display) -> PidfError {
    PidfError::Malformed(error.to_string())
}

/// Decoded namespace names by their value as written; a document uses only a few, so a short
/// list saves decoding the same URI for every element.
#[derive(Default)]
struct NamespaceCache {
    entries: Vec<(Vec<u8>, String)>,
}

impl NamespaceCache {
    /// Entries kept at most, so that a document declaring many namespaces costs no more.
    const CAPACITY: usize = 16;

    fn decode(&mut self, raw: &[u8]) -> Result<String, PidfError> {
        if let Some((_, decoded)) = self.entries.iter().find(|(known, _)| known == raw) {
            return Ok(decoded.clone());
        }
        let decoded = attribute_value(raw)?;
        if self.entries.len() < Self::CAPACITY {
            self.entries.push((raw.to_vec(), decoded.clone()));
        }
        Ok(decoded)
    }
}

/// Turns the namespace part of a resolved name into an owned URI (empty: no namespace).
///
/// The resolver hands back the declaration's value as written, so it is decoded like any other
/// attribute value (`xmlns:v="urn:a&amp;b"` declares `urn:a&b`).
fn namespace_of(
    resolved: ResolveResult<'_>,
    cache: &mut NamespaceCache,
) -> Result<String, PidfError> {
    match resolved {
        ResolveResult::Bound(namespace) => cache.decode(namespace.into_inner()),
        ResolveResult::Unbound => Ok(String::new()),
        ResolveResult::Unknown(prefix) => Err(PidfError::Malformed(format!(
            "undeclared namespace prefix {:?}",
            String::from_utf8_lossy(&prefix)
        ))),
    }
}

fn utf8(bytes: &[u8]) -> Result<&str, PidfError> {
    std::str::from_utf8(bytes).map_err(malformed)
}

fn prefix_of(name: QName<'_>) -> Result<Option<String>, PidfError> {
    name.prefix()
        .map(|prefix| {
            let prefix = utf8(prefix.into_inner())?;
            check_name(prefix)?;
            Ok(prefix.to_owned())
        })
        .transpose()
}

fn local_name_of(local: &[u8]) -> Result<String, PidfError> {
    let local = utf8(local)?;
    check_name(local)?;
    Ok(local.to_owned())
}

/// Decodes an attribute value: UTF-8 check, attribute-value normalisation (XML 1.0 section
/// 3.3.3: literal tab, CR, LF become spaces; references to them survive) and reference
/// resolution (only the five predefined entities exist without a DTD).
fn attribute_value(raw: &[u8]) -> Result<String, PidfError> {
    let text = utf8(raw)?;
    let normalized: Cow<'_, str> = if text.contains(['\t', '\n', '\r']) {
        Cow::Owned(text.replace("\r\n", " ").replace(['\t', '\n', '\r'], " "))
    } else {
        Cow::Borrowed(text)
    };
    let value = quick_xml::escape::unescape(&normalized).map_err(malformed)?;
    check_chars(&value)?;
    Ok(value.into_owned())
}

/// Builds the element for a start (or empty-element) tag.
fn open_element(
    reader: &NsReader<&[u8]>,
    namespace: String,
    start: &BytesStart<'_>,
    cache: &mut NamespaceCache,
) -> Result<Extension, PidfError> {
    let mut element = Extension {
        namespace,
        prefix: prefix_of(start.name())?,
        name: local_name_of(start.local_name().into_inner())?,
        namespaces: Vec::new(),
        attributes: Vec::new(),
        children: Vec::new(),
    };
    for (index, attribute) in start.attributes().enumerate() {
        // Checked before the attribute is read: duplicate detection makes each attribute cost
        // as much as the ones before it.
        if index >= MAX_ATTRIBUTES {
            return Err(PidfError::TooManyAttributes {
                limit: MAX_ATTRIBUTES,
            });
        }
        let attribute = attribute.map_err(malformed)?;
        let value = attribute_value(&attribute.value)?;
        match attribute.key.as_namespace_binding() {
            Some(PrefixDeclaration::Default) => element.namespaces.push(NamespaceDecl {
                prefix: None,
                uri: value,
            }),
            Some(PrefixDeclaration::Named(prefix)) => {
                let prefix = utf8(prefix)?;
                check_name(prefix)?;
                element.namespaces.push(NamespaceDecl {
                    prefix: Some(prefix.to_owned()),
                    uri: value,
                });
            }
            None => {
                let (resolved, local) = reader.resolve_attribute(attribute.key);
                let namespace = namespace_of(resolved, cache)?;
                element.attributes.push(Attribute {
                    namespace,
                    prefix: prefix_of(attribute.key)?,
                    name: local_name_of(local.into_inner())?,
                    value,
                });
            }
        }
    }
    Ok(element)
}

fn is_xml_whitespace(text: &str) -> bool {
    text.bytes()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
}

/// Whether `element` is one of the PIDF, data-model or RPID containers whose content is only
/// child elements, so that the white space between them (indentation) carries no meaning and
/// is not kept.
fn is_element_only(element: &Extension) -> bool {
    match element.namespace.as_str() {
        ns::PIDF => matches!(element.name.as_str(), "presence" | "tuple" | "status"),
        ns::DATA_MODEL => matches!(element.name.as_str(), "person" | "device"),
        ns::RPID => matches!(
            element.name.as_str(),
            "activities" | "mood" | "place-type" | "privacy"
        ),
        _ => false,
    }
}

/// Appends character data to the innermost open element, merging adjacent text. White space
/// inside element-only containers is dropped.
fn push_text(stack: &mut [Extension], text: &str) -> Result<(), PidfError> {
    let Some(element) = stack.last_mut() else {
        if is_xml_whitespace(text) {
            return Ok(());
        }
        return Err(PidfError::Malformed(
            "character data outside the root element".into(),
        ));
    };
    if text.is_empty() || (is_element_only(element) && is_xml_whitespace(text)) {
        return Ok(());
    }
    check_chars(text)?;
    if let Some(Node::Text(existing)) = element.children.last_mut() {
        existing.push_str(text);
    } else {
        element.children.push(Node::Text(text.to_owned()));
    }
    Ok(())
}

/// Closes the innermost element, attaching it to its parent or making it the root.
fn close_element(
    stack: &mut Vec<Extension>,
    root: &mut Option<Extension>,
) -> Result<(), PidfError> {
    let element = stack
        .pop()
        .ok_or_else(|| PidfError::Malformed("end tag without start tag".into()))?;
    match stack.last_mut() {
        Some(parent) => parent.children.push(Node::Element(element)),
        None => *root = Some(element),
    }
    Ok(())
}

/// Reads `xml` into a namespace-resolved element tree.
///
/// Refuses inputs over `limits.max_bytes`, nesting deeper than `limits.max_depth`, more than
/// `limits.max_elements` elements, any DOCTYPE, references to undeclared entities, unbound
/// prefixes, non-UTF-8 text and anything that is not a single well-formed element.
pub(crate) fn read_tree(xml: &[u8], limits: &Limits) -> Result<Extension, PidfError> {
    if xml.len() > limits.max_bytes {
        return Err(PidfError::TooLarge {
            limit: limits.max_bytes,
        });
    }
    let xml = xml.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(xml);
    let mut reader = NsReader::from_reader(xml);
    let mut stack: Vec<Extension> = Vec::new();
    let mut root: Option<Extension> = None;
    let mut element_count = 0usize;
    let mut cache = NamespaceCache::default();
    loop {
        let (resolved, event) = reader.read_resolved_event().map_err(malformed)?;
        let is_start = matches!(event, Event::Start(_) | Event::Empty(_));
        let namespace = if is_start {
            namespace_of(resolved, &mut cache)?
        } else {
            String::new()
        };
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                if root.is_some() {
                    return Err(PidfError::Malformed(
                        "content after the root element".into(),
                    ));
                }
                if stack.len() >= limits.max_depth {
                    return Err(PidfError::TooDeep {
                        limit: limits.max_depth,
                    });
                }
                element_count += 1;
                if element_count > limits.max_elements {
                    return Err(PidfError::TooManyElements {
                        limit: limits.max_elements,
                    });
                }
                stack.push(open_element(&reader, namespace, start, &mut cache)?);
                if matches!(event, Event::Empty(_)) {
                    close_element(&mut stack, &mut root)?;
                }
            }
            Event::End(_) => close_element(&mut stack, &mut root)?,
            Event::Text(text) => push_text(&mut stack, &text.xml10_content().map_err(malformed)?)?,
            Event::CData(cdata) => {
                if stack.is_empty() {
                    return Err(PidfError::Malformed(
                        "CDATA outside the root element".into(),
                    ));
                }
                push_text(&mut stack, &cdata.xml10_content().map_err(malformed)?)?;
            }
            Event::GeneralRef(reference) => {
                if stack.is_empty() {
                    return Err(PidfError::Malformed(
                        "reference outside the root element".into(),
                    ));
                }
                let mut buffer = [0u8; 4];
                let text: &str = match reference.resolve_char_ref().map_err(malformed)? {
                    Some(character) => character.encode_utf8(&mut buffer),
                    None => match utf8(&reference)? {
                        "lt" => "<",
                        "gt" => ">",
                        "amp" => "&",
                        "apos" => "'",
                        "quot" => "\"",
                        other => {
                            return Err(PidfError::Malformed(format!(
                                "reference to undeclared entity &{other};"
                            )))
                        }
                    },
                };
                push_text(&mut stack, text)?;
            }
            Event::DocType(_) => return Err(PidfError::DoctypeForbidden),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Eof => break,
        }
    }
    if !stack.is_empty() {
        return Err(PidfError::Malformed(
            "unclosed element at end of input".into(),
        ));
    }
    root.ok_or_else(|| PidfError::Malformed("no root element".into()))
}

/// The namespace bindings in force at some element: its own declarations, then its ancestors'.
pub(crate) struct Scope<'a> {
    declarations: &'a [NamespaceDecl],
    parent: Option<&'a Scope<'a>>,
}

impl<'a> Scope<'a> {
    /// The outermost scope, holding the root element's declarations.
    pub(crate) fn root(declarations: &'a [NamespaceDecl]) -> Scope<'a> {
        Scope {
            declarations,
            parent: None,
        }
    }

    /// A scope nested in `self` adding `declarations`.
    pub(crate) fn child(&'a self, declarations: &'a [NamespaceDecl]) -> Scope<'a> {
        Scope {
            declarations,
            parent: Some(self),
        }
    }

    /// The URI bound to `prefix` by an explicit declaration in this scope chain.
    fn declared(&self, prefix: Option<&str>) -> Option<&'a str> {
        let mut scope = Some(self);
        while let Some(current) = scope {
            if let Some(declaration) = current
                .declarations
                .iter()
                .rev()
                .find(|declaration| declaration.prefix.as_deref() == prefix)
            {
                return Some(declaration.uri.as_str());
            }
            scope = current.parent;
        }
        None
    }

    /// The URI `prefix` resolves to here, counting the implicit bindings: `xml` is always
    /// bound and an undeclared default namespace is "no namespace" (empty).
    fn resolve(&self, prefix: Option<&str>) -> Option<&'a str> {
        match prefix {
            Some("xml") => Some(ns::XML),
            Some(_) => self.declared(prefix),
            None => Some(self.declared(None).unwrap_or("")),
        }
    }
}

/// The prefix of a value that looks like a qualified name (`v:Kind`), as used by
/// `xsi:type` and similar QName-valued content.
fn qname_prefix(value: &str) -> Option<&str> {
    let value = value.trim();
    let (prefix, local) = value.split_once(':')?;
    (is_ncname(prefix) && is_ncname(local)).then_some(prefix)
}

/// Whether `c` may start an XML name (XML 1.0 fifth edition, production 4, without `:`).
fn is_name_start_char(c: char) -> bool {
    matches!(c,
        'A'..='Z' | '_' | 'a'..='z' | '\u{C0}'..='\u{D6}' | '\u{D8}'..='\u{F6}'
        | '\u{F8}'..='\u{2FF}' | '\u{370}'..='\u{37D}' | '\u{37F}'..='\u{1FFF}'
        | '\u{200C}'..='\u{200D}' | '\u{2070}'..='\u{218F}' | '\u{2C00}'..='\u{2FEF}'
        | '\u{3001}'..='\u{D7FF}' | '\u{F900}'..='\u{FDCF}' | '\u{FDF0}'..='\u{FFFD}'
        | '\u{10000}'..='\u{EFFFF}')
}

/// Whether `c` may continue an XML name (production 4a, without `:`).
fn is_name_char(c: char) -> bool {
    is_name_start_char(c)
        || matches!(c, '-' | '.' | '0'..='9' | '\u{B7}' | '\u{300}'..='\u{36F}' | '\u{203F}'..='\u{2040}')
}

/// Whether `name` is an XML NCName (a name without a colon).
pub(crate) fn is_ncname(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(is_name_start_char) && chars.all(is_name_char)
}

/// Whether `c` may appear in an XML 1.0 document (production 2).
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Refuses text containing characters XML does not allow (for example NUL), whether
/// literal or written as a character reference.
fn check_chars(text: &str) -> Result<(), PidfError> {
    // In UTF-8 the only excluded characters are the C0 controls other than tab, LF and CR
    // (single bytes) and U+FFFE / U+FFFF (which start with 0xEF); surrogates cannot occur.
    let suspicious = text
        .bytes()
        .any(|b| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0xEF);
    if !suspicious {
        return Ok(());
    }
    match text.chars().find(|c| !is_xml_char(*c)) {
        Some(c) => Err(PidfError::Malformed(format!(
            "character U+{:04X} is not allowed in XML",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

/// Refuses element and attribute names (local part or prefix) that are not NCNames.
fn check_name(name: &str) -> Result<(), PidfError> {
    if is_ncname(name) {
        Ok(())
    } else {
        Err(PidfError::Malformed(format!("{name:?} is not an XML name")))
    }
}

/// Records, for every prefix used in `element`'s subtree and not declared inside it (below
/// `local`), the binding `outer` gives it.
fn collect_outer_bindings(
    element: &Extension,
    local: &Scope<'_>,
    outer: &Scope<'_>,
    needed: &mut Vec<NamespaceDecl>,
) {
    let here = local.child(&element.namespaces);
    let need = |prefix: Option<&str>, needed: &mut Vec<NamespaceDecl>| {
        if prefix == Some("xml") || here.declared(prefix).is_some() {
            return;
        }
        if needed.iter().any(|known| known.prefix.as_deref() == prefix) {
            return;
        }
        if let Some(uri) = outer.resolve(prefix) {
            needed.push(NamespaceDecl {
                prefix: prefix.map(str::to_owned),
                uri: uri.to_owned(),
            });
        }
    };
    need(element.prefix.as_deref(), needed);
    for attribute in &element.attributes {
        if attribute.prefix.is_some() {
            need(attribute.prefix.as_deref(), needed);
        }
        if let Some(prefix) = qname_prefix(&attribute.value) {
            need(Some(prefix), needed);
        }
    }
    for child in &element.children {
        match child {
            Node::Element(child) => collect_outer_bindings(child, &here, outer, needed),
            Node::Text(text) => {
                if let Some(prefix) = qname_prefix(text) {
                    need(Some(prefix), needed);
                }
            }
        }
    }
}

/// Makes `element` (found inside `outer`) self-contained: its own declarations become exactly
/// the bindings its subtree uses that are in force at the element (declared on it or inherited
/// from `outer`), sorted by prefix. The result is thus the same whatever the surrounding
/// document looked like, and unused declarations do not travel with it.
pub(crate) fn capture(mut element: Extension, outer: &Scope<'_>) -> Extension {
    let own = take(&mut element.namespaces);
    let in_force = outer.child(&own);
    let mut needed = Vec::new();
    let empty = Scope::root(&[]);
    collect_outer_bindings(&element, &empty, &in_force, &mut needed);
    needed.sort_by(|a, b| a.prefix.cmp(&b.prefix));
    element.namespaces = needed;
    element
}

/// Child elements of `element`, consuming it (text children are dropped).
fn child_elements(children: Vec<Node>) -> impl Iterator<Item = Extension> {
    children.into_iter().filter_map(|child| match child {
        Node::Element(element) => Some(element),
        Node::Text(_) => None,
    })
}

/// The attribute `name` (unprefixed), trimmed.
fn id_attribute(element: &Extension) -> String {
    element
        .attribute("", "id")
        .map(|id| id.trim().to_owned())
        .unwrap_or_default()
}

fn trimmed_text(element: &Extension) -> String {
    element.text().trim().to_owned()
}

fn note(element: &Extension) -> Note {
    Note {
        lang: element.attribute(ns::XML, "lang").map(str::to_owned),
        text: element.text(),
    }
}

fn basic(element: &Extension) -> Option<Basic> {
    let text = element.text();
    let text = text.trim();
    if text.eq_ignore_ascii_case("open") {
        Some(Basic::Open)
    } else if text.eq_ignore_ascii_case("closed") {
        Some(Basic::Closed)
    } else {
        None
    }
}

fn user_input(element: &Extension) -> Option<UserInput> {
    let text = element.text();
    let text = text.trim();
    let state = if text.eq_ignore_ascii_case("active") {
        InputState::Active
    } else if text.eq_ignore_ascii_case("idle") {
        InputState::Idle
    } else {
        return None;
    };
    Some(UserInput {
        state,
        last_input: element
            .attribute("", "last-input")
            .map(|value| value.trim().to_owned()),
        idle_threshold: element
            .attribute("", "idle-threshold")
            .and_then(|value| value.trim().parse().ok()),
    })
}

fn priority(value: &str) -> Option<f32> {
    let priority: f32 = value.trim().parse().ok()?;
    (0.0..=1.0).contains(&priority).then_some(priority)
}

/// The values of an RPID enumeration element (`<rpid:mood>`, `<rpid:privacy>`,
/// `<rpid:place-type>`): each child element's local name, or the text of `<rpid:other>`;
/// `<rpid:note>` children are descriptions, not values.
fn rpid_values(element: &Extension) -> impl Iterator<Item = String> + '_ {
    element.elements().filter_map(|value| {
        if value.is(ns::RPID, "note") {
            None
        } else if value.is(ns::RPID, "other") {
            Some(value.text())
        } else {
            Some(value.name.clone())
        }
    })
}

fn activities(element: &Extension) -> impl Iterator<Item = Activity> + '_ {
    element.elements().filter_map(|activity| {
        if activity.namespace != ns::RPID || activity.name == "note" {
            return None;
        }
        if activity.name == "other" {
            return Some(Activity::Other(activity.text()));
        }
        Some(
            Activity::from_element_name(&activity.name)
                .unwrap_or(Activity::Other(activity.name.clone())),
        )
    })
}

/// Sets a single-valued field the first time; a repeated element is kept as an extension so
/// that nothing is lost.
fn first_or_extension<T>(
    slot: &mut Option<T>,
    value: Option<T>,
    element: Extension,
    scope: &Scope<'_>,
    extensions: &mut Vec<Extension>,
) {
    match value {
        Some(value) if slot.is_none() => *slot = Some(value),
        _ => extensions.push(capture(element, scope)),
    }
}

fn status(mut element: Extension, outer: &Scope<'_>) -> Status {
    let declarations = take(&mut element.namespaces);
    let scope = outer.child(&declarations);
    let mut status = Status::default();
    for child in child_elements(take(&mut element.children)) {
        if child.is(ns::PIDF, "basic") {
            let value = basic(&child);
            first_or_extension(
                &mut status.basic,
                value,
                child,
                &scope,
                &mut status.extensions,
            );
        } else {
            status.extensions.push(capture(child, &scope));
        }
    }
    status
}

fn tuple(mut element: Extension, outer: &Scope<'_>) -> Tuple {
    let declarations = take(&mut element.namespaces);
    let scope = outer.child(&declarations);
    let mut tuple = Tuple {
        id: id_attribute(&element),
        ..Tuple::default()
    };
    let mut seen_status = false;
    for child in child_elements(take(&mut element.children)) {
        match (child.namespace.as_str(), child.name.as_str()) {
            (ns::PIDF, "status") if !seen_status => {
                seen_status = true;
                tuple.status = status(child, &scope);
            }
            (ns::PIDF, "contact") => {
                let contact = Contact {
                    uri: trimmed_text(&child),
                    priority: child.attribute("", "priority").and_then(priority),
                };
                first_or_extension(
                    &mut tuple.contact,
                    Some(contact),
                    child,
                    &scope,
                    &mut tuple.extensions,
                );
            }
            (ns::PIDF, "note") => tuple.notes.push(note(&child)),
            (ns::PIDF, "timestamp") => {
                let value = Some(trimmed_text(&child));
                first_or_extension(
                    &mut tuple.timestamp,
                    value,
                    child,
                    &scope,
                    &mut tuple.extensions,
                );
            }
            (ns::DATA_MODEL, "deviceID") => {
                let value = Some(trimmed_text(&child));
                first_or_extension(
                    &mut tuple.device_id,
                    value,
                    child,
                    &scope,
                    &mut tuple.extensions,
                );
            }
            _ => tuple.extensions.push(capture(child, &scope)),
        }
    }
    tuple
}

fn person(mut element: Extension, outer: &Scope<'_>) -> Person {
    let declarations = take(&mut element.namespaces);
    let scope = outer.child(&declarations);
    let mut person = Person {
        id: id_attribute(&element),
        ..Person::default()
    };
    for child in child_elements(take(&mut element.children)) {
        match (child.namespace.as_str(), child.name.as_str()) {
            (ns::RPID, "activities") => person.activities.extend(activities(&child)),
            (ns::RPID, "mood") => person.mood.extend(rpid_values(&child)),
            (ns::RPID, "place-type") => person.place_type.extend(rpid_values(&child)),
            (ns::RPID, "privacy") => person.privacy.extend(rpid_values(&child)),
            (ns::RPID, "user-input") => {
                let value = user_input(&child);
                first_or_extension(
                    &mut person.user_input,
                    value,
                    child,
                    &scope,
                    &mut person.extensions,
                );
            }
            (ns::DATA_MODEL | ns::PIDF, "note") => person.notes.push(note(&child)),
            (ns::DATA_MODEL, "timestamp") => {
                let value = Some(trimmed_text(&child));
                first_or_extension(
                    &mut person.timestamp,
                    value,
                    child,
                    &scope,
                    &mut person.extensions,
                );
            }
            _ => person.extensions.push(capture(child, &scope)),
        }
    }
    person
}

fn device(mut element: Extension, outer: &Scope<'_>) -> Device {
    let declarations = take(&mut element.namespaces);
    let scope = outer.child(&declarations);
    let mut device = Device {
        id: id_attribute(&element),
        ..Device::default()
    };
    for child in child_elements(take(&mut element.children)) {
        match (child.namespace.as_str(), child.name.as_str()) {
            (ns::DATA_MODEL, "deviceID") => {
                let value = Some(trimmed_text(&child));
                first_or_extension(
                    &mut device.device_id,
                    value,
                    child,
                    &scope,
                    &mut device.extensions,
                );
            }
            (ns::RPID, "user-input") => {
                let value = user_input(&child);
                first_or_extension(
                    &mut device.user_input,
                    value,
                    child,
                    &scope,
                    &mut device.extensions,
                );
            }
            (ns::DATA_MODEL | ns::PIDF, "note") => device.notes.push(note(&child)),
            (ns::DATA_MODEL, "timestamp") => {
                let value = Some(trimmed_text(&child));
                first_or_extension(
                    &mut device.timestamp,
                    value,
                    child,
                    &scope,
                    &mut device.extensions,
                );
            }
            _ => device.extensions.push(capture(child, &scope)),
        }
    }
    device
}

/// Interprets a parsed tree whose root should be `<presence>`.
fn document_from_tree(mut root: Extension) -> Result<Document, PidfError> {
    if !root.is(ns::PIDF, "presence") {
        return Err(PidfError::NotPidf {
            found: format!("{{{}}}{}", root.namespace, root.name),
        });
    }
    let entity = root
        .attribute("", "entity")
        .ok_or_else(|| PidfError::Malformed("<presence> has no entity attribute".into()))?
        .trim()
        .to_owned();
    let declarations = take(&mut root.namespaces);
    let scope = Scope::root(&declarations);
    let mut document = Document::new(entity);
    for child in child_elements(take(&mut root.children)) {
        match (child.namespace.as_str(), child.name.as_str()) {
            (ns::PIDF, "tuple") => document.tuples.push(tuple(child, &scope)),
            (ns::PIDF, "note") => document.notes.push(note(&child)),
            (ns::DATA_MODEL, "person") => document.persons.push(person(child, &scope)),
            (ns::DATA_MODEL, "device") => document.devices.push(device(child, &scope)),
            _ => document.extensions.push(capture(child, &scope)),
        }
    }
    Ok(document)
}
