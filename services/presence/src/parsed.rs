//! Parsed publication bodies, remembered by their text.
//!
//! Composing a presentity's state needs every live publication as a parsed
//! document, and parsing PIDF is the largest cost of a PUBLISH or of a
//! registration's presence: without this each one was parsed twice (when
//! validated, and again when composed), and every other publication of the
//! presentity once more at each change. Whoever produces or validates a
//! body records its document here; composition takes it from here and only
//! parses what it does not find. The entries are keyed by the whole body,
//! so a hit is always the document of exactly that text.
//!
//! Bounded: past [`CAPACITY`] entries an arbitrary one makes room. A miss
//! only costs a parse, so eviction never changes a result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use pidf::Document;

/// Most bodies remembered (a composed document is about 1-2 KB parsed).
pub const CAPACITY: usize = 4096;

/// The shared memo (cloning shares it).
#[derive(Clone, Default)]
pub struct ParsedBodies {
    entries: Arc<Mutex<HashMap<Arc<str>, Arc<Document>>>>,
}

impl ParsedBodies {
    /// Remembers `document` as the parse of `body`. The caller guarantees
    /// that `Document::parse(body)` would give an equal document.
    pub fn remember(&self, body: &str, document: Document) {
        let mut entries = self.lock();
        if entries.len() >= CAPACITY && !entries.contains_key(body) {
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(Arc::from(body), Arc::new(document));
    }

    /// The document of `body`: remembered, or parsed now (and remembered).
    /// `None` when the body does not parse.
    pub fn get(&self, body: &str) -> Option<Arc<Document>> {
        if let Some(found) = self.lock().get(body) {
            return Some(found.clone());
        }
        let document = Document::parse(body.as_bytes()).ok()?;
        let document = Arc::new(document);
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(Arc::from(body), document.clone());
        Some(document)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Arc<Document>>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (each operation is one insert or remove), so a poisoned lock is
        // still usable.
        locks::lock(&self.entries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="sip:alice@example.com">
  <tuple id="t1"><status><basic>open</basic></status></tuple>
</presence>"#;

    #[test]
    fn parses_on_a_miss_and_remembers() {
        let memo = ParsedBodies::default();
        let first = memo.get(BODY).expect("parses");
        let second = memo.get(BODY).expect("remembered");
        assert!(Arc::ptr_eq(&first, &second));
        assert_eq!(*first, Document::parse(BODY.as_bytes()).expect("parses"));
    }

    #[test]
    fn a_body_that_does_not_parse_is_none() {
        assert!(ParsedBodies::default().get("<presence").is_none());
    }

    #[test]
    fn stays_within_capacity() {
        let memo = ParsedBodies::default();
        for i in 0..CAPACITY + 10 {
            let body = BODY.replace("t1", &format!("t{i}"));
            assert!(memo.get(&body).is_some());
        }
        assert_eq!(memo.lock().len(), CAPACITY);
    }

    #[test]
    fn remembered_documents_are_returned() {
        let memo = ParsedBodies::default();
        let document = Document::parse(BODY.as_bytes()).expect("parses");
        memo.remember(BODY, document.clone());
        assert_eq!(*memo.get(BODY).expect("remembered"), document);
    }
}
