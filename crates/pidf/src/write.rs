//! Writing presence documents.
//!
//! Output is deterministic: the same [`Document`] always gives the same bytes. The root
//! declares the PIDF namespace as default plus the `dm:` (RFC 4479) and `rpid:` (RFC 4480)
//! prefixes; elements follow the schema order of RFC 3863 and RFC 4479. Extensions are
//! written as they were parsed (original prefixes, their own declarations); an extension built
//! by hand whose prefixes are not declared gets the declarations it needs added, so output is
//! always namespace-well-formed. Characters XML cannot carry (control characters other than
//! tab, CR and LF, U+FFFE, U+FFFF) are left out, and extension elements or attributes whose
//! names are not XML names are skipped.

use crate::document::{
    Activity, Device, Document, Extension, Node, Note, Person, Tuple, UserInput,
};
use crate::ns;
use crate::parse::{is_ncname, is_xml_char};

/// A namespace binding in force while writing: `(prefix, uri)`, `None` being the default.
type Binding = (Option<String>, String);

/// RFC 4480 mood values, written as `<rpid:NAME/>`; anything else becomes `<rpid:other>`.
const MOODS: &[&str] = &[
    "afraid",
    "amazed",
    "angry",
    "annoyed",
    "anxious",
    "ashamed",
    "bored",
    "brave",
    "calm",
    "cold",
    "confused",
    "contented",
    "cranky",
    "curious",
    "depressed",
    "disappointed",
    "disgusted",
    "distracted",
    "embarrassed",
    "excited",
    "flirtatious",
    "frustrated",
    "grumpy",
    "guilty",
    "happy",
    "hot",
    "humbled",
    "humiliated",
    "hungry",
    "hurt",
    "impressed",
    "in_awe",
    "in_love",
    "indignant",
    "interested",
    "invincible",
    "jealous",
    "lonely",
    "mean",
    "moody",
    "nervous",
    "neutral",
    "offended",
    "playful",
    "proud",
    "serious",
    "shocked",
    "shy",
    "sick",
    "sleepy",
    "stressed",
    "surprised",
    "thirsty",
    "worried",
    "unknown",
];

/// RFC 4480 privacy values, written as `<rpid:NAME/>`.
const PRIVACY: &[&str] = &["appliance", "audio", "text", "video", "unknown"];

/// RFC 4589 location types, written as `<lt:NAME/>` inside `<rpid:place-type>`.
const PLACE_TYPES: &[&str] = &[
    "aircraft",
    "airport",
    "arena",
    "automobile",
    "bank",
    "bar",
    "bicycle",
    "bus",
    "bus-station",
    "cafe",
    "classroom",
    "club",
    "construction",
    "convention-center",
    "government",
    "hospital",
    "hotel",
    "industrial",
    "library",
    "motorcycle",
    "office",
    "outdoors",
    "parking",
    "place-of-worship",
    "prison",
    "public",
    "public-transport",
    "residence",
    "restaurant",
    "school",
    "shopping-area",
    "stadium",
    "store",
    "street",
    "theater",
    "train",
    "train-station",
    "truck",
    "underway",
    "unknown",
    "warehouse",
    "water",
    "watercraft",
];

/// Appends `text` escaped for element content.
pub(crate) fn escape_text(out: &mut String, text: &str) {
    escape(
        out,
        text,
        |b| matches!(b, b'&' | b'<' | b'>'),
        |out, c| match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            // A literal CR would be read back as LF (end-of-line normalisation).
            '\r' => out.push_str("&#xD;"),
            c if is_xml_char(c) => out.push(c),
            _ => {}
        },
    );
}

/// Appends `value` escaped for a double-quoted attribute value.
pub(crate) fn escape_attribute(out: &mut String, value: &str) {
    escape(
        out,
        value,
        |b| matches!(b, b'&' | b'<' | b'"'),
        |out, c| match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '"' => out.push_str("&quot;"),
            // Literal white space would be normalised to a space when read back.
            '\t' => out.push_str("&#x9;"),
            '\n' => out.push_str("&#xA;"),
            '\r' => out.push_str("&#xD;"),
            c if is_xml_char(c) => out.push(c),
            _ => {}
        },
    );
}

/// Appends `text`, passing to `one` every character that may need more
/// than a copy: those whose first byte `special` names, the C0 controls
/// (tab, LF and CR among them), and those starting with 0xEF (U+FFFE and
/// U+FFFF, which XML does not allow, are among them). The runs in
/// between, nearly all of any document, are copied whole instead of a
/// character at a time.
fn escape(out: &mut String, text: &str, special: fn(u8) -> bool, one: fn(&mut String, char)) {
    let bytes = text.as_bytes();
    let mut plain = 0;
    let mut at = 0;
    while at < bytes.len() {
        let b = bytes[at];
        if b >= 0x20 && b != 0xEF && !special(b) {
            at += 1;
            continue;
        }
        // `at` is a character boundary: every byte that stops the scan is
        // ASCII or a lead byte.
        out.push_str(&text[plain..at]);
        let Some(c) = text[at..].chars().next() else {
            break;
        };
        one(out, c);
        at += c.len_utf8();
        plain = at;
    }
    out.push_str(&text[plain..]);
}

/// Appends ` name="value"`.
pub(crate) fn write_attribute(out: &mut String, name: &str, value: &str) {
    out.push(' ');
    out.push_str(name);
    out.push_str("=\"");
    escape_attribute(out, value);
    out.push('"');
}

/// Appends `<name>text</name>` (`<name/>` when `text` is empty).
pub(crate) fn write_text_element(out: &mut String, name: &str, text: &str) {
    out.push('<');
    out.push_str(name);
    if text.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    escape_text(out, text);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

fn indent(out: &mut String, level: usize) {
    out.push('\n');
    for _ in 0..level {
        out.push_str("  ");
    }
}

fn write_note(out: &mut String, name: &str, note: &Note, level: usize) {
    indent(out, level);
    out.push('<');
    out.push_str(name);
    if let Some(lang) = &note.lang {
        write_attribute(out, "xml:lang", lang);
    }
    if note.text.is_empty() {
        out.push_str("/>");
        return;
    }
    out.push('>');
    escape_text(out, &note.text);
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// The bindings in force inside a document written by [`document_to_xml`].
fn document_bindings() -> Vec<Binding> {
    vec![
        (None, ns::PIDF.to_owned()),
        (Some("dm".to_owned()), ns::DATA_MODEL.to_owned()),
        (Some("rpid".to_owned()), ns::RPID.to_owned()),
    ]
}

/// Serialises a document; see the module documentation.
pub(crate) fn document_to_xml(document: &Document) -> String {
    let mut out = String::with_capacity(512);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence");
    for (prefix, uri) in document_bindings() {
        match prefix {
            Some(prefix) => write_attribute(&mut out, &format!("xmlns:{prefix}"), &uri),
            None => write_attribute(&mut out, "xmlns", &uri),
        }
    }
    write_attribute(&mut out, "entity", &document.entity);
    out.push('>');
    let mut scope = document_bindings();
    for tuple in &document.tuples {
        write_tuple(&mut out, tuple, &mut scope);
    }
    for note in &document.notes {
        write_note(&mut out, "note", note, 1);
    }
    for person in &document.persons {
        write_person(&mut out, person, &mut scope);
    }
    for device in &document.devices {
        write_device(&mut out, device, &mut scope);
    }
    for extension in &document.extensions {
        indent(&mut out, 1);
        write_extension(&mut out, extension, &mut scope);
    }
    out.push_str("\n</presence>\n");
    out
}

fn write_tuple(out: &mut String, tuple: &Tuple, scope: &mut Vec<Binding>) {
    indent(out, 1);
    out.push_str("<tuple");
    write_attribute(out, "id", &tuple.id);
    out.push('>');
    indent(out, 2);
    if tuple.status.basic.is_none() && tuple.status.extensions.is_empty() {
        out.push_str("<status/>");
    } else {
        out.push_str("<status>");
        if let Some(basic) = tuple.status.basic {
            write_text_element(out, "basic", basic.as_str());
        }
        for extension in &tuple.status.extensions {
            write_extension(out, extension, scope);
        }
        out.push_str("</status>");
    }
    if let Some(device_id) = &tuple.device_id {
        indent(out, 2);
        write_text_element(out, "dm:deviceID", device_id);
    }
    for extension in &tuple.extensions {
        indent(out, 2);
        write_extension(out, extension, scope);
    }
    if let Some(contact) = &tuple.contact {
        indent(out, 2);
        out.push_str("<contact");
        if let Some(priority) = contact.priority.filter(|p| (0.0..=1.0).contains(p)) {
            write_attribute(out, "priority", &priority.to_string());
        }
        out.push('>');
        escape_text(out, &contact.uri);
        out.push_str("</contact>");
    }
    for note in &tuple.notes {
        write_note(out, "note", note, 2);
    }
    if let Some(timestamp) = &tuple.timestamp {
        indent(out, 2);
        write_text_element(out, "timestamp", timestamp);
    }
    indent(out, 1);
    out.push_str("</tuple>");
}

fn write_user_input(out: &mut String, user_input: &UserInput, level: usize) {
    indent(out, level);
    out.push_str("<rpid:user-input");
    if let Some(threshold) = user_input.idle_threshold {
        write_attribute(out, "idle-threshold", &threshold.to_string());
    }
    if let Some(last_input) = &user_input.last_input {
        write_attribute(out, "last-input", last_input);
    }
    out.push('>');
    out.push_str(user_input.state.as_str());
    out.push_str("</rpid:user-input>");
}

/// Writes an RPID enumeration (`mood`, `privacy`): known values as empty elements, others as
/// `<rpid:other>`.
fn write_rpid_values(out: &mut String, element: &str, values: &[String], known: &[&str]) {
    if values.is_empty() {
        return;
    }
    indent(out, 2);
    out.push_str("<rpid:");
    out.push_str(element);
    out.push('>');
    for value in values {
        if known.contains(&value.as_str()) {
            out.push_str("<rpid:");
            out.push_str(value);
            out.push_str("/>");
        } else {
            write_text_element(out, "rpid:other", value);
        }
    }
    out.push_str("</rpid:");
    out.push_str(element);
    out.push('>');
}

fn write_place_types(out: &mut String, values: &[String]) {
    if values.is_empty() {
        return;
    }
    indent(out, 2);
    out.push_str("<rpid:place-type>");
    for value in values {
        if PLACE_TYPES.contains(&value.as_str()) {
            out.push_str("<lt:");
            out.push_str(value);
            write_attribute(out, "xmlns:lt", ns::LOCATION_TYPE);
            out.push_str("/>");
        } else {
            write_text_element(out, "rpid:other", value);
        }
    }
    out.push_str("</rpid:place-type>");
}

fn write_activities(out: &mut String, activities: &[Activity]) {
    if activities.is_empty() {
        return;
    }
    indent(out, 2);
    out.push_str("<rpid:activities>");
    for activity in activities {
        match activity {
            Activity::Other(text) => write_text_element(out, "rpid:other", text),
            known => {
                out.push_str("<rpid:");
                out.push_str(known.element_name());
                out.push_str("/>");
            }
        }
    }
    out.push_str("</rpid:activities>");
}

fn write_person(out: &mut String, person: &Person, scope: &mut Vec<Binding>) {
    indent(out, 1);
    out.push_str("<dm:person");
    write_attribute(out, "id", &person.id);
    out.push('>');
    write_activities(out, &person.activities);
    write_rpid_values(out, "mood", &person.mood, MOODS);
    write_place_types(out, &person.place_type);
    write_rpid_values(out, "privacy", &person.privacy, PRIVACY);
    if let Some(user_input) = &person.user_input {
        write_user_input(out, user_input, 2);
    }
    for extension in &person.extensions {
        indent(out, 2);
        write_extension(out, extension, scope);
    }
    for note in &person.notes {
        write_note(out, "dm:note", note, 2);
    }
    if let Some(timestamp) = &person.timestamp {
        indent(out, 2);
        write_text_element(out, "dm:timestamp", timestamp);
    }
    indent(out, 1);
    out.push_str("</dm:person>");
}

fn write_device(out: &mut String, device: &Device, scope: &mut Vec<Binding>) {
    indent(out, 1);
    out.push_str("<dm:device");
    write_attribute(out, "id", &device.id);
    out.push('>');
    if let Some(user_input) = &device.user_input {
        write_user_input(out, user_input, 2);
    }
    for extension in &device.extensions {
        indent(out, 2);
        write_extension(out, extension, scope);
    }
    if let Some(device_id) = &device.device_id {
        indent(out, 2);
        write_text_element(out, "dm:deviceID", device_id);
    }
    for note in &device.notes {
        write_note(out, "dm:note", note, 2);
    }
    if let Some(timestamp) = &device.timestamp {
        indent(out, 2);
        write_text_element(out, "dm:timestamp", timestamp);
    }
    indent(out, 1);
    out.push_str("</dm:device>");
}

/// The URI bound to `prefix` in `scope` (innermost binding wins).
fn lookup<'s>(scope: &'s [Binding], prefix: Option<&str>) -> Option<&'s str> {
    if prefix == Some("xml") {
        return Some(ns::XML);
    }
    scope
        .iter()
        .rev()
        .find(|(bound, _)| bound.as_deref() == prefix)
        .map(|(_, uri)| uri.as_str())
        .or(if prefix.is_none() { Some("") } else { None })
}

/// A prefix that is bound neither in `scope` nor among `local` declarations.
fn fresh_prefix(scope: &[Binding], local: &[Binding]) -> String {
    (0usize..)
        .map(|n| format!("ns{n}"))
        .find(|candidate| {
            !scope
                .iter()
                .chain(local)
                .any(|(bound, _)| bound.as_deref() == Some(candidate.as_str()))
        })
        .unwrap_or_default()
}

/// Chooses the prefix under which `namespace` is written on the element being opened,
/// adding a declaration to `local` when the wanted prefix is not bound to it yet.
/// `None` means the default namespace; `for_attribute` forbids it for namespaced attributes.
fn bind_prefix(
    scope: &mut Vec<Binding>,
    local: &mut Vec<Binding>,
    wanted: Option<&str>,
    namespace: &str,
    for_attribute: bool,
) -> Option<String> {
    if namespace == ns::XML {
        return Some("xml".to_owned());
    }
    if namespace.is_empty() {
        // No namespace: unprefixed attributes never have one; elements need `xmlns=""` in force.
        if !for_attribute && lookup(scope, None) != Some("") {
            local.push((None, String::new()));
            scope.push((None, String::new()));
        }
        return None;
    }
    // The prefix to try first: `Some(None)` is the default namespace (elements only).
    let candidate: Option<Option<String>> =
        match wanted.filter(|prefix| is_ncname(prefix) && !prefix.eq_ignore_ascii_case("xml")) {
            Some(prefix) => Some(Some(prefix.to_owned())),
            None if for_attribute => None,
            None => Some(None),
        };
    if let Some(prefix) = candidate {
        if lookup(scope, prefix.as_deref()) == Some(namespace) {
            return prefix;
        }
        if !local.iter().any(|(bound, _)| *bound == prefix) {
            local.push((prefix.clone(), namespace.to_owned()));
            scope.push((prefix.clone(), namespace.to_owned()));
            return prefix;
        }
    }
    let prefix = fresh_prefix(scope, local);
    local.push((Some(prefix.clone()), namespace.to_owned()));
    scope.push((Some(prefix.clone()), namespace.to_owned()));
    Some(prefix)
}

fn push_qname(out: &mut String, prefix: Option<&str>, name: &str) {
    if let Some(prefix) = prefix {
        out.push_str(prefix);
        out.push(':');
    }
    out.push_str(name);
}

/// Writes an extension element inside an element whose bindings are `scope`. The root of an
/// extension leaves out declarations already in force, so parsed extensions do not repeat the
/// document's own prefixes.
fn write_extension(out: &mut String, element: &Extension, scope: &mut Vec<Binding>) {
    write_element(out, element, scope, true);
}

fn write_element(out: &mut String, element: &Extension, scope: &mut Vec<Binding>, root: bool) {
    if !is_ncname(&element.name) {
        return;
    }
    let mark = scope.len();
    let mut local: Vec<Binding> = Vec::new();
    for declaration in &element.namespaces {
        let valid = match &declaration.prefix {
            None => true,
            Some(prefix) => {
                is_ncname(prefix)
                    && !prefix.eq_ignore_ascii_case("xml")
                    && !prefix.eq_ignore_ascii_case("xmlns")
                    && !declaration.uri.is_empty()
            }
        };
        let duplicate = local.iter().any(|(bound, _)| *bound == declaration.prefix);
        let in_force =
            root && lookup(scope, declaration.prefix.as_deref()) == Some(&declaration.uri);
        if valid && !duplicate && !in_force {
            local.push((declaration.prefix.clone(), declaration.uri.clone()));
            scope.push((declaration.prefix.clone(), declaration.uri.clone()));
        }
    }
    let element_prefix = bind_prefix(
        scope,
        &mut local,
        element.prefix.as_deref(),
        &element.namespace,
        false,
    );
    let mut attributes: Vec<(Option<String>, &str, &str)> = Vec::new();
    for (index, attribute) in element.attributes.iter().enumerate() {
        let duplicate = element.attributes[..index]
            .iter()
            .any(|other| other.namespace == attribute.namespace && other.name == attribute.name);
        if !is_ncname(&attribute.name) || duplicate {
            continue;
        }
        let prefix = bind_prefix(
            scope,
            &mut local,
            attribute.prefix.as_deref(),
            &attribute.namespace,
            true,
        );
        attributes.push((prefix, &attribute.name, &attribute.value));
    }
    out.push('<');
    push_qname(out, element_prefix.as_deref(), &element.name);
    for (prefix, uri) in &local {
        match prefix {
            Some(prefix) => write_attribute(out, &format!("xmlns:{prefix}"), uri),
            None => write_attribute(out, "xmlns", uri),
        }
    }
    for (prefix, name, value) in &attributes {
        out.push(' ');
        push_qname(out, prefix.as_deref(), name);
        out.push_str("=\"");
        escape_attribute(out, value);
        out.push('"');
    }
    if element.children.is_empty() {
        out.push_str("/>");
    } else {
        out.push('>');
        for child in &element.children {
            match child {
                Node::Text(text) => escape_text(out, text),
                Node::Element(child) => write_element(out, child, scope, false),
            }
        }
        out.push_str("</");
        push_qname(out, element_prefix.as_deref(), &element.name);
        out.push('>');
    }
    scope.truncate(mark);
}

/// Writes `element` as a standalone fragment (no bindings in force but `xml:`).
pub(crate) fn write_extension_standalone(out: &mut String, element: &Extension) {
    let mut scope = Vec::new();
    write_extension(out, element, &mut scope);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{escape_attribute, escape_text, is_xml_char};

    /// The character-at-a-time escaping the run-copying one replaced.
    fn escaped_one_by_one(text: &str, attribute: bool) -> String {
        let mut out = String::new();
        for c in text.chars() {
            match c {
                '&' => out.push_str("&amp;"),
                '<' => out.push_str("&lt;"),
                '>' if !attribute => out.push_str("&gt;"),
                '"' if attribute => out.push_str("&quot;"),
                '\t' if attribute => out.push_str("&#x9;"),
                '\n' if attribute => out.push_str("&#xA;"),
                '\r' => out.push_str("&#xD;"),
                c if is_xml_char(c) => out.push(c),
                _ => {}
            }
        }
        out
    }

    fn escaped(text: &str, attribute: bool) -> String {
        let mut out = String::from("prefix");
        if attribute {
            escape_attribute(&mut out, text);
        } else {
            escape_text(&mut out, text);
        }
        out.split_off("prefix".len())
    }

    #[test]
    fn characters_xml_does_not_allow_are_dropped_and_markup_escaped() {
        let text = "a&b<c>d\"e\tf\ng\rh\u{0}i\u{FFFE}j\u{FFFF}k\u{EFFF}l\u{1F600}";
        assert_eq!(
            escaped(text, false),
            "a&amp;b&lt;c&gt;d\"e\tf\ng&#xD;hijk\u{EFFF}l\u{1F600}"
        );
        assert_eq!(
            escaped(text, true),
            "a&amp;b&lt;c>d&quot;e&#x9;f&#xA;g&#xD;hijk\u{EFFF}l\u{1F600}"
        );
        assert_eq!(escaped("", true), "");
        assert_eq!(escaped("plain", false), "plain");
    }

    proptest! {
        #[test]
        fn escaping_is_what_it_was_one_character_at_a_time(
            text in "(\\PC|[\\x00-\\x1f&<>\"\u{fffe}\u{ffff}\u{efff}])*",
        ) {
            prop_assert_eq!(escaped(&text, false), escaped_one_by_one(&text, false));
            prop_assert_eq!(escaped(&text, true), escaped_one_by_one(&text, true));
        }
    }
}
