use super::server::tests::key;
use super::*;

#[test]
fn final_answers_get_a_stable_to_tag_unless_they_have_one() {
    let request = sip::parse(Bytes::from_static(
        b"OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK9\r\n\
Max-Forwards: 70\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:example.com>\r\n\
Call-ID: c@test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    ));
    let Ok(sip::Message::Request(request)) = request else {
        panic!("test request does not parse");
    };
    let k = key("z9hG4bK9", "OPTIONS");
    let tag_of = |r: &Response| {
        r.headers()
            .to()
            .ok()
            .and_then(|t| t.tag().map(String::from))
    };
    let mut first = Response::for_request(&request, 200).build();
    ensure_to_tag(&mut first, &k);
    let mut second = Response::for_request(&request, 200).build();
    ensure_to_tag(&mut second, &k);
    assert!(tag_of(&first).is_some());
    assert_eq!(tag_of(&first), tag_of(&second));
    let mut own = Response::for_request(&request, 200).to_tag("mine").build();
    ensure_to_tag(&mut own, &k);
    assert_eq!(tag_of(&own).as_deref(), Some("mine"));
    let mut trying = Response::for_request(&request, 100).build();
    ensure_to_tag(&mut trying, &k);
    assert_eq!(tag_of(&trying), None);
}
