//! The simple status model: what applications and the client SDK use instead of XML.
//!
//! [`PresenceInfo::to_document`] writes, and [`PresenceInfo::from_document`] reads back:
//!
//! | [`PresenceStatus`] | `<basic>` | `<rpid:activities>`                      |
//! |--------------------|-----------|------------------------------------------|
//! | `Available`        | open      | none                                     |
//! | `Away`             | open      | `<rpid:away/>`                           |
//! | `Busy`             | open      | `<rpid:busy/>`                           |
//! | `DoNotDisturb`     | closed    | `<rpid:busy/><rpid:other>dnd</rpid:other>` |
//! | `OnThePhone`       | open      | `<rpid:on-the-phone/>`                   |
//! | `InMeeting`        | open      | `<rpid:meeting/>`                        |
//! | `Offline`          | closed    | none                                     |
//! | `Custom(s)`        | open      | `<rpid:other>s</rpid:other>`             |
//!
//! The generated document has one tuple (`id="t1"`) carrying the basic status, the note
//! (`<note>`), the device (`<dm:deviceID>`) and the capabilities (RFC 5196
//! `<caps:servcaps>` with `<caps:NAME>true</caps:NAME>` per capability); one person
//! (`id="p1"`) carrying the activities and the location (`<rpid:place-type>`: an RFC 4589
//! location type such as `office` as `<lt:office/>`, anything else as `<rpid:other>`); and,
//! when a device is given, a `<dm:device id="d1">` with that `<dm:deviceID>`. No element is
//! written empty: without activities or location there is no person, unless there is a note,
//! which the person then carries too (`<dm:note>`) so that reading does not take it for an
//! old client's status phrase (rule 3 below).
//!
//! Reading is more lenient, because real documents are richer than the table:
//! 1. Activities are those of every person. A document with no person at all (pre-RFC 4480
//!    clients) is searched for legacy `activities` elements in tuple status and at document
//!    level (any namespace, e.g. the draft `rpid-status` namespaces), whose `<activity>`
//!    texts or child element names are read as RPID activity names.
//! 2. The status is the first that applies, in this order: `DoNotDisturb` (busy together with
//!    an `other` activity reading `dnd`/`do-not-disturb`/`do not disturb`, or busy while the
//!    document is closed); `OnThePhone`; `InMeeting` (meeting); `Busy` (busy, appointment,
//!    working, performance, presentation, steering, worship, playing, spectator, tv); `Away`
//!    (away, vacation, holiday, travel, in-transit, permanent-absence, sleeping, meal,
//!    breakfast, lunch, dinner, shopping); `Custom` (the first free-text `other` activity, or
//!    `looking-for-work`); else `Available` when [`Document::basic`] is open, `Offline` when
//!    closed.
//! 3. Only when a document has no person and no legacy activities, the first note is matched
//!    (case-insensitively) against the phrases older clients put there instead: `away`,
//!    `be right back`, `out to lunch` (Away); `busy` (Busy); `on the phone`, `on a call`,
//!    `in a call` (OnThePhone); `in a meeting` (InMeeting); `do not disturb`, `dnd`
//!    (DoNotDisturb).
//! 4. The note is the first person note, else the first tuple note, else the first document
//!    note. The device is the first `<dm:device>`'s deviceID, else the first tuple's. The
//!    location is the first place type. Capabilities are the RFC 5196 service capabilities set
//!    to `true` in any tuple, without duplicates, in document order.
//!
//! So `from_document(&info.to_document(e)) == info` for every status, provided the device
//! has no surrounding white space and the capabilities are distinct XML names (others are not
//! written).

use crate::document::{Activity, Basic, Device, Document, Extension, Node, Note, Person, Tuple};
use crate::ns;
use crate::parse::is_ncname;

/// The free-text `other` activity that marks "do not disturb" next to `busy`.
pub const DND_MARKER: &str = "dnd";

/// A coarse presence status, as shown by most user interfaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PresenceStatus {
    /// Reachable and not engaged in anything in particular.
    Available,
    /// Reachable in principle but not at the device.
    Away,
    /// Reachable but occupied.
    Busy,
    /// Does not want to be disturbed: calls will not be accepted.
    DoNotDisturb,
    /// In a call.
    OnThePhone,
    /// In a meeting.
    InMeeting,
    /// Not reachable.
    Offline,
    /// A free-text status set by the user.
    Custom(String),
}

impl PresenceStatus {
    /// A short label (`"available"`, `"do-not-disturb"`, ...; the text for `Custom`).
    pub fn label(&self) -> &str {
        match self {
            PresenceStatus::Available => "available",
            PresenceStatus::Away => "away",
            PresenceStatus::Busy => "busy",
            PresenceStatus::DoNotDisturb => "do-not-disturb",
            PresenceStatus::OnThePhone => "on-the-phone",
            PresenceStatus::InMeeting => "in-meeting",
            PresenceStatus::Offline => "offline",
            PresenceStatus::Custom(text) => text,
        }
    }
}

/// The simple view of a presentity's presence; see the module documentation for the mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceInfo {
    /// The coarse status.
    pub status: PresenceStatus,
    /// Free text for humans ("Back at 3pm").
    pub note: Option<String>,
    /// The device in use, as a device identifier URN (e.g. `urn:uuid:...`).
    pub device: Option<String>,
    /// Where the user is: an RFC 4589 place type (`office`, `home`...) or free text.
    pub location: Option<String>,
    /// RFC 5196 service capabilities (`audio`, `video`, `text`, `message`...).
    pub capabilities: Vec<String>,
}

impl PresenceInfo {
    /// Presence info with just a status.
    pub fn new(status: PresenceStatus) -> PresenceInfo {
        PresenceInfo {
            status,
            note: None,
            device: None,
            location: None,
            capabilities: Vec::new(),
        }
    }

    /// The PIDF document for `entity` expressing this info (see the module documentation).
    pub fn to_document(&self, entity: &str) -> Document {
        let (basic, activities) = match &self.status {
            PresenceStatus::Available => (Basic::Open, vec![]),
            PresenceStatus::Away => (Basic::Open, vec![Activity::Away]),
            PresenceStatus::Busy => (Basic::Open, vec![Activity::Busy]),
            PresenceStatus::DoNotDisturb => (
                Basic::Closed,
                vec![Activity::Busy, Activity::Other(DND_MARKER.to_owned())],
            ),
            PresenceStatus::OnThePhone => (Basic::Open, vec![Activity::OnThePhone]),
            PresenceStatus::InMeeting => (Basic::Open, vec![Activity::Meeting]),
            PresenceStatus::Offline => (Basic::Closed, vec![]),
            PresenceStatus::Custom(text) => (Basic::Open, vec![Activity::Other(text.clone())]),
        };
        let device = self.device.as_deref().map(str::trim);
        let mut tuple = Tuple::new("t1", basic);
        tuple.device_id = device.map(str::to_owned);
        tuple.notes = self.note.iter().map(Note::new).collect();
        let mut servcaps = Extension::new(ns::CAPS, "servcaps");
        for capability in &self.capabilities {
            let already = servcaps
                .elements()
                .any(|existing| existing.name == *capability);
            if is_ncname(capability) && !already {
                servcaps.children.push(Node::Element(Extension {
                    namespaces: Vec::new(),
                    ..Extension::new(ns::CAPS, capability.clone()).with_text("true")
                }));
            }
        }
        if !servcaps.children.is_empty() {
            tuple.extensions.push(servcaps);
        }
        let mut person = Person {
            id: "p1".to_owned(),
            activities,
            place_type: self.location.iter().cloned().collect(),
            ..Person::default()
        };
        // An empty `<dm:person>` says nothing, so it is left out (the
        // registrar's "registered, so available" document is a tuple
        // alone). Without any person, though, a reader would match the
        // note against old clients' status phrases (rule 3 below), and a
        // note of "Away" would turn `Available` into `Away`: a person that
        // carries nothing else carries the note.
        let persons = if !person.activities.is_empty() || !person.place_type.is_empty() {
            vec![person]
        } else if let Some(note) = &self.note {
            person.notes.push(Note::new(note));
            vec![person]
        } else {
            Vec::new()
        };
        let devices = device
            .map(|device_id| Device {
                id: "d1".to_owned(),
                device_id: Some(device_id.to_owned()),
                ..Device::default()
            })
            .into_iter()
            .collect();
        Document {
            entity: entity.to_owned(),
            tuples: vec![tuple],
            persons,
            devices,
            notes: Vec::new(),
            extensions: Vec::new(),
        }
    }

    /// The simple view of `document` (see the module documentation).
    pub fn from_document(document: &Document) -> PresenceInfo {
        let basic = document.basic();
        let mut activities: Vec<Activity> = document
            .persons
            .iter()
            .flat_map(|person| person.activities.iter().cloned())
            .collect();
        let mut status = None;
        if document.persons.is_empty() {
            activities = legacy_activities(document);
            if activities.is_empty() {
                status = first_note(document).and_then(|note| status_from_note(&note.text));
            }
        }
        let status = status.unwrap_or_else(|| status_from_activities(&activities, basic));
        PresenceInfo {
            status,
            note: first_note(document).map(|note| note.text.clone()),
            device: document
                .devices
                .iter()
                .find_map(|device| device.device_id.clone())
                .or_else(|| {
                    document
                        .tuples
                        .iter()
                        .find_map(|tuple| tuple.device_id.clone())
                }),
            location: document
                .persons
                .iter()
                .find_map(|person| person.place_type.first().cloned()),
            capabilities: capabilities(&document.tuples),
        }
    }
}

fn first_note(document: &Document) -> Option<&Note> {
    document
        .persons
        .iter()
        .flat_map(|person| person.notes.first())
        .chain(document.tuples.iter().flat_map(|tuple| tuple.notes.first()))
        .chain(document.notes.first())
        .next()
}

fn is_dnd_marker(activity: &Activity) -> bool {
    match activity {
        Activity::Other(text) => {
            let text = text.trim();
            ["dnd", "do-not-disturb", "do not disturb"]
                .iter()
                .any(|marker| text.eq_ignore_ascii_case(marker))
        }
        _ => false,
    }
}

fn status_from_activities(activities: &[Activity], basic: Basic) -> PresenceStatus {
    use Activity as A;
    let any = |wanted: &[Activity]| activities.iter().any(|activity| wanted.contains(activity));
    let busy = activities.contains(&A::Busy);
    if busy && (basic == Basic::Closed || activities.iter().any(is_dnd_marker)) {
        return PresenceStatus::DoNotDisturb;
    }
    if any(&[A::OnThePhone]) {
        return PresenceStatus::OnThePhone;
    }
    if any(&[A::Meeting]) {
        return PresenceStatus::InMeeting;
    }
    if any(&[
        A::Busy,
        A::Appointment,
        A::Working,
        A::Performance,
        A::Presentation,
        A::Steering,
        A::Worship,
        A::Playing,
        A::Spectator,
        A::TV,
    ]) {
        return PresenceStatus::Busy;
    }
    if any(&[
        A::Away,
        A::Vacation,
        A::Holiday,
        A::Travel,
        A::InTransit,
        A::PermanentAbsence,
        A::Sleeping,
        A::Meal,
        A::Breakfast,
        A::Lunch,
        A::Dinner,
        A::Shopping,
    ]) {
        return PresenceStatus::Away;
    }
    let custom = activities.iter().find_map(|activity| match activity {
        A::Other(text) => Some(text.clone()),
        A::LookingForWork => Some(activity.element_name().to_owned()),
        _ => None,
    });
    match (custom, basic) {
        (Some(text), _) => PresenceStatus::Custom(text),
        (None, Basic::Open) => PresenceStatus::Available,
        (None, Basic::Closed) => PresenceStatus::Offline,
    }
}

fn status_from_note(note: &str) -> Option<PresenceStatus> {
    let note = note.trim().to_lowercase();
    let note = note.trim_end_matches(['.', '!']);
    match note {
        "away" | "be right back" | "out to lunch" => Some(PresenceStatus::Away),
        "busy" => Some(PresenceStatus::Busy),
        "on the phone" | "on a call" | "in a call" => Some(PresenceStatus::OnThePhone),
        "in a meeting" => Some(PresenceStatus::InMeeting),
        "do not disturb" | "dnd" => Some(PresenceStatus::DoNotDisturb),
        _ => None,
    }
}

/// Activities carried the pre-RFC 4480 way: `activities` elements in tuple status or at
/// document level, holding `<activity>word</activity>` or `<word/>` children.
fn legacy_activities(document: &Document) -> Vec<Activity> {
    let mut found = Vec::new();
    let containers = document
        .tuples
        .iter()
        .flat_map(|tuple| tuple.status.extensions.iter().chain(&tuple.extensions))
        .chain(&document.extensions);
    for container in containers {
        collect_legacy(container, &mut found, 0);
    }
    found
}

fn collect_legacy(element: &Extension, found: &mut Vec<Activity>, depth: usize) {
    // Legacy person elements wrap activities one or two levels down (`<pp:person><status>`).
    if depth > 3 {
        return;
    }
    if element.name != "activities" {
        for child in element.elements() {
            collect_legacy(child, found, depth + 1);
        }
        return;
    }
    for child in element.elements() {
        let word = if child.name == "activity" {
            child.text().trim().to_owned()
        } else if child.name == "other" {
            found.push(Activity::Other(child.text()));
            continue;
        } else if child.name == "note" {
            continue;
        } else {
            child.name.clone()
        };
        let word_lower = word.to_ascii_lowercase();
        found.push(Activity::from_element_name(&word_lower).unwrap_or(Activity::Other(word)));
    }
}

/// RFC 5196 service capabilities set to `true` in the tuples' `<caps:servcaps>`.
fn capabilities(tuples: &[Tuple]) -> Vec<String> {
    let mut capabilities: Vec<String> = Vec::new();
    let servcaps = tuples
        .iter()
        .flat_map(|tuple| &tuple.extensions)
        .filter(|extension| extension.is(ns::CAPS, "servcaps"));
    for servcaps in servcaps {
        for capability in servcaps.elements() {
            let enabled = capability.namespace == ns::CAPS
                && capability.text().trim().eq_ignore_ascii_case("true");
            if enabled && !capabilities.contains(&capability.name) {
                capabilities.push(capability.name.clone());
            }
        }
    }
    capabilities
}
