//! Authentication for SIP requests.
//!
//! * [`BearerValidator`] validates OAuth 2.0 bearer tokens presented in SIP `Authorization` headers
//!   (RFC 8898 with the RFC 6750 challenge syntax): JWT access tokens are verified locally against keys
//!   from a JWKS document (file, URL or OpenID Connect discovery) that is cached and rotated, and opaque
//!   tokens are checked with RFC 7662 token introspection. Results are cached by the SHA-256 of the token.
//! * [`digest`] implements HTTP Digest authentication (RFC 2617, RFC 7616, RFC 8760) with stateless nonces.
//! * [`jws`] names the JWS algorithms and signs tokens (on `ring`, like verification).
//! * [`peers`] recognises trusted peers (other SIP servers) by source address.
//! * [`dev`] (feature `dev-issuer`, on by default) is a throw-away token issuer for single-node mode and tests.
//! * [`testing`] (feature `test-server`) is an in-process OAuth 2.0 authorization server for tests.
//!
//! The crate works on token strings and parameter lists only; mapping results to SIP headers and
//! responses is left to the caller ([`AuthError::sip_status`], [`BearerChallenge::header_value`]).

mod bearer;
mod cache;
mod config;
mod error;
mod identity;
mod introspection;
mod jwks;
pub mod jws;
mod scope;

#[cfg(feature = "dev-issuer")]
pub mod dev;
pub mod digest;
pub mod peers;
#[cfg(feature = "test-server")]
pub mod testing;

pub use bearer::{BearerChallenge, BearerValidator};
pub use config::{BearerConfig, CacheConfig, ClientAuthMethod, IntrospectionConfig, KeySource};
pub use error::AuthError;
pub use identity::{canonical_aor, AuthMethod, Identity};
pub use jws::Algorithm;
pub use scope::ScopePolicy;
