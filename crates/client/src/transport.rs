//! Sockets: one UDP socket and one TCP listener on the same port, and the TCP connections
//! opened to servers or accepted from peers. Every message received, on any of them, goes
//! to one channel with the link it came over, so answers go back the same way.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use sip::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::error::{Error, Result};

/// A transport for SIP messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// One message per datagram; requests retransmitted until answered (RFC 3261 §17).
    Udp,
    /// Messages framed by Content-Length over a connection the peer keeps open, so a
    /// server that never opens connections can still send NOTIFYs back.
    Tcp,
    /// TCP inside TLS (rustls), to servers only: the peer opens TLS connections but does
    /// not accept them. Needs [`PeerBuilder::tls_config`](crate::PeerBuilder::tls_config).
    Tls,
    /// SIP over WebSocket (RFC 7118, subprotocol `sip`), to servers only: one SIP message
    /// per WebSocket message.
    Ws,
}

impl Transport {
    /// The name in Via (`UDP`, `TCP`).
    pub fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
            Transport::Ws => "WS",
        }
    }

    /// The `transport` URI parameter naming it, if any (UDP is the default).
    pub(crate) fn uri_param(self) -> Option<&'static str> {
        match self {
            Transport::Udp => None,
            Transport::Tcp => Some("tcp"),
            Transport::Tls => Some("tls"),
            Transport::Ws => Some("ws"),
        }
    }

    /// The transport a URI's `transport` parameter names, if one this crate speaks.
    pub(crate) fn from_uri(uri: &sip::Uri) -> Option<Transport> {
        match uri.param("transport").flatten() {
            Some(t) if t.eq_ignore_ascii_case("tcp") => Some(Transport::Tcp),
            Some(t) if t.eq_ignore_ascii_case("udp") => Some(Transport::Udp),
            Some(t) if t.eq_ignore_ascii_case("tls") => Some(Transport::Tls),
            Some(t) if t.eq_ignore_ascii_case("ws") => Some(Transport::Ws),
            _ => None,
        }
    }
}

/// Where a message goes or came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Link {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// How often an idle connection to a server carries a CRLF keep-alive (RFC 5626 §3.5.1), well
/// within the edge's idle timeout.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// How long opening a connection (and its TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A byte stream SIP is framed on: TCP, or TLS over TCP.
trait ByteStream: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> ByteStream for T {}

/// The sockets of one peer.
pub(crate) struct Net {
    udp: Arc<UdpSocket>,
    local: SocketAddr,
    connections: Mutex<HashMap<Link, mpsc::UnboundedSender<Bytes>>>,
    tls: Option<tokio_rustls::TlsConnector>,
    /// Host names of addresses resolved from names: what a TLS server's certificate is
    /// checked against.
    names: Mutex<HashMap<SocketAddr, String>>,
    incoming: mpsc::UnboundedSender<(Message, Link)>,
    /// Bumped whenever a connection closes: what was sent over it must be refreshed.
    lost: watch::Sender<u64>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    limits: sip::Limits,
}

impl Net {
    /// Binds UDP and TCP on one port (`bind` may have port 0: one port free for both is picked).
    pub async fn bind(
        bind: SocketAddr,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<(Arc<Net>, mpsc::UnboundedReceiver<(Message, Link)>)> {
        let mut attempts = 0;
        let (udp, listener) = loop {
            attempts += 1;
            let udp = UdpSocket::bind(bind)
                .await
                .map_err(|e| Error::Network(format!("binding UDP {bind}: {e}")))?;
            let local = udp
                .local_addr()
                .map_err(|e| Error::Network(e.to_string()))?;
            match TcpListener::bind(local).await {
                Ok(listener) => break (udp, listener),
                // The port picked for UDP is taken for TCP: pick another.
                Err(_) if bind.port() == 0 && attempts < 20 => continue,
                Err(e) => return Err(Error::Network(format!("binding TCP {local}: {e}"))),
            }
        };
        let local = udp
            .local_addr()
            .map_err(|e| Error::Network(e.to_string()))?;
        let (incoming, receiver) = mpsc::unbounded_channel();
        let net = Arc::new(Net {
            udp: Arc::new(udp),
            local,
            connections: Mutex::new(HashMap::new()),
            tls: tls.map(tokio_rustls::TlsConnector::from),
            names: Mutex::new(HashMap::new()),
            incoming,
            lost: watch::channel(0).0,
            tasks: Mutex::new(Vec::new()),
            limits: sip::Limits::default(),
        });
        let udp_task = tokio::spawn(read_udp(Arc::downgrade(&net), net.udp.clone()));
        let accept_task = tokio::spawn(accept_tcp(Arc::downgrade(&net), listener));
        net.keep(udp_task);
        net.keep(accept_task);
        Ok((net, receiver))
    }

    fn keep(&self, task: JoinHandle<()>) {
        let mut tasks = locks::lock(&self.tasks);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }

    /// The address both listeners are bound to.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// A receiver that changes each time a connection closes.
    pub fn lost(&self) -> watch::Receiver<u64> {
        self.lost.subscribe()
    }

    /// Sends one message over `link`, opening a TCP connection when there is none.
    pub async fn send(self: &Arc<Self>, link: Link, bytes: Bytes) -> Result<()> {
        match link.transport {
            Transport::Udp => self
                .udp
                .send_to(&bytes, link.addr)
                .await
                .map(|_| ())
                .map_err(|e| Error::Network(format!("UDP to {}: {e}", link.addr))),
            Transport::Tcp | Transport::Tls | Transport::Ws => {
                let existing = locks::lock(&self.connections).get(&link).cloned();
                let sender = match existing {
                    Some(sender) if !sender.is_closed() => sender,
                    _ => self.connect(link).await?,
                };
                sender
                    .send(bytes)
                    .map_err(|_| Error::Network(format!("connection to {} closed", link.addr)))
            }
        }
    }

    /// Where a URI is reached: its host and port (default 5060), over the transport its
    /// `transport` parameter names, else `fallback`. The host name of a resolved address is
    /// remembered: a TLS server's certificate is checked against it.
    pub async fn resolve(&self, uri: &sip::Uri, fallback: Transport) -> Result<Link> {
        let transport = Transport::from_uri(uri).unwrap_or(fallback);
        let host = uri.host().trim_start_matches('[').trim_end_matches(']');
        let port = uri.port().unwrap_or(5060);
        if let Ok(ip) = host.parse::<std::net::IpAddr>() {
            return Ok(Link {
                transport,
                addr: SocketAddr::new(ip, port),
            });
        }
        let mut addrs = tokio::net::lookup_host((host, port))
            .await
            .map_err(|e| Error::Resolve(host.to_owned(), e.to_string()))?;
        let addr = addrs
            .next()
            .ok_or_else(|| Error::Resolve(host.to_owned(), "no address".to_owned()))?;
        locks::lock(&self.names).insert(addr, host.to_owned());
        Ok(Link { transport, addr })
    }

    async fn connect(self: &Arc<Self>, link: Link) -> Result<mpsc::UnboundedSender<Bytes>> {
        let addr = link.addr;
        let failed =
            |e: &dyn std::fmt::Display| Error::Network(format!("connecting to {addr}: {e}"));
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| failed(&"timed out"))?
            .map_err(|e| failed(&e))?;
        match link.transport {
            Transport::Tls => {}
            Transport::Ws => return self.upgrade(stream, link).await,
            Transport::Udp | Transport::Tcp => return Ok(self.adopt(Box::new(stream), link, true)),
        }
        let connector = self
            .tls
            .clone()
            .ok_or_else(|| failed(&"TLS needs PeerBuilder::tls_config"))?;
        let name = locks::lock(&self.names).get(&addr).cloned();
        let server_name = match name {
            Some(name) => rustls::pki_types::ServerName::try_from(name).map_err(|e| failed(&e))?,
            None => rustls::pki_types::ServerName::IpAddress(addr.ip().into()),
        };
        let tls = tokio::time::timeout(CONNECT_TIMEOUT, connector.connect(server_name, stream))
            .await
            .map_err(|_| failed(&"TLS handshake timed out"))?
            .map_err(|e| failed(&e))?;
        Ok(self.adopt(Box::new(tls), link, true))
    }

    /// The WebSocket handshake (RFC 7118 §4: the `sip` subprotocol), then the connection.
    async fn upgrade(
        self: &Arc<Self>,
        stream: TcpStream,
        link: Link,
    ) -> Result<mpsc::UnboundedSender<Bytes>> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::http::HeaderValue;
        let failed =
            |e: &dyn std::fmt::Display| Error::Network(format!("WebSocket to {}: {e}", link.addr));
        let mut request = format!("ws://{}/", link.addr)
            .into_client_request()
            .map_err(|e| failed(&e))?;
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
        let (socket, _) = tokio::time::timeout(
            CONNECT_TIMEOUT,
            tokio_tungstenite::client_async(request, stream),
        )
        .await
        .map_err(|_| failed(&"handshake timed out"))?
        .map_err(|e| failed(&e))?;
        let (sender, outgoing) = mpsc::unbounded_channel();
        locks::lock(&self.connections).insert(link, sender.clone());
        let task = tokio::spawn(run_websocket(
            Arc::downgrade(self),
            socket,
            link,
            outgoing,
            sender.clone(),
        ));
        self.keep(task);
        Ok(sender)
    }

    /// Starts reading and writing a connection and makes it the one for `addr`.
    fn adopt(
        self: &Arc<Self>,
        stream: Box<dyn ByteStream>,
        link: Link,
        keepalive: bool,
    ) -> mpsc::UnboundedSender<Bytes> {
        let (sender, outgoing) = mpsc::unbounded_channel();
        locks::lock(&self.connections).insert(link, sender.clone());
        let task = tokio::spawn(run_connection(
            Arc::downgrade(self),
            stream,
            link,
            outgoing,
            sender.clone(),
            keepalive,
        ));
        self.keep(task);
        sender
    }

    fn deliver(&self, bytes: Bytes, link: Link) {
        match sip::parse_with(bytes, &self.limits) {
            Ok(message) => {
                let _ = self.incoming.send((message, link));
            }
            // Garbage from the network is dropped: there is nobody to answer for a message
            // that is not SIP.
            Err(e) => tracing::debug!(from = %link.addr, error = %e, "unparseable message dropped"),
        }
    }

    fn closed(&self, link: Link, sender: &mpsc::UnboundedSender<Bytes>) {
        let mut connections = locks::lock(&self.connections);
        if connections
            .get(&link)
            .is_some_and(|current| current.same_channel(sender))
        {
            connections.remove(&link);
        }
        drop(connections);
        self.lost.send_modify(|n| *n += 1);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for task in locks::lock(&self.tasks).iter() {
            task.abort();
        }
    }
}

async fn read_udp(net: std::sync::Weak<Net>, socket: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 65_536];
    loop {
        let (n, from) = match socket.recv_from(&mut buf).await {
            Ok(received) => received,
            // ICMP port unreachable from an earlier send surfaces here on some systems.
            Err(_) => continue,
        };
        let Some(net) = net.upgrade() else { return };
        net.deliver(
            Bytes::copy_from_slice(&buf[..n]),
            Link {
                transport: Transport::Udp,
                addr: from,
            },
        );
    }
}

async fn accept_tcp(net: std::sync::Weak<Net>, listener: TcpListener) {
    loop {
        let Ok((stream, addr)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let Some(net) = net.upgrade() else { return };
        let link = Link {
            transport: Transport::Tcp,
            addr,
        };
        net.adopt(Box::new(stream), link, false);
    }
}

async fn run_connection(
    net: std::sync::Weak<Net>,
    stream: Box<dyn ByteStream>,
    link: Link,
    mut outgoing: mpsc::UnboundedReceiver<Bytes>,
    sender: mpsc::UnboundedSender<Bytes>,
    keepalive: bool,
) {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut buffer = BytesMut::with_capacity(8192);
    let mut ticker = tokio::time::interval(KEEPALIVE);
    ticker.tick().await;
    let limits = sip::Limits::default();
    loop {
        tokio::select! {
            read = reader.read_buf(&mut buffer) => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                loop {
                    let framing = match sip::frame(&buffer, &limits) {
                        Ok(framing) => framing,
                        // A stream that cannot be framed cannot be resynchronised.
                        Err(_) => {
                            buffer.clear();
                            break;
                        }
                    };
                    let _ = buffer.split_to(framing.skip);
                    let Some(len) = framing.len else { break };
                    let message = buffer.split_to(len).freeze();
                    let Some(net) = net.upgrade() else { return };
                    net.deliver(message, link);
                }
            }
            message = outgoing.recv() => {
                let Some(message) = message else { break };
                if writer.write_all(&message).await.is_err() {
                    break;
                }
            }
            _ = ticker.tick(), if keepalive => {
                if writer.write_all(b"\r\n\r\n").await.is_err() {
                    break;
                }
            }
        }
    }
    drop(outgoing);
    if let Some(net) = net.upgrade() {
        net.closed(link, &sender);
    }
}

async fn run_websocket(
    net: std::sync::Weak<Net>,
    mut socket: tokio_tungstenite::WebSocketStream<TcpStream>,
    link: Link,
    mut outgoing: mpsc::UnboundedReceiver<Bytes>,
    sender: mpsc::UnboundedSender<Bytes>,
) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message as WsMessage;
    let mut ticker = tokio::time::interval(KEEPALIVE);
    ticker.tick().await;
    loop {
        tokio::select! {
            message = socket.next() => {
                let data = match message {
                    Some(Ok(WsMessage::Text(text))) => Bytes::from(text.as_str().to_owned()),
                    Some(Ok(WsMessage::Binary(data))) => data,
                    Some(Ok(WsMessage::Close(_))) | Some(Err(_)) | None => break,
                    // Pings are answered by the library; pongs and frames carry nothing.
                    Some(Ok(_)) => continue,
                };
                let Some(net) = net.upgrade() else { return };
                net.deliver(data, link);
            }
            message = outgoing.recv() => {
                let Some(message) = message else { break };
                // SIP is text; a body that is not UTF-8 goes as a binary message.
                let frame = match String::from_utf8(message.to_vec()) {
                    Ok(text) => WsMessage::text(text),
                    Err(_) => WsMessage::binary(message),
                };
                if socket.send(frame).await.is_err() {
                    break;
                }
            }
            _ = ticker.tick() => {
                if socket.send(WsMessage::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
        }
    }
    drop(outgoing);
    if let Some(net) = net.upgrade() {
        net.closed(link, &sender);
    }
}
