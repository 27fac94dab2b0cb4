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
use contract::codec::{self, CodecError, Reader, Writer};
use contract::Announcement;
use pidf::{Basic, Document, PresenceStatus};
use serde::{Deserialize, Serialize};
use store::{Backend, Key, Kind, Schedule, StoreError};

use crate::parsed::ParsedBodies;

mod config;
mod limits;

pub use config::{
    PresenceConfig, DEFAULT_MAX_DOCUMENT_BYTES, DEFAULT_MAX_PUBLICATIONS,
    DEFAULT_MAX_SUBSCRIPTIONS_PER_WATCHER, DEFAULT_REGISTRATION_HOLDOFF_MS,
};
pub(crate) use limits::{check_limits, count_limit_refusal, counted, counted_bytes};

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

/// The version of the binary encoding of [`PresentityRecord`].
const RECORD_VERSION: u8 = 1;

impl StoredPublication {
    /// Writes the fields in declaration order (see [`PresentityRecord::encode`]).
    fn encode_into(&self, w: &mut Writer) {
        w.str(&self.etag);
        w.varint(self.expires_at_ms);
        w.varint(self.published_at_ms);
        w.str(&self.body);
        w.str(&self.publisher);
        w.opt_str(self.source.as_deref());
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(StoredPublication {
            etag: r.string()?,
            expires_at_ms: r.varint()?,
            published_at_ms: r.varint()?,
            body: r.string()?,
            publisher: r.string()?,
            source: r.opt_string()?,
        })
    }
}

impl PresentityRecord {
    /// The stored form: the compact binary encoding of [`contract::codec`]
    /// (format tag, version, the fields in declaration order).
    ///
    /// Binary rather than JSON because, with REGISTER and PUBLISH at
    /// 12,000/s, `serde_json` serialisation of stored records was ~12 % of
    /// all CPU: the PIDF documents were escaped character by character and
    /// every field name repeated in every record. [`PresentityRecord::decode`]
    /// still reads the JSON that earlier releases wrote.
    pub fn encode(&self) -> Vec<u8> {
        self.encode_with(codec::writes_json())
    }

    /// [`Self::encode`], as JSON when `json` (see `contract::codec::set_write_json`).
    pub(crate) fn encode_with(&self, json: bool) -> Vec<u8> {
        codec::encode_record(self, json, || {
            let strings: usize = self
                .publications
                .iter()
                .map(|p| p.etag.len() + p.body.len() + p.publisher.len() + 40)
                .sum();
            let mut w = Writer::record(RECORD_VERSION, strings + self.composed.len() + 24);
            w.varint(self.version);
            w.seq(&self.publications, |w, p| p.encode_into(w));
            w.str(&self.composed);
            w.bool(self.composed_own);
            w.varint(self.fallback_at_ms);
            w.into_vec()
        })
    }

    /// Reads a stored record: the binary encoding of
    /// [`PresentityRecord::encode`], or the JSON of earlier releases.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode_record(bytes, RECORD_VERSION, |r| {
            Ok(PresentityRecord {
                version: r.varint()?,
                publications: r.seq(StoredPublication::decode_from)?,
                composed: r.string()?,
                composed_own: r.bool()?,
                fallback_at_ms: r.varint()?,
            })
        })
    }
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
        let value = record.encode();
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
    PresentityRecord::decode(value).map_err(|e| StoreError::Corrupt {
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
mod tests;
