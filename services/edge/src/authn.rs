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
//!
//! * `rules` — the `--auth-mode-for` rule language ([`Schemes`], [`ModeRule`]).
//! * `ha1` — Digest credentials from an HA1 file, reloaded on change
//!   ([`Ha1Credentials`]).
//! * `check` — trusted peers, bearer tokens and Digest responses checked.
//! * `challenge` — the 401/403/400 responses and their challenges.
//! * here — the [`Policy`] and the [`Authenticator`] that applies it.

mod challenge;
mod check;
mod ha1;
mod rules;

use std::cmp::Reverse;
use std::sync::Arc;
use std::time::Duration;

use auth::digest::DigestAuthenticator;
use auth::peers::TrustedPeers;
use auth::{AuthMethod, BearerValidator, Identity};
use sip::{HeaderName, Request, Response};

use self::check::from_header_identity;
pub use self::ha1::Ha1Credentials;
pub use self::rules::{ModeRule, Schemes};
use crate::transport::Source;

/// Seconds advertised in Retry-After when the token provider cannot be
/// reached and nothing cached can answer.
pub const PROVIDER_RETRY_AFTER_SECS: u32 = 5;

/// How often an HA1 file is checked for changes.
pub const HA1_RELOAD_INTERVAL: Duration = Duration::from_secs(2);

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
    use crate::transport::Protocol;

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
}
