//! Binding the configured listeners at start-up.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::{TcpListener, UdpSocket};

use super::{tls, Protocol};
use crate::EdgeConfig;

/// Sockets bound at start-up.
#[derive(Clone)]
pub struct Bound {
    pub(super) udp: Vec<Arc<UdpSocket>>,
    pub(super) streams: Vec<(Protocol, Arc<TcpListener>)>,
    pub(super) tls: Option<Arc<tls::ReloadingTls>>,
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
