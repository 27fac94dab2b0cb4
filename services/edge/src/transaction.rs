//! RFC 3261 §17 non-INVITE transactions.
//!
//! Server side: the first copy of a request runs its handler; retransmissions
//! arriving while it runs are absorbed, and those arriving after it answered
//! get the cached final response again (held for Timer J = 64·T1 on UDP, not
//! at all on reliable transports). A retransmission is the same request
//! again: same branch, sent-by, method and CSeq (RFC 3261 §17.2.3). A
//! request reusing a branch with another CSeq (looping test tools, RFC 4475
//! examples) is a new request, never answered with a response that carries
//! another CSeq.
//!
//! Client side (NOTIFY): the request is retransmitted over UDP from T1,
//! doubling up to T2 (Timer E), until a final response or Timer F = 64·T1;
//! over reliable transports it is sent once and Timer F still bounds the
//! wait.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sip::{HeaderName, Response};
use tokio::sync::mpsc;

use crate::transport::{Protocol, SendError};
use crate::Edge;

mod server;

pub use server::{Begin, ServerTransactions, TransactionKey, MAX_SERVER_TRANSACTIONS};

/// Gives a final response a To tag when the request had none (RFC 3261
/// §8.2.6.2). Handlers that create a dialog set their own tag; every other
/// answer gets one derived from the transaction, so a retransmitted
/// request is answered with the same tag.
pub fn ensure_to_tag(response: &mut Response, key: &TransactionKey) {
    if response.status() < 200 {
        return;
    }
    let Ok(to) = response.headers().to() else {
        return;
    };
    if to.tag().is_some() {
        return;
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (&key.id, &key.method, &key.sent_by, &key.cseq).hash(&mut hasher);
    let tagged = to.with_tag(format!("{:016x}", hasher.finish())).to_string();
    response.headers_mut().set(&HeaderName::To, &tagged);
}

/// Outcome of a client transaction.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Timer F fired: no final response.
    #[error("no final response within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Client transactions (outgoing NOTIFYs) waiting for responses.
pub struct ClientTransactions {
    pending: Mutex<HashMap<String, mpsc::Sender<u16>>>,
}

impl Default for ClientTransactions {
    fn default() -> Self {
        Self::new()
    }
}

impl ClientTransactions {
    pub fn new() -> Self {
        ClientTransactions {
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `bytes` (a request whose top Via has `branch`) and waits for its
    /// final status code, retransmitting over UDP.
    pub async fn request(
        &self,
        edge: &Edge,
        protocol: Protocol,
        remote: SocketAddr,
        branch: &str,
        bytes: Bytes,
    ) -> Result<u16, ClientError> {
        let (tx, mut rx) = mpsc::channel(4);
        locks::lock(&self.pending).insert(branch.to_string(), tx);
        let result = self.run(edge, protocol, remote, &mut rx, bytes).await;
        locks::lock(&self.pending).remove(branch);
        result
    }

    async fn run(
        &self,
        edge: &Edge,
        protocol: Protocol,
        remote: SocketAddr,
        rx: &mut mpsc::Receiver<u16>,
        bytes: Bytes,
    ) -> Result<u16, ClientError> {
        let t1 = edge.config.t1;
        let t2 = edge.config.t2;
        let timer_f = t1 * 64;
        let deadline = tokio::time::Instant::now() + timer_f;
        edge.transports
            .send(protocol, remote, bytes.clone())
            .await?;
        let mut interval = t1;
        let mut provisional = false;
        loop {
            let wait = if protocol.is_reliable() {
                deadline.saturating_duration_since(tokio::time::Instant::now())
            } else {
                interval.min(deadline.saturating_duration_since(tokio::time::Instant::now()))
            };
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(Some(status)) if status >= 200 => return Ok(status),
                Ok(Some(_)) => provisional = true,
                Ok(None) => return Err(ClientError::Timeout(timer_f)),
                Err(_) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Err(ClientError::Timeout(timer_f));
                    }
                    if !protocol.is_reliable() {
                        // Timer E: double up to T2, or stay at T2 once a
                        // provisional response arrived.
                        interval = if provisional {
                            t2
                        } else {
                            (interval * 2).min(t2)
                        };
                        edge.transports
                            .send(protocol, remote, bytes.clone())
                            .await?;
                    }
                }
            }
        }
    }

    /// Hands a response to its waiting transaction. Returns false for a
    /// stray response (no such transaction).
    pub fn on_response(&self, branch: &str, status: u16) -> bool {
        let sender = locks::lock(&self.pending).get(branch).cloned();
        match sender {
            Some(tx) => {
                let _ = tx.try_send(status);
                true
            }
            None => false,
        }
    }
}

/// Periodically drops finished server transactions.
pub async fn purge_loop(edge: Arc<Edge>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        edge.server_transactions.purge();
    }
}

#[cfg(test)]
mod tests;
