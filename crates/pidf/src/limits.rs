//! Resource limits applied while parsing untrusted documents.

/// Bounds on the work a single document may cause.
///
/// Presence documents arrive from the network (PUBLISH bodies) and from storage, so parsing
/// stops with an error as soon as any bound is crossed instead of allocating without end.
/// Independently of these, an element may carry at most 128 attributes (namespace
/// declarations included), so that no document costs more than linear time to refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted document, in bytes (default 64 KiB).
    pub max_bytes: usize,
    /// Deepest accepted element nesting, counting the root as depth 1 (default 32).
    pub max_depth: usize,
    /// Largest accepted number of elements in the whole document (default 4096).
    pub max_elements: usize,
}

impl Limits {
    /// The default limits: 64 KiB, depth 32, 4096 elements.
    pub const DEFAULT: Limits = Limits {
        max_bytes: 64 * 1024,
        max_depth: 32,
        max_elements: 4096,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}
