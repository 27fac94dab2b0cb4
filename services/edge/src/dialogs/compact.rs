//! A held dialog's record as the edge keeps it between NOTIFYs: the fields
//! in the binary encoding of `contract::codec`, in one allocation, instead
//! of a `DialogRecord` of a dozen strings (about 750 bytes, 13 allocations,
//! for a typical dialog; `bench/heap.sh`). A record is decoded only when
//! its sender wakes up to send and when it is restored after a loss of
//! state — far less often than it is held.

use contract::{CodecError, DialogRecord, Reader, Writer};

/// One dialog's record, encoded (see the module documentation).
pub(super) struct CompactRecord(Box<[u8]>);

impl CompactRecord {
    pub(super) fn new(record: &DialogRecord) -> Self {
        let mut writer = Writer::new();
        record.encode_into(&mut writer);
        CompactRecord(writer.into_vec().into_boxed_slice())
    }

    /// The record as it was held. Fails only if the bytes were damaged,
    /// which nothing here does; callers still say so and carry on.
    pub(super) fn decode(&self) -> Result<DialogRecord, CodecError> {
        let mut reader = Reader::new(&self.0);
        let record = DialogRecord::decode_from(&mut reader)?;
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
        let compact = CompactRecord::new(&held);
        assert_eq!(compact.decode().expect("decodes"), held);
        // Smaller than the struct alone, let alone its strings.
        assert!(compact.len() < std::mem::size_of::<DialogRecord>());
    }

    #[test]
    fn damaged_bytes_are_an_error_not_a_panic() {
        let compact = CompactRecord::new(&record());
        for cut in 0..compact.0.len() {
            let damaged = CompactRecord(compact.0[..cut].into());
            assert!(damaged.decode().is_err(), "cut at {cut}");
        }
        let mut longer = compact.0.to_vec();
        longer.push(0);
        assert!(CompactRecord(longer.into()).decode().is_err());
    }
}
