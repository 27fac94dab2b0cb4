//! Registrar edge cases over real SIP: a device that re-registers from a new
//! address with the same `+sip.instance` (RFC 5626 §6, RFC 5627), and a
//! REGISTER whose CSeq is not above its Call-ID's binding (RFC 3261 §10.3
//! step 7).

use cluster_tests::cluster::Node;
use cluster_tests::ua::{body_text, Ua, WAIT};
use sip::{CSeq, HeaderName, Method, Request, Response};

const ALICE: &str = "alice@example.com";
const INSTANCE: &str = "<urn:uuid:6a1b1c7e-52b0-4e43-9d3f-0000000000a1>";

/// A REGISTER as linphone sends it over TCP: the connection's own address
/// as Contact, with `+sip.instance` and no `reg-id`.
fn register(ua: &mut Ua, token: &str, call_id: &str, cseq: u32, expires: u32) -> Request {
    let contact = format!(
        "<sip:alice@{};transport=tcp>;+sip.instance=\"{INSTANCE}\";expires={expires}",
        ua.local
    );
    ua.request(Method::Register, "example.com", ALICE)
        .remove(HeaderName::Contact)
        .header(HeaderName::Contact, contact)
        .remove(HeaderName::CallId)
        .header(HeaderName::CallId, call_id)
        .remove(HeaderName::CSeq)
        .header(
            HeaderName::CSeq,
            CSeq {
                seq: cseq,
                method: Method::Register,
            },
        )
        .header(HeaderName::Authorization, format!("Bearer {token}"))
        .build()
}

fn bound_contacts(response: &Response) -> usize {
    match response.headers().contacts() {
        Ok(sip::Contacts::List(list)) => list.len(),
        _ => 0,
    }
}

/// linphone 5.1 over TCP: a new connection (a new port) and the same
/// instance replace the old binding, so the un-REGISTER that follows
/// leaves nothing behind and watchers see `closed` at once — not a ghost
/// `open` for the old binding's life.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_re_register_with_the_same_instance_replaces_the_binding() {
    let node = Node::start();
    let token = node.tokens.token(ALICE);
    let bob_token = node.tokens.token("bob@example.com");
    let mut bob = Ua::udp("bob@example.com", node.sip()).await;
    let (ok, _) = bob.subscribe(ALICE, &bob_token, 300).await;
    assert_eq!(ok.status(), 200);
    let first = bob.next_notify(WAIT).await.expect("initial NOTIFY");
    assert!(body_text(&first).contains("<basic>closed</basic>"));

    let call_id = "linphone-register@test";
    let mut old = Ua::tcp(ALICE, node.sip()).await;
    let request = register(&mut old, &token, call_id, 20, 600);
    let response = old.call(request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(bound_contacts(&response), 1);
    let open = bob.next_notify(WAIT).await.expect("NOTIFY on registration");
    assert!(body_text(&open).contains("<basic>open</basic>"));

    // The connection drops; the phone reconnects from another port.
    drop(old);
    let mut new = Ua::tcp(ALICE, node.sip()).await;
    let request = register(&mut new, &token, call_id, 21, 600);
    let response = new.call(request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        bound_contacts(&response),
        1,
        "the new binding replaced the old one: {response:?}"
    );

    let request = register(&mut new, &token, call_id, 22, 0);
    let response = new.call(request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(bound_contacts(&response), 0, "{response:?}");
    let closed = bob
        .next_notify(WAIT)
        .await
        .expect("NOTIFY when the phone un-registers");
    assert!(
        body_text(&closed).contains("<basic>closed</basic>"),
        "{}",
        body_text(&closed)
    );
}

/// RFC 3261 §10.3 step 7: a REGISTER reusing a Call-ID with a CSeq that is
/// not higher fails — 400 "CSeq out of order", not a server error — and
/// changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_register_not_newer_than_its_call_id_gets_400() {
    let node = Node::start();
    let token = node.tokens.token(ALICE);
    let mut phone = Ua::tcp(ALICE, node.sip()).await;
    let call_id = "reused-call-id@test";
    let request = register(&mut phone, &token, call_id, 7, 600);
    assert_eq!(phone.call(request).await.status(), 200);
    for cseq in [7, 6] {
        let request = register(&mut phone, &token, call_id, cseq, 0);
        let response = phone.call(request).await;
        assert_eq!(response.status(), 400, "CSeq {cseq}: {response:?}");
        assert_eq!(response.reason(), "CSeq out of order");
    }
    // The binding is still there: a newer request sees it.
    let request = register(&mut phone, &token, call_id, 8, 600);
    let response = phone.call(request).await;
    assert_eq!(response.status(), 200);
    assert_eq!(bound_contacts(&response), 1);
}
