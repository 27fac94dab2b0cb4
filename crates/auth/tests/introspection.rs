//! RFC 7662 introspection of opaque tokens against the in-process authorization server.

use std::time::Duration;

use auth::testing::{unix_now, AuthServer, Availability, Endpoint, TestKey};
use auth::{AuthError, BearerConfig, BearerValidator, CacheConfig, ClientAuthMethod};
use serde_json::{json, Map, Value};

fn members(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => unreachable!("test data is an object"),
    }
}

async fn introspecting(server: &AuthServer, method: ClientAuthMethod) -> BearerValidator {
    BearerValidator::new(BearerConfig {
        jwks: None,
        introspection: Some(server.introspection_config(method)),
        identity_claim: "username".to_owned(),
        default_domain: Some("example.com".to_owned()),
        ..server.bearer_config()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn active_tokens_with_both_client_auth_methods() {
    let server = AuthServer::start().await.unwrap();
    server.register_opaque(
        "opaque-alice",
        members(json!({
            "sub": "2c0e8f", "username": "alice", "scope": "sip:register sip:presence",
            "client_id": "softphone", "exp": unix_now() + 600, "iss": server.issuer(), "aud": "sip-edge",
        })),
    );
    for method in [ClientAuthMethod::Basic, ClientAuthMethod::Post] {
        let validator = introspecting(&server, method).await;
        let identity = validator.validate("opaque-alice").await.unwrap();
        assert_eq!(identity.aor, "alice@example.com");
        assert_eq!(identity.subject, "2c0e8f");
        assert_eq!(identity.client_id.as_deref(), Some("softphone"));
        assert_eq!(
            identity.scopes,
            vec!["sip:presence".to_owned(), "sip:register".to_owned()]
        );
        validator.authorize(&identity, "PUBLISH").unwrap();
        assert_eq!(server.introspection_requests_by(method), 1, "{method:?}");
    }
}

#[tokio::test]
async fn inactive_unknown_and_expired_tokens_are_refused() {
    let server = AuthServer::start().await.unwrap();
    let validator = introspecting(&server, ClientAuthMethod::Basic).await;
    server.register_opaque(
        "revoked",
        members(json!({"active": false, "username": "alice"})),
    );
    server.register_opaque(
        "stale",
        members(json!({"username": "alice", "exp": unix_now() - 3600})),
    );
    server.register_opaque(
        "elsewhere",
        members(json!({"username": "alice", "iss": "https://other.example"})),
    );
    server.register_opaque(
        "other-audience",
        members(json!({"username": "alice", "aud": ["billing"]})),
    );
    server.register_opaque(
        "refresh",
        members(json!({"username": "alice", "token_type": "refresh_token"})),
    );
    server.register_opaque(
        "keycloak-refresh",
        members(json!({"username": "alice", "typ": "Refresh"})),
    );
    server.register_opaque(
        "bearer",
        members(json!({"username": "alice", "token_type": "Bearer", "typ": "Bearer"})),
    );
    assert_eq!(
        validator.validate("bearer").await.unwrap().aor,
        "alice@example.com"
    );
    for token in [
        "revoked",
        "never-issued",
        "elsewhere",
        "other-audience",
        "refresh",
        "keycloak-refresh",
    ] {
        let error = validator.validate(token).await.unwrap_err();
        assert!(
            matches!(error, AuthError::InvalidToken(_)),
            "{token}: {error:?}"
        );
        assert_eq!(
            validator.challenge(Some(&error)).error,
            Some("invalid_token")
        );
    }
    assert_eq!(validator.validate("stale").await, Err(AuthError::Expired));
}

#[tokio::test]
async fn results_are_cached_and_negative_results_briefly() {
    let server = AuthServer::start().await.unwrap();
    let validator = BearerValidator::new(BearerConfig {
        jwks: None,
        introspection: Some(server.introspection_config(ClientAuthMethod::Post)),
        cache: CacheConfig {
            negative_ttl: Duration::from_millis(300),
            max_ttl: Duration::from_secs(2),
            ..CacheConfig::default()
        },
        ..server.bearer_config()
    })
    .await
    .unwrap();
    server.register_opaque(
        "good",
        members(json!({"sub": "bob@example.com", "exp": unix_now() + 600})),
    );
    let cached_at = std::time::Instant::now();
    for _ in 0..5 {
        validator.validate("good").await.unwrap();
        assert!(validator.validate("bad").await.is_err());
    }
    assert_eq!(server.requests(Endpoint::Introspection), 2);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(validator.validate("bad").await.is_err());
    validator.validate("good").await.unwrap();
    assert_eq!(
        server.requests(Endpoint::Introspection),
        3,
        "negative entry expired"
    );
    tokio::time::sleep(Duration::from_millis(2100).saturating_sub(cached_at.elapsed())).await;
    validator.validate("good").await.unwrap();
    assert_eq!(
        server.requests(Endpoint::Introspection),
        4,
        "positive entry capped by max_ttl"
    );
}

#[tokio::test]
async fn outages_and_refused_client_credentials_are_503_and_not_cached() {
    let server = AuthServer::start().await.unwrap();
    server.register_opaque("good", members(json!({"sub": "bob@example.com"})));
    let mut wrong_secret = server.introspection_config(ClientAuthMethod::Basic);
    wrong_secret.client_secret = "guess".to_owned();
    let validator = BearerValidator::new(BearerConfig {
        jwks: None,
        introspection: Some(wrong_secret),
        ..server.bearer_config()
    })
    .await
    .unwrap();
    let error = validator.validate("good").await.unwrap_err();
    assert!(
        matches!(error, AuthError::ProviderUnavailable(_)),
        "{error:?}"
    );
    assert_eq!(error.sip_status(), 503);
    assert_eq!(validator.challenge(Some(&error)).error, None);

    let validator = introspecting(&server, ClientAuthMethod::Basic).await;
    server
        .set_availability(Availability::Failing)
        .await
        .unwrap();
    assert!(matches!(
        validator.validate("good").await,
        Err(AuthError::ProviderUnavailable(_))
    ));
    server
        .set_availability(Availability::Refusing)
        .await
        .unwrap();
    assert!(matches!(
        validator.validate("good").await,
        Err(AuthError::ProviderUnavailable(_))
    ));
    server.set_availability(Availability::Up).await.unwrap();
    assert_eq!(
        validator.validate("good").await.unwrap().aor,
        "bob@example.com"
    );
}

#[tokio::test]
async fn jwts_are_verified_locally_when_keys_are_configured() {
    let server = AuthServer::start().await.unwrap();
    server.register_opaque("opaque", members(json!({"sub": "bob@example.com"})));
    let validator = BearerValidator::new(BearerConfig {
        introspection: Some(server.introspection_config(ClientAuthMethod::Basic)),
        ..server.bearer_config()
    })
    .await
    .unwrap();
    let jwt = server
        .mint(TestKey::EcP384, "alice@example.com", &[], 300)
        .unwrap();
    assert_eq!(
        validator.validate(&jwt).await.unwrap().aor,
        "alice@example.com"
    );
    assert_eq!(server.requests(Endpoint::Introspection), 0);
    assert_eq!(
        validator.validate("opaque").await.unwrap().aor,
        "bob@example.com"
    );
    assert_eq!(server.requests(Endpoint::Introspection), 1);
}
