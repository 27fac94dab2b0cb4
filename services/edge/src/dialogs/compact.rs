//! A held dialog's record as the edge keeps it between NOTIFYs: the fields
//! in the binary encoding of `contract::codec`, in one allocation, instead
//! of a `DialogRecord` of a dozen strings (about 750 bytes, 13 allocations,
//! for a typical dialog; `bench/heap.sh`). A record is decoded only when
//! its sender wakes up to send and when it is restored after a loss of
//! state — far less often than it is held.
//!
//! The encoding is the one Redis holds subscriptions in
//! ([`DialogRecord::encode_compact`]): it leaves out the dialog id and the
//! presentity, which the dialog's index entry holds anyway, and writes the
//! fields that repeat another as a reference (about 100 bytes for a typical
//! dialog, against 230 for the full encoding).

use contract::{CodecError, DialogRecord, Reader, Writer};

/// One dialog's record, encoded (see the module documentation).
pub(super) struct CompactRecord(Box<[u8]>);

impl CompactRecord {
    /// `record`, a dialog watching `presentity`, encoded.
    pub(super) fn new(record: &DialogRecord, presentity: &str) -> Self {
        let mut writer = Writer::new();
        record.encode_compact(&mut writer, presentity, 0);
        CompactRecord(writer.into_vec().into_boxed_slice())
    }

    /// The record as it was held, given what the encoding left out: its
    /// dialog id and presentity. Fails only if the bytes were damaged,
    /// which nothing here does; callers still say so and carry on.
    pub(super) fn decode(&self, id: &str, presentity: &str) -> Result<DialogRecord, CodecError> {
        let mut reader = Reader::new(&self.0);
        let (record, _) = DialogRecord::decode_compact(&mut reader, id, presentity)?;
        reader.finish()?;
        Ok(record)
    }

    /// Encoded size in bytes.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRESENTITY: &str = "bob@example.com";

    fn record() -> DialogRecord {
        DialogRecord {
            id: "a84b4c76e66710@pc33.example.com;from-tag=1928301774;to-tag=e4c1".into(),
            call_id: "a84b4c76e66710@pc33.example.com".into(),
            local_tag: "e4c1".into(),
            remote_tag: "1928301774".into(),
            remote_uri: "sip:alice@example.com".into(),
            local_uri: "sip:bob@example.com".into(),
            remote_target: "sip:alice@192.0.2.4:5060;transport=udp".into(),
            route_set: vec!["<sip:proxy.example.com;lr>".into()],
            transport: "udp".into(),
            remote_addr: "192.0.2.4:5060".into(),
            edge_id: "edge-0".into(),
            notify_cseq: 7,
            event_id: "1".into(),
            watcher: "sip:alice@example.com".into(),
            package: contract::PRESENCE.into(),
        }
    }

    #[test]
    fn a_record_comes_back_as_it_was_held() {
        let held = record();
        let compact = CompactRecord::new(&held, PRESENTITY);
        assert_eq!(compact.decode(&held.id, PRESENTITY).expect("decodes"), held);
        // Smaller than the struct alone, let alone its strings.
        assert!(compact.len() < std::mem::size_of::<DialogRecord>());
    }

    #[test]
    fn what_the_index_holds_is_left_out_and_a_record_that_repeats_nothing_still_comes_back() {
        let held = record();
        let mut full = Writer::new();
        held.encode_into(&mut full);
        let compact = CompactRecord::new(&held, PRESENTITY);
        // The id, the presentity and the fields that repeat them are not
        // written again.
        assert!(
            compact.len() + held.id.len() < full.into_vec().len(),
            "compact {} bytes",
            compact.len()
        );
        // Nothing repeats another field: every one is written in full.
        let odd = DialogRecord {
            local_tag: "other".into(),
            watcher: "carol@example.net".into(),
            local_uri: "sips:bob@example.org".into(),
            transport: "sctp".into(),
            package: "dialog".into(),
            event_id: String::new(),
            route_set: Vec::new(),
            ..record()
        };
        let compact = CompactRecord::new(&odd, PRESENTITY);
        assert_eq!(compact.decode(&odd.id, PRESENTITY).expect("decodes"), odd);
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let held = record();
        let compact = CompactRecord::new(&held, PRESENTITY);
        for cut in 0..compact.0.len() {
            let damaged = CompactRecord(compact.0[..cut].into());
            assert!(
                damaged.decode(&held.id, PRESENTITY).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = compact.0.to_vec();
        longer.push(0);
        assert!(CompactRecord(longer.into())
            .decode(&held.id, PRESENTITY)
            .is_err());
    }
}
