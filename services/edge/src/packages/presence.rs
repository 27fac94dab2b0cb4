//! The `presence` event package (RFC 3856): NOTIFYs carry the presentity's
//! composed PIDF document (RFC 3863), the neutral one to a politely blocked
//! watcher, and nothing while the subscription is pending.

use std::borrow::Cow;

use super::{EventPackage, Known, Made, Notifier};

/// The media type of presence documents, also what PUBLISH accepts.
pub const PIDF: &str = "application/pidf+xml";

/// The `presence` package.
pub struct Presence;

impl EventPackage for Presence {
    fn event(&self) -> &'static str {
        contract::PRESENCE
    }

    fn content_type(&self) -> &'static str {
        PIDF
    }

    fn notifier(&self) -> Box<dyn Notifier> {
        // Stateless: what was sent is the dialog's last version, kept by
        // its sender.
        Box::new(PresenceNotifier)
    }

    /// The state for an active dialog; nothing where no state may be shown
    /// (pending, or rejected by the presentity's rules).
    fn final_body<'a>(&self, pending: bool, pidf: &'a str, reason: &str) -> Option<&'a str> {
        (!pending && reason != "rejected").then_some(pidf)
    }
}

struct PresenceNotifier;

impl Notifier for PresenceNotifier {
    fn next<'a>(&mut self, known: &Known<'a>) -> Made<'a> {
        if !known.refreshed && !known.state_changed {
            return Made::Nothing;
        }
        Made::Notify((!known.pending).then_some(Cow::Borrowed(known.pidf)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::WatcherSnapshot;

    fn known<'a>(snapshot: &'a WatcherSnapshot, pending: bool, changed: bool) -> Known<'a> {
        Known {
            presentity: "alice@example.com",
            pending,
            pidf: "<presence/>",
            state_changed: changed,
            watchers: snapshot,
            ended: &[],
            refreshed: false,
        }
    }

    #[test]
    fn pending_dialogs_are_told_nothing_of_the_state() {
        let snapshot = WatcherSnapshot::default();
        let mut notifier = Presence.notifier();
        assert!(matches!(
            notifier.next(&known(&snapshot, false, false)),
            Made::Nothing
        ));
        assert!(matches!(
            notifier.next(&known(&snapshot, true, true)),
            Made::Notify(None)
        ));
        assert!(matches!(
            notifier.next(&known(&snapshot, false, true)),
            Made::Notify(Some(Cow::Borrowed("<presence/>")))
        ));
        assert_eq!(Presence.final_body(false, "<p/>", "timeout"), Some("<p/>"));
        assert_eq!(Presence.final_body(false, "<p/>", "rejected"), None);
        assert_eq!(Presence.final_body(true, "<p/>", ""), None);
    }
}
