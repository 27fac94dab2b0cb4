//! JSON Web Signature pieces the crate needs, all on `ring`: the algorithm names of RFC 7518 §3.1 and a
//! signer for the compact serialization (RFC 7515 §7.1).
//!
//! Why `ring` alone: verification already ran on `ring` (constant-time, assembly-optimised, and linked
//! anyway by rustls), and minting development and test tokens through `jsonwebtoken` pulled a second,
//! pure-Rust stack (`rsa`, `p256`, `p384`, `ed25519-dalek` and their RustCrypto bignum and curve crates)
//! into every build. `jsonwebtoken`'s other backend, `aws-lc-rs`, would replace `ring` everywhere and adds
//! a C build (cmake) to the toolchain; signing with `ring` directly is a hundred lines and no new crate.
//!
//! Signing keys are PKCS#8 documents, the format `openssl genpkey` writes and `ring` reads: RSA keys are
//! loaded (ring cannot generate them), ECDSA and Ed25519 keys can also be generated.

use std::fmt;
use std::str::FromStr;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self as ring_signature, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use serde_json::{Map, Value};

/// A JWS algorithm (RFC 7518 §3.1, RFC 8037 §3.1 for `EdDSA`). The HMAC names are known so that a token
/// or a configuration naming them can be refused explicitly; nothing here computes an HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[allow(clippy::upper_case_acronyms)]
pub enum Algorithm {
    /// HMAC with SHA-256 (never accepted).
    HS256,
    /// HMAC with SHA-384 (never accepted).
    HS384,
    /// HMAC with SHA-512 (never accepted).
    HS512,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    RS256,
    /// RSASSA-PKCS1-v1_5 with SHA-384.
    RS384,
    /// RSASSA-PKCS1-v1_5 with SHA-512.
    RS512,
    /// RSASSA-PSS with SHA-256.
    PS256,
    /// RSASSA-PSS with SHA-384.
    PS384,
    /// RSASSA-PSS with SHA-512.
    PS512,
    /// ECDSA on P-256 with SHA-256.
    ES256,
    /// ECDSA on P-384 with SHA-384.
    ES384,
    /// Ed25519.
    EdDSA,
}

impl Algorithm {
    /// Every algorithm this type names.
    pub const ALL: [Algorithm; 12] = [
        Algorithm::HS256,
        Algorithm::HS384,
        Algorithm::HS512,
        Algorithm::RS256,
        Algorithm::RS384,
        Algorithm::RS512,
        Algorithm::PS256,
        Algorithm::PS384,
        Algorithm::PS512,
        Algorithm::ES256,
        Algorithm::ES384,
        Algorithm::EdDSA,
    ];

    /// The `alg` header value.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::HS256 => "HS256",
            Algorithm::HS384 => "HS384",
            Algorithm::HS512 => "HS512",
            Algorithm::RS256 => "RS256",
            Algorithm::RS384 => "RS384",
            Algorithm::RS512 => "RS512",
            Algorithm::PS256 => "PS256",
            Algorithm::PS384 => "PS384",
            Algorithm::PS512 => "PS512",
            Algorithm::ES256 => "ES256",
            Algorithm::ES384 => "ES384",
            Algorithm::EdDSA => "EdDSA",
        }
    }

    /// Whether this is a symmetric (HMAC) algorithm, which a published key can never be used with.
    pub fn is_hmac(self) -> bool {
        matches!(self, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An `alg` value this crate does not know.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown JWS algorithm")]
pub struct UnknownAlgorithm;

impl FromStr for Algorithm {
    type Err = UnknownAlgorithm;

    /// Parses an `alg` value; names are case-sensitive (RFC 7515 §4.1.1).
    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Algorithm::ALL
            .into_iter()
            .find(|alg| alg.name() == name)
            .ok_or(UnknownAlgorithm)
    }
}

/// Why a key could not be loaded or a token signed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// The PEM text holds no `PRIVATE KEY` block or its body is not base64.
    #[error("not a PKCS#8 PEM private key")]
    Pem,
    /// The key is not a PKCS#8 key `ring` can use for the requested kind.
    #[error("the key is not a usable {0} PKCS#8 key")]
    Key(&'static str),
    /// The key cannot sign with the requested algorithm (an RSA key asked for ES256, an HMAC algorithm).
    #[error("a {key} key cannot sign {alg}")]
    Mismatch {
        /// The kind of the key.
        key: &'static str,
        /// The requested algorithm.
        alg: Algorithm,
    },
    /// `ring` failed to sign or to generate a key.
    #[error("the signature could not be computed")]
    Crypto,
    /// The header or claims could not be serialized.
    #[error("cannot serialize the token: {0}")]
    Json(String),
}

enum KeyPairKind {
    Rsa(RsaKeyPair),
    EcP256(EcdsaKeyPair),
    EcP384(EcdsaKeyPair),
    Ed25519(Ed25519KeyPair),
}

/// A private key that signs JWS tokens.
pub struct SigningKey {
    pair: KeyPairKind,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

/// The DER body of the first `-----BEGIN PRIVATE KEY-----` block of `pem`.
pub fn pkcs8_from_pem(pem: &str) -> Result<Vec<u8>, SignError> {
    const BEGIN: &str = "-----BEGIN PRIVATE KEY-----";
    const END: &str = "-----END PRIVATE KEY-----";
    let start = pem.find(BEGIN).ok_or(SignError::Pem)? + BEGIN.len();
    let end = pem[start..].find(END).ok_or(SignError::Pem)? + start;
    let body: String = pem[start..end].split_whitespace().collect();
    STANDARD.decode(body).map_err(|_| SignError::Pem)
}

/// `der` as a PKCS#8 PEM document.
pub fn pkcs8_to_pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = String::with_capacity(body.len() + body.len() / 64 + 64);
    pem.push_str("-----BEGIN PRIVATE KEY-----\n");
    for line in body.as_bytes().chunks(64) {
        // Base64 output is ASCII, so every chunk is valid UTF-8.
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}

impl SigningKey {
    /// Loads a PKCS#8 key of any supported kind (RSA, EC P-256, EC P-384, Ed25519), trying each in turn.
    /// Ed25519 keys may be PKCS#8 v1 (seed only, as `openssl genpkey` writes) or v2.
    pub fn from_pkcs8_der(der: &[u8]) -> Result<SigningKey, SignError> {
        let rng = SystemRandom::new();
        let pair = if let Ok(pair) = RsaKeyPair::from_pkcs8(der) {
            KeyPairKind::Rsa(pair)
        } else if let Ok(pair) =
            EcdsaKeyPair::from_pkcs8(&ring_signature::ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng)
        {
            KeyPairKind::EcP256(pair)
        } else if let Ok(pair) =
            EcdsaKeyPair::from_pkcs8(&ring_signature::ECDSA_P384_SHA384_FIXED_SIGNING, der, &rng)
        {
            KeyPairKind::EcP384(pair)
        } else if let Ok(pair) = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der) {
            KeyPairKind::Ed25519(pair)
        } else {
            return Err(SignError::Key("RSA, EC or Ed25519"));
        };
        Ok(SigningKey { pair, rng })
    }

    /// [`SigningKey::from_pkcs8_der`] from PEM text.
    pub fn from_pkcs8_pem(pem: &str) -> Result<SigningKey, SignError> {
        SigningKey::from_pkcs8_der(&pkcs8_from_pem(pem)?)
    }

    /// A fresh Ed25519 key, with its PKCS#8 (v2) document for storing it.
    pub fn generate_ed25519() -> Result<(SigningKey, Vec<u8>), SignError> {
        let rng = SystemRandom::new();
        let der = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| SignError::Crypto)?;
        let pair = Ed25519KeyPair::from_pkcs8(der.as_ref()).map_err(|_| SignError::Crypto)?;
        Ok((
            SigningKey {
                pair: KeyPairKind::Ed25519(pair),
                rng,
            },
            der.as_ref().to_vec(),
        ))
    }

    /// The kind of key: `RSA`, `P-256`, `P-384` or `Ed25519`.
    pub fn kind(&self) -> &'static str {
        match self.pair {
            KeyPairKind::Rsa(_) => "RSA",
            KeyPairKind::EcP256(_) => "P-256",
            KeyPairKind::EcP384(_) => "P-384",
            KeyPairKind::Ed25519(_) => "Ed25519",
        }
    }

    /// The natural algorithm of the key: RS256, ES256, ES384 or EdDSA.
    pub fn default_algorithm(&self) -> Algorithm {
        match self.pair {
            KeyPairKind::Rsa(_) => Algorithm::RS256,
            KeyPairKind::EcP256(_) => Algorithm::ES256,
            KeyPairKind::EcP384(_) => Algorithm::ES384,
            KeyPairKind::Ed25519(_) => Algorithm::EdDSA,
        }
    }

    /// The raw public key of an Ed25519 key (the JWK `x`), `None` for other kinds.
    pub fn ed25519_public_key(&self) -> Option<&[u8]> {
        match &self.pair {
            KeyPairKind::Ed25519(pair) => Some(pair.public_key().as_ref()),
            _ => None,
        }
    }

    /// The JWS signature of `message` with `alg` (ECDSA in the fixed-width `r || s` form of RFC 7518 §3.4).
    pub fn sign(&self, alg: Algorithm, message: &[u8]) -> Result<Vec<u8>, SignError> {
        let mismatch = || SignError::Mismatch {
            key: self.kind(),
            alg,
        };
        match &self.pair {
            KeyPairKind::Rsa(pair) => {
                let padding: &'static dyn ring_signature::RsaEncoding = match alg {
                    Algorithm::RS256 => &ring_signature::RSA_PKCS1_SHA256,
                    Algorithm::RS384 => &ring_signature::RSA_PKCS1_SHA384,
                    Algorithm::RS512 => &ring_signature::RSA_PKCS1_SHA512,
                    Algorithm::PS256 => &ring_signature::RSA_PSS_SHA256,
                    Algorithm::PS384 => &ring_signature::RSA_PSS_SHA384,
                    Algorithm::PS512 => &ring_signature::RSA_PSS_SHA512,
                    _ => return Err(mismatch()),
                };
                let mut signature = vec![0; pair.public().modulus_len()];
                pair.sign(padding, &self.rng, message, &mut signature)
                    .map_err(|_| SignError::Crypto)?;
                Ok(signature)
            }
            KeyPairKind::EcP256(pair) if alg == Algorithm::ES256 => pair
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Crypto),
            KeyPairKind::EcP384(pair) if alg == Algorithm::ES384 => pair
                .sign(&self.rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| SignError::Crypto),
            KeyPairKind::Ed25519(pair) if alg == Algorithm::EdDSA => {
                Ok(pair.sign(message).as_ref().to_vec())
            }
            _ => Err(mismatch()),
        }
    }

    /// A compact JWS: `header` (which gets `alg` set to `alg`) and `claims` serialized, base64url-encoded
    /// and signed.
    pub fn encode(
        &self,
        alg: Algorithm,
        header: &Map<String, Value>,
        claims: &Map<String, Value>,
    ) -> Result<String, SignError> {
        let mut header = header.clone();
        header.insert("alg".to_owned(), Value::from(alg.name()));
        self.encode_raw(alg, &Value::Object(header), claims)
    }

    /// A compact JWS over an arbitrary JSON `header`, taken as is (tests use it for headers whose `alg`
    /// or members are deliberately unusual).
    pub fn encode_raw(
        &self,
        alg: Algorithm,
        header: &Value,
        claims: &Map<String, Value>,
    ) -> Result<String, SignError> {
        let header = serde_json::to_vec(header).map_err(|e| SignError::Json(e.to_string()))?;
        let claims = serde_json::to_vec(claims).map_err(|e| SignError::Json(e.to_string()))?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = self.sign(alg, signing_input.as_bytes())?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature)
        ))
    }
}

/// A JOSE header with `typ` and, when given, `kid` (`alg` is added by [`SigningKey::encode`]).
pub fn header(typ: &str, kid: Option<&str>) -> Map<String, Value> {
    let mut header = Map::new();
    header.insert("typ".to_owned(), Value::from(typ));
    if let Some(kid) = kid {
        header.insert("kid".to_owned(), Value::from(kid));
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(alg.name().parse::<Algorithm>(), Ok(alg));
        }
        assert_eq!("none".parse::<Algorithm>(), Err(UnknownAlgorithm));
        assert_eq!("rs256".parse::<Algorithm>(), Err(UnknownAlgorithm));
        assert!(Algorithm::HS384.is_hmac());
        assert!(!Algorithm::EdDSA.is_hmac());
    }

    #[test]
    fn pem_round_trip_and_generated_keys_sign() {
        let (key, der) = SigningKey::generate_ed25519().unwrap();
        let reloaded = SigningKey::from_pkcs8_pem(&pkcs8_to_pem(&der)).unwrap();
        assert_eq!(key.ed25519_public_key(), reloaded.ed25519_public_key());
        let signature = key.sign(Algorithm::EdDSA, b"message").unwrap();
        let public = ring_signature::UnparsedPublicKey::new(
            &ring_signature::ED25519,
            reloaded.ed25519_public_key().unwrap(),
        );
        assert!(public.verify(b"message", &signature).is_ok());
        assert!(matches!(
            key.sign(Algorithm::RS256, b"message"),
            Err(SignError::Mismatch { .. })
        ));
        assert_eq!(
            SigningKey::from_pkcs8_pem("no key here").unwrap_err(),
            SignError::Pem
        );
    }
}
