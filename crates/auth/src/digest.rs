//! HTTP Digest authentication for SIP (RFC 3261 §22.4 with RFC 2617, RFC 7616 and RFC 8760): MD5, SHA-256
//! and SHA-512-256 with `qop=auth`.
//!
//! Nonces are stateless: `base64url(issued_at_secs ‖ 8 random bytes ‖ HMAC-SHA256(secret, realm ‖ …)[..16])`,
//! so any node sharing the secret accepts a nonce issued by another. Replay protection tracks the highest
//! nonce count seen per nonce in bounded memory on each node; a client replaying a captured request to a
//! different node is not detected. `qop=auth` is required: without it (RFC 2069) replays within the nonce
//! lifetime could not be detected at all.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use md5::Md5;
use rand::RngCore as _;
use sha2::{Digest, Sha256, Sha512_256};

use crate::bearer::{now_ms, push_quoted};
use crate::error::AuthError;
use crate::identity::{canonical_aor, AuthMethod, Identity};

/// Default bound on the number of nonces whose counts are tracked for replay protection.
pub const DEFAULT_REPLAY_CAPACITY: usize = 65_536;
/// Nonces dated further in the future than this are refused (clock skew between nodes).
const MAX_FUTURE_SKEW_SECS: u64 = 60;
const NONCE_PAYLOAD: usize = 16;
const NONCE_TAG: usize = 16;

/// A Digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DigestAlgorithm {
    /// `MD5` (RFC 2617); needed by most deployed SIP phones.
    Md5,
    /// `SHA-256` (RFC 7616, RFC 8760).
    Sha256,
    /// `SHA-512-256` (RFC 7616, RFC 8760).
    Sha512_256,
}

impl DigestAlgorithm {
    /// The token used in the `algorithm` parameter.
    pub fn name(self) -> &'static str {
        match self {
            DigestAlgorithm::Md5 => "MD5",
            DigestAlgorithm::Sha256 => "SHA-256",
            DigestAlgorithm::Sha512_256 => "SHA-512-256",
        }
    }

    /// Parses an `algorithm` parameter value (case-insensitive). The `-sess` variants are not supported.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            DigestAlgorithm::Md5,
            DigestAlgorithm::Sha256,
            DigestAlgorithm::Sha512_256,
        ]
        .into_iter()
        .find(|alg| alg.name().eq_ignore_ascii_case(name))
    }

    /// Length of a hash in lower-case hex.
    pub fn hex_len(self) -> usize {
        match self {
            DigestAlgorithm::Md5 => 32,
            DigestAlgorithm::Sha256 | DigestAlgorithm::Sha512_256 => 64,
        }
    }

    /// `H(data)` in lower-case hex.
    pub fn hash_hex(self, data: &[u8]) -> String {
        match self {
            DigestAlgorithm::Md5 => hex::encode(Md5::digest(data)),
            DigestAlgorithm::Sha256 => hex::encode(Sha256::digest(data)),
            DigestAlgorithm::Sha512_256 => hex::encode(Sha512_256::digest(data)),
        }
    }
}

/// `HA1 = H(username ":" realm ":" password)`.
pub fn ha1(alg: DigestAlgorithm, username: &str, realm: &str, password: &str) -> String {
    alg.hash_hex(format!("{username}:{realm}:{password}").as_bytes())
}

/// The `response` for `qop=auth`: `H(HA1 ":" nonce ":" nc ":" cnonce ":" qop ":" H(method ":" uri))`.
#[allow(clippy::too_many_arguments)]
pub fn response(
    alg: DigestAlgorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    qop: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = alg.hash_hex(format!("{method}:{uri}").as_bytes());
    alg.hash_hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:{qop}:{ha2}").as_bytes())
}

/// Configuration of a [`DigestAuthenticator`]. Its `Debug` output redacts the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestConfig {
    /// The protection realm; also the domain of identities whose user name has no `@`.
    pub realm: String,
    /// Algorithms offered, one challenge each, in order of preference (RFC 8760 §2.4: strongest first).
    pub algorithms: Vec<DigestAlgorithm>,
    /// Nonce lifetime; older nonces get a `stale=true` challenge.
    pub nonce_ttl_secs: u64,
    /// Key of the nonce MAC; every node of a cluster must share it.
    pub secret: Vec<u8>,
}

impl std::fmt::Debug for DigestConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestConfig")
            .field("realm", &self.realm)
            .field("algorithms", &self.algorithms)
            .field("nonce_ttl_secs", &self.nonce_ttl_secs)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Where HA1 values come from.
pub trait CredentialSource: Send + Sync {
    /// HA1 of `user` in `realm` for `alg`, in lower-case hex, or `None` for an unknown user.
    fn ha1(&self, user: &str, realm: &str, alg: DigestAlgorithm) -> Option<String>;
}

/// Credentials loaded from a text file.
///
/// One entry per line; blank lines and lines starting with `#` are ignored:
/// * `user:realm:ha1hex:ALGORITHM`: a precomputed HA1 for one algorithm (`MD5`, `SHA-256`, `SHA-512-256`);
/// * `user:realm:ha1hex`: the algorithm is inferred from the length, 32 hex digits for MD5 and 64 for
///   SHA-256 (write the algorithm explicitly for SHA-512-256);
/// * `user:password`: a clear-text password (development only), valid in every realm and for every algorithm.
///
/// User names, realms and passwords cannot contain `:` in this format. `Debug` shows counts only.
#[derive(Clone, Default)]
pub struct Ha1File {
    hashed: HashMap<String, Vec<(String, DigestAlgorithm, String)>>,
    passwords: HashMap<String, String>,
}

impl Ha1File {
    /// Reads and parses a credentials file.
    pub fn load(path: &Path) -> Result<Self, AuthError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            AuthError::Config(format!(
                "cannot read credentials file {}: {e}",
                path.display()
            ))
        })?;
        Self::parse(&text)
    }

    /// Parses credentials in the file format described on the type.
    pub fn parse(text: &str) -> Result<Self, AuthError> {
        let mut file = Ha1File::default();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad =
                |why: &str| AuthError::Config(format!("credentials line {}: {why}", index + 1));
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [user, password] if !user.is_empty() => {
                    file.passwords
                        .insert((*user).to_owned(), (*password).to_owned());
                }
                [user, realm, hash] | [user, realm, hash, _] if !user.is_empty() => {
                    let alg = match fields.get(3) {
                        Some(name) => DigestAlgorithm::from_name(name)
                            .ok_or_else(|| bad("unknown algorithm"))?,
                        None if hash.len() == 32 => DigestAlgorithm::Md5,
                        None if hash.len() == 64 => DigestAlgorithm::Sha256,
                        None => return Err(bad("HA1 must be 32 or 64 hex digits")),
                    };
                    if hash.len() != alg.hex_len() || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(bad("HA1 has the wrong length or is not hex"));
                    }
                    file.hashed.entry((*user).to_owned()).or_default().push((
                        (*realm).to_owned(),
                        alg,
                        hash.to_ascii_lowercase(),
                    ));
                }
                _ => return Err(bad("expected user:realm:ha1[:algorithm] or user:password")),
            }
        }
        Ok(file)
    }

    /// Number of users with at least one credential.
    pub fn len(&self) -> usize {
        self.hashed.len()
            + self
                .passwords
                .keys()
                .filter(|u| !self.hashed.contains_key(*u))
                .count()
    }

    /// Whether the file holds no credential.
    pub fn is_empty(&self) -> bool {
        self.hashed.is_empty() && self.passwords.is_empty()
    }
}

impl std::fmt::Debug for Ha1File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ha1File")
            .field("hashed_users", &self.hashed.len())
            .field("password_users", &self.passwords.len())
            .finish()
    }
}

/// The other spelling of the same user in `realm`: `alice` for
/// `alice@<realm>` and `alice@<realm>` for `alice` (the realm is the domain
/// of user names without `@`, see [`DigestConfig::realm`]); `None` for a
/// user of another domain.
fn other_form(user: &str, realm: &str) -> Option<String> {
    match user.rsplit_once('@') {
        Some((name, domain)) if !name.is_empty() && domain.eq_ignore_ascii_case(realm) => {
            Some(name.to_owned())
        }
        Some(_) => None,
        None => Some(format!("{user}@{realm}")),
    }
}

impl CredentialSource for Ha1File {
    /// The HA1 of `user` as the client spelled it. A phone may be set up
    /// with the short user name (`alice`) or the full one
    /// (`alice@example.com`), and both name the same identity; the client
    /// hashes the name it sends, so:
    /// * a precomputed HA1 is found only under the spelling it was computed
    ///   for (give one line per spelling the phones use);
    /// * a clear-text password listed under either spelling serves both,
    ///   hashed with the name the client sent.
    fn ha1(&self, user: &str, realm: &str, alg: DigestAlgorithm) -> Option<String> {
        if let Some(found) = self.hashed.get(user).and_then(|entries| {
            entries
                .iter()
                .find(|(r, a, _)| r == realm && *a == alg)
                .map(|(_, _, h)| h.clone())
        }) {
            return Some(found);
        }
        let password = self
            .passwords
            .get(user)
            .or_else(|| other_form(user, realm).and_then(|other| self.passwords.get(&other)))?;
        Some(ha1(alg, user, realm, password))
    }
}

/// A Digest challenge (`WWW-Authenticate: Digest ...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestChallenge {
    /// The protection realm.
    pub realm: String,
    /// A fresh stateless nonce.
    pub nonce: String,
    /// Opaque value the client must return unchanged.
    pub opaque: String,
    /// The hash algorithm of this challenge.
    pub algorithm: DigestAlgorithm,
    /// Always `auth`.
    pub qop: &'static str,
    /// True when the previous credentials were right but their nonce had expired.
    pub stale: bool,
}

impl DigestChallenge {
    /// The challenge as a header value:
    /// `Digest realm="r", nonce="n", opaque="o", algorithm=SHA-256, qop="auth"[, stale=true]`.
    pub fn header_value(&self) -> String {
        let mut out = String::with_capacity(128);
        out.push_str("Digest realm=");
        push_quoted(&mut out, &self.realm);
        out.push_str(", nonce=");
        push_quoted(&mut out, &self.nonce);
        out.push_str(", opaque=");
        push_quoted(&mut out, &self.opaque);
        out.push_str(", algorithm=");
        out.push_str(self.algorithm.name());
        out.push_str(", qop=");
        push_quoted(&mut out, self.qop);
        if self.stale {
            out.push_str(", stale=true");
        }
        out
    }
}

/// Highest nonce count seen for a nonce, and when the nonce was issued.
struct Seen {
    highest_nc: u32,
    issued_secs: u64,
}

/// Issues Digest challenges and verifies Digest credentials.
pub struct DigestAuthenticator {
    config: DigestConfig,
    credentials: Arc<dyn CredentialSource>,
    opaque: String,
    replay_capacity: usize,
    seen: Mutex<HashMap<[u8; NONCE_TAG], Seen>>,
}

impl std::fmt::Debug for DigestAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestAuthenticator")
            .field("realm", &self.config.realm)
            .field("algorithms", &self.config.algorithms)
            .finish_non_exhaustive()
    }
}

type HmacSha256 = Hmac<Sha256>;

impl DigestAuthenticator {
    /// An authenticator for `config.realm` with credentials from `credentials`. An empty algorithm list
    /// means SHA-256 then MD5.
    pub fn new(mut config: DigestConfig, credentials: Arc<dyn CredentialSource>) -> Self {
        if config.algorithms.is_empty() {
            config.algorithms = vec![DigestAlgorithm::Sha256, DigestAlgorithm::Md5];
        }
        let opaque = hex::encode(&mac(&config.secret, &[b"opaque", config.realm.as_bytes()])[..8]);
        DigestAuthenticator {
            config,
            credentials,
            opaque,
            replay_capacity: DEFAULT_REPLAY_CAPACITY,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// Bounds the number of nonces tracked for replay protection (default [`DEFAULT_REPLAY_CAPACITY`]).
    /// When full, expired nonces are dropped first, then the oldest.
    pub fn with_replay_capacity(mut self, capacity: usize) -> Self {
        self.replay_capacity = capacity.max(1);
        self
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.config.realm
    }

    /// One challenge per configured algorithm, all sharing one fresh nonce.
    pub fn challenges(&self, stale: bool) -> Vec<DigestChallenge> {
        let nonce = self.issue_nonce(now_ms() / 1000);
        self.config
            .algorithms
            .iter()
            .map(|&algorithm| DigestChallenge {
                realm: self.config.realm.clone(),
                nonce: nonce.clone(),
                opaque: self.opaque.clone(),
                algorithm,
                qop: "auth",
                stale,
            })
            .collect()
    }

    fn issue_nonce(&self, now_secs: u64) -> String {
        let mut raw = [0u8; NONCE_PAYLOAD + NONCE_TAG];
        raw[..8].copy_from_slice(&now_secs.to_be_bytes());
        rand::rng().fill_bytes(&mut raw[8..NONCE_PAYLOAD]);
        let tag = self.nonce_tag(&raw[..NONCE_PAYLOAD]);
        raw[NONCE_PAYLOAD..].copy_from_slice(&tag);
        URL_SAFE_NO_PAD.encode(raw)
    }

    fn nonce_tag(&self, payload: &[u8]) -> [u8; NONCE_TAG] {
        let full = mac(
            &self.config.secret,
            &[b"nonce", self.config.realm.as_bytes(), payload],
        );
        let mut tag = [0u8; NONCE_TAG];
        tag.copy_from_slice(&full[..NONCE_TAG]);
        tag
    }

    /// Checks a nonce's MAC; returns its issue time and tag.
    fn open_nonce(&self, nonce: &str) -> Option<(u64, [u8; NONCE_TAG])> {
        let raw = URL_SAFE_NO_PAD.decode(nonce).ok()?;
        if raw.len() != NONCE_PAYLOAD + NONCE_TAG {
            return None;
        }
        let expected = self.nonce_tag(&raw[..NONCE_PAYLOAD]);
        if !constant_time_eq(&expected, &raw[NONCE_PAYLOAD..]) {
            return None;
        }
        let mut issued = [0u8; 8];
        issued.copy_from_slice(&raw[..8]);
        Some((u64::from_be_bytes(issued), expected))
    }

    /// Verifies Digest credentials of a request with SIP `method`. `params` are the parameters of the
    /// `Authorization: Digest` header with quotes removed; names are matched case-insensitively.
    ///
    /// Order of checks: syntax, realm, algorithm, qop, nonce authenticity, opaque, user and response; only
    /// then nonce age ([`AuthError::Stale`], so a stale challenge goes only to clients that know the
    /// password) and nonce-count replay. The `uri` parameter is covered by the response but not compared with
    /// the Request-URI here: the caller, which has the SIP message, should do that (RFC 3261 §22.4).
    pub fn verify(&self, method: &str, params: &[(String, String)]) -> Result<Identity, AuthError> {
        let param = |name: &str| {
            params
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        let required = |name: &'static str| {
            param(name)
                .filter(|v| !v.is_empty())
                .ok_or_else(|| AuthError::Malformed(format!("Digest parameter {name} missing")))
        };
        let username = required("username")?;
        let realm = required("realm")?;
        let nonce = required("nonce")?;
        let uri = required("uri")?;
        let client_response = required("response")?;
        if realm != self.config.realm {
            return Err(AuthError::InvalidCredentials(
                "credentials are for another realm".to_owned(),
            ));
        }
        let alg = match param("algorithm") {
            None => DigestAlgorithm::Md5,
            Some(name) => DigestAlgorithm::from_name(name).ok_or_else(|| {
                AuthError::InvalidCredentials("unsupported Digest algorithm".to_owned())
            })?,
        };
        if !self.config.algorithms.contains(&alg) {
            return Err(AuthError::InvalidCredentials(
                "Digest algorithm not offered".to_owned(),
            ));
        }
        let qop = required("qop")?;
        if !qop.eq_ignore_ascii_case("auth") {
            return Err(AuthError::Malformed(
                "only qop=auth is supported".to_owned(),
            ));
        }
        let nc_text = required("nc")?;
        let cnonce = required("cnonce")?;
        let nc = (nc_text.len() == 8)
            .then(|| u32::from_str_radix(nc_text, 16).ok())
            .flatten()
            .ok_or_else(|| AuthError::Malformed("nc must be 8 hex digits".to_owned()))?;
        let (issued_secs, tag) = self.open_nonce(nonce).ok_or_else(|| {
            AuthError::InvalidCredentials("the nonce was not issued by this realm".to_owned())
        })?;
        if param("opaque").is_some_and(|opaque| opaque != self.opaque) {
            return Err(AuthError::InvalidCredentials("opaque mismatch".to_owned()));
        }
        let Some(ha1) = self.credentials.ha1(username, realm, alg) else {
            return Err(AuthError::InvalidCredentials("unknown user".to_owned()));
        };
        let expected = response(alg, &ha1, nonce, nc_text, cnonce, qop, method, uri);
        if !constant_time_eq(
            expected.as_bytes(),
            client_response.to_ascii_lowercase().as_bytes(),
        ) {
            return Err(AuthError::InvalidCredentials(
                "wrong Digest response".to_owned(),
            ));
        }
        let now_secs = now_ms() / 1000;
        if issued_secs > now_secs.saturating_add(MAX_FUTURE_SKEW_SECS) {
            return Err(AuthError::InvalidCredentials(
                "the nonce is dated in the future".to_owned(),
            ));
        }
        if now_secs.saturating_sub(issued_secs) > self.config.nonce_ttl_secs {
            return Err(AuthError::Stale);
        }
        self.record_nonce_count(tag, issued_secs, nc, now_secs)?;
        let aor = if username.contains('@') {
            canonical_aor(username, None)
        } else {
            canonical_aor(username, Some(realm))
        }
        .map_err(|_| {
            AuthError::InvalidCredentials("the user name is not a valid SIP user".to_owned())
        })?;
        Ok(Identity {
            aor,
            subject: username.to_owned(),
            scopes: Vec::new(),
            client_id: None,
            expires_at: None,
            method: AuthMethod::Digest,
        })
    }

    /// Accepts `nc` only if it is higher than every count seen with this nonce.
    fn record_nonce_count(
        &self,
        tag: [u8; NONCE_TAG],
        issued_secs: u64,
        nc: u32,
        now_secs: u64,
    ) -> Result<(), AuthError> {
        let mut seen = locks::lock(&self.seen);
        if let Some(entry) = seen.get_mut(&tag) {
            if nc <= entry.highest_nc {
                return Err(AuthError::InvalidCredentials(
                    "nonce count replayed".to_owned(),
                ));
            }
            entry.highest_nc = nc;
            return Ok(());
        }
        if seen.len() >= self.replay_capacity {
            let ttl = self.config.nonce_ttl_secs;
            seen.retain(|_, s| now_secs.saturating_sub(s.issued_secs) <= ttl);
            if seen.len() >= self.replay_capacity {
                if let Some(oldest) = seen
                    .iter()
                    .min_by_key(|(_, s)| s.issued_secs)
                    .map(|(tag, _)| *tag)
                {
                    seen.remove(&oldest);
                }
            }
        }
        seen.insert(
            tag,
            Seen {
                highest_nc: nc,
                issued_secs,
            },
        );
        Ok(())
    }
}

fn mac(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length, so this cannot fail; fall back to an empty key defensively.
    let mut mac = HmacSha256::new_from_slice(secret)
        .unwrap_or_else(|_| <HmacSha256 as KeyInit>::new(&Default::default()));
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Compares without an early exit, so timing does not reveal how much of a secret matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
