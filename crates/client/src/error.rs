//! The errors of the SDK.

use std::time::Duration;

/// What went wrong; every fallible call of the SDK returns it, and a watcher's stream carries
/// it as an item without ending.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An address, identity or URI given by the application is not usable.
    #[error("invalid address {0:?}: {1}")]
    InvalidAddress(String, String),
    /// A host name did not resolve.
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
    /// Sending or receiving failed (socket error, connection refused or closed).
    #[error("network error: {0}")]
    Network(String),
    /// No final answer came within the transaction timeout.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The server refused the credentials (after a fresh token or Digest answer, if any).
    #[error("not authorized: {0}")]
    Unauthorized(String),
    /// The token callback failed.
    #[error("token source failed: {0}")]
    TokenSource(String),
    /// The server or peer answered with a failure status.
    #[error("{method} answered {status} {reason}")]
    Rejected {
        /// The request method.
        method: String,
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// A message from the network could not be understood (a malformed NOTIFY body, a
    /// response without the headers it needs). The subscription goes on.
    #[error("bad message from the network: {0}")]
    BadMessage(String),
    /// The subscription was ended by the notifier and will not be retried.
    #[error("subscription terminated: {0}")]
    Terminated(String),
    /// The peer has been shut down.
    #[error("the peer is shut down")]
    Closed,
    /// The operation needs a server (register first, or build the peer with one).
    #[error("no server configured: {0}")]
    NoServer(&'static str),
}

/// The SDK's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
