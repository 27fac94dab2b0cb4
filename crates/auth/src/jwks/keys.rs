//! A JWKS document read into verification keys: which keys are usable for signatures, and which key a
//! token's header selects.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::signature::{self as ring_signature, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;

use crate::jws::Algorithm;

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
