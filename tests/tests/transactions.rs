//! RFC 3261 §17 non-INVITE transactions and §18 response routing, against
//! real edge processes over real sockets: retransmissions absorbed and
//! answered from cache, NOTIFY retransmission (Timer E) and timeout (Timer
//! F) ending the subscription, INVITE/CANCEL/ACK ending cleanly, and
//! responses routed by `received`/`rport` (RFC 3581).

use std::net::SocketAddr;
use std::time::Duration;

use crate::transport_support::{start_edge, subscriptions_stored, wait_for_subscriptions};
use bytes::Bytes;
use cluster_tests::cluster::Cluster;
use cluster_tests::ua::{pidf, Ua, WAIT};
use sip::{Event, HeaderName, Method};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The next datagram on `socket`, as text.
async fn next_datagram(socket: &UdpSocket, timeout: Duration) -> Option<(String, SocketAddr)> {
    let mut buf = vec![0u8; 65_536];
    let (n, from) = tokio::time::timeout(timeout, socket.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some((String::from_utf8_lossy(&buf[..n]).into_owned(), from))
}

/// The next datagram that is a response (NOTIFYs are skipped), raw.
async fn next_raw_response(ua: &mut Ua) -> Bytes {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let raw = ua.next_raw(left).await.expect("a response in time");
        if raw.starts_with(b"SIP/2.0 ") {
            return raw;
        }
    }
}

fn subscribe_request(ua: &mut Ua, target: &str, token: &str) -> sip::Request {
    ua.request(Method::Subscribe, target, target)
        .header(
            HeaderName::Event,
            Event {
                package: "presence".into(),
                id: None,
                params: Vec::new(),
            },
        )
        .header(HeaderName::Accept, "application/pidf+xml")
        .header(HeaderName::Expires, 300)
        .header(HeaderName::Authorization, format!("Bearer {token}"))
        .build()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retransmitted_subscribe_gets_the_cached_answer_and_no_second_subscription() {
    let cluster = Cluster::start(0);
    let edge = start_edge(&cluster, "edge-retransmit", &[]);
    let token = cluster.tokens.token("bob@example.com");
    let mut bob = Ua::udp("bob@example.com", edge.sip()).await;

    let request = subscribe_request(&mut bob, "alice@example.com", &token);
    bob.send(&request).await;
    let first = next_raw_response(&mut bob).await;
    assert!(
        first.starts_with(b"SIP/2.0 200 "),
        "{}",
        String::from_utf8_lossy(&first)
    );
    // The phone did not hear the 200 and sends the very same request again.
    bob.send(&request).await;
    let again = next_raw_response(&mut bob).await;
    assert_eq!(
        first, again,
        "the retransmission is answered with the cached response, byte for byte"
    );
    assert_eq!(subscriptions_stored(&cluster, "alice@example.com"), 1);

    // One dialog: one NOTIFY per change, not two.
    bob.next_notify(WAIT).await.expect("initial NOTIFY");
    while bob.next_notify(Duration::from_millis(700)).await.is_some() {}
    let alice_token = cluster.tokens.token("alice@example.com");
    let mut alice = Ua::udp("alice@example.com", edge.sip()).await;
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "once")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    let changed = bob.next_notify(WAIT).await.expect("NOTIFY after PUBLISH");
    let cseq = changed.headers().cseq().expect("CSeq").seq;
    while let Some(more) = bob.next_notify(Duration::from_millis(1000)).await {
        assert_eq!(
            more.headers().cseq().expect("CSeq").seq,
            cseq,
            "only retransmissions of the one NOTIFY may follow"
        );
    }
    assert_eq!(subscriptions_stored(&cluster, "alice@example.com"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_notify_is_retransmitted_over_udp_only_then_ends_the_subscription() {
    let cluster = Cluster::start(0);
    // T1 = 100 ms: Timer F (64·T1) fires after 6.4 s.
    let flags = vec![
        "--t1-ms".into(),
        "100".into(),
        "--t2-ms".into(),
        "400".into(),
    ];
    let edge = start_edge(&cluster, "edge-timers", &flags);

    // Over UDP: the NOTIFY is sent again and again, unchanged.
    let bob_token = cluster.tokens.token("bob@example.com");
    let mut bob = Ua::udp("bob@example.com", edge.sip()).await;
    bob.silent = true;
    let (response, _) = bob.subscribe("alice@example.com", &bob_token, 300).await;
    assert_eq!(response.status(), 200);
    // Over TCP: sent once; a reliable transport does the retransmitting.
    let carol_token = cluster.tokens.token("carol@example.com");
    let mut carol = Ua::tcp("carol@example.com", edge.sip()).await;
    carol.silent = true;
    let (response, _) = carol
        .subscribe("alice@example.com", &carol_token, 300)
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(subscriptions_stored(&cluster, "alice@example.com"), 2);

    let (udp_copies, tcp_copies) = tokio::join!(
        async {
            let mut copies = Vec::new();
            while let Some(n) = bob.next_notify(Duration::from_secs(3)).await {
                copies.push(n);
            }
            copies
        },
        async {
            let mut copies = Vec::new();
            while let Some(n) = carol.next_notify(Duration::from_secs(3)).await {
                copies.push(n);
            }
            copies
        }
    );
    let first = udp_copies.first().expect("a NOTIFY over UDP");
    let branch = |n: &sip::Request| {
        n.headers()
            .via()
            .expect("Via")
            .first()
            .and_then(|v| v.branch().map(str::to_string))
    };
    assert!(
        udp_copies.len() >= 5,
        "Timer E retransmits within Timer F: {} copies",
        udp_copies.len()
    );
    for copy in &udp_copies {
        assert_eq!(
            copy.to_bytes(),
            first.to_bytes(),
            "a retransmission is the same request"
        );
        assert_eq!(branch(copy), branch(first));
    }
    assert_eq!(
        tcp_copies.len(),
        1,
        "no retransmission over TCP: {} copies",
        tcp_copies.len()
    );

    // Timer F ended both subscriptions (RFC 6665 §4.2.2): the records are gone...
    assert!(
        wait_for_subscriptions(&cluster, "alice@example.com", 0, Duration::from_secs(20)).await,
        "the unanswered subscriptions are removed"
    );
    // ...and a change of Alice reaches neither.
    let alice_token = cluster.tokens.token("alice@example.com");
    let mut alice = Ua::udp("alice@example.com", edge.sip()).await;
    let published = alice
        .publish(
            &alice_token,
            None,
            Some(&pidf("alice@example.com", "open", "anyone?")),
            600,
        )
        .await;
    assert_eq!(published.status(), 200);
    assert!(bob.next_notify(Duration::from_millis(1500)).await.is_none());
    assert!(carol
        .next_notify(Duration::from_millis(500))
        .await
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_481_to_a_notify_ends_the_subscription() {
    let cluster = Cluster::start(0);
    let edge = start_edge(&cluster, "edge-481", &[]);
    let token = cluster.tokens.token("bob@example.com");
    let mut bob = Ua::udp("bob@example.com", edge.sip()).await;
    bob.notify_answer = 481;
    let (response, _) = bob.subscribe("alice@example.com", &token, 300).await;
    assert_eq!(response.status(), 200);
    bob.next_notify(WAIT).await.expect("initial NOTIFY");
    assert!(
        wait_for_subscriptions(&cluster, "alice@example.com", 0, Duration::from_secs(10)).await,
        "a 481 removes the subscription"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invite_cancel_and_ack_end_without_endless_retransmissions() {
    let cluster = Cluster::start(0);
    let edge = start_edge(&cluster, "edge-invite", &[]);
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("binding UDP");
    let local = socket.local_addr().expect("local address");
    let invite = format!(
        "INVITE sip:dave@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP {local};branch=z9hG4bKinv1;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:erin@example.com>;tag=erin1\r\n\
To: <sip:dave@example.com>\r\n\
Call-ID: invite-1@test\r\n\
CSeq: 7 INVITE\r\n\
Contact: <sip:erin@{local}>\r\n\
Content-Length: 0\r\n\r\n"
    );
    socket
        .send_to(invite.as_bytes(), edge.sip())
        .await
        .expect("send");
    let (refused, _) = next_datagram(&socket, WAIT).await.expect("an answer");
    assert!(refused.starts_with("SIP/2.0 405 "), "{refused}");
    assert!(refused.contains("\r\nAllow: "), "{refused}");

    // The INVITE retransmitted (the 405 was lost): the same 405 again.
    socket
        .send_to(invite.as_bytes(), edge.sip())
        .await
        .expect("send");
    let (again, _) = next_datagram(&socket, WAIT).await.expect("an answer");
    assert_eq!(again, refused);

    // ACK for the 405: absorbed, never answered.
    let to_tag = sip::parse(Bytes::from(refused.clone().into_bytes()))
        .ok()
        .and_then(|m| match m {
            sip::Message::Response(r) => r
                .headers()
                .to()
                .ok()
                .and_then(|t| t.tag().map(str::to_string)),
            sip::Message::Request(_) => None,
        })
        .expect("To tag in the 405");
    let ack = invite
        .replacen("INVITE sip:", "ACK sip:", 1)
        .replace("CSeq: 7 INVITE", "CSeq: 7 ACK")
        .replace(
            "To: <sip:dave@example.com>",
            &format!("To: <sip:dave@example.com>;tag={to_tag}"),
        );
    socket
        .send_to(ack.as_bytes(), edge.sip())
        .await
        .expect("send");
    assert!(next_datagram(&socket, Duration::from_millis(700))
        .await
        .is_none());

    // A CANCEL of that INVITE (same branch) matches its transaction: 200.
    let cancel = invite
        .replacen("INVITE sip:", "CANCEL sip:", 1)
        .replace("CSeq: 7 INVITE", "CSeq: 7 CANCEL");
    socket
        .send_to(cancel.as_bytes(), edge.sip())
        .await
        .expect("send");
    let (answer, _) = next_datagram(&socket, WAIT).await.expect("an answer");
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    assert!(answer.contains("CSeq: 7 CANCEL"), "{answer}");

    // A CANCEL matching nothing: 481 (RFC 3261 §9.2).
    let stray = cancel.replace("z9hG4bKinv1", "z9hG4bKnothing");
    socket
        .send_to(stray.as_bytes(), edge.sip())
        .await
        .expect("send");
    let (answer, _) = next_datagram(&socket, WAIT).await.expect("an answer");
    assert!(answer.starts_with("SIP/2.0 481 "), "{answer}");
}

fn options(via: &str, call_id: &str) -> String {
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

fn top_via_line(response: &str) -> &str {
    response
        .lines()
        .find(|l| l.starts_with("Via: "))
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_follow_received_and_rport() {
    let cluster = Cluster::start(0);
    let edge = start_edge(&cluster, "edge-via", &[]);
    let nat = start_edge(&cluster, "edge-force-rport", &["--force-rport".into()]);
    let a = UdpSocket::bind("127.0.0.1:0").await.expect("binding UDP");
    let b = UdpSocket::bind("127.0.0.1:0").await.expect("binding UDP");
    let a_port = a.local_addr().expect("address").port();
    let b_port = b.local_addr().expect("address").port();

    // Behind a NAT, with rport: the answer goes to the packet's source
    // address and port, which the Via records (RFC 3581 §4).
    let request = options(
        "SIP/2.0/UDP 192.0.2.7:5999;branch=z9hG4bKnat1;rport",
        "nat-1@test",
    );
    a.send_to(request.as_bytes(), edge.sip())
        .await
        .expect("send");
    let (answer, _) = next_datagram(&a, WAIT).await.expect("answer at the source");
    let via = top_via_line(&answer);
    assert!(via.contains("received=127.0.0.1"), "{via}");
    assert!(via.contains(&format!("rport={a_port}")), "{via}");

    // Without rport: to the source address at the port in sent-by
    // (RFC 3261 §18.2.2) — here another socket of the client.
    let request = options(
        &format!("SIP/2.0/UDP 127.0.0.1:{b_port};branch=z9hG4bKnat2"),
        "nat-2@test",
    );
    a.send_to(request.as_bytes(), edge.sip())
        .await
        .expect("send");
    let (answer, _) = next_datagram(&b, WAIT)
        .await
        .expect("answer at the sent-by port");
    let via = top_via_line(&answer);
    assert!(!via.contains("received="), "sent-by is the source: {via}");
    assert!(!via.contains("rport"), "{via}");
    assert!(next_datagram(&a, Duration::from_millis(300))
        .await
        .is_none());

    // With --force-rport, the same request is answered at its source port.
    a.send_to(request.as_bytes(), nat.sip())
        .await
        .expect("send");
    let (answer, _) = next_datagram(&a, WAIT).await.expect("answer at the source");
    assert!(
        top_via_line(&answer).contains(&format!("rport={a_port}")),
        "{answer}"
    );

    // Over TCP the answer uses the connection, whatever Via says.
    let mut stream = TcpStream::connect(edge.sip()).await.expect("connecting");
    let request = options(
        "SIP/2.0/TCP client.invalid:5070;branch=z9hG4bKtcp1",
        "tcp-1@test",
    );
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, stream.read(&mut buf))
        .await
        .expect("answer in time")
        .expect("answer");
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    assert!(
        top_via_line(&answer).contains("received=127.0.0.1"),
        "{answer}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_reused_with_another_cseq_is_a_new_request_not_a_retransmission() {
    let cluster = Cluster::start(0);
    let edge = start_edge(&cluster, "edge-cseq", &[]);
    let socket = UdpSocket::bind("127.0.0.1:0").await.expect("binding UDP");
    let local = socket.local_addr().expect("local address");
    let via = format!("SIP/2.0/UDP {local};branch=z9hG4bKreused;rport");
    let first = options(&via, "reused@test");
    let cseq_of = |answer: &str| {
        answer
            .lines()
            .find(|l| l.starts_with("CSeq: "))
            .unwrap_or_default()
            .to_string()
    };
    let server = edge.sip();
    let ask = |request: String| {
        let socket = &socket;
        async move {
            socket
                .send_to(request.as_bytes(), server)
                .await
                .expect("send");
            next_datagram(socket, WAIT).await.expect("an answer").0
        }
    };

    let answer = ask(first.clone()).await;
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    assert_eq!(cseq_of(&answer), "CSeq: 1 OPTIONS");
    // The same branch with the next CSeq (a looping test tool): answered
    // for itself, never with the cached answer of CSeq 1.
    let answer = ask(first.replace("CSeq: 1 OPTIONS", "CSeq: 2 OPTIONS")).await;
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    assert_eq!(cseq_of(&answer), "CSeq: 2 OPTIONS");
    // Another method on the same branch and number is another request too.
    let register = first
        .replace("OPTIONS sip:example.com", "REGISTER sip:example.com")
        .replace("CSeq: 1 OPTIONS", "CSeq: 1 REGISTER");
    let answer = ask(register).await;
    assert_eq!(cseq_of(&answer), "CSeq: 1 REGISTER", "{answer}");
    // A real retransmission of the first still gets the first's answer.
    let answer = ask(first).await;
    assert!(answer.starts_with("SIP/2.0 200 "), "{answer}");
    assert_eq!(cseq_of(&answer), "CSeq: 1 OPTIONS");
}
