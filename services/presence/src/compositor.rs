//! The event state compositor (RFC 3903) for the `presence` event package.
//!
//! A presentity's state is one record: its live publications (each with its
//! entity-tag and expiry), the document composed from them, and a version.
//! Every PUBLISH is a compare-and-swap on that record, so concurrent
//! publishers through any number of replicas serialise; the swap announces
//! the new composed state on the presentity's channel in the same atomic
//! step, so a stored change is never silently lost to the edges.
//!
//! Versions only go forward: a new version is `max(previous + 1, now_ms)`,
//! which stays monotonic even if the record was dropped and re-created.

use std::sync::Arc;

use bytes::Bytes;
use contract::Announcement;
use pidf::{Basic, Document, PresenceStatus};
use serde::{Deserialize, Serialize};
use store::{Backend, Key, Kind, Schedule, StoreError};

use crate::parsed::ParsedBodies;

const CAS_ATTEMPTS: usize = 16;
/// How long a presentity record outlives its latest publication in the
/// backend. The sweeper deletes a record soon after its last publication
/// goes (once its version is in the past); the TTL is only a backstop, and
/// must never drop a record whose expiry the sweeper has not yet announced.
const EMPTY_RECORD_TTL_MS: u64 = 24 * 3600 * 1000;
/// How long after its last publication went an empty presentity record is
/// deleted.
const EMPTY_RECORD_GRACE_MS: u64 = 2_000;
/// The source of the registrar's publication (registration-driven
/// presence): composed only while the presentity has no other publication.
pub const REGISTRATION_SOURCE: &str = "registration";
/// The media type the compositor accepts and produces.
pub const PIDF: &str = "application/pidf+xml";

/// Limits of publications and subscriptions, in seconds.
#[derive(Clone, Debug)]
pub struct PresenceConfig {
    pub min_publish_expires: u32,
    pub max_publish_expires: u32,
    pub default_publish_expires: u32,
    pub min_subscribe_expires: u32,
    pub max_subscribe_expires: u32,
    pub default_subscribe_expires: u32,
    /// Limits applied to PIDF bodies.
    pub pidf_limits: pidf::Limits,
    /// Who may watch a presentity that has no rule for the watcher.
    pub default_policy: crate::rules::DefaultPolicy,
    /// Most live publications of one presentity (SIP PUBLISH and
    /// SetPresence sources; the registration publication is not counted).
    pub max_publications: usize,
    /// Most bytes of published documents one presentity's composed
    /// document is made from.
    pub max_document_bytes: usize,
    /// Most live `presence` and `presence.winfo` subscriptions of one
    /// watcher identity, cluster-wide.
    pub max_subscriptions_per_watcher: usize,
    /// How long after a presentity's own publications went the
    /// registration-driven state waits before it is shown (ms): a phone
    /// that un-PUBLISHes and then un-REGISTERs goes straight to `closed`
    /// instead of blinking `open` in between.
    pub registration_holdoff_ms: u64,
}

/// Default of [`PresenceConfig::max_publications`]: a user's devices and
/// applications together, with room to spare.
pub const DEFAULT_MAX_PUBLICATIONS: usize = 16;
/// Default of [`PresenceConfig::max_document_bytes`]: two documents of the
/// largest size one publication may have.
pub const DEFAULT_MAX_DOCUMENT_BYTES: usize = 2 * pidf::Limits::DEFAULT.max_bytes;
/// Default of [`PresenceConfig::max_subscriptions_per_watcher`]: a large
/// contact list watched from several devices.
pub const DEFAULT_MAX_SUBSCRIPTIONS_PER_WATCHER: usize = 1000;
/// Default of [`PresenceConfig::registration_holdoff_ms`]: longer than a
/// phone takes between its un-PUBLISH and its un-REGISTER.
pub const DEFAULT_REGISTRATION_HOLDOFF_MS: u64 = 1500;

impl Default for PresenceConfig {
    fn default() -> Self {
        PresenceConfig {
            min_publish_expires: 60,
            max_publish_expires: 7200,
            default_publish_expires: 3600,
            min_subscribe_expires: 60,
            max_subscribe_expires: 7200,
            default_subscribe_expires: 3600,
            pidf_limits: pidf::Limits::default(),
            default_policy: crate::rules::DefaultPolicy::SameDomain,
            max_publications: DEFAULT_MAX_PUBLICATIONS,
            max_document_bytes: DEFAULT_MAX_DOCUMENT_BYTES,
            max_subscriptions_per_watcher: DEFAULT_MAX_SUBSCRIPTIONS_PER_WATCHER,
            registration_holdoff_ms: DEFAULT_REGISTRATION_HOLDOFF_MS,
        }
    }
}

/// One publication of a presentity, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredPublication {
    pub etag: String,
    pub expires_at_ms: u64,
    pub published_at_ms: u64,
    /// The PIDF document as published.
    pub body: String,
    /// Authenticated identity of the publisher.
    pub publisher: String,
    /// The application that set this publication with SetPresence (one
    /// publication per presentity and source); `None` for SIP PUBLISH.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The record of one presentity.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PresentityRecord {
    pub version: u64,
    pub publications: Vec<StoredPublication>,
    /// Composed document at `version`.
    pub composed: String,
    /// Whether `composed` was made from the presentity's own publications
    /// (not the registration's alone).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub composed_own: bool,
    /// While nonzero: the presentity's own publications are gone and the
    /// registration-driven state is held back until then (ms since the
    /// epoch); `composed` still shows the last own state.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fallback_at_ms: u64,
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// A PUBLISH as the compositor sees it.
#[derive(Clone, Debug, Default)]
pub struct PublishCommand {
    pub presentity: String,
    /// SIP-If-Match; `None` for an initial publication.
    pub if_match: Option<String>,
    pub expires: Option<u32>,
    /// Content type and body, if the request had one.
    pub body: Option<(String, Bytes)>,
    pub publisher: String,
}

/// Result of an accepted PUBLISH.
#[derive(Clone, Debug, PartialEq)]
pub struct PublishOutcome {
    /// New entity-tag; empty after a removal.
    pub etag: String,
    pub expires: u32,
    pub version: u64,
}

/// Why a PUBLISH was refused; each maps to one SIP response.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// 412 Conditional Request Failed.
    #[error("no publication with entity-tag {0}")]
    UnknownEtag(String),
    /// 423 Interval Too Brief.
    #[error("interval too brief; minimum is {min_expires}s")]
    IntervalTooBrief { min_expires: u32 },
    /// 415 Unsupported Media Type.
    #[error("unsupported body type {0}")]
    UnsupportedMediaType(String),
    /// 400 Bad Request (initial PUBLISH without body, invalid document).
    #[error("{0}")]
    BadRequest(String),
    /// 503 with Retry-After: the presentity has as many publications as
    /// allowed ([`PresenceConfig::max_publications`]).
    #[error("Too Many Publications (at most {limit} per presentity)")]
    TooManyPublications { limit: usize },
    /// 503 with Retry-After: the presentity's documents together would
    /// exceed [`PresenceConfig::max_document_bytes`].
    #[error("Presence Document Too Large (at most {limit} bytes per presentity)")]
    DocumentTooLarge { limit: usize },
    /// 503 Service Unavailable.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("concurrent publications to {0} did not settle")]
    Contended(String),
}

/// The composed presence of a presentity at one version.
#[derive(Clone, Debug, PartialEq)]
pub struct PresenceView {
    pub presentity: String,
    /// 0 when nothing was ever published.
    pub version: u64,
    pub pidf: String,
    pub basic: Basic,
    pub status: PresenceStatus,
    pub note: Option<String>,
}

impl PresenceView {
    pub(crate) fn from_record(presentity: &str, record: &PresentityRecord) -> PresenceView {
        let document = if record.composed.is_empty() {
            None
        } else {
            Document::parse(record.composed.as_bytes()).ok()
        };
        let document = document.unwrap_or_else(|| Document::closed(&entity_of(presentity)));
        let summary = document.summary();
        PresenceView {
            presentity: presentity.to_string(),
            version: record.version,
            pidf: if record.composed.is_empty() {
                document.to_xml()
            } else {
                record.composed.clone()
            },
            basic: document.basic(),
            status: summary.status,
            note: summary.note,
        }
    }
}

/// The PIDF entity URI of an address-of-record.
pub fn entity_of(presentity: &str) -> String {
    format!("pres:{presentity}")
}

pub(crate) fn new_etag() -> String {
    hex::encode(rand::random::<[u8; 8]>())
}

/// Refusals of requests beyond a per-client limit, by limit
/// (`publications`, `document_bytes`, `subscriptions_per_watcher`).
pub(crate) fn count_limit_refusal(limit: &'static str) {
    use telemetry::prometheus_client::metrics::counter::Counter;
    use telemetry::prometheus_client::metrics::family::Family;
    type Refusals = Family<[(&'static str, &'static str); 1], Counter>;
    static REFUSALS: std::sync::LazyLock<Refusals> = std::sync::LazyLock::new(|| {
        telemetry::register(
            "presence_limit_refusals",
            "Requests refused because a per-client limit was reached, by limit",
            Refusals::default(),
        )
    });
    REFUSALS.get_or_create(&[("limit", limit)]).inc();
}

/// Whether a publication counts against the per-presentity limits: the
/// registrar's registration publication is the service's own, one at most.
fn counted(publication: &StoredPublication) -> bool {
    publication.source.as_deref() != Some(REGISTRATION_SOURCE)
}

/// Checks the per-presentity limits on the publications as they would be
/// after a change, before anything is composed or stored: `added` when the
/// change creates a publication, `before_bytes` the counted bytes before
/// it. A change that does not grow what is over a limit passes, so a
/// presentity over a lowered limit can still refresh, shrink and remove.
pub(crate) fn check_limits(
    config: &PresenceConfig,
    presentity: &str,
    publications: &[StoredPublication],
    added: bool,
    before_bytes: usize,
) -> Result<(), PublishError> {
    if added {
        let count = publications.iter().filter(|p| counted(p)).count();
        if count > config.max_publications {
            count_limit_refusal("publications");
            tracing::info!(%presentity, count, limit = config.max_publications, "publication refused: too many publications");
            return Err(PublishError::TooManyPublications {
                limit: config.max_publications,
            });
        }
    }
    let bytes = counted_bytes(publications);
    if bytes > config.max_document_bytes && bytes > before_bytes {
        count_limit_refusal("document_bytes");
        tracing::info!(%presentity, bytes, limit = config.max_document_bytes, "publication refused: documents too large");
        return Err(PublishError::DocumentTooLarge {
            limit: config.max_document_bytes,
        });
    }
    Ok(())
}

/// The bytes of the counted publications' documents.
pub(crate) fn counted_bytes(publications: &[StoredPublication]) -> usize {
    publications
        .iter()
        .filter(|p| counted(p))
        .map(|p| p.body.len())
        .sum()
}

/// The compositor of every presentity, over a state backend.
#[derive(Clone)]
pub struct Compositor {
    backend: Arc<dyn Backend>,
    config: Arc<PresenceConfig>,
    parsed: ParsedBodies,
}

impl Compositor {
    pub fn new(backend: Arc<dyn Backend>, config: PresenceConfig) -> Self {
        Compositor {
            backend,
            config: Arc::new(config),
            parsed: ParsedBodies::default(),
        }
    }

    pub fn config(&self) -> &PresenceConfig {
        &self.config
    }

    /// The parsed publication bodies this compositor composes from.
    pub(crate) fn parsed(&self) -> &ParsedBodies {
        &self.parsed
    }

    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    fn key(presentity: &str) -> Key {
        Key::new(Kind::Presentity, presentity)
    }

    pub(crate) async fn load(
        &self,
        presentity: &str,
    ) -> Result<(u64, PresentityRecord), StoreError> {
        match self.backend.get_record(&Self::key(presentity)).await? {
            None => Ok((0, PresentityRecord::default())),
            Some(record) => Ok((record.rev, decode(presentity, &record.value)?)),
        }
    }

    /// The state a watcher would see now.
    pub async fn view(&self, presentity: &str) -> Result<PresenceView, StoreError> {
        let (_, record) = self.load(presentity).await?;
        Ok(PresenceView::from_record(presentity, &record))
    }

    /// The state of many presentities, in the order asked.
    pub async fn views(&self, presentities: &[String]) -> Result<Vec<PresenceView>, StoreError> {
        let keys: Vec<Key> = presentities.iter().map(|p| Self::key(p)).collect();
        let records = self.backend.get_records(&keys).await?;
        presentities
            .iter()
            .zip(records)
            .map(|(p, r)| {
                let record = match r {
                    Some(r) => decode(p, &r.value)?,
                    None => PresentityRecord::default(),
                };
                Ok(PresenceView::from_record(p, &record))
            })
            .collect()
    }

    pub(crate) fn granted_expires(&self, requested: Option<u32>) -> Result<u32, PublishError> {
        let c = &self.config;
        let e = requested.unwrap_or(c.default_publish_expires);
        if e != 0 && e < c.min_publish_expires {
            return Err(PublishError::IntervalTooBrief {
                min_expires: c.min_publish_expires,
            });
        }
        Ok(e.min(c.max_publish_expires))
    }

    /// Checks a body and returns it as text, refusing what must never be stored.
    pub(crate) fn validate_body(
        &self,
        presentity: &str,
        content_type: &str,
        body: &Bytes,
    ) -> Result<String, PublishError> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != PIDF {
            return Err(PublishError::UnsupportedMediaType(content_type.to_string()));
        }
        let document = Document::parse_publication(body, presentity, &self.config.pidf_limits)
            .map_err(|e| PublishError::BadRequest(format!("invalid PIDF: {e}")))?;
        let text = String::from_utf8(body.to_vec())
            .map_err(|_| PublishError::BadRequest("PIDF body is not UTF-8".into()))?;
        // Composing this publication needs its document: keep it rather
        // than parse the same text again.
        self.parsed.remember(&text, document);
        Ok(text)
    }

    /// Applies one PUBLISH (RFC 3903 §6): initial, refresh, modify or remove.
    pub async fn publish(
        &self,
        command: &PublishCommand,
        now_ms: u64,
    ) -> Result<PublishOutcome, PublishError> {
        let expires = self.granted_expires(command.expires)?;
        let body = match &command.body {
            Some((content_type, bytes)) if !bytes.is_empty() => {
                Some(self.validate_body(&command.presentity, content_type, bytes)?)
            }
            _ => None,
        };
        if command.if_match.is_none() {
            if body.is_none() {
                return Err(PublishError::BadRequest(
                    "initial PUBLISH without a body".into(),
                ));
            }
            if expires == 0 {
                return Err(PublishError::BadRequest(
                    "initial PUBLISH with Expires: 0".into(),
                ));
            }
        }
        for _ in 0..CAS_ATTEMPTS {
            let (rev, mut record) = self.load(&command.presentity).await?;
            let before = record.publications.len();
            record.publications.retain(|p| p.expires_at_ms > now_ms);
            // Publications that expired before the sweeper got to them change
            // the composed state even when this request is a plain refresh.
            let mut state_changed = record.publications.len() != before;
            let before_bytes = counted_bytes(&record.publications);
            let etag = new_etag();
            match &command.if_match {
                None => {
                    record.publications.push(StoredPublication {
                        etag: etag.clone(),
                        expires_at_ms: now_ms + u64::from(expires) * 1000,
                        published_at_ms: now_ms,
                        body: body.clone().unwrap_or_default(),
                        publisher: command.publisher.clone(),
                        source: None,
                    });
                    state_changed = true;
                }
                Some(if_match) => {
                    let Some(i) = record.publications.iter().position(|p| &p.etag == if_match)
                    else {
                        return Err(PublishError::UnknownEtag(if_match.clone()));
                    };
                    if expires == 0 {
                        record.publications.remove(i);
                        state_changed = true;
                    } else {
                        let publication = &mut record.publications[i];
                        publication.etag = etag.clone();
                        publication.expires_at_ms = now_ms + u64::from(expires) * 1000;
                        if let Some(body) = &body {
                            publication.body = body.clone();
                            publication.published_at_ms = now_ms;
                            publication.publisher = command.publisher.clone();
                            state_changed = true;
                        }
                    }
                }
            }
            check_limits(
                &self.config,
                &command.presentity,
                &record.publications,
                command.if_match.is_none(),
                before_bytes,
            )?;
            if let Some(version) = self
                .save(&command.presentity, rev, record, state_changed, now_ms)
                .await?
            {
                return Ok(PublishOutcome {
                    etag: if expires == 0 { String::new() } else { etag },
                    expires,
                    version,
                });
            }
        }
        Err(PublishError::Contended(command.presentity.clone()))
    }

    /// Removes the expired publications of a presentity the sweeper found
    /// due, and composes the registration-driven state whose hold-off
    /// ended (`fallback_at_ms`). Returns the new version when this call
    /// changed the state — only one caller can, so watchers are notified of
    /// an expiry exactly once. (A hold-off's end counts in the sweeper's
    /// statistics as an expiry: it is the delayed half of one.)
    pub async fn expire(&self, presentity: &str, now_ms: u64) -> Result<Option<u64>, PublishError> {
        for _ in 0..CAS_ATTEMPTS {
            let (rev, mut record) = self.load(presentity).await?;
            let before = record.publications.len();
            record.publications.retain(|p| p.expires_at_ms > now_ms);
            let fallback_due = record.fallback_at_ms != 0 && record.fallback_at_ms <= now_ms;
            if record.publications.len() == before && !fallback_due {
                match record.publications.iter().map(|p| p.expires_at_ms).min() {
                    // Refreshed since it was scheduled: re-armed.
                    Some(due) => {
                        self.backend
                            .schedule(Schedule::Publications, presentity, due)
                            .await?
                    }
                    None if rev == 0 => {}
                    // An empty record whose version is in the past goes: a
                    // record created later starts at a version of at least
                    // its creation time, so versions still only go forward.
                    None if record.version < now_ms => {
                        let deleted = self
                            .backend
                            .cas_record(&Self::key(presentity), rev, None, None, None)
                            .await?;
                        if deleted.is_none() {
                            continue;
                        }
                    }
                    None => {
                        self.backend
                            .schedule(Schedule::Publications, presentity, record.version + 1)
                            .await?
                    }
                }
                // Nothing re-armed is dropped from the schedule by the
                // sweeper's release, which keeps an entry a concurrent
                // PUBLISH wrote meanwhile (an unconditional unschedule here
                // could remove it).
                return Ok(None);
            }
            if let Some(version) = self.save(presentity, rev, record, true, now_ms).await? {
                return Ok(Some(version));
            }
        }
        Err(PublishError::Contended(presentity.to_string()))
    }

    /// Writes the record if still at `rev`. When the state changed, composes
    /// it anew under a new version and announces it in the same swap.
    /// Returns the version in force, or `None` on a lost race.
    pub(crate) async fn save(
        &self,
        presentity: &str,
        rev: u64,
        mut record: PresentityRecord,
        state_changed: bool,
        now_ms: u64,
    ) -> Result<Option<u64>, StoreError> {
        let own = record.publications.iter().any(counted);
        let falls_back = !own && record.publications.iter().any(|p| !counted(p));
        let hold = state_changed && falls_back && self.config.registration_holdoff_ms > 0 && {
            if record.fallback_at_ms == 0 && record.composed_own {
                // The presentity's own publications just went and only the
                // registration's is left: a phone that is quitting sends
                // its un-REGISTER next. Showing `open` from the
                // registration now would blink it before `closed`, so the
                // last own state stays until the hold-off ends (the
                // sweeper composes then) or the bindings go.
                record.fallback_at_ms = now_ms + self.config.registration_holdoff_ms;
            }
            record.fallback_at_ms > now_ms
        };
        let state_changed = state_changed && !hold;
        if state_changed {
            record.fallback_at_ms = 0;
        }
        let composed = state_changed
            .then(|| {
                record.composed_own = own;
                compose(presentity, &record.publications, &self.parsed)
            })
            // A change nobody can see (the expiry of a publication composition
            // leaves out, such as the registration's behind a device's own)
            // is stored without a new version: announcing the same document
            // again would send every watcher a duplicate NOTIFY.
            .filter(|composed| record.version == 0 || *composed != record.composed);
        let announce = match composed {
            Some(composed) => {
                record.version = (record.version + 1).max(now_ms);
                record.composed = composed;
                Some(
                    Announcement::State {
                        version: record.version,
                        pidf: record.composed.clone(),
                        trace: telemetry::traces::current_traceparent(),
                        at_ms: now_ms,
                    }
                    .to_message(presentity),
                )
            }
            None => None,
        };
        // A record left without publications is scheduled too, for deletion
        // once its version is in the past (see `expire`); a little later
        // than that, so that a mass expiry announces first and cleans up
        // after.
        let due = record
            .publications
            .iter()
            .map(|p| p.expires_at_ms)
            .chain((record.fallback_at_ms != 0).then_some(record.fallback_at_ms))
            .min()
            .unwrap_or(record.version.max(now_ms) + EMPTY_RECORD_GRACE_MS);
        let latest = record.publications.iter().map(|p| p.expires_at_ms).max();
        let ttl = latest.map_or(EMPTY_RECORD_TTL_MS, |l| {
            l.saturating_sub(now_ms) + EMPTY_RECORD_TTL_MS
        });
        let value = serde_json::to_vec(&record).map_err(|e| StoreError::Protocol(e.to_string()))?;
        // The due time is scheduled with the write (one round trip on a
        // single Redis server), never after it.
        let done = self
            .backend
            .cas_record_scheduled(
                &Self::key(presentity),
                rev,
                Some(Bytes::from(value)),
                Some(ttl),
                announce,
                (Schedule::Publications, presentity, due),
            )
            .await?;
        Ok(done.map(|_| record.version))
    }
}

fn decode(presentity: &str, value: &[u8]) -> Result<PresentityRecord, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: format!("presentity {presentity}"),
        reason: e.to_string(),
    })
}

/// Composes stored publications into one document (see `pidf::compose` for
/// the policy). A publication whose stored body no longer parses (it was
/// validated on the way in) is left out rather than failing the presentity.
///
/// The registrar's `registration` publication stands in only for a
/// presentity that publishes nothing itself: a device's or an
/// application's own publication always says more than "registered".
fn compose(presentity: &str, publications: &[StoredPublication], parsed: &ParsedBodies) -> String {
    let own = publications
        .iter()
        .any(|p| p.source.as_deref() != Some(REGISTRATION_SOURCE));
    let documents: Vec<(usize, Arc<Document>)> = publications
        .iter()
        .enumerate()
        .filter(|(_, p)| !own || p.source.as_deref() != Some(REGISTRATION_SOURCE))
        .filter_map(|(i, p)| parsed.get(&p.body).map(|d| (i, d)))
        .collect();
    let inputs: Vec<pidf::Publication<'_>> = documents
        .iter()
        .map(|(i, d)| pidf::Publication {
            etag: &publications[*i].etag,
            published_at_ms: publications[*i].published_at_ms,
            document: d.as_ref(),
        })
        .collect();
    pidf::compose(&entity_of(presentity), &inputs).to_xml()
}

/// The lower-case name of a simple status, as the gRPC API reports it.
pub fn status_name(status: &PresenceStatus) -> String {
    match status {
        PresenceStatus::Available => "available".into(),
        PresenceStatus::Away => "away".into(),
        PresenceStatus::Busy => "busy".into(),
        PresenceStatus::DoNotDisturb => "do-not-disturb".into(),
        PresenceStatus::OnThePhone => "on-the-phone".into(),
        PresenceStatus::InMeeting => "in-meeting".into(),
        PresenceStatus::Offline => "offline".into(),
        PresenceStatus::Custom(s) => s.clone(),
    }
}

#[cfg(test)]
mod tests {
    //! RFC 3903 cases, the per-presentity limits and the registration
    //! hold-off over the in-memory backend.

    use std::time::Duration;

    use pidf::PresenceInfo;

    use super::*;
    use crate::sources::{SetSourceCommand, SourceContent};

    const ALICE: &str = "alice@example.com";
    const T0: u64 = 1_000_000_000;

    fn compositor_with(config: PresenceConfig) -> Compositor {
        Compositor::new(Arc::new(store::memory::MemoryBackend::new()), config)
    }

    fn compositor() -> Compositor {
        compositor_with(PresenceConfig::default())
    }

    fn pidf_body(status: PresenceStatus, note: &str) -> Bytes {
        let info = PresenceInfo {
            note: Some(note.to_string()),
            ..PresenceInfo::new(status)
        };
        Bytes::from(info.to_document(&entity_of(ALICE)).to_xml())
    }

    fn initial(note: &str) -> PublishCommand {
        PublishCommand {
            presentity: ALICE.into(),
            if_match: None,
            expires: Some(600),
            body: Some((PIDF.into(), pidf_body(PresenceStatus::Available, note))),
            publisher: ALICE.into(),
        }
    }

    fn conditional(etag: &str, expires: u32, body: Option<Bytes>) -> PublishCommand {
        PublishCommand {
            if_match: Some(etag.into()),
            expires: Some(expires),
            body: body.map(|b| (PIDF.to_string(), b)),
            ..initial("")
        }
    }

    fn registration() -> SetSourceCommand {
        SetSourceCommand {
            presentity: ALICE.into(),
            source: REGISTRATION_SOURCE.into(),
            content: SourceContent::Status {
                status: PresenceStatus::Available,
                note: None,
            },
            expires: Some(600),
            publisher: "registrar".into(),
        }
    }

    /// The composed states announced on `ALICE`'s channel so far.
    async fn announced(feed: &mut tokio::sync::mpsc::Receiver<store::FeedItem>) -> usize {
        let mut count = 0;
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(200), feed.recv()).await
        {
            count += 1;
        }
        count
    }

    #[tokio::test]
    async fn initial_refresh_modify_and_remove() {
        let compositor = compositor();
        let first = compositor.publish(&initial("first"), T0).await.unwrap();
        assert!(!first.etag.is_empty());
        assert_eq!(first.expires, 600);
        let view = compositor.view(ALICE).await.unwrap();
        assert_eq!(view.version, first.version);
        assert_eq!(view.basic, Basic::Open);
        assert_eq!(view.note.as_deref(), Some("first"));

        // Refresh: a new entity-tag, the state (and its version) unchanged.
        let refreshed = compositor
            .publish(&conditional(&first.etag, 900, None), T0 + 1_000)
            .await
            .unwrap();
        assert_ne!(refreshed.etag, first.etag);
        assert_eq!(refreshed.version, first.version);
        // The old tag is spent (§6: 412 for it now).
        assert!(matches!(
            compositor
                .publish(&conditional(&first.etag, 900, None), T0 + 1_000)
                .await,
            Err(PublishError::UnknownEtag(_))
        ));

        // Modify: a new document, a new version.
        let modified = compositor
            .publish(
                &conditional(
                    &refreshed.etag,
                    600,
                    Some(pidf_body(PresenceStatus::Busy, "second")),
                ),
                T0 + 2_000,
            )
            .await
            .unwrap();
        assert!(modified.version > first.version);
        assert_eq!(
            compositor.view(ALICE).await.unwrap().note.as_deref(),
            Some("second")
        );

        // Remove: no tag, closed.
        let removed = compositor
            .publish(&conditional(&modified.etag, 0, None), T0 + 3_000)
            .await
            .unwrap();
        assert!(removed.etag.is_empty());
        assert_eq!(compositor.view(ALICE).await.unwrap().basic, Basic::Closed);
    }

    #[tokio::test]
    async fn what_is_refused_is_never_stored() {
        let compositor = compositor();
        let no_body = PublishCommand {
            body: None,
            ..initial("")
        };
        assert!(matches!(
            compositor.publish(&no_body, T0).await,
            Err(PublishError::BadRequest(_))
        ));
        let zero = PublishCommand {
            expires: Some(0),
            ..initial("x")
        };
        assert!(matches!(
            compositor.publish(&zero, T0).await,
            Err(PublishError::BadRequest(_))
        ));
        let brief = PublishCommand {
            expires: Some(compositor.config().min_publish_expires - 1),
            ..initial("x")
        };
        assert!(matches!(
            compositor.publish(&brief, T0).await,
            Err(PublishError::IntervalTooBrief { .. })
        ));
        let text = PublishCommand {
            body: Some(("text/plain".into(), Bytes::from_static(b"hi"))),
            ..initial("x")
        };
        assert!(matches!(
            compositor.publish(&text, T0).await,
            Err(PublishError::UnsupportedMediaType(_))
        ));
        let broken = PublishCommand {
            body: Some((PIDF.into(), Bytes::from_static(b"<presence"))),
            ..initial("x")
        };
        assert!(matches!(
            compositor.publish(&broken, T0).await,
            Err(PublishError::BadRequest(_))
        ));
        assert!(matches!(
            compositor
                .publish(&conditional("nope", 600, None), T0)
                .await,
            Err(PublishError::UnknownEtag(_))
        ));
        assert_eq!(compositor.view(ALICE).await.unwrap().version, 0);
        // Too long an interval is shortened, not refused.
        let long = PublishCommand {
            expires: Some(u32::MAX),
            ..initial("x")
        };
        let granted = compositor.publish(&long, T0).await.unwrap();
        assert_eq!(granted.expires, compositor.config().max_publish_expires);
    }

    #[tokio::test]
    async fn devices_are_composed_and_an_expiry_recomposes_once() {
        let compositor = compositor();
        let phone = PublishCommand {
            expires: Some(60),
            ..initial("phone")
        };
        compositor.publish(&phone, T0).await.unwrap();
        let desk = PublishCommand {
            body: Some((PIDF.into(), pidf_body(PresenceStatus::Offline, "desk"))),
            ..initial("desk")
        };
        let both = compositor.publish(&desk, T0 + 1).await.unwrap();
        let (_, record) = compositor.load(ALICE).await.unwrap();
        assert_eq!(record.publications.len(), 2);
        assert_eq!(compositor.view(ALICE).await.unwrap().basic, Basic::Open);
        // Nothing due yet.
        assert_eq!(compositor.expire(ALICE, T0 + 30_000).await.unwrap(), None);
        let expired = compositor.expire(ALICE, T0 + 60_000).await.unwrap();
        assert!(expired.is_some_and(|v| v > both.version));
        assert_eq!(compositor.view(ALICE).await.unwrap().basic, Basic::Closed);
        // A second sweeper finds nothing left to do.
        assert_eq!(compositor.expire(ALICE, T0 + 60_000).await.unwrap(), None);
    }

    #[tokio::test]
    async fn publications_beyond_the_limit_are_refused_before_composing() {
        let compositor = compositor_with(PresenceConfig {
            max_publications: 2,
            ..PresenceConfig::default()
        });
        compositor.set_source(&registration(), T0).await.unwrap();
        let first = compositor.publish(&initial("one"), T0).await.unwrap();
        let second = compositor.publish(&initial("two"), T0).await.unwrap();
        let (_, before) = compositor.load(ALICE).await.unwrap();
        let third = compositor.publish(&initial("three"), T0).await;
        assert!(
            matches!(third, Err(PublishError::TooManyPublications { limit: 2 })),
            "{third:?}"
        );
        let app = SetSourceCommand {
            source: "calendar".into(),
            ..registration()
        };
        assert!(matches!(
            compositor.set_source(&app, T0).await,
            Err(PublishError::TooManyPublications { .. })
        ));
        // Nothing was stored or composed for the refusals.
        assert_eq!(compositor.load(ALICE).await.unwrap().1, before);
        // Refreshes and modifications of what exists still pass, and so
        // does the registration's own publication.
        compositor
            .publish(&conditional(&first.etag, 600, None), T0)
            .await
            .unwrap();
        compositor
            .publish(
                &conditional(
                    &second.etag,
                    600,
                    Some(pidf_body(PresenceStatus::Away, "2")),
                ),
                T0,
            )
            .await
            .unwrap();
        compositor
            .set_source(&registration(), T0 + 1)
            .await
            .unwrap();
        assert!(
            telemetry::encode().contains("presence_limit_refusals_total{limit=\"publications\"}")
        );
    }

    #[tokio::test]
    async fn documents_beyond_the_byte_limit_are_refused() {
        let one = pidf_body(PresenceStatus::Available, "x").len();
        let compositor = compositor_with(PresenceConfig {
            max_document_bytes: one * 2 + 10,
            ..PresenceConfig::default()
        });
        let first = compositor.publish(&initial("x"), T0).await.unwrap();
        compositor.publish(&initial("y"), T0).await.unwrap();
        assert!(matches!(
            compositor.publish(&initial("z"), T0).await,
            Err(PublishError::DocumentTooLarge { .. })
        ));
        let longer = pidf_body(PresenceStatus::Available, &"n".repeat(64));
        assert!(matches!(
            compositor
                .publish(&conditional(&first.etag, 600, Some(longer)), T0)
                .await,
            Err(PublishError::DocumentTooLarge { .. })
        ));
        // Removing is always possible.
        compositor
            .publish(&conditional(&first.etag, 0, None), T0)
            .await
            .unwrap();
        assert!(
            telemetry::encode().contains("presence_limit_refusals_total{limit=\"document_bytes\"}")
        );
    }

    #[tokio::test]
    async fn after_an_unpublish_the_bindings_going_show_closed_without_open_between() {
        let compositor = compositor();
        let (control, mut feed) = compositor.backend().open_feed().await.unwrap();
        control.watch(ALICE).await.unwrap();
        let now = contract::now_ms();
        compositor.set_source(&registration(), now).await.unwrap();
        let own = compositor.publish(&initial("busy"), now + 1).await.unwrap();
        assert_eq!(announced(&mut feed).await, 2);
        // The phone un-PUBLISHes: nothing is announced yet, the last own
        // state stays.
        compositor
            .publish(&conditional(&own.etag, 0, None), now + 2)
            .await
            .unwrap();
        assert_eq!(announced(&mut feed).await, 0);
        let view = compositor.view(ALICE).await.unwrap();
        assert_eq!(view.version, own.version);
        assert_eq!(view.note.as_deref(), Some("busy"));
        // …and un-REGISTERs within the hold-off: straight to closed.
        compositor
            .clear_source(ALICE, REGISTRATION_SOURCE, now + 3)
            .await
            .unwrap();
        assert_eq!(announced(&mut feed).await, 1);
        let view = compositor.view(ALICE).await.unwrap();
        assert_eq!(view.basic, Basic::Closed);
        assert!(view.version > own.version);
    }

    #[tokio::test]
    async fn a_phone_that_stays_registered_shows_the_registration_after_the_hold_off() {
        let compositor = compositor();
        let holdoff = compositor.config().registration_holdoff_ms;
        compositor.set_source(&registration(), T0).await.unwrap();
        let own = compositor.publish(&initial("busy"), T0 + 1).await.unwrap();
        compositor
            .publish(&conditional(&own.etag, 0, None), T0 + 2)
            .await
            .unwrap();
        // A registration refresh within the hold-off changes nothing.
        compositor
            .set_source(&registration(), T0 + 3)
            .await
            .unwrap();
        assert_eq!(compositor.expire(ALICE, T0 + 3).await.unwrap(), None);
        assert_eq!(compositor.view(ALICE).await.unwrap().version, own.version);
        // The sweeper comes at the hold-off's end: the registration shows.
        let (_, record) = compositor.load(ALICE).await.unwrap();
        assert_eq!(record.fallback_at_ms, T0 + 2 + holdoff);
        let shown = compositor.expire(ALICE, T0 + 2 + holdoff).await.unwrap();
        assert!(shown.is_some_and(|v| v > own.version));
        let view = compositor.view(ALICE).await.unwrap();
        assert_eq!(view.basic, Basic::Open);
        assert_eq!(view.note, None);
        assert_eq!(compositor.load(ALICE).await.unwrap().1.fallback_at_ms, 0);
        // A presentity that never published itself shows its registration at
        // once: nothing is held back.
        let other = self::compositor();
        other.set_source(&registration(), T0).await.unwrap();
        assert_eq!(other.view(ALICE).await.unwrap().basic, Basic::Open);
    }
}
