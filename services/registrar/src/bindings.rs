//! Registrar rules (RFC 3261 §10.3, RFC 5626 instance bindings).
//!
//! All bindings of one address-of-record are one record in the backend,
//! changed by compare-and-swap: the whole read-check-write of a REGISTER is
//! atomic however many registrar replicas run. The record's TTL follows its
//! latest binding, and the AOR is scheduled for the sweeper at its earliest
//! binding expiry (schedule first, record second: a crash between the two
//! leaves an early schedule entry, which the sweeper re-arms, never a binding
//! nobody will expire).

use std::sync::Arc;

use bytes::Bytes;
use contract::codec::{self, CodecError, Reader, Writer};
use serde::{Deserialize, Serialize};
use store::{Backend, Key, Kind, Schedule, StoreError};

/// How many times a REGISTER is retried when another replica changed the same
/// AOR between our read and our write.
const CAS_ATTEMPTS: usize = 16;
/// How long a bindings record outlives its latest binding in the backend.
const RECORD_TTL_MARGIN_MS: u64 = 24 * 3600 * 1000;

/// Limits on registration intervals, in seconds.
#[derive(Clone, Debug)]
pub struct RegistrarConfig {
    /// Shorter nonzero requests get 423 Interval Too Brief.
    pub min_expires: u32,
    /// Longer requests are shortened to this.
    pub max_expires: u32,
    /// Used when the request names no expiry.
    pub default_expires: u32,
    /// Registration-driven presence: an address-of-record with live
    /// bindings and no publication is `open`, and `closed` again when its
    /// last binding goes (see [`Registrar::reflect`]).
    pub registration_presence: bool,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        RegistrarConfig {
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
            registration_presence: true,
        }
    }
}

/// One contact of an address-of-record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Binding {
    pub uri: String,
    pub expires_at_ms: u64,
    #[serde(default)]
    pub q_milli: Option<u32>,
    #[serde(default)]
    pub instance_id: String,
    #[serde(default)]
    pub reg_id: Option<u32>,
    pub call_id: String,
    pub cseq: u32,
    #[serde(default)]
    pub transport: String,
    #[serde(default)]
    pub source: String,
    #[serde(default)]
    pub user_agent: String,
}

impl Binding {
    /// Whether `update` refers to this binding (RFC 5626 §6, RFC 5627):
    /// with `+sip.instance` and `reg-id`, the pair names one flow, whatever
    /// the contact URI (several flows of one instance may share a URI);
    /// with `+sip.instance` alone, the instance names the binding — a
    /// device that re-registers from a new address (a new TCP connection,
    /// a new port) replaces its old binding instead of leaving a ghost
    /// beside it; otherwise the contact URI does.
    fn matches(&self, update: &ContactUpdate) -> bool {
        if update.instance_id.is_empty() {
            return self.uri == update.uri;
        }
        match update.reg_id {
            Some(_) => self.instance_id == update.instance_id && self.reg_id == update.reg_id,
            None => {
                self.uri == update.uri
                    || (self.instance_id == update.instance_id && self.reg_id.is_none())
            }
        }
    }

    /// Seconds left at `now_ms`, rounded up so a live binding never shows 0.
    pub fn remaining_secs(&self, now_ms: u64) -> u32 {
        let left = self.expires_at_ms.saturating_sub(now_ms);
        left.div_ceil(1000).min(u32::MAX as u64) as u32
    }

    /// Writes the fields in declaration order (see [`StoredBindings::encode`]).
    fn encode_into(&self, w: &mut Writer) {
        w.str(&self.uri);
        w.varint(self.expires_at_ms);
        w.opt_varint(self.q_milli.map(u64::from));
        w.str(&self.instance_id);
        w.opt_varint(self.reg_id.map(u64::from));
        w.str(&self.call_id);
        w.varint(u64::from(self.cseq));
        w.str(&self.transport);
        w.str(&self.source);
        w.str(&self.user_agent);
    }

    fn decode_from(r: &mut Reader<'_>) -> Result<Self, CodecError> {
        Ok(Binding {
            uri: r.string()?,
            expires_at_ms: r.varint()?,
            q_milli: r.opt_u32()?,
            instance_id: r.string()?,
            reg_id: r.opt_u32()?,
            call_id: r.string()?,
            cseq: r.u32()?,
            transport: r.string()?,
            source: r.string()?,
            user_agent: r.string()?,
        })
    }
}

/// One Contact of a REGISTER.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ContactUpdate {
    pub uri: String,
    /// From the Contact's expires parameter or the Expires header.
    pub expires: Option<u32>,
    pub q_milli: Option<u32>,
    pub instance_id: String,
    pub reg_id: Option<u32>,
}

/// A REGISTER request as the registrar sees it.
#[derive(Clone, Debug, Default)]
pub struct RegisterCommand {
    pub aor: String,
    pub contacts: Vec<ContactUpdate>,
    /// `Contact: *`.
    pub remove_all: bool,
    /// The request's Expires header, checked with `Contact: *`.
    pub call_id: String,
    pub cseq: u32,
    pub transport: String,
    pub source: String,
    pub user_agent: String,
}

/// Why a REGISTER was refused.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    /// SIP 423: a nonzero expiry below the minimum.
    #[error("interval too brief; minimum is {min_expires}s")]
    IntervalTooBrief { min_expires: u32 },
    /// SIP 400: `*` with other contacts (RFC 3261 §10.3 step 6).
    #[error("Contact '*' must stand alone")]
    InvalidWildcard,
    /// SIP 400: no address-of-record.
    #[error("missing address-of-record")]
    MissingAor,
    /// SIP 400 "CSeq out of order": a request not newer than the stored
    /// binding of the same Call-ID (RFC 3261 §10.3 step 7 says the request
    /// fails, naming no code). 400 because the request itself is at fault
    /// and repeating it cannot succeed, as Kamailio's registrar answers
    /// (400 "Invalid CSeq number"); not 500, which tells the client the
    /// server broke and invites the same request again.
    #[error("CSeq {cseq} is not above the stored CSeq of this Call-ID")]
    OutOfOrder { cseq: u32 },
    /// SIP 503: too many concurrent writers, or the backend is down.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("concurrent updates of {0} did not settle")]
    Contended(String),
}

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct StoredBindings {
    bindings: Vec<Binding>,
}

/// The version of the binary encoding of [`StoredBindings`].
const RECORD_VERSION: u8 = 1;

impl StoredBindings {
    /// The stored form: the compact binary encoding of [`contract::codec`]
    /// (format tag, version, the bindings' fields in declaration order).
    ///
    /// Binary rather than JSON because, with REGISTER and PUBLISH at
    /// 12,000/s, `serde_json` serialisation of stored records was ~12 % of
    /// all CPU, and every field name was repeated in every binding.
    /// [`StoredBindings::decode`] still reads the JSON that earlier releases
    /// wrote.
    fn encode(bindings: &[Binding]) -> Vec<u8> {
        Self::encode_with(bindings, codec::writes_json())
    }

    /// [`Self::encode`], as JSON when `json` (see `contract::codec::set_write_json`).
    fn encode_with(bindings: &[Binding], json: bool) -> Vec<u8> {
        /// The JSON shape of [`StoredBindings`], borrowed.
        #[derive(Serialize)]
        struct Json<'a> {
            bindings: &'a [Binding],
        }
        codec::encode_record(&Json { bindings }, json, || {
            let strings: usize = bindings
                .iter()
                .map(|b| {
                    b.uri.len()
                        + b.instance_id.len()
                        + b.call_id.len()
                        + b.transport.len()
                        + b.source.len()
                        + b.user_agent.len()
                        + 40
                })
                .sum();
            let mut w = Writer::record(RECORD_VERSION, strings + 8);
            w.seq(bindings, |w, b| b.encode_into(w));
            w.into_vec()
        })
    }

    /// Reads a stored record: the binary encoding of
    /// [`StoredBindings::encode`], or the JSON of earlier releases.
    fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        codec::decode_record(bytes, RECORD_VERSION, |r| {
            Ok(StoredBindings {
                bindings: r.seq(Binding::decode_from)?,
            })
        })
    }
}

/// The registrar: RFC 3261 rules over the state backend.
#[derive(Clone)]
pub struct Registrar {
    backend: Arc<dyn Backend>,
    config: RegistrarConfig,
    /// The presence compositor, when registrations drive presence.
    presence: Option<presence::Compositor>,
}

impl Registrar {
    pub fn new(backend: Arc<dyn Backend>, config: RegistrarConfig) -> Self {
        let presence = config.registration_presence.then(|| {
            // The publication lives exactly as long as the bindings, so no
            // limit of the compositor's may shorten or stretch it.
            let limits = presence::PresenceConfig {
                min_publish_expires: 1,
                max_publish_expires: u32::MAX,
                ..presence::PresenceConfig::default()
            };
            presence::Compositor::new(backend.clone(), limits)
        });
        Registrar {
            backend,
            config,
            presence,
        }
    }

    /// Registration-driven presence: keeps the AOR's `registration`
    /// publication in step with its bindings — present (status available,
    /// expiring with the latest binding) while any binding lives, removed
    /// with the last one. The compositor only shows it while the AOR has no
    /// other publication, so a phone's own PUBLISH always wins.
    ///
    /// A failure here does not fail the REGISTER (the binding is what the
    /// client asked for); the publication also lapses by itself with the
    /// bindings, so the error only delays what watchers see.
    async fn reflect(&self, aor: &str, bindings: &[Binding], now_ms: u64) {
        let Some(compositor) = &self.presence else {
            return;
        };
        let result = match bindings.iter().map(|b| b.expires_at_ms).max() {
            None => compositor
                .clear_source(aor, presence::compositor::REGISTRATION_SOURCE, now_ms)
                .await
                .map(drop),
            Some(latest) => {
                let expires = latest.saturating_sub(now_ms).div_ceil(1000).max(1);
                let command = presence::sources::SetSourceCommand {
                    presentity: aor.to_string(),
                    source: presence::compositor::REGISTRATION_SOURCE.to_string(),
                    content: presence::sources::SourceContent::Status {
                        status: pidf::PresenceStatus::Available,
                        note: None,
                    },
                    expires: Some(u32::try_from(expires).unwrap_or(u32::MAX)),
                    publisher: "registrar".into(),
                };
                compositor.set_source(&command, now_ms).await.map(drop)
            }
        };
        if let Err(e) = result {
            tracing::warn!(%aor, error = %e, "registration-driven presence not updated");
        }
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.config
    }

    fn key(aor: &str) -> Key {
        Key::new(Kind::Bindings, aor)
    }

    async fn load(&self, aor: &str) -> Result<(u64, Vec<Binding>), StoreError> {
        match self.backend.get_record(&Self::key(aor)).await? {
            None => Ok((0, Vec::new())),
            Some(record) => {
                let stored =
                    StoredBindings::decode(&record.value).map_err(|e| StoreError::Corrupt {
                        key: format!("bindings of {aor}"),
                        reason: e.to_string(),
                    })?;
                Ok((record.rev, stored.bindings))
            }
        }
    }

    /// Applies a REGISTER and returns the bindings in force afterwards.
    pub async fn register(
        &self,
        command: &RegisterCommand,
        now_ms: u64,
    ) -> Result<Vec<Binding>, RegisterError> {
        if command.aor.is_empty() {
            return Err(RegisterError::MissingAor);
        }
        if command.remove_all && !command.contacts.is_empty() {
            return Err(RegisterError::InvalidWildcard);
        }
        for update in &command.contacts {
            if let Some(e) = update.expires {
                if e != 0 && e < self.config.min_expires {
                    return Err(RegisterError::IntervalTooBrief {
                        min_expires: self.config.min_expires,
                    });
                }
            }
        }
        for _ in 0..CAS_ATTEMPTS {
            let (rev, current) = self.load(&command.aor).await?;
            let live: Vec<Binding> = current
                .into_iter()
                .filter(|b| b.expires_at_ms > now_ms)
                .collect();
            let next = self.apply(live, command, now_ms)?;
            if self.save(&command.aor, rev, &next, now_ms).await? {
                self.reflect(&command.aor, &next, now_ms).await;
                return Ok(next);
            }
        }
        Err(RegisterError::Contended(command.aor.clone()))
    }

    /// RFC 3261 §10.3 steps 6–8 on the live bindings.
    fn apply(
        &self,
        mut bindings: Vec<Binding>,
        command: &RegisterCommand,
        now_ms: u64,
    ) -> Result<Vec<Binding>, RegisterError> {
        let out_of_order = |b: &Binding| b.call_id == command.call_id && command.cseq <= b.cseq;
        if command.remove_all {
            if bindings.iter().any(out_of_order) {
                return Err(RegisterError::OutOfOrder { cseq: command.cseq });
            }
            return Ok(Vec::new());
        }
        for update in &command.contacts {
            let expires = update
                .expires
                .unwrap_or(self.config.default_expires)
                .min(self.config.max_expires);
            // Every binding the contact names goes (more than one only in
            // records written before instance matching).
            if bindings
                .iter()
                .any(|b| b.matches(update) && out_of_order(b))
            {
                return Err(RegisterError::OutOfOrder { cseq: command.cseq });
            }
            bindings.retain(|b| !b.matches(update));
            if expires > 0 {
                bindings.push(Binding {
                    uri: update.uri.clone(),
                    expires_at_ms: now_ms + u64::from(expires) * 1000,
                    q_milli: update.q_milli,
                    instance_id: update.instance_id.clone(),
                    reg_id: update.reg_id,
                    call_id: command.call_id.clone(),
                    cseq: command.cseq,
                    transport: command.transport.clone(),
                    source: command.source.clone(),
                    user_agent: command.user_agent.clone(),
                });
            }
        }
        Ok(bindings)
    }

    /// Writes the bindings (or deletes the record when none are left) if the
    /// record is still at `rev`, with the earliest expiry scheduled (see
    /// `Backend::cas_record_scheduled`).
    async fn save(
        &self,
        aor: &str,
        rev: u64,
        bindings: &[Binding],
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let key = Self::key(aor);
        if bindings.is_empty() {
            if rev == 0 {
                return Ok(true);
            }
            // The schedule entry stays: unscheduling after the delete could
            // remove the entry of a REGISTER that re-created the record in
            // between. The sweeper drops it when it falls due and finds
            // nothing (`expire`, then the sweep's release).
            let done = self.backend.cas_record(&key, rev, None, None, None).await?;
            return Ok(done.is_some());
        }
        let earliest = bindings
            .iter()
            .map(|b| b.expires_at_ms)
            .min()
            .unwrap_or(now_ms);
        let latest = bindings
            .iter()
            .map(|b| b.expires_at_ms)
            .max()
            .unwrap_or(now_ms);
        let value = StoredBindings::encode(bindings);
        // The record outlives its last binding by a day: the sweeper deletes
        // it when the last binding expires, and the TTL is only a backstop,
        // which must never drop bindings whose expiry the sweeper has not yet
        // handled (a backlog, an outage of every replica).
        let ttl = latest.saturating_sub(now_ms) + RECORD_TTL_MARGIN_MS;
        let done = self
            .backend
            .cas_record_scheduled(
                &key,
                rev,
                Some(Bytes::from(value)),
                Some(ttl),
                None,
                (Schedule::Bindings, aor, earliest),
            )
            .await?;
        Ok(done.is_some())
    }

    /// The live bindings of `aor`.
    pub async fn lookup(&self, aor: &str, now_ms: u64) -> Result<Vec<Binding>, StoreError> {
        let (_, bindings) = self.load(aor).await?;
        Ok(bindings
            .into_iter()
            .filter(|b| b.expires_at_ms > now_ms)
            .collect())
    }

    /// The live bindings of several AORs, in the order asked, read in one
    /// round trip.
    pub async fn lookup_many(
        &self,
        aors: &[String],
        now_ms: u64,
    ) -> Result<Vec<Vec<Binding>>, StoreError> {
        let keys: Vec<Key> = aors.iter().map(|aor| Self::key(aor)).collect();
        let records = self.backend.get_records(&keys).await?;
        aors.iter()
            .zip(records)
            .map(|(aor, record)| {
                let Some(record) = record else {
                    return Ok(Vec::new());
                };
                let stored =
                    StoredBindings::decode(&record.value).map_err(|e| StoreError::Corrupt {
                        key: format!("bindings of {aor}"),
                        reason: e.to_string(),
                    })?;
                Ok(stored
                    .bindings
                    .into_iter()
                    .filter(|b| b.expires_at_ms > now_ms)
                    .collect())
            })
            .collect()
    }

    /// Administrative removal: the binding whose contact URI or
    /// `+sip.instance` is `contact`, or every binding of `aor` when `None`.
    /// Returns the live bindings removed (none when nothing matched).
    pub async fn unregister(
        &self,
        aor: &str,
        contact: Option<&str>,
        now_ms: u64,
    ) -> Result<Vec<Binding>, RegisterError> {
        if aor.is_empty() {
            return Err(RegisterError::MissingAor);
        }
        for _ in 0..CAS_ATTEMPTS {
            let (rev, current) = self.load(aor).await?;
            let (removed, kept): (Vec<Binding>, Vec<Binding>) = current
                .into_iter()
                .filter(|b| b.expires_at_ms > now_ms)
                .partition(|b| match contact {
                    None => true,
                    Some(c) => b.uri == c || (!b.instance_id.is_empty() && b.instance_id == c),
                });
            if removed.is_empty() {
                return Ok(removed);
            }
            if self.save(aor, rev, &kept, now_ms).await? {
                self.reflect(aor, &kept, now_ms).await;
                return Ok(removed);
            }
        }
        Err(RegisterError::Contended(aor.to_string()))
    }

    /// Removes the expired bindings of one AOR the sweeper found due.
    /// Returns whether a binding was removed by this call.
    pub async fn expire(&self, aor: &str, now_ms: u64) -> Result<bool, RegisterError> {
        for _ in 0..CAS_ATTEMPTS {
            let (rev, current) = self.load(aor).await?;
            let before = current.len();
            let live: Vec<Binding> = current
                .into_iter()
                .filter(|b| b.expires_at_ms > now_ms)
                .collect();
            if live.len() == before {
                // Nothing due (an early schedule entry): re-arm it, or leave
                // it to the sweep's release, which keeps an entry a
                // concurrent REGISTER wrote meanwhile.
                if let Some(due) = live.iter().map(|b| b.expires_at_ms).min() {
                    self.backend.schedule(Schedule::Bindings, aor, due).await?;
                }
                return Ok(false);
            }
            if self.save(aor, rev, &live, now_ms).await? {
                self.reflect(aor, &live, now_ms).await;
                return Ok(true);
            }
        }
        Err(RegisterError::Contended(aor.to_string()))
    }
}

#[cfg(test)]
mod tests;
