//! Who sent a request.
//!
//! Four ways in, each checked in this order:
//!
//! 1. **No authentication** (only when explicitly configured, for local
//!    experiments): the From header is believed.
//! 2. **Trusted peers** (RFC 3325): a request from a configured proxy or SBC
//!    network that carries `P-Asserted-Identity` is that identity. From any
//!    other address the header is ignored, whatever it says.
//! 3. **Bearer tokens** (RFC 8898, with the RFC 6750 error codes): no
//!    credentials give 401 `WWW-Authenticate: Bearer realm=..` naming the
//!    scope the method needs (and `authz_server` when configured); an
//!    invalid or expired token 401 `error="invalid_token"`; a token without
//!    the method's scope 403 `error="insufficient_scope"`; a malformed
//!    Authorization header 400.
//! 4. **Digest** (RFC 2617 MD5, RFC 8760 SHA-256 and SHA-512-256, `qop=auth`)
//!    against an HA1 file: expiring, non-replayable nonces, `stale=true` when
//!    only the nonce was too old.
//!
//! Which of Bearer and Digest a request may use depends on where it comes
//! from: a default for everyone, refined by rules per source network and
//! transport ([`ModeRule`]). A request without usable credentials gets one
//! challenge per accepted scheme — Digest challenges first (strongest
//! algorithm first, RFC 8760 §2.4), so phones that read only the first
//! challenge find one they know, then Bearer.
//!
//! Whatever the way in, the result is an [`Identity`] whose address-of-record
//! the method handlers bind: REGISTER and PUBLISH only for that AOR, and
//! SUBSCRIBE's watcher is that AOR, never the From header's claim.

use std::cmp::Reverse;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, SystemTime};

use auth::digest::{CredentialSource, DigestAlgorithm, DigestAuthenticator, Ha1File};
use auth::peers::TrustedPeers;
use auth::{AuthError, AuthMethod, BearerValidator, Identity};
use sip::{Authorization, Challenge, HeaderName, Request, Response, Scheme};

use crate::transport::{Protocol, Source};

/// Seconds advertised in Retry-After when the token provider cannot be
/// reached and nothing cached can answer.
pub const PROVIDER_RETRY_AFTER_SECS: u32 = 5;

/// How often an HA1 file is checked for changes.
pub const HA1_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// The credential schemes a request may use. Neither (`deny`) lets in only
/// trusted peers' asserted identities.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Schemes {
    pub bearer: bool,
    pub digest: bool,
}

impl Schemes {
    /// Bearer tokens only: the default.
    pub const BEARER: Schemes = Schemes {
        bearer: true,
        digest: false,
    };

    /// Parses mode names: `bearer`, `digest` (together or alone), or `deny`
    /// alone.
    pub fn parse_list<I, S>(modes: I) -> Result<Schemes, AuthConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut schemes = Schemes::default();
        let mut deny = false;
        let mut any = false;
        for mode in modes {
            let mode = mode.as_ref().trim();
            if mode.is_empty() {
                continue;
            }
            any = true;
            match mode.to_ascii_lowercase().as_str() {
                "bearer" => schemes.bearer = true,
                "digest" => schemes.digest = true,
                "deny" => deny = true,
                _ => return Err(AuthConfigError::UnknownMode(mode.to_owned())),
            }
        }
        if !any {
            return Err(AuthConfigError::NoMode);
        }
        if deny && schemes != Schemes::default() {
            return Err(AuthConfigError::DenyCombined);
        }
        Ok(schemes)
    }

    /// Whether no credentials are accepted at all.
    pub fn is_deny(self) -> bool {
        !self.bearer && !self.digest
    }
}

impl fmt::Display for Schemes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.bearer, self.digest) {
            (true, true) => f.write_str("bearer,digest"),
            (true, false) => f.write_str("bearer"),
            (false, true) => f.write_str("digest"),
            (false, false) => f.write_str("deny"),
        }
    }
}

/// The schemes accepted from requests matching a selector:
/// `SELECTOR=MODES`, where the selector is a source network (`10.0.0.0/8`,
/// `2001:db8::/32`, a single address), a transport (`udp`, `tcp`, `tls`,
/// `ws`, `wss`) or both (`udp@10.0.0.0/8`), and the modes are as for
/// [`Schemes::parse_list`], separated by `,` or `+`.
///
/// When several rules match, the one with the longest network prefix wins;
/// between equally long ones (or none), one naming the transport wins.
#[derive(Clone, Debug)]
pub struct ModeRule {
    text: String,
    protocol: Option<Protocol>,
    network: Option<TrustedPeers>,
    /// Prefix length on a common scale (IPv4 prefixes + 96), -1 for none.
    prefix: i16,
    pub schemes: Schemes,
}

impl ModeRule {
    fn matches(&self, source: &Source) -> bool {
        self.protocol.is_none_or(|p| p == source.protocol)
            && self
                .network
                .as_ref()
                .is_none_or(|n| n.is_trusted(source.remote.ip()))
    }

    /// Orders rules most specific first.
    fn specificity(&self) -> (i16, bool) {
        (self.prefix, self.protocol.is_some())
    }
}

impl fmt::Display for ModeRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for ModeRule {
    type Err = AuthConfigError;

    fn from_str(text: &str) -> Result<ModeRule, AuthConfigError> {
        let bad = |why: &str| AuthConfigError::BadRule(text.to_owned(), why.to_owned());
        let (selector, modes) = text
            .split_once('=')
            .ok_or_else(|| bad("expected SELECTOR=MODES"))?;
        let selector = selector.trim();
        let schemes = Schemes::parse_list(modes.split([',', '+']))?;
        let (protocol, network) = match selector.split_once('@') {
            Some((protocol, network)) => (Some(protocol), Some(network)),
            None if Protocol::parse(selector).is_some() => (Some(selector), None),
            None => (None, Some(selector)),
        };
        let protocol = protocol
            .map(|name| Protocol::parse(name.trim()).ok_or_else(|| bad("unknown transport")))
            .transpose()?;
        let (network, prefix) = match network.map(str::trim) {
            None => (None, -1),
            Some(cidr) => {
                let peers = TrustedPeers::new([cidr]).map_err(|_| {
                    bad("neither a transport (udp, tcp, tls, ws, wss) nor a network")
                })?;
                if peers.is_empty() {
                    return Err(bad("empty network"));
                }
                let (address, length) = match cidr.split_once('/') {
                    Some((address, length)) => (address, length.parse::<i16>().ok()),
                    None => (cidr, None),
                };
                let prefix = match address.parse::<IpAddr>() {
                    Ok(IpAddr::V4(_)) => 96 + length.unwrap_or(32),
                    Ok(IpAddr::V6(_)) => length.unwrap_or(128),
                    Err(_) => return Err(bad("invalid network")),
                };
                (Some(peers), prefix)
            }
        };
        Ok(ModeRule {
            text: text.trim().to_owned(),
            protocol,
            network,
            prefix,
            schemes,
        })
    }
}

/// Why an authentication set-up cannot work.
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    #[error("unknown authentication mode {0:?} (expected bearer, digest or deny)")]
    UnknownMode(String),
    #[error("an authentication mode list is empty")]
    NoMode,
    #[error("`deny` cannot be combined with other authentication modes")]
    DenyCombined,
    #[error("invalid authentication rule {0:?}: {1}")]
    BadRule(String, String),
    #[error("bearer tokens are accepted but no token validator is configured")]
    NoBearerValidator,
    #[error("Digest is accepted but no Digest credentials are configured")]
    NoDigestCredentials,
}

/// Everything an [`Authenticator`] decides with.
pub struct Policy {
    /// Validates bearer tokens; needed when any source may use them.
    pub bearer: Option<BearerValidator>,
    /// Checks Digest credentials; needed when any source may use them.
    pub digest: Option<Arc<DigestAuthenticator>>,
    /// Schemes for requests no rule matches.
    pub default_schemes: Schemes,
    /// Per network and transport refinements.
    pub rules: Vec<ModeRule>,
    /// Sources whose P-Asserted-Identity is believed.
    pub trusted_peers: TrustedPeers,
    /// Refuse (400) Digest credentials whose `uri` does not name the
    /// Request-URI (RFC 2617 §3.2.2.5). On by default; some clients (sipp)
    /// put the server's address there instead.
    pub digest_uri_must_match: bool,
}

impl Default for Policy {
    /// Nothing accepted, nobody trusted, strict Digest URI checks.
    fn default() -> Self {
        Policy {
            bearer: None,
            digest: None,
            default_schemes: Schemes::default(),
            rules: Vec::new(),
            trusted_peers: TrustedPeers::default(),
            digest_uri_must_match: true,
        }
    }
}

/// How the edge authenticates requests. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    inner: Arc<Inner>,
}

enum Inner {
    /// The From header is believed.
    Disabled,
    /// Credentials are checked; the policy's rules are sorted most specific
    /// first.
    Checked(Policy),
}

/// Credentials picked from a request's Authorization headers.
enum Credentials {
    Bearer(String),
    Digest(Vec<(String, String)>),
}

impl Authenticator {
    /// No authentication: every request is whoever its From header names.
    /// For local experiments only; the binaries log this loudly.
    pub fn insecure_no_auth() -> Authenticator {
        Authenticator {
            inner: Arc::new(Inner::Disabled),
        }
    }

    /// Bearer tokens from everyone, no trusted peers.
    pub fn bearer(validator: BearerValidator) -> Authenticator {
        Authenticator {
            inner: Arc::new(Inner::Checked(Policy {
                bearer: Some(validator),
                default_schemes: Schemes::BEARER,
                ..Policy::default()
            })),
        }
    }

    /// An authenticator for `policy`; refuses a policy that accepts a
    /// scheme it has no means to check.
    pub fn new(mut policy: Policy) -> Result<Authenticator, AuthConfigError> {
        let every =
            std::iter::once(policy.default_schemes).chain(policy.rules.iter().map(|r| r.schemes));
        for schemes in every {
            if schemes.bearer && policy.bearer.is_none() {
                return Err(AuthConfigError::NoBearerValidator);
            }
            if schemes.digest && policy.digest.is_none() {
                return Err(AuthConfigError::NoDigestCredentials);
            }
        }
        policy.rules.sort_by_key(|rule| Reverse(rule.specificity()));
        Ok(Authenticator {
            inner: Arc::new(Inner::Checked(policy)),
        })
    }

    /// Whether authentication is switched off.
    pub fn is_disabled(&self) -> bool {
        matches!(*self.inner, Inner::Disabled)
    }

    /// The schemes a request from `source` may use.
    pub fn schemes_for(&self, source: &Source) -> Schemes {
        match &*self.inner {
            Inner::Disabled => Schemes::default(),
            Inner::Checked(checked) => checked.schemes_for(source),
        }
    }

    /// The identity behind `request`, received from `source`, or the
    /// response refusing it (boxed: a response is large, an identity small).
    pub async fn authenticate(
        &self,
        request: &Request,
        source: &Source,
    ) -> Result<Identity, Box<Response>> {
        let decision = match &*self.inner {
            Inner::Disabled => from_header_identity(request),
            Inner::Checked(checked) => checked.authenticate(request, source).await,
        };
        record_decision(request, &decision);
        decision
    }
}

impl Policy {
    fn schemes_for(&self, source: &Source) -> Schemes {
        self.rules
            .iter()
            .find(|rule| rule.matches(source))
            .map_or(self.default_schemes, |rule| rule.schemes)
    }

    async fn authenticate(
        &self,
        request: &Request,
        source: &Source,
    ) -> Result<Identity, Box<Response>> {
        let method = request.method().as_str();
        let remote = source.remote;
        if request.headers().contains(HeaderName::PAssertedIdentity) {
            if self.trusted_peers.is_trusted(remote.ip()) {
                match asserted_identity(request) {
                    Ok(Some(aor)) => {
                        tracing::debug!(%remote, %method, %aor, "identity asserted by a trusted peer");
                        return Ok(Identity {
                            aor: aor.clone(),
                            subject: aor,
                            scopes: Vec::new(),
                            client_id: None,
                            expires_at: None,
                            method: AuthMethod::TrustedPeer,
                        });
                    }
                    // Only a tel: identity: the request's own credentials decide.
                    Ok(None) => {}
                    Err(()) => {
                        tracing::info!(%remote, %method, "trusted peer sent an unparseable P-Asserted-Identity");
                        return Err(with_to_tag(
                            Response::for_request(request, 400).reason("Bad P-Asserted-Identity"),
                        ));
                    }
                }
            } else {
                // RFC 3325 §5: only a trusted peer can assert an identity.
                tracing::debug!(%remote, %method, "P-Asserted-Identity from an untrusted source ignored");
            }
        }
        let schemes = self.schemes_for(source);
        if schemes.is_deny() {
            tracing::info!(%remote, %method, "request refused: no credentials are accepted from this source");
            return Err(with_to_tag(
                Response::for_request(request, 403).reason("Not Accepted From This Network"),
            ));
        }
        match self.credentials(request, source, schemes) {
            Err(response) => Err(response),
            Ok(None) => {
                tracing::debug!(%remote, %method, "no usable credentials; challenging");
                Err(self.unauthorized(request, schemes, None, false))
            }
            Ok(Some(Credentials::Bearer(token))) => {
                self.check_bearer(request, source, schemes, &token).await
            }
            Ok(Some(Credentials::Digest(params))) => {
                self.check_digest(request, source, schemes, &params)
            }
        }
    }

    /// The first Authorization header of a scheme this source may use (for
    /// Digest, of this realm); a malformed one is answered 400.
    fn credentials(
        &self,
        request: &Request,
        source: &Source,
        schemes: Schemes,
    ) -> Result<Option<Credentials>, Box<Response>> {
        for line in request.headers().lines(&HeaderName::Authorization) {
            let parsed = match line.parse::<Authorization>() {
                Ok(parsed) => parsed,
                Err(_) => {
                    tracing::info!(remote = %source.remote, method = %request.method(), "malformed Authorization header");
                    return Err(self.malformed(
                        request,
                        schemes,
                        &AuthError::Malformed("unparseable Authorization header".to_owned()),
                    ));
                }
            };
            match parsed {
                Authorization::Bearer(token) if schemes.bearer => {
                    return Ok(Some(Credentials::Bearer(token)))
                }
                Authorization::Digest(params) if schemes.digest => {
                    let ours = self.digest.as_ref().is_some_and(|digest| {
                        params
                            .iter()
                            .any(|(n, v)| n.eq_ignore_ascii_case("realm") && v == digest.realm())
                    });
                    if ours {
                        return Ok(Some(Credentials::Digest(params)));
                    }
                }
                // Schemes not accepted from this source, and other realms,
                // are not ours to judge.
                _ => {}
            }
        }
        Ok(None)
    }

    async fn check_bearer(
        &self,
        request: &Request,
        source: &Source,
        schemes: Schemes,
        token: &str,
    ) -> Result<Identity, Box<Response>> {
        let Some(validator) = &self.bearer else {
            return Err(self.unauthorized(request, schemes, None, false));
        };
        let method = request.method().as_str();
        let checked = match validator.validate(token).await {
            Ok(identity) => validator.authorize(&identity, method).map(|()| identity),
            Err(error) => Err(error),
        };
        checked.map_err(|error| {
            tracing::info!(remote = %source.remote, %method, %error, "bearer token refused");
            match error.sip_status() {
                401 => self.unauthorized(request, schemes, Some(&error), false),
                400 => self.malformed(request, schemes, &error),
                403 => with_to_tag(Response::for_request(request, 403).header(
                    HeaderName::WwwAuthenticate,
                    bearer_challenge(validator, method, Some(&error)),
                )),
                503 => with_to_tag(
                    Response::for_request(request, 503)
                        .header(HeaderName::RetryAfter, PROVIDER_RETRY_AFTER_SECS),
                ),
                status => with_to_tag(Response::for_request(request, status)),
            }
        })
    }

    fn check_digest(
        &self,
        request: &Request,
        source: &Source,
        schemes: Schemes,
        params: &[(String, String)],
    ) -> Result<Identity, Box<Response>> {
        let Some(digest) = &self.digest else {
            return Err(self.unauthorized(request, schemes, None, false));
        };
        let method = request.method().as_str();
        let remote = source.remote;
        // RFC 2617 §3.2.2.5: the credentials are for the Request-URI, or the
        // request is a bad one.
        let digest_uri = params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("uri"))
            .map(|(_, v)| v.as_str());
        if let Some(digest_uri) = digest_uri.filter(|_| self.digest_uri_must_match) {
            if !names_request_uri(digest_uri, request) {
                tracing::info!(%remote, %method, %digest_uri, request_uri = %request.uri(), "Digest uri does not match the Request-URI");
                return Err(with_to_tag(
                    Response::for_request(request, 400)
                        .reason("Digest URI Does Not Match Request-URI"),
                ));
            }
        }
        digest.verify(method, params).map_err(|error| {
            tracing::info!(%remote, %method, %error, "Digest credentials refused");
            match error {
                AuthError::Stale => self.unauthorized(request, schemes, None, true),
                AuthError::Malformed(_) => with_to_tag(
                    Response::for_request(request, 400).reason("Malformed Digest Credentials"),
                ),
                AuthError::Missing | AuthError::InvalidCredentials(_) => {
                    self.unauthorized(request, schemes, None, false)
                }
                other => with_to_tag(Response::for_request(request, other.sip_status())),
            }
        })
    }

    /// 401 with a challenge per accepted scheme: Digest first, then Bearer
    /// carrying `bearer_error` when a token was refused.
    fn unauthorized(
        &self,
        request: &Request,
        schemes: Schemes,
        bearer_error: Option<&AuthError>,
        stale: bool,
    ) -> Box<Response> {
        let mut builder = Response::for_request(request, 401);
        if schemes.digest {
            if let Some(digest) = &self.digest {
                for challenge in digest.challenges(stale) {
                    builder = builder.header(
                        HeaderName::WwwAuthenticate,
                        Challenge::Digest {
                            realm: challenge.realm,
                            nonce: challenge.nonce,
                            opaque: Some(challenge.opaque),
                            algorithm: Some(challenge.algorithm.name().to_owned()),
                            qop: Some(challenge.qop.to_owned()),
                            stale: challenge.stale,
                        },
                    );
                }
            }
        }
        if schemes.bearer {
            if let Some(validator) = &self.bearer {
                builder = builder.header(
                    HeaderName::WwwAuthenticate,
                    bearer_challenge(validator, request.method().as_str(), bearer_error),
                );
            }
        }
        with_to_tag(builder)
    }

    /// 400 for credentials that cannot be read; with a Bearer challenge
    /// (`error="invalid_request"`, RFC 6750 §3.1) where tokens are accepted.
    fn malformed(&self, request: &Request, schemes: Schemes, error: &AuthError) -> Box<Response> {
        let mut builder =
            Response::for_request(request, 400).reason("Malformed Authorization Header");
        if let (true, Some(validator)) = (schemes.bearer, &self.bearer) {
            builder = builder.header(
                HeaderName::WwwAuthenticate,
                bearer_challenge(validator, request.method().as_str(), Some(error)),
            );
        }
        with_to_tag(builder)
    }
}

/// The RFC 6750 challenge for `method`: realm, the scope the method needs,
/// the authorization server, and the error when a token was refused.
fn bearer_challenge(
    validator: &BearerValidator,
    method: &str,
    error: Option<&AuthError>,
) -> Challenge {
    let c = validator.challenge_for_method(method, error);
    Challenge::Bearer {
        realm: c.realm,
        scope: c.scope,
        authz_server: c.authz_server,
        error: c.error.map(str::to_owned),
        error_description: c.error_description,
    }
}

/// RFC 3261 §8.2.6.2: a final response carries a To tag.
fn with_to_tag(builder: sip::ResponseBuilder) -> Box<Response> {
    Box::new(
        builder
            .to_tag(&hex::encode(rand::random::<[u8; 8]>()))
            .build(),
    )
}

/// Whether a Digest `uri` names the request's Request-URI.
fn names_request_uri(digest_uri: &str, request: &Request) -> bool {
    let request_uri = request.uri().as_str();
    digest_uri == request_uri
        || sip::Uri::parse(digest_uri).is_ok_and(|uri| uri.as_str() == request_uri)
}

/// The first SIP or SIPS identity of P-Asserted-Identity (RFC 3325 §9.1
/// allows one of each of sip/sips and tel); `Err` when unparseable.
fn asserted_identity(request: &Request) -> Result<Option<String>, ()> {
    let identities = request.headers().p_asserted_identity().map_err(|_| ())?;
    Ok(identities
        .iter()
        .find(|id| matches!(id.uri.scheme(), Scheme::Sip | Scheme::Sips) && id.uri.user().is_some())
        .map(|id| id.uri.aor()))
}

/// With authentication disabled: whoever From names.
fn from_header_identity(request: &Request) -> Result<Identity, Box<Response>> {
    let aor = request
        .headers()
        .from()
        .map(|from| from.uri.aor())
        .map_err(|_| with_to_tag(Response::for_request(request, 400).reason("Bad From")))?;
    Ok(Identity {
        aor: aor.clone(),
        subject: aor,
        scopes: Vec::new(),
        client_id: None,
        expires_at: None,
        method: AuthMethod::None,
    })
}

/// Digest credentials from an HA1 file (format of [`Ha1File`]), re-read when
/// the file changes so users can be added or removed without a restart. A
/// file that no longer parses is reported and the previous credentials kept.
pub struct Ha1Credentials {
    path: PathBuf,
    current: RwLock<Loaded>,
}

struct Loaded {
    file: Ha1File,
    /// Modification time and length when read.
    fingerprint: Option<(SystemTime, u64)>,
}

fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let metadata = std::fs::metadata(path).ok()?;
    Some((metadata.modified().ok()?, metadata.len()))
}

impl Ha1Credentials {
    /// Reads the file; fails if it cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Arc<Ha1Credentials>, AuthError> {
        let fingerprint = fingerprint(path);
        let file = Ha1File::load(path)?;
        Ok(Arc::new(Ha1Credentials {
            path: path.to_path_buf(),
            current: RwLock::new(Loaded { file, fingerprint }),
        }))
    }

    /// Number of users in the credentials currently in force.
    pub fn users(&self) -> usize {
        self.current
            .read()
            .map(|loaded| loaded.file.len())
            .unwrap_or_else(|poisoned| poisoned.into_inner().file.len())
    }

    /// Re-reads the file if its modification time or length changed;
    /// returns whether new credentials are in force.
    pub fn reload_if_changed(&self) -> bool {
        let now = fingerprint(&self.path);
        let unchanged = {
            let loaded = self.current.read().unwrap_or_else(|p| p.into_inner());
            loaded.fingerprint == now
        };
        if unchanged {
            return false;
        }
        match Ha1File::load(&self.path) {
            Ok(file) => {
                let users = file.len();
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Loaded {
                    file,
                    fingerprint: now,
                };
                tracing::info!(path = %self.path.display(), users, "Digest credentials reloaded");
                true
            }
            Err(error) => {
                // Remember the broken version so it is reported once, not
                // every interval; the previous credentials stay in force.
                self.current
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .fingerprint = now;
                tracing::error!(path = %self.path.display(), %error, "Digest credentials file changed but cannot be used; keeping the previous credentials");
                false
            }
        }
    }

    /// Checks the file every `interval` until the credentials are dropped.
    pub fn watch(self: &Arc<Self>, interval: Duration) {
        let weak: Weak<Ha1Credentials> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(credentials) = weak.upgrade() else {
                    break;
                };
                credentials.reload_if_changed();
            }
        });
    }
}

impl CredentialSource for Ha1Credentials {
    fn ha1(&self, user: &str, realm: &str, alg: DigestAlgorithm) -> Option<String> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .file
            .ha1(user, realm, alg)
    }
}

/// Counts an authentication decision (`sip_auth`): the scheme that
/// succeeded, or the one presented when refused (`none` without
/// credentials), and the outcome.
fn record_decision(request: &Request, decision: &Result<Identity, Box<Response>>) {
    let (scheme, outcome) = match decision {
        Ok(identity) => (
            match identity.method {
                AuthMethod::Bearer => "bearer",
                AuthMethod::Digest => "digest",
                AuthMethod::TrustedPeer => "trusted-peer",
                AuthMethod::None => "none",
            },
            "accepted",
        ),
        Err(response) => {
            let presented = request
                .headers()
                .lines(&HeaderName::Authorization)
                .next()
                .map(|line| line.trim_start().as_bytes());
            let scheme = match presented {
                None => "none",
                Some(line) if line.len() >= 6 && line[..6].eq_ignore_ascii_case(b"bearer") => {
                    "bearer"
                }
                Some(line) if line.len() >= 6 && line[..6].eq_ignore_ascii_case(b"digest") => {
                    "digest"
                }
                Some(_) => "other",
            };
            let outcome = match response.status() {
                401 | 407 if scheme == "none" => "challenged",
                401 | 407 | 403 => "refused",
                400 => "malformed",
                503 => "unavailable",
                _ => "other",
            };
            (scheme, outcome)
        }
    };
    crate::metrics::metrics()
        .auth
        .get_or_create(&crate::metrics::AuthLabels { scheme, outcome })
        .inc();
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;

    fn source(protocol: Protocol, address: &str) -> Source {
        let remote: SocketAddr = match address.parse() {
            Ok(remote) => remote,
            Err(e) => panic!("test address {address}: {e}"),
        };
        Source { protocol, remote }
    }

    fn rule(text: &str) -> ModeRule {
        match text.parse() {
            Ok(rule) => rule,
            Err(e) => panic!("rule {text}: {e}"),
        }
    }

    fn policy_schemes(rules: &[&str], default: Schemes) -> Policy {
        let mut rules: Vec<ModeRule> = rules.iter().map(|r| rule(r)).collect();
        rules.sort_by_key(|r| Reverse(r.specificity()));
        Policy {
            default_schemes: default,
            rules,
            ..Policy::default()
        }
    }

    const DIGEST: Schemes = Schemes {
        bearer: false,
        digest: true,
    };
    const BOTH: Schemes = Schemes {
        bearer: true,
        digest: true,
    };

    #[test]
    fn mode_lists_parse() {
        assert_eq!(Schemes::parse_list(["bearer"]).ok(), Some(Schemes::BEARER));
        assert_eq!(Schemes::parse_list(["Digest", "bearer"]).ok(), Some(BOTH));
        assert_eq!(Schemes::parse_list(["deny"]).ok(), Some(Schemes::default()));
        assert!(matches!(
            Schemes::parse_list(["deny", "digest"]),
            Err(AuthConfigError::DenyCombined)
        ));
        assert!(matches!(
            Schemes::parse_list(["basic"]),
            Err(AuthConfigError::UnknownMode(_))
        ));
        assert!(matches!(
            Schemes::parse_list([""]),
            Err(AuthConfigError::NoMode)
        ));
        assert_eq!(BOTH.to_string(), "bearer,digest");
    }

    #[test]
    fn rules_parse_and_refuse_nonsense() {
        assert_eq!(rule("10.0.0.0/8=digest").schemes, DIGEST);
        assert_eq!(rule("udp=bearer+digest").schemes, BOTH);
        assert_eq!(rule("tcp@192.0.2.0/24=deny").schemes, Schemes::default());
        assert_eq!(rule("2001:db8::/32=digest,bearer").schemes, BOTH);
        for bad in [
            "10.0.0.0/8",
            "10.0.0.0/33=digest",
            "sctp=digest",
            "sctp@10.0.0.0/8=digest",
            "example.com=digest",
            "10.0.0.0/8=password",
            "10.0.0.0/8=",
        ] {
            assert!(bad.parse::<ModeRule>().is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn most_specific_rule_wins() {
        let checked = policy_schemes(
            &[
                "udp=digest",
                "10.0.0.0/8=bearer",
                "10.1.0.0/16=deny",
                "udp@10.0.0.0/8=bearer,digest",
                "::1=digest",
            ],
            Schemes::default(),
        );
        let cases = [
            (Protocol::Tcp, "192.0.2.1:5060", Schemes::default()),
            (Protocol::Udp, "192.0.2.1:5060", DIGEST),
            (Protocol::Tcp, "10.2.3.4:5060", Schemes::BEARER),
            (Protocol::Udp, "10.2.3.4:5060", BOTH),
            (Protocol::Udp, "10.1.3.4:5060", Schemes::default()),
            (Protocol::Tcp, "[::1]:5060", DIGEST),
            (Protocol::Tcp, "[::ffff:10.2.3.4]:5060", Schemes::BEARER),
        ];
        for (protocol, address, expected) in cases {
            assert_eq!(
                checked.schemes_for(&source(protocol, address)),
                expected,
                "{protocol} from {address}"
            );
        }
    }

    #[test]
    fn policies_without_the_means_are_refused() {
        let digest_rule = Policy {
            rules: vec![rule("10.0.0.0/8=digest")],
            ..Policy::default()
        };
        assert!(matches!(
            Authenticator::new(digest_rule),
            Err(AuthConfigError::NoDigestCredentials)
        ));
        let bearer_default = Policy {
            default_schemes: Schemes::BEARER,
            ..Policy::default()
        };
        assert!(matches!(
            Authenticator::new(bearer_default),
            Err(AuthConfigError::NoBearerValidator)
        ));
    }

    #[test]
    fn ha1_file_changes_are_picked_up_and_broken_files_ignored(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let path = std::env::temp_dir().join(format!(
            "edge-ha1-{}-{}",
            std::process::id(),
            hex::encode(rand::random::<[u8; 6]>())
        ));
        std::fs::write(&path, "alice:secret\n")?;
        let credentials = Ha1Credentials::load(&path)?;
        assert_eq!(credentials.users(), 1);
        assert!(credentials
            .ha1("bob", "example.com", DigestAlgorithm::Md5)
            .is_none());
        assert!(!credentials.reload_if_changed());

        std::fs::write(&path, "alice:secret\nbob:other-secret\n")?;
        assert!(credentials.reload_if_changed());
        assert_eq!(
            credentials.ha1("bob", "example.com", DigestAlgorithm::Md5),
            Some(auth::digest::ha1(
                DigestAlgorithm::Md5,
                "bob",
                "example.com",
                "other-secret"
            ))
        );

        std::fs::write(&path, "this line is not a credential at all\n")?;
        assert!(!credentials.reload_if_changed());
        assert_eq!(credentials.users(), 2);
        std::fs::remove_file(&path)?;
        Ok(())
    }
}
