use super::*;

#[test]
fn max_age_directives() {
    assert_eq!(
        parse_max_age("public, max-age=300"),
        Some(Duration::from_secs(300))
    );
    assert_eq!(parse_max_age("no-store"), Some(Duration::ZERO));
    assert_eq!(parse_max_age("public"), None);
    assert_eq!(parse_max_age("max-age=abc"), None);
}

#[test]
fn skips_keys_not_for_signatures() -> Result<(), String> {
    let document = br#"{"keys":[
            {"kty":"oct","k":"c2VjcmV0","kid":"hmac"},
            {"kty":"EC","crv":"P-256","use":"enc","x":"AA","y":"AA","kid":"enc"},
            {"kty":"RSA","n":"AQAB","e":"AQAB","kid":"tiny"},
            {"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"ed"},
            {"kty":"OKP","crv":"Ed25519","alg":"HS256","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"pinned-hmac"}
        ]}"#;
    let set = KeySet::parse(document)?;
    assert_eq!(set.kids(), vec!["ed".to_owned()]);
    assert!(matches!(
        set.lookup(Some("ed"), Algorithm::EdDSA),
        Lookup::Found(_)
    ));
    assert!(matches!(
        set.lookup(Some("ed"), Algorithm::ES256),
        Lookup::Mismatch
    ));
    assert!(matches!(
        set.lookup(Some("hmac"), Algorithm::HS256),
        Lookup::Missing
    ));
    assert!(matches!(
        set.lookup(None, Algorithm::EdDSA),
        Lookup::Found(_)
    ));
    Ok(())
}

#[test]
fn refuses_non_jwks() {
    assert!(KeySet::parse(b"{\"not\":1}").is_err());
    assert!(KeySet::parse(b"garbage").is_err());
}
