//! RFC 4475 "SIP Torture Test Messages": every message of the archive, byte for byte, with the
//! values and verdicts the RFC names for it.

use bytes::Bytes;
use sip::*;

fn load(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/corpus/rfc4475/{name}.dat",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn request(name: &str) -> Request {
    match parse(Bytes::from(load(name))) {
        Ok(Message::Request(r)) => r,
        other => panic!("{name}: expected a request, got {other:?}"),
    }
}

fn response(name: &str) -> Response {
    match parse(Bytes::from(load(name))) {
        Ok(Message::Response(r)) => r,
        other => panic!("{name}: expected a response, got {other:?}"),
    }
}

/// Parsing fails; returns the error and the best-effort answer.
fn rejected(name: &str) -> (ParseError, Option<Response>) {
    let raw = load(name);
    let err = match parse(Bytes::from(raw.clone())) {
        Err(e) => e,
        Ok(m) => panic!("{name}: expected rejection, parsed {m:?}"),
    };
    let answer = error_response(&raw, &err);
    if let Some(a) = &answer {
        assert_eq!(a.status(), err.status_code(), "{name}");
        // The answer's status line carries the error; its headers echo the request's.
        let status_line = format!("SIP/2.0 {} {}\r\n", err.status_code(), err.reason());
        assert!(a.to_bytes().starts_with(status_line.as_bytes()), "{name}");
    }
    (err, answer)
}

/// Serialising a parsed message and parsing it again gives the same fields.
fn round_trips(r: &Request) {
    let again = match parse(r.to_bytes()).unwrap() {
        Message::Request(again) => again,
        Message::Response(_) => panic!("request expected"),
    };
    assert_eq!(again.method(), r.method());
    assert_eq!(again.uri(), r.uri());
    assert_eq!(again.body(), r.body());
    let fields = |r: &Request| {
        r.headers()
            .iter()
            .filter(|(n, _)| *n != "Content-Length")
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect::<Vec<_>>()
    };
    assert_eq!(fields(&again), fields(r));
}

// §3.1.1 Valid messages

#[test]
fn wsinv_short_tortuous_invite() {
    let r = request("wsinv");
    round_trips(&r);
    assert_eq!(r.method(), &Method::Invite);
    assert_eq!(r.uri().param("unknownparam"), Some(None));
    let h = r.headers();
    let to = h.to().unwrap();
    assert_eq!(to.uri.to_string(), "sip:vivekg@chair-dnrc.example.com");
    assert_eq!(to.tag(), Some("1918181833n"));
    let from = h.from().unwrap();
    assert_eq!(from.display_name.as_deref(), Some("J Rosenberg \\\""));
    assert_eq!(from.uri.to_string(), "sip:jdrosen@example.com");
    assert_eq!(from.tag(), Some("98asjd8"));
    assert_eq!(h.max_forwards().unwrap(), Some(68));
    assert_eq!(h.call_id().unwrap(), "wsinv.ndaksdj@192.0.2.1");
    assert_eq!(h.content_length().unwrap(), Some(150));
    assert_eq!(h.cseq().unwrap(), CSeq::new(9, Method::Invite));
    let via = h.via().unwrap();
    assert_eq!(via.len(), 3);
    assert_eq!(
        (via[0].transport.as_str(), via[0].host.as_str()),
        ("UDP", "192.0.2.2")
    );
    assert_eq!(via[0].branch(), Some("390skdjuw"));
    assert_eq!(
        (via[1].transport.as_str(), via[1].host.as_str()),
        ("TCP", "spindle.example.com")
    );
    assert_eq!(via[1].branch(), Some("z9hG4bK9ikj8"));
    assert_eq!(
        (via[2].transport.as_str(), via[2].host.as_str()),
        ("UDP", "192.168.255.111")
    );
    assert_eq!(via[2].branch(), Some("z9hG4bK30239"));
    assert_eq!(h.get("Subject"), Some(""));
    assert_eq!(
        h.get("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    assert_eq!(h.get("UnknownHeaderWithUnusualValue"), Some(";;,,;;,;"));
    assert_eq!(
        h.content_type().unwrap().unwrap().essence(),
        "application/sdp"
    );
    let route = h.route().unwrap();
    assert_eq!(route.len(), 1);
    assert_eq!(route[0].uri.param("lr"), Some(None));
    assert_eq!(route[0].uri.param("unknownwith"), Some(Some("value")));
    assert_eq!(route[0].uri.param("unknown-no-value"), Some(None));
    let Contacts::List(contacts) = h.contacts().unwrap() else {
        panic!("list expected")
    };
    assert_eq!(
        contacts[0].name_addr.display_name.as_deref(),
        Some("Quoted string \"\"")
    );
    assert_eq!(
        contacts[0].name_addr.param("newparam"),
        Some(Some("newvalue"))
    );
    assert_eq!(contacts[0].name_addr.param("secondparam"), Some(None));
    assert_eq!(contacts[0].q(), Some(0.33));
    assert_eq!(r.body().len(), 150);
}

#[test]
fn intmeth_wide_range_of_valid_characters() {
    let r = request("intmeth");
    round_trips(&r);
    let method = "!interesting-Method0123456789_*+`.%indeed'~";
    assert_eq!(r.method(), &Method::Extension(method.into()));
    assert_eq!(
        r.uri().user(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    assert_eq!(
        r.uri().password(),
        Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
    );
    assert_eq!(r.uri().host(), "example.com");
    let h = r.headers();
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK-.!%66*_+`'~"));
    let to = h.to().unwrap();
    assert_eq!(
        to.display_name.as_deref(),
        Some("BEL:\u{7} NUL:\u{0} DEL:\u{7f}")
    );
    assert_eq!(
        to.uri.user(),
        Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
    );
    let from = h.from().unwrap();
    assert_eq!(
        from.display_name.as_deref(),
        Some("token1~` token2'+_ token3*%!.-")
    );
    assert_eq!(
        from.param("fromParam''~+*_!.-%"),
        Some(Some(
            "\"\u{440}\u{430}\u{431}\u{43e}\u{442}\u{430}\u{44e}\u{449}\u{438}\u{439}\""
        ))
    );
    assert_eq!(from.tag(), Some("_token~1'+`*%!-."));
    assert_eq!(
        h.call_id().unwrap(),
        "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{"
    );
    assert_eq!(
        h.cseq().unwrap(),
        CSeq::new(139122385, Method::Extension(method.into()))
    );
    assert_eq!(h.max_forwards().unwrap(), Some(255));
    assert_eq!(
        h.get("extensionHeader-!.%*+_`'~"),
        Some("\u{feff}\u{5927}\u{505c}\u{96fb}")
    );
}

#[test]
fn esc01_valid_use_of_escape() {
    let r = request("esc01");
    round_trips(&r);
    assert_eq!(r.uri().user(), Some("sips:user@example.com"));
    assert_eq!(r.uri().host(), "example.net");
    assert_eq!(r.uri().aor(), "sips:user@example.com@example.net");
    let h = r.headers();
    assert_eq!(h.to().unwrap().uri.user(), Some("user"));
    assert_eq!(h.from().unwrap().uri.user(), Some("I have spaces"));
    let Contacts::List(contacts) = h.contacts().unwrap() else {
        panic!("list expected")
    };
    let uri = &contacts[0].name_addr.uri;
    assert_eq!(uri.user(), Some("caller"));
    // %6C%72 is "lr"; n%61me is "name".
    assert_eq!(uri.param("lr"), Some(None));
    assert_eq!(uri.param("name"), Some(Some("v%61lue%25%34%31")));
    assert_eq!(
        h.content_type().unwrap().unwrap().essence(),
        "application/sdp"
    );
}

#[test]
fn escnull_escaped_nulls_in_uris() {
    let r = request("escnull");
    round_trips(&r);
    let h = r.headers();
    assert_eq!(h.to().unwrap().uri.user(), Some("null-\0-null"));
    assert_eq!(h.from().unwrap().uri.user(), Some("null-\0-null"));
    let Contacts::List(contacts) = h.contacts().unwrap() else {
        panic!("list expected")
    };
    assert_eq!(contacts.len(), 2);
    assert_eq!(contacts[0].name_addr.uri.user(), Some("\0"));
    assert_eq!(contacts[1].name_addr.uri.user(), Some("\0\0"));
    assert_ne!(
        contacts[0].name_addr.uri.aor(),
        contacts[1].name_addr.uri.aor()
    );
}

#[test]
fn esc02_percent_when_not_an_escape() {
    let r = request("esc02");
    round_trips(&r);
    // The method is an extension token, not an escaped REGISTER.
    assert_eq!(r.method(), &Method::Extension("RE%47IST%45R".into()));
    let h = r.headers();
    assert_eq!(
        h.cseq().unwrap().method,
        Method::Extension("RE%47IST%45R".into())
    );
    assert_eq!(h.to().unwrap().display_name.as_deref(), Some("%Z%45"));
    assert_eq!(h.top_via().unwrap().branch(), Some("z9hG4bK209%fzsnel234"));
    // "C%6Fntact" is an unknown header, not a Contact.
    let Contacts::List(contacts) = h.contacts().unwrap() else {
        panic!("list expected")
    };
    let hosts: Vec<&str> = contacts.iter().map(|c| c.name_addr.uri.host()).collect();
    assert_eq!(hosts, ["host1.example.com", "host3.example.com"]);
    assert_eq!(h.get("C%6Fntact"), Some("<sip:alias2@host2.example.com>"));
}

#[test]
fn lwsdisp_no_lws_between_display_name_and_angle() {
    let r = request("lwsdisp");
    round_trips(&r);
    let from = r.headers().from().unwrap();
    assert_eq!(from.display_name.as_deref(), Some("caller"));
    assert_eq!(from.uri.to_string(), "sip:caller@example.com");
    assert_eq!(from.tag(), Some("323"));
}

#[test]
fn longreq_long_values() {
    let r = request("longreq");
    round_trips(&r);
    let h = r.headers();
    let to = h.to().unwrap();
    assert!(to
        .display_name
        .as_deref()
        .unwrap()
        .ends_with("extreme proportion"));
    assert_eq!(to.uri.port(), Some(6000));
    assert_eq!(
        to.uri.param("unknownparam1"),
        Some(Some("verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongvalue"))
    );
    assert_eq!(
        to.uri.param("verylonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglonglongParameterNameWithNoValue"),
        Some(None)
    );
    assert!(h.from().unwrap().tag().unwrap().len() > 50);
    assert!(h.call_id().unwrap().starts_with("longreq.onereally"));
    // 34 Via header fields, in compact and mixed-case forms.
    let via = h.via().unwrap();
    assert_eq!(via.len(), 34);
    assert_eq!(via[0].host, "sip33.example.com");
    assert_eq!(via[33].host, "host.example.com");
    assert_eq!(via[33].received(), Some("192.0.2.5"));
    assert_eq!(h.content_length().unwrap(), Some(150));
    let unknown = h
        .iter()
        .find(|(n, _)| n.starts_with("Unknown-LongLong"))
        .map(|(_, v)| v)
        .unwrap();
    assert!(unknown.starts_with("unknown-longlong"));
}

#[test]
fn dblreq_extra_trailing_octets_in_datagram() {
    let r = request("dblreq");
    // Only the REGISTER is processed; the trailing INVITE is discarded (Content-Length: 0).
    assert_eq!(r.method(), &Method::Register);
    assert!(r.body().is_empty());
    assert_eq!(
        r.headers().call_id().unwrap(),
        "dblreq.0ha0isndaksdj99sdfafnl3lk233412"
    );
    round_trips(&r);
}

#[test]
fn semiuri_semicolon_in_uri_user_part() {
    let r = request("semiuri");
    round_trips(&r);
    assert_eq!(r.uri().user(), Some("user;par=u@example.net"));
    assert_eq!(r.uri().host(), "example.com");
    assert_eq!(r.uri().params().count(), 0);
    let accept: Vec<String> = r
        .headers()
        .accept()
        .unwrap()
        .iter()
        .map(MediaType::essence)
        .collect();
    assert_eq!(
        accept,
        [
            "application/sdp",
            "application/pkcs7-mime",
            "multipart/mixed",
            "multipart/signed",
            "message/sip",
            "message/sipfrag"
        ]
    );
}

#[test]
fn transports_variety_of_transport_types() {
    let r = request("transports");
    round_trips(&r);
    let via = r.headers().via().unwrap();
    let transports: Vec<&str> = via.iter().map(|v| v.transport.as_str()).collect();
    assert_eq!(transports, ["UDP", "SCTP", "TLS", "UNKNOWN", "TCP"]);
    assert_eq!(
        r.headers().call_id().unwrap(),
        "transports.kijh4akdnaqjkwendsasfdj"
    );
}

#[test]
fn mpart01_multipart_mime_body() {
    let r = request("mpart01");
    round_trips(&r);
    assert_eq!(r.method(), &Method::Message);
    let ct = r.headers().content_type().unwrap().unwrap();
    assert_eq!(ct.essence(), "multipart/mixed");
    assert_eq!(ct.param("boundary"), Some(Some("7a9cbec02ceef655")));
    assert_eq!(r.body().len(), 553);
    assert!(r.body().starts_with(b"--7a9cbec02ceef655\r\n"));
    assert_eq!(r.headers().top_via().unwrap().rport(), Some(None));
    assert_eq!(r.headers().date(), Some("Sat, 15 Oct 2005 04:44:56 GMT"));
}

#[test]
fn unreason_unusual_reason_phrase() {
    let r = response("unreason");
    assert_eq!(r.status(), 200);
    assert!(r.reason().starts_with("= 2**3 * 5**2 "));
    assert!(r
        .reason()
        .ends_with("\u{43f}\u{440}\u{43e}\u{441}\u{442}\u{43e}\u{435}"));
    assert_eq!(r.body().len(), 154);
    let again = match parse(r.to_bytes()).unwrap() {
        Message::Response(again) => again,
        Message::Request(_) => panic!("response expected"),
    };
    assert_eq!(again.reason(), r.reason());
}

#[test]
fn noreason_empty_reason_phrase() {
    let r = response("noreason");
    assert_eq!(r.status(), 100);
    assert_eq!(r.reason(), "");
    assert_eq!(r.headers().to().unwrap().tag(), Some("902jndnke3"));
}

// §3.1.2 Invalid messages

#[test]
fn badinv01_extraneous_header_field_separators() {
    let (err, answer) = rejected("badinv01");
    assert_eq!(err.status_code(), 400);
    assert!(answer.is_some());
}

#[test]
fn clerr_content_length_larger_than_message() {
    let (err, answer) = rejected("clerr");
    assert_eq!(err.kind(), &ErrorKind::BadContentLength);
    assert_eq!(answer.map(|a| a.status()), Some(400));
}

#[test]
fn ncl_negative_content_length() {
    let (err, answer) = rejected("ncl");
    assert_eq!(err.kind(), &ErrorKind::BadContentLength);
    assert_eq!(answer.map(|a| a.status()), Some(400));
}

#[test]
fn scalar02_request_scalar_fields_with_overlarge_values() {
    let (err, answer) = rejected("scalar02");
    assert_eq!(err.kind(), &ErrorKind::InvalidHeader(HeaderName::CSeq));
    assert_eq!(answer.map(|a| a.status()), Some(400));
}

#[test]
fn scalarlg_response_scalar_fields_with_overlarge_values() {
    // A response is discarded: nothing is sent back.
    let (err, answer) = rejected("scalarlg");
    assert_eq!(err.kind(), &ErrorKind::InvalidHeader(HeaderName::CSeq));
    assert!(answer.is_none());
}

#[test]
fn quotbal_unterminated_quoted_string_in_display_name() {
    let (err, answer) = rejected("quotbal");
    assert_eq!(err.kind(), &ErrorKind::InvalidHeader(HeaderName::To));
    assert_eq!(answer.map(|a| a.status()), Some(400));
}

#[test]
fn ltgtruri_angle_brackets_around_request_uri() {
    let (err, answer) = rejected("ltgtruri");
    assert_eq!(err.kind(), &ErrorKind::BadRequestUri);
    assert_eq!(answer.map(|a| a.status()), Some(400));
}

#[test]
fn lwsruri_embedded_lws_in_request_uri() {
    let (err, answer) = rejected("lwsruri");
    assert_eq!(err.status_code(), 400);
    assert!(answer.is_some());
}

#[test]
fn lwsstart_multiple_sp_in_request_line() {
    let (err, _) = rejected("lwsstart");
    assert_eq!(err.kind(), &ErrorKind::BadStartLine);
    assert_eq!(err.status_code(), 400);
}

#[test]
fn trws_sp_at_end_of_request_line() {
    let (err, _) = rejected("trws");
    assert_eq!(err.kind(), &ErrorKind::BadStartLine);
}

#[test]
fn escruri_escaped_headers_in_request_uri() {
    let (err, answer) = rejected("escruri");
    assert_eq!(err.kind(), &ErrorKind::BadRequestUri);
    assert_eq!(answer.map(|a| a.status()), Some(400));
}

#[test]
fn baddate_non_gmt_time_zone() {
    let (err, answer) = rejected("baddate");
    assert_eq!(err.kind(), &ErrorKind::InvalidHeader(HeaderName::Date));
    assert_eq!(answer.map(|a| a.status()), Some(400));
}

#[test]
fn regbadct_name_addr_uri_not_enclosed() {
    let (err, answer) = rejected("regbadct");
    assert_eq!(err.kind(), &ErrorKind::InvalidHeader(HeaderName::Contact));
    assert_eq!(answer.map(|a| a.status()), Some(400));
}

#[test]
fn badaspec_spaces_within_addr_spec() {
    let (err, answer) = rejected("badaspec");
    assert_eq!(err.kind(), &ErrorKind::InvalidHeader(HeaderName::To));
    assert_eq!(answer.map(|a| a.status()), Some(400));
}

#[test]
fn baddn_non_token_characters_in_display_name() {
    let (err, answer) = rejected("baddn");
    assert_eq!(err.kind(), &ErrorKind::InvalidHeader(HeaderName::From));
    assert_eq!(answer.map(|a| a.status()), Some(400));
}

#[test]
fn badvers_unknown_protocol_version() {
    let (err, answer) = rejected("badvers");
    assert_eq!(err.kind(), &ErrorKind::UnsupportedVersion);
    let answer = answer.unwrap();
    assert_eq!(answer.status(), 505);
    assert_eq!(answer.reason(), "Version Not Supported");
}

#[test]
fn mismatch01_start_line_and_cseq_method_mismatch() {
    let (err, answer) = rejected("mismatch01");
    assert_eq!(err.status_code(), 400);
    assert_eq!(answer.map(|a| a.status()), Some(400));
}

#[test]
fn mismatch02_unknown_method_with_cseq_mismatch() {
    // RFC 4475 §3.1.2.18: 501 Not Implemented is preferred (400 is also acceptable).
    let (err, answer) = rejected("mismatch02");
    assert_eq!(err.status_code(), 501);
    assert_eq!(answer.map(|a| a.status()), Some(501));
}

#[test]
fn bigcode_overlarge_response_code() {
    let (err, answer) = rejected("bigcode");
    assert_eq!(err.kind(), &ErrorKind::BadStartLine);
    assert!(answer.is_none(), "responses are never answered");
}

// §3.2 Transaction layer semantics

#[test]
fn badbranch_missing_transaction_identifier() {
    let r = request("badbranch");
    let via = r.headers().top_via().unwrap();
    // The branch is just the magic cookie: not an RFC 3261 transaction identifier.
    assert_eq!(via.branch(), Some("z9hG4bK"));
    assert_eq!(via.rfc3261_branch(), None);
}

// §3.3 Application layer semantics

#[test]
fn insuf_missing_required_header_fields() {
    let (err, answer) = rejected("insuf");
    assert!(matches!(err.kind(), ErrorKind::MissingHeader(_)));
    // Via and CSeq are there, so a 400 can still be sent back.
    let answer = answer.unwrap();
    assert_eq!(answer.status(), 400);
    assert_eq!(
        answer.headers().cseq().unwrap(),
        CSeq::new(193942, Method::Invite)
    );
}

#[test]
fn unkscm_request_uri_with_unknown_scheme() {
    // The element answers 416; the parser exposes the scheme.
    let r = request("unkscm");
    assert_eq!(
        r.uri().scheme(),
        &Scheme::Other("nobodyknowsthisscheme".into())
    );
    assert_eq!(
        r.uri().to_string(),
        "nobodyknowsthisscheme:totallyopaquecontent"
    );
}

#[test]
fn novelsc_request_uri_with_known_but_atypical_scheme() {
    let r = request("novelsc");
    assert_eq!(r.uri().scheme(), &Scheme::Other("soap.beep".into()));
}

#[test]
fn unksm2_unknown_uri_schemes_in_header_fields() {
    let r = request("unksm2");
    let h = r.headers();
    assert_eq!(h.to().unwrap().uri.scheme(), &Scheme::Other("isbn".into()));
    assert_eq!(
        h.from().unwrap().uri.scheme(),
        &Scheme::Other("http".into())
    );
    let Contacts::List(contacts) = h.contacts().unwrap() else {
        panic!("list expected")
    };
    assert_eq!(
        contacts[0].name_addr.uri.scheme(),
        &Scheme::Other("name".into())
    );
}

#[test]
fn bext01_unknown_option_tags_in_require_and_proxy_require() {
    // The element answers 420 listing the tags in Unsupported.
    let r = request("bext01");
    let h = r.headers();
    assert_eq!(
        h.require(),
        ["nothingSupportsThis", "nothingSupportsThisEither"]
    );
    assert_eq!(
        h.proxy_require(),
        ["noProxiesSupportThis", "norDoAnyProxiesSupportThis"]
    );
}

#[test]
fn invut_unknown_content_type() {
    // The element answers 415.
    let r = request("invut");
    let ct = r.headers().content_type().unwrap().unwrap();
    assert_eq!(ct.essence(), "application/unknownformat");
    assert!(!ct.matches("application/sdp"));
    assert_eq!(r.body().len(), 40);
}

#[test]
fn regaut01_unknown_authorization_scheme() {
    // A registrar answers 401 with its own challenge.
    let r = request("regaut01");
    assert_eq!(
        r.headers().authorization().unwrap(),
        Some(Authorization::Other {
            scheme: "NoOneKnowsThisScheme".into(),
            raw: "opaque-data=here".into()
        })
    );
}

#[test]
fn multi01_multiple_values_in_single_value_fields() {
    let (err, answer) = rejected("multi01");
    assert!(matches!(err.kind(), ErrorKind::DuplicateHeader(_)));
    assert_eq!(answer.map(|a| a.status()), Some(400));
}

#[test]
fn mcl01_multiple_content_length_values() {
    let (err, answer) = rejected("mcl01");
    assert_eq!(
        err.kind(),
        &ErrorKind::DuplicateHeader(HeaderName::ContentLength)
    );
    assert_eq!(answer.map(|a| a.status()), Some(400));
}

#[test]
fn bcast_response_with_broadcast_via() {
    // The response is parsed; discarding it is the transport's decision.
    let r = response("bcast");
    let via = r.headers().via().unwrap();
    assert_eq!(via.len(), 2);
    assert_eq!(via[1].host, "255.255.255.255");
}

#[test]
fn zeromf_max_forwards_of_zero() {
    // OPTIONS with Max-Forwards 0 is answered by the element itself (or 483 when forwarding).
    let r = request("zeromf");
    assert_eq!(r.headers().max_forwards().unwrap(), Some(0));
}

#[test]
fn cparam01_register_with_contact_header_parameter() {
    let r = request("cparam01");
    let Contacts::List(contacts) = r.headers().contacts().unwrap() else {
        panic!("list expected")
    };
    let c = &contacts[0];
    // Without <>, the parameter belongs to the Contact header field, not the URI.
    assert_eq!(c.name_addr.param("unknownparam"), Some(None));
    assert_eq!(c.name_addr.uri.params().count(), 0);
    assert_eq!(
        c.name_addr.uri.to_string(),
        "sip:+19725552222@gw1.example.net"
    );
}

#[test]
fn cparam02_register_with_url_parameter() {
    let r = request("cparam02");
    let Contacts::List(contacts) = r.headers().contacts().unwrap() else {
        panic!("list expected")
    };
    let c = &contacts[0];
    assert_eq!(c.name_addr.uri.param("unknownparam"), Some(None));
    assert!(c.name_addr.params.is_empty());
}

#[test]
fn regescrt_register_with_url_escaped_header() {
    // The registrar stores the contact including its escaped Route header.
    let r = request("regescrt");
    let Contacts::List(contacts) = r.headers().contacts().unwrap() else {
        panic!("list expected")
    };
    let uri = &contacts[0].name_addr.uri;
    assert!(uri.has_headers());
    assert_eq!(
        uri.headers().collect::<Vec<_>>(),
        [("Route", "%3Csip:sip.example.com%3E")]
    );
}

#[test]
fn sdp01_unacceptable_accept_offering() {
    // The element answers 406 (or processes it): the parser exposes Accept.
    let r = request("sdp01");
    let accept = r.headers().accept().unwrap();
    assert_eq!(accept.len(), 1);
    assert_eq!(accept[0].essence(), "text/nobodyknowsthis");
    assert!(!accept[0].matches("application/sdp"));
}

// §3.4 Backward compatibility

#[test]
fn inv2543_rfc2543_syntax() {
    let r = request("inv2543");
    let h = r.headers();
    let via = h.top_via().unwrap();
    assert_eq!(via.branch(), None);
    assert_eq!(h.from().unwrap().tag(), None);
    assert_eq!(h.max_forwards().unwrap(), None);
    assert_eq!(h.content_length().unwrap(), None);
    // Without Content-Length on a datagram the body is the rest of the packet.
    assert!(r.body().starts_with(b"v=0"));
    let rr = h.record_route().unwrap();
    assert_eq!(rr[0].uri.param("maddr"), Some(Some("ss1.example.com")));
    assert_eq!(h.to().unwrap().uri.param("user"), None);
    assert_eq!(h.to().unwrap().param("user"), Some(Some("phone")));
}

// Not described in the RFC's text but shipped in its archive: a request line without a SIP
// version and a header line without a colon.
#[test]
fn test_dat_archive_extra() {
    let (err, answer) = rejected("test");
    assert_eq!(err.status_code(), 400);
    assert!(answer.is_none(), "no Via, so nothing can be sent back");
}

#[test]
fn every_corpus_file_has_a_test() {
    let dir = format!("{}/tests/corpus/rfc4475", env!("CARGO_MANIFEST_DIR"));
    let source = include_str!("rfc4475.rs");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        let stem = name.trim_end_matches(".dat");
        assert!(
            source.contains(&format!("\"{stem}\"")),
            "{name} is not tested"
        );
        count += 1;
    }
    assert_eq!(count, 50);
}
