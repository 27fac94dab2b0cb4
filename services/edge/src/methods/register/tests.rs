use bytes::Bytes;
use sip::{HeaderName, Request, Response};

use super::Register;

const ALICE: &str = "alice@example.com";

fn register(extra: &str) -> Request {
    let text = format!(
        "REGISTER sip:example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKreg1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=f1\r\n\
To: <sip:alice@example.com>\r\n\
Call-ID: reg-call@test\r\n\
CSeq: 7 REGISTER\r\n\
{extra}Content-Length: 0\r\n\r\n"
    );
    match sip::parse(Bytes::from(text)) {
        Ok(sip::Message::Request(request)) => request,
        other => panic!("test REGISTER does not parse: {other:?}"),
    }
}

fn refusal(request: &Request) -> Response {
    match Register::parse(request, ALICE) {
        Ok(parsed) => panic!("expected a refusal, parsed {parsed:?}"),
        Err(response) => response,
    }
}

#[test]
fn contacts_take_their_own_expiry_else_the_header() {
    let request = register(
        "User-Agent: phone/1\r\n\
Contact: <sip:alice@192.0.2.1:5060>;expires=60;q=0.5\r\n\
Contact: <sip:alice@192.0.2.2:5070>;+sip.instance=\"<urn:uuid:00000000-0000-0000-0000-000000000001>\";reg-id=1\r\n\
Expires: 3600\r\n",
    );
    let parsed = Register::parse(&request, ALICE).unwrap();
    assert_eq!(parsed.aor, ALICE);
    assert_eq!(parsed.call_id, "reg-call@test");
    assert_eq!(parsed.cseq, 7);
    assert_eq!(parsed.user_agent, "phone/1");
    assert!(!parsed.remove_all);
    assert!(!parsed.is_query());
    assert_eq!(parsed.contacts.len(), 2);
    let first = &parsed.contacts[0];
    assert_eq!(first.uri, "sip:alice@192.0.2.1:5060");
    assert_eq!(first.expires, Some(60));
    assert_eq!(first.q_milli, Some(500));
    let second = &parsed.contacts[1];
    assert_eq!(second.uri, "sip:alice@192.0.2.2:5070");
    assert_eq!(second.expires, Some(3600));
    assert_eq!(second.q_milli, None);
    assert!(second
        .instance_id
        .contains("00000000-0000-0000-0000-000000000001"));
    assert_eq!(second.reg_id, Some(1));
}

#[test]
fn no_expiry_anywhere_leaves_the_registrar_default() {
    let request = register("Contact: <sip:alice@192.0.2.1>\r\n");
    let parsed = Register::parse(&request, ALICE).unwrap();
    assert_eq!(parsed.contacts[0].expires, None);
}

#[test]
fn no_contact_is_a_query() {
    let parsed = Register::parse(&register(""), ALICE).unwrap();
    assert!(parsed.contacts.is_empty());
    assert!(!parsed.remove_all);
    assert!(parsed.is_query());
}

#[test]
fn wildcard_with_expires_zero_removes_everything() {
    let request = register("Contact: *\r\nExpires: 0\r\n");
    let parsed = Register::parse(&request, ALICE).unwrap();
    assert!(parsed.remove_all);
    assert!(parsed.contacts.is_empty());
    assert!(!parsed.is_query());
}

#[test]
fn wildcard_without_expires_zero_is_refused() {
    for extra in ["Contact: *\r\n", "Contact: *\r\nExpires: 60\r\n"] {
        let response = refusal(&register(extra));
        assert_eq!(response.status(), 400, "{extra}");
        assert_eq!(response.reason(), "Wildcard Contact requires Expires: 0");
    }
}

#[test]
fn another_users_address_is_forbidden() {
    let request = register("Contact: <sip:alice@192.0.2.1>\r\n");
    let response = match Register::parse(&request, "bob@example.com") {
        Ok(parsed) => panic!("registered for another user: {parsed:?}"),
        Err(response) => response,
    };
    assert_eq!(response.status(), 403);
}

#[test]
fn a_bad_expires_is_refused() {
    let response = refusal(&register(
        "Expires: soon\r\nContact: <sip:alice@192.0.2.1>\r\n",
    ));
    assert_eq!(response.status(), 400);
    assert_eq!(response.reason(), "Bad Expires");
}

#[test]
fn refusals_answer_the_request() {
    let response = refusal(&register("Contact: *\r\n"));
    let headers = response.headers();
    assert_eq!(headers.call_id().unwrap(), "reg-call@test");
    assert_eq!(headers.cseq().unwrap().seq, 7);
    assert!(headers.get(HeaderName::Contact).is_none());
}
