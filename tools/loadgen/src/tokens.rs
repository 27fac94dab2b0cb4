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
use auth::jws::{self, Algorithm, SigningKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
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
    Sign(#[from] jws::SignError),
    /// Issuer or audience is empty.
    #[error("tokens need a non-empty issuer and audience")]
    Config,
}

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
    key: SigningKey,
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
        let key = if path.exists() {
            let pem = std::fs::read_to_string(path).map_err(io)?;
            ed25519_from_pem(&pem).ok_or_else(|| TokenError::BadKey(name.clone()))?
        } else {
            let (key, der) = SigningKey::generate_ed25519()?;
            write_private(path, &jws::pkcs8_to_pem(&der)).map_err(io)?;
            key
        };
        KeySigner::new(key, issuer, audience)
            .ok_or(TokenError::BadKey(name))
            .map(Signer::Key)
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
    /// `None` unless `key` is an Ed25519 key.
    fn new(key: SigningKey, issuer: &str, audience: &str) -> Option<KeySigner> {
        let public_x = URL_SAFE_NO_PAD.encode(key.ed25519_public_key()?);
        // RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
        let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{public_x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));
        Some(KeySigner {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            kid,
            public_x,
            key,
        })
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
        let header = jws::header("at+jwt", Some(&self.kid));
        Ok(self.key.encode(Algorithm::EdDSA, &header, &claims)?)
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

/// An Ed25519 PKCS#8 PEM key (v1 as `openssl genpkey -algorithm ed25519` writes, or v2 as this tool
/// writes); `None` for anything else, other key kinds included.
fn ed25519_from_pem(pem: &str) -> Option<SigningKey> {
    SigningKey::from_pkcs8_pem(pem)
        .ok()
        .filter(|key| key.ed25519_public_key().is_some())
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
        let public = URL_SAFE_NO_PAD.decode(x).expect("base64url x");
        let (signed, signature) = token.rsplit_once('.').expect("three segments");
        let signature = URL_SAFE_NO_PAD
            .decode(signature)
            .expect("base64url signature");
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
            .verify(signed.as_bytes(), &signature)
            .expect("verifies against the published key");
        let c = claims(&token);
        assert_eq!(c["sub"], "a@example.com");
        assert_eq!(c["aud"], "aud");
        assert_eq!(c["iss"], "iss");
        let header: Value = serde_json::from_slice(
            &URL_SAFE_NO_PAD
                .decode(token.split('.').next().expect("header"))
                .expect("base64url header"),
        )
        .expect("JSON header");
        assert_eq!(header["alg"], "EdDSA");
        assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
    }

    #[test]
    fn foreign_pem_is_refused() {
        assert!(ed25519_from_pem("not a key").is_none());
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(ed25519_from_pem(garbage).is_none());
        let rsa = include_str!("../../../crates/auth/tests/keys/rsa-a.pem");
        assert!(ed25519_from_pem(rsa).is_none());
        // A v1 key as openssl writes it (seed only) is accepted.
        let openssl = include_str!("../../../crates/auth/tests/keys/ed25519.pem");
        assert!(ed25519_from_pem(openssl).is_some());
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
