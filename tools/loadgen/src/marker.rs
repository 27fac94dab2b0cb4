//! The mark a publisher puts into its document: a run id, a sequence number
//! and the send time, carried in the tuple's `<note>` — an element every
//! presence server keeps verbatim when it composes the documents of a
//! presentity for its watchers (RFC 3863 §4.1.6, RFC 3903 leaves composition
//! to the server but tuples are passed through).
//!
//! The note reads `loadgen run=<id> seq=<n> t=<ns>`; `t` is nanoseconds on
//! the run's [`crate::clock::Clock`], so only the process that published can
//! turn it into a latency, and the run id keeps documents of other runs (a
//! publication still alive on a long-running server) from being mistaken for
//! this one's.

use pidf::{Basic, Document, Note, Tuple};

/// The prefix of every note this tool writes.
const PREFIX: &str = "loadgen";

/// What a published document says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Marker {
    /// The run that published it.
    pub run: String,
    /// The publisher's sequence number: 0 for the initial state, one more per change.
    pub seq: u64,
    /// When the PUBLISH was first sent, in nanoseconds on the run's clock.
    pub sent_ns: u64,
}

impl Marker {
    /// The note text.
    pub fn to_note(&self) -> String {
        format!(
            "{PREFIX} run={} seq={} t={}",
            self.run, self.seq, self.sent_ns
        )
    }

    /// Reads a note written by [`Marker::to_note`]; `None` for any other text.
    pub fn parse_note(text: &str) -> Option<Marker> {
        let mut words = text.split_whitespace();
        if words.next()? != PREFIX {
            return None;
        }
        let (mut run, mut seq, mut sent_ns) = (None, None, None);
        for word in words {
            match word.split_once('=')? {
                ("run", v) => run = Some(v.to_owned()),
                ("seq", v) => seq = Some(v.parse().ok()?),
                ("t", v) => sent_ns = Some(v.parse().ok()?),
                _ => {}
            }
        }
        Some(Marker {
            run: run?,
            seq: seq?,
            sent_ns: sent_ns?,
        })
    }
}

/// The document `aor` publishes for `marker`: one open tuple whose note is the marker.
/// `device` names the tuple (a publisher's device), so its id stays stable across changes.
pub fn document(aor: &str, device: &str, marker: &Marker) -> String {
    let mut tuple = Tuple::new(device, Basic::Open);
    tuple.notes.push(Note::new(marker.to_note()));
    let mut document = Document::new(format!("pres:{aor}"));
    document.tuples.push(tuple);
    document.to_xml()
}

/// The newest marker of run `run` in a notified document (tuple notes first, then
/// document notes); with several publications composed into one document the highest
/// sequence number is the publisher's latest.
pub fn find(document: &Document, run: &str) -> Option<Marker> {
    document
        .tuples
        .iter()
        .flat_map(|tuple| tuple.notes.iter())
        .chain(document.notes.iter())
        .filter_map(|note| Marker::parse_note(&note.text))
        .filter(|marker| marker.run == run)
        .max_by_key(|marker| marker.seq)
}

/// Every sequence number of run `run` in a notified document, in ascending order: the
/// state the document shows, as far as this run is concerned.
pub fn state(document: &Document, run: &str) -> Vec<u64> {
    let mut seqs: Vec<u64> = document
        .tuples
        .iter()
        .flat_map(|tuple| tuple.notes.iter())
        .chain(document.notes.iter())
        .filter_map(|note| Marker::parse_note(&note.text))
        .filter(|marker| marker.run == run)
        .map(|marker| marker.seq)
        .collect();
    seqs.sort_unstable();
    seqs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn marker(seq: u64) -> Marker {
        Marker {
            run: "r1".into(),
            seq,
            sent_ns: 1_000 + seq,
        }
    }

    #[test]
    fn notes_round_trip() {
        let m = marker(7);
        assert_eq!(Marker::parse_note(&m.to_note()), Some(m));
        assert_eq!(Marker::parse_note("Available"), None);
        assert_eq!(Marker::parse_note("loadgen run=x seq=no t=1"), None);
        assert_eq!(Marker::parse_note("loadgen seq=1 t=1"), None);
    }

    #[test]
    fn a_published_document_carries_its_marker() {
        let xml = document("alice@example.com", "phone", &marker(3));
        let parsed = Document::parse_publication(
            xml.as_bytes(),
            "alice@example.com",
            &pidf::Limits::default(),
        )
        .expect("a valid publication");
        assert_eq!(find(&parsed, "r1"), Some(marker(3)));
        assert_eq!(find(&parsed, "another-run"), None);
    }

    #[test]
    fn the_newest_marker_of_a_composed_document_wins() {
        let old =
            Document::parse(document("a@example.com", "t", &marker(1)).as_bytes()).expect("parses");
        let new =
            Document::parse(document("a@example.com", "t", &marker(2)).as_bytes()).expect("parses");
        let composed = pidf::compose(
            "pres:a@example.com",
            &[
                pidf::Publication {
                    etag: "e1",
                    published_at_ms: 1,
                    document: &old,
                },
                pidf::Publication {
                    etag: "e2",
                    published_at_ms: 2,
                    document: &new,
                },
            ],
        );
        assert_eq!(find(&composed, "r1").map(|m| m.seq), Some(2));
        assert_eq!(state(&composed, "r1"), vec![1, 2]);
    }
}
