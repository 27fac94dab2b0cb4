//! The fuzz harness shared by the libFuzzer target and the stable mutation loop.
//!
//! Beyond "no panic", it checks the parser's contract: whatever parses serialises to bytes
//! that parse again to the same header fields and body, and serialisation is then stable;
//! stream framing never reports more bytes than it was given; error answers serialise.

use bytes::Bytes;
use sip::{error_response, frame, parse, Limits, Message};

fn fields(m: &Message) -> Vec<(String, String)> {
    m.headers()
        .iter()
        .filter(|(n, _)| *n != "Content-Length")
        .map(|(n, v)| (n.to_owned(), v.to_owned()))
        .collect()
}

/// Calls every typed accessor; results are ignored, only panics matter.
fn touch(m: &Message) {
    let h = m.headers();
    let _ = (
        h.via(),
        h.from(),
        h.to(),
        h.call_id(),
        h.cseq(),
        h.contacts(),
    );
    let _ = (h.expires(), h.min_expires(), h.max_forwards(), h.event());
    let _ = (
        h.content_type(),
        h.content_length(),
        h.accept(),
        h.authorization(),
    );
    let _ = (
        h.route(),
        h.record_route(),
        h.subscription_state(),
        h.p_asserted_identity(),
    );
    let _ = (
        h.sip_etag(),
        h.sip_if_match(),
        h.supported(),
        h.require(),
        h.allow_events(),
    );
    for (name, _) in h.iter() {
        let _ = h.get_all(name).count();
    }
    if let Ok(to) = h.to() {
        let _ = (to.uri.aor(), to.to_string());
    }
    if let Ok(vias) = h.via() {
        for v in vias {
            let _ = v.to_string();
        }
    }
    if let Message::Request(r) = m {
        let _ = (r.uri().aor(), r.uri().user(), r.uri().params().count());
        let _ = sip::Response::for_request(r, 200)
            .to_tag("t")
            .build()
            .to_bytes();
    }
}

/// Runs one input through the parser and checks the contract; panics on a violation.
pub fn check(data: &[u8]) {
    let limits = Limits::default();
    if let Ok(f) = frame(data, &limits) {
        if let Some(len) = f.len {
            assert!(f.skip + len <= data.len(), "frame overran its input");
        }
    }
    match parse(Bytes::copy_from_slice(data)) {
        Ok(message) => {
            touch(&message);
            let out = message.to_bytes();
            let again = match parse(out.clone()) {
                Ok(again) => again,
                Err(e) => panic!(
                    "serialised message does not parse: {e}: {:?}",
                    String::from_utf8_lossy(&out)
                ),
            };
            assert_eq!(fields(&again), fields(&message), "header fields changed");
            assert_eq!(again.body(), message.body(), "body changed");
            assert_eq!(again.to_bytes(), out, "serialisation not stable");
        }
        Err(err) => {
            let _ = (err.status_code(), err.reason(), err.to_string());
            if let Some(answer) = error_response(data, &err) {
                let _ = answer.to_bytes();
            }
        }
    }
}
