//! What a peer is configured with: timers and intervals, and credentials.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

/// Intervals and timers. The defaults suit production; tests shorten them.
///
/// ```
/// use std::time::Duration;
/// use presence_client::Timers;
/// let quick = Timers {
///     heartbeat_interval: Duration::from_millis(200),
///     offline_threshold: Duration::from_secs(1),
///     ..Timers::default()
/// };
/// assert_eq!(Timers::default().heartbeat_interval, Duration::from_secs(30));
/// # let _ = quick;
/// ```
#[derive(Debug, Clone)]
pub struct Timers {
    /// RFC 3261 T1: the first UDP retransmission interval (doubling up to T2).
    pub t1: Duration,
    /// RFC 3261 T2: the longest UDP retransmission interval.
    pub t2: Duration,
    /// How long a request waits for its final answer (RFC 3261 Timer F, 64·T1).
    pub transaction_timeout: Duration,
    /// Registration interval asked for (seconds).
    pub register_expires: u32,
    /// Publication interval asked for (seconds).
    pub publish_expires: u32,
    /// Subscription interval asked for (seconds).
    pub subscribe_expires: u32,
    /// Peer to peer: how often a watched peer is sent an OPTIONS heartbeat.
    pub heartbeat_interval: Duration,
    /// Peer to peer: a watched peer silent this long is reported Offline.
    pub offline_threshold: Duration,
    /// First delay before retrying a failed registration, publication or subscription.
    pub retry_min: Duration,
    /// Longest delay between retries (the delay doubles up to this).
    pub retry_max: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            transaction_timeout: Duration::from_secs(32),
            register_expires: 3600,
            publish_expires: 3600,
            subscribe_expires: 3600,
            heartbeat_interval: Duration::from_secs(30),
            offline_threshold: Duration::from_secs(90),
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// When to refresh something granted for `expires` seconds: at four fifths of the interval,
/// so a refresh lost once still has time to be retried.
pub(crate) fn refresh_after(expires: u32) -> Duration {
    Duration::from_millis(u64::from(expires.max(1)) * 800)
}

/// The future a token callback returns.
pub type TokenFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// Where bearer tokens come from (RFC 8898).
#[derive(Clone)]
pub enum TokenSource {
    /// One token, used until the server refuses it.
    Static(String),
    /// A callback returning a fresh token: called before the first request, and again each
    /// time the server answers 401 with `error="invalid_token"` (an expired token).
    Callback(Arc<dyn Fn() -> TokenFuture + Send + Sync>),
}

impl TokenSource {
    /// A callback token source from an async closure.
    ///
    /// ```
    /// use presence_client::TokenSource;
    /// let source = TokenSource::from_fn(|| async {
    ///     // Ask the OAuth provider here.
    ///     Ok::<_, std::io::Error>("eyJ...".to_string())
    /// });
    /// # let _ = source;
    /// ```
    pub fn from_fn<F, Fut, E>(f: F) -> TokenSource
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<String, E>> + Send + 'static,
        E: fmt::Display,
    {
        TokenSource::Callback(Arc::new(move || {
            let future = f();
            Box::pin(async move { future.await.map_err(|e| e.to_string()) })
        }))
    }
}

impl fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenSource::Static(_) => f.write_str("TokenSource::Static(..)"),
            TokenSource::Callback(_) => f.write_str("TokenSource::Callback(..)"),
        }
    }
}

impl From<String> for TokenSource {
    fn from(token: String) -> Self {
        TokenSource::Static(token)
    }
}

impl From<&str> for TokenSource {
    fn from(token: &str) -> Self {
        TokenSource::Static(token.to_owned())
    }
}

/// How the peer proves who it is to the server.
#[derive(Clone, Debug, Default)]
pub enum Credentials {
    /// Nothing (peer to peer, or a server that needs nothing).
    #[default]
    None,
    /// OAuth 2.0 bearer tokens (RFC 8898).
    Bearer(TokenSource),
    /// HTTP Digest (RFC 3261 §22.4, RFC 8760), for servers without token support.
    Digest {
        /// The user name.
        username: String,
        /// The password.
        password: String,
    },
}
