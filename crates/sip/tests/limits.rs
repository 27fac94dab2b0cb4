//! Size limits, framing edge cases and error statuses.

use bytes::Bytes;
use sip::*;

fn options(extra_headers: &str, body: &str) -> String {
    format!(
        "OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/UDP h.example.com;branch=z9hG4bK1\r\n\
To: <sip:a@example.com>\r\nFrom: <sip:b@example.com>;tag=1\r\nCall-ID: c1\r\nCSeq: 1 OPTIONS\r\n\
{extra_headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[test]
fn oversized_datagram_is_513() {
    let limits = Limits {
        max_message: 300,
        ..Limits::default()
    };
    let text = options("", &"x".repeat(400));
    let err = parse_with(Bytes::from(text.clone()), &limits).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::MessageTooLarge);
    assert_eq!(err.status_code(), 513);
    let answer = error_response(text.as_bytes(), &err).unwrap();
    assert_eq!(answer.status(), 513);
}

#[test]
fn oversized_body_is_413() {
    let limits = Limits {
        max_body: 100,
        ..Limits::default()
    };
    let err = parse_with(Bytes::from(options("", &"x".repeat(101))), &limits).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::BodyTooLarge);
    assert_eq!(err.status_code(), 413);
    let ok = parse_with(Bytes::from(options("", &"x".repeat(100))), &limits).unwrap();
    assert_eq!(ok.body().len(), 100);
}

#[test]
fn too_many_headers() {
    let limits = Limits {
        max_headers: 10,
        ..Limits::default()
    };
    let extra: String = (0..5).map(|i| format!("X-H{i}: v\r\n")).collect();
    let err = parse_with(Bytes::from(options(&extra, "")), &limits).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::TooManyHeaders);
    assert_eq!(err.status_code(), 513);
    let fewer: String = (0..3).map(|i| format!("X-H{i}: v\r\n")).collect();
    assert!(parse_with(Bytes::from(options(&fewer, "")), &limits).is_ok());
}

#[test]
fn header_line_too_long_including_continuations() {
    let limits = Limits {
        max_header_line: 64,
        ..Limits::default()
    };
    let long = format!("Subject: {}\r\n", "s".repeat(80));
    let err = parse_with(Bytes::from(options(&long, "")), &limits).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::HeaderTooLong);
    let folded = format!("Subject: {}\r\n {}\r\n", "s".repeat(40), "t".repeat(40));
    let err = parse_with(Bytes::from(options(&folded, "")), &limits).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::HeaderTooLong);
}

#[test]
fn frame_limits_unterminated_headers() {
    let limits = Limits {
        max_message: 200,
        max_header_line: 100,
        ..Limits::default()
    };
    // An endless header line.
    let err = frame(
        format!("OPTIONS sip:a SIP/2.0\r\nX: {}", "y".repeat(150)).as_bytes(),
        &limits,
    )
    .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::HeaderTooLong);
    // Endless short header lines.
    let many: String = (0..30).map(|i| format!("X-{i}: v\r\n")).collect();
    let err = frame(
        format!("OPTIONS sip:a SIP/2.0\r\n{many}").as_bytes(),
        &limits,
    )
    .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::MessageTooLarge);
    assert_eq!(err.status_code(), 413);
    // A declared body larger than allowed is refused before it arrives.
    let err = frame(
        b"OPTIONS sip:a SIP/2.0\r\nContent-Length: 999999\r\n\r\n",
        &limits,
    )
    .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::BodyTooLarge);
}

#[test]
fn frame_rejects_bad_content_length() {
    let limits = Limits::default();
    for bad in ["-1", "abc", "1 2", "99999999999999999999"] {
        let text = format!("OPTIONS sip:a SIP/2.0\r\nContent-Length: {bad}\r\n\r\n");
        assert!(frame(text.as_bytes(), &limits).is_err(), "{bad}");
    }
    let text = "OPTIONS sip:a SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\nx";
    assert_eq!(
        frame(text.as_bytes(), &limits).unwrap_err().kind(),
        &ErrorKind::DuplicateHeader(HeaderName::ContentLength)
    );
}

#[test]
fn frame_handles_keepalives_and_pipelining() {
    let limits = Limits::default();
    assert_eq!(
        frame(b"\r\n\r\n", &limits).unwrap(),
        Framing { skip: 4, len: None }
    );
    assert_eq!(frame(b"", &limits).unwrap(), Framing { skip: 0, len: None });
    let one = options("", "body");
    let two = format!("{one}{one}");
    let f = frame(two.as_bytes(), &limits).unwrap();
    assert_eq!(
        f,
        Framing {
            skip: 0,
            len: Some(one.len())
        }
    );
    let message = parse(Bytes::copy_from_slice(&two.as_bytes()[..one.len()])).unwrap();
    assert_eq!(message.body().as_ref(), b"body");
    // Folded Content-Length still frames.
    let folded = "OPTIONS sip:a SIP/2.0\r\nContent-Length:\r\n 2\r\n\r\nab";
    assert_eq!(
        frame(folded.as_bytes(), &limits).unwrap().len,
        Some(folded.len())
    );
}

#[test]
fn datagram_leading_crlf_and_bare_lf() {
    let text = format!("\r\n\r\n{}", options("", "").replace("\r\n", "\n"));
    let message = parse(Bytes::from(text)).unwrap();
    assert_eq!(message.headers().call_id().unwrap(), "c1");
}

#[test]
fn bare_cr_inside_a_line_is_rejected() {
    let text = options("Subject: a\rInjected: b\r\n", "");
    let err = parse(Bytes::from(text)).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::BadHeaderLine);
}

#[test]
fn invalid_utf8_in_header_is_rejected() {
    let mut raw = options("Subject: x\r\n", "").into_bytes();
    let at = raw.windows(10).position(|w| w == b"Subject: x").unwrap() + 9;
    raw[at] = 0xff;
    let err = parse(Bytes::from(raw)).unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::InvalidUtf8);
    // A non-UTF-8 body is fine.
    let mut with_body = options("", "ab").into_bytes();
    let len = with_body.len();
    with_body[len - 1] = 0xff;
    assert!(parse(Bytes::from(with_body)).is_ok());
}

#[test]
fn start_line_errors() {
    let cases = [
        ("OPTIONS sip:a@b SIP/3.0", 505),
        ("OPTIONS sip:a@b HTTP/1.1", 400),
        ("OPTIONS sip:a@b", 400),
        ("OPTIONS  sip:a@b SIP/2.0", 400),
        ("OPT<IONS sip:a@b SIP/2.0", 400),
        ("OPTIONS sip:a@b:99999 SIP/2.0", 400),
        ("OPTIONS sip:[::1 SIP/2.0", 400),
    ];
    for (line, status) in cases {
        let text = options("", "").replacen("OPTIONS sip:a@example.com SIP/2.0", line, 1);
        let err = parse(Bytes::from(text)).unwrap_err();
        assert_eq!(err.status_code(), status, "{line}");
    }
    for line in [
        "SIP/2.0 99 Low",
        "SIP/2.0 700 High",
        "SIP/2.0 20x Bad",
        "SIP/2.0",
    ] {
        let text = options("", "").replacen("OPTIONS sip:a@example.com SIP/2.0", line, 1);
        assert!(parse(Bytes::from(text)).is_err(), "{line}");
    }
}

#[test]
fn error_response_needs_via_and_cseq() {
    let no_via = b"OPTIONS sip:a SIP/2.0\r\nTo: <sip:a@b>\r\nCSeq: 1 OPTIONS\r\n\r\n";
    let err = parse(Bytes::from_static(no_via)).unwrap_err();
    assert!(error_response(no_via, &err).is_none());
    let ack = b"ACK sip:a SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCSeq: 1 ACK\r\n\r\n";
    let err = parse(Bytes::from_static(ack)).unwrap_err();
    assert!(error_response(ack, &err).is_none(), "ACK is never answered");
}
