//! The edge's transports over real sockets: TLS with client certificates,
//! WebSocket and secure WebSocket (RFC 7118), IPv6, and what protects
//! stream transports — the slow-loris deadline, first-message and idle
//! timeouts and CRLF keep-alives, the connection cap and each source's
//! share of it, message size limits, the 400 for unframeable data.

use std::net::SocketAddr;
use std::time::Duration;

use crate::transport_support::{free_tcp_port, free_v6_port, start_edge, TestPki};
use cluster_tests::cluster::Cluster;
use cluster_tests::ua::{pidf, tls_connect, Ua, WAIT};
use futures::{SinkExt, StreamExt};
use sip::{Method, Scheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn body_text(request: &sip::Request) -> String {
    String::from_utf8_lossy(request.body()).into_owned()
}

fn top_via(message_headers: &sip::Headers) -> sip::Via {
    message_headers
        .via()
        .expect("Via")
        .into_iter()
        .next()
        .expect("a Via value")
}

fn contact_of(response: &sip::Response) -> sip::Uri {
    match response.headers().contacts().expect("Contact") {
        sip::Contacts::List(list) => list[0].name_addr.uri.clone(),
        sip::Contacts::Star => panic!("star Contact in a response"),
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// An OPTIONS request as raw bytes, with the given top Via.
fn raw_options(via: &str, call_id: &str) -> String {
    format!(
        "OPTIONS sip:example.com SIP/2.0\r\n\
Via: {via}\r\n\
Max-Forwards: 70\r\n\
From: <sip:probe@example.com>;tag=probe\r\n\
To: <sip:example.com>\r\n\
Call-ID: {call_id}\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Length: 0\r\n\r\n"
    )
}

/// Reads from a stream until the peer closes it (or `limit` passes);
/// returns whether it was closed.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_subscribe_and_notify_with_client_certificates() {
    let cluster = Cluster::start(0);
    let pki = TestPki::new();
    let tls_port = free_tcp_port(false);
    let mut flags = pki.edge_args();
    flags.extend([
        "--tls".into(),
        format!("127.0.0.1:{tls_port}"),
        "--tls-client-ca".into(),
        pki.ca.display().to_string(),
        "--tls-require-client-cert".into(),
    ]);
    let edge = start_edge(&cluster, "edge-tls", &flags);
    let tls_addr = loopback(tls_port);
    let connector = pki.connector(true);

    // Bob watches Alice over TLS, presenting a client certificate.
    let bob_token = cluster.tokens.token("bob@example.com");
    let mut bob = Ua::tls("bob@example.com", tls_addr, &connector, "localhost").await;
    let (response, _dialog) = bob.subscribe("alice@example.com", &bob_token, 300).await;
    assert_eq!(response.status(), 200);
    let contact = contact_of(&response);
    assert_eq!(*contact.scheme(), Scheme::Sip);
    assert_eq!(contact.param("transport"), Some(Some("tls")), "{contact}");
    assert_eq!(contact.port(), Some(tls_port), "{contact}");
    let initial = bob
        .next_notify(WAIT)
        .await
        .expect("initial NOTIFY over TLS");
    let via = top_via(initial.headers());
    assert_eq!(via.transport, "TLS");
    assert_eq!(via.port, Some(tls_port));

    // Alice publishes over UDP; the NOTIFY reaches Bob over his TLS connection.
    let alice_token = cluster.tokens.token("alice@example.com");
    let mut alice = Ua::udp("alice@example.com", edge.sip()).await;
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "reachable over TLS")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let changed = bob.next_notify(WAIT).await.expect("NOTIFY after PUBLISH");
    assert!(body_text(&changed).contains("reachable over TLS"));

    // A sips: Request-URI gets a sips: Contact (RFC 3261 §12.1.1).
    let carol_token = cluster.tokens.token("carol@example.com");
    let mut carol = Ua::tls("carol@example.com", tls_addr, &connector, "localhost").await;
    carol.sips = true;
    let (response, _) = carol
        .subscribe("alice@example.com", &carol_token, 300)
        .await;
    assert_eq!(response.status(), 200);
    let contact = contact_of(&response);
    assert_eq!(*contact.scheme(), Scheme::Sips, "{contact}");
    assert_eq!(contact.port(), Some(tls_port));
    let notify = carol
        .next_notify(WAIT)
        .await
        .expect("NOTIFY to a sips: watcher");
    let contact = match notify.headers().contacts().expect("Contact") {
        sip::Contacts::List(list) => list[0].name_addr.uri.clone(),
        sip::Contacts::Star => panic!("star Contact in a NOTIFY"),
    };
    assert_eq!(*contact.scheme(), Scheme::Sips, "{contact}");

    // Without a client certificate the edge refuses the connection: the
    // handshake fails, or (TLS 1.3) the first read reports the refusal.
    let anonymous = pki.connector(false);
    if let Ok((mut stream, _)) = tls_connect(tls_addr, &anonymous, "localhost").await {
        let probe = raw_options(
            "SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKanon;rport",
            "anon@test",
        );
        let _ = stream.write_all(probe.as_bytes()).await;
        let mut buf = [0u8; 1024];
        let read = tokio::time::timeout(WAIT, stream.read(&mut buf))
            .await
            .expect("the refusal arrives in time");
        assert!(
            matches!(read, Ok(0) | Err(_)),
            "a client without a certificate got an answer: {read:?}"
        );
    }

    // A client that does not trust the edge's CA gives up by itself.
    let stranger = TestPki::new().connector(true);
    assert!(tls_connect(tls_addr, &stranger, "localhost").await.is_err());
}

/// A raw WebSocket client offering (or not) the `sip` subprotocol.
async fn ws_client(
    addr: SocketAddr,
    offer_sip: bool,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    ws_client_from(addr, offer_sip, None).await
}

/// Like [`ws_client`], as a browser page of `origin` would connect.
async fn ws_client_from(
    addr: SocketAddr,
    offer_sip: bool,
    origin: Option<&'static str>,
) -> Result<tokio_tungstenite::WebSocketStream<TcpStream>, tokio_tungstenite::tungstenite::Error> {
    let tcp = TcpStream::connect(addr).await.expect("connecting TCP");
    let mut request = format!("ws://{addr}/")
        .into_client_request()
        .expect("WebSocket request");
    if offer_sip {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("sip"));
    }
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("Origin", HeaderValue::from_static(origin));
    }
    tokio_tungstenite::client_async(request, tcp)
        .await
        .map(|(socket, _)| socket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_and_secure_websocket_round_trips() {
    let cluster = Cluster::start(0);
    let pki = TestPki::new();
    let ws_port = free_tcp_port(false);
    let wss_port = free_tcp_port(false);
    let mut flags = pki.edge_args();
    flags.extend([
        "--ws".into(),
        format!("127.0.0.1:{ws_port}"),
        "--wss".into(),
        format!("127.0.0.1:{wss_port}"),
        "--ws-allowed-origin".into(),
        "https://app.example.com,https://softphone.example.com".into(),
    ]);
    let edge = start_edge(&cluster, "edge-ws", &flags);

    // Bob over WS, Dave over WSS, both watching Alice.
    let bob_token = cluster.tokens.token("bob@example.com");
    let mut bob = Ua::ws("bob@example.com", loopback(ws_port), None).await;
    let (response, _) = bob.subscribe("alice@example.com", &bob_token, 300).await;
    assert_eq!(response.status(), 200);
    let contact = contact_of(&response);
    assert_eq!(contact.param("transport"), Some(Some("ws")), "{contact}");
    assert_eq!(contact.port(), Some(ws_port));
    let initial = bob.next_notify(WAIT).await.expect("initial NOTIFY over WS");
    assert_eq!(top_via(initial.headers()).transport, "WS");

    let connector = pki.connector(false);
    let dave_token = cluster.tokens.token("dave@example.com");
    let mut dave = Ua::ws(
        "dave@example.com",
        loopback(wss_port),
        Some((&connector, "localhost")),
    )
    .await;
    let (response, _) = dave.subscribe("alice@example.com", &dave_token, 300).await;
    assert_eq!(response.status(), 200);
    assert_eq!(contact_of(&response).port(), Some(wss_port));
    let initial = dave
        .next_notify(WAIT)
        .await
        .expect("initial NOTIFY over WSS");
    assert_eq!(top_via(initial.headers()).transport, "WSS");

    // A PUBLISH over UDP reaches both over their WebSocket connections.
    let alice_token = cluster.tokens.token("alice@example.com");
    let mut alice = Ua::udp("alice@example.com", edge.sip()).await;
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "in the browser")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    for (name, ua) in [("WS", &mut bob), ("WSS", &mut dave)] {
        let changed = ua
            .next_notify(WAIT)
            .await
            .unwrap_or_else(|| panic!("NOTIFY over {name}"));
        assert!(body_text(&changed).contains("in the browser"), "{name}");
    }

    // An upgrade without the sip subprotocol is refused with 400.
    match ws_client(loopback(ws_port), false).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 400)
        }
        other => panic!("upgrade without subprotocol: {:?}", other.map(|_| ())),
    }

    // Browser pages of the allowed origins may connect, others get 403
    // (clients sending no Origin, like the UAs above, are not affected).
    assert!(
        ws_client_from(loopback(ws_port), true, Some("https://app.example.com"))
            .await
            .is_ok(),
        "an allowed origin connects"
    );
    match ws_client_from(loopback(ws_port), true, Some("https://evil.example")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status().as_u16(), 403)
        }
        other => panic!("upgrade from another origin: {:?}", other.map(|_| ())),
    }

    // A double-CRLF keep-alive in a WebSocket message gets a CRLF back, and
    // a request in a binary message is answered like a text one.
    let mut raw = ws_client(loopback(ws_port), true)
        .await
        .expect("upgrade with the sip subprotocol");
    raw.send(WsMessage::text("\r\n\r\n")).await.expect("ping");
    let pong = tokio::time::timeout(WAIT, raw.next())
        .await
        .expect("pong in time")
        .expect("a message")
        .expect("a readable message");
    assert_eq!(pong.into_data().as_ref(), b"\r\n");
    let options = raw_options(
        "SIP/2.0/WS df7jal23ls0d.invalid;branch=z9hG4bKws1;rport",
        "ws-binary@test",
    );
    raw.send(WsMessage::binary(options.into_bytes()))
        .await
        .expect("OPTIONS");
    let answer = tokio::time::timeout(WAIT, raw.next())
        .await
        .expect("answer in time")
        .expect("a message")
        .expect("a readable message");
    let answer = sip::parse(answer.into_data()).expect("a SIP response");
    let sip::Message::Response(answer) = answer else {
        panic!("a request came back")
    };
    assert_eq!(answer.status(), 200);
    let via = top_via(answer.headers());
    assert_eq!(via.received(), Some("127.0.0.1"), "{via}");

    // A renewed certificate is picked up without a restart: once the files
    // change, new connections get the new one.
    let renewed = TestPki::new();
    std::fs::copy(&renewed.server_key, &pki.server_key).expect("installing the new key");
    std::fs::copy(&renewed.server_cert, &pki.server_cert).expect("installing the new chain");
    let trusts_renewed = renewed.connector(false);
    let mut rotated = false;
    for _ in 0..60 {
        if tls_connect(loopback(wss_port), &trusts_renewed, "localhost")
            .await
            .is_ok()
        {
            rotated = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(rotated, "the renewed certificate is served within 30 s");
    assert!(
        tls_connect(loopback(wss_port), &connector, "localhost")
            .await
            .is_err(),
        "the old certificate is no longer served"
    );
    // The connection opened before the renewal still works.
    let refreshed = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "after renewal")),
            600,
        )
        .await;
    assert_eq!(refreshed.status(), 200);
    let changed = dave.next_notify(WAIT).await.expect("NOTIFY after renewal");
    assert!(body_text(&changed).contains("after renewal"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ipv6_loopback_round_trip() {
    let cluster = Cluster::start(0);
    let v6_port = free_v6_port();
    let flags = vec![
        "--udp".into(),
        format!("[::1]:{v6_port}"),
        "--tcp".into(),
        format!("[::1]:{v6_port}"),
    ];
    let edge = start_edge(&cluster, "edge-v6", &flags);
    let v6: SocketAddr = format!("[::1]:{v6_port}").parse().expect("IPv6 address");

    // Bob over UDP/IPv6, Carol over TCP/IPv6.
    let bob_token = cluster.tokens.token("bob@example.com");
    let mut bob = Ua::udp("bob@example.com", v6).await;
    let (response, _) = bob.subscribe("alice@example.com", &bob_token, 300).await;
    assert_eq!(response.status(), 200);
    // The Via sent-by [::1] is the packet's source: no `received` (RFC 3261 §18.2.1).
    let via = top_via(response.headers());
    assert_eq!(via.host, "[::1]");
    assert_eq!(via.received(), None, "{via}");
    assert_eq!(via.rport(), Some(Some(bob.local.port())), "{via}");
    let initial = bob
        .next_notify(WAIT)
        .await
        .expect("initial NOTIFY over IPv6");
    let via = top_via(initial.headers());
    assert_eq!(via.host, "[::1]", "NOTIFY leaves from the IPv6 listener");
    assert_eq!(via.port, Some(v6_port));

    let carol_token = cluster.tokens.token("carol@example.com");
    let mut carol = Ua::tcp("carol@example.com", v6).await;
    let (response, _) = carol
        .subscribe("alice@example.com", &carol_token, 300)
        .await;
    assert_eq!(response.status(), 200);
    carol
        .next_notify(WAIT)
        .await
        .expect("initial NOTIFY over TCP/IPv6");

    let alice_token = cluster.tokens.token("alice@example.com");
    let mut alice = Ua::udp("alice@example.com", edge.sip()).await;
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "on IPv6")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    for ua in [&mut bob, &mut carol] {
        let changed = ua.next_notify(WAIT).await.expect("NOTIFY over IPv6");
        assert!(body_text(&changed).contains("on IPv6"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_idle_and_keep_alive_connections() {
    let cluster = Cluster::start(0);
    let pki = TestPki::new();
    let tls_port = free_tcp_port(false);
    let mut flags = pki.edge_args();
    flags.extend([
        "--tls".into(),
        format!("127.0.0.1:{tls_port}"),
        "--message-timeout-ms".into(),
        "1000".into(),
        "--idle-timeout-s".into(),
        "3".into(),
    ]);
    let edge = start_edge(&cluster, "edge-deadlines", &flags);

    // A request trickled one byte every 200 ms never completes in time: the
    // edge closes the connection (the trickle would need minutes).
    let trickle = |addr: SocketAddr, first: &'static [u8]| async move {
        let mut stream = TcpStream::connect(addr).await.expect("connecting");
        stream.write_all(first).await.expect("first bytes");
        let (mut reader, mut writer) = stream.into_split();
        let dripping = tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if writer.write_all(b"X").await.is_err() {
                    return;
                }
            }
        });
        let mut buf = [0u8; 1024];
        let outcome = tokio::time::timeout(Duration::from_secs(15), async {
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        })
        .await;
        dripping.abort();
        outcome.is_ok()
    };
    assert!(
        trickle(edge.sip(), b"OPTIONS sip:example.com SIP/2.0\r\nVia: ").await,
        "a trickled SIP request is cut off"
    );
    // TLS record bytes count as well: a trickled ClientHello is cut off too.
    assert!(
        trickle(loopback(tls_port), &[0x16, 0x03, 0x01]).await,
        "a trickled TLS handshake is cut off"
    );

    // A connection that says nothing is closed after the idle timeout...
    let mut idle = TcpStream::connect(edge.sip()).await.expect("connecting");
    // ...while one sending RFC 5626 keep-alives stays open and gets pongs.
    let mut kept = TcpStream::connect(edge.sip()).await.expect("connecting");
    let keep_alive = async {
        let mut pongs = 0;
        for _ in 0..10 {
            kept.write_all(b"\r\n\r\n").await.expect("keep-alive ping");
            let mut pong = [0u8; 2];
            tokio::time::timeout(WAIT, kept.read_exact(&mut pong))
                .await
                .expect("pong in time")
                .expect("pong");
            assert_eq!(&pong, b"\r\n");
            pongs += 1;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        pongs
    };
    let (idle_closed, pongs) = tokio::join!(
        closed_within(&mut idle, Duration::from_secs(20)),
        keep_alive
    );
    assert!(idle_closed, "an idle connection is closed");
    assert_eq!(pongs, 10);
    // Five seconds of keep-alives, longer than the idle timeout: still open.
    kept.write_all(
        raw_options(
            "SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKkept;rport",
            "kept@test",
        )
        .as_bytes(),
    )
    .await
    .expect("OPTIONS on the kept connection");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, kept.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("answer");
    assert!(
        buf[..n].starts_with(b"SIP/2.0 200 "),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
}

async fn options_over(ua: &mut Ua) -> u16 {
    let request = ua
        .request(Method::Options, "example.com", "example.com")
        .build();
    ua.call(request).await.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_cap_refuses_the_next_connection() {
    let cluster = Cluster::start(0);
    let ws_port = free_tcp_port(false);
    let flags = vec![
        "--max-connections".into(),
        "3".into(),
        "--ws".into(),
        format!("127.0.0.1:{ws_port}"),
    ];
    let edge = start_edge(&cluster, "edge-cap", &flags);

    // Three connections, TCP and WebSocket alike, fill the cap.
    let mut first = Ua::tcp("a@example.com", edge.sip()).await;
    assert_eq!(options_over(&mut first).await, 200);
    let mut second = Ua::tcp("b@example.com", edge.sip()).await;
    assert_eq!(options_over(&mut second).await, 200);
    let mut third = Ua::ws("c@example.com", loopback(ws_port), None).await;
    assert_eq!(options_over(&mut third).await, 200);

    // The fourth is closed at once, on either listener.
    let mut refused = TcpStream::connect(edge.sip()).await.expect("connecting");
    let _ = refused
        .write_all(
            raw_options(
                "SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKcap4;rport",
                "cap4@test",
            )
            .as_bytes(),
        )
        .await;
    assert!(
        closed_within(&mut refused, WAIT).await,
        "the connection over the cap is closed"
    );
    assert!(ws_client(loopback(ws_port), true).await.is_err());

    // The connections already open are still served.
    assert_eq!(options_over(&mut second).await, 200);

    // Closing one frees a slot.
    drop(first);
    let mut admitted = false;
    for _ in 0..50 {
        let mut stream = TcpStream::connect(edge.sip()).await.expect("connecting");
        let probe = raw_options(
            "SIP/2.0/TCP 127.0.0.1:9;branch=z9hG4bKcap5;rport",
            "cap5@test",
        );
        if stream.write_all(probe.as_bytes()).await.is_ok() {
            let mut buf = vec![0u8; 4096];
            if let Ok(Ok(n)) =
                tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await
            {
                if buf[..n].starts_with(b"SIP/2.0 200 ") {
                    admitted = true;
                    break;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(admitted, "a slot frees up when a connection closes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_messages_get_413_on_streams_and_513_on_udp() {
    let cluster = Cluster::start(0);
    let flags = vec!["--max-message-bytes".into(), "4096".into()];
    let edge = start_edge(&cluster, "edge-limits", &flags);
    let padding = "x".repeat(6000);

    // UDP: a 6 KB datagram over the 4 KB limit is answered 513.
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("binding UDP");
    let local = socket.local_addr().expect("local address");
    let big = format!(
        "OPTIONS sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bKbig1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:probe@example.com>;tag=big\r\n\
To: <sip:example.com>\r\n\
Call-ID: big-udp@test\r\n\
CSeq: 1 OPTIONS\r\n\
Content-Type: text/plain\r\n\
Content-Length: {}\r\n\r\n{padding}",
        padding.len()
    );
    socket
        .send_to(big.as_bytes(), edge.sip())
        .await
        .expect("UDP send");
    let mut buf = vec![0u8; 65_536];
    let (n, _) = tokio::time::timeout(WAIT, socket.recv_from(&mut buf))
        .await
        .expect("an answer in time")
        .expect("UDP receive");
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("SIP/2.0 513 "), "{answer}");
    assert!(answer.contains("Call-ID: big-udp@test"), "{answer}");

    // TCP: a message announcing a 6 KB body is answered 413 and the
    // connection closed (the stream cannot be resynchronised).
    let mut stream = TcpStream::connect(edge.sip()).await.expect("connecting");
    let big_tcp = big
        .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
        .replace("big-udp@test", "big-tcp@test");
    stream
        .write_all(big_tcp.as_bytes())
        .await
        .expect("TCP send");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("SIP/2.0 413 "), "{answer}");
    assert!(answer.contains("Call-ID: big-tcp@test"), "{answer}");

    // Within the limit, the same edge answers as usual.
    let mut ua = Ua::udp("probe@example.com", edge.sip()).await;
    assert_eq!(options_over(&mut ua).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnected_subscriber_gets_its_notifies_on_the_new_connection() {
    let cluster = Cluster::start(0);
    let edge = start_edge(&cluster, "edge-reconnect", &[]);
    let token = cluster.tokens.token("bob@example.com");

    let mut before = Ua::tcp("bob@example.com", edge.sip()).await;
    let (response, dialog) = before.subscribe("alice@example.com", &token, 300).await;
    assert_eq!(response.status(), 200);
    let mut dialog = dialog.expect("dialog");
    before.next_notify(WAIT).await.expect("initial NOTIFY");

    // The phone loses its connection, connects again and refreshes the
    // subscription over the new one (RFC 5626 flow recovery, browsers
    // reopening their WebSocket).
    drop(before);
    let mut after = Ua::tcp("bob@example.com", edge.sip()).await;
    let refreshed = after.resubscribe(&mut dialog, &token, 300).await;
    assert_eq!(refreshed.status(), 200);
    after
        .next_notify(WAIT)
        .await
        .expect("the refresh NOTIFY arrives on the new connection");

    let alice_token = cluster.tokens.token("alice@example.com");
    let mut alice = Ua::udp("alice@example.com", edge.sip()).await;
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "after reconnecting")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let changed = after.next_notify(WAIT).await.expect("NOTIFY after PUBLISH");
    assert!(body_text(&changed).contains("after reconnecting"));
    assert_eq!(
        crate::transport_support::subscriptions_stored(&cluster, "alice@example.com"),
        1
    );
}

/// A TCP connection to `server` from `local` (loopback is all of 127/8, so
/// 127.0.0.2 is a second source on one machine).
async fn connect_from(local: std::net::IpAddr, server: SocketAddr) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .bind(SocketAddr::new(local, 0))
        .expect("binding the local address");
    socket.connect(server).await.expect("connecting")
}

/// Sends an OPTIONS over `stream` and returns the first bytes answered.
async fn options_on(stream: &mut TcpStream, branch: &str) -> String {
    let local = stream.local_addr().expect("local address");
    let request = raw_options(
        &format!("SIP/2.0/TCP {local};branch={branch};rport"),
        &format!("{branch}@test"),
    );
    stream
        .write_all(request.as_bytes())
        .await
        .expect("sending OPTIONS");
    let mut buf = vec![0u8; 4096];
    match tokio::time::timeout(WAIT, stream.read(&mut buf)).await {
        Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        _ => String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_flood_from_one_address_does_not_lock_out_others() {
    let cluster = Cluster::start(0);
    let flags = vec!["--max-connections".into(), "100".into()];
    let edge = start_edge(&cluster, "edge-flood", &flags);

    // 127.0.0.1 opens 100 connections and says nothing on them.
    let mut flood = Vec::new();
    for _ in 0..100 {
        flood.push(TcpStream::connect(edge.sip()).await.expect("connecting"));
    }
    // Its share of the cap (32 by default) is kept; the rest are closed.
    let closed = futures::future::join_all(
        flood
            .iter_mut()
            .map(|stream| closed_within(stream, Duration::from_secs(2))),
    )
    .await;
    assert_eq!(closed.iter().filter(|c| !**c).count(), 32);

    // Another address still gets in and is served.
    let mut other = connect_from("127.0.0.2".parse().expect("address"), edge.sip()).await;
    let answer = options_on(&mut other, "z9hG4bKflood2").await;
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_without_a_sip_message_are_closed_after_the_first_message_timeout() {
    let cluster = Cluster::start(0);
    let ws_port = free_tcp_port(false);
    let flags = vec![
        "--first-message-timeout-ms".into(),
        "1500".into(),
        "--ws".into(),
        format!("127.0.0.1:{ws_port}"),
    ];
    let edge = start_edge(&cluster, "edge-first-message", &flags);

    // Silent, and CRLF keep-alives only: both closed (the idle timeout,
    // ten minutes, is far off).
    let mut silent = TcpStream::connect(edge.sip()).await.expect("connecting");
    let mut pinging = TcpStream::connect(edge.sip()).await.expect("connecting");
    let (ping_reader, mut ping_writer) = pinging.split();
    let pings = async {
        for _ in 0..40 {
            if ping_writer.write_all(b"\r\n\r\n").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let pinged_closed = async {
        let mut reader = ping_reader;
        let mut buf = [0u8; 64];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
        loop {
            match tokio::time::timeout_at(deadline, reader.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                // Pongs: the keep-alives are answered, yet do not count.
                Ok(Ok(_)) => {}
            }
        }
    };
    // A WebSocket upgraded and then silent.
    let mut ws = ws_client(loopback(ws_port), true)
        .await
        .expect("WebSocket upgrade");
    let ws_closed = async {
        tokio::time::timeout(Duration::from_secs(6), async {
            loop {
                match ws.next().await {
                    None | Some(Err(_)) | Some(Ok(WsMessage::Close(_))) => return,
                    Some(Ok(_)) => {}
                }
            }
        })
        .await
        .is_ok()
    };
    // A connection whose first message came in time stays open.
    let mut talking = TcpStream::connect(edge.sip()).await.expect("connecting");
    let answer = options_on(&mut talking, "z9hG4bKfirst1").await;
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer:?}");

    let (silent_closed, (_, pinged_closed), ws_closed) = tokio::join!(
        closed_within(&mut silent, Duration::from_secs(6)),
        async { tokio::join!(pings, pinged_closed) },
        ws_closed,
    );
    assert!(silent_closed, "a silent connection is closed");
    assert!(pinged_closed, "keep-alives alone do not hold a connection");
    assert!(ws_closed, "a silent WebSocket is closed");
    assert!(
        !closed_within(&mut talking, Duration::from_millis(500)).await,
        "a connection that sent a message is kept"
    );
    let answer = options_on(&mut talking, "z9hG4bKfirst2").await;
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unframeable_tcp_data_is_answered_400_before_the_close() {
    let cluster = Cluster::start(0);
    let edge = start_edge(&cluster, "edge-unframeable", &[]);
    // A small receive buffer, not read from for a while: the edge's answers
    // wait in its send queue, as they do toward a slow client.
    let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
    socket
        .set_recv_buffer_size(2048)
        .expect("a small receive buffer");
    let mut stream = socket.connect(edge.sip()).await.expect("connecting");
    let local = stream.local_addr().expect("local address");
    let mut pipelined = String::new();
    for i in 0..40 {
        pipelined.push_str(&raw_options(
            &format!("SIP/2.0/TCP {local};branch=z9hG4bKpipe{i};rport"),
            &format!("pipe{i}@test"),
        ));
    }
    stream
        .write_all(pipelined.as_bytes())
        .await
        .expect("pipelined requests");
    tokio::time::sleep(Duration::from_millis(500)).await;
    // A Content-Length that is not a number cannot be framed; more bytes
    // follow, as they do from a fuzzer or a confused peer, and are still
    // unread when the edge gives up on the stream.
    let mut garbage = raw_options(
        &format!("SIP/2.0/TCP {local};branch=z9hG4bKframe;rport"),
        "unframeable@test",
    )
    .replace("Content-Length: 0", "Content-Length: twelve")
    .into_bytes();
    garbage.extend(std::iter::repeat_n(b'x', 64 * 1024));
    let (mut reader, mut writer) = stream.split();
    let send = async {
        let _ = writer.write_all(&garbage).await;
    };
    let receive = async {
        // The edge has given up on the stream by now; only then read.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        let _ = tokio::time::timeout(WAIT, async {
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        String::from_utf8_lossy(&answer).into_owned()
    };
    let (_, answer) = tokio::join!(send, receive);
    assert_eq!(
        answer.matches("SIP/2.0 200 ").count(),
        40,
        "every pipelined request is answered"
    );
    let last = answer.rfind("SIP/2.0 ").expect("answers");
    assert!(
        answer[last..].starts_with("SIP/2.0 400 "),
        "the unframeable request is answered 400 last: {}",
        &answer[last..]
    );
    assert!(answer[last..].contains("Call-ID: unframeable@test"));
}
