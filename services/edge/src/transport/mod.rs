//! SIP transports: UDP, TCP, TLS, WebSocket and secure WebSocket (RFC 7118)
//! listeners on IPv4 and IPv6, and sending to a peer.
//!
//! Datagrams and framed stream messages are handed to
//! [`crate::methods::receive`], each in its own task. What the edge sends
//! goes back the way the peer came in: UDP to the address RFC 3261 §18.2.2
//! and RFC 3581 name, stream transports over the connection the request
//! arrived on while it is open (RFC 3261 §18: connections are indexed by
//! transport and remote address).
//!
//! Every stream connection (TCP, TLS, WS, WSS alike) counts against one cap
//! ([`EdgeConfig::max_connections`]), is closed when idle
//! ([`EdgeConfig::idle_timeout`]) and must deliver each message within
//! [`EdgeConfig::message_timeout`] of its first byte — raw bytes, so a peer
//! trickling a TLS record or a WebSocket frame is caught as well as one
//! trickling SIP text. What is refused is counted in [`TransportCounters`]
//! and logged.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::{Edge, EdgeConfig};

mod stream;
mod tcp;
pub mod tls;
mod udp;
mod ws;

pub use tls::TlsSettings;

/// The transport protocols the edge speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Udp,
    Tcp,
    Tls,
    /// WebSocket (RFC 7118).
    Ws,
    /// WebSocket over TLS (RFC 7118).
    Wss,
}

impl Protocol {
    /// Every protocol, in the order listeners are reported.
    pub const ALL: [Protocol; 5] = [
        Protocol::Udp,
        Protocol::Tcp,
        Protocol::Tls,
        Protocol::Ws,
        Protocol::Wss,
    ];

    /// Lower-case name, as stored in dialog records.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Udp => "udp",
            Protocol::Tcp => "tcp",
            Protocol::Tls => "tls",
            Protocol::Ws => "ws",
            Protocol::Wss => "wss",
        }
    }

    /// Upper-case name, as written in Via (RFC 3261 §20.42, RFC 7118 §5.3).
    pub fn via_name(self) -> &'static str {
        match self {
            Protocol::Udp => "UDP",
            Protocol::Tcp => "TCP",
            Protocol::Tls => "TLS",
            Protocol::Ws => "WS",
            Protocol::Wss => "WSS",
        }
    }

    /// The `transport` URI parameter naming this protocol in a Contact.
    /// RFC 7118 §5.2 defines `ws` for WebSocket whether secured or not (a
    /// `sips:` URI asks for the secure one); UDP needs no parameter.
    pub fn uri_transport(self) -> Option<&'static str> {
        match self {
            Protocol::Udp => None,
            Protocol::Tcp => Some("tcp"),
            Protocol::Tls => Some("tls"),
            Protocol::Ws | Protocol::Wss => Some("ws"),
        }
    }

    pub fn parse(name: &str) -> Option<Protocol> {
        match name.to_ascii_lowercase().as_str() {
            "udp" => Some(Protocol::Udp),
            "tcp" => Some(Protocol::Tcp),
            "tls" => Some(Protocol::Tls),
            "ws" => Some(Protocol::Ws),
            "wss" => Some(Protocol::Wss),
            _ => None,
        }
    }

    /// Reliable transports neither retransmit nor need Timer J.
    pub fn is_reliable(self) -> bool {
        !matches!(self, Protocol::Udp)
    }

    /// Whether the transport is encrypted (fit for `sips:`).
    pub fn is_secure(self) -> bool {
        matches!(self, Protocol::Tls | Protocol::Wss)
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.via_name())
    }
}

/// Where a message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Source {
    pub protocol: Protocol,
    pub remote: SocketAddr,
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("no {0} transport is configured")]
    NoTransport(Protocol),
    #[error("no open {0} connection to {1}")]
    NoConnection(Protocol, SocketAddr),
    #[error("the {0} connection to {1} is not draining its queue")]
    Stalled(Protocol, SocketAddr),
    #[error("send failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Sockets bound at start-up.
#[derive(Clone)]
pub struct Bound {
    udp: Vec<Arc<UdpSocket>>,
    streams: Vec<(Protocol, Arc<TcpListener>)>,
    tls: Option<Arc<tls::ReloadingTls>>,
}

impl Bound {
    pub fn udp_addrs(&self) -> Vec<SocketAddr> {
        self.udp
            .iter()
            .filter_map(|s| s.local_addr().ok())
            .collect()
    }

    pub fn tcp_addrs(&self) -> Vec<SocketAddr> {
        self.addrs(Protocol::Tcp)
    }

    /// Bound addresses of one protocol.
    pub fn addrs(&self, protocol: Protocol) -> Vec<SocketAddr> {
        if protocol == Protocol::Udp {
            return self.udp_addrs();
        }
        self.streams
            .iter()
            .filter(|(p, _)| *p == protocol)
            .filter_map(|(_, l)| l.local_addr().ok())
            .collect()
    }

    /// Every bound address with its protocol.
    pub fn all(&self) -> Vec<(Protocol, SocketAddr)> {
        Protocol::ALL
            .iter()
            .flat_map(|p| self.addrs(*p).into_iter().map(move |a| (*p, a)))
            .collect()
    }
}

/// Binds every configured listener. IPv6 sockets are IPv6-only, so the
/// same port can be bound on `0.0.0.0` and `[::]`.
pub async fn bind(config: &EdgeConfig) -> anyhow::Result<Bound> {
    let wants_tls = !config.tls.is_empty() || !config.wss.is_empty();
    let tls = match (&config.tls_settings, wants_tls) {
        (Some(settings), true) => Some(tls::ReloadingTls::load(settings)?),
        (None, true) => anyhow::bail!(
            "TLS or WSS listeners need a certificate chain and key (--tls-cert, --tls-key)"
        ),
        (_, false) => None,
    };
    let mut bound = Bound {
        udp: Vec::new(),
        streams: Vec::new(),
        tls,
    };
    for addr in &config.udp {
        let socket = bind_udp(*addr).with_context(|| format!("binding UDP {addr}"))?;
        bound.udp.push(Arc::new(socket));
    }
    for (protocol, addrs) in [
        (Protocol::Tcp, &config.tcp),
        (Protocol::Tls, &config.tls),
        (Protocol::Ws, &config.ws),
        (Protocol::Wss, &config.wss),
    ] {
        for addr in addrs {
            let listener = bind_tcp(*addr).with_context(|| format!("binding {protocol} {addr}"))?;
            bound.streams.push((protocol, Arc::new(listener)));
        }
    }
    Ok(bound)
}

fn socket_for(addr: SocketAddr, kind: socket2::Type) -> std::io::Result<socket2::Socket> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, kind, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_nonblocking(true)?;
    Ok(socket)
}

/// Receive buffer asked for each UDP socket. The kernel's default (about
/// 200 KB, a few hundred datagrams) overflows when a burst arrives while the
/// reader waits for a worker thread; the kernel caps the request at
/// `net.core.rmem_max` (raise it to get the whole buffer).
const UDP_RECEIVE_BUFFER: usize = 8 << 20;

fn bind_udp(addr: SocketAddr) -> std::io::Result<UdpSocket> {
    let socket = socket_for(addr, socket2::Type::DGRAM)?;
    if let Err(e) = socket.set_recv_buffer_size(UDP_RECEIVE_BUFFER) {
        tracing::warn!(%addr, error = %e, "could not enlarge the UDP receive buffer");
    }
    socket.bind(&addr.into())?;
    UdpSocket::from_std(socket.into())
}

fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket_for(addr, socket2::Type::STREAM)?;
    // Restarting the edge must not wait for old connections' TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// Counters of what the transports refused or cut off.
#[derive(Debug, Default)]
pub struct TransportCounters {
    /// Datagrams over the size limit (answered 513 when they can be).
    pub oversized_datagrams: AtomicU64,
    /// Connections refused because the cap was reached.
    pub refused_connections: AtomicU64,
    /// Messages that could not be parsed or framed.
    pub unparseable: AtomicU64,
    /// Connections closed because a message did not arrive in time (slow-loris).
    pub slow_connections: AtomicU64,
    /// Connections closed after the idle timeout.
    pub idle_connections: AtomicU64,
    /// Stream messages or WebSocket frames over the size limit.
    pub oversized_stream_messages: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub tls_handshake_failures: AtomicU64,
    /// WebSocket upgrades refused (no `sip` subprotocol, bad request, timeout).
    pub ws_handshake_failures: AtomicU64,
    /// Sends given up because a connection did not drain its queue.
    pub stalled_writes: AtomicU64,
}

impl TransportCounters {
    /// Every counter with its name.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("oversized_datagrams", get(&self.oversized_datagrams)),
            ("refused_connections", get(&self.refused_connections)),
            ("unparseable", get(&self.unparseable)),
            ("slow_connections", get(&self.slow_connections)),
            ("idle_connections", get(&self.idle_connections)),
            (
                "oversized_stream_messages",
                get(&self.oversized_stream_messages),
            ),
            ("tls_handshake_failures", get(&self.tls_handshake_failures)),
            ("ws_handshake_failures", get(&self.ws_handshake_failures)),
            ("stalled_writes", get(&self.stalled_writes)),
        ]
    }

    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// The writing side of one open stream connection.
#[derive(Clone)]
pub(crate) struct Connection {
    id: u64,
    queue: mpsc::Sender<Bytes>,
}

/// What the edge writes in Via and Contact for one protocol and address family.
#[derive(Clone, Debug)]
struct Advert {
    host: String,
    port: Option<u16>,
    contact: sip::Uri,
    sips_contact: Option<sip::Uri>,
}

/// Sending side of the transports.
pub struct Transports {
    /// UDP sockets with their address family (`true`: IPv6), known once
    /// rather than asked of the kernel on every send.
    udp: Vec<(bool, Arc<UdpSocket>)>,
    connections: Mutex<HashMap<(Protocol, SocketAddr), Connection>>,
    open_connections: AtomicUsize,
    next_connection: AtomicU64,
    /// Keyed by protocol and "is IPv6"; `None` is the protocol's default.
    adverts: HashMap<(Protocol, Option<bool>), Advert>,
    /// Never used: `new` fills `adverts` for every protocol.
    fallback: Advert,
    max_connections: usize,
    message_timeout: Duration,
    pub counters: TransportCounters,
}

impl Transports {
    /// The local ports of the UDP sockets (for their kernel counters).
    pub fn udp_ports(&self) -> Vec<u16> {
        self.udp
            .iter()
            .filter_map(|(_, socket)| socket.local_addr().ok().map(|a| a.port()))
            .collect()
    }

    /// Fails when the advertised host does not make a valid SIP URI.
    pub fn new(config: &EdgeConfig, bound: &Bound) -> anyhow::Result<Self> {
        let listeners = bound.all();
        let mut adverts = HashMap::new();
        for protocol in Protocol::ALL {
            let own: Vec<SocketAddr> = listeners
                .iter()
                .filter(|(p, _)| *p == protocol)
                .map(|(_, a)| *a)
                .collect();
            let fallback = listeners.first().map(|(_, a)| *a);
            let default = own.first().copied().or(fallback);
            adverts.insert(
                (protocol, None),
                advert(config.advertised_host.as_deref(), protocol, default)?,
            );
            for v6 in [false, true] {
                if let Some(addr) = own.iter().find(|a| a.is_ipv6() == v6) {
                    adverts.insert(
                        (protocol, Some(v6)),
                        advert(config.advertised_host.as_deref(), protocol, Some(*addr))?,
                    );
                }
            }
        }
        if config.advertised_host.is_none() {
            if let Some((p, a)) = listeners.iter().find(|(_, a)| a.ip().is_unspecified()) {
                tracing::warn!(listener = %a, protocol = %p, "listening on a wildcard address without --advertised-host: Via and Contact will name the wildcard address");
            }
        }
        let fallback = advert(config.advertised_host.as_deref(), Protocol::Udp, None)?;
        Ok(Transports {
            udp: bound
                .udp
                .iter()
                .filter_map(|s| Some((s.local_addr().ok()?.is_ipv6(), s.clone())))
                .collect(),
            fallback,
            connections: Mutex::new(HashMap::new()),
            open_connections: AtomicUsize::new(0),
            next_connection: AtomicU64::new(1),
            adverts,
            max_connections: config.max_connections,
            message_timeout: config.message_timeout,
            counters: TransportCounters::default(),
        })
    }

    fn advert(&self, protocol: Protocol, remote: Option<SocketAddr>) -> &Advert {
        remote
            .and_then(|r| self.adverts.get(&(protocol, Some(r.is_ipv6()))))
            .or_else(|| self.adverts.get(&(protocol, None)))
            .unwrap_or(&self.fallback)
    }

    /// Host and port this edge writes in Via for `protocol`.
    pub fn sent_by(&self, protocol: Protocol) -> (String, Option<u16>) {
        self.sent_by_for(protocol, None)
    }

    /// Host and port this edge writes in Via for `protocol` toward `remote`
    /// (the listener of the remote's address family, when there is one).
    pub fn sent_by_for(
        &self,
        protocol: Protocol,
        remote: Option<SocketAddr>,
    ) -> (String, Option<u16>) {
        let advert = self.advert(protocol, remote);
        (advert.host.clone(), advert.port)
    }

    /// The edge's own URI for Contact headers on `protocol`.
    pub fn contact_uri(&self, protocol: Protocol) -> sip::Uri {
        self.contact_for(protocol, None, None)
    }

    /// The edge's Contact toward `remote` on `protocol`: a `sips:` URI when
    /// `peer_uri` (the Request-URI of a dialog-creating request, or a
    /// dialog's remote target) is `sips:` and the transport is secure
    /// (RFC 3261 §12.1.1), else `sip:` with a `transport` parameter.
    pub fn contact_for(
        &self,
        protocol: Protocol,
        remote: Option<SocketAddr>,
        peer_uri: Option<&sip::Uri>,
    ) -> sip::Uri {
        let wants_sips = peer_uri.is_some_and(|u| *u.scheme() == sip::Scheme::Sips);
        let advert = self.advert(protocol, remote);
        match (&advert.sips_contact, wants_sips) {
            (Some(sips), true) => sips.clone(),
            _ => advert.contact.clone(),
        }
    }

    /// Where the response to a request whose (already stamped) top Via is
    /// `via` goes, per RFC 3261 §18.2.2 and RFC 3581 §4: over the same
    /// connection on stream transports; on UDP to the source address and
    /// port when `rport` is present, else to the source address (the
    /// `received` address) and the port in sent-by (default 5060).
    pub fn response_destination(via: &sip::Via, source: Source) -> Source {
        if source.protocol.is_reliable() || via.rport().is_some() {
            return source;
        }
        Source {
            protocol: source.protocol,
            remote: SocketAddr::new(source.remote.ip(), via.port.unwrap_or(5060)),
        }
    }

    /// Sends one message to a peer.
    pub async fn send(
        &self,
        protocol: Protocol,
        remote: SocketAddr,
        bytes: Bytes,
    ) -> Result<(), SendError> {
        if protocol == Protocol::Udp {
            let (_, socket) = self
                .udp
                .iter()
                .find(|(v6, _)| *v6 == remote.is_ipv6())
                .or_else(|| self.udp.first())
                .ok_or(SendError::NoTransport(protocol))?;
            socket.send_to(&bytes, remote).await?;
            return Ok(());
        }
        let queue = self
            .connections
            .lock()
            .ok()
            .and_then(|c| c.get(&(protocol, remote)).map(|c| c.queue.clone()))
            .ok_or(SendError::NoConnection(protocol, remote))?;
        match queue.send_timeout(bytes, self.message_timeout).await {
            Ok(()) => Ok(()),
            Err(mpsc::error::SendTimeoutError::Timeout(_)) => {
                TransportCounters::bump(&self.counters.stalled_writes);
                Err(SendError::Stalled(protocol, remote))
            }
            Err(mpsc::error::SendTimeoutError::Closed(_)) => {
                Err(SendError::NoConnection(protocol, remote))
            }
        }
    }

    /// Whether a stream connection of `protocol` to `remote` is open.
    pub fn has_connection(&self, protocol: Protocol, remote: SocketAddr) -> bool {
        self.connections
            .lock()
            .map(|c| c.contains_key(&(protocol, remote)))
            .unwrap_or(false)
    }

    /// Number of open stream connections.
    pub fn open_connections(&self) -> usize {
        self.open_connections.load(Ordering::Acquire)
    }

    /// Takes one of the `max_connections` slots, or counts a refusal.
    fn admit(edge: &Arc<Edge>, protocol: Protocol, remote: SocketAddr) -> Option<Slot> {
        let transports = &edge.transports;
        let open = transports.open_connections.fetch_add(1, Ordering::AcqRel);
        if open >= transports.max_connections {
            transports.open_connections.fetch_sub(1, Ordering::AcqRel);
            TransportCounters::bump(&transports.counters.refused_connections);
            tracing::warn!(%remote, %protocol, open, "connection refused: too many open connections");
            return None;
        }
        Some(Slot { edge: edge.clone() })
    }

    /// Makes a connection the way to reach `remote` on `protocol` until the
    /// returned guard is dropped.
    fn register(
        edge: &Arc<Edge>,
        protocol: Protocol,
        remote: SocketAddr,
        queue: mpsc::Sender<Bytes>,
    ) -> Registration {
        let id = edge
            .transports
            .next_connection
            .fetch_add(1, Ordering::Relaxed);
        if let Ok(mut connections) = edge.transports.connections.lock() {
            connections.insert((protocol, remote), Connection { id, queue });
        }
        Registration {
            edge: edge.clone(),
            key: (protocol, remote),
            id,
        }
    }
}

fn advert(
    advertised_host: Option<&str>,
    protocol: Protocol,
    addr: Option<SocketAddr>,
) -> anyhow::Result<Advert> {
    let host = match (advertised_host, addr) {
        (Some(host), _) => host.to_string(),
        (None, Some(SocketAddr::V6(a))) => format!("[{}]", a.ip()),
        (None, Some(SocketAddr::V4(a))) => a.ip().to_string(),
        (None, None) => "127.0.0.1".into(),
    };
    let port = addr.map(|a| a.port());
    let invalid = || format!("advertised host {host:?} is not a valid SIP host");
    let mut contact = sip::Uri::sip(None, &host, port).with_context(invalid)?;
    if let Some(transport) = protocol.uri_transport() {
        contact = contact
            .with_param("transport", Some(transport))
            .with_context(invalid)?;
    }
    let sips_contact = if protocol.is_secure() {
        let sips = sip::Uri::sips(None, &host, port).with_context(invalid)?;
        Some(match protocol {
            // sips: alone means TLS; WebSocket needs its parameter.
            Protocol::Wss => sips
                .with_param("transport", Some("ws"))
                .with_context(invalid)?,
            _ => sips,
        })
    } else {
        None
    };
    Ok(Advert {
        host,
        port,
        contact,
        sips_contact,
    })
}

/// Whether a Via sent-by host names exactly this address (IPv6 references
/// compared as addresses, so `[::1]` matches `::1`).
pub fn host_is(host: &str, ip: IpAddr) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse::<IpAddr>().is_ok_and(|h| h == ip)
}

/// One of the `max_connections` slots; released when dropped.
pub(crate) struct Slot {
    edge: Arc<Edge>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.edge
            .transports
            .open_connections
            .fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection's entry in the connection table; removed when dropped
/// (unless a newer connection from the same address replaced it).
pub(crate) struct Registration {
    edge: Arc<Edge>,
    key: (Protocol, SocketAddr),
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut connections) = self.edge.transports.connections.lock() {
            if connections.get(&self.key).is_some_and(|c| c.id == self.id) {
                connections.remove(&self.key);
            }
        }
    }
}

/// When the current partial message of a connection started arriving, in
/// raw bytes (below TLS and WebSocket framing).
#[derive(Debug)]
pub(crate) struct ReadClock {
    base: Instant,
    /// Milliseconds since `base` plus one; zero when nothing is pending.
    pending_since: AtomicU64,
}

impl ReadClock {
    pub(crate) fn new() -> Arc<ReadClock> {
        Arc::new(ReadClock {
            base: Instant::now(),
            pending_since: AtomicU64::new(0),
        })
    }

    fn mark(&self) {
        let now = self.base.elapsed().as_millis() as u64 + 1;
        let _ = self
            .pending_since
            .compare_exchange(0, now, Ordering::AcqRel, Ordering::Acquire);
    }

    /// A whole message (or keep-alive) was taken: nothing is pending.
    pub(crate) fn clear(&self) {
        self.pending_since.store(0, Ordering::Release);
    }

    pub(crate) fn pending_since(&self) -> Option<Instant> {
        match self.pending_since.load(Ordering::Acquire) {
            0 => None,
            ms => Some(self.base + Duration::from_millis(ms - 1)),
        }
    }
}

/// A socket whose reads start the [`ReadClock`].
pub(crate) struct Metered<S> {
    inner: S,
    clock: Arc<ReadClock>,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, clock: Arc<ReadClock>) -> Self {
        Metered { inner, clock }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.mark();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Starts the receive loops of every bound socket and the counters log.
pub fn serve(edge: Arc<Edge>, bound: Bound) -> Vec<JoinHandle<()>> {
    for (protocol, addr) in bound.all() {
        tracing::info!(%protocol, %addr, "SIP listener");
    }
    let mut tasks = Vec::new();
    for socket in bound.udp {
        tasks.push(tokio::spawn(udp::receive_loop(edge.clone(), socket)));
    }
    if let Some(reloading) = &bound.tls {
        tasks.push(tokio::spawn(tls::watch(reloading.clone())));
    }
    for (protocol, listener) in bound.streams {
        let tls = if protocol.is_secure() {
            bound.tls.clone()
        } else {
            None
        };
        tasks.push(tokio::spawn(stream::accept_loop(
            edge.clone(),
            protocol,
            listener,
            tls,
        )));
    }
    tasks.push(tokio::spawn(log_counters(edge)));
    tasks
}

/// Logs the transport counters once a minute when they changed.
async fn log_counters(edge: Arc<Edge>) {
    let mut last = edge.transports.counters.snapshot();
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = edge.transports.counters.snapshot();
        if now != last {
            let text: Vec<String> = now.iter().map(|(k, v)| format!("{k}={v}")).collect();
            tracing::info!(
                open_connections = edge.transports.open_connections(),
                counters = %text.join(" "),
                "transport counters"
            );
            last = now;
        }
    }
}
