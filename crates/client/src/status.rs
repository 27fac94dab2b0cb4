//! The application's view of presence: [`PresenceStatus`] and [`PresenceInfo`], and their
//! mapping to PIDF/RPID documents through the `pidf` crate.
//!
//! | [`PresenceStatus`] | PIDF written (see `pidf::status`)                  |
//! |--------------------|----------------------------------------------------|
//! | `Available`        | open                                               |
//! | `Busy`             | open, `<rpid:busy/>`                               |
//! | `Away`             | open, `<rpid:away/>`                               |
//! | `DoNotDisturb`     | closed, `<rpid:busy/><rpid:other>dnd</rpid:other>` |
//! | `Offline`          | closed                                             |
//! | `InCall`           | open, `<rpid:on-the-phone/>`                       |
//! | `Custom(s)`        | open, `<rpid:other>s</rpid:other>`                 |
//!
//! `Custom("in-meeting")` is written as `<rpid:meeting/>`, and a received `<rpid:meeting/>`
//! reads as `Custom("in-meeting")`, so a meeting set by a calendar application is shown as such.

use pidf::Document;

/// A presence status, as the seed design lists them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PresenceStatus {
    /// Reachable: "open" in PIDF.
    Available,
    /// Reachable but occupied.
    Busy,
    /// Not at the device.
    Away,
    /// Does not want to be disturbed.
    DoNotDisturb,
    /// Not reachable: "closed" in PIDF.
    Offline,
    /// In a call.
    InCall,
    /// Any other status, as free text.
    Custom(String),
}

/// The label of a meeting, the one custom status with its own RPID element.
const IN_MEETING: &str = "in-meeting";

impl PresenceStatus {
    /// A short label: `available`, `busy`, `away`, `do-not-disturb`, `offline`, `in-call`, or
    /// the custom text.
    ///
    /// ```
    /// use presence_client::PresenceStatus;
    /// assert_eq!(PresenceStatus::DoNotDisturb.label(), "do-not-disturb");
    /// assert_eq!(PresenceStatus::Custom("lunch".into()).label(), "lunch");
    /// ```
    pub fn label(&self) -> &str {
        match self {
            PresenceStatus::Available => "available",
            PresenceStatus::Busy => "busy",
            PresenceStatus::Away => "away",
            PresenceStatus::DoNotDisturb => "do-not-disturb",
            PresenceStatus::Offline => "offline",
            PresenceStatus::InCall => "in-call",
            PresenceStatus::Custom(text) => text,
        }
    }

    fn to_pidf(&self) -> pidf::PresenceStatus {
        match self {
            PresenceStatus::Available => pidf::PresenceStatus::Available,
            PresenceStatus::Busy => pidf::PresenceStatus::Busy,
            PresenceStatus::Away => pidf::PresenceStatus::Away,
            PresenceStatus::DoNotDisturb => pidf::PresenceStatus::DoNotDisturb,
            PresenceStatus::Offline => pidf::PresenceStatus::Offline,
            PresenceStatus::InCall => pidf::PresenceStatus::OnThePhone,
            PresenceStatus::Custom(text) if text == IN_MEETING => pidf::PresenceStatus::InMeeting,
            PresenceStatus::Custom(text) => pidf::PresenceStatus::Custom(text.clone()),
        }
    }

    fn from_pidf(status: pidf::PresenceStatus) -> PresenceStatus {
        match status {
            pidf::PresenceStatus::Available => PresenceStatus::Available,
            pidf::PresenceStatus::Away => PresenceStatus::Away,
            pidf::PresenceStatus::Busy => PresenceStatus::Busy,
            pidf::PresenceStatus::DoNotDisturb => PresenceStatus::DoNotDisturb,
            pidf::PresenceStatus::OnThePhone => PresenceStatus::InCall,
            pidf::PresenceStatus::InMeeting => PresenceStatus::Custom(IN_MEETING.to_owned()),
            pidf::PresenceStatus::Offline => PresenceStatus::Offline,
            pidf::PresenceStatus::Custom(text) => PresenceStatus::Custom(text),
        }
    }
}

impl std::fmt::Display for PresenceStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Rich presence: the status and what goes with it.
///
/// `extensions` holds the elements of a received document that the fields do not cover
/// (vendor extensions, RPID elements such as `<rpid:sphere>`), and is written back when the
/// info is published, so nothing a richer client said is lost on the way through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceInfo {
    /// The status.
    pub status: PresenceStatus,
    /// Free text for humans ("Working from home").
    pub note: Option<String>,
    /// The device in use (a device identifier such as `urn:uuid:...`, or a name).
    pub device: Option<String>,
    /// Where the user is: an RFC 4589 place type (`office`, `home`) or free text.
    pub location: Option<String>,
    /// What the device can do: `audio`, `video`, `message`, ...
    pub capabilities: Vec<String>,
    /// Unknown elements of the document, carried through.
    pub extensions: Vec<pidf::Extension>,
}

impl PresenceInfo {
    /// Info with only a status.
    pub fn new(status: PresenceStatus) -> PresenceInfo {
        PresenceInfo {
            status,
            note: None,
            device: None,
            location: None,
            capabilities: Vec::new(),
            extensions: Vec::new(),
        }
    }

    /// The PIDF document of this info for `entity` (a `sip:` or `pres:` URI).
    ///
    /// ```
    /// use presence_client::{PresenceInfo, PresenceStatus};
    /// let mut info = PresenceInfo::new(PresenceStatus::InCall);
    /// info.note = Some("with a customer".into());
    /// let xml = info.to_document("sip:alice@example.com").to_xml();
    /// assert!(xml.contains("on-the-phone"));
    /// let back = PresenceInfo::from_xml(xml.as_bytes()).unwrap();
    /// assert_eq!(back, info);
    /// ```
    pub fn to_document(&self, entity: &str) -> Document {
        let simple = pidf::PresenceInfo {
            status: self.status.to_pidf(),
            note: self.note.clone(),
            device: self.device.clone(),
            location: self.location.clone(),
            capabilities: self.capabilities.clone(),
        };
        let mut document = simple.to_document(entity);
        document.extensions.extend(self.extensions.iter().cloned());
        document
    }

    /// The info a document expresses (see the module documentation).
    pub fn from_document(document: &Document) -> PresenceInfo {
        let simple = pidf::PresenceInfo::from_document(document);
        PresenceInfo {
            status: PresenceStatus::from_pidf(simple.status),
            note: simple.note,
            device: simple.device,
            location: simple.location,
            capabilities: simple.capabilities,
            extensions: unknown_extensions(document),
        }
    }

    /// Parses a PIDF body (as received in a NOTIFY).
    pub fn from_xml(xml: &[u8]) -> Result<PresenceInfo, pidf::PidfError> {
        Document::parse(xml).map(|document| PresenceInfo::from_document(&document))
    }
}

impl Default for PresenceInfo {
    fn default() -> Self {
        PresenceInfo::new(PresenceStatus::Offline)
    }
}

impl From<PresenceStatus> for PresenceInfo {
    fn from(status: PresenceStatus) -> Self {
        PresenceInfo::new(status)
    }
}

/// Elements the simple fields do not cover: extensions at document, person and device level,
/// and those of tuples other than the RFC 5196 capabilities (which the fields cover).
fn unknown_extensions(document: &Document) -> Vec<pidf::Extension> {
    let tuple_level = document.tuples.iter().flat_map(|tuple| {
        tuple
            .extensions
            .iter()
            .chain(&tuple.status.extensions)
            .filter(|e| !e.is(pidf::ns::CAPS, "servcaps"))
    });
    document
        .extensions
        .iter()
        .chain(document.persons.iter().flat_map(|p| &p.extensions))
        .chain(document.devices.iter().flat_map(|d| &d.extensions))
        .chain(tuple_level)
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_survives_the_trip_through_pidf() {
        for status in [
            PresenceStatus::Available,
            PresenceStatus::Busy,
            PresenceStatus::Away,
            PresenceStatus::DoNotDisturb,
            PresenceStatus::Offline,
            PresenceStatus::InCall,
            PresenceStatus::Custom("in-meeting".into()),
            PresenceStatus::Custom("gardening".into()),
        ] {
            let mut info = PresenceInfo::new(status.clone());
            info.note = Some("n".into());
            info.device = Some("urn:uuid:1".into());
            info.location = Some("office".into());
            info.capabilities = vec!["audio".into(), "video".into()];
            let xml = info.to_document("sip:a@example.com").to_xml();
            let back = PresenceInfo::from_xml(xml.as_bytes()).expect("own document parses");
            assert_eq!(back, info, "{status:?}:\n{xml}");
        }
    }

    #[test]
    fn unknown_extensions_are_kept_and_written_back() {
        let xml = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:v="urn:vendor:x"
            entity="sip:a@example.com"><tuple id="t"><status><basic>open</basic></status>
            <v:mood-ring colour="blue"/></tuple><v:battery>80</v:battery></presence>"#;
        let info = PresenceInfo::from_xml(xml).expect("parses");
        assert_eq!(info.status, PresenceStatus::Available);
        let names: Vec<&str> = info.extensions.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["battery", "mood-ring"]);
        let written = info.to_document("sip:a@example.com").to_xml();
        assert!(written.contains("urn:vendor:x"), "{written}");
        assert!(written.contains("colour=\"blue\""), "{written}");
        let again = PresenceInfo::from_xml(written.as_bytes()).expect("parses");
        assert_eq!(again.extensions.len(), 2);
    }

    #[test]
    fn a_meeting_from_a_calendar_reads_as_in_meeting() {
        let doc = pidf::PresenceInfo::new(pidf::PresenceStatus::InMeeting)
            .to_document("sip:a@example.com");
        let info = PresenceInfo::from_document(&doc);
        assert_eq!(info.status, PresenceStatus::Custom("in-meeting".into()));
    }
}
