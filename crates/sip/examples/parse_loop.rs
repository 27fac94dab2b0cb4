//! Parses (or serialises) one message in a loop, for CPU-time measurement with
//! `perf stat -e task-clock` or instruction counts with `valgrind --tool=callgrind`:
//!
//! ```text
//! cargo build --release -p sip --example parse_loop
//! perf stat -e task-clock target/release/examples/parse_loop parse 1000000
//! ```
//!
//! Modes: `parse` (SUBSCRIBE), `register` (parse a REGISTER), `frame` (SUBSCRIBE), `serialize`
//! (NOTIFY with a 1 KB body).

use std::hint::black_box;

use bytes::Bytes;

const SUBSCRIBE: &str = "SUBSCRIBE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP watcherhost.example.com;branch=z9hG4bKnashds7;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:bob@example.com>\r\n\
From: \"Alice\" <sip:alice@example.com>;tag=xfg9\r\n\
Call-ID: 2010@watcherhost.example.com\r\n\
CSeq: 17766 SUBSCRIBE\r\n\
Event: presence\r\n\
Accept: application/pidf+xml, application/rlmi+xml, multipart/related\r\n\
Contact: <sip:alice@watcherhost.example.com;transport=tcp>\r\n\
Supported: eventlist\r\n\
Allow-Events: presence, presence.winfo\r\n\
Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl\r\n\
Expires: 600\r\n\
Content-Length: 0\r\n\r\n";

const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/TLS 192.0.2.10:5061;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: \"Bob\" <sip:bob@example.com>\r\n\
From: \"Bob\" <sip:bob@example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.10:5061;transport=tls;ob>;expires=3600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1\r\n\
Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJib2IiLCJzY29wZSI6InNpcCJ9.c2lnbmF0dXJlc2lnbmF0dXJl\r\n\
Supported: path, outbound, gruu\r\n\
User-Agent: Phone/2.1\r\n\
Expires: 3600\r\n\
Content-Length: 0\r\n\r\n";

fn notify() -> Bytes {
    let mut body = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence>\n");
    while body.len() < 1000 {
        body.push_str("<tuple id=\"t\"><status><basic>open</basic></status></tuple>\n");
    }
    body.push_str("</presence>\n");
    Bytes::from(format!(
        "NOTIFY sip:alice@watcherhost.example.com;transport=tcp SIP/2.0\r\n\
Via: SIP/2.0/TCP edge1.example.net:5060;branch=z9hG4bK-edge1-4b43c2ff8\r\n\
Max-Forwards: 70\r\n\
To: <sip:alice@example.com>;tag=xfg9\r\n\
From: <sip:bob@example.com>;tag=ffd2\r\n\
Call-ID: 2010@watcherhost.example.com\r\n\
CSeq: 8 NOTIFY\r\n\
Event: presence\r\n\
Subscription-State: active;expires=599\r\n\
Contact: <sip:edge1.example.net;transport=tcp>\r\n\
Content-Type: application/pidf+xml\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "parse".into());
    let n: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let subscribe = Bytes::from_static(SUBSCRIBE.as_bytes());
    match mode.as_str() {
        "parse" => {
            for _ in 0..n {
                black_box(sip::parse(black_box(subscribe.clone())).is_ok());
            }
        }
        "register" => {
            let register = Bytes::from_static(REGISTER.as_bytes());
            for _ in 0..n {
                black_box(sip::parse(black_box(register.clone())).is_ok());
            }
        }
        "frame" => {
            let limits = sip::Limits::default();
            for _ in 0..n {
                black_box(sip::frame(black_box(&subscribe), &limits).is_ok());
            }
        }
        "serialize" => {
            let message = sip::parse(notify()).expect("NOTIFY parses");
            for _ in 0..n {
                black_box(black_box(&message).to_bytes());
            }
        }
        other => panic!("unknown mode {other}"),
    }
}
