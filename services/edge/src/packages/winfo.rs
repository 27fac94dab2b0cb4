//! The `presence.winfo` event package (RFC 3857): the presentity's own
//! client watching its watchers. NOTIFYs carry watcher information
//! documents (RFC 3858): a full one first and after every refresh, partial
//! ones (what changed) in between, numbered per dialog.

use std::borrow::Cow;
use std::collections::HashMap;

use contract::WatcherEntry;
use pidf::watcherinfo::{DocState, Watcher, WatcherEvent, WatcherInfo, WatcherList, WatcherStatus};

use super::{EventPackage, Known, Made, Notifier};

/// The `presence.winfo` package.
pub struct Winfo;

impl EventPackage for Winfo {
    fn event(&self) -> &'static str {
        contract::WINFO
    }

    fn content_type(&self) -> &'static str {
        WATCHERINFO
    }

    fn notifier(&self) -> Box<dyn Notifier> {
        Box::new(WinfoState::default())
    }

    /// A final NOTIFY carries no document: the watcher list is not ended,
    /// only this subscription to it.
    fn final_body<'a>(&self, _pending: bool, _pidf: &'a str, _reason: &str) -> Option<&'a str> {
        None
    }
}

impl Notifier for WinfoState {
    fn next<'a>(&mut self, known: &Known<'a>) -> Made<'a> {
        if !known.refreshed && known.watchers.revision <= self.revision {
            return Made::Nothing;
        }
        match self.next_document(
            known.presentity,
            known.watchers,
            known.ended,
            known.refreshed,
        ) {
            Some(xml) => Made::Notify(Some(Cow::Owned(xml))),
            // A change that changed nothing a watcher sees.
            None => Made::Nothing,
        }
    }
}

/// The media type of watcher information documents (RFC 3858).
pub const WATCHERINFO: &str = "application/watcherinfo+xml";

/// The watcher list a `presence.winfo` dialog reports.
#[derive(Clone, Debug, Default)]
pub struct WatcherSnapshot {
    /// Bumped by every change applied to the list.
    pub revision: u64,
    pub watchers: Vec<WatcherEntry>,
}

/// What a winfo dialog has reported so far.
#[derive(Default)]
struct WinfoState {
    /// The `version` of the last document sent (RFC 3858 §4.4: one more per
    /// document of the subscription).
    version: u64,
    /// The list as of the last document, by subscription id.
    reported: HashMap<String, WatcherEntry>,
    /// `revision` of the list last reported.
    revision: u64,
}

fn watcher_element(entry: &WatcherEntry) -> Watcher {
    let uri = if entry.watcher.contains(':') {
        entry.watcher.clone()
    } else {
        format!("sip:{}", entry.watcher)
    };
    Watcher {
        id: entry.id.clone(),
        uri,
        display_name: None,
        status: WatcherStatus::from_name(&entry.status).unwrap_or(WatcherStatus::Terminated),
        event: WatcherEvent::from_name(&entry.event).unwrap_or(WatcherEvent::Deactivated),
        duration_subscribed: None,
        expiration: None,
    }
}

impl WinfoState {
    /// The next watcherinfo document, or `None` when a partial document
    /// would report nothing.
    fn next_document(
        &mut self,
        presentity: &str,
        snapshot: &WatcherSnapshot,
        ended: &[WatcherEntry],
        full: bool,
    ) -> Option<String> {
        let current: HashMap<String, WatcherEntry> = snapshot
            .watchers
            .iter()
            .map(|w| (w.id.clone(), w.clone()))
            .collect();
        let watchers: Vec<Watcher> = if full {
            snapshot.watchers.iter().map(watcher_element).collect()
        } else {
            let mut changed: Vec<Watcher> = snapshot
                .watchers
                .iter()
                .filter(|w| {
                    self.reported
                        .get(&w.id)
                        .is_none_or(|old| old.status != w.status || old.event != w.event)
                })
                .map(watcher_element)
                .collect();
            let mut gone: Vec<&WatcherEntry> = self
                .reported
                .values()
                .filter(|w| !current.contains_key(&w.id))
                .collect();
            gone.sort_by(|a, b| a.id.cmp(&b.id));
            for old in gone {
                let why = ended.iter().find(|e| e.id == old.id);
                changed.push(watcher_element(&WatcherEntry {
                    status: "terminated".into(),
                    event: why.map_or_else(|| "deactivated".into(), |e| e.event.clone()),
                    ..old.clone()
                }));
            }
            changed
        };
        self.reported = current;
        self.revision = snapshot.revision;
        if !full && watchers.is_empty() {
            return None;
        }
        self.version += 1;
        let document = WatcherInfo {
            version: self.version,
            state: if full {
                DocState::Full
            } else {
                DocState::Partial
            },
            lists: vec![WatcherList {
                resource: format!("sip:{presentity}"),
                package: contract::PRESENCE.into(),
                watchers,
            }],
        };
        Some(document.to_xml())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, status: &str, event: &str) -> WatcherEntry {
        WatcherEntry {
            id: id.into(),
            watcher: format!("{id}@example.com"),
            status: status.into(),
            event: event.into(),
            expires_at_ms: 0,
        }
    }

    fn look<'a>(
        notifier: &mut dyn Notifier,
        snapshot: &'a WatcherSnapshot,
        ended: &'a [WatcherEntry],
        refreshed: bool,
    ) -> Option<String> {
        let known = Known {
            presentity: "alice@example.com",
            pending: false,
            pidf: "",
            state_changed: true,
            watchers: snapshot,
            ended,
            refreshed,
        };
        match notifier.next(&known) {
            Made::Nothing => None,
            Made::Notify(body) => Some(body.map(Cow::into_owned).unwrap_or_default()),
        }
    }

    #[test]
    fn full_first_then_partial_with_why_a_watcher_left() {
        let mut notifier = Winfo.notifier();
        let mut snapshot = WatcherSnapshot {
            revision: 0,
            watchers: vec![entry("bob", "active", "subscribe")],
        };
        let first = look(notifier.as_mut(), &snapshot, &[], true).unwrap();
        assert!(first.contains(r#"version="1""#) && first.contains(r#"state="full""#));
        assert!(first.contains("bob@example.com"));
        // Nothing new: no NOTIFY, whatever the state version says.
        assert!(look(notifier.as_mut(), &snapshot, &[], false).is_none());
        snapshot.revision = 1;
        snapshot.watchers.clear();
        let ended = [entry("bob", "terminated", "timeout")];
        let second = look(notifier.as_mut(), &snapshot, &ended, false).unwrap();
        assert!(second.contains(r#"version="2""#) && second.contains(r#"state="partial""#));
        assert!(second.contains("terminated") && second.contains("timeout"));
        assert_eq!(Winfo.final_body(false, "<p/>", "timeout"), None);
    }
}
