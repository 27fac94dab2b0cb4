//! RFC 5118 "SIP Torture Test Messages for IPv6": every message of the archive. The archive's
//! files use bare LF line ends and some lack the final empty line; the parser accepts both.

use bytes::Bytes;
use sip::*;

fn load(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/corpus/rfc5118/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn request_from(raw: Vec<u8>) -> Request {
    match parse(Bytes::from(raw)) {
        Ok(Message::Request(r)) => r,
        other => panic!("expected a request, got {other:?}"),
    }
}

fn request(name: &str) -> Request {
    request_from(load(name))
}

/// The archive's SDP messages declare a Content-Length that does not match their bodies (with
/// LF or CRLF line ends alike). The mismatch is detected; the message with the length
/// corrected parses.
fn with_corrected_length(name: &str, declared: usize) -> Request {
    let raw = load(name);
    let err = parse(Bytes::from(raw.clone())).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::BadContentLength, "{name}");
    let text = String::from_utf8(raw).unwrap();
    let body_len = text.split_once("\n\n").unwrap().1.len();
    assert_ne!(body_len, declared);
    let fixed = text.replace(
        &format!("Content-Length: {declared}"),
        &format!("Content-Length: {body_len}"),
    );
    request_from(fixed.into_bytes())
}

#[test]
fn ipv6_good_valid_ipv6_reference() {
    let r = request("ipv6-good");
    assert_eq!(r.uri().host(), "[2001:db8::10]");
    assert_eq!(r.uri().port(), None);
    let h = r.headers();
    assert_eq!(h.top_via().unwrap().host, "[2001:db8::9:1]");
    let Contacts::List(c) = h.contacts().unwrap() else {
        panic!("list expected")
    };
    assert_eq!(c[0].name_addr.uri.host(), "[2001:db8::1]");
    assert_eq!(c[0].name_addr.uri.aor(), "caller@[2001:db8::1]");
}

#[test]
fn ipv6_bad_unbracketed_ipv6_reference() {
    let raw = load("ipv6-bad");
    let err = parse(Bytes::from(raw.clone())).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::BadRequestUri);
    assert_eq!(error_response(&raw, &err).map(|a| a.status()), Some(400));
}

#[test]
fn port_ambiguous_port_inside_brackets() {
    let r = request("port-ambiguous");
    assert_eq!(r.uri().host(), "[2001:db8::10:5070]");
    assert_eq!(r.uri().port(), None);
}

#[test]
fn port_unambiguous_port_after_brackets() {
    let r = request("port-unambiguous");
    assert_eq!(r.uri().host(), "[2001:db8::10]");
    assert_eq!(r.uri().port(), Some(5070));
}

#[test]
fn via_received_param_with_delim() {
    let r = request("via-received-param-with-delim");
    let via = r.headers().top_via().unwrap();
    assert_eq!(via.host, "[2001:db8::9:1]");
    assert_eq!(via.received(), Some("[2001:db8::9:255]"));
    assert_eq!(via.branch(), Some("z9hG4bKas3-111"));
}

#[test]
fn via_received_param_no_delim() {
    let r = request("via-received-param-no-delim");
    let via = r.headers().top_via().unwrap();
    assert_eq!(via.received(), Some("2001:db8::9:255"));
    assert_eq!(via.branch(), Some("z9hG4bKas3"));
}

#[test]
fn ipv6_in_sdp() {
    let r = with_corrected_length("ipv6-in-sdp", 268);
    assert_eq!(r.uri().host(), "[2001:db8::10]");
    assert_eq!(r.headers().top_via().unwrap().host, "[2001:db8::20]");
    assert!(std::str::from_utf8(r.body())
        .unwrap()
        .contains("c=IN IP6 2001:db8::20"));
}

#[test]
fn mult_ip_in_sdp() {
    let r = with_corrected_length("mult-ip-in-sdp", 181);
    let Contacts::List(c) = r.headers().contacts().unwrap() else {
        panic!("list expected")
    };
    assert_eq!(c[0].name_addr.uri.host(), "[2001:db8::9:1]");
    assert!(r.body().starts_with(b"v=0\n"));
}

#[test]
fn mult_ip_in_header() {
    let r = request("mult-ip-in-header");
    let via = r.headers().via().unwrap();
    assert_eq!(via.len(), 3);
    assert_eq!(
        (via[0].host.as_str(), via[0].port),
        ("[2001:db8::9:1]", Some(6050))
    );
    assert_eq!(via[1].host, "192.0.2.1");
    assert_eq!(via[2].host, "[2001:db8::9:255]");
    assert_eq!(via[2].received(), Some("192.0.2.200"));
}

#[test]
fn ipv4_mapped_ipv6() {
    let r = request("ipv4-mapped-ipv6");
    let h = r.headers();
    let via = h.via().unwrap();
    assert_eq!(
        (via[0].host.as_str(), via[0].port),
        ("[::ffff:192.0.2.10]", Some(19823))
    );
    assert_eq!(via[1].host, "[::ffff:192.0.2.2]");
    let Contacts::List(c) = h.contacts().unwrap() else {
        panic!("list expected")
    };
    assert_eq!(
        c[0].name_addr.display_name.as_deref(),
        Some("T. desk phone")
    );
    assert_eq!(c[0].name_addr.uri.host(), "[::ffff:192.0.2.2]");
    assert_eq!(r.body().len(), 236);
}

#[test]
fn ipv6_correct_abnf_2_colons() {
    let r = request("ipv6-correct-abnf-2-colons");
    assert_eq!(r.uri().host(), "[2001:db8::192.0.2.1]");
    assert_eq!(
        r.headers().to().unwrap().uri.host(),
        "[2001:db8::192.0.2.1]"
    );
}

#[test]
fn ipv6_bug_abnf_3_colons() {
    // RFC 5118 §4.10: produced by the RFC 3261 ABNF bug; accepted leniently, host kept as sent.
    let r = request("ipv6-bug-abnf-3-colons");
    assert_eq!(r.uri().host(), "[2001:db8:::192.0.2.1]");
}

#[test]
fn every_corpus_file_has_a_test() {
    let dir = format!("{}/tests/corpus/rfc5118", env!("CARGO_MANIFEST_DIR"));
    let source = include_str!("rfc5118.rs");
    let mut count = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            source.contains(&format!("\"{name}\"")),
            "{name} is not tested"
        );
        count += 1;
    }
    assert_eq!(count, 12);
}
