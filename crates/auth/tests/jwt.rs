//! JWT validation against a real in-process authorization server and real keys.

use std::time::Duration;

use auth::testing::{sign, unix_now, AuthServer, TestKey, AUDIENCE};
use auth::{
    Algorithm, AuthError, AuthMethod, BearerConfig, BearerValidator, CacheConfig, KeySource,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

async fn server_and_validator() -> (AuthServer, BearerValidator) {
    let server = AuthServer::start().await.unwrap();
    let validator = BearerValidator::new(server.bearer_config()).await.unwrap();
    (server, validator)
}

#[tokio::test]
async fn every_allowed_algorithm_verifies() {
    let (server, validator) = server_and_validator().await;
    let cases = [
        (TestKey::RsaA, Algorithm::RS256),
        (TestKey::RsaA, Algorithm::RS384),
        (TestKey::RsaA, Algorithm::RS512),
        (TestKey::RsaA, Algorithm::PS256),
        (TestKey::EcP256, Algorithm::ES256),
        (TestKey::EcP384, Algorithm::ES384),
        (TestKey::Ed25519, Algorithm::EdDSA),
    ];
    for (key, alg) in cases {
        let claims = server.claims("alice@example.com", &["sip:register"], 300);
        let token = sign(key, alg, Some(key.kid()), &claims).unwrap();
        let identity = validator
            .validate(&token)
            .await
            .unwrap_or_else(|e| panic!("{alg:?} with {key:?}: {e}"));
        assert_eq!(identity.aor, "alice@example.com");
        assert_eq!(identity.subject, "alice@example.com");
        assert_eq!(identity.scopes, vec!["sip:register".to_owned()]);
        assert_eq!(identity.client_id.as_deref(), Some("sip-phone"));
        assert_eq!(identity.method, AuthMethod::Bearer);
        assert!(identity.expires_at.unwrap() >= unix_now() + 290);
    }
}

#[tokio::test]
async fn algorithm_outside_the_allow_list_is_refused() {
    let server = AuthServer::start().await.unwrap();
    let config = BearerConfig {
        algorithms: vec![Algorithm::EdDSA],
        ..server.bearer_config()
    };
    let validator = BearerValidator::new(config).await.unwrap();
    let rsa = server
        .mint(TestKey::RsaA, "alice@example.com", &[], 300)
        .unwrap();
    assert!(matches!(
        validator.validate(&rsa).await,
        Err(AuthError::InvalidToken(_))
    ));
    let ed = server
        .mint(TestKey::Ed25519, "alice@example.com", &[], 300)
        .unwrap();
    assert!(validator.validate(&ed).await.is_ok());
}

#[tokio::test]
async fn hmac_in_the_allow_list_is_a_configuration_error() {
    let server = AuthServer::start().await.unwrap();
    let config = BearerConfig {
        algorithms: vec![Algorithm::RS256, Algorithm::HS256],
        ..server.bearer_config()
    };
    assert!(matches!(
        BearerValidator::new(config).await,
        Err(AuthError::Config(_))
    ));
}

#[tokio::test]
async fn wrong_issuer_and_audience_are_refused() {
    let (server, validator) = server_and_validator().await;
    let mut claims = server.claims("alice@example.com", &[], 300);
    claims.insert("iss".into(), Value::from("https://evil.example.net"));
    let token = sign(TestKey::RsaA, Algorithm::RS256, Some("rsa-a"), &claims).unwrap();
    assert!(matches!(
        validator.validate(&token).await,
        Err(AuthError::InvalidToken(_))
    ));

    let mut claims = server.claims("alice@example.com", &[], 300);
    claims.insert("aud".into(), Value::from("another-service"));
    let token = sign(TestKey::RsaA, Algorithm::RS256, Some("rsa-a"), &claims).unwrap();
    assert!(matches!(
        validator.validate(&token).await,
        Err(AuthError::InvalidToken(_))
    ));

    // An audience array naming us among others is fine.
    let mut claims = server.claims("alice@example.com", &[], 300);
    claims.insert("aud".into(), serde_json::json!(["account", AUDIENCE]));
    let token = sign(TestKey::RsaA, Algorithm::RS256, Some("rsa-a"), &claims).unwrap();
    assert!(validator.validate(&token).await.is_ok());

    // Missing iss or aud while they are configured.
    for claim in ["iss", "aud"] {
        let mut claims = server.claims("alice@example.com", &[], 300);
        claims.remove(claim);
        let token = sign(TestKey::RsaA, Algorithm::RS256, Some("rsa-a"), &claims).unwrap();
        assert!(
            matches!(
                validator.validate(&token).await,
                Err(AuthError::InvalidToken(_))
            ),
            "token without {claim}"
        );
    }
}

#[tokio::test]
async fn time_claims_are_enforced_with_leeway() {
    let server = AuthServer::start().await.unwrap();
    let config = BearerConfig {
        leeway_secs: 30,
        ..server.bearer_config()
    };
    let validator = BearerValidator::new(config).await.unwrap();
    let now = unix_now();
    let with = |name: &str, value: u64| {
        let mut claims = server.claims("alice@example.com", &[], 300);
        claims.insert(name.into(), Value::from(value));
        sign(TestKey::EcP256, Algorithm::ES256, Some("ec-p256"), &claims).unwrap()
    };
    // Expired well beyond the leeway.
    assert_eq!(
        validator.validate(&with("exp", now - 120)).await,
        Err(AuthError::Expired)
    );
    // Expired but within the leeway.
    assert!(validator.validate(&with("exp", now - 5)).await.is_ok());
    // Not yet valid.
    assert!(matches!(
        validator.validate(&with("nbf", now + 600)).await,
        Err(AuthError::InvalidToken(_))
    ));
    assert!(validator.validate(&with("nbf", now + 10)).await.is_ok());
    // Issued in the future.
    assert!(matches!(
        validator.validate(&with("iat", now + 600)).await,
        Err(AuthError::InvalidToken(_))
    ));
    // No exp at all.
    let mut claims = server.claims("alice@example.com", &[], 300);
    claims.remove("exp");
    let token = sign(TestKey::EcP256, Algorithm::ES256, Some("ec-p256"), &claims).unwrap();
    assert!(matches!(
        validator.validate(&token).await,
        Err(AuthError::InvalidToken(_))
    ));
    // Expiry maps to 401 invalid_token.
    assert_eq!(AuthError::Expired.sip_status(), 401);
    assert_eq!(AuthError::Expired.oauth_error_code(), Some("invalid_token"));
}

#[tokio::test]
async fn hmac_signed_with_the_public_key_is_refused() {
    let (server, validator) = server_and_validator().await;
    let claims = server.claims("mallory@example.com", &["sip:register"], 300);
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT","kid":"rsa-a"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let signing_input = format!("{header}.{payload}");
    // The classic confusion attack: the RSA public key (PEM bytes, as a naive verifier would load it)
    // used as the HMAC secret.
    use hmac::{Hmac, KeyInit as _, Mac};
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(TestKey::RsaA.public_pem().as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    let token = format!("{signing_input}.{signature}");
    let error = validator.validate(&token).await.unwrap_err();
    assert!(matches!(error, AuthError::InvalidToken(_)), "{error:?}");
    assert_eq!(error.sip_status(), 401);

    // Same without kid, so no key lookup narrows the candidates.
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
    let signing_input = format!("{header}.{payload}");
    let mut mac =
        Hmac::<sha2::Sha256>::new_from_slice(TestKey::RsaA.public_pem().as_bytes()).unwrap();
    mac.update(signing_input.as_bytes());
    let forged = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
    );
    assert!(matches!(
        validator.validate(&forged).await,
        Err(AuthError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn alg_none_is_refused() {
    let (server, validator) = server_and_validator().await;
    let claims = server.claims("mallory@example.com", &["sip:register"], 300);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    for header in [
        r#"{"alg":"none","typ":"JWT"}"#,
        r#"{"alg":"None"}"#,
        r#"{"alg":"none","kid":"rsa-a"}"#,
    ] {
        let header = URL_SAFE_NO_PAD.encode(header);
        for token in [
            format!("{header}.{payload}."),
            format!("{header}.{payload}.c2ln"),
        ] {
            let error = validator.validate(&token).await.unwrap_err();
            assert!(
                matches!(error, AuthError::InvalidToken(_)),
                "{token}: {error:?}"
            );
        }
    }
}

#[tokio::test]
async fn key_type_must_agree_with_the_header_algorithm() {
    let (server, validator) = server_and_validator().await;
    let claims = server.claims("alice@example.com", &[], 300);
    // ES256 signature, header naming the RSA key.
    let token = sign(TestKey::EcP256, Algorithm::ES256, Some("rsa-a"), &claims).unwrap();
    assert!(matches!(
        validator.validate(&token).await,
        Err(AuthError::InvalidToken(_))
    ));
    // ES384 header naming the P-256 key.
    let token = sign(TestKey::EcP384, Algorithm::ES384, Some("ec-p256"), &claims).unwrap();
    assert!(matches!(
        validator.validate(&token).await,
        Err(AuthError::InvalidToken(_))
    ));
    // Signed by a key that is not published, claiming a published kid.
    let token = sign(TestKey::RsaB, Algorithm::RS256, Some("rsa-a"), &claims).unwrap();
    assert!(matches!(
        validator.validate(&token).await,
        Err(AuthError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn token_without_kid_is_tried_against_keys_of_its_type() {
    let (server, validator) = server_and_validator().await;
    let claims = server.claims("alice@example.com", &[], 300);
    let token = sign(TestKey::Ed25519, Algorithm::EdDSA, None, &claims).unwrap();
    assert!(validator.validate(&token).await.is_ok());
}

#[tokio::test]
async fn tampered_and_garbage_tokens_are_refused() {
    let (server, validator) = server_and_validator().await;
    let token = server
        .mint(TestKey::RsaA, "alice@example.com", &[], 300)
        .unwrap();
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut claims = server.claims("admin@example.com", &["sip:register"], 300);
    claims.insert("sub".into(), Value::from("admin@example.com"));
    parts[1] = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let tampered = parts.join(".");
    assert!(matches!(
        validator.validate(&tampered).await,
        Err(AuthError::InvalidToken(_))
    ));
    assert_eq!(validator.validate("").await, Err(AuthError::Missing));
    assert!(matches!(
        validator.validate("a b").await,
        Err(AuthError::Malformed(_))
    ));
    assert!(matches!(
        validator.validate("x.y.z").await,
        Err(AuthError::InvalidToken(_))
    ));
    assert!(matches!(
        validator.validate(&"a".repeat(20_000)).await,
        Err(AuthError::Malformed(_))
    ));
    // Opaque token without introspection configured.
    assert!(matches!(
        validator.validate("opaque-token").await,
        Err(AuthError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn jwks_from_file_inline_and_discovery() {
    let server = AuthServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, TestKey::jwks(&[TestKey::EcP384])).unwrap();
    let token = server
        .mint(TestKey::EcP384, "alice@example.com", &[], 300)
        .unwrap();
    let sources = [
        KeySource::File(path.clone()),
        KeySource::Inline(TestKey::jwks(&[TestKey::EcP384])),
        KeySource::Discovery(server.issuer()),
        KeySource::Discovery(server.discovery_url()),
    ];
    for source in sources {
        let config = BearerConfig {
            jwks: Some(source.clone()),
            ..server.bearer_config()
        };
        let validator = BearerValidator::new(config).await.unwrap();
        let identity = validator
            .validate(&token)
            .await
            .unwrap_or_else(|e| panic!("{source:?}: {e}"));
        assert_eq!(identity.aor, "alice@example.com");
    }
    // Discovery without configured issuers adopts the discovered issuer.
    let config = BearerConfig {
        issuers: Vec::new(),
        jwks: Some(KeySource::Discovery(server.issuer())),
        ..server.bearer_config()
    };
    let validator = BearerValidator::new(config).await.unwrap();
    assert!(validator.validate(&token).await.is_ok());
    let mut claims = server.claims("alice@example.com", &[], 300);
    claims.insert("iss".into(), Value::from("https://other.example.org"));
    let foreign = sign(TestKey::EcP384, Algorithm::ES384, Some("ec-p384"), &claims).unwrap();
    assert!(matches!(
        validator.validate(&foreign).await,
        Err(AuthError::InvalidToken(_))
    ));
    // A bad file is a configuration error.
    std::fs::write(&path, "not json").unwrap();
    let config = BearerConfig {
        jwks: Some(KeySource::File(path)),
        ..server.bearer_config()
    };
    assert!(matches!(
        BearerValidator::new(config).await,
        Err(AuthError::Config(_))
    ));
}

#[tokio::test]
async fn provider_down_at_start_without_introspection_is_an_error() {
    let server = AuthServer::start().await.unwrap();
    server
        .set_availability(auth::testing::Availability::Refusing)
        .await
        .unwrap();
    let error = BearerValidator::new(server.bearer_config())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(error, AuthError::ProviderUnavailable(_)),
        "{error:?}"
    );
    assert_eq!(error.sip_status(), 503);
}

#[tokio::test]
async fn http_requests_time_out() {
    let server = AuthServer::start().await.unwrap();
    server.set_delay(Duration::from_secs(3));
    let mut config = server.bearer_config();
    config.cache = CacheConfig {
        http_timeout: Duration::from_millis(300),
        ..config.cache
    };
    let started = std::time::Instant::now();
    let error = BearerValidator::new(config).await.err().unwrap();
    assert!(
        matches!(error, AuthError::ProviderUnavailable(_)),
        "{error:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[cfg(feature = "dev-issuer")]
#[tokio::test]
async fn dev_issuer_tokens_validate() {
    let issuer = auth::dev::DevIssuer::generate("https://dev.invalid", "sip-dev").unwrap();
    let validator = BearerValidator::new(BearerConfig {
        default_domain: Some("example.com".to_owned()),
        ..issuer.bearer_config()
    })
    .await
    .unwrap();
    let token = issuer
        .mint("alice", &["sip:register", "sip:presence"], 60)
        .unwrap();
    let identity = validator.validate(&token).await.unwrap();
    assert_eq!(identity.aor, "alice@example.com");
    assert_eq!(
        identity.scopes,
        vec!["sip:presence".to_owned(), "sip:register".to_owned()]
    );
    validator.authorize(&identity, "REGISTER").unwrap();
    validator.authorize(&identity, "SUBSCRIBE").unwrap();
    assert!(issuer.jwks_json().contains(issuer.kid()));
    // Another issuer's token with the same claims is refused.
    let other = auth::dev::DevIssuer::generate("https://dev.invalid", "sip-dev").unwrap();
    let token = other.mint("alice", &["sip:register"], 60).unwrap();
    assert!(validator.validate(&token).await.is_err());
}

#[tokio::test]
async fn unusual_headers_are_refused() {
    use auth::testing::sign_with_header;
    let (server, validator) = server_and_validator().await;
    let claims = server.claims("alice@example.com", &[], 300);
    let with = |header: serde_json::Value| {
        sign_with_header(TestKey::Ed25519, Algorithm::EdDSA, &header, &claims).unwrap()
    };
    // Accepted access-token types.
    for typ in ["JWT", "at+jwt", "application/at+jwt"] {
        let token = with(serde_json::json!({"alg": "EdDSA", "kid": "ed25519", "typ": typ}));
        assert!(validator.validate(&token).await.is_ok(), "{typ}");
    }
    // Other token types (DPoP proofs, logout tokens) and critical extensions are not access tokens we know.
    for header in [
        serde_json::json!({"alg": "EdDSA", "kid": "ed25519", "typ": "dpop+jwt"}),
        serde_json::json!({"alg": "EdDSA", "kid": "ed25519", "typ": "logout+jwt"}),
        serde_json::json!({"alg": "EdDSA", "kid": "ed25519", "crit": ["exp"], "exp": 1}),
        serde_json::json!({"alg": "EdDSA", "kid": "ed25519", "b64": false, "crit": ["b64"]}),
    ] {
        let token = with(header.clone());
        assert!(
            matches!(
                validator.validate(&token).await,
                Err(AuthError::InvalidToken(_))
            ),
            "{header}"
        );
    }
}

#[tokio::test]
async fn pinned_jwk_algorithm_must_match_the_header() {
    let server = AuthServer::start().await.unwrap();
    let mut jwk = TestKey::RsaA.jwk();
    jwk["alg"] = Value::from("PS256");
    let config = BearerConfig {
        jwks: Some(KeySource::Inline(
            serde_json::json!({"keys": [jwk]}).to_string(),
        )),
        ..server.bearer_config()
    };
    let validator = BearerValidator::new(config).await.unwrap();
    let claims = server.claims("alice@example.com", &[], 300);
    let rs256 = sign(TestKey::RsaA, Algorithm::RS256, Some("rsa-a"), &claims).unwrap();
    assert!(matches!(
        validator.validate(&rs256).await,
        Err(AuthError::InvalidToken(_))
    ));
    let ps256 = sign(TestKey::RsaA, Algorithm::PS256, Some("rsa-a"), &claims).unwrap();
    validator.validate(&ps256).await.unwrap();
}

#[tokio::test]
async fn rsa_modulus_with_a_leading_zero_octet_is_accepted() {
    let server = AuthServer::start().await.unwrap();
    let mut jwk = TestKey::RsaA.jwk();
    let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
    let mut padded = vec![0u8];
    padded.extend_from_slice(&n);
    jwk["n"] = Value::from(URL_SAFE_NO_PAD.encode(padded));
    let config = BearerConfig {
        jwks: Some(KeySource::Inline(
            serde_json::json!({"keys": [jwk]}).to_string(),
        )),
        ..server.bearer_config()
    };
    let validator = BearerValidator::new(config).await.unwrap();
    let token = server
        .mint(TestKey::RsaA, "alice@example.com", &[], 300)
        .unwrap();
    validator.validate(&token).await.unwrap();
}

#[tokio::test]
async fn id_and_refresh_tokens_are_not_access_tokens() {
    let (server, validator) = server_and_validator().await;
    for (typ, accepted) in [
        ("Bearer", true),
        ("ID", false),
        ("Refresh", false),
        ("Offline", false),
    ] {
        let mut claims = server.claims("alice@example.com", &[], 300);
        claims.insert("typ".into(), Value::from(typ));
        let token = sign(TestKey::Ed25519, Algorithm::EdDSA, Some("ed25519"), &claims).unwrap();
        assert_eq!(
            validator.validate(&token).await.is_ok(),
            accepted,
            "typ {typ}"
        );
    }
}
