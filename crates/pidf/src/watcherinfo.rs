//! Watcher information documents (RFC 3857 event package, RFC 3858 format
//! `application/watcherinfo+xml`): who is subscribed to a resource, and in what state.

use crate::parse::read_tree;
use crate::write::{escape_text, write_attribute};
use crate::{ns, Extension, Limits, PidfError};

/// A `<watcherinfo>` document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherInfo {
    /// The `version` attribute: incremented by one for each document sent in a subscription.
    pub version: u64,
    /// Whether this is the full state or a change to the previous one.
    pub state: DocState,
    /// One list per watched resource and event package.
    pub lists: Vec<WatcherList>,
}

/// The `state` attribute of `<watcherinfo>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DocState {
    /// The document lists every watcher.
    Full,
    /// The document lists only watchers that changed since the previous version.
    Partial,
}

impl DocState {
    /// The wire form: `"full"` or `"partial"`.
    pub fn as_str(self) -> &'static str {
        match self {
            DocState::Full => "full",
            DocState::Partial => "partial",
        }
    }
}

/// A `<watcher-list>`: the watchers of one resource for one event package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatcherList {
    /// The watched resource (the presentity's URI).
    pub resource: String,
    /// The event package watched (normally `presence`).
    pub package: String,
    /// The watchers.
    pub watchers: Vec<Watcher>,
}

/// A `<watcher>`: one subscription to the resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watcher {
    /// The `id` attribute: identifies this subscription across versions.
    pub id: String,
    /// The watcher's URI (the element content).
    pub uri: String,
    /// The `display-name` attribute.
    pub display_name: Option<String>,
    /// The subscription state.
    pub status: WatcherStatus,
    /// The event that caused the latest state change.
    pub event: WatcherEvent,
    /// The `duration-subscribed` attribute, in seconds.
    pub duration_subscribed: Option<u64>,
    /// The `expiration` attribute, in seconds.
    pub expiration: Option<u64>,
}

/// The `status` attribute of a `<watcher>` (RFC 3857 section 5.1 subscription states).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatcherStatus {
    /// Awaiting authorisation.
    Pending,
    /// Authorised and receiving notifications.
    Active,
    /// Was pending and expired; the subscriber is remembered for a while.
    Waiting,
    /// Ended.
    Terminated,
}

/// The `event` attribute of a `<watcher>`: what moved the subscription to its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatcherEvent {
    /// A subscription was created.
    Subscribe,
    /// The subscription was authorised.
    Approved,
    /// The subscription was ended by the notifier, the watcher may retry.
    Deactivated,
    /// The subscription was ended, the watcher may retry after a while.
    Probation,
    /// Authorisation was refused.
    Rejected,
    /// The subscription expired.
    Timeout,
    /// A pending subscription waited too long for authorisation.
    Giveup,
    /// The resource no longer exists.
    Noresource,
}

const STATUS_NAMES: [(WatcherStatus, &str); 4] = [
    (WatcherStatus::Pending, "pending"),
    (WatcherStatus::Active, "active"),
    (WatcherStatus::Waiting, "waiting"),
    (WatcherStatus::Terminated, "terminated"),
];

const EVENT_NAMES: [(WatcherEvent, &str); 8] = [
    (WatcherEvent::Subscribe, "subscribe"),
    (WatcherEvent::Approved, "approved"),
    (WatcherEvent::Deactivated, "deactivated"),
    (WatcherEvent::Probation, "probation"),
    (WatcherEvent::Rejected, "rejected"),
    (WatcherEvent::Timeout, "timeout"),
    (WatcherEvent::Giveup, "giveup"),
    (WatcherEvent::Noresource, "noresource"),
];

impl WatcherStatus {
    /// The wire form (`"pending"`, `"active"`, `"waiting"`, `"terminated"`).
    pub fn as_str(self) -> &'static str {
        STATUS_NAMES
            .iter()
            .find(|(status, _)| *status == self)
            .map_or("terminated", |(_, name)| name)
    }

    /// Parses the wire form.
    pub fn from_name(name: &str) -> Option<WatcherStatus> {
        STATUS_NAMES
            .iter()
            .find(|(_, known)| *known == name)
            .map(|(status, _)| *status)
    }
}

impl WatcherEvent {
    /// The wire form (`"subscribe"`, `"approved"`, ...).
    pub fn as_str(self) -> &'static str {
        EVENT_NAMES
            .iter()
            .find(|(event, _)| *event == self)
            .map_or("subscribe", |(_, name)| name)
    }

    /// Parses the wire form.
    pub fn from_name(name: &str) -> Option<WatcherEvent> {
        EVENT_NAMES
            .iter()
            .find(|(_, known)| *known == name)
            .map(|(event, _)| *event)
    }
}

fn required<'a>(element: &'a Extension, name: &str) -> Result<&'a str, PidfError> {
    element
        .attribute("", name)
        .map(str::trim)
        .ok_or_else(|| PidfError::Malformed(format!("<{}> has no {name} attribute", element.name)))
}

fn optional_number(element: &Extension, name: &str) -> Option<u64> {
    element
        .attribute("", name)
        .and_then(|value| value.trim().parse().ok())
}

fn watcher(element: &Extension) -> Result<Watcher, PidfError> {
    let status = required(element, "status")?;
    let event = required(element, "event")?;
    Ok(Watcher {
        id: required(element, "id")?.to_owned(),
        uri: element.text().trim().to_owned(),
        display_name: element.attribute("", "display-name").map(str::to_owned),
        status: WatcherStatus::from_name(status)
            .ok_or_else(|| PidfError::Malformed(format!("unknown watcher status {status:?}")))?,
        event: WatcherEvent::from_name(event)
            .ok_or_else(|| PidfError::Malformed(format!("unknown watcher event {event:?}")))?,
        duration_subscribed: optional_number(element, "duration-subscribed"),
        expiration: optional_number(element, "expiration"),
    })
}

impl WatcherInfo {
    /// Parses a watcher-info document with the default [`Limits`].
    pub fn parse(xml: &[u8]) -> Result<WatcherInfo, PidfError> {
        WatcherInfo::parse_with(xml, &Limits::DEFAULT)
    }

    /// Parses a watcher-info document within `limits`. Elements from other namespaces are
    /// ignored, as RFC 3858 allows.
    pub fn parse_with(xml: &[u8], limits: &Limits) -> Result<WatcherInfo, PidfError> {
        let root = read_tree(xml, limits)?;
        if !root.is(ns::WATCHERINFO, "watcherinfo") {
            return Err(PidfError::NotWatcherInfo {
                found: format!("{{{}}}{}", root.namespace, root.name),
            });
        }
        let version = required(&root, "version")?;
        let version = version
            .parse()
            .map_err(|_| PidfError::Malformed(format!("bad watcherinfo version {version:?}")))?;
        let state = match required(&root, "state")? {
            "full" => DocState::Full,
            "partial" => DocState::Partial,
            other => {
                return Err(PidfError::Malformed(format!(
                    "bad watcherinfo state {other:?}"
                )))
            }
        };
        let mut lists = Vec::new();
        for list in root
            .elements()
            .filter(|element| element.is(ns::WATCHERINFO, "watcher-list"))
        {
            let watchers = list
                .elements()
                .filter(|element| element.is(ns::WATCHERINFO, "watcher"))
                .map(watcher)
                .collect::<Result<Vec<_>, _>>()?;
            lists.push(WatcherList {
                resource: required(list, "resource")?.to_owned(),
                package: required(list, "package")?.to_owned(),
                watchers,
            });
        }
        Ok(WatcherInfo {
            version,
            state,
            lists,
        })
    }

    /// Serialises the document (deterministic, default namespace
    /// `urn:ietf:params:xml:ns:watcherinfo`).
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(256 + 160 * self.lists.len());
        out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<watcherinfo");
        write_attribute(&mut out, "xmlns", ns::WATCHERINFO);
        write_attribute(&mut out, "version", &self.version.to_string());
        write_attribute(&mut out, "state", self.state.as_str());
        out.push('>');
        for list in &self.lists {
            out.push_str("\n  <watcher-list");
            write_attribute(&mut out, "resource", &list.resource);
            write_attribute(&mut out, "package", &list.package);
            if list.watchers.is_empty() {
                out.push_str("/>");
                continue;
            }
            out.push('>');
            for watcher in &list.watchers {
                out.push_str("\n    <watcher");
                write_attribute(&mut out, "id", &watcher.id);
                write_attribute(&mut out, "status", watcher.status.as_str());
                write_attribute(&mut out, "event", watcher.event.as_str());
                if let Some(display_name) = &watcher.display_name {
                    write_attribute(&mut out, "display-name", display_name);
                }
                if let Some(duration) = watcher.duration_subscribed {
                    write_attribute(&mut out, "duration-subscribed", &duration.to_string());
                }
                if let Some(expiration) = watcher.expiration {
                    write_attribute(&mut out, "expiration", &expiration.to_string());
                }
                out.push('>');
                escape_text(&mut out, &watcher.uri);
                out.push_str("</watcher>");
            }
            out.push_str("\n  </watcher-list>");
        }
        out.push_str("\n</watcherinfo>\n");
        out
    }
}
