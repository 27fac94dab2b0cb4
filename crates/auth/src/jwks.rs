//! Signing-key cache: loads a JWKS document, keeps it fresh and re-fetches it, rate-limited, when a token
//! names a key id it does not know.
//!
//! Refresh policy:
//! * on a schedule: the provider's `Cache-Control: max-age`, bounded by
//!   [`CacheConfig::jwks_refresh_min`]/[`CacheConfig::jwks_refresh_max`], or [`CacheConfig::jwks_refresh`]
//!   without one; after a failure the refresh is retried with a doubling back-off that starts at a tenth of
//!   `jwks_refresh_min` (at least one second) and never exceeds `jwks_refresh_min`;
//! * on demand when a token names an unknown `kid`: at most one fetch per
//!   [`CacheConfig::unknown_kid_min_interval`], and concurrent requests wait for the same fetch instead of
//!   starting their own.
//!
//! A failed fetch never discards the keys already held, so an outage of the provider does not affect
//! tokens signed with known keys.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use serde::Deserialize;

use crate::config::{CacheConfig, KeySource};
use crate::error::AuthError;
use crate::jws::Algorithm;

mod keys;

pub(crate) use keys::{KeySet, Lookup, VerificationKey};

/// Largest JWKS or discovery document accepted.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// Where keys are loaded from, once resolved.
enum Origin {
    File(PathBuf),
    Url(String),
    Discovery {
        url: String,
        expected_issuer: Option<String>,
    },
    Inline(String),
}

impl Origin {
    fn from_source(source: &KeySource) -> Origin {
        match source {
            KeySource::File(path) => Origin::File(path.clone()),
            KeySource::Url(url) => Origin::Url(url.clone()),
            KeySource::Inline(json) => Origin::Inline(json.clone()),
            KeySource::Discovery(location) => {
                if location.contains("/.well-known/") {
                    Origin::Discovery {
                        url: location.clone(),
                        expected_issuer: None,
                    }
                } else {
                    let base = location.trim_end_matches('/');
                    Origin::Discovery {
                        url: format!("{base}/.well-known/openid-configuration"),
                        expected_issuer: Some(base.to_owned()),
                    }
                }
            }
        }
    }

    /// Whether the keys can change after the first load.
    fn refreshable(&self) -> bool {
        !matches!(self, Origin::Inline(_))
    }

    fn remote(&self) -> bool {
        matches!(self, Origin::Url(_) | Origin::Discovery { .. })
    }
}

/// Mutable fetch bookkeeping, behind the single-flight lock.
#[derive(Default)]
struct FetchState {
    /// Last fetch triggered by an unknown key id (scheduled refreshes do not count against the limit).
    last_on_demand: Option<Instant>,
    /// `jwks_uri` learnt from the discovery document.
    jwks_uri: Option<String>,
}

/// The signing keys of one provider, kept fresh.
pub(crate) struct KeyCache {
    origin: Origin,
    client: reqwest::Client,
    config: CacheConfig,
    keys: RwLock<Arc<KeySet>>,
    /// Serialises fetches: whoever holds it fetches, everybody else waits and reuses the result.
    fetch: tokio::sync::Mutex<FetchState>,
    /// Issuer named by the discovery document.
    discovered_issuer: OnceLock<String>,
    fetches: AtomicU64,
    /// Dropped with the cache, which tells the background refresher to stop.
    alive: tokio::sync::watch::Sender<()>,
}

impl KeyCache {
    pub(crate) fn new(source: &KeySource, client: reqwest::Client, config: CacheConfig) -> Self {
        KeyCache {
            origin: Origin::from_source(source),
            client,
            config,
            keys: RwLock::new(Arc::new(KeySet::default())),
            fetch: tokio::sync::Mutex::new(FetchState::default()),
            discovered_issuer: OnceLock::new(),
            fetches: AtomicU64::new(0),
            alive: tokio::sync::watch::channel(()).0,
        }
    }

    /// Whether the source is fetched over the network (and so may be temporarily unavailable).
    pub(crate) fn is_remote(&self) -> bool {
        self.origin.remote()
    }

    /// The issuer announced by the discovery document, once it has been read.
    pub(crate) fn discovered_issuer(&self) -> Option<&str> {
        self.discovered_issuer.get().map(String::as_str)
    }

    /// Number of load attempts so far (diagnostics and tests).
    pub(crate) fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The current key set.
    pub(crate) fn current(&self) -> Arc<KeySet> {
        Arc::clone(&locks::read(&self.keys))
    }

    /// Loads the keys now; returns the delay until the next scheduled refresh.
    pub(crate) async fn load(&self) -> Result<Duration, AuthError> {
        let mut state = self.fetch.lock().await;
        self.load_locked(&mut state).await
    }

    async fn load_locked(&self, state: &mut FetchState) -> Result<Duration, AuthError> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let (document, max_age) = match &self.origin {
            Origin::Inline(json) => (json.as_bytes().to_vec(), None),
            Origin::File(path) => {
                let bytes = tokio::fs::read(path).await.map_err(|e| {
                    AuthError::Config(format!("cannot read JWKS file {}: {e}", path.display()))
                })?;
                (bytes, None)
            }
            Origin::Url(url) => self.get(url).await?,
            Origin::Discovery {
                url,
                expected_issuer,
            } => {
                let jwks_uri = match &state.jwks_uri {
                    Some(uri) => uri.clone(),
                    None => {
                        let uri = self.discover(url, expected_issuer.as_deref()).await?;
                        state.jwks_uri = Some(uri.clone());
                        uri
                    }
                };
                self.get(&jwks_uri).await?
            }
        };
        let set = KeySet::parse(&document).map_err(|reason| match self.origin {
            Origin::Inline(_) | Origin::File(_) => AuthError::Config(reason),
            _ => AuthError::ProviderUnavailable(reason),
        })?;
        if set.is_empty() {
            let reason = "the JWKS document holds no usable signing key".to_owned();
            return Err(if self.origin.remote() {
                AuthError::ProviderUnavailable(reason)
            } else {
                AuthError::Config(reason)
            });
        }
        tracing::debug!(keys = set.len(), kids = ?set.kids(), "JWKS loaded");
        *locks::write(&self.keys) = Arc::new(set);
        let refresh = max_age.unwrap_or(self.config.jwks_refresh);
        Ok(refresh.clamp(
            self.config.jwks_refresh_min,
            self.config
                .jwks_refresh_max
                .max(self.config.jwks_refresh_min),
        ))
    }

    /// Reads the discovery document and returns its `jwks_uri`.
    async fn discover(
        &self,
        url: &str,
        expected_issuer: Option<&str>,
    ) -> Result<String, AuthError> {
        #[derive(Deserialize)]
        struct Discovery {
            issuer: Option<String>,
            jwks_uri: Option<String>,
        }
        let (document, _) = self.get(url).await?;
        let discovery: Discovery = serde_json::from_slice(&document)
            .map_err(|e| AuthError::ProviderUnavailable(format!("bad discovery document: {e}")))?;
        if let (Some(expected), Some(issuer)) = (expected_issuer, discovery.issuer.as_deref()) {
            if expected.trim_end_matches('/') != issuer.trim_end_matches('/') {
                return Err(AuthError::Config(format!(
                    "discovery document names issuer {issuer}, expected {expected}"
                )));
            }
        }
        if let Some(issuer) = discovery.issuer {
            // First discovery wins; the issuer of a provider does not change.
            let _ = self.discovered_issuer.set(issuer);
        }
        discovery.jwks_uri.ok_or_else(|| {
            AuthError::ProviderUnavailable("discovery document has no jwks_uri".to_owned())
        })
    }

    /// GETs a JSON document with the size limit; returns it with its `max-age`, if any.
    async fn get(&self, url: &str) -> Result<(Vec<u8>, Option<Duration>), AuthError> {
        let unavailable = |e: String| AuthError::ProviderUnavailable(format!("{url}: {e}"));
        let mut response = self
            .client
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| unavailable(e.to_string()))?;
        if !response.status().is_success() {
            return Err(unavailable(format!("HTTP status {}", response.status())));
        }
        let max_age = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_max_age);
        let body = read_limited(&mut response, MAX_DOCUMENT_BYTES)
            .await
            .map_err(unavailable)?;
        Ok((body, max_age))
    }

    /// Keys that may verify a token naming `kid` with algorithm `alg`, fetching the JWKS again (subject to
    /// the rate limit) when the key is unknown.
    pub(crate) async fn keys_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Vec<Arc<VerificationKey>>, AuthError> {
        match self.current().lookup(kid, alg) {
            Lookup::Found(keys) => return Ok(keys),
            Lookup::Mismatch => return Err(mismatch()),
            Lookup::Missing => {}
        }
        if self.origin.refreshable() {
            let mut state = self.fetch.lock().await;
            // Whoever held the lock before may just have fetched the key.
            match self.current().lookup(kid, alg) {
                Lookup::Found(keys) => return Ok(keys),
                Lookup::Mismatch => return Err(mismatch()),
                Lookup::Missing => {}
            }
            let recently = state
                .last_on_demand
                .is_some_and(|at| at.elapsed() < self.config.unknown_kid_min_interval);
            if !recently {
                state.last_on_demand = Some(Instant::now());
                tracing::info!(kid = ?kid, "token names an unknown key; fetching the JWKS again");
                if let Err(error) = self.load_locked(&mut state).await {
                    tracing::warn!(%error, "JWKS fetch for an unknown key failed");
                }
            }
        }
        let current = self.current();
        match current.lookup(kid, alg) {
            Lookup::Found(keys) => Ok(keys),
            Lookup::Mismatch => Err(mismatch()),
            Lookup::Missing if current.is_empty() => Err(AuthError::ProviderUnavailable(
                "no signing keys could be loaded".to_owned(),
            )),
            Lookup::Missing => Err(AuthError::InvalidToken(
                "no signing key matches the token".to_owned(),
            )),
        }
    }

    /// Keeps the keys fresh in the background until the cache is dropped.
    pub(crate) fn spawn_refresher(self: &Arc<Self>, first_delay: Duration) {
        if !self.origin.refreshable() {
            return;
        }
        let weak: Weak<KeyCache> = Arc::downgrade(self);
        let mut alive = self.alive.subscribe();
        let retry_floor = (self.config.jwks_refresh_min / 10).max(Duration::from_secs(1));
        let retry_ceiling = self.config.jwks_refresh_min.max(retry_floor);
        tokio::spawn(async move {
            let mut delay = first_delay;
            let mut backoff = retry_floor;
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    // Nothing is ever sent: this completes only when the cache is dropped.
                    _ = alive.changed() => break,
                }
                let Some(cache) = weak.upgrade() else { break };
                match cache.load().await {
                    Ok(next) => {
                        delay = next;
                        backoff = retry_floor;
                    }
                    Err(error) => {
                        tracing::warn!(%error, retry_in = ?backoff, "JWKS refresh failed; keeping the current keys");
                        delay = backoff;
                        backoff = (backoff * 2).min(retry_ceiling);
                    }
                }
            }
        });
    }
}

fn mismatch() -> AuthError {
    AuthError::InvalidToken("the signing key does not match the token algorithm".to_owned())
}

/// `max-age` from a Cache-Control header; `no-cache`/`no-store` count as zero (then raised to the minimum).
fn parse_max_age(header: &str) -> Option<Duration> {
    let mut result = None;
    for directive in header.split(',') {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        {
            return Some(Duration::ZERO);
        }
        let Some((name, value)) = directive.split_once('=') else {
            continue;
        };
        if name.trim().eq_ignore_ascii_case("max-age") {
            result = value
                .trim()
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs);
        }
    }
    result
}

/// Reads a response body, refusing bodies larger than `limit`.
pub(crate) async fn read_limited(
    response: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err("response body too large".to_owned());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > limit {
            return Err("response body too large".to_owned());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests;
