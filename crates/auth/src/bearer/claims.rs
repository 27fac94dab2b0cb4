//! The claims of a token, a JWT's or an introspection response's: the registered ones checked, the
//! rest mapped to an identity.

use serde_json::{Map, Value};

use super::{invalid, BearerValidator, Validated};
use crate::error::AuthError;
use crate::identity::{canonical_aor, AuthMethod, Identity};

impl BearerValidator {
    /// Checks the registered claims and maps the rest to an identity. `exp` is mandatory for JWTs and
    /// optional for introspection responses; `iss` and `aud` are checked when configured (for
    /// introspection only when the response names them, the server's answer being authoritative).
    pub(super) fn check_claims(
        &self,
        claims: &Map<String, Value>,
        now_ms: u64,
        is_jwt: bool,
        discovered_issuer: Option<&str>,
    ) -> Result<Validated, AuthError> {
        let config = &self.inner.config;
        let leeway_ms = config.leeway_secs.saturating_mul(1000);
        let exp = numeric_date(claims, "exp")?;
        match exp {
            Some(exp) if now_ms >= exp.saturating_add(leeway_ms) => return Err(AuthError::Expired),
            None if is_jwt => return Err(invalid("the token has no exp claim")),
            _ => {}
        }
        if let Some(nbf) = numeric_date(claims, "nbf")? {
            if now_ms.saturating_add(leeway_ms) < nbf {
                return Err(invalid("the token is not valid yet"));
            }
        }
        if let Some(iat) = numeric_date(claims, "iat")? {
            if iat > now_ms.saturating_add(leeway_ms) {
                return Err(invalid("the token was issued in the future"));
            }
        }
        if !is_access_token(claims) {
            return Err(invalid("the token is not an access token"));
        }
        let issuer = claims.get("iss").and_then(Value::as_str);
        let accepted_issuer = |iss: &str| {
            if config.issuers.is_empty() {
                discovered_issuer.is_none_or(|d| d == iss)
            } else {
                config.issuers.iter().any(|i| i == iss)
            }
        };
        match issuer {
            Some(iss) if !accepted_issuer(iss) => {
                return Err(invalid("the issuer is not accepted"))
            }
            None if is_jwt && (!config.issuers.is_empty() || discovered_issuer.is_some()) => {
                return Err(invalid("the token has no iss claim"))
            }
            _ => {}
        }
        if !config.audiences.is_empty() {
            let audiences: Vec<&str> = match claims.get("aud") {
                Some(Value::String(one)) => vec![one.as_str()],
                Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            let present = claims.contains_key("aud");
            if (is_jwt || present)
                && !audiences
                    .iter()
                    .any(|a| config.audiences.iter().any(|c| c == a))
            {
                return Err(invalid("the token is not meant for this audience"));
            }
        }
        let identity_value = claim_str(claims, &config.identity_claim)
            .or_else(|| {
                if is_jwt {
                    None
                } else {
                    claim_str(claims, "username")
                }
            })
            .or_else(|| {
                if is_jwt {
                    None
                } else {
                    claim_str(claims, "sub")
                }
            })
            .ok_or_else(|| {
                AuthError::InvalidToken(format!(
                    "the token has no {} claim to identify the user",
                    config.identity_claim
                ))
            })?;
        let aor = canonical_aor(identity_value, config.default_domain.as_deref())?;
        let subject = claim_str(claims, "sub")
            .unwrap_or(identity_value)
            .to_owned();
        let mut scopes: Vec<String> = Vec::new();
        if let Some(scope) = claims.get("scope").and_then(Value::as_str) {
            scopes.extend(scope.split_ascii_whitespace().map(str::to_owned));
        }
        match claims.get("scp") {
            Some(Value::String(scp)) => {
                scopes.extend(scp.split_ascii_whitespace().map(str::to_owned))
            }
            Some(Value::Array(scp)) => {
                scopes.extend(scp.iter().filter_map(Value::as_str).map(str::to_owned))
            }
            _ => {}
        }
        scopes.sort_unstable();
        scopes.dedup();
        let client_id = claim_str(claims, "client_id")
            .or_else(|| claim_str(claims, "azp"))
            .map(str::to_owned);
        Ok(Validated {
            identity: Identity {
                aor,
                subject,
                scopes,
                client_id,
                expires_at: exp.map(|ms| ms / 1000),
                method: AuthMethod::Bearer,
            },
            expires_at_ms: exp,
        })
    }
}

/// Refuses tokens that say they are something other than an access token: an introspection `token_type`
/// other than a bearer/access token, or a Keycloak-style `typ` claim naming an ID, refresh, offline or
/// logout token. Accepting those would let, for example, a leaked ID token act as an access token.
fn is_access_token(claims: &Map<String, Value>) -> bool {
    let token_type_ok = claims
        .get("token_type")
        .and_then(Value::as_str)
        .is_none_or(|t| {
            [
                "bearer",
                "access_token",
                "urn:ietf:params:oauth:token-type:access_token",
            ]
            .iter()
            .any(|accepted| t.eq_ignore_ascii_case(accepted))
        });
    let typ_ok = claims.get("typ").and_then(Value::as_str).is_none_or(|t| {
        !["id", "refresh", "offline", "logout"]
            .iter()
            .any(|refused| t.eq_ignore_ascii_case(refused))
    });
    token_type_ok && typ_ok
}

/// A string claim; for an array, its first string element.
fn claim_str<'a>(claims: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    match claims.get(name)? {
        Value::String(s) => Some(s.as_str()),
        Value::Array(items) => items.iter().find_map(Value::as_str),
        _ => None,
    }
}

/// A NumericDate claim (RFC 7519 §2) in milliseconds.
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<u64>, AuthError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(secs) = n.as_u64() {
                Ok(Some(secs.saturating_mul(1000)))
            } else if let Some(secs) = n.as_f64() {
                // Fractional or negative dates; `as` saturates, and negative dates become the epoch.
                Ok(Some((secs.max(0.0) * 1000.0) as u64))
            } else {
                Err(AuthError::InvalidToken(format!(
                    "the {name} claim is not a NumericDate"
                )))
            }
        }
        Some(_) => Err(AuthError::InvalidToken(format!(
            "the {name} claim is not a NumericDate"
        ))),
    }
}
