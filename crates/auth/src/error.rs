//! The error type shared by every authentication mechanism of the crate.

/// Why a request could not be authenticated or authorized.
///
/// Each variant maps to a SIP status code ([`AuthError::sip_status`]) and, for bearer tokens, to an
/// RFC 6750 error code ([`AuthError::oauth_error_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The request carried no credentials at all.
    #[error("no credentials presented")]
    Missing,
    /// The credentials could not be parsed (bad syntax, missing mandatory parameter).
    #[error("malformed credentials: {0}")]
    Malformed(String),
    /// The bearer token is not acceptable: bad signature, unknown key, wrong issuer or audience,
    /// not yet valid, revoked or inactive.
    #[error("invalid token: {0}")]
    InvalidToken(String),
    /// The bearer token has expired.
    #[error("token expired")]
    Expired,
    /// The identity is valid but lacks the scope the SIP method requires.
    #[error("insufficient scope: {required} required")]
    InsufficientScope {
        /// The scope that would have been sufficient.
        required: String,
    },
    /// The authorization server is unreachable and no usable key or cached answer exists.
    #[error("authorization provider unavailable: {0}")]
    ProviderUnavailable(String),
    /// The Digest nonce is authentic but too old: the client should retry with a fresh nonce.
    #[error("stale nonce")]
    Stale,
    /// Digest credentials are wrong: bad response, unknown user, foreign or replayed nonce.
    #[error("invalid credentials: {0}")]
    InvalidCredentials(String),
    /// The configuration cannot work (for example an HMAC algorithm in the allow-list).
    #[error("configuration error: {0}")]
    Config(String),
}

impl AuthError {
    /// The SIP response status this error calls for: 401 for missing, invalid or expired credentials and
    /// stale nonces, 403 for insufficient scope, 400 for malformed credentials, 503 when the provider is
    /// unavailable and nothing cached can answer, 500 for configuration errors.
    pub fn sip_status(&self) -> u16 {
        match self {
            AuthError::Missing
            | AuthError::InvalidToken(_)
            | AuthError::Expired
            | AuthError::Stale
            | AuthError::InvalidCredentials(_) => 401,
            AuthError::InsufficientScope { .. } => 403,
            AuthError::Malformed(_) => 400,
            AuthError::ProviderUnavailable(_) => 503,
            AuthError::Config(_) => 500,
        }
    }

    /// The RFC 6750 §3.1 error code for a bearer challenge, if one applies.
    ///
    /// A request without credentials gets no error code (RFC 6750 §3.1), nor do errors that are not
    /// the token's fault (provider or configuration trouble) or that belong to Digest.
    pub fn oauth_error_code(&self) -> Option<&'static str> {
        match self {
            AuthError::InvalidToken(_) | AuthError::Expired => Some("invalid_token"),
            AuthError::InsufficientScope { .. } => Some("insufficient_scope"),
            AuthError::Malformed(_) => Some("invalid_request"),
            AuthError::Missing
            | AuthError::ProviderUnavailable(_)
            | AuthError::Stale
            | AuthError::InvalidCredentials(_)
            | AuthError::Config(_) => None,
        }
    }

    /// A short description that is safe to send to the client: fixed text per variant, so that
    /// nothing taken from the request or from the provider is echoed back.
    pub fn public_description(&self) -> &'static str {
        match self {
            AuthError::Missing => "authentication required",
            AuthError::Malformed(_) => "malformed credentials",
            AuthError::InvalidToken(_) => "the access token is invalid",
            AuthError::Expired => "the access token expired",
            AuthError::InsufficientScope { .. } => "the access token lacks the required scope",
            AuthError::ProviderUnavailable(_) => "the authorization server is unavailable",
            AuthError::Stale => "stale nonce",
            AuthError::InvalidCredentials(_) => "invalid credentials",
            AuthError::Config(_) => "authentication is misconfigured",
        }
    }
}
