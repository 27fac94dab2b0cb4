//! A UDP endpoint shared by many user agents ("batched sockets"): one socket,
//! one task reading it in a loop, any number of concurrent client
//! transactions, and incoming requests answered at once.
//!
//! * Client transactions (RFC 3261 §17.1.2, non-INVITE): the request is
//!   retransmitted with the same bytes (and so the same branch) at T1, 2·T1,
//!   … up to T2 until a final response, at T2 after a provisional one, and
//!   given up after 64·T1 (Timer F). Responses are matched to transactions by
//!   the branch of their top Via.
//! * Incoming requests (the watchers' NOTIFYs) go to an [`Inbound`] handler,
//!   whose status is sent back at once (a retransmitted request is handled and
//!   answered again, which is what a stateless answer to a non-INVITE request
//!   amounts to).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use sip::{Message, Request, Response, Via};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock::Clock;

/// Errors of the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The socket could not be created or bound.
    #[error("binding UDP {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The reason.
        source: std::io::Error,
    },
    /// A datagram could not be sent.
    #[error("sending to {to}: {source}")]
    Send {
        /// The destination.
        to: SocketAddr,
        /// The reason.
        source: std::io::Error,
    },
    /// No final response within Timer F.
    #[error("no final response within {0:?}")]
    Timeout(Duration),
    /// The request has no top Via branch to match responses with.
    #[error("the request has no Via branch")]
    NoBranch,
    /// The endpoint's receive loop ended.
    #[error("the endpoint is closed")]
    Closed,
}

/// RFC 3261 timers of client transactions.
#[derive(Clone, Copy, Debug)]
pub struct Timers {
    /// T1, the round-trip estimate (500 ms by default).
    pub t1: Duration,
    /// T2, the longest retransmission interval (4 s by default).
    pub t2: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
        }
    }
}

impl Timers {
    /// Timer F: how long a non-INVITE transaction waits for a final response.
    pub fn timer_f(&self) -> Duration {
        self.t1 * 64
    }
}

/// Handles requests the endpoint receives.
pub trait Inbound: Send + Sync + 'static {
    /// Handles `request`, received at `at_ns` on the run's clock from `source`;
    /// returns the status to answer with.
    fn request(&self, request: &Request, source: SocketAddr, at_ns: u64) -> u16;
}

/// A completed client transaction.
#[derive(Debug)]
pub struct Transaction {
    /// The final response.
    pub response: Response,
    /// When the request was first sent (run clock).
    pub sent_ns: u64,
    /// When the final response arrived (run clock).
    pub answered_ns: u64,
    /// How many times the request was sent again.
    pub retransmissions: u32,
}

/// A transaction that ended without a final response.
#[derive(Debug)]
pub struct Failed {
    /// Why.
    pub error: TransportError,
    /// How many times the request was sent again before giving up.
    pub retransmissions: u32,
}

/// Counters of what the endpoint received outside its transactions.
#[derive(Clone, Copy, Debug, Default)]
pub struct EndpointCounters {
    /// Datagrams that did not parse as SIP.
    pub unparseable: u64,
    /// Responses for no open transaction (late retransmissions of responses).
    pub stray_responses: u64,
    /// Answers to incoming requests that could not be sent.
    pub answer_errors: u64,
}

struct Shared {
    socket: UdpSocket,
    pending: Mutex<HashMap<String, mpsc::Sender<Response>>>,
    counters: Mutex<EndpointCounters>,
}

// A panic while holding these locks leaves plain maps and counters behind, which
// are still consistent; keep going rather than poison every later call.
use locks::lock;

/// One UDP socket and the loop reading it.
pub struct Endpoint {
    shared: Arc<Shared>,
    local: SocketAddr,
    timers: Timers,
    clock: Clock,
    receiver: JoinHandle<()>,
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.receiver.abort();
    }
}

/// Receive buffer asked of the kernel: NOTIFY bursts to thousands of watchers arrive
/// faster than one task reads them. The kernel caps it at `net.core.rmem_max`.
const RECEIVE_BUFFER: usize = 8 * 1024 * 1024;

impl Endpoint {
    /// Binds `addr` and starts the receive loop, handing requests to `inbound`.
    pub fn bind(
        addr: SocketAddr,
        timers: Timers,
        clock: Clock,
        inbound: Arc<dyn Inbound>,
    ) -> Result<Endpoint, TransportError> {
        let bind_error = |source| TransportError::Bind { addr, source };
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )
        .map_err(bind_error)?;
        // Best effort: a smaller buffer only means earlier drops, which retransmissions cover.
        let _ = socket.set_recv_buffer_size(RECEIVE_BUFFER);
        let _ = socket.set_send_buffer_size(RECEIVE_BUFFER);
        socket.set_nonblocking(true).map_err(bind_error)?;
        socket.bind(&addr.into()).map_err(bind_error)?;
        let std_socket: std::net::UdpSocket = socket.into();
        let socket = UdpSocket::from_std(std_socket).map_err(bind_error)?;
        let local = socket.local_addr().map_err(bind_error)?;
        let shared = Arc::new(Shared {
            socket,
            pending: Mutex::new(HashMap::new()),
            counters: Mutex::new(EndpointCounters::default()),
        });
        let receiver = tokio::spawn(receive_loop(shared.clone(), clock, inbound));
        Ok(Endpoint {
            shared,
            local,
            timers,
            clock,
            receiver,
        })
    }

    /// The bound address.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// What was received outside transactions so far.
    pub fn counters(&self) -> EndpointCounters {
        *lock(&self.shared.counters)
    }

    /// Sends `request` to `target` and retransmits it until a final response or Timer F.
    pub async fn transact(
        &self,
        request: &Request,
        target: SocketAddr,
    ) -> Result<Transaction, Failed> {
        let fail = |error, retransmissions| Failed {
            error,
            retransmissions,
        };
        let branch = match request
            .headers()
            .top_via()
            .ok()
            .and_then(|v| v.branch().filter(|b| !b.is_empty()).map(str::to_owned))
        {
            Some(branch) => branch,
            None => return Err(fail(TransportError::NoBranch, 0)),
        };
        let (tx, mut rx) = mpsc::channel(4);
        lock(&self.shared.pending).insert(branch.clone(), tx);
        let _forget = Forget {
            shared: &self.shared,
            branch,
        };
        let bytes = request.to_bytes();
        let sent_ns = self.clock.now_ns();
        let start = Instant::now();
        self.send(&bytes, target).await.map_err(|e| fail(e, 0))?;
        let deadline = start + self.timers.timer_f();
        let mut interval = self.timers.t1;
        let mut next_send = start + interval;
        let mut retransmissions = 0u32;
        let mut proceeding = false;
        loop {
            let wake = next_send.min(deadline);
            match tokio::time::timeout_at(wake, rx.recv()).await {
                Ok(Some(response)) if response.status() >= 200 => {
                    return Ok(Transaction {
                        response,
                        sent_ns,
                        answered_ns: self.clock.now_ns(),
                        retransmissions,
                    })
                }
                Ok(Some(_provisional)) => {
                    // Proceeding (RFC 3261 §17.1.2.2): retransmit at T2 from now on.
                    if !proceeding {
                        proceeding = true;
                        interval = self.timers.t2;
                        next_send = Instant::now() + interval;
                    }
                }
                Ok(None) => return Err(fail(TransportError::Closed, retransmissions)),
                Err(_elapsed) => {
                    if Instant::now() >= deadline {
                        return Err(fail(
                            TransportError::Timeout(self.timers.timer_f()),
                            retransmissions,
                        ));
                    }
                    self.send(&bytes, target)
                        .await
                        .map_err(|e| fail(e, retransmissions))?;
                    retransmissions += 1;
                    if !proceeding {
                        interval = (interval * 2).min(self.timers.t2);
                    }
                    next_send = Instant::now() + interval;
                }
            }
        }
    }

    async fn send(&self, bytes: &Bytes, to: SocketAddr) -> Result<(), TransportError> {
        self.shared
            .socket
            .send_to(bytes, to)
            .await
            .map(|_| ())
            .map_err(|source| TransportError::Send { to, source })
    }
}

/// Removes a transaction from the pending map when it ends (or its future is dropped).
struct Forget<'a> {
    shared: &'a Shared,
    branch: String,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(&self.shared.pending).remove(&self.branch);
    }
}

async fn receive_loop(shared: Arc<Shared>, clock: Clock, inbound: Arc<dyn Inbound>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (len, source) = match shared.socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // ICMP port unreachable and the like surface here on some systems; the
            // socket itself is still usable.
            Err(_) => continue,
        };
        let at_ns = clock.now_ns();
        let message = match sip::parse(Bytes::copy_from_slice(&buf[..len])) {
            Ok(message) => message,
            Err(_) => {
                lock(&shared.counters).unparseable += 1;
                continue;
            }
        };
        match message {
            Message::Response(response) => deliver(&shared, response),
            Message::Request(request) => {
                let status = inbound.request(&request, source, at_ns);
                answer(&shared, &request, status, source).await;
            }
        }
    }
}

fn deliver(shared: &Shared, response: Response) {
    let branch = response
        .headers()
        .top_via()
        .ok()
        .and_then(|v| v.branch().map(str::to_owned));
    let sender = branch.and_then(|b| lock(&shared.pending).get(&b).cloned());
    match sender {
        // A full queue means the transaction is already done with earlier responses.
        Some(sender) => {
            let _ = sender.try_send(response);
        }
        None => lock(&shared.counters).stray_responses += 1,
    }
}

async fn answer(shared: &Shared, request: &Request, status: u16, source: SocketAddr) {
    let mut builder = Response::for_request(request, status);
    if status >= 300 {
        // A refusal outside a dialog still needs a To tag (RFC 3261 §8.2.6.2).
        builder = builder.to_tag(&hex::encode(rand::random::<[u8; 6]>()));
    }
    let response = builder.build();
    let to = request
        .headers()
        .top_via()
        .map(|via| reply_address(&via, source))
        .unwrap_or(source);
    if shared
        .socket
        .send_to(&response.to_bytes(), to)
        .await
        .is_err()
    {
        lock(&shared.counters).answer_errors += 1;
    }
}

/// Where the response to a request goes (RFC 3261 §18.2.2, RFC 3581): the source when
/// the client asked for `rport`, else the `received` address (or the sent-by host when it
/// is an IP address) at the sent-by port, else the source.
pub fn reply_address(via: &Via, source: SocketAddr) -> SocketAddr {
    if via.rport().is_some() {
        return source;
    }
    let port = via.port.unwrap_or(5060);
    let host = via.received().unwrap_or(&via.host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, port),
        Err(_) => source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn via(text: &str) -> Via {
        let request = format!(
            "OPTIONS sip:a@b SIP/2.0\r\nVia: {text}\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n\r\n"
        );
        let message = sip::parse(Bytes::from(request)).expect("parses");
        message.headers().top_via().expect("a Via")
    }

    #[test]
    fn replies_follow_rfc_3581_and_3261() {
        let source: SocketAddr = "127.0.0.1:40000".parse().expect("address");
        assert_eq!(
            reply_address(
                &via("SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK1;rport"),
                source
            ),
            source
        );
        assert_eq!(
            reply_address(&via("SIP/2.0/UDP 127.0.0.2:5070;branch=z9hG4bK1"), source),
            "127.0.0.2:5070".parse::<SocketAddr>().expect("address")
        );
        assert_eq!(
            reply_address(&via("SIP/2.0/UDP 127.0.0.2;branch=z9hG4bK1"), source),
            "127.0.0.2:5060".parse::<SocketAddr>().expect("address")
        );
        assert_eq!(
            reply_address(&via("SIP/2.0/UDP sip.example.com;branch=z9hG4bK1"), source),
            source
        );
        assert_eq!(
            reply_address(
                &via("SIP/2.0/UDP sip.example.com:5080;branch=z9hG4bK1;received=127.0.0.3"),
                source
            ),
            "127.0.0.3:5080".parse::<SocketAddr>().expect("address")
        );
    }

    #[test]
    fn timer_f_is_64_t1() {
        assert_eq!(Timers::default().timer_f(), Duration::from_secs(32));
    }
}
