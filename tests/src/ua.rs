//! A small SIP user agent for tests: real UDP, TCP, TLS or WebSocket (RFC
//! 7118, plain or over TLS) connections, messages built and parsed by the
//! workspace's `sip` crate, NOTIFYs answered like a phone would.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::{SinkExt, StreamExt};
use sip::{Message, Method, Request, Response};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::WebSocketStream;

mod requests;

/// How long a test waits for an answer before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// A PIDF document as a phone would publish it.
pub fn pidf(aor: &str, basic: &str, note: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"sip:{aor}\">\n\
         <tuple id=\"t1\"><status><basic>{basic}</basic></status><note>{note}</note></tuple>\n\
         </presence>\n"
    )
}

/// A request's body as text, for assertions.
pub fn body_text(request: &Request) -> String {
    String::from_utf8_lossy(request.body()).into_owned()
}

/// The Subscription-State of a NOTIFY, which must be present and valid.
pub fn sub_state(request: &Request) -> sip::SubscriptionState {
    request
        .headers()
        .subscription_state()
        .expect("Subscription-State parses")
        .expect("Subscription-State present")
}

fn token() -> String {
    hex::encode(rand::random::<[u8; 6]>())
}

/// A byte stream a UA can talk over: TCP, or TLS over TCP.
pub trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

enum Link {
    Udp(UdpSocket),
    /// TCP or TLS: SIP framed by Content-Length.
    Tcp {
        stream: Box<dyn ByteStream>,
        buffer: BytesMut,
    },
    /// WebSocket or secure WebSocket: one SIP message per WebSocket message.
    Ws(Box<WebSocketStream<Box<dyn ByteStream>>>),
}

/// A subscription dialog as the subscriber sees it.
#[derive(Clone, Debug)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    pub target: String,
    pub local_uri: String,
    pub remote_uri: String,
    pub cseq: u32,
}

/// One test user agent.
pub struct Ua {
    pub aor: String,
    pub server: SocketAddr,
    pub local: SocketAddr,
    link: Link,
    cseq: u32,
    inbox: VecDeque<Message>,
    /// Every NOTIFY received, in arrival order.
    pub notifies: Vec<Request>,
    /// Status the UA answers NOTIFYs with.
    pub notify_answer: u16,
    /// When set, NOTIFYs are recorded but never answered (a watcher gone
    /// silent).
    pub silent: bool,
    /// Request-URIs use `sips:` (RFC 3261 §19.1).
    pub sips: bool,
    /// Via transport name: UDP, TCP, TLS, WS or WSS.
    transport_name: &'static str,
}

impl Ua {
    /// A UA for `aor` talking UDP to `server` (from loopback of the
    /// server's address family).
    pub async fn udp(aor: &str, server: SocketAddr) -> Ua {
        let bind = if server.is_ipv6() {
            "[::1]:0"
        } else {
            "127.0.0.1:0"
        };
        let socket = UdpSocket::bind(bind).await.expect("binding UDP");
        let local = socket.local_addr().expect("local address");
        Ua::with_link(aor, server, local, Link::Udp(socket), "UDP")
    }

    /// A UA for `aor` talking UDP to `server` from `bind` (an address of
    /// this machine that the server can reach back).
    pub async fn udp_from(aor: &str, bind: std::net::IpAddr, server: SocketAddr) -> Ua {
        let socket = UdpSocket::bind(SocketAddr::new(bind, 0))
            .await
            .expect("binding UDP");
        let local = socket.local_addr().expect("local address");
        Ua::with_link(aor, server, local, Link::Udp(socket), "UDP")
    }

    /// A UA for `aor` talking TCP to `server`.
    pub async fn tcp(aor: &str, server: SocketAddr) -> Ua {
        let stream = TcpStream::connect(server).await.expect("connecting TCP");
        let local = stream.local_addr().expect("local address");
        Ua::with_link(
            aor,
            server,
            local,
            Link::Tcp {
                stream: Box::new(stream),
                buffer: BytesMut::new(),
            },
            "TCP",
        )
    }

    /// A UA for `aor` talking TLS to `server`, which must present a
    /// certificate for `server_name` that `connector` trusts.
    pub async fn tls(
        aor: &str,
        server: SocketAddr,
        connector: &tokio_rustls::TlsConnector,
        server_name: &str,
    ) -> Ua {
        let (stream, local) = tls_connect(server, connector, server_name)
            .await
            .expect("TLS handshake");
        Ua::with_link(
            aor,
            server,
            local,
            Link::Tcp {
                stream,
                buffer: BytesMut::new(),
            },
            "TLS",
        )
    }

    /// A UA for `aor` talking SIP over WebSocket (RFC 7118) to `server`;
    /// with `tls`, secure WebSocket to a server presenting a certificate for
    /// the given name.
    pub async fn ws(
        aor: &str,
        server: SocketAddr,
        tls: Option<(&tokio_rustls::TlsConnector, &str)>,
    ) -> Ua {
        let (stream, local): (Box<dyn ByteStream>, SocketAddr) = match tls {
            Some((connector, name)) => tls_connect(server, connector, name)
                .await
                .expect("TLS handshake"),
            None => {
                let tcp = TcpStream::connect(server).await.expect("connecting TCP");
                let local = tcp.local_addr().expect("local address");
                (Box::new(tcp), local)
            }
        };
        let scheme = if tls.is_some() { "wss" } else { "ws" };
        let mut request = format!("{scheme}://{server}/")
            .into_client_request()
            .expect("WebSocket request");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
        let (socket, response) = tokio_tungstenite::client_async(request, stream)
            .await
            .expect("WebSocket upgrade");
        assert_eq!(
            response
                .headers()
                .get("Sec-WebSocket-Protocol")
                .and_then(|v| v.to_str().ok()),
            Some("sip"),
            "the edge selects the sip subprotocol"
        );
        let name = if tls.is_some() { "WSS" } else { "WS" };
        Ua::with_link(aor, server, local, Link::Ws(Box::new(socket)), name)
    }

    fn with_link(
        aor: &str,
        server: SocketAddr,
        local: SocketAddr,
        link: Link,
        transport_name: &'static str,
    ) -> Ua {
        Ua {
            aor: aor.to_string(),
            server,
            local,
            link,
            cseq: 0,
            inbox: VecDeque::new(),
            notifies: Vec::new(),
            notify_answer: 200,
            silent: false,
            sips: false,
            transport_name,
        }
    }

    /// Sends raw bytes to the server.
    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        let server = self.server;
        match &mut self.link {
            Link::Udp(socket) => {
                socket.send_to(bytes, server).await.expect("UDP send");
            }
            Link::Tcp { stream, .. } => stream.write_all(bytes).await.expect("TCP send"),
            Link::Ws(socket) => {
                let message = match std::str::from_utf8(bytes) {
                    Ok(text) => WsMessage::text(text),
                    Err(_) => WsMessage::binary(Bytes::copy_from_slice(bytes)),
                };
                socket.send(message).await.expect("WebSocket send");
            }
        }
    }

    pub async fn send(&mut self, request: &Request) {
        let bytes = request.to_bytes();
        self.send_bytes(&bytes).await;
    }

    /// Next message from the network, answering NOTIFYs on the way.
    async fn receive(&mut self, timeout: Duration) -> Option<(Message, SocketAddr)> {
        let left = timeout;
        {
            if left.is_zero() {
                return None;
            }
            let server = self.server;
            let raw = match &mut self.link {
                Link::Udp(socket) => {
                    let mut buf = vec![0u8; 65_536];
                    let (n, from) = tokio::time::timeout(left, socket.recv_from(&mut buf))
                        .await
                        .ok()?
                        .ok()?;
                    buf.truncate(n);
                    Some((Bytes::from(buf), from))
                }
                Link::Tcp { stream, buffer } => loop {
                    let framing =
                        sip::frame(buffer, &sip::Limits::default()).expect("stream framing");
                    let _ = buffer.split_to(framing.skip);
                    if let Some(len) = framing.len {
                        break Some((buffer.split_to(len).freeze(), server));
                    }
                    let n = tokio::time::timeout(left, stream.read_buf(buffer))
                        .await
                        .ok()?
                        .ok()?;
                    if n == 0 {
                        break None;
                    }
                },
                Link::Ws(socket) => loop {
                    let message = tokio::time::timeout(left, socket.next()).await.ok()??;
                    match message.ok()? {
                        WsMessage::Text(text) => break Some((Bytes::from(text), server)),
                        WsMessage::Binary(data) => break Some((data, server)),
                        WsMessage::Close(_) => break None,
                        _ => {}
                    }
                },
            };
            let (bytes, from) = raw?;
            let message = match sip::parse(bytes.clone()) {
                Ok(m) => m,
                Err(e) => panic!(
                    "the edge sent unparseable SIP ({e}):\n{}",
                    String::from_utf8_lossy(&bytes)
                ),
            };
            Some((message, from))
        }
    }

    /// Answers a NOTIFY and records it.
    async fn answer_notify(&mut self, notify: Request, from: SocketAddr) {
        if self.silent {
            self.notifies.push(notify);
            return;
        }
        let response = Response::for_request(&notify, self.notify_answer).build();
        let bytes = response.to_bytes();
        match &mut self.link {
            Link::Udp(socket) => {
                socket.send_to(&bytes, from).await.expect("UDP send");
            }
            Link::Tcp { .. } | Link::Ws(_) => self.send_bytes(&bytes).await,
        }
        self.notifies.push(notify);
    }

    /// The final response to `request` (matching Call-ID and CSeq); NOTIFYs
    /// arriving meanwhile are answered and queued.
    pub async fn response_to(&mut self, request: &Request) -> Response {
        self.try_response_to(request, WAIT)
            .await
            .unwrap_or_else(|| panic!("no response to {} within {WAIT:?}", request.method()))
    }

    /// Like [`Ua::response_to`], `None` on timeout.
    pub async fn try_response_to(
        &mut self,
        request: &Request,
        timeout: Duration,
    ) -> Option<Response> {
        let call_id = request.headers().call_id().expect("Call-ID").to_string();
        let cseq = request.headers().cseq().expect("CSeq").seq;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (message, from) = self.receive(left).await?;
            match message {
                Message::Response(r)
                    if r.headers().call_id().ok() == Some(call_id.as_str())
                        && r.headers().cseq().map(|c| c.seq).ok() == Some(cseq)
                        && r.status() >= 200 =>
                {
                    return Some(r)
                }
                Message::Response(_) => {}
                Message::Request(n) if *n.method() == Method::Notify => {
                    self.answer_notify(n.clone(), from).await;
                    self.inbox.push_back(Message::Request(n));
                }
                Message::Request(other) => self.inbox.push_back(Message::Request(other)),
            }
        }
    }

    /// Sends and waits for the final response.
    pub async fn call(&mut self, request: Request) -> Response {
        self.send(&request).await;
        self.response_to(&request).await
    }

    /// The next datagram exactly as received, unparsed (UDP only): for
    /// answers to malformed requests, which echo the malformed headers.
    pub async fn next_raw(&mut self, timeout: Duration) -> Option<Bytes> {
        let Link::Udp(socket) = &self.link else {
            return None;
        };
        let mut buf = vec![0u8; 65_536];
        let (n, _) = tokio::time::timeout(timeout, socket.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        buf.truncate(n);
        Some(Bytes::from(buf))
    }

    /// The next response of any kind, waiting up to `timeout`.
    pub async fn next_response(&mut self, timeout: Duration) -> Option<Response> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (message, from) = self.receive(left).await?;
            match message {
                Message::Response(r) => return Some(r),
                Message::Request(n) if *n.method() == Method::Notify => {
                    self.answer_notify(n.clone(), from).await;
                    self.inbox.push_back(Message::Request(n));
                }
                Message::Request(other) => self.inbox.push_back(Message::Request(other)),
            }
        }
    }

    /// The next NOTIFY (already answered), waiting up to `timeout`.
    pub async fn next_notify(&mut self, timeout: Duration) -> Option<Request> {
        if let Some(pos) = self
            .inbox
            .iter()
            .position(|m| matches!(m, Message::Request(r) if *r.method() == Method::Notify))
        {
            if let Some(Message::Request(r)) = self.inbox.remove(pos) {
                return Some(r);
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let (message, from) = self.receive(left).await?;
            if let Message::Request(n) = message {
                if *n.method() == Method::Notify {
                    self.answer_notify(n.clone(), from).await;
                    return Some(n);
                }
            }
        }
    }
}

/// Connects TCP to `server` and runs a TLS handshake for `server_name`.
pub async fn tls_connect(
    server: SocketAddr,
    connector: &tokio_rustls::TlsConnector,
    server_name: &str,
) -> std::io::Result<(Box<dyn ByteStream>, SocketAddr)> {
    let tcp = TcpStream::connect(server).await?;
    let local = tcp.local_addr()?;
    let name = rustls::pki_types::ServerName::try_from(server_name.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let stream = connector.connect(name, tcp).await?;
    Ok((Box::new(stream), local))
}
