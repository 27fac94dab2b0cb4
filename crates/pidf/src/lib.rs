//! Presence documents for the presence service.
//!
//! - [`Document`]: PIDF (RFC 3863, `application/pidf+xml`) with the data-model `person` and
//!   `device` elements (RFC 4479) and rich presence (RPID, RFC 4480) activities, mood,
//!   place type, privacy and user input. Parse with [`Document::parse`] /
//!   [`Document::parse_publication`], write with [`Document::to_xml`].
//! - [`compose()`]: merges the live publications of a presentity into the document sent to
//!   watchers (policy on [`compose()`]).
//! - [`PresenceInfo`] / [`PresenceStatus`]: a simple status model with a documented two-way
//!   mapping to PIDF ([`status`]), for applications that want no XML.
//! - [`watcherinfo`]: RFC 3858 watcher information documents.
//!
//! ```
//! use pidf::{compose, Document, Limits, PresenceInfo, PresenceStatus, Publication};
//!
//! // A PUBLISH body, checked against the AOR it was sent for.
//! let body = br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">
//!   <tuple id="t1"><status><basic>open</basic></status></tuple></presence>"#;
//! let published = Document::parse_publication(body, "alice@example.com", &Limits::default())?;
//!
//! // A second device publishes through the status model.
//! let phone = PresenceInfo::new(PresenceStatus::OnThePhone).to_document("sip:alice@example.com");
//!
//! let notify = compose(
//!     "pres:alice@example.com",
//!     &[
//!         Publication { etag: "a1", published_at_ms: 1_000, document: &published },
//!         Publication { etag: "b2", published_at_ms: 2_000, document: &phone },
//!     ],
//! );
//! assert_eq!(notify.summary().status, PresenceStatus::OnThePhone);
//! assert_eq!(notify.tuples.len(), 2);
//! let notify_body: String = notify.to_xml();
//! assert!(notify_body.contains("<rpid:on-the-phone/>"));
//! # Ok::<(), pidf::PidfError>(())
//! ```
//!
//! # Namespaces
//! Elements are matched by namespace URI and local name, never by prefix, so
//! `<ns0:presence xmlns:ns0="urn:ietf:params:xml:ns:pidf">` reads like `<presence>`.
//! Interpreted namespaces are listed in [`ns`]: PIDF, data model, RPID, plus RFC 4589
//! location types inside `<rpid:place-type>` and RFC 5196 capabilities for the status model.
//! Every other element (vendor extensions at presence, tuple, status, person or device level,
//! RPID elements without a typed field such as `<rpid:sphere>`) is kept as an [`Extension`]:
//! an element tree with namespace URIs, original prefixes and the namespace declarations it
//! needs, so it is written back well-formed and with the same meaning after composition.
//!
//! # Untrusted input
//! Parsing enforces [`Limits`] (size, depth, element count), refuses any `<!DOCTYPE>` (and so
//! every entity declaration: no entity-expansion or external-entity attacks), accepts only the
//! five predefined entities and character references, requires UTF-8, and never panics.

#![warn(missing_docs)]

pub mod compose;
pub mod document;
pub mod error;
pub mod limits;
pub mod status;
pub mod watcherinfo;

mod aor;
mod parse;
mod write;

pub use compose::{compose, Publication};
pub use document::{
    Activity, Attribute, Basic, Contact, Device, Document, Extension, InputState, NamespaceDecl,
    Node, Note, Person, Status, Tuple, UserInput,
};
pub use error::PidfError;
pub use limits::Limits;
pub use status::{PresenceInfo, PresenceStatus};

/// Namespace URIs this crate interprets.
pub mod ns {
    /// PIDF, RFC 3863: `presence`, `tuple`, `status`, `basic`, `contact`, `note`, `timestamp`.
    pub const PIDF: &str = "urn:ietf:params:xml:ns:pidf";
    /// Presence data model, RFC 4479: `person`, `device`, `deviceID`, `note`, `timestamp`.
    pub const DATA_MODEL: &str = "urn:ietf:params:xml:ns:pidf:data-model";
    /// Rich presence (RPID), RFC 4480.
    pub const RPID: &str = "urn:ietf:params:xml:ns:pidf:rpid";
    /// Location types, RFC 4589 (values of `<rpid:place-type>`).
    pub const LOCATION_TYPE: &str = "urn:ietf:params:xml:ns:location-type";
    /// User agent capabilities, RFC 5196 (`<caps:servcaps>`).
    pub const CAPS: &str = "urn:ietf:params:xml:ns:pidf:caps";
    /// Watcher information, RFC 3858.
    pub const WATCHERINFO: &str = "urn:ietf:params:xml:ns:watcherinfo";
    /// The XML namespace, bound to the `xml` prefix (`xml:lang`).
    pub const XML: &str = "http://www.w3.org/XML/1998/namespace";
}
