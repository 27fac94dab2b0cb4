//! Dialog records and watcher entries: stored by the presence service,
//! cached and continued by whichever edge holds the dialog.

use serde::{Deserialize, Serialize};

use crate::codec::{CodecError, Reader, Writer};

/// The event package of presence (RFC 3856).
pub const PRESENCE: &str = "presence";

/// The event package of watcher information (RFC 3857).
pub const WINFO: &str = "presence.winfo";

/// Transport names as edges write them, by their index in the compact
/// encoding ([`DialogRecord::encode_compact`]): append only, never reorder.
const TRANSPORTS: [&str; 5] = ["udp", "tcp", "tls", "ws", "wss"];
/// Event packages by their index in the compact encoding: append only.
const PACKAGES: [&str; 2] = [PRESENCE, WINFO];

/// The dialog state an edge needs to send NOTIFYs (RFC 3261 §12).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DialogRecord {
    pub id: String,
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    pub remote_uri: String,
    pub local_uri: String,
    pub remote_target: String,
    #[serde(default)]
    pub route_set: Vec<String>,
    pub transport: String,
    pub remote_addr: String,
    pub edge_id: String,
    pub notify_cseq: u32,
    #[serde(default)]
    pub event_id: String,
    pub watcher: String,
    /// The event package: `presence` (also when empty, for records older
    /// than watcher info) or `presence.winfo`.
    #[serde(default)]
    pub package: String,
}

impl DialogRecord {
    /// True for a `presence.winfo` subscription.
    pub fn is_winfo(&self) -> bool {
        self.package == WINFO
    }

    /// Writes the record's fields in declaration order, as part of the
    /// binary encoding of the subscription record that holds it (see
    /// [`crate::codec`]: binary because JSON serialisation of stored
    /// records cost ~12 % of the CPU under load).
    pub fn encode_into(&self, w: &mut Writer) {
        w.str(&self.id);
        w.str(&self.call_id);
        w.str(&self.local_tag);
        w.str(&self.remote_tag);
        w.str(&self.remote_uri);
        w.str(&self.local_uri);
        w.str(&self.remote_target);
        w.seq(&self.route_set, |w, route| w.str(route));
        w.str(&self.transport);
        w.str(&self.remote_addr);
        w.str(&self.edge_id);
        w.varint(u64::from(self.notify_cseq));
        w.str(&self.event_id);
        w.str(&self.watcher);
        w.str(&self.package);
    }

    /// Reads what [`DialogRecord::encode_into`] wrote.
    pub fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(DialogRecord {
            id: r.string()?,
            call_id: r.string()?,
            local_tag: r.string()?,
            remote_tag: r.string()?,
            remote_uri: r.string()?,
            local_uri: r.string()?,
            remote_target: r.string()?,
            route_set: r.seq(Reader::string)?,
            transport: r.string()?,
            remote_addr: r.string()?,
            edge_id: r.string()?,
            notify_cseq: r.u32()?,
            event_id: r.string()?,
            watcher: r.string()?,
            package: r.string()?,
        })
    }

    /// Writes the record's fields without what the place it is stored at
    /// already says: the dialog id (the map field of a subscription record)
    /// and the presentity (the map's entity). Fields that usually repeat
    /// another one are written as a reference to it
    /// ([`Writer::known_str`]): the local tag (the dialog id, as the edge
    /// makes it), the watcher (the presentity, for watcher info), the From
    /// URI (`sip:` and the watcher), the To URI (`sip:` and the
    /// presentity), the Contact (the From URI's `sip:user@`), the transport
    /// and the event package (fixed names).
    ///
    /// The first byte is shared with the holder of the record: its low four
    /// bits are `holder_bits` (a subscription's status and flags), bit 4
    /// says a route set follows, bit 5 an event id; usually neither does.
    pub fn encode_compact(&self, w: &mut Writer, presentity: &str, holder_bits: u8) {
        let has_routes = !self.route_set.is_empty();
        let has_event_id = !self.event_id.is_empty();
        w.u8(holder_bits & 0x0f | u8::from(has_routes) << 4 | u8::from(has_event_id) << 5);
        let sip_presentity = format!("sip:{presentity}");
        let sip_watcher = format!("sip:{}", self.watcher);
        w.known_str(&self.watcher, &[presentity]);
        w.known_str(&self.local_tag, &[&self.id]);
        w.str(&self.call_id);
        w.str(&self.remote_tag);
        w.known_str(&self.remote_uri, &[&sip_watcher]);
        w.known_str(&self.local_uri, &[&sip_presentity]);
        w.known_str(&self.remote_target, &[&self.remote_uri, &sip_watcher]);
        if has_routes {
            w.seq(&self.route_set, |w, route| w.str(route));
        }
        w.known_str(&self.transport, &TRANSPORTS);
        w.str(&self.remote_addr);
        w.str(&self.edge_id);
        w.varint(u64::from(self.notify_cseq));
        if has_event_id {
            w.str(&self.event_id);
        }
        w.known_str(&self.package, &PACKAGES);
    }

    /// Reads what [`DialogRecord::encode_compact`] wrote, given the dialog
    /// id and the presentity it left out; returns the holder's four bits
    /// with it.
    pub fn decode_compact(
        r: &mut Reader<'_>,
        id: &str,
        presentity: &str,
    ) -> Result<(Self, u8), CodecError> {
        let at = r.offset();
        let bits = r.u8()?;
        if bits >> 6 != 0 {
            return Err(CodecError::Invalid {
                what: "dialog record flags",
                value: u64::from(bits),
                at,
            });
        }
        let sip_presentity = format!("sip:{presentity}");
        let watcher = r.known_str(&[presentity])?;
        let sip_watcher = format!("sip:{watcher}");
        let local_tag = r.known_str(&[id])?;
        let call_id = r.string()?;
        let remote_tag = r.string()?;
        let remote_uri = r.known_str(&[&sip_watcher])?;
        let local_uri = r.known_str(&[&sip_presentity])?;
        let remote_target = r.known_str(&[&remote_uri, &sip_watcher])?;
        let route_set = if bits & 0x10 != 0 {
            r.seq(Reader::string)?
        } else {
            Vec::new()
        };
        let record = DialogRecord {
            id: id.to_owned(),
            call_id,
            local_tag,
            remote_tag,
            remote_uri,
            local_uri,
            remote_target,
            route_set,
            transport: r.known_str(&TRANSPORTS)?,
            remote_addr: r.string()?,
            edge_id: r.string()?,
            notify_cseq: r.u32()?,
            event_id: if bits & 0x20 != 0 {
                r.string()?
            } else {
                String::new()
            },
            watcher,
            package: r.known_str(&PACKAGES)?,
        };
        Ok((record, bits & 0x0f))
    }
}

/// One watcher as watcher information shows it (RFC 3858 `<watcher>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatcherEntry {
    /// The subscription (dialog) id: stable across documents.
    pub id: String,
    /// The watcher's authenticated address-of-record.
    pub watcher: String,
    /// `active`, `pending` or `terminated`.
    pub status: String,
    /// What caused the state: `subscribe`, `approved`, `rejected`,
    /// `timeout`, `deactivated`.
    pub event: String,
    pub expires_at_ms: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_older_than_watcher_info_are_presence_dialogs() {
        // A record stored before `package` and `route_set` existed.
        let json = r#"{"id":"d","call_id":"c","local_tag":"l","remote_tag":"r",
            "remote_uri":"sip:a@x","local_uri":"sip:b@x","remote_target":"sip:a@1.2.3.4",
            "transport":"udp","remote_addr":"1.2.3.4:5060","edge_id":"e","notify_cseq":3,
            "watcher":"sip:a@x"}"#;
        let record: DialogRecord = serde_json::from_str(json).unwrap();
        assert!(!record.is_winfo());
        assert!(record.route_set.is_empty());
        assert_eq!(record.notify_cseq, 3);
        let winfo = DialogRecord {
            package: WINFO.into(),
            ..record
        };
        assert!(winfo.is_winfo());
    }

    fn round_trip(record: &DialogRecord) -> Result<DialogRecord, CodecError> {
        let mut w = Writer::new();
        record.encode_into(&mut w);
        let bytes = w.into_vec();
        let mut r = Reader::new(&bytes);
        let decoded = DialogRecord::decode_from(&mut r)?;
        r.finish()?;
        Ok(decoded)
    }

    fn full() -> DialogRecord {
        DialogRecord {
            id: "d1".into(),
            call_id: "c@host".into(),
            local_tag: "l".into(),
            remote_tag: "r".into(),
            remote_uri: "sip:bob@example.com".into(),
            local_uri: "sip:alice@example.com".into(),
            remote_target: "sip:bob@192.0.2.1:5060;transport=tcp".into(),
            route_set: vec!["<sip:p1.example.com;lr>".into(), "<sip:p2;lr>".into()],
            transport: "tcp".into(),
            remote_addr: "192.0.2.1:5060".into(),
            edge_id: "edge-ä".into(),
            notify_cseq: u32::MAX,
            event_id: "\u{1F600}".into(),
            watcher: "sip:bøb@example.com".into(),
            package: WINFO.into(),
        }
    }

    #[test]
    fn a_dialog_record_round_trips() {
        let record = full();
        assert_eq!(round_trip(&record), Ok(record));
        // Empty route set and empty strings.
        assert_eq!(
            round_trip(&DialogRecord::default()),
            Ok(DialogRecord::default())
        );
    }

    fn compact_round_trip(
        record: &DialogRecord,
        presentity: &str,
    ) -> (usize, Result<DialogRecord, CodecError>) {
        let mut w = Writer::new();
        record.encode_compact(&mut w, presentity, 0x0a);
        let bytes = w.into_vec();
        let mut r = Reader::new(&bytes);
        let decoded =
            DialogRecord::decode_compact(&mut r, &record.id, presentity).and_then(|(d, bits)| {
                assert_eq!(bits, 0x0a, "the holder's bits");
                r.finish().map(|()| d)
            });
        (bytes.len(), decoded)
    }

    #[test]
    fn a_compact_dialog_record_round_trips_and_leaves_out_what_repeats() {
        // Nothing in common with the context: every field as it is.
        let record = full();
        assert_eq!(
            compact_round_trip(&record, "alice@example.com").1,
            Ok(record)
        );
        assert_eq!(
            compact_round_trip(&DialogRecord::default(), "").1,
            Ok(DialogRecord::default())
        );
        // A dialog as an edge makes it: the repeats cost a byte or a few.
        let typical = DialogRecord {
            id: "0123456789abcdef".into(),
            call_id: "17-4242@192.0.2.1".into(),
            local_tag: "0123456789abcdef".into(),
            remote_tag: "4242-17".into(),
            remote_uri: "sip:bob@example.com".into(),
            local_uri: "sip:alice@example.com".into(),
            remote_target: "sip:bob@192.0.2.1:5061;transport=UDP".into(),
            route_set: Vec::new(),
            transport: "udp".into(),
            remote_addr: "192.0.2.1:5061".into(),
            edge_id: "edge-1".into(),
            notify_cseq: 3,
            event_id: String::new(),
            watcher: "bob@example.com".into(),
            package: PRESENCE.into(),
        };
        let (len, decoded) = compact_round_trip(&typical, "alice@example.com");
        assert_eq!(decoded, Ok(typical.clone()));
        let mut w = Writer::new();
        typical.encode_into(&mut w);
        assert!(len + 70 < w.len(), "{len} bytes compact, {} full", w.len());
        // The watcher watching itself (watcher info): one byte for it.
        let own = DialogRecord {
            watcher: "alice@example.com".into(),
            remote_uri: "sip:alice@example.com".into(),
            package: WINFO.into(),
            ..typical
        };
        assert_eq!(compact_round_trip(&own, "alice@example.com").1, Ok(own));
    }

    #[test]
    fn a_truncated_compact_dialog_record_is_an_error() {
        let mut w = Writer::new();
        full().encode_compact(&mut w, "alice@example.com", 0);
        let bytes = w.into_vec();
        // Flags that do not exist.
        for flags in [0x40, 0x80] {
            let mut garbled = bytes.clone();
            garbled[0] |= flags;
            let mut r = Reader::new(&garbled);
            assert!(DialogRecord::decode_compact(&mut r, "d1", "alice@example.com").is_err());
        }
        for len in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..len]);
            assert!(
                DialogRecord::decode_compact(&mut r, "d1", "alice@example.com").is_err(),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn a_truncated_dialog_record_is_an_error() {
        let mut w = Writer::new();
        full().encode_into(&mut w);
        let bytes = w.into_vec();
        for len in 0..bytes.len() {
            let mut r = Reader::new(&bytes[..len]);
            assert!(DialogRecord::decode_from(&mut r).is_err(), "{len} bytes");
        }
    }
}
