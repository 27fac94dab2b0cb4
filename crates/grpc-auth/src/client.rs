//! The client side: the bearer token a process (an edge) presents to the
//! services, kept fresh in the background, and a tonic interceptor that
//! attaches it to every call.
//!
//! Where the token comes from ([`TokenSource`]):
//! * a fixed string (tests, short experiments);
//! * a file, re-read whenever it changes — for tokens written by a sidecar,
//!   a secrets agent or a Kubernetes projected volume;
//! * the OAuth 2.0 client credentials grant (RFC 6749 §4.4) against the
//!   operator's authorization server, renewed before it expires;
//! * a function minting tokens in-process (the single-process node's
//!   development issuer).
//!
//! A renewal that fails keeps the previous token and retries with back-off;
//! the services then refuse calls only once that token has really expired.

use std::path::PathBuf;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use serde::Deserialize;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::Status;

/// How often a token file is checked for a new token.
const FILE_POLL: Duration = Duration::from_secs(5);
/// Shortest wait between two renewals, whatever the token's lifetime.
const MIN_RENEWAL: Duration = Duration::from_secs(5);
/// Renewal interval when the authorization server does not say how long a
/// token lives.
const DEFAULT_RENEWAL: Duration = Duration::from_secs(300);
/// Longest back-off between failed renewals.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Timeout of each request to the token endpoint.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Why no token could be obtained.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The token file cannot be read.
    #[error("cannot read the token file {path}: {error}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: std::io::Error,
    },
    /// The token is empty or holds characters a header cannot carry.
    #[error("the service token is empty or not printable ASCII")]
    InvalidToken,
    /// The token endpoint could not be reached or answered garbage.
    #[error("token endpoint: {0}")]
    Endpoint(String),
    /// The token endpoint refused the client's credentials.
    #[error("token endpoint refused the request: HTTP {status}: {body}")]
    Refused {
        /// HTTP status of the answer.
        status: u16,
        /// The start of the answer's body (OAuth error code and description).
        body: String,
    },
    /// The in-process issuer failed.
    #[error("minting a service token: {0}")]
    Mint(String),
    /// Contradictory or incomplete settings.
    #[error("{0}")]
    Config(String),
}

/// The OAuth 2.0 client credentials grant.
#[derive(Clone, Debug)]
pub struct ClientCredentials {
    /// The token endpoint.
    pub token_url: String,
    /// This client's id at the authorization server.
    pub client_id: String,
    /// This client's secret.
    pub client_secret: String,
    /// Space-separated scopes to ask for (`presence:internal`); empty asks
    /// for the client's default scopes.
    pub scope: String,
    /// `audience` parameter some servers need to issue a JWT for an API.
    pub audience: Option<String>,
}

/// A function returning a fresh token.
pub type Mint = Arc<dyn Fn() -> Result<String, String> + Send + Sync>;

/// Where a service token comes from.
#[derive(Clone)]
pub enum TokenSource {
    /// A fixed token.
    Static(String),
    /// A file holding the token (surrounding white space ignored).
    File(PathBuf),
    /// The client credentials grant.
    ClientCredentials(ClientCredentials),
    /// A function minting tokens, called again every `renew_every`.
    Minted {
        /// Returns a fresh token.
        mint: Mint,
        /// How often a new token is minted.
        renew_every: Duration,
    },
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenSource::Static(_) => f.write_str("Static(..)"),
            TokenSource::File(path) => f.debug_tuple("File").field(path).finish(),
            TokenSource::ClientCredentials(c) => f
                .debug_struct("ClientCredentials")
                .field("token_url", &c.token_url)
                .field("client_id", &c.client_id)
                .field("scope", &c.scope)
                .finish_non_exhaustive(),
            TokenSource::Minted { renew_every, .. } => f
                .debug_struct("Minted")
                .field("renew_every", renew_every)
                .finish_non_exhaustive(),
        }
    }
}

type Slot = RwLock<Option<MetadataValue<Ascii>>>;

/// The token a client presents, shared by every clone and renewed in the
/// background for as long as a clone exists. Also a tonic interceptor:
/// `PresenceClient::with_interceptor(channel, credentials)`.
#[derive(Clone, Default)]
pub struct ServiceCredentials {
    slot: Option<Arc<Slot>>,
}

impl std::fmt::Debug for ServiceCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceCredentials")
            .field("present", &self.current().is_some())
            .finish()
    }
}

impl ServiceCredentials {
    /// No token: calls go out without `authorization`.
    pub fn none() -> Self {
        ServiceCredentials { slot: None }
    }

    /// Obtains a first token from `source` (failing if it cannot) and keeps
    /// it fresh in a background task that ends when the last clone is
    /// dropped. Must be called inside a Tokio runtime.
    pub async fn start(source: TokenSource) -> Result<Self, CredentialsError> {
        let http = reqwest::Client::builder()
            .timeout(HTTP_TIMEOUT)
            .build()
            .map_err(|e| CredentialsError::Endpoint(e.to_string()))?;
        let (token, renew_in) = fetch(&source, &http).await?;
        let slot = Arc::new(RwLock::new(Some(token)));
        tokio::spawn(renew(Arc::downgrade(&slot), source, http, renew_in));
        Ok(ServiceCredentials { slot: Some(slot) })
    }

    /// The `authorization` value to send now, if any.
    pub fn current(&self) -> Option<MetadataValue<Ascii>> {
        let slot = self.slot.as_ref()?;
        let guard = locks::read(slot);
        guard.clone()
    }
}

impl tonic::service::Interceptor for ServiceCredentials {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, Status> {
        if let Some(value) = self.current() {
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

/// `Bearer <token>` as a metadata value.
fn bearer_value(token: &str) -> Result<MetadataValue<Ascii>, CredentialsError> {
    let token = token.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CredentialsError::InvalidToken);
    }
    let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
        .parse()
        .map_err(|_| CredentialsError::InvalidToken)?;
    value.set_sensitive(true);
    Ok(value)
}

/// One token from `source`, and when to look for the next one.
async fn fetch(
    source: &TokenSource,
    http: &reqwest::Client,
) -> Result<(MetadataValue<Ascii>, Option<Duration>), CredentialsError> {
    match source {
        TokenSource::Static(token) => Ok((bearer_value(token)?, None)),
        TokenSource::File(path) => {
            let text =
                tokio::fs::read_to_string(path)
                    .await
                    .map_err(|error| CredentialsError::File {
                        path: path.clone(),
                        error,
                    })?;
            Ok((bearer_value(&text)?, Some(FILE_POLL)))
        }
        TokenSource::ClientCredentials(grant) => {
            let (token, lifetime) = client_credentials(grant, http).await?;
            // Renew at 80 % of the lifetime, so a slow or briefly failing
            // authorization server still leaves time before expiry.
            let renew_in = lifetime
                .map(|l| (l * 4 / 5).max(MIN_RENEWAL))
                .unwrap_or(DEFAULT_RENEWAL);
            Ok((bearer_value(&token)?, Some(renew_in)))
        }
        TokenSource::Minted { mint, renew_every } => {
            let token = mint().map_err(CredentialsError::Mint)?;
            Ok((bearer_value(&token)?, Some((*renew_every).max(MIN_RENEWAL))))
        }
    }
}

/// Keeps the slot fresh until every [`ServiceCredentials`] is dropped.
async fn renew(
    slot: Weak<Slot>,
    source: TokenSource,
    http: reqwest::Client,
    mut renew_in: Option<Duration>,
) {
    let mut backoff = Duration::from_secs(1);
    while let Some(wait) = renew_in {
        tokio::time::sleep(wait).await;
        if slot.strong_count() == 0 {
            return;
        }
        match fetch(&source, &http).await {
            Ok((token, next)) => {
                let Some(slot) = slot.upgrade() else { return };
                let mut guard = locks::write(&slot);
                if guard.as_ref() != Some(&token) {
                    tracing::info!(source = ?source, "service token renewed");
                }
                *guard = Some(token);
                renew_in = next;
                backoff = Duration::from_secs(1);
            }
            Err(error) => {
                tracing::warn!(source = ?source, %error, retry_in = ?backoff, "service token renewal failed; the previous token stays in use");
                renew_in = Some(backoff);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// RFC 6749 §4.4 with `client_secret_basic` (§2.3.1: id and secret are
/// form-encoded before Basic encoding).
async fn client_credentials(
    grant: &ClientCredentials,
    http: &reqwest::Client,
) -> Result<(String, Option<Duration>), CredentialsError> {
    let mut form: Vec<(&str, &str)> = vec![("grant_type", "client_credentials")];
    if !grant.scope.is_empty() {
        form.push(("scope", &grant.scope));
    }
    if let Some(audience) = &grant.audience {
        form.push(("audience", audience));
    }
    let response = http
        .post(&grant.token_url)
        .basic_auth(
            form_encode(&grant.client_id),
            Some(form_encode(&grant.client_secret)),
        )
        .form(&form)
        .send()
        .await
        .map_err(|e| CredentialsError::Endpoint(e.to_string()))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| CredentialsError::Endpoint(e.to_string()))?;
    if !status.is_success() {
        return Err(CredentialsError::Refused {
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).chars().take(200).collect(),
        });
    }
    let parsed: TokenResponse = serde_json::from_slice(&body)
        .map_err(|e| CredentialsError::Endpoint(format!("unexpected answer: {e}")))?;
    Ok((
        parsed.access_token,
        parsed.expires_in.map(Duration::from_secs),
    ))
}

/// `application/x-www-form-urlencoded` encoding of one value.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte))
            }
            b' ' => out.push('+'),
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_follows_the_html_rules() {
        assert_eq!(form_encode("edge-1"), "edge-1");
        assert_eq!(form_encode("a b:c/d"), "a+b%3Ac%2Fd");
        assert_eq!(form_encode("é"), "%C3%A9");
    }

    #[test]
    fn tokens_that_cannot_be_sent_are_refused() {
        assert!(bearer_value("").is_err());
        assert!(bearer_value("two words").is_err());
        assert!(bearer_value("tab\there").is_err());
        assert!(bearer_value("é").is_err());
        assert!(bearer_value(" abc.def\n").is_ok());
    }
}
