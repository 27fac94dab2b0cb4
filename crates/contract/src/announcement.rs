//! Messages on a presentity's channel, the only thing edges learn changes
//! from. One message per change, whatever the number of watchers: each edge
//! fans it out to its own dialogs.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use store::ChannelMessage;

use crate::dialog::WatcherEntry;

/// A change of one presentity, as published for the edges.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Announcement {
    /// The composed state changed. Edges send it to every dialog that has not
    /// yet seen `version` or a later one.
    State {
        version: u64,
        /// Composed application/pidf+xml.
        pidf: String,
        /// W3C `traceparent` of the request that made the change, when
        /// traces are exported: edges link their NOTIFYs' spans to it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trace: Option<String>,
        /// When the change was accepted (ms since the Unix epoch; 0 when
        /// unknown): edges measure how long it took to reach watchers.
        #[serde(default)]
        at_ms: u64,
    },
    /// One subscription ended on the server side (expiry, rejection); the
    /// edge holding the dialog sends the final NOTIFY with this reason.
    Terminated { dialog_id: String, reason: String },
    /// A rule change authorised a pending subscription, or changed whether
    /// it is masked (polite blocking). The holding edge sends a NOTIFY with
    /// `pidf` at once (the neutral document when masked).
    Authorized {
        dialog_id: String,
        masked: bool,
        version: u64,
        pidf: String,
    },
    /// Watchers of the presentity changed (for its `presence.winfo`
    /// dialogs): each entry as it is now, `terminated` ones (with the event
    /// that ended them) gone from the list. `at_ms` is when it was made.
    Watchers {
        at_ms: u64,
        changed: Vec<WatcherEntry>,
    },
}

impl Announcement {
    /// Encodes for the channel of `presentity`.
    pub fn to_message(&self, presentity: &str) -> ChannelMessage {
        // Serialising this enum of strings, booleans and integers cannot fail.
        let payload = serde_json::to_vec(self).unwrap_or_default();
        ChannelMessage {
            entity: presentity.to_string(),
            payload: Bytes::from(payload),
        }
    }

    /// Decodes a channel payload; `None` for anything unrecognised (logged by
    /// the caller), so a newer publisher never crashes an older edge.
    pub fn from_payload(payload: &[u8]) -> Option<Announcement> {
        serde_json::from_slice(payload).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip_through_the_channel() {
        let sent = Announcement::Watchers {
            at_ms: 7,
            changed: vec![WatcherEntry {
                id: "d1".into(),
                watcher: "sip:bob@example.com".into(),
                status: "active".into(),
                event: "subscribe".into(),
                expires_at_ms: 9,
            }],
        };
        let message = sent.to_message("sip:alice@example.com");
        assert_eq!(message.entity, "sip:alice@example.com");
        assert_eq!(Announcement::from_payload(&message.payload), Some(sent));
    }

    #[test]
    fn unknown_announcements_are_none_not_errors() {
        assert_eq!(
            Announcement::from_payload(br#"{"type":"from_the_future"}"#),
            None
        );
        let old = br#"{"type":"state","version":4,"pidf":"<presence/>"}"#;
        assert_eq!(
            Announcement::from_payload(old),
            Some(Announcement::State {
                version: 4,
                pidf: "<presence/>".into(),
                trace: None,
                at_ms: 0
            })
        );
    }
}
