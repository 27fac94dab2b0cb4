//! The event packages the edge serves (RFC 6665 §7.2), each in its own
//! module: its Event name, the media type of its NOTIFY bodies (which a
//! SUBSCRIBE's Accept must allow) and how each NOTIFY's body is made from
//! what the dialog knows. SUBSCRIBE, OPTIONS and the dialogs' NOTIFY senders
//! ask the package; another package (RFC 4235 `dialog`, RFC 3842
//! `message-summary`) is one more module and one more entry in [`ALL`].
//!
//! * [`presence`] — RFC 3856: the presentity's composed PIDF document.
//! * [`winfo`] — RFC 3857 / RFC 3858: the presentity's watchers.

pub mod presence;
pub mod winfo;

use std::borrow::Cow;
use std::sync::LazyLock;

use contract::{DialogRecord, WatcherEntry};

pub use self::winfo::WatcherSnapshot;

/// What a dialog knows when its sender looks whether a NOTIFY is due.
pub struct Known<'a> {
    pub presentity: &'a str,
    /// `Subscription-State: pending`: the watcher may not see the state yet
    /// (RFC 3856 §6.6).
    pub pending: bool,
    /// The presentity's composed state; the neutral document when the
    /// watcher is politely blocked.
    pub pidf: &'a str,
    /// The state is newer than the one last sent, or was reset after the
    /// state backend lost its data.
    pub state_changed: bool,
    /// The presentity's watchers, and those recently gone.
    pub watchers: &'a WatcherSnapshot,
    pub ended: &'a [WatcherEntry],
    /// A SUBSCRIBE was accepted since the last NOTIFY (RFC 6665 §4.2.1.2:
    /// a NOTIFY follows every one, with full state).
    pub refreshed: bool,
}

/// What one look at a dialog produced.
pub enum Made<'a> {
    /// Nothing the watcher has not been told: no NOTIFY.
    Nothing,
    /// A NOTIFY, with this body (`None`: without one).
    Notify(Option<Cow<'a, str>>),
}

/// One event package.
pub trait EventPackage: Sync {
    /// The package's name in Event and Allow-Events.
    fn event(&self) -> &'static str;
    /// The media type of its NOTIFY bodies.
    fn content_type(&self) -> &'static str;
    /// A new dialog's record of what its watcher has been told.
    fn notifier(&self) -> Box<dyn Notifier>;
    /// The body of a dialog's final NOTIFY (`terminated;reason=...`).
    fn final_body<'a>(&self, pending: bool, pidf: &'a str, reason: &str) -> Option<&'a str>;
}

/// Per dialog: makes the next NOTIFY's body and remembers what it told.
pub trait Notifier: Send {
    fn next<'a>(&mut self, known: &Known<'a>) -> Made<'a>;
}

/// Every package the edge serves, the first the default.
pub static ALL: [&dyn EventPackage; 2] = [&presence::Presence, &winfo::Winfo];

/// The package named `event` (case-insensitive, RFC 6665 §8.2.1).
pub fn by_event(event: &str) -> Option<&'static dyn EventPackage> {
    ALL.iter()
        .copied()
        .find(|p| p.event().eq_ignore_ascii_case(event))
}

/// The package of a stored dialog. Records older than watcher information
/// have no package: they are `presence` dialogs, as is anything unknown.
pub fn of(record: &DialogRecord) -> &'static dyn EventPackage {
    by_event(&record.package).unwrap_or(ALL[0])
}

/// The Allow-Events header's value: every package served.
pub fn allow_events() -> &'static str {
    static LIST: LazyLock<String> =
        LazyLock::new(|| ALL.iter().map(|p| p.event()).collect::<Vec<_>>().join(", "));
    &LIST
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packages_are_found_by_event_and_by_record() {
        assert_eq!(allow_events(), "presence, presence.winfo");
        assert_eq!(
            by_event("Presence.WINFO").map(|p| p.content_type()),
            Some(winfo::WATCHERINFO)
        );
        assert!(by_event("dialog").is_none());
        let old = DialogRecord::default();
        assert_eq!(of(&old).event(), "presence");
        let winfo = DialogRecord {
            package: contract::WINFO.into(),
            ..old
        };
        assert_eq!(of(&winfo).content_type(), winfo::WATCHERINFO);
    }
}
