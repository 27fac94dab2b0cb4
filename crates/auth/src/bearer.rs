//! OAuth 2.0 bearer-token validation for SIP (RFC 8898, RFC 6750).

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::cache::TokenCache;
use crate::config::{BearerConfig, KeySource};
use crate::error::AuthError;
use crate::identity::Identity;
use crate::introspection::Introspector;
use crate::jwks::KeyCache;
use crate::jws::Algorithm;

mod challenge;
mod claims;

pub(crate) use challenge::push_quoted;
pub use challenge::BearerChallenge;

/// Longest token accepted; longer ones are malformed rather than worth hashing or parsing.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Validates bearer tokens and checks scopes. Cheap to clone: all clones share keys and caches.
///
/// Start-up behaviour of [`BearerValidator::new`]: keys from a file or inline JSON must load, or `new`
/// fails with [`AuthError::Config`]. Keys from a URL or discovery are fetched once; if that fails, `new`
/// fails with [`AuthError::ProviderUnavailable`] unless introspection is configured as well, in which case
/// the validator starts (opaque tokens work, JWTs get 503 until keys arrive) and keeps retrying in the
/// background. Once any key is loaded, later outages only delay rotation: cached keys keep working.
#[derive(Clone)]
pub struct BearerValidator {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for BearerValidator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let config = &self.inner.config;
        f.debug_struct("BearerValidator")
            .field("realm", &config.realm)
            .field("issuers", &config.issuers)
            .field("audiences", &config.audiences)
            .field("keys", &self.inner.keys.as_ref().map(|k| k.current().len()))
            .field(
                "introspection",
                &config.introspection.as_ref().map(|i| &i.url),
            )
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: BearerConfig,
    keys: Option<Arc<KeyCache>>,
    introspector: Option<Introspector>,
    cache: TokenCache,
}

/// The JOSE header members this crate reads.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<Value>,
}

/// A successful validation before caching: the identity and until when it may be cached.
struct Validated {
    identity: Identity,
    /// Token expiry in milliseconds, if the token has one.
    expires_at_ms: Option<u64>,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn invalid(reason: &str) -> AuthError {
    AuthError::InvalidToken(reason.to_owned())
}

impl BearerValidator {
    /// Checks the configuration, builds the HTTP client and loads the signing keys (see the type-level
    /// documentation for what happens when the provider is down at start).
    pub async fn new(config: BearerConfig) -> Result<Self, AuthError> {
        if config.algorithms.is_empty() {
            return Err(AuthError::Config("no JWS algorithm allowed".to_owned()));
        }
        if let Some(hmac) = config.algorithms.iter().find(|a| a.is_hmac()) {
            return Err(AuthError::Config(format!(
                "{hmac:?} is a symmetric algorithm; only asymmetric algorithms can be used with published keys"
            )));
        }
        if config.jwks.is_none() && config.introspection.is_none() {
            return Err(AuthError::Config(
                "neither a key source nor an introspection endpoint is configured".to_owned(),
            ));
        }
        if config.identity_claim.is_empty() {
            return Err(AuthError::Config("identity_claim is empty".to_owned()));
        }
        let discovery = matches!(config.jwks, Some(KeySource::Discovery(_)));
        if config.issuers.is_empty() && !discovery {
            tracing::warn!("no accepted issuer configured: the iss claim is not checked");
        }
        if config.audiences.is_empty() {
            tracing::warn!("no accepted audience configured: the aud claim is not checked");
        }
        let client = reqwest::Client::builder()
            .timeout(config.cache.http_timeout)
            .connect_timeout(config.cache.http_timeout)
            .build()
            .map_err(|e| AuthError::Config(format!("cannot build the HTTP client: {e}")))?;
        let introspector = config
            .introspection
            .clone()
            .map(|c| Introspector::new(c, client.clone()));
        let keys = match &config.jwks {
            None => None,
            Some(source) => {
                let cache = Arc::new(KeyCache::new(source, client, config.cache.clone()));
                match cache.load().await {
                    Ok(next_refresh) => cache.spawn_refresher(next_refresh),
                    Err(error) if cache.is_remote() && introspector.is_some() => {
                        tracing::warn!(%error, "no signing keys at start; JWTs are refused until the provider answers");
                        cache.spawn_refresher(config.cache.jwks_refresh_min / 10);
                    }
                    Err(error) => return Err(error),
                }
                Some(cache)
            }
        };
        let cache = TokenCache::new(config.cache.max_entries);
        Ok(BearerValidator {
            inner: Arc::new(Inner {
                config,
                keys,
                introspector,
                cache,
            }),
        })
    }

    /// [`BearerValidator::new`] for a process starting up: while the
    /// identity provider cannot be reached (it is starting too, in a rolling
    /// start or a cluster coming up together) it waits and asks again, with
    /// backoff from 250 ms to 10 s, logging why, instead of failing. Any
    /// other error (a configuration that cannot work) fails at once.
    pub async fn new_waiting_for_provider(config: BearerConfig) -> Result<Self, AuthError> {
        let mut wait = std::time::Duration::from_millis(250);
        loop {
            match Self::new(config.clone()).await {
                Err(AuthError::ProviderUnavailable(reason)) => {
                    tracing::warn!(
                        %reason,
                        retry_in_ms = wait.as_millis() as u64,
                        "waiting for the identity provider"
                    );
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(std::time::Duration::from_secs(10));
                }
                other => return other,
            }
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &BearerConfig {
        &self.inner.config
    }

    /// Number of validation results currently cached (expired entries included until evicted).
    pub fn cached_results(&self) -> usize {
        self.inner.cache.len()
    }

    /// Number of JWKS (and discovery) load attempts so far, scheduled and on-demand.
    pub fn jwks_fetch_count(&self) -> u64 {
        self.inner.keys.as_ref().map_or(0, |k| k.fetch_count())
    }

    /// Validates a bearer token: a JWT (three dot-separated segments) is verified locally when a key source
    /// is configured; anything else goes to the introspection endpoint. Results are cached (see
    /// [`crate::CacheConfig`]); provider outages are not.
    pub async fn validate(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim_matches([' ', '\t']);
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Malformed("token too long".to_owned()));
        }
        let key = TokenCache::key(token);
        let now = now_ms();
        // Only tokens that passed the syntax check below are ever cached, so a hit needs no check.
        if let Some(result) = self.inner.cache.get(&key, now) {
            return result;
        }
        if !is_b64token(token) {
            return Err(AuthError::Malformed(
                "token has characters outside the b64token syntax".to_owned(),
            ));
        }
        let result = self.validate_uncached(token, now).await;
        let cache = &self.inner.config.cache;
        let max_ttl_ms = u64::try_from(cache.max_ttl.as_millis()).unwrap_or(u64::MAX);
        match result {
            Ok(validated) => {
                let until = now.saturating_add(max_ttl_ms);
                let until = validated.expires_at_ms.map_or(until, |exp| exp.min(until));
                self.inner
                    .cache
                    .insert_valid(key, validated.identity.clone(), until);
                Ok(validated.identity)
            }
            Err(error) => {
                if !matches!(
                    error,
                    AuthError::ProviderUnavailable(_) | AuthError::Config(_)
                ) {
                    let negative_ms =
                        u64::try_from(cache.negative_ttl.as_millis()).unwrap_or(u64::MAX);
                    self.inner.cache.insert_invalid(
                        key,
                        error.clone(),
                        now.saturating_add(negative_ms),
                    );
                }
                Err(error)
            }
        }
    }

    async fn validate_uncached(&self, token: &str, now_ms: u64) -> Result<Validated, AuthError> {
        let is_jwt = token.bytes().filter(|b| *b == b'.').count() == 2;
        match (&self.inner.keys, &self.inner.introspector) {
            (Some(keys), _) if is_jwt => self.validate_jwt(token, keys, now_ms).await,
            (_, Some(introspector)) => {
                self.validate_introspected(token, introspector, now_ms)
                    .await
            }
            (Some(_), None) => Err(AuthError::InvalidToken(
                "not a JWT and no introspection endpoint is configured".to_owned(),
            )),
            (None, None) => Err(AuthError::Config("no validation method".to_owned())),
        }
    }

    async fn validate_jwt(
        &self,
        token: &str,
        keys: &KeyCache,
        now_ms: u64,
    ) -> Result<Validated, AuthError> {
        let mut segments = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return Err(AuthError::Malformed("a JWT has three segments".to_owned()));
        };
        let header_json = URL_SAFE_NO_PAD
            .decode(header_b64)
            .map_err(|_| invalid("the JOSE header is not base64url"))?;
        let header: JoseHeader = serde_json::from_slice(&header_json)
            .map_err(|_| invalid("the JOSE header is not valid JSON"))?;
        let alg = self.allowed_algorithm(&header.alg)?;
        if header.crit.is_some() {
            return Err(invalid("critical JOSE header extensions are not supported"));
        }
        if let Some(typ) = header.typ.as_deref() {
            let typ = typ.strip_prefix("application/").unwrap_or(typ);
            if !typ.eq_ignore_ascii_case("jwt") && !typ.eq_ignore_ascii_case("at+jwt") {
                return Err(invalid("the token is not an access token"));
            }
        }
        let candidates = keys.keys_for(header.kid.as_deref(), alg).await?;
        let signed = &token[..header_b64.len() + 1 + payload_b64.len()];
        let signature = URL_SAFE_NO_PAD
            .decode(signature_b64)
            .map_err(|_| invalid("the signature is not base64url"))?;
        let verified = candidates
            .iter()
            .any(|candidate| candidate.verify(alg, signed.as_bytes(), &signature));
        if !verified {
            return Err(invalid("signature verification failed"));
        }
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|_| invalid("the claims are not base64url"))?;
        let claims: Map<String, Value> = serde_json::from_slice(&payload)
            .map_err(|_| invalid("the claims are not a JSON object"))?;
        let issuer_fallback = keys.discovered_issuer();
        self.check_claims(&claims, now_ms, true, issuer_fallback)
    }

    async fn validate_introspected(
        &self,
        token: &str,
        introspector: &Introspector,
        now_ms: u64,
    ) -> Result<Validated, AuthError> {
        let members = introspector.introspect(token).await?;
        let issuer_fallback = self.inner.keys.as_ref().and_then(|k| k.discovered_issuer());
        self.check_claims(&members, now_ms, false, issuer_fallback)
    }

    /// The algorithm named by a JOSE header, if the allow-list admits it. `none` and HMAC never pass.
    fn allowed_algorithm(&self, name: &str) -> Result<Algorithm, AuthError> {
        let alg: Algorithm = name
            .parse()
            .map_err(|_| invalid("the token algorithm is not supported"))?;
        if alg.is_hmac() || !self.inner.config.algorithms.contains(&alg) {
            return Err(invalid("the token algorithm is not allowed"));
        }
        Ok(alg)
    }

    /// Checks that `identity` may use SIP `method` under the configured scope policy.
    pub fn authorize(&self, identity: &Identity, method: &str) -> Result<(), AuthError> {
        self.inner.config.scopes.check(identity, method)
    }
}

/// RFC 6750 §2.1 b64token: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(token: &str) -> bool {
    let body = token.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
}

// Compile-time guarantees: the validator is shared between tasks, and the edge awaits validation inside
// spawned tasks, so the futures must be Send.
const _: fn(&BearerValidator) = |validator| {
    fn require_send<T: Send>(_: &T) {}
    fn require_shareable<T: Send + Sync + Clone>(_: &T) {}
    require_shareable(validator);
    require_send(&validator.validate("token"));
    require_send(&BearerValidator::new(BearerConfig::default()));
};

#[cfg(test)]
mod tests;
