//! A development token issuer: a fresh Ed25519 key pair per process that publishes its JWKS and mints
//! access tokens. For single-node mode (to print a token a developer can paste into a SIP client) and for
//! tests. It has no persistence and no revocation; never use it in production.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore as _;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

use crate::bearer::now_ms;
use crate::config::{BearerConfig, KeySource};
use crate::error::AuthError;
use crate::jws::{self, Algorithm, SigningKey};

/// An in-memory token issuer with a freshly generated Ed25519 key.
pub struct DevIssuer {
    issuer: String,
    audience: String,
    kid: String,
    public_x: String,
    key: SigningKey,
}

impl std::fmt::Debug for DevIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DevIssuer")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl DevIssuer {
    /// Generates a key pair for tokens with `iss` = `issuer` and `aud` = `audience`.
    pub fn generate(issuer: &str, audience: &str) -> Result<Self, AuthError> {
        let (key, _pkcs8) = SigningKey::generate_ed25519()
            .map_err(|e| AuthError::Config(format!("cannot generate a development key: {e}")))?;
        let public_x = URL_SAFE_NO_PAD.encode(key.ed25519_public_key().unwrap_or_default());
        // RFC 7638 thumbprint: SHA-256 over the required members in lexicographic order.
        let thumbprint_input = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{public_x}"}}"#);
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(thumbprint_input.as_bytes()));
        if issuer.is_empty() || audience.is_empty() {
            return Err(AuthError::Config(
                "the development issuer needs an issuer and an audience".to_owned(),
            ));
        }
        Ok(DevIssuer {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            kid,
            public_x,
            key,
        })
    }

    /// The `iss` of minted tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `aud` of minted tokens.
    pub fn audience(&self) -> &str {
        &self.audience
    }

    /// The key id (RFC 7638 thumbprint) in token headers and in the JWKS.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWKS document.
    pub fn jwks_json(&self) -> String {
        json!({
            "keys": [{
                "kty": "OKP",
                "crv": "Ed25519",
                "x": self.public_x,
                "kid": self.kid,
                "alg": "EdDSA",
                "use": "sig",
            }]
        })
        .to_string()
    }

    /// A validator configuration that trusts this issuer (inline JWKS, issuer and audience pinned), with
    /// every other setting at its default.
    pub fn bearer_config(&self) -> BearerConfig {
        BearerConfig {
            issuers: vec![self.issuer.clone()],
            audiences: vec![self.audience.clone()],
            jwks: Some(KeySource::Inline(self.jwks_json())),
            ..BearerConfig::default()
        }
    }

    /// Mints an access token for `subject` with the given scopes, valid for `ttl_secs` from now.
    pub fn mint(&self, subject: &str, scopes: &[&str], ttl_secs: u64) -> Result<String, AuthError> {
        let mut claims = Map::new();
        claims.insert("sub".to_owned(), Value::from(subject));
        claims.insert("scope".to_owned(), Value::from(scopes.join(" ")));
        let now = now_ms() / 1000;
        claims.insert("exp".to_owned(), Value::from(now.saturating_add(ttl_secs)));
        self.mint_claims(claims)
    }

    /// Mints a token with arbitrary claims. `iss`, `aud`, `iat`, `nbf`, `jti` and `client_id` are filled in
    /// when absent, and `exp` defaults to one hour from now.
    pub fn mint_claims(&self, mut claims: Map<String, Value>) -> Result<String, AuthError> {
        let now = now_ms() / 1000;
        let mut jti = [0u8; 16];
        rand::rng().fill_bytes(&mut jti);
        let defaults = [
            ("iss", Value::from(self.issuer.as_str())),
            ("aud", Value::from(self.audience.as_str())),
            ("iat", Value::from(now)),
            ("nbf", Value::from(now)),
            ("exp", Value::from(now + 3600)),
            ("jti", Value::from(URL_SAFE_NO_PAD.encode(jti))),
            ("client_id", Value::from("dev-issuer")),
        ];
        for (name, value) in defaults {
            claims.entry(name).or_insert(value);
        }
        let header = jws::header("at+jwt", Some(&self.kid));
        self.key
            .encode(Algorithm::EdDSA, &header, &claims)
            .map_err(|e| AuthError::Config(format!("cannot sign a development token: {e}")))
    }
}
