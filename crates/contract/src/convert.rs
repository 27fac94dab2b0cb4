//! The protobuf forms (`presence.v1`) of the contract's records, as `From`
//! impls both ways: every field maps one to one, so no conversion can fail.

use rpc::presence::v1 as pb;

use crate::dialog::{DialogRecord, WatcherEntry};

impl From<pb::Dialog> for DialogRecord {
    fn from(d: pb::Dialog) -> Self {
        DialogRecord {
            id: d.id,
            call_id: d.call_id,
            local_tag: d.local_tag,
            remote_tag: d.remote_tag,
            remote_uri: d.remote_uri,
            local_uri: d.local_uri,
            remote_target: d.remote_target,
            route_set: d.route_set,
            transport: d.transport,
            remote_addr: d.remote_addr,
            edge_id: d.edge_id,
            notify_cseq: d.notify_cseq,
            event_id: d.event_id,
            watcher: d.watcher,
            package: d.package,
        }
    }
}

impl From<DialogRecord> for pb::Dialog {
    fn from(d: DialogRecord) -> Self {
        pb::Dialog {
            id: d.id,
            call_id: d.call_id,
            local_tag: d.local_tag,
            remote_tag: d.remote_tag,
            remote_uri: d.remote_uri,
            local_uri: d.local_uri,
            remote_target: d.remote_target,
            route_set: d.route_set,
            transport: d.transport,
            remote_addr: d.remote_addr,
            edge_id: d.edge_id,
            notify_cseq: d.notify_cseq,
            event_id: d.event_id,
            watcher: d.watcher,
            package: d.package,
        }
    }
}

impl From<WatcherEntry> for pb::Watcher {
    fn from(w: WatcherEntry) -> Self {
        pb::Watcher {
            id: w.id,
            watcher: w.watcher,
            status: w.status,
            event: w.event,
            expires_at_ms: w.expires_at_ms,
        }
    }
}

impl From<pb::Watcher> for WatcherEntry {
    fn from(w: pb::Watcher) -> Self {
        WatcherEntry {
            id: w.id,
            watcher: w.watcher,
            status: w.status,
            event: w.event,
            expires_at_ms: w.expires_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialogs_survive_the_wire_field_for_field() {
        let record = DialogRecord {
            id: "d1".into(),
            call_id: "c1".into(),
            local_tag: "lt".into(),
            remote_tag: "rt".into(),
            remote_uri: "sip:bob@example.com".into(),
            local_uri: "sip:alice@example.com".into(),
            remote_target: "sip:bob@192.0.2.1:5070".into(),
            route_set: vec!["<sip:p1;lr>".into(), "<sip:p2;lr>".into()],
            transport: "tcp".into(),
            remote_addr: "192.0.2.1:5070".into(),
            edge_id: "edge-1".into(),
            notify_cseq: 42,
            event_id: "e7".into(),
            watcher: "sip:bob@example.com".into(),
            package: crate::WINFO.into(),
        };
        let wire = pb::Dialog::from(record.clone());
        assert_eq!(wire.route_set.len(), 2);
        assert_eq!(DialogRecord::from(wire), record);
    }

    #[test]
    fn watchers_survive_the_wire_field_for_field() {
        let entry = WatcherEntry {
            id: "d1".into(),
            watcher: "sip:bob@example.com".into(),
            status: "terminated".into(),
            event: "timeout".into(),
            expires_at_ms: 1234,
        };
        assert_eq!(WatcherEntry::from(pb::Watcher::from(entry.clone())), entry);
    }
}
