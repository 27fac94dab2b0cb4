//! Property tests: nothing taken from the network panics, and no altered token validates.

use std::sync::Arc;

use auth::digest::{DigestAlgorithm, DigestAuthenticator, DigestConfig, Ha1File};
use auth::peers::TrustedPeers;
use auth::testing::{sign, unix_now, TestKey};
use auth::{canonical_aor, BearerConfig, BearerValidator, KeySource};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

const ISSUER: &str = "https://idp.example.com";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn validator(runtime: &tokio::runtime::Runtime) -> BearerValidator {
    runtime
        .block_on(BearerValidator::new(BearerConfig {
            issuers: vec![ISSUER.to_owned()],
            audiences: vec!["sip-edge".to_owned()],
            jwks: Some(KeySource::Inline(TestKey::jwks(&TestKey::ALL))),
            ..BearerConfig::default()
        }))
        .unwrap()
}

fn valid_token(key: TestKey) -> String {
    let mut claims = Map::new();
    claims.insert("iss".into(), Value::from(ISSUER));
    claims.insert("aud".into(), Value::from("sip-edge"));
    claims.insert("sub".into(), Value::from("alice@example.com"));
    claims.insert("exp".into(), Value::from(unix_now() + 3600));
    sign(key, key.default_algorithm(), Some(key.kid()), &claims).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn canonical_aor_never_panics(value in ".{0,64}", domain in proptest::option::of("[a-zA-Z0-9.-]{0,16}")) {
        if let Ok(aor) = canonical_aor(&value, domain.as_deref()) {
            let (user, host) = aor.rsplit_once('@').unwrap();
            prop_assert!(!user.is_empty() && !host.is_empty());
            prop_assert_eq!(host.to_ascii_lowercase(), host);
            prop_assert!(!aor.chars().any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '"'));
        }
    }

    #[test]
    fn trusted_peer_parsing_never_panics(cidr in ".{0,48}") {
        let _ = TrustedPeers::new([cidr]);
    }

    #[test]
    fn digest_verify_never_panics(
        params in proptest::collection::vec(
            (prop_oneof![
                Just("username".to_owned()), Just("realm".to_owned()), Just("nonce".to_owned()),
                Just("uri".to_owned()), Just("response".to_owned()), Just("algorithm".to_owned()),
                Just("qop".to_owned()), Just("nc".to_owned()), Just("cnonce".to_owned()),
                Just("opaque".to_owned()), ".{0,8}",
            ], ".{0,48}"),
            0..12,
        ),
        method in "[A-Z]{0,9}",
    ) {
        let digest = DigestAuthenticator::new(
            DigestConfig {
                realm: "example.com".to_owned(),
                algorithms: vec![DigestAlgorithm::Md5, DigestAlgorithm::Sha256],
                nonce_ttl_secs: 60,
                secret: b"k".to_vec(),
            },
            Arc::new(Ha1File::parse("alice:pw").unwrap()),
        );
        prop_assert!(digest.verify(&method, &params).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn arbitrary_tokens_never_validate(token in "[ -~]{0,600}") {
        let runtime = runtime();
        let validator = validator(&runtime);
        prop_assert!(runtime.block_on(validator.validate(&token)).is_err());
    }

    #[test]
    fn jwt_shaped_garbage_never_validates(
        header in "[A-Za-z0-9_-]{0,80}",
        payload in "[A-Za-z0-9_-]{0,200}",
        signature in "[A-Za-z0-9_-]{0,120}",
    ) {
        let runtime = runtime();
        let validator = validator(&runtime);
        let token = format!("{header}.{payload}.{signature}");
        prop_assert!(runtime.block_on(validator.validate(&token)).is_err());
    }

    #[test]
    fn any_single_character_change_invalidates(
        key in prop_oneof![Just(TestKey::RsaA), Just(TestKey::EcP256), Just(TestKey::Ed25519)],
        position in any::<prop::sample::Index>(),
        replacement in "[A-Za-z0-9_-]",
    ) {
        let runtime = runtime();
        let validator = validator(&runtime);
        let token = valid_token(key);
        let index = position.index(token.len());
        prop_assume!(token.as_bytes()[index] != b'.' && token[index..index + 1] != replacement);
        let mut altered = token.clone();
        altered.replace_range(index..index + 1, &replacement);
        prop_assert!(runtime.block_on(validator.validate(&altered)).is_err(), "{} validated", altered);
        prop_assert!(runtime.block_on(validator.validate(&token)).is_ok());
    }

    #[test]
    fn arbitrary_jwks_documents_never_panic(
        keys in proptest::collection::vec(
            (
                prop_oneof![Just("RSA"), Just("EC"), Just("OKP"), Just("oct"), Just("??")],
                prop_oneof![Just("P-256"), Just("P-384"), Just("Ed25519"), Just("X25519"), Just("")],
                prop_oneof![Just("RS256"), Just("ES256"), Just("EdDSA"), Just("HS256"), Just("none"), Just("")],
                "[A-Za-z0-9_=-]{0,400}",
                "[A-Za-z0-9_=-]{0,64}",
            ),
            0..4,
        ),
    ) {
        let keys: Vec<Value> = keys
            .into_iter()
            .map(|(kty, crv, alg, a, b)| json!({"kty": kty, "crv": crv, "alg": alg, "n": a, "e": b, "x": a, "y": b, "kid": "k"}))
            .collect();
        let runtime = runtime();
        let result = runtime.block_on(BearerValidator::new(BearerConfig {
            jwks: Some(KeySource::Inline(json!({ "keys": keys }).to_string())),
            ..BearerConfig::default()
        }));
        if let Ok(validator) = result {
            let token = valid_token(TestKey::Ed25519);
            prop_assert!(runtime.block_on(validator.validate(&token)).is_err());
        }
    }
}

#[test]
fn unaltered_tokens_of_every_kind_validate() {
    let runtime = runtime();
    let validator = validator(&runtime);
    for key in TestKey::ALL {
        let token = valid_token(key);
        runtime
            .block_on(validator.validate(&token))
            .unwrap_or_else(|e| panic!("{key:?}: {e}"));
    }
}
