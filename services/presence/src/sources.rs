//! Presence set by applications — a calendar, a CRM, a contact-centre
//! system — through the same compositor as SIP PUBLISH (`SetPresence` and
//! `ClearPresence` over gRPC).
//!
//! Semantics:
//! * Each application names itself with a **source** (`"calendar"`). A
//!   presentity holds at most one publication per source: setting it again
//!   replaces that publication, so an application needs no entity-tag
//!   bookkeeping and a retried call is harmless.
//! * The publication is an ordinary RFC 3903 publication in the
//!   presentity's record, composed with the devices' ones by
//!   `pidf::compose`: its tuple joins theirs, its person (the activities,
//!   e.g. `busy` for a meeting) is shown while it is the most recently
//!   changed publication, and the presentity is open while any tuple is
//!   open.
//! * It lapses after its interval like any publication (the sweeper
//!   removes it and watchers are notified); setting it again with the same
//!   content only extends it, without a new version or a NOTIFY.
//! * `ClearPresence` removes it at once.

use bytes::Bytes;
use pidf::{PresenceInfo, PresenceStatus};

use crate::compositor::{
    check_limits, counted_bytes, entity_of, new_etag, StoredPublication, PIDF,
};
use crate::{Compositor, PublishError, PublishOutcome};

const CAS_ATTEMPTS: usize = 16;
/// Longest source name.
const MAX_SOURCE_LEN: usize = 64;
/// Longest custom status or note accepted.
const MAX_TEXT_LEN: usize = 1024;

/// What an application publishes.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceContent {
    /// A simple status and an optional note.
    Status {
        status: PresenceStatus,
        note: Option<String>,
    },
    /// A whole PIDF document.
    Pidf(Bytes),
}

/// A SetPresence request.
#[derive(Clone, Debug, PartialEq)]
pub struct SetSourceCommand {
    pub presentity: String,
    pub source: String,
    pub content: SourceContent,
    /// Requested interval in seconds; `None` for the server default.
    pub expires: Option<u32>,
    /// Who called (the token's client or subject), stored as the publisher.
    pub publisher: String,
}

/// Result of a ClearPresence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClearOutcome {
    pub removed: bool,
    /// Version of the composed state after the call.
    pub version: u64,
}

/// Reads a simple status name as the gRPC API writes it
/// ([`crate::compositor::status_name`]); any other word is a custom status.
pub fn parse_status(name: &str) -> Result<PresenceStatus, PublishError> {
    let name = name.trim();
    if name.is_empty() {
        return Err(PublishError::BadRequest("a status is required".into()));
    }
    if name.len() > MAX_TEXT_LEN || name.chars().any(char::is_control) {
        return Err(PublishError::BadRequest(
            "the status is too long or holds control characters".into(),
        ));
    }
    Ok(match name.to_ascii_lowercase().as_str() {
        "available" | "online" | "open" => PresenceStatus::Available,
        "away" => PresenceStatus::Away,
        "busy" => PresenceStatus::Busy,
        "do-not-disturb" | "dnd" => PresenceStatus::DoNotDisturb,
        "on-the-phone" | "in-call" => PresenceStatus::OnThePhone,
        "in-meeting" | "meeting" => PresenceStatus::InMeeting,
        "offline" | "closed" => PresenceStatus::Offline,
        _ => PresenceStatus::Custom(name.to_string()),
    })
}

fn check_presentity(presentity: &str) -> Result<(), PublishError> {
    if crate::watch::valid_presentity(presentity) {
        Ok(())
    } else {
        Err(PublishError::BadRequest(
            "presentity must be an address-of-record without spaces or control characters".into(),
        ))
    }
}

fn check_source(source: &str) -> Result<(), PublishError> {
    let valid = !source.is_empty()
        && source.len() <= MAX_SOURCE_LEN
        && source
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'));
    if valid {
        Ok(())
    } else {
        Err(PublishError::BadRequest(format!(
            "source must be 1-{MAX_SOURCE_LEN} characters of A-Z a-z 0-9 . _ : -"
        )))
    }
}

impl Compositor {
    /// The PIDF text an application's content stands for.
    fn source_body(&self, command: &SetSourceCommand) -> Result<String, PublishError> {
        match &command.content {
            SourceContent::Pidf(body) => self.validate_body(&command.presentity, PIDF, body),
            SourceContent::Status { status, note } => {
                if note
                    .as_ref()
                    .is_some_and(|n| n.len() > MAX_TEXT_LEN || n.chars().any(char::is_control))
                {
                    return Err(PublishError::BadRequest(
                        "the note is too long or holds control characters".into(),
                    ));
                }
                let info = PresenceInfo {
                    note: note.clone().filter(|n| !n.is_empty()),
                    ..PresenceInfo::new(status.clone())
                };
                let document = info.to_document(&entity_of(&command.presentity));
                let body = document.to_xml();
                // Composing needs the document: keep the one just built
                // (`status_documents_read_back_as_built` pins that parsing
                // its text gives the same).
                self.parsed().remember(&body, document);
                Ok(body)
            }
        }
    }

    /// Creates, replaces or extends the publication of `command.source`.
    pub async fn set_source(
        &self,
        command: &SetSourceCommand,
        now_ms: u64,
    ) -> Result<PublishOutcome, PublishError> {
        check_presentity(&command.presentity)?;
        check_source(&command.source)?;
        let expires = self.granted_expires(command.expires)?;
        if expires == 0 {
            return Err(PublishError::BadRequest(
                "expires must be positive (ClearPresence removes)".into(),
            ));
        }
        let body = self.source_body(command)?;
        let expires_at_ms = now_ms + u64::from(expires) * 1000;
        for _ in 0..CAS_ATTEMPTS {
            let (rev, mut record) = self.load(&command.presentity).await?;
            let before = record.publications.len();
            record.publications.retain(|p| p.expires_at_ms > now_ms);
            let mut state_changed = record.publications.len() != before;
            let before_bytes = counted_bytes(&record.publications);
            let etag = new_etag();
            let existing = record
                .publications
                .iter_mut()
                .find(|p| p.source.as_deref() == Some(command.source.as_str()));
            // The registration's publication is the service's own: never
            // refused, so a REGISTER always shows.
            let added =
                existing.is_none() && command.source != crate::compositor::REGISTRATION_SOURCE;
            match existing {
                Some(publication) => {
                    publication.etag = etag;
                    publication.expires_at_ms = expires_at_ms;
                    publication.publisher = command.publisher.clone();
                    if publication.body != body {
                        publication.body = body.clone();
                        publication.published_at_ms = now_ms;
                        state_changed = true;
                    }
                }
                None => {
                    record.publications.push(StoredPublication {
                        etag,
                        expires_at_ms,
                        published_at_ms: now_ms,
                        body: body.clone(),
                        publisher: command.publisher.clone(),
                        source: Some(command.source.clone()),
                    });
                    state_changed = true;
                }
            }
            check_limits(
                self.config(),
                &command.presentity,
                &record.publications,
                added,
                before_bytes,
            )?;
            if let Some(version) = self
                .save(&command.presentity, rev, record, state_changed, now_ms)
                .await?
            {
                return Ok(PublishOutcome {
                    etag: String::new(),
                    expires,
                    version,
                });
            }
        }
        Err(PublishError::Contended(command.presentity.clone()))
    }

    /// Removes the publication of `source`, if there is one.
    pub async fn clear_source(
        &self,
        presentity: &str,
        source: &str,
        now_ms: u64,
    ) -> Result<ClearOutcome, PublishError> {
        check_presentity(presentity)?;
        check_source(source)?;
        for _ in 0..CAS_ATTEMPTS {
            let (rev, mut record) = self.load(presentity).await?;
            let Some(i) = record
                .publications
                .iter()
                .position(|p| p.source.as_deref() == Some(source))
            else {
                return Ok(ClearOutcome {
                    removed: false,
                    version: record.version,
                });
            };
            record.publications.remove(i);
            record.publications.retain(|p| p.expires_at_ms > now_ms);
            if let Some(version) = self.save(presentity, rev, record, true, now_ms).await? {
                return Ok(ClearOutcome {
                    removed: true,
                    version,
                });
            }
        }
        Err(PublishError::Contended(presentity.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{PresenceConfig, PublishCommand};

    fn compositor() -> Compositor {
        Compositor::new(
            Arc::new(store::memory::MemoryBackend::new()),
            PresenceConfig::default(),
        )
    }

    fn set(status: &str, note: Option<&str>) -> SetSourceCommand {
        SetSourceCommand {
            presentity: "alice@example.com".into(),
            source: "calendar".into(),
            content: SourceContent::Status {
                status: parse_status(status).unwrap_or(PresenceStatus::Available),
                note: note.map(str::to_string),
            },
            expires: Some(600),
            publisher: "calendar-service".into(),
        }
    }

    /// Every simple status, and one custom.
    fn all_statuses() -> Vec<PresenceStatus> {
        vec![
            PresenceStatus::Available,
            PresenceStatus::Away,
            PresenceStatus::Busy,
            PresenceStatus::DoNotDisturb,
            PresenceStatus::OnThePhone,
            PresenceStatus::InMeeting,
            PresenceStatus::Offline,
            PresenceStatus::Custom("gardening".into()),
        ]
    }

    #[test]
    fn status_names_round_trip_with_the_api_names() {
        for status in all_statuses() {
            let name = crate::compositor::status_name(&status);
            assert_eq!(parse_status(&name).ok(), Some(status));
        }
        assert!(parse_status("  ").is_err());
        assert!(parse_status("bad\nstatus").is_err());
    }

    /// `source_body` hands the document it built to composition instead of
    /// the parse of its text: the two must be equal for every status.
    #[test]
    fn status_documents_read_back_as_built() {
        for status in all_statuses() {
            for note in [None, Some("Back at 3 & <soon> \"maybe\" \u{e9}t\u{e9}")] {
                let info = PresenceInfo {
                    note: note.map(str::to_string),
                    ..PresenceInfo::new(status.clone())
                };
                let built = info.to_document(&entity_of("alice@example.com"));
                let parsed = pidf::Document::parse(built.to_xml().as_bytes());
                assert_eq!(parsed.as_ref().ok(), Some(&built), "{status:?} {note:?}");
            }
        }
    }

    /// What watchers of a phone that only registers receive: the
    /// registrar's "available" stands alone, one open tuple and nothing
    /// else — no empty `<dm:person>` or any other empty element.
    #[tokio::test]
    async fn the_registration_driven_document_has_no_empty_element() {
        let compositor = compositor();
        let registration = SetSourceCommand {
            source: crate::compositor::REGISTRATION_SOURCE.into(),
            publisher: "registrar".into(),
            ..set("available", None)
        };
        compositor
            .set_source(&registration, 1_000_000)
            .await
            .expect("registration");
        let view = compositor.view("alice@example.com").await.expect("view");
        assert_eq!(
            view.pidf,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
             <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
             xmlns:dm=\"urn:ietf:params:xml:ns:pidf:data-model\" \
             xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" \
             entity=\"pres:alice@example.com\">\n\
             \x20 <tuple id=\"t1\">\n\
             \x20   <status><basic>open</basic></status>\n\
             \x20 </tuple>\n\
             </presence>\n"
        );
    }

    /// Removing a publication that composition leaves out (the
    /// registration's, behind an application's own) changes nothing a
    /// watcher sees: no new version and no announcement, so no duplicate
    /// NOTIFY.
    #[tokio::test]
    async fn an_invisible_change_is_not_announced() {
        let compositor = compositor();
        let presentity = "alice@example.com";
        let (control, mut feed) = compositor.backend().open_feed().await.expect("feed");
        control.watch(presentity).await.expect("watch");
        let now = 1_000_000;
        let registration = SetSourceCommand {
            source: crate::compositor::REGISTRATION_SOURCE.into(),
            publisher: "registrar".into(),
            ..set("available", None)
        };
        compositor
            .set_source(&registration, now)
            .await
            .expect("registration");
        let own = compositor
            .set_source(&set("in-meeting", Some("Budget review")), now + 1)
            .await
            .expect("own publication");
        let wait = std::time::Duration::from_millis(500);
        for change in ["registration", "own publication"] {
            let heard = tokio::time::timeout(wait, feed.recv()).await;
            assert!(matches!(heard, Ok(Some(_))), "{change} announced");
        }
        compositor
            .clear_source(presentity, crate::compositor::REGISTRATION_SOURCE, now + 2)
            .await
            .expect("registration removed");
        let view = compositor.view(presentity).await.expect("view");
        assert_eq!(view.version, own.version);
        assert_eq!(view.note.as_deref(), Some("Budget review"));
        let heard = tokio::time::timeout(wait, feed.recv()).await;
        assert!(
            heard.is_err(),
            "nothing announced for an invisible change: {heard:?}"
        );
    }

    #[test]
    fn source_names_are_checked() {
        assert!(check_source("calendar").is_ok());
        assert!(check_source("crm:eu-1.prod_b").is_ok());
        assert!(check_source("").is_err());
        assert!(check_source("two words").is_err());
        assert!(check_source(&"x".repeat(65)).is_err());
    }

    #[tokio::test]
    async fn one_publication_per_source_replaced_extended_and_cleared() {
        let compositor = compositor();
        let now = 1_000_000;
        let first = compositor
            .set_source(&set("in-meeting", Some("Budget review")), now)
            .await
            .map_err(|e| e.to_string());
        let first = first.as_ref().map(|o| o.version).unwrap_or(0);
        assert!(first > 0);
        let view = compositor.view("alice@example.com").await.ok();
        let view = view.as_ref();
        assert_eq!(view.map(|v| &v.status), Some(&PresenceStatus::InMeeting));
        assert_eq!(view.and_then(|v| v.note.as_deref()), Some("Budget review"));

        // The same content again only extends the publication: same version.
        let again = compositor
            .set_source(&set("in-meeting", Some("Budget review")), now + 10)
            .await
            .map(|o| o.version)
            .ok();
        assert_eq!(again, Some(first));

        // New content replaces it: one publication, new version.
        let replaced = compositor
            .set_source(&set("busy", None), now + 20)
            .await
            .map(|o| o.version)
            .ok();
        assert!(replaced > Some(first));
        let (_, record) = compositor
            .load("alice@example.com")
            .await
            .unwrap_or_default();
        assert_eq!(record.publications.len(), 1);
        assert_eq!(record.publications[0].source.as_deref(), Some("calendar"));
        assert_eq!(record.publications[0].publisher, "calendar-service");

        let cleared = compositor
            .clear_source("alice@example.com", "calendar", now + 30)
            .await
            .ok();
        assert_eq!(cleared.map(|c| c.removed), Some(true));
        assert!(cleared.map(|c| c.version) > replaced);
        let view = compositor.view("alice@example.com").await.ok();
        assert_eq!(view.map(|v| v.status), Some(PresenceStatus::Offline));
        let again = compositor
            .clear_source("alice@example.com", "calendar", now + 40)
            .await
            .ok();
        assert_eq!(again.map(|c| c.removed), Some(false));
    }

    #[tokio::test]
    async fn an_application_composes_with_a_phone() {
        let compositor = compositor();
        let now = 2_000_000;
        let phone = r#"<?xml version="1.0"?><presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:alice@example.com"><tuple id="phone"><status><basic>open</basic></status></tuple></presence>"#;
        let published = compositor
            .publish(
                &PublishCommand {
                    presentity: "alice@example.com".into(),
                    if_match: None,
                    expires: Some(600),
                    body: Some((PIDF.into(), Bytes::from_static(phone.as_bytes()))),
                    publisher: "alice@example.com".into(),
                },
                now,
            )
            .await;
        assert!(published.is_ok());
        let set = compositor.set_source(&set("busy", None), now + 5).await;
        assert!(set.is_ok());
        let view = compositor.view("alice@example.com").await.ok();
        let view = view.as_ref();
        assert_eq!(view.map(|v| &v.status), Some(&PresenceStatus::Busy));
        assert_eq!(view.map(|v| v.basic), Some(pidf::Basic::Open));
        assert!(view.is_some_and(|v| v.pidf.contains("phone")));

        // Clearing the application's publication leaves the phone's.
        let cleared = compositor
            .clear_source("alice@example.com", "calendar", now + 10)
            .await;
        assert!(cleared.is_ok());
        let view = compositor.view("alice@example.com").await.ok();
        assert_eq!(view.map(|v| v.status), Some(PresenceStatus::Available));
    }

    #[tokio::test]
    async fn invalid_requests_are_refused() {
        let compositor = compositor();
        let mut no_presentity = set("busy", None);
        no_presentity.presentity = "alice smith@example.com".into();
        assert!(matches!(
            compositor.set_source(&no_presentity, 1).await,
            Err(PublishError::BadRequest(_))
        ));
        let mut no_source = set("busy", None);
        no_source.source.clear();
        assert!(matches!(
            compositor.set_source(&no_source, 1).await,
            Err(PublishError::BadRequest(_))
        ));
        let mut too_brief = set("busy", None);
        too_brief.expires = Some(1);
        assert!(matches!(
            compositor.set_source(&too_brief, 1).await,
            Err(PublishError::IntervalTooBrief { .. })
        ));
        let mut bad_pidf = set("busy", None);
        bad_pidf.content = SourceContent::Pidf(Bytes::from_static(b"<presence"));
        assert!(matches!(
            compositor.set_source(&bad_pidf, 1).await,
            Err(PublishError::BadRequest(_))
        ));
        let mut wrong_entity = set("busy", None);
        wrong_entity.content = SourceContent::Pidf(Bytes::from_static(
            br#"<presence xmlns="urn:ietf:params:xml:ns:pidf" entity="pres:bob@example.com"><tuple id="t"><status><basic>open</basic></status></tuple></presence>"#,
        ));
        assert!(matches!(
            compositor.set_source(&wrong_entity, 1).await,
            Err(PublishError::BadRequest(_))
        ));
    }
}
