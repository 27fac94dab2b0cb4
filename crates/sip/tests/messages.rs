//! Parsing, typed access and serialisation of the messages a presence service handles.

use bytes::Bytes;
use sip::*;

fn req(text: &str) -> Request {
    match parse(Bytes::copy_from_slice(text.as_bytes())).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("expected a request"),
    }
}

fn resp(text: &str) -> Response {
    match parse(Bytes::copy_from_slice(text.as_bytes())).unwrap() {
        Message::Response(r) => r,
        Message::Request(_) => panic!("expected a response"),
    }
}

const REGISTER: &str = "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@Example.COM>\r\n\
From: Bob <sip:bob@example.com>;tag=456248\r\n\
Call-ID: 843817637684230@998sdasdh09\r\n\
CSeq: 1826 REGISTER\r\n\
Contact: <sip:bob@192.0.2.10:5060;transport=udp>;expires=3600;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1;q=0.7\r\n\
Authorization: Bearer eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2ln\r\n\
Expires: 7200\r\n\
Supported: path, outbound\r\n\
User-Agent: Test/1.0\r\n\
Content-Length: 0\r\n\r\n";

#[test]
fn register() {
    let r = req(REGISTER);
    assert_eq!(r.method(), &Method::Register);
    assert_eq!(r.uri().to_string(), "sip:example.com");
    let h = r.headers();
    let via = h.via().unwrap();
    assert_eq!(via.len(), 1);
    assert_eq!(via[0].transport, "UDP");
    assert_eq!(via[0].host, "192.0.2.10");
    assert_eq!(via[0].port, Some(5060));
    assert_eq!(via[0].branch(), Some("z9hG4bK776asdhds"));
    assert_eq!(via[0].rport(), Some(None));
    let to = h.to().unwrap();
    assert_eq!(to.display_name.as_deref(), Some("Bob"));
    assert_eq!(to.uri.aor(), "bob@example.com");
    assert_eq!(h.from().unwrap().tag(), Some("456248"));
    assert_eq!(h.call_id().unwrap(), "843817637684230@998sdasdh09");
    assert_eq!(h.cseq().unwrap(), CSeq::new(1826, Method::Register));
    let Contacts::List(contacts) = h.contacts().unwrap() else {
        panic!("expected a list")
    };
    assert_eq!(contacts.len(), 1);
    let c = &contacts[0];
    assert_eq!(c.expires(), Some(3600));
    assert_eq!(c.q(), Some(0.7));
    assert_eq!(c.reg_id(), Some(1));
    assert_eq!(
        c.instance().as_deref(),
        Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")
    );
    assert_eq!(c.name_addr.uri.param("transport"), Some(Some("udp")));
    assert_eq!(
        h.authorization().unwrap(),
        Some(Authorization::Bearer(
            "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJib2IifQ.c2ln".into()
        ))
    );
    assert_eq!(h.expires().unwrap(), Some(7200));
    assert_eq!(h.max_forwards().unwrap(), Some(70));
    assert_eq!(h.supported(), vec!["path", "outbound"]);
    assert_eq!(h.user_agent(), Some("Test/1.0"));
    assert_eq!(h.content_length().unwrap(), Some(0));
    assert!(r.body().is_empty());
}

const PUBLISH_HEAD: &str = "PUBLISH sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/TCP pc.example.com;branch=z9hG4bK652hsge\r\n\
To: <sip:alice@example.com>\r\n\
From: <sip:alice@example.com>;tag=1234wxyz\r\n\
Call-ID: 81818181@pc.example.com\r\n\
CSeq: 1 PUBLISH\r\n\
Max-Forwards: 70\r\n\
Expires: 3600\r\n\
SIP-If-Match: dx200xyz\r\n\
Event: presence\r\n\
Content-Type: application/pidf+xml\r\n";

const PIDF: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<presence xmlns=\"urn:ietf:params:xml:ns:pidf\" entity=\"pres:alice@example.com\">\n<tuple id=\"t1\"><status><basic>open</basic></status></tuple>\n</presence>\n";

#[test]
fn publish_with_body() {
    let text = format!("{PUBLISH_HEAD}Content-Length: {}\r\n\r\n{PIDF}", PIDF.len());
    let r = req(&text);
    assert_eq!(r.method(), &Method::Publish);
    let h = r.headers();
    assert_eq!(h.sip_if_match(), Some("dx200xyz"));
    assert_eq!(h.sip_etag(), None);
    let event = h.event().unwrap().unwrap();
    assert!(event.is("presence"));
    let ct = h.content_type().unwrap().unwrap();
    assert_eq!(ct.essence(), "application/pidf+xml");
    assert!(ct.matches("application/PIDF+xml"));
    assert_eq!(r.body().as_ref(), PIDF.as_bytes());
    // Serialised and parsed again, the message is the same.
    let again = req(std::str::from_utf8(&r.to_bytes()).unwrap());
    assert_eq!(again.body(), r.body());
    assert_eq!(
        again.headers().iter().collect::<Vec<_>>(),
        h.iter().collect::<Vec<_>>()
    );
}

const SUBSCRIBE: &str = "SUBSCRIBE sip:bob@example.com SIP/2.0\r\n\
v: SIP/2.0/TCP watcherhost.example.com;branch=z9hG4bKnashds7\r\n\
t: <sip:bob@example.com>\r\n\
f: <sip:alice@example.com>;tag=xfg9\r\n\
i: 2010@watcherhost.example.com\r\n\
CSeq: 17766 SUBSCRIBE\r\n\
Max-Forwards: 70\r\n\
o: presence;id=1\r\n\
Accept: application/pidf+xml, application/rlmi+xml,\r\n multipart/related\r\n\
m: <sip:alice@watcherhost.example.com;transport=tcp>\r\n\
Expires: 600\r\n\
k: eventlist\r\n\
l: 0\r\n\r\n";

#[test]
fn subscribe_compact_forms_and_folding() {
    let r = req(SUBSCRIBE);
    let h = r.headers();
    assert_eq!(h.get("Via"), h.get("v"));
    assert_eq!(
        h.get(HeaderName::CallId),
        Some("2010@watcherhost.example.com")
    );
    assert_eq!(h.get("call-id"), Some("2010@watcherhost.example.com"));
    let event = h.event().unwrap().unwrap();
    assert_eq!(event.package, "presence");
    assert_eq!(event.id.as_deref(), Some("1"));
    let accept: Vec<String> = h.accept().unwrap().iter().map(MediaType::essence).collect();
    assert_eq!(
        accept,
        [
            "application/pidf+xml",
            "application/rlmi+xml",
            "multipart/related"
        ]
    );
    assert_eq!(h.supported(), vec!["eventlist"]);
    assert_eq!(h.expires().unwrap(), Some(600));
    let out = String::from_utf8(r.to_bytes().to_vec()).unwrap();
    assert!(out.contains("\r\nVia: SIP/2.0/TCP watcherhost.example.com;branch=z9hG4bKnashds7\r\n"));
    assert!(out.contains("\r\nEvent: presence;id=1\r\n"));
    assert!(out
        .contains("\r\nAccept: application/pidf+xml, application/rlmi+xml, multipart/related\r\n"));
    assert!(out.ends_with("Content-Length: 0\r\n\r\n"));
}

#[test]
fn notify_builder_round_trip() {
    let uri = Uri::sip(Some("alice"), "watcherhost.example.com", Some(5061)).unwrap();
    let body = Bytes::from_static(PIDF.as_bytes());
    let notify = Request::builder(Method::Notify, uri.clone())
        .typed(Via::new(
            "tls",
            "edge1.example.net",
            Some(5061),
            "z9hG4bKedge1",
        ))
        .header(HeaderName::MaxForwards, 70)
        .to(&NameAddr::new(Uri::parse("sip:alice@example.com").unwrap()).with_tag("xfg9"))
        .from(&NameAddr::new(Uri::parse("sip:bob@example.com").unwrap()).with_tag("ffd2"))
        .header(HeaderName::CallId, "2010@watcherhost.example.com")
        .typed(CSeq::new(8, Method::Notify))
        .typed(Event::new("presence"))
        .typed(SubscriptionState::active(599))
        .body("application/pidf+xml", body.clone())
        .build();
    let bytes = notify.to_bytes();
    let parsed = match parse(bytes.clone()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => panic!("request expected"),
    };
    assert_eq!(parsed.method(), &Method::Notify);
    assert_eq!(parsed.uri(), &uri);
    assert_eq!(parsed.body(), &body);
    let h = parsed.headers();
    assert_eq!(
        h.subscription_state().unwrap(),
        Some(SubscriptionState::active(599))
    );
    assert_eq!(h.to().unwrap().tag(), Some("xfg9"));
    assert_eq!(h.top_via().unwrap().transport, "TLS");
    assert_eq!(h.content_length().unwrap(), Some(body.len()));
    assert_eq!(parsed.to_bytes(), bytes);
}

#[test]
fn formatted_header_values_are_trimmed_and_cannot_inject_lines() {
    let uri = Uri::parse("sip:alice@example.com").unwrap();
    let request = Request::builder(Method::Notify, uri)
        .header(HeaderName::CallId, "a\r\nInjected: yes")
        .header(HeaderName::Subject, "  padded\t ")
        .header(HeaderName::MaxForwards, 70)
        .build();
    let out = String::from_utf8(request.to_bytes().to_vec()).unwrap();
    assert!(out.contains("\r\nCall-ID: a  Injected: yes\r\n"), "{out}");
    assert!(out.contains("\r\nSubject: padded\r\n"), "{out}");
    assert!(out.contains("\r\nMax-Forwards: 70\r\n"), "{out}");
    let response = Response::builder(200)
        .header(HeaderName::Subject, "x\ny")
        .build();
    let out = String::from_utf8(response.to_bytes().to_vec()).unwrap();
    assert!(out.contains("\r\nSubject: x y\r\n"), "{out}");
}

#[test]
fn response_for_request_copies_dialog_headers() {
    let mut r = req(REGISTER);
    let mut top = r.headers().top_via().unwrap();
    top.set_received("198.51.100.7");
    top.set_rport(40123);
    r.set_top_via(&top);
    let response = Response::for_request(&r, 200)
        .to_tag("reg-tag")
        .typed(Contact::new(NameAddr::new(
            Uri::parse("sip:bob@192.0.2.10:5060").unwrap(),
        )))
        .header(HeaderName::Expires, 3600)
        .build();
    assert_eq!(response.status(), 200);
    assert_eq!(response.reason(), "OK");
    let parsed = resp(std::str::from_utf8(&response.to_bytes()).unwrap());
    let h = parsed.headers();
    let via = h.top_via().unwrap();
    assert_eq!(via.received(), Some("198.51.100.7"));
    assert_eq!(via.rport(), Some(Some(40123)));
    assert_eq!(h.to().unwrap().tag(), Some("reg-tag"));
    assert_eq!(h.from().unwrap().tag(), Some("456248"));
    assert_eq!(h.call_id().unwrap(), "843817637684230@998sdasdh09");
    assert_eq!(h.cseq().unwrap().method, Method::Register);
    // A To that already has a tag keeps it.
    let again = Response::for_request(&parsed_request_with_to_tag(), 481)
        .to_tag("other")
        .build();
    assert_eq!(again.headers().to().unwrap().tag(), Some("existing"));
    assert_eq!(again.reason(), "Call/Transaction Does Not Exist");
}

fn parsed_request_with_to_tag() -> Request {
    req(&SUBSCRIBE.replace(
        "t: <sip:bob@example.com>",
        "t: <sip:bob@example.com>;tag=existing",
    ))
}

#[test]
fn response_parsing() {
    let r = resp(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bKnashds8;received=192.0.2.4\r\n\
To: <sip:alice@example.com>;tag=37GkEhwl6\r\nFrom: <sip:bob@example.com>;tag=ffd2\r\n\
Call-ID: 2010@watcherhost.example.com\r\nCSeq: 8 NOTIFY\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status(), 200);
    assert_eq!(r.reason(), "OK");
    assert_eq!(r.headers().cseq().unwrap(), CSeq::new(8, Method::Notify));
    let r = resp("SIP/2.0 423 Interval Too Brief\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>;tag=1\r\n\
From: <sip:a@b>;tag=2\r\nCall-ID: x\r\nCSeq: 2 SUBSCRIBE\r\nMin-Expires: 60\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(r.headers().min_expires().unwrap(), Some(60));
}

#[test]
fn frame_finds_message_boundaries() {
    let limits = Limits::default();
    let mut stream = Vec::new();
    stream.extend_from_slice(b"\r\n\r\n");
    let notify = format!("{PUBLISH_HEAD}Content-Length: {}\r\n\r\n{PIDF}", PIDF.len());
    stream.extend_from_slice(notify.as_bytes());
    stream.extend_from_slice(b"OPTIONS sip:x SIP/2.0\r\n");
    let f = frame(&stream, &limits).unwrap();
    assert_eq!(f.skip, 4);
    assert_eq!(f.len, Some(notify.len()));
    // Partial input needs more bytes.
    let f = frame(&stream[..40], &limits).unwrap();
    assert_eq!(f.len, None);
    let f = frame(&stream[..notify.len()], &limits).unwrap();
    assert_eq!(f.len, None, "body incomplete");
    // Missing Content-Length on a stream is an error.
    let err = frame(
        b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/TCP h\r\n\r\n",
        &limits,
    )
    .unwrap_err();
    assert_eq!(err.status_code(), 400);
}

#[test]
fn error_response_for_bad_request() {
    let raw = b"INVITE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\nFrom: <sip:c@d>;tag=9\r\n\
Call-ID: q\r\nCSeq: 1 INVITE\r\nContact: <sip:a@b>;;\r\nContent-Length: 0\r\n\r\n";
    let err = parse(Bytes::from_static(raw)).unwrap_err();
    assert_eq!(err.status_code(), 400);
    let answer = error_response(raw, &err).unwrap();
    assert_eq!(answer.status(), 400);
    assert_eq!(answer.reason(), "Malformed Contact Header");
    assert!(answer.headers().to().unwrap().tag().is_some());
    assert_eq!(answer.headers().call_id().unwrap(), "q");
}
