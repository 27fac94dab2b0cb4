//! Configuration of bearer-token validation.

use std::path::PathBuf;
use std::time::Duration;

use crate::jws::Algorithm;

use crate::scope::ScopePolicy;

/// Where the token-signing public keys (a JWKS document, RFC 7517 §5) come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWKS document on disk; re-read on the refresh schedule, so replacing the file rotates keys.
    File(PathBuf),
    /// A JWKS document served over HTTP(S); refreshed on its `Cache-Control: max-age` schedule and on
    /// unknown key ids.
    Url(String),
    /// An OpenID Connect issuer: either the issuer base URL (`/.well-known/openid-configuration` is
    /// appended) or the full URL of a discovery document. Its `jwks_uri` is then used like [`KeySource::Url`].
    Discovery(String),
    /// A JWKS document given inline as JSON; never refreshed.
    Inline(String),
}

/// How the validator authenticates itself to an RFC 7662 introspection endpoint (RFC 6749 §2.3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuthMethod {
    /// `client_secret_basic`: HTTP Basic authentication with the form-encoded id and secret.
    #[default]
    Basic,
    /// `client_secret_post`: `client_id` and `client_secret` in the request body.
    Post,
}

/// An RFC 7662 token introspection endpoint used for opaque (non-JWT) tokens.
///
/// Its `Debug` output redacts the client secret, so configurations can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct IntrospectionConfig {
    /// The introspection endpoint URL.
    pub url: String,
    /// The client id of this service at the authorization server.
    pub client_id: String,
    /// The client secret of this service at the authorization server.
    pub client_secret: String,
    /// How the client credentials are sent.
    pub auth_method: ClientAuthMethod,
}

impl std::fmt::Debug for IntrospectionConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionConfig")
            .field("url", &self.url)
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("auth_method", &self.auth_method)
            .finish()
    }
}

/// Caching of validation results and of signing keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// Upper bound on the number of cached validation results (positive and negative together);
    /// 0 disables the result cache. Least recently used entries are evicted first.
    pub max_entries: usize,
    /// A valid token stays cached until its `exp`, but never longer than this. For introspected
    /// tokens this bounds how late a revocation is noticed.
    pub max_ttl: Duration,
    /// How long a rejected token is remembered, sparing the signature check or introspection call when
    /// it is presented again. Outages of the provider are never cached.
    pub negative_ttl: Duration,
    /// JWKS refresh interval when the provider sends no `Cache-Control: max-age`.
    pub jwks_refresh: Duration,
    /// Lower bound applied to the provider's `max-age` (and ceiling of the retry back-off after a failed
    /// refresh).
    pub jwks_refresh_min: Duration,
    /// Upper bound applied to the provider's `max-age`.
    pub jwks_refresh_max: Duration,
    /// Minimum time between two JWKS fetches triggered by tokens naming an unknown `kid`, so a flood of
    /// bogus key ids cannot hammer the provider.
    pub unknown_kid_min_interval: Duration,
    /// Timeout of every outbound HTTP request (discovery, JWKS, introspection), connection included.
    pub http_timeout: Duration,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            max_entries: 100_000,
            max_ttl: Duration::from_secs(300),
            negative_ttl: Duration::from_secs(5),
            jwks_refresh: Duration::from_secs(600),
            jwks_refresh_min: Duration::from_secs(30),
            jwks_refresh_max: Duration::from_secs(86_400),
            unknown_kid_min_interval: Duration::from_secs(10),
            http_timeout: Duration::from_secs(5),
        }
    }
}

/// Configuration of a [`crate::BearerValidator`].
///
/// Build it with struct-update syntax over [`BearerConfig::default`], which gives the secure defaults
/// (asymmetric algorithms only, 30 s leeway, identity from `sub`, scope policy of [`ScopePolicy::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BearerConfig {
    /// Realm advertised in `WWW-Authenticate` challenges.
    pub realm: String,
    /// Accepted `iss` values. Empty means the issuer is not checked (a warning is logged at start), except
    /// with [`KeySource::Discovery`], where the discovered issuer is then accepted.
    pub issuers: Vec<String>,
    /// Accepted `aud` values; a token must name at least one. Empty means the audience is not checked.
    pub audiences: Vec<String>,
    /// Where the JWT signing keys come from. `None` means only introspection is used.
    pub jwks: Option<KeySource>,
    /// Allowed JWS algorithms. `none` and the HMAC family are always refused: listing an HMAC algorithm
    /// here is a configuration error.
    pub algorithms: Vec<Algorithm>,
    /// Clock-skew tolerance in seconds for `exp`, `nbf` and `iat`.
    pub leeway_secs: u64,
    /// RFC 7662 introspection for opaque tokens (and for every token when `jwks` is `None`).
    pub introspection: Option<IntrospectionConfig>,
    /// The claim that names the SIP identity: `sub`, `preferred_username`, `sip_uri`, `email`, ...
    pub identity_claim: String,
    /// Domain appended when the identity claim is a bare user name (`alice` → `alice@example.com`).
    pub default_domain: Option<String>,
    /// Scope required per SIP method.
    pub scopes: ScopePolicy,
    /// Authorization server advertised in challenges (`authz_server`, RFC 8898 §3.2).
    pub authz_server: Option<String>,
    /// Result and key caching.
    pub cache: CacheConfig,
}

/// The default allow-list: RS256/384/512, PS256, ES256/384 and EdDSA.
pub fn default_algorithms() -> Vec<Algorithm> {
    vec![
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ]
}

impl Default for BearerConfig {
    fn default() -> Self {
        BearerConfig {
            realm: "sip".to_owned(),
            issuers: Vec::new(),
            audiences: Vec::new(),
            jwks: None,
            algorithms: default_algorithms(),
            leeway_secs: 30,
            introspection: None,
            identity_claim: "sub".to_owned(),
            default_domain: None,
            scopes: ScopePolicy::default(),
            authz_server: None,
            cache: CacheConfig::default(),
        }
    }
}
