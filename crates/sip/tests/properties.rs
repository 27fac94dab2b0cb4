//! Property tests: serialise∘parse is the identity on the typed model, and the parser never
//! panics on arbitrary or mutated input.

use bytes::Bytes;
use proptest::prelude::*;
use sip::*;

fn token() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9][a-zA-Z0-9.!%*_+`'~-]{0,11}"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,8}(\\.[a-z][a-z0-9]{0,8}){0,3}",
        any::<[u8; 4]>().prop_map(|o| format!("{}.{}.{}.{}", o[0], o[1], o[2], o[3])),
        any::<[u16; 8]>().prop_map(|s| format!("[{}]", std::net::Ipv6Addr::from(s))),
    ]
}

fn uri() -> impl Strategy<Value = Uri> {
    (
        prop::bool::ANY,
        prop::option::of("[a-zA-Z0-9 @:%;?&=+$,/_.!~*'()-]{1,12}"),
        host(),
        prop::option::of(any::<u16>()),
        prop::collection::vec((token(), prop::option::of(token())), 0..3),
    )
        .prop_map(|(secure, user, host, port, params)| {
            let base = if secure {
                Uri::sips(user.as_deref(), &host, port)
            } else {
                Uri::sip(user.as_deref(), &host, port)
            };
            params
                .into_iter()
                .try_fold(base.expect("generated URI"), |u, (n, v)| {
                    u.with_param(&n, v.as_deref())
                })
                .expect("generated parameter")
        })
}

fn gen_value() -> impl Strategy<Value = String> {
    prop_oneof![token(), "\"([^\"\\\\\r\n]|\\\\[a-z\"]){0,10}\""]
}

fn params() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    prop::collection::vec((token(), prop::option::of(gen_value())), 0..3)
}

fn name_addr() -> impl Strategy<Value = NameAddr> {
    (prop::option::of("[^\r\n]{0,16}"), uri(), params(), token()).prop_map(
        |(display_name, uri, mut params, tag)| {
            params.retain(|(n, _)| !n.eq_ignore_ascii_case("tag"));
            NameAddr {
                display_name,
                uri,
                params,
            }
            .with_tag(tag)
        },
    )
}

fn via() -> impl Strategy<Value = Via> {
    (
        prop::sample::select(vec!["UDP", "TCP", "TLS", "WS", "WSS", "SCTP"]),
        host(),
        prop::option::of(any::<u16>()),
        token(),
        params(),
    )
        .prop_map(|(transport, host, port, branch, extra)| {
            let mut via = Via::new(transport, &host, port, &format!("{MAGIC_COOKIE}{branch}"));
            via.params.extend(
                extra
                    .into_iter()
                    .filter(|(n, _)| !n.eq_ignore_ascii_case("branch")),
            );
            via
        })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Register),
        Just(Method::Publish),
        Just(Method::Subscribe),
        Just(Method::Notify),
        Just(Method::Options),
        Just(Method::Message),
        "[A-Z][A-Z!%*_+`'~.-]{0,9}".prop_map(|m| m.parse::<Method>().expect("token")),
    ]
}

fn call_id() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9.!%*_+`'~()<>:\\\\\"/\\[\\]?{}-]{1,20}(@[a-z0-9.]{1,10})?"
}

/// Header values that are free text (Subject-like): no CR/LF, no surrounding whitespace.
fn text_value() -> impl Strategy<Value = String> {
    "[^\r\n \t]([^\r\n]{0,30}[^\r\n \t])?"
}

#[derive(Debug, Clone)]
struct Model {
    method: Method,
    uri: Uri,
    vias: Vec<Via>,
    from: NameAddr,
    to: NameAddr,
    call_id: String,
    seq: u32,
    contacts: Vec<NameAddr>,
    expires: Option<u32>,
    event: Option<(String, Option<String>)>,
    state: Option<SubscriptionState>,
    extra: Vec<(String, String)>,
    body: Vec<u8>,
}

fn model() -> impl Strategy<Value = Model> {
    (
        (
            method(),
            uri(),
            prop::collection::vec(via(), 1..4),
            name_addr(),
            name_addr(),
        ),
        (
            call_id(),
            any::<u32>(),
            prop::collection::vec(name_addr(), 0..3),
        ),
        (
            prop::option::of(any::<u32>()),
            prop::option::of((token(), prop::option::of(token()))),
            prop::option::of((0u8..3, any::<u32>(), prop::option::of(token()))),
        ),
        prop::collection::vec(("X-[A-Za-z0-9-]{1,10}", text_value()), 0..3),
        prop::collection::vec(any::<u8>(), 0..200),
    )
        .prop_map(
            |(
                (method, uri, vias, from, to),
                (call_id, seq, contacts),
                (expires, event, state),
                mut extra,
                body,
            )| {
                // Extension header names must be distinct (compared case-insensitively): the
                // model expects `get(name)` to return each one's own value.
                let mut seen: Vec<String> = Vec::new();
                extra.retain(|(name, _)| {
                    let key = name.to_ascii_lowercase();
                    let fresh = !seen.contains(&key);
                    seen.push(key);
                    fresh
                });
                let state = state.map(|(kind, secs, reason)| match kind {
                    0 => SubscriptionState::active(secs),
                    1 => SubscriptionState::pending(secs),
                    _ => SubscriptionState::terminated(&reason.unwrap_or_else(|| "timeout".into())),
                });
                Model {
                    method,
                    uri,
                    vias,
                    from,
                    to,
                    call_id,
                    seq,
                    contacts,
                    expires,
                    event,
                    state,
                    extra,
                    body,
                }
            },
        )
}

fn build(m: &Model) -> RequestBuilder {
    let mut b = Request::builder(m.method.clone(), m.uri.clone());
    for v in &m.vias {
        b = b.typed(v.clone());
    }
    b = b
        .from(&m.from)
        .to(&m.to)
        .header(HeaderName::CallId, &m.call_id)
        .typed(CSeq::new(m.seq, m.method.clone()))
        .header(HeaderName::MaxForwards, 70);
    for c in &m.contacts {
        b = b.typed(Contact::new(c.clone()));
    }
    if let Some(e) = m.expires {
        b = b.header(HeaderName::Expires, e);
    }
    if let Some((package, id)) = &m.event {
        let mut event = Event::new(package.clone());
        event.id = id.clone();
        b = b.typed(event);
    }
    if let Some(s) = &m.state {
        b = b.typed(s.clone());
    }
    for (n, v) in &m.extra {
        b = b.header(HeaderName::Other(n.clone()), v);
    }
    if !m.body.is_empty() {
        b = b.body("application/octet-stream", Bytes::from(m.body.clone()));
    }
    b
}

fn check_round_trip(m: &Model) -> Result<(), TestCaseError> {
    let request = build(m).build();
    let bytes = request.to_bytes();
    let parsed = match parse(bytes.clone()) {
        Ok(Message::Request(r)) => r,
        other => {
            return Err(TestCaseError::fail(format!(
                "{other:?} from {:?}",
                String::from_utf8_lossy(&bytes)
            )))
        }
    };
    let h = parsed.headers();
    prop_assert_eq!(parsed.method(), &m.method);
    prop_assert_eq!(parsed.uri(), &m.uri);
    prop_assert_eq!(
        h.via().map_err(|e| TestCaseError::fail(e.to_string()))?,
        m.vias.clone()
    );
    prop_assert_eq!(
        h.from().map_err(|e| TestCaseError::fail(e.to_string()))?,
        m.from.clone()
    );
    prop_assert_eq!(
        h.to().map_err(|e| TestCaseError::fail(e.to_string()))?,
        m.to.clone()
    );
    prop_assert_eq!(h.call_id().ok(), Some(m.call_id.as_str()));
    prop_assert_eq!(h.cseq().ok(), Some(CSeq::new(m.seq, m.method.clone())));
    let contacts: Vec<NameAddr> = h
        .contacts()
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .as_slice()
        .iter()
        .map(|c| c.name_addr.clone())
        .collect();
    prop_assert_eq!(contacts, m.contacts.clone());
    prop_assert_eq!(h.expires().ok(), Some(m.expires));
    let event = h.event().map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(event.map(|e| (e.package, e.id)), m.event.clone());
    prop_assert_eq!(h.subscription_state().ok(), Some(m.state.clone()));
    for (n, v) in &m.extra {
        prop_assert_eq!(h.get(n.as_str()), Some(v.as_str()));
    }
    prop_assert_eq!(parsed.body().as_ref(), m.body.as_slice());
    // Serialisation is stable once canonical.
    prop_assert_eq!(parsed.to_bytes(), bytes);
    Ok(())
}

/// Every accessor, exercised for panics only.
fn touch(message: &Message) {
    let h = message.headers();
    let _ = (
        h.via(),
        h.from(),
        h.to(),
        h.call_id(),
        h.cseq(),
        h.contacts(),
    );
    let _ = (
        h.expires(),
        h.min_expires(),
        h.max_forwards(),
        h.event(),
        h.content_type(),
    );
    let _ = (
        h.content_length(),
        h.accept(),
        h.authorization(),
        h.route(),
        h.record_route(),
    );
    let _ = (
        h.subscription_state(),
        h.sip_etag(),
        h.sip_if_match(),
        h.supported(),
    );
    let _ = (
        h.require(),
        h.user_agent(),
        h.allow_events(),
        h.p_asserted_identity(),
    );
    for (name, value) in h.iter() {
        let _ = h.get_all(name).count();
        let _ = value.len();
    }
    if let Ok(to) = h.to() {
        let _ = to.uri.aor();
    }
}

/// Parse, and when that succeeds, the serialisation parses to the same fields.
fn check_bytes(data: &[u8]) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    if let Ok(f) = frame(data, &limits) {
        if let Some(len) = f.len {
            prop_assert!(f.skip + len <= data.len());
        }
    }
    match parse(Bytes::copy_from_slice(data)) {
        Ok(message) => {
            touch(&message);
            let out = message.to_bytes();
            let again = parse(out.clone()).map_err(|e| {
                TestCaseError::fail(format!(
                    "re-parse failed: {e}: {:?}",
                    String::from_utf8_lossy(&out)
                ))
            })?;
            let fields = |m: &Message| {
                m.headers()
                    .iter()
                    .filter(|(n, _)| *n != "Content-Length")
                    .map(|(n, v)| (n.to_owned(), v.to_owned()))
                    .collect::<Vec<_>>()
            };
            prop_assert_eq!(fields(&again), fields(&message));
            prop_assert_eq!(again.body(), message.body());
            prop_assert_eq!(again.to_bytes(), out);
        }
        Err(err) => {
            if let Some(answer) = error_response(data, &err) {
                let _ = answer.to_bytes();
            }
        }
    }
    Ok(())
}

const SEEDS: &[&str] = &[
    "SUBSCRIBE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/TCP w.example.com;branch=z9hG4bKnashds7\r\nTo: <sip:bob@example.com>\r\nFrom: \"Al \\\"A\\\"\" <sip:alice@example.com>;tag=xfg9\r\nCall-ID: 2010@w.example.com\r\nCSeq: 17766 SUBSCRIBE\r\nMax-Forwards: 70\r\nEvent: presence;id=7\r\nAccept: application/pidf+xml, multipart/related\r\nContact: <sip:alice@[2001:db8::1]:5061;transport=tls>;+sip.instance=\"<urn:uuid:1>\"\r\nExpires: 600\r\nContent-Length: 0\r\n\r\n",
    "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.4;branch=z9hG4bK8;received=192.0.2.4, SIP/2.0/UDP h2;branch=z9hG4bK9\r\nTo: <sip:alice@example.com>;tag=37\r\nFrom: <sip:bob@example.com>;tag=ffd2\r\nCall-ID: a@b\r\nCSeq: 8 NOTIFY\r\nSubscription-State: active;expires=60\r\nContent-Length: 5\r\n\r\nhello",
    "PUBLISH sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bK1\r\nt: <sip:a@b>\r\nf: <sip:a@b>;tag=1\r\ni: x\r\nCSeq: 1 PUBLISH\r\nSIP-If-Match: e1\r\no: presence\r\nc: application/pidf+xml\r\nl: 3\r\nAuthorization: Digest username=\"a\", realm=\"b\", nonce=\"c,d\"\r\n\r\n<a>",
];

fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(SEEDS.to_vec()),
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..6, any::<u8>()), 1..6),
    )
        .prop_map(|(seed, edits)| {
            let mut data = seed.as_bytes().to_vec();
            for (at, op, byte) in edits {
                if data.is_empty() {
                    data.push(byte);
                    continue;
                }
                let i = at.index(data.len());
                match op {
                    0 => data[i] = byte,
                    1 => data.insert(i, byte),
                    2 => {
                        data.remove(i);
                    }
                    3 => data.truncate(i),
                    4 => {
                        let chunk: Vec<u8> = data[i..].iter().take(24).copied().collect();
                        data.splice(i..i, chunk);
                    }
                    _ => data.insert(
                        i,
                        [b',', b';', b'"', b'<', b'\n', b' ', b':', b'%'][usize::from(byte % 8)],
                    ),
                }
            }
            data
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn request_round_trip(m in model()) {
        check_round_trip(&m)?;
    }

    #[test]
    fn response_round_trip(m in model(), status in 100u16..700, reason in "[^\r\n]{0,20}") {
        let request = build(&m).build();
        let response = Response::for_request(&request, status)
            .reason(&reason)
            .to_tag("srv")
            .body("text/plain", Bytes::from(m.body.clone()))
            .build();
        let bytes = response.to_bytes();
        let parsed = match parse(bytes.clone()) {
            Ok(Message::Response(r)) => r,
            other => return Err(TestCaseError::fail(format!("{other:?}"))),
        };
        prop_assert_eq!(parsed.status(), status);
        prop_assert_eq!(parsed.reason(), reason.as_str());
        prop_assert_eq!(parsed.headers().via().ok(), Some(m.vias.clone()));
        prop_assert_eq!(parsed.headers().from().ok(), Some(m.from.clone()));
        let expected_to = if m.to.tag().is_some() { m.to.clone() } else { m.to.clone().with_tag("srv") };
        prop_assert_eq!(parsed.headers().to().ok(), Some(expected_to));
        prop_assert_eq!(parsed.body().as_ref(), m.body.as_slice());
        prop_assert_eq!(parsed.to_bytes(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..512)) {
        check_bytes(&data)?;
    }

    #[test]
    fn mutated_messages_never_panic(data in mutated()) {
        check_bytes(&data)?;
    }
}
