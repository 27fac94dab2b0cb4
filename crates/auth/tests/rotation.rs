//! Key rotation and provider outages while the validator runs.

use std::time::Duration;

use auth::testing::{sign, AuthServer, Availability, Endpoint, TestKey};
use auth::{Algorithm, AuthError, BearerConfig, BearerValidator, CacheConfig, ClientAuthMethod};

fn bogus_kid_token(server: &AuthServer, n: usize) -> String {
    let claims = server.claims("mallory@example.com", &[], 300);
    sign(
        TestKey::Ed25519,
        Algorithm::EdDSA,
        Some(&format!("bogus-{n}")),
        &claims,
    )
    .unwrap()
}

#[tokio::test]
async fn new_kid_is_picked_up_and_retired_kid_dropped() {
    let server = AuthServer::start().await.unwrap();
    server.publish(&[TestKey::RsaA]);
    let validator = BearerValidator::new(server.bearer_config()).await.unwrap();
    let old = server
        .mint(TestKey::RsaA, "alice@example.com", &[], 300)
        .unwrap();
    validator.validate(&old).await.unwrap();
    assert_eq!(server.requests(Endpoint::Jwks), 1);

    // The provider starts signing with a new key: the unknown kid triggers one refetch.
    server.publish(&[TestKey::RsaA, TestKey::RsaB]);
    let new = server
        .mint(TestKey::RsaB, "bob@example.com", &[], 300)
        .unwrap();
    assert_eq!(
        validator.validate(&new).await.unwrap().aor,
        "bob@example.com"
    );
    assert_eq!(server.requests(Endpoint::Jwks), 2);

    // The old key is retired; the next fetch (here triggered by another unknown kid once the rate limit
    // allows) drops it.
    server.publish(&[TestKey::RsaB]);
    tokio::time::sleep(Duration::from_millis(250)).await;
    let _ = validator.validate(&bogus_kid_token(&server, 0)).await;
    assert_eq!(server.requests(Endpoint::Jwks), 3);
    let fresh_old = server
        .mint(TestKey::RsaA, "carol@example.com", &[], 300)
        .unwrap();
    assert!(matches!(
        validator.validate(&fresh_old).await,
        Err(AuthError::InvalidToken(_))
    ));
    let fresh_new = server
        .mint(TestKey::RsaB, "dave@example.com", &[], 300)
        .unwrap();
    validator.validate(&fresh_new).await.unwrap();
}

#[tokio::test]
async fn scheduled_refresh_follows_max_age() {
    let server = AuthServer::start().await.unwrap();
    server.set_jwks_max_age(Some(1));
    server.publish(&[TestKey::Ed25519]);
    let mut config = server.bearer_config();
    config.cache = CacheConfig {
        jwks_refresh_min: Duration::from_secs(1),
        // Keep on-demand refetches out of the picture.
        unknown_kid_min_interval: Duration::from_secs(3600),
        ..config.cache
    };
    let validator = BearerValidator::new(config).await.unwrap();
    server.publish(&[TestKey::EcP256]);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let fetches = server.requests(Endpoint::Jwks);
    assert!((2..=4).contains(&fetches), "{fetches} fetches");
    // The refreshed set has the new key and not the old one, without any on-demand fetch.
    let new = server
        .mint(TestKey::EcP256, "alice@example.com", &[], 300)
        .unwrap();
    validator.validate(&new).await.unwrap();
    let old = server
        .mint(TestKey::Ed25519, "alice@example.com", &[], 300)
        .unwrap();
    assert!(matches!(
        validator.validate(&old).await,
        Err(AuthError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn long_max_age_is_respected() {
    let server = AuthServer::start().await.unwrap();
    server.set_jwks_max_age(Some(3600));
    let mut config = server.bearer_config();
    config.cache = CacheConfig {
        jwks_refresh_min: Duration::from_secs(1),
        jwks_refresh: Duration::from_secs(1),
        ..config.cache
    };
    let _validator = BearerValidator::new(config).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(server.requests(Endpoint::Jwks), 1);
}

#[tokio::test]
async fn cached_keys_keep_working_while_the_provider_is_down() {
    let server = AuthServer::start().await.unwrap();
    let validator = BearerValidator::new(server.bearer_config()).await.unwrap();
    for availability in [Availability::Refusing, Availability::Failing] {
        server.set_availability(availability).await.unwrap();
        for key in [
            TestKey::RsaA,
            TestKey::EcP256,
            TestKey::EcP384,
            TestKey::Ed25519,
        ] {
            let token = server
                .mint(key, &format!("{key:?}@example.com"), &[], 300)
                .unwrap();
            validator
                .validate(&token)
                .await
                .unwrap_or_else(|e| panic!("{availability:?} {key:?}: {e}"));
        }
    }
    server.set_availability(Availability::Up).await.unwrap();
}

#[tokio::test]
async fn unknown_kids_during_an_outage_fail_cleanly_and_fetch_boundedly() {
    let server = AuthServer::start().await.unwrap();
    let mut config = server.bearer_config();
    // Long enough that a loaded machine cannot stretch one flood over two intervals.
    config.cache.unknown_kid_min_interval = Duration::from_millis(1500);
    let validator = BearerValidator::new(config).await.unwrap();
    let mut tokens: Vec<String> = (0..224).map(|n| bogus_kid_token(&server, n)).collect();
    let fourth = tokens.split_off(160);
    let third = tokens.split_off(128);
    let second = tokens.split_off(64);
    let first = tokens;
    assert_eq!(server.requests(Endpoint::Jwks), 1);

    // HTTP 500: the server sees every fetch, so the counter bounds them.
    server
        .set_availability(Availability::Failing)
        .await
        .unwrap();
    let tasks: Vec<_> = first
        .into_iter()
        .map(|token| {
            let validator = validator.clone();
            tokio::spawn(async move { validator.validate(&token).await })
        })
        .collect();
    for task in tasks {
        let error = task.await.unwrap().unwrap_err();
        assert!(matches!(error, AuthError::InvalidToken(_)), "{error:?}");
        assert_eq!(error.sip_status(), 401);
    }
    let after_flood = server.requests(Endpoint::Jwks);
    assert!(
        after_flood <= 2,
        "{after_flood} JWKS requests for 64 concurrent bogus kids"
    );

    // A second flood right away is absorbed by the rate limit.
    for token in &second {
        assert!(validator.validate(token).await.is_err());
    }
    assert_eq!(server.requests(Endpoint::Jwks), after_flood);

    // Once the interval has passed, one more fetch is allowed.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    for token in &third {
        assert!(validator.validate(token).await.is_err());
    }
    assert_eq!(server.requests(Endpoint::Jwks), after_flood + 1);

    // Connection refused: same clean error, fetch attempts still bounded.
    server
        .set_availability(Availability::Refusing)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let attempts_before = validator.jwks_fetch_count();
    for token in &fourth {
        let error = validator.validate(token).await.unwrap_err();
        assert!(matches!(error, AuthError::InvalidToken(_)), "{error:?}");
    }
    assert!(validator.jwks_fetch_count() <= attempts_before + 1);
    // Known keys still work.
    let good = server
        .mint(TestKey::EcP256, "alice@example.com", &[], 300)
        .unwrap();
    validator.validate(&good).await.unwrap();
}

#[tokio::test]
async fn provider_down_at_start_with_introspection_recovers() {
    let server = AuthServer::start().await.unwrap();
    server
        .set_availability(Availability::Refusing)
        .await
        .unwrap();
    let config = BearerConfig {
        introspection: Some(server.introspection_config(ClientAuthMethod::Basic)),
        ..server.bearer_config()
    };
    let validator = BearerValidator::new(config).await.unwrap();
    let token = server
        .mint(TestKey::RsaA, "alice@example.com", &[], 300)
        .unwrap();
    let error = validator.validate(&token).await.unwrap_err();
    assert!(
        matches!(error, AuthError::ProviderUnavailable(_)),
        "{error:?}"
    );
    assert_eq!(error.sip_status(), 503);
    assert_eq!(validator.cached_results(), 0, "outages are not cached");

    server.set_availability(Availability::Up).await.unwrap();
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(
        validator.validate(&token).await.unwrap().aor,
        "alice@example.com"
    );
}

#[tokio::test]
async fn dropping_the_validator_stops_background_refreshes() {
    let server = AuthServer::start().await.unwrap();
    server.set_jwks_max_age(Some(1));
    let mut config = server.bearer_config();
    config.cache.jwks_refresh_min = Duration::from_secs(1);
    let validator = BearerValidator::new(config).await.unwrap();
    drop(validator);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(server.requests(Endpoint::Jwks), 1);
}
