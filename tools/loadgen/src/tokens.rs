//! Bearer tokens for load runs: one signed JWT per user, and the JWKS a
//! server loads to trust them (`--auth-jwks-file`).
//!
//! Without a key file the `auth` crate's development issuer signs (a fresh
//! Ed25519 key per run). With one, the key is read from the file — or
//! generated and written there the first time — so repeated runs mint tokens
//! a server started once keeps accepting. Both sign the same claims:
//! `sub` (the user's AOR), `scope`, `iss`, `aud`, `iat`, `nbf`, `exp`, `jti`
//! and `client_id`, with `kid` the RFC 7638 thumbprint of the key.

use std::path::Path;

use auth::dev::DevIssuer;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rand::RngCore as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

/// Errors minting tokens or handling the key file.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The development issuer refused its configuration or could not sign.
    #[error("development issuer: {0}")]
    Issuer(#[from] auth::AuthError),
    /// The key file could not be read or written.
    #[error("key file {path}: {source}")]
    KeyFile {
        /// The file.
        path: String,
        /// The reason.
        source: std::io::Error,
    },
    /// The key file is not an Ed25519 private key in PKCS#8 PEM.
    #[error("key file {0}: not an Ed25519 PKCS#8 PEM private key")]
    BadKey(String),
    /// Signing failed.
    #[error("signing a token: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    /// Issuer or audience is empty.
    #[error("tokens need a non-empty issuer and audience")]
    Config,
}

/// PKCS#8 v1 prefix of an Ed25519 private key (RFC 8410 §7); the 32-byte seed follows.
const ED25519_PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

const PEM_BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
const PEM_END: &str = "-----END PRIVATE KEY-----";

/// Signs tokens for one issuer and audience.
pub enum Signer {
    /// The `auth` crate's development issuer (a key that lives as long as the process).
    Dev(DevIssuer),
    /// A key read from (or first written to) a file.
    Key(KeySigner),
}

/// An Ed25519 key of our own, with the identity of the tokens it signs.
pub struct KeySigner {
    issuer: String,
    audience: String,
    kid: String,
    public_x: String,
    encoding_key: EncodingKey,
}

impl Signer {
    /// The development issuer with a fresh key.
    pub fn generate(issuer: &str, audience: &str) -> Result<Signer, TokenError> {
        Ok(Signer::Dev(DevIssuer::generate(issuer, audience)?))
    }

    /// Signs with the Ed25519 key in `path` (PKCS#8 PEM), creating the file with a new
    /// key (readable by its owner only) when it does not exist.
    pub fn from_key_file(path: &Path, issuer: &str, audience: &str) -> Result<Signer, TokenError> {
        if issuer.is_empty() || audience.is_empty() {
            return Err(TokenError::Config);
        }
        let name = path.display().to_string();
        let io = |source| TokenError::KeyFile {
            path: name.clone(),
            source,
        };
        let seed = if path.exists() {
            let pem = std::fs::read_to_string(path).map_err(io)?;
            seed_from_pem(&pem).ok_or_else(|| TokenError::BadKey(name.clone()))?
        } else {
            let mut seed = [0u8; 32];
            rand::rng().fill_bytes(&mut seed);
            write_private(path, &pem_from_seed(&seed)).map_err(io)?;
            seed
        };
        Ok(Signer::Key(KeySigner::from_seed(&seed, issuer, audience)))
    }

    /// The `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        match self {
            Signer::Dev(dev) => dev.issuer(),
            Signer::Key(key) => &key.issuer,
        }
    }

    /// The `aud` of minted tokens.
    pub fn audience(&self) -> &str {
        match self {
            Signer::Dev(dev) => dev.audience(),
            Signer::Key(key) => &key.audience,
        }
    }

    /// The public key as a JWKS document.
    pub fn jwks_json(&self) -> String {
        match self {
            Signer::Dev(dev) => dev.jwks_json(),
            Signer::Key(key) => jwks(&key.public_x, &key.kid),
        }
    }

    /// A token for `subject` with `scopes`, valid for `ttl_secs` from now.
    pub fn mint(
        &self,
        subject: &str,
        scopes: &[&str],
        ttl_secs: u64,
    ) -> Result<String, TokenError> {
        match self {
            Signer::Dev(dev) => Ok(dev.mint(subject, scopes, ttl_secs)?),
            Signer::Key(key) => key.mint(subject, scopes, ttl_secs),
        }
    }
}

impl KeySigner {
    fn from_seed(seed: &[u8; 32], issuer: &str, audience: &str) -> KeySigner {
        let signing_key = SigningKey::from_bytes(seed);
        let public_x = URL_SAFE_NO_PAD.encode(signing_key.verifying_key().to_bytes());
        // RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
        let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{public_x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));
        KeySigner {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            kid,
            public_x,
            encoding_key: EncodingKey::from_ed_der(&pkcs8(seed)),
        }
    }

    fn mint(&self, subject: &str, scopes: &[&str], ttl_secs: u64) -> Result<String, TokenError> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let mut jti = [0u8; 16];
        rand::rng().fill_bytes(&mut jti);
        let mut claims = Map::new();
        for (name, value) in [
            ("sub", Value::from(subject)),
            ("scope", Value::from(scopes.join(" "))),
            ("iss", Value::from(self.issuer.as_str())),
            ("aud", Value::from(self.audience.as_str())),
            ("iat", Value::from(now)),
            ("nbf", Value::from(now)),
            ("exp", Value::from(now.saturating_add(ttl_secs))),
            ("jti", Value::from(URL_SAFE_NO_PAD.encode(jti))),
            ("client_id", Value::from("loadgen")),
        ] {
            claims.insert(name.to_owned(), value);
        }
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        header.typ = Some("at+jwt".to_owned());
        Ok(jsonwebtoken::encode(&header, &claims, &self.encoding_key)?)
    }
}

fn jwks(public_x: &str, kid: &str) -> String {
    json!({
        "keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": public_x,
            "kid": kid,
            "alg": "EdDSA",
            "use": "sig",
        }]
    })
    .to_string()
}

fn pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    let mut der = Vec::with_capacity(48);
    der.extend_from_slice(&ED25519_PKCS8_PREFIX);
    der.extend_from_slice(seed);
    der
}

fn pem_from_seed(seed: &[u8; 32]) -> String {
    format!("{PEM_BEGIN}\n{}\n{PEM_END}\n", STANDARD.encode(pkcs8(seed)))
}

/// The seed of an Ed25519 PKCS#8 PEM key (as `openssl genpkey -algorithm ed25519` writes).
fn seed_from_pem(pem: &str) -> Option<[u8; 32]> {
    let start = pem.find(PEM_BEGIN)? + PEM_BEGIN.len();
    let end = pem[start..].find(PEM_END)? + start;
    let body: String = pem[start..end].split_whitespace().collect();
    let der = STANDARD.decode(body).ok()?;
    let seed = der.strip_prefix(&ED25519_PKCS8_PREFIX)?;
    seed.try_into().ok()
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())
}

/// The server flags that make `presence-node` or `edge` trust tokens of `signer` with the
/// JWKS written at `jwks_path`.
pub fn server_flags(jwks_path: &Path, signer: &Signer) -> Vec<String> {
    vec![
        "--auth-jwks-file".to_owned(),
        jwks_path.display().to_string(),
        "--auth-issuer".to_owned(),
        signer.issuer().to_owned(),
        "--auth-audience".to_owned(),
        signer.audience().to_owned(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(token: &str) -> Value {
        let payload = token.split('.').nth(1).expect("a JWT has a payload");
        let bytes = URL_SAFE_NO_PAD.decode(payload).expect("base64url");
        serde_json::from_slice(&bytes).expect("JSON claims")
    }

    #[test]
    fn a_key_file_is_created_once_and_reused() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("key.pem");
        let first = Signer::from_key_file(&path, "loadgen", "presence").expect("created");
        let second = Signer::from_key_file(&path, "loadgen", "presence").expect("reused");
        assert_eq!(first.jwks_json(), second.jwks_json());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path)
                .expect("exists")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn both_signers_mint_the_same_claims() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let key = Signer::from_key_file(&dir.path().join("k.pem"), "iss", "aud").expect("key");
        let dev = Signer::generate("iss", "aud").expect("dev issuer");
        for signer in [key, dev] {
            let token = signer
                .mint(
                    "user0001@example.com",
                    &["sip:register", "sip:presence"],
                    60,
                )
                .expect("minted");
            let c = claims(&token);
            assert_eq!(c["sub"], "user0001@example.com");
            assert_eq!(c["scope"], "sip:register sip:presence");
            assert_eq!(c["iss"], "iss");
            assert_eq!(c["aud"], "aud");
            let jwks: Value = serde_json::from_str(&signer.jwks_json()).expect("JSON");
            assert_eq!(jwks["keys"][0]["crv"], "Ed25519");
        }
    }

    #[test]
    fn tokens_verify_against_the_jwks_key() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let signer = Signer::from_key_file(&dir.path().join("k.pem"), "iss", "aud").expect("key");
        let token = signer
            .mint("a@example.com", &["sip:presence"], 60)
            .expect("minted");
        let jwks: Value = serde_json::from_str(&signer.jwks_json()).expect("JSON");
        let x = jwks["keys"][0]["x"].as_str().expect("x");
        let key = jsonwebtoken::DecodingKey::from_ed_components(x).expect("public key");
        let mut validation = jsonwebtoken::Validation::new(Algorithm::EdDSA);
        validation.set_audience(&["aud"]);
        validation.set_issuer(&["iss"]);
        let decoded = jsonwebtoken::decode::<Value>(&token, &key, &validation).expect("verifies");
        assert_eq!(decoded.claims["sub"], "a@example.com");
    }

    #[test]
    fn foreign_pem_is_refused() {
        assert_eq!(seed_from_pem("not a key"), None);
        let rsa_like = format!("{PEM_BEGIN}\nAAAA\n{PEM_END}\n");
        assert_eq!(seed_from_pem(&rsa_like), None);
        let seed = [7u8; 32];
        assert_eq!(seed_from_pem(&pem_from_seed(&seed)), Some(seed));
    }

    #[test]
    fn server_flags_name_the_jwks_issuer_and_audience() {
        let signer = Signer::generate("loadgen", "presence").expect("dev issuer");
        let flags = server_flags(Path::new("/tmp/jwks.json"), &signer);
        assert_eq!(
            flags,
            [
                "--auth-jwks-file",
                "/tmp/jwks.json",
                "--auth-issuer",
                "loadgen",
                "--auth-audience",
                "presence"
            ]
        );
    }
}
