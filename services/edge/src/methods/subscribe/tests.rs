use bytes::Bytes;
use sip::{HeaderName, Request, Response};

use super::Subscribe;

fn subscribe(to_tag: &str, extra: &str) -> Request {
    let text = format!(
        "SUBSCRIBE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKsub1\r\n\
Max-Forwards: 70\r\n\
From: <sip:alice@example.com>;tag=f1\r\n\
To: <sip:bob@example.com>{to_tag}\r\n\
Call-ID: sub-call@test\r\n\
CSeq: 5 SUBSCRIBE\r\n\
{extra}Content-Length: 0\r\n\r\n"
    );
    match sip::parse(Bytes::from(text)) {
        Ok(sip::Message::Request(request)) => request,
        other => panic!("test SUBSCRIBE does not parse: {other:?}"),
    }
}

fn refusal(request: &Request) -> Response {
    match Subscribe::parse(request) {
        Ok(parsed) => panic!(
            "expected a refusal, parsed a subscription to {}",
            parsed.request_aor
        ),
        Err(response) => response,
    }
}

const CONTACT: &str = "Contact: <sip:alice@192.0.2.1:5060>\r\n";

#[test]
fn a_new_subscription_reads_the_subscriber_side_of_the_dialog() {
    let request = subscribe(
        "",
        &format!(
            "Event: presence;id=e1\r\nExpires: 600\r\nAccept: application/pidf+xml\r\n{CONTACT}\
Record-Route: <sip:proxy1.example.com;lr>, <sip:proxy2.example.com;lr>\r\n"
        ),
    );
    let parsed = Subscribe::parse(&request).unwrap();
    assert_eq!(parsed.package.event(), "presence");
    assert_eq!(parsed.event_id, "e1");
    assert_eq!(parsed.call_id, "sub-call@test");
    assert_eq!(parsed.remote_tag, "f1");
    assert_eq!(parsed.remote_uri, "sip:alice@example.com");
    assert_eq!(parsed.local_uri, "sip:bob@example.com");
    assert_eq!(parsed.request_aor, "bob@example.com");
    assert_eq!(parsed.to_aor, "bob@example.com");
    assert_eq!(parsed.in_dialog, None);
    assert_eq!(parsed.expires, Some(600));
    assert_eq!(parsed.remote_target, "sip:alice@192.0.2.1:5060");
    assert_eq!(parsed.route_set.len(), 2);
    assert!(parsed.route_set[0].contains("proxy1.example.com"));
    assert!(parsed.route_set[1].contains("proxy2.example.com"));
}

#[test]
fn a_to_tag_names_the_dialog_and_winfo_is_served() {
    let request = subscribe(
        ";tag=d42",
        &format!("Event: presence.winfo\r\nExpires: 0\r\n{CONTACT}"),
    );
    let parsed = Subscribe::parse(&request).unwrap();
    assert_eq!(parsed.in_dialog.as_deref(), Some("d42"));
    assert_eq!(parsed.package.event(), "presence.winfo");
    assert_eq!(parsed.event_id, "");
    assert_eq!(parsed.expires, Some(0));
    assert!(parsed.route_set.is_empty());
}

#[test]
fn an_unserved_event_package_is_489_with_allow_events() {
    for event in ["Event: dialog\r\n", ""] {
        let response = refusal(&subscribe("", &format!("{event}{CONTACT}")));
        assert_eq!(response.status(), 489, "{event}");
        assert!(response.headers().get(HeaderName::AllowEvents).is_some());
    }
}

#[test]
fn a_subscriber_that_cannot_read_the_body_is_406_with_accept() {
    let request = subscribe(
        "",
        &format!("Event: presence\r\nAccept: text/plain\r\n{CONTACT}"),
    );
    let response = refusal(&request);
    assert_eq!(response.status(), 406);
    assert_eq!(
        response.headers().get(HeaderName::Accept),
        Some("application/pidf+xml")
    );
}

#[test]
fn dialog_refusals_name_what_is_missing() {
    let cases = [
        (
            "From: <sip:alice@example.com>\r\n",
            "Event: presence\r\n",
            "Missing From tag",
        ),
        ("", "Event: presence\r\nExpires: never\r\n", "Bad Expires"),
        ("", "Event: presence\r\n", "Missing Contact"),
    ];
    for (from, extra, reason) in cases {
        let mut text = String::from_utf8(subscribe("", extra).to_bytes().to_vec()).unwrap();
        if !from.is_empty() {
            text = text.replace("From: <sip:alice@example.com>;tag=f1\r\n", from);
        }
        if reason != "Missing Contact" {
            text = text.replace(
                "Content-Length: 0",
                &format!("{}Content-Length: 0", CONTACT),
            );
        }
        let Ok(sip::Message::Request(request)) = sip::parse(Bytes::from(text)) else {
            panic!("case {reason}: request does not parse");
        };
        let response = refusal(&request);
        assert_eq!(response.status(), 400, "{reason}");
        assert_eq!(response.reason(), reason);
    }
}
