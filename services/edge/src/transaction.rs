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

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use sip::{HeaderName, Response};
use tokio::sync::mpsc;

use crate::transport::{Protocol, SendError, Source};
use crate::Edge;

/// Identifies a server transaction (RFC 3261 §17.2.3).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TransactionKey {
    /// Top Via branch, or Call-ID + CSeq + From tag for RFC 2543 peers
    /// whose branch lacks the magic cookie.
    pub id: String,
    /// Request method (ACK and CANCEL have transactions of their own).
    pub method: String,
    /// Top Via sent-by.
    pub sent_by: String,
    /// CSeq as number and method (`"2 REGISTER"`): a retransmission
    /// repeats it exactly.
    pub cseq: String,
}

enum ServerState {
    Proceeding,
    Completed { response: Bytes, source: Source },
}

struct ServerEntry {
    method: String,
    cseq: String,
    state: ServerState,
    since: Instant,
}

impl ServerEntry {
    fn is(&self, method: &str, cseq: &str) -> bool {
        self.method == method && self.cseq == cseq
    }
}

/// What to do with an incoming request.
pub enum Begin {
    /// A new transaction: run the handler.
    New,
    /// A retransmission: resend this response, if one was already sent.
    Retransmission(Option<(Bytes, Source)>),
    /// Too many transactions are open: answer 503 without running anything.
    Overloaded,
}

/// Most server transactions held at once (each holds its response for
/// Timer J, 32 s, on UDP: 16,000 requests/s keep about 512,000, some 600
/// bytes each); past it new requests get 503 rather than memory.
pub const MAX_SERVER_TRANSACTIONS: usize = 1_000_000;

/// Transactions sharing a branch and sent-by: the request's own, and
/// a CANCEL of it (RFC 3261 §9.2), told apart by method (and requests
/// reusing the branch with another CSeq, told apart by CSeq).
type Branch = (String, String);

#[derive(Default)]
struct Table {
    by_branch: HashMap<Branch, Vec<ServerEntry>>,
    len: usize,
    /// When each transaction may go, in the order they were started: a
    /// purge looks at what is due and nothing else, however many
    /// transactions are held. A transaction is first looked at an eighth
    /// of Timer J after Timer J from its start (4 s at the default T1:
    /// handlers answer within their service deadline, 2 s by default, so
    /// nearly every transaction is due then and goes at once), and kept if
    /// it is not due yet (answered late, or still unanswered).
    due: VecDeque<Due>,
}

/// A transaction's deadline in a purge queue.
struct Due {
    at: Instant,
    branch: Branch,
    method: String,
    cseq: String,
}

/// Server transactions of one edge.
pub struct ServerTransactions {
    table: Mutex<Table>,
    timer_j: Duration,
    capacity: usize,
}

impl ServerTransactions {
    pub fn new(t1: Duration) -> Self {
        Self::with_capacity(t1, MAX_SERVER_TRANSACTIONS)
    }

    /// Server transactions holding at most `capacity` at once.
    pub fn with_capacity(t1: Duration, capacity: usize) -> Self {
        ServerTransactions {
            table: Mutex::new(Table::default()),
            timer_j: t1 * 64,
            capacity,
        }
    }

    fn branch(key: &TransactionKey) -> Branch {
        (key.id.clone(), key.sent_by.clone())
    }

    /// Starts a transaction or recognises a retransmission.
    pub fn begin(&self, key: &TransactionKey) -> Begin {
        let mut table = locks::lock(&self.table);
        let Table {
            by_branch,
            len,
            due,
            ..
        } = &mut *table;
        let entries = by_branch.entry(Self::branch(key)).or_default();
        match entries.iter().find(|e| e.is(&key.method, &key.cseq)) {
            Some(ServerEntry {
                state: ServerState::Completed { response, source },
                ..
            }) => Begin::Retransmission(Some((response.clone(), *source))),
            Some(_) => Begin::Retransmission(None),
            None if *len >= self.capacity => {
                if entries.is_empty() {
                    by_branch.remove(&Self::branch(key));
                }
                Begin::Overloaded
            }
            None => {
                let now = Instant::now();
                entries.push(ServerEntry {
                    method: key.method.clone(),
                    cseq: key.cseq.clone(),
                    state: ServerState::Proceeding,
                    since: now,
                });
                *len += 1;
                due.push_back(Due {
                    at: now + self.timer_j + self.timer_j / 8,
                    branch: Self::branch(key),
                    method: key.method.clone(),
                    cseq: key.cseq.clone(),
                });
                Begin::New
            }
        }
    }

    /// Whether a transaction other than a CANCEL is open under the branch
    /// of `cancel` — the request a CANCEL cancels (RFC 3261 §9.2).
    pub fn has_cancelled_request(&self, cancel: &TransactionKey) -> bool {
        locks::lock(&self.table)
            .by_branch
            .get(&Self::branch(cancel))
            .is_some_and(|entries| entries.iter().any(|e| e.method != "CANCEL"))
    }

    /// Records the final response; kept for retransmissions on UDP only.
    pub fn complete(&self, key: &TransactionKey, response: Bytes, source: Source) {
        let mut table = locks::lock(&self.table);
        let Table { by_branch, len, .. } = &mut *table;
        let branch = Self::branch(key);
        let Some(entries) = by_branch.get_mut(&branch) else {
            return;
        };
        let Some(index) = entries.iter().position(|e| e.is(&key.method, &key.cseq)) else {
            return;
        };
        if source.protocol.is_reliable() {
            entries.swap_remove(index);
            *len -= 1;
            if entries.is_empty() {
                by_branch.remove(&branch);
            }
        } else {
            entries[index].state = ServerState::Completed { response, source };
            entries[index].since = Instant::now();
        }
    }

    /// Forgets a transaction whose handler produced no response (ACK).
    pub fn forget(&self, key: &TransactionKey) {
        let mut table = locks::lock(&self.table);
        let Table { by_branch, len, .. } = &mut *table;
        let branch = Self::branch(key);
        if let Some(entries) = by_branch.get_mut(&branch) {
            let before = entries.len();
            entries.retain(|e| !e.is(&key.method, &key.cseq));
            *len -= before - entries.len();
            if entries.is_empty() {
                by_branch.remove(&branch);
            }
        }
    }

    /// Drops transactions past Timer J (and abandoned ones past twice it).
    pub fn purge(&self) {
        let now = Instant::now();
        let mut table = locks::lock(&self.table);
        let Table {
            by_branch,
            len,
            due,
        } = &mut *table;
        while due.front().is_some_and(|d| d.at <= now) {
            let Some(item) = due.pop_front() else {
                break;
            };
            // The transaction may be gone already (answered over a stream,
            // forgotten) or not due yet (answered late, or unanswered).
            let Some(entries) = by_branch.get_mut(&item.branch) else {
                continue;
            };
            let Some(index) = entries.iter().position(|e| e.is(&item.method, &item.cseq)) else {
                continue;
            };
            let entry = &entries[index];
            let goes_at = match entry.state {
                ServerState::Completed { .. } => entry.since + self.timer_j,
                ServerState::Proceeding => entry.since + self.timer_j * 2,
            };
            if goes_at > now {
                due.push_back(Due {
                    at: goes_at,
                    ..item
                });
                continue;
            }
            entries.swap_remove(index);
            *len -= 1;
            if entries.is_empty() {
                by_branch.remove(&item.branch);
            }
        }
    }

    pub fn len(&self) -> usize {
        locks::lock(&self.table).len
    }

    /// Transactions whose handler has not answered yet (drain waits for them).
    pub fn in_progress(&self) -> usize {
        locks::lock(&self.table)
            .by_branch
            .values()
            .flatten()
            .filter(|e| matches!(e.state, ServerState::Proceeding))
            .count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

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
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};

    fn key(id: &str, method: &str) -> TransactionKey {
        TransactionKey {
            id: id.into(),
            method: method.into(),
            sent_by: "192.0.2.1:5060".into(),
            cseq: format!("1 {method}"),
        }
    }

    fn udp() -> Source {
        Source {
            protocol: Protocol::Udp,
            remote: SocketAddr::from((Ipv4Addr::LOCALHOST, 5060)),
        }
    }

    #[test]
    fn retransmissions_are_absorbed_then_answered_from_cache() {
        let table = ServerTransactions::new(Duration::from_millis(500));
        let k = key("z9hG4bK1", "SUBSCRIBE");
        assert!(matches!(table.begin(&k), Begin::New));
        assert!(matches!(table.begin(&k), Begin::Retransmission(None)));
        table.complete(&k, Bytes::from_static(b"SIP/2.0 200 OK\r\n\r\n"), udp());
        match table.begin(&k) {
            Begin::Retransmission(Some((bytes, to))) => {
                assert_eq!(&bytes[..], b"SIP/2.0 200 OK\r\n\r\n");
                assert_eq!(to, udp());
            }
            _ => panic!("a completed transaction answers from its cache"),
        }
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_branch_reused_with_another_cseq_is_a_new_transaction() {
        let table = ServerTransactions::new(Duration::from_millis(500));
        let first = key("z9hG4bKloop", "REGISTER");
        assert!(matches!(table.begin(&first), Begin::New));
        table.complete(&first, Bytes::from_static(b"CSeq: 1 REGISTER"), udp());
        // Same branch, next CSeq number: not a retransmission.
        let next = TransactionKey {
            cseq: "2 REGISTER".into(),
            ..first.clone()
        };
        assert!(matches!(table.begin(&next), Begin::New));
        // Same number, another CSeq method: not a retransmission either.
        let other = TransactionKey {
            cseq: "1 OPTIONS".into(),
            ..first.clone()
        };
        assert!(matches!(table.begin(&other), Begin::New));
        // The real retransmission still gets its own cached answer.
        match table.begin(&first) {
            Begin::Retransmission(Some((bytes, _))) => assert_eq!(&bytes[..], b"CSeq: 1 REGISTER"),
            _ => panic!("the first request's retransmission is answered from the cache"),
        }
        table.complete(&next, Bytes::from_static(b"CSeq: 2 REGISTER"), udp());
        match table.begin(&next) {
            Begin::Retransmission(Some((bytes, _))) => assert_eq!(&bytes[..], b"CSeq: 2 REGISTER"),
            _ => panic!("the second request's retransmission is answered from its cache"),
        }
        assert_eq!(table.len(), 3);
    }

    #[test]
    fn reliable_transports_keep_nothing_after_the_answer() {
        let table = ServerTransactions::new(Duration::from_millis(500));
        let k = key("z9hG4bK2", "PUBLISH");
        assert!(matches!(table.begin(&k), Begin::New));
        let tcp = Source {
            protocol: Protocol::Tcp,
            ..udp()
        };
        table.complete(&k, Bytes::from_static(b"x"), tcp);
        assert!(table.is_empty());
    }

    #[test]
    fn a_cancel_matches_the_request_of_its_branch_only() {
        let table = ServerTransactions::new(Duration::from_millis(500));
        let invite = key("z9hG4bK3", "INVITE");
        assert!(matches!(table.begin(&invite), Begin::New));
        let cancel = key("z9hG4bK3", "CANCEL");
        assert!(matches!(table.begin(&cancel), Begin::New));
        assert!(table.has_cancelled_request(&cancel));
        let stray = key("z9hG4bK4", "CANCEL");
        assert!(matches!(table.begin(&stray), Begin::New));
        assert!(!table.has_cancelled_request(&stray));
        assert_eq!(table.len(), 3);
        table.forget(&cancel);
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn a_full_table_refuses_new_transactions_but_still_matches_old_ones() {
        let table = ServerTransactions::with_capacity(Duration::from_millis(500), 2);
        assert!(matches!(table.begin(&key("a", "OPTIONS")), Begin::New));
        assert!(matches!(table.begin(&key("b", "OPTIONS")), Begin::New));
        assert!(matches!(
            table.begin(&key("c", "OPTIONS")),
            Begin::Overloaded
        ));
        assert!(matches!(
            table.begin(&key("a", "OPTIONS")),
            Begin::Retransmission(None)
        ));
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn final_answers_get_a_stable_to_tag_unless_they_have_one() {
        let request = sip::parse(Bytes::from_static(
            b"OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK9\r\n\
Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:example.com>\r\n\
Call-ID: c@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
        ));
        let Ok(sip::Message::Request(request)) = request else {
            panic!("test request does not parse");
        };
        let k = key("z9hG4bK9", "OPTIONS");
        let tag_of = |r: &Response| {
            r.headers()
                .to()
                .ok()
                .and_then(|t| t.tag().map(String::from))
        };
        let mut first = Response::for_request(&request, 200).build();
        ensure_to_tag(&mut first, &k);
        let mut second = Response::for_request(&request, 200).build();
        ensure_to_tag(&mut second, &k);
        assert!(tag_of(&first).is_some());
        assert_eq!(tag_of(&first), tag_of(&second));
        let mut own = Response::for_request(&request, 200).to_tag("mine").build();
        ensure_to_tag(&mut own, &k);
        assert_eq!(tag_of(&own).as_deref(), Some("mine"));
        let mut trying = Response::for_request(&request, 100).build();
        ensure_to_tag(&mut trying, &k);
        assert_eq!(tag_of(&trying), None);
    }

    #[test]
    fn purge_drops_completed_transactions_after_timer_j() {
        let table = ServerTransactions::new(Duration::from_millis(1));
        let k = key("z9hG4bK5", "REGISTER");
        assert!(matches!(table.begin(&k), Begin::New));
        table.complete(&k, Bytes::from_static(b"x"), udp());
        std::thread::sleep(Duration::from_millis(80));
        table.purge();
        assert!(table.is_empty());
        assert!(matches!(table.begin(&k), Begin::New));
    }
}
