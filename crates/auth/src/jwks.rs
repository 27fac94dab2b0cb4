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

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self as ring_signature, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

use crate::config::{CacheConfig, KeySource};
use crate::error::AuthError;
use crate::jws::Algorithm;

/// Largest JWKS or discovery document accepted.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;
/// Upper bound on keys tried for a token that names no `kid`.
const MAX_KIDLESS_CANDIDATES: usize = 4;

/// Key type and curve of a verification key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyKind {
    /// Whether a key of this kind may verify `alg`: the JWK `kty`/`crv` must agree with the token header.
    pub(crate) fn accepts(self, alg: Algorithm) -> bool {
        match self {
            KeyKind::Rsa => matches!(
                alg,
                Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
            ),
            KeyKind::EcP256 => alg == Algorithm::ES256,
            KeyKind::EcP384 => alg == Algorithm::ES384,
            KeyKind::Ed25519 => alg == Algorithm::EdDSA,
        }
    }
}

/// Raw public key material, decoded once when the JWKS is loaded.
enum KeyMaterial {
    /// Big-endian modulus (no leading zeros) and public exponent.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed SEC1 point `04 ‖ x ‖ y`.
    Ec { point: Vec<u8> },
    /// The 32-byte Ed25519 public key.
    Ed { public: Vec<u8> },
}

/// One public key usable for signature verification.
pub(crate) struct VerificationKey {
    pub(crate) kid: Option<String>,
    pub(crate) kind: KeyKind,
    /// The JWK `alg`, when the provider pinned one.
    pub(crate) alg: Option<Algorithm>,
    material: KeyMaterial,
}

impl VerificationKey {
    fn accepts(&self, alg: Algorithm) -> bool {
        self.kind.accepts(alg) && self.alg.is_none_or(|pinned| pinned == alg)
    }

    /// Verifies a JWS signature (RFC 7515 §5.2) over `message`. The algorithm must be one this key accepts;
    /// anything else, including every HMAC algorithm, fails.
    pub(crate) fn verify(&self, alg: Algorithm, message: &[u8], signature: &[u8]) -> bool {
        if !self.accepts(alg) {
            return false;
        }
        let verified = match &self.material {
            KeyMaterial::Rsa { n, e } => {
                let params = match alg {
                    Algorithm::RS256 => &ring_signature::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &ring_signature::RSA_PKCS1_2048_8192_SHA384,
                    Algorithm::RS512 => &ring_signature::RSA_PKCS1_2048_8192_SHA512,
                    Algorithm::PS256 => &ring_signature::RSA_PSS_2048_8192_SHA256,
                    Algorithm::PS384 => &ring_signature::RSA_PSS_2048_8192_SHA384,
                    Algorithm::PS512 => &ring_signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                RsaPublicKeyComponents { n, e }.verify(params, message, signature)
            }
            KeyMaterial::Ec { point } => {
                let params = match alg {
                    Algorithm::ES256 => &ring_signature::ECDSA_P256_SHA256_FIXED,
                    Algorithm::ES384 => &ring_signature::ECDSA_P384_SHA384_FIXED,
                    _ => return false,
                };
                UnparsedPublicKey::new(params, point).verify(message, signature)
            }
            KeyMaterial::Ed { public } => match alg {
                Algorithm::EdDSA => UnparsedPublicKey::new(&ring_signature::ED25519, public)
                    .verify(message, signature),
                _ => return false,
            },
        };
        verified.is_ok()
    }
}

fn decode_member(value: &str, what: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(value.trim_end_matches('='))
        .map_err(|_| format!("{what} is not base64url"))
}

/// The JWK members this crate reads.
#[derive(Deserialize)]
struct RawJwk {
    kty: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    key_use: Option<String>,
    key_ops: Option<Vec<String>>,
    crv: Option<String>,
    n: Option<String>,
    e: Option<String>,
    x: Option<String>,
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawJwks {
    keys: Vec<serde_json::Value>,
}

/// An immutable set of verification keys; replaced wholesale on refresh.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: Vec<Arc<VerificationKey>>,
}

/// What a key look-up found.
pub(crate) enum Lookup {
    Found(Vec<Arc<VerificationKey>>),
    /// The key id exists but its type or pinned algorithm disagrees with the token header.
    Mismatch,
    Missing,
}

impl KeySet {
    /// Parses a JWKS document. Keys that cannot verify signatures here (encryption keys, symmetric keys,
    /// unsupported types or curves, RSA moduli under 2048 bits) are skipped; a document that is not a JWKS
    /// at all is an error.
    pub(crate) fn parse(document: &[u8]) -> Result<KeySet, String> {
        let raw: RawJwks =
            serde_json::from_slice(document).map_err(|e| format!("not a JWKS document: {e}"))?;
        let mut keys = Vec::with_capacity(raw.keys.len());
        for value in raw.keys {
            let jwk: RawJwk = match serde_json::from_value(value) {
                Ok(jwk) => jwk,
                Err(e) => {
                    tracing::warn!(error = %e, "skipping malformed JWK");
                    continue;
                }
            };
            let kid = jwk.kid.clone();
            match convert(jwk) {
                Ok(Some(key)) => keys.push(Arc::new(key)),
                Ok(None) => {}
                Err(reason) => tracing::warn!(kid = ?kid, %reason, "skipping unusable JWK"),
            }
        }
        Ok(KeySet { keys })
    }

    pub(crate) fn len(&self) -> usize {
        self.keys.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Key ids present, for diagnostics.
    pub(crate) fn kids(&self) -> Vec<String> {
        self.keys.iter().filter_map(|k| k.kid.clone()).collect()
    }

    /// Keys that may verify a token with header `kid` and `alg`.
    pub(crate) fn lookup(&self, kid: Option<&str>, alg: Algorithm) -> Lookup {
        match kid {
            Some(kid) => match self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                Some(key) if key.accepts(alg) => Lookup::Found(vec![Arc::clone(key)]),
                Some(_) => Lookup::Mismatch,
                None => Lookup::Missing,
            },
            None => {
                let found: Vec<_> = self
                    .keys
                    .iter()
                    .filter(|k| k.accepts(alg))
                    .take(MAX_KIDLESS_CANDIDATES)
                    .cloned()
                    .collect();
                if found.is_empty() {
                    Lookup::Missing
                } else {
                    Lookup::Found(found)
                }
            }
        }
    }
}

/// Turns one JWK into a verification key; `Ok(None)` for keys that are legitimately not for us.
fn convert(jwk: RawJwk) -> Result<Option<VerificationKey>, String> {
    if jwk.key_use.as_deref().is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if jwk
        .key_ops
        .as_ref()
        .is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
    {
        return Ok(None);
    }
    let alg = match jwk.alg.as_deref() {
        None => None,
        Some(name) => match name.parse::<Algorithm>() {
            Ok(alg) if !alg.is_hmac() => Some(alg),
            // Keys pinned to an algorithm we never accept (HMAC, encryption algorithms) are not for us.
            _ => return Ok(None),
        },
    };
    let (kind, material) = match jwk.kty.as_deref() {
        Some("RSA") => {
            let n = decode_member(&jwk.n.ok_or("RSA key without n")?, "RSA modulus")?;
            let e = decode_member(&jwk.e.ok_or("RSA key without e")?, "RSA exponent")?;
            // Some libraries prepend a zero octet to the modulus; the verifier wants it minimal.
            let n: Vec<u8> = n.into_iter().skip_while(|b| *b == 0).collect();
            let e: Vec<u8> = e.into_iter().skip_while(|b| *b == 0).collect();
            let bits = n.len() * 8;
            if bits < MIN_RSA_BITS {
                return Err(format!("RSA modulus of {bits} bits is too short"));
            }
            if e.is_empty() {
                return Err("RSA exponent is zero".to_owned());
            }
            (KeyKind::Rsa, KeyMaterial::Rsa { n, e })
        }
        Some("EC") => {
            let (kind, size) = match jwk.crv.as_deref() {
                Some("P-256") => (KeyKind::EcP256, 32),
                Some("P-384") => (KeyKind::EcP384, 48),
                other => return Err(format!("unsupported EC curve {other:?}")),
            };
            let x = decode_member(&jwk.x.ok_or("EC key without x")?, "EC coordinate")?;
            let y = decode_member(&jwk.y.ok_or("EC key without y")?, "EC coordinate")?;
            if x.len() != size || y.len() != size {
                return Err("EC coordinate has the wrong length".to_owned());
            }
            let mut point = Vec::with_capacity(1 + 2 * size);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (kind, KeyMaterial::Ec { point })
        }
        Some("OKP") => {
            if jwk.crv.as_deref() != Some("Ed25519") {
                return Err(format!("unsupported OKP curve {:?}", jwk.crv));
            }
            let public = decode_member(&jwk.x.ok_or("OKP key without x")?, "OKP key")?;
            if public.len() != 32 {
                return Err("Ed25519 key has the wrong length".to_owned());
            }
            (KeyKind::Ed25519, KeyMaterial::Ed { public })
        }
        // Symmetric keys ("oct") are never used: accepting them would reopen algorithm confusion.
        Some("oct") => return Ok(None),
        other => return Err(format!("unsupported key type {other:?}")),
    };
    if let Some(alg) = alg {
        if !kind.accepts(alg) {
            return Err(format!("key type disagrees with its alg {alg:?}"));
        }
    }
    Ok(Some(VerificationKey {
        kid: jwk.kid,
        kind,
        alg,
        material,
    }))
}

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
mod tests {
    use super::*;

    #[test]
    fn max_age_directives() {
        assert_eq!(
            parse_max_age("public, max-age=300"),
            Some(Duration::from_secs(300))
        );
        assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(parse_max_age("public"), None);
        assert_eq!(parse_max_age("max-age=abc"), None);
    }

    #[test]
    fn skips_keys_not_for_signatures() -> Result<(), String> {
        let document = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"hmac"},
            {"kty":"EC","crv":"P-256","use":"enc","x":"AA","y":"AA","kid":"enc"},
            {"kty":"RSA","n":"AQAB","e":"AQAB","kid":"tiny"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"},
            {"kty":"OKP","crv":"Ed25519","alg":"HS256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"pinned-hmac"}
        ]}"#;
        let set = KeySet::parse(document)?;
        assert_eq!(set.kids(), vec!["ed".to_owned()]);
        assert!(matches!(
            set.lookup(Some("ed"), Algorithm::EdDSA),
            Lookup::Found(_)
        ));
        assert!(matches!(
            set.lookup(Some("ed"), Algorithm::ES256),
            Lookup::Mismatch
        ));
        assert!(matches!(
            set.lookup(Some("hmac"), Algorithm::HS256),
            Lookup::Missing
        ));
        assert!(matches!(
            set.lookup(None, Algorithm::EdDSA),
            Lookup::Found(_)
        ));
        Ok(())
    }

    #[test]
    fn refuses_non_jwks() {
        assert!(KeySet::parse(b"{\"not\":1}").is_err());
        assert!(KeySet::parse(b"garbage").is_err());
    }
}
