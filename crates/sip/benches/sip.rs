//! Parse and serialise the four messages a presence edge handles most: REGISTER, PUBLISH with a
//! 1 KB PIDF body, SUBSCRIBE and NOTIFY.

use std::hint::black_box;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use sip::{
    parse, CSeq, Event, HeaderName, Message, Method, NameAddr, Request, SubscriptionState, Uri, Via,
};

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

fn pidf() -> String {
    let mut doc = String::from(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" xmlns:rpid=\"urn:ietf:params:xml:ns:pidf:rpid\" entity=\"pres:alice@example.com\">\n",
    );
    let mut i = 0;
    while doc.len() < 1000 {
        doc.push_str(&format!(
            "<tuple id=\"t{i}\"><status><basic>open</basic></status><contact priority=\"0.8\">sip:alice@host{i}.example.com</contact></tuple>\n"
        ));
        i += 1;
    }
    doc.push_str("</presence>\n");
    doc
}

fn publish(body: &str) -> String {
    format!(
        "PUBLISH sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/TLS pc.example.com:5061;branch=z9hG4bK652hsge;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:alice@example.com>\r\n\
From: <sip:alice@example.com>;tag=1234wxyz\r\n\
Call-ID: 81818181@pc.example.com\r\n\
CSeq: 1 PUBLISH\r\n\
Event: presence\r\n\
Expires: 3600\r\n\
SIP-If-Match: dx200xyz\r\n\
Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl\r\n\
Content-Type: application/pidf+xml\r\n\
Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn notify(body: &Bytes) -> Request {
    let watcher = Uri::parse("sip:alice@watcherhost.example.com;transport=tcp").expect("uri");
    Request::builder(Method::Notify, watcher)
        .typed(Via::new(
            "TCP",
            "edge1.example.net",
            Some(5060),
            "z9hG4bK-edge1-4b43c2ff8",
        ))
        .header(HeaderName::MaxForwards, 70)
        .header(HeaderName::To, "<sip:alice@example.com>;tag=xfg9")
        .header(HeaderName::From, "<sip:bob@example.com>;tag=ffd2")
        .header(HeaderName::CallId, "2010@watcherhost.example.com")
        .header(HeaderName::CSeq, "8 NOTIFY")
        .header(HeaderName::Event, "presence")
        .header(HeaderName::SubscriptionState, "active;expires=599")
        .header(HeaderName::Contact, "<sip:edge1.example.net;transport=tcp>")
        .body("application/pidf+xml", body.clone())
        .build()
}

fn bench_parse(c: &mut Criterion) {
    let body = pidf();
    let publish = publish(&body);
    let notify_bytes = notify(&Bytes::from(body.clone())).to_bytes();
    let inputs = [
        ("REGISTER", Bytes::from_static(REGISTER.as_bytes())),
        ("PUBLISH_1KB", Bytes::from(publish)),
        ("SUBSCRIBE", Bytes::from_static(SUBSCRIBE.as_bytes())),
        ("NOTIFY_1KB", notify_bytes),
    ];
    let mut group = c.benchmark_group("parse");
    for (name, bytes) in &inputs {
        group.throughput(Throughput::Elements(1));
        group.bench_function(*name, |b| b.iter(|| parse(black_box(bytes.clone()))));
    }
    group.finish();

    // What the edge does after parsing a SUBSCRIBE: read the fields it routes and answers on.
    c.bench_function("parse_and_read/SUBSCRIBE", |b| {
        let bytes = Bytes::from_static(SUBSCRIBE.as_bytes());
        b.iter(|| {
            let Ok(Message::Request(r)) = parse(black_box(bytes.clone())) else {
                return;
            };
            let h = r.headers();
            let _ = black_box((
                h.top_via(),
                h.from(),
                h.to(),
                h.call_id(),
                h.cseq(),
                h.event(),
                h.expires(),
            ));
        })
    });

    let mut group = c.benchmark_group("serialize");
    for (name, bytes) in &inputs {
        let Ok(message) = parse(bytes.clone()) else {
            continue;
        };
        group.bench_function(*name, |b| b.iter(|| black_box(&message).to_bytes()));
    }
    group.finish();

    let body = Bytes::from(body);
    c.bench_function("build_and_serialize/NOTIFY_1KB", |b| {
        b.iter(|| notify(black_box(&body)).to_bytes())
    });
    c.bench_function("build_typed_and_serialize/NOTIFY_1KB", |b| {
        let watcher = Uri::parse("sip:alice@watcherhost.example.com;transport=tcp").expect("uri");
        let to = NameAddr::new(Uri::parse("sip:alice@example.com").expect("uri")).with_tag("xfg9");
        let from = NameAddr::new(Uri::parse("sip:bob@example.com").expect("uri")).with_tag("ffd2");
        b.iter(|| {
            Request::builder(Method::Notify, watcher.clone())
                .typed(Via::new(
                    "TCP",
                    "edge1.example.net",
                    Some(5060),
                    "z9hG4bK-edge1-4b43c2ff8",
                ))
                .header(HeaderName::MaxForwards, 70)
                .to(&to)
                .from(&from)
                .header(HeaderName::CallId, "2010@watcherhost.example.com")
                .typed(CSeq::new(8, Method::Notify))
                .typed(Event::new("presence"))
                .typed(SubscriptionState::active(599))
                .body("application/pidf+xml", body.clone())
                .build()
                .to_bytes()
        })
    });
}

criterion_group!(benches, bench_parse);
criterion_main!(benches);
