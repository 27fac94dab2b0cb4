use super::*;

#[test]
fn b64token_syntax() {
    assert!(is_b64token("abc.DEF-_~+/=="));
    assert!(!is_b64token("abc def"));
    assert!(!is_b64token("abc\"def"));
    assert!(!is_b64token("===="));
}

#[test]
fn challenge_header_quoting() {
    let challenge = BearerChallenge {
        realm: "ex\"ample".to_owned(),
        scope: Some("sip:register".to_owned()),
        authz_server: Some("https://as.example.com/realms/sip".to_owned()),
        error: Some("invalid_token"),
        error_description: Some("bad\r\n".to_owned()),
    };
    assert_eq!(
        challenge.header_value(),
        "Bearer realm=\"ex\\\"ample\", scope=\"sip:register\", \
         authz_server=\"https://as.example.com/realms/sip\", error=\"invalid_token\", \
         error_description=\"bad\""
    );
}
