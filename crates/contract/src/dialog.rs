//! Dialog records and watcher entries: stored by the presence service,
//! cached and continued by whichever edge holds the dialog.

use serde::{Deserialize, Serialize};

/// The event package of presence (RFC 3856).
pub const PRESENCE: &str = "presence";

/// The event package of watcher information (RFC 3857).
pub const WINFO: &str = "presence.winfo";

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
}
