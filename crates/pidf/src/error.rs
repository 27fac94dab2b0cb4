//! Errors returned when reading presence and watcher-info documents.

/// Why a presence (PIDF) or watcher-info document was refused.
///
/// Every variant is a property of the input: parsing never panics, whatever bytes arrive.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PidfError {
    /// The input is not well-formed XML, is not UTF-8, uses an unbound namespace prefix,
    /// or lacks something the schema requires (for example the `entity` attribute).
    #[error("malformed document: {0}")]
    Malformed(String),
    /// The input is longer than [`Limits::max_bytes`](crate::Limits::max_bytes).
    #[error("document exceeds the size limit of {limit} bytes")]
    TooLarge {
        /// The limit that was exceeded, in bytes.
        limit: usize,
    },
    /// The input nests elements deeper than [`Limits::max_depth`](crate::Limits::max_depth).
    #[error("document nests elements deeper than {limit} levels")]
    TooDeep {
        /// The depth limit that was exceeded.
        limit: usize,
    },
    /// The input has more elements than [`Limits::max_elements`](crate::Limits::max_elements).
    #[error("document has more than {limit} elements")]
    TooManyElements {
        /// The element-count limit that was exceeded.
        limit: usize,
    },
    /// An element carries more attributes (namespace declarations included) than the fixed
    /// bound of 128 per element.
    #[error("an element has more than {limit} attributes")]
    TooManyAttributes {
        /// The per-element attribute limit that was exceeded.
        limit: usize,
    },
    /// The input carries a `<!DOCTYPE ...>` (and so possibly entity declarations).
    /// Presence documents never need one, and refusing it outright closes the door on
    /// entity-expansion ("billion laughs") and external-entity attacks.
    #[error("DOCTYPE and entity declarations are not allowed")]
    DoctypeForbidden,
    /// The document's `entity` does not name the address-of-record it was published for.
    #[error("document entity {found:?} does not match {expected:?}")]
    WrongEntity {
        /// The address-of-record the publication was made for.
        expected: String,
        /// The `entity` attribute found in the document.
        found: String,
    },
    /// The root element is not `presence` in the PIDF namespace `urn:ietf:params:xml:ns:pidf`.
    #[error("not a PIDF document (root element {found})")]
    NotPidf {
        /// The root element as `{namespace}local-name`.
        found: String,
    },
    /// The root element is not `watcherinfo` in the namespace `urn:ietf:params:xml:ns:watcherinfo`.
    #[error("not a watcher-info document (root element {found})")]
    NotWatcherInfo {
        /// The root element as `{namespace}local-name`.
        found: String,
    },
}
