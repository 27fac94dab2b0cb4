use bytes::Bytes;
use sip::{HeaderName, Request, Response};

use super::Publish;

const ALICE: &str = "alice@example.com";
const PIDF_BODY: &str = "<?xml version=\"1.0\"?><presence xmlns=\"urn:ietf:params:xml:ns:pidf\" \
entity=\"sip:alice@example.com\"><tuple id=\"t\"><status><basic>open</basic></status></tuple></presence>";

fn publish(extra: &str, body: &str) -> Request {
    let text = format!(
        "PUBLISH sip:alice@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKpub1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=f1\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: pub-call@test\r\n\
CSeq: 3 PUBLISH\r\n\
{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    match sip::parse(Bytes::from(text)) {
        Ok(sip::Message::Request(request)) => request,
        other => panic!("test PUBLISH does not parse: {other:?}"),
    }
}

fn refusal(request: &Request, identity: &str) -> Response {
    match Publish::parse(request, identity) {
        Ok(parsed) => panic!("expected a refusal, parsed {parsed:?}"),
        Err(response) => response,
    }
}

#[test]
fn an_initial_publication_carries_its_pidf_body() {
    let request = publish(
        "Event: presence\r\nExpires: 120\r\nContent-Type: application/pidf+xml\r\n",
        PIDF_BODY,
    );
    let parsed = Publish::parse(&request, ALICE).unwrap();
    assert_eq!(parsed.presentity, ALICE);
    assert_eq!(parsed.publisher, ALICE);
    assert_eq!(parsed.if_match, "");
    assert_eq!(parsed.expires, Some(120));
    assert_eq!(parsed.content_type, "application/pidf+xml");
    assert_eq!(parsed.body, PIDF_BODY.as_bytes());
}

#[test]
fn a_refresh_has_an_entity_tag_and_no_body() {
    let request = publish("Event: presence\r\nSIP-If-Match: etag-1\r\n", "");
    let parsed = Publish::parse(&request, ALICE).unwrap();
    assert_eq!(parsed.if_match, "etag-1");
    assert_eq!(parsed.expires, None);
    assert_eq!(parsed.content_type, "");
    assert!(parsed.body.is_empty());
}

#[test]
fn another_event_package_is_489_with_allow_events() {
    let response = refusal(&publish("Event: dialog\r\n", ""), ALICE);
    assert_eq!(response.status(), 489);
    assert!(response.headers().get(HeaderName::AllowEvents).is_some());
    let response = refusal(&publish("", ""), ALICE);
    assert_eq!(response.status(), 489);
}

#[test]
fn another_users_presentity_is_forbidden() {
    let response = refusal(&publish("Event: presence\r\n", ""), "bob@example.com");
    assert_eq!(response.status(), 403);
}

#[test]
fn a_bad_expires_is_refused() {
    let response = refusal(&publish("Event: presence\r\nExpires: later\r\n", ""), ALICE);
    assert_eq!(response.status(), 400);
    assert_eq!(response.reason(), "Bad Expires");
}

#[test]
fn a_body_that_is_not_pidf_is_415_with_accept() {
    for content_type in ["Content-Type: text/plain\r\n", ""] {
        let request = publish(&format!("Event: presence\r\n{content_type}"), "open");
        let response = refusal(&request, ALICE);
        assert_eq!(response.status(), 415, "{content_type}");
        assert_eq!(
            response.headers().get(HeaderName::Accept),
            Some("application/pidf+xml")
        );
    }
}
