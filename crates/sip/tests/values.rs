//! Typed header values on their own: parsing, accessors and canonical output.

use sip::*;

#[test]
fn uri_components_and_aor() {
    let u: Uri = "SIP:Alice%20B@Example.COM:5070;transport=TCP;lr?Subject=hi&X=1"
        .parse()
        .unwrap();
    assert_eq!(u.scheme(), &Scheme::Sip);
    assert_eq!(u.user(), Some("Alice B"));
    assert_eq!(u.user_raw(), Some("Alice%20B"));
    assert_eq!(u.host(), "Example.COM");
    assert_eq!(u.port(), Some(5070));
    assert_eq!(u.param("Transport"), Some(Some("TCP")));
    assert_eq!(u.param("lr"), Some(None));
    assert_eq!(u.param("maddr"), None);
    assert_eq!(
        u.headers().collect::<Vec<_>>(),
        [("Subject", "hi"), ("X", "1")]
    );
    assert_eq!(u.aor(), "Alice B@example.com");
    assert_eq!(
        u.to_string(),
        "sip:Alice%20B@Example.COM:5070;transport=TCP;lr?Subject=hi&X=1"
    );

    let tel: Uri = "tel:+1-201-555-0123;phone-context=example.com"
        .parse()
        .unwrap();
    assert_eq!(tel.scheme(), &Scheme::Tel);
    assert_eq!(tel.aor(), "+1-201-555-0123");
    assert_eq!(tel.param("phone-context"), Some(Some("example.com")));

    let sips: Uri = "sips:[2001:DB8::1]".parse().unwrap();
    assert_eq!(sips.scheme(), &Scheme::Sips);
    assert_eq!(sips.host(), "[2001:DB8::1]");
    assert_eq!(sips.aor(), "[2001:db8::1]");

    for bad in [
        "",
        "sip:",
        "sip:@host",
        "sip:a@",
        "sip:a@host:",
        "sip:a@host:70000",
        "sip:a b@host",
        "sip:a@[::1",
        "sip:a@host;",
        "sip:a@host;=x",
        "sip:a@host?x",
        "1sip:a",
        "sip:a@ho%zzst",
        "tel:",
        "urn",
    ] {
        assert!(Uri::parse(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn uri_constructors_escape_and_bracket() {
    let u = Uri::sip(Some("a b@c"), "2001:db8::1", Some(5060)).unwrap();
    assert_eq!(u.to_string(), "sip:a%20b%40c@[2001:db8::1]:5060");
    assert_eq!(u.user(), Some("a b@c"));
    let u = u
        .with_param("transport", Some("tcp"))
        .unwrap()
        .with_param("ob", None)
        .unwrap();
    assert_eq!(
        u.to_string(),
        "sip:a%20b%40c@[2001:db8::1]:5060;transport=tcp;ob"
    );
    let u = u.with_param("transport", Some("tls")).unwrap();
    assert_eq!(
        u.to_string(),
        "sip:a%20b%40c@[2001:db8::1]:5060;ob;transport=tls"
    );
    assert!(Uri::sip(None, "bad host", None).is_err());
    assert_eq!(
        Uri::sip(None, "example.com", None).unwrap().aor(),
        "example.com"
    );
}

#[test]
fn name_addr_forms() {
    let a: NameAddr = "\"A \\\"B\\\"\" <sip:a@b;lr>;tag=1;foo=\"x y\""
        .parse()
        .unwrap();
    assert_eq!(a.display_name.as_deref(), Some("A \"B\""));
    assert_eq!(a.uri.param("lr"), Some(None));
    assert_eq!(a.tag(), Some("1"));
    assert_eq!(a.param("foo"), Some(Some("\"x y\"")));
    assert_eq!(
        a.to_string(),
        "\"A \\\"B\\\"\" <sip:a@b;lr>;tag=1;foo=\"x y\""
    );

    let b: NameAddr = "sip:a@b;tag=2".parse().unwrap();
    assert_eq!(b.uri.to_string(), "sip:a@b");
    assert_eq!(b.tag(), Some("2"));
    assert_eq!(b.to_string(), "<sip:a@b>;tag=2");

    let c: NameAddr = "Many  Token   Words <sip:a@b>".parse().unwrap();
    assert_eq!(c.display_name.as_deref(), Some("Many Token Words"));
    let c = c.with_tag("t1").with_tag("t2");
    assert_eq!(c.tag(), Some("t2"));

    for bad in [
        "",
        "<sip:a@b",
        "\"x <sip:a@b>",
        "a,b <sip:a@b>",
        "< sip:a@b>",
        "<sip:a@b> junk",
        "sip:a@b?x=y",
        "<sip:a@b>;",
        "<sip:a@b>;=1",
    ] {
        assert!(bad.parse::<NameAddr>().is_err(), "{bad:?}");
    }
}

#[test]
fn via_parameters() {
    let mut v: Via = "SIP / 2.0 / udp  [2001:db8::1] : 5060 ; branch = z9hG4bK1 ; rport"
        .parse()
        .unwrap();
    assert_eq!(v.transport, "UDP");
    assert_eq!(v.host, "[2001:db8::1]");
    assert_eq!(v.port, Some(5060));
    assert_eq!(v.branch(), Some("z9hG4bK1"));
    assert_eq!(v.rfc3261_branch(), Some("z9hG4bK1"));
    assert_eq!(v.rport(), Some(None));
    v.set_received("2001:db8::9");
    v.set_rport(5999);
    assert_eq!(
        v.to_string(),
        "SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bK1;rport=5999;received=[2001:db8::9]"
    );
    assert_eq!(v.sent_by(), "[2001:db8::1]:5060");
    for bad in [
        "SIP/2.0/UDP",
        "SIP/2.0 UDP host",
        "SIP/3.0/UDP host",
        "SIP/2.0/UDP host;",
        "SIP/2.0/UDP host:x",
        "SIP/2.0/UDP ho st",
    ] {
        assert!(bad.parse::<Via>().is_err(), "{bad:?}");
    }
}

#[test]
fn event_and_subscription_state() {
    let e: Event = "Presence.winfo;id=\"7\";x".parse().unwrap();
    assert!(e.is("presence.WINFO"));
    assert_eq!(e.id.as_deref(), Some("7"));
    assert_eq!(e.param("x"), Some(None));
    let s: SubscriptionState = "terminated;reason=timeout;retry-after=30".parse().unwrap();
    assert_eq!(s.state, SubState::Terminated);
    assert_eq!(s.reason.as_deref(), Some("timeout"));
    assert_eq!(s.retry_after, Some(30));
    assert_eq!(s.to_string(), "terminated;reason=timeout;retry-after=30");
    let s: SubscriptionState = "Active ; expires = 600".parse().unwrap();
    assert_eq!(s, SubscriptionState::active(600));
    assert!("active;expires=x".parse::<SubscriptionState>().is_err());
    assert!("active;expires=99999999999"
        .parse::<SubscriptionState>()
        .is_err());
}

#[test]
fn media_types() {
    let m: MediaType = "Application/PIDF+XML ; charset=utf-8".parse().unwrap();
    assert_eq!(m.essence(), "application/pidf+xml");
    assert_eq!(m.param("charset"), Some(Some("utf-8")));
    let any: MediaType = "*/*".parse().unwrap();
    assert!(any.matches("application/pidf+xml"));
    let app: MediaType = "application/*".parse().unwrap();
    assert!(app.matches("application/watcherinfo+xml"));
    assert!(!app.matches("text/plain"));
    assert!("application".parse::<MediaType>().is_err());
    assert!("a/b c".parse::<MediaType>().is_err());
}

#[test]
fn credentials_and_challenges() {
    let a: Authorization = "Digest username=\"bob\", realm=\"example.com\", nonce=\"a,b\", uri=\"sip:example.com\", response=\"0123\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"x\"".parse().unwrap();
    assert_eq!(a.digest_param("Nonce"), Some("a,b"));
    assert_eq!(a.digest_param("qop"), Some("auth"));
    assert_eq!(a.to_string(), "Digest username=\"bob\", realm=\"example.com\", nonce=\"a,b\", uri=\"sip:example.com\", response=\"0123\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"x\"");
    let b: Authorization = "bearer abc.DEF-_~+/==".parse().unwrap();
    assert_eq!(b.bearer_token(), Some("abc.DEF-_~+/=="));
    assert!("Bearer".parse::<Authorization>().is_err());
    assert!("Bearer a b".parse::<Authorization>().is_err());
    assert!("Digest realm".parse::<Authorization>().is_err());

    let c = Challenge::Bearer {
        realm: "example.com".into(),
        scope: Some("sip:register sip:subscribe".into()),
        authz_server: Some("https://as.example.com".into()),
        error: Some("invalid_token".into()),
        error_description: None,
    };
    let text = c.to_string();
    assert_eq!(text, "Bearer realm=\"example.com\", scope=\"sip:register sip:subscribe\", authz_server=\"https://as.example.com\", error=\"invalid_token\"");
    assert_eq!(text.parse::<Challenge>().unwrap(), c);
    let d = Challenge::Digest {
        realm: "example.com".into(),
        nonce: "n1".into(),
        opaque: Some("o".into()),
        algorithm: Some("SHA-256".into()),
        qop: Some("auth".into()),
        stale: true,
    };
    assert_eq!(d.to_string().parse::<Challenge>().unwrap(), d);
}

#[test]
fn header_names() {
    assert_eq!("v".parse::<HeaderName>().unwrap(), HeaderName::Via);
    assert_eq!("CALL-ID".parse::<HeaderName>().unwrap(), HeaderName::CallId);
    assert_eq!(HeaderName::from("sip-etag").to_string(), "SIP-ETag");
    assert_eq!(HeaderName::from("X-Foo"), HeaderName::Other("x-foo".into()));
    for (compact, full) in [
        ("i", "Call-ID"),
        ("m", "Contact"),
        ("e", "Content-Encoding"),
        ("f", "From"),
        ("k", "Supported"),
        ("l", "Content-Length"),
        ("s", "Subject"),
        ("t", "To"),
        ("v", "Via"),
        ("o", "Event"),
        ("u", "Allow-Events"),
        ("c", "Content-Type"),
        ("r", "Refer-To"),
        ("x", "Session-Expires"),
        ("y", "Identity"),
        ("b", "Referred-By"),
        ("d", "Request-Disposition"),
        ("j", "Reject-Contact"),
        ("a", "Accept-Contact"),
    ] {
        assert_eq!(HeaderName::from(compact).as_str(), full, "{compact}");
        assert_eq!(
            HeaderName::from(compact.to_uppercase().as_str()),
            HeaderName::from(full)
        );
    }
    assert!(HeaderName::Route.is_list());
    assert!(!HeaderName::WwwAuthenticate.is_list());
    assert!(!HeaderName::Other("X".into()).is_list());
}

#[test]
fn get_all_splitting_rules() {
    let raw = "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nTo: <sip:a@b>\r\nFrom: <sip:a@b>;tag=1\r\n\
Call-ID: c\r\nCSeq: 1 OPTIONS\r\nRoute: <sip:p1;lr>, \"x, y\" <sip:p2;lr>,<urn:p3,x>\r\nRoute: <sip:p4>\r\n\
WWW-Authenticate: Digest realm=\"a\", nonce=\"b\"\r\nDate: Sat, 15 Oct 2005 04:44:56 GMT\r\nX-List: a, b\r\nContent-Length: 0\r\n\r\n";
    let m = parse(bytes::Bytes::from_static(raw.as_bytes())).unwrap();
    let h = m.headers();
    assert_eq!(
        h.get_all(HeaderName::Route).collect::<Vec<_>>(),
        [
            "<sip:p1;lr>",
            "\"x, y\" <sip:p2;lr>",
            "<urn:p3,x>",
            "<sip:p4>"
        ]
    );
    assert_eq!(h.get("route"), Some("<sip:p1;lr>"));
    assert_eq!(h.get_all("WWW-Authenticate").count(), 1);
    assert_eq!(h.date(), Some("Sat, 15 Oct 2005 04:44:56 GMT"));
    assert_eq!(h.get_all("x-list").collect::<Vec<_>>(), ["a, b"]);
    assert_eq!(h.route().unwrap().len(), 4);
    assert_eq!(h.lines(&HeaderName::Route).count(), 2);
}
