//! Result cache behaviour observable from outside.

use std::time::Duration;

use auth::testing::{unix_now, AuthServer, Endpoint, TestKey};
use auth::{AuthError, BearerConfig, BearerValidator, CacheConfig};

#[tokio::test]
async fn cached_identity_expires_at_token_exp() {
    let server = AuthServer::start().await.unwrap();
    let validator = BearerValidator::new(BearerConfig {
        leeway_secs: 0,
        ..server.bearer_config()
    })
    .await
    .unwrap();
    let token = server
        .mint(TestKey::Ed25519, "alice@example.com", &[], 2)
        .unwrap();
    let identity = validator.validate(&token).await.unwrap();
    let exp = identity.expires_at.unwrap();
    // Served from the cache until exp...
    validator.validate(&token).await.unwrap();
    while unix_now() < exp {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // ...and not a moment longer.
    assert_eq!(validator.validate(&token).await, Err(AuthError::Expired));
}

#[tokio::test]
async fn cache_is_bounded() {
    let server = AuthServer::start().await.unwrap();
    let validator = BearerValidator::new(BearerConfig {
        cache: CacheConfig {
            max_entries: 32,
            ..server.bearer_config().cache
        },
        ..server.bearer_config()
    })
    .await
    .unwrap();
    for n in 0..200 {
        let token = server
            .mint(TestKey::Ed25519, &format!("user{n}@example.com"), &[], 300)
            .unwrap();
        validator.validate(&token).await.unwrap();
    }
    assert!(
        validator.cached_results() <= 32,
        "{}",
        validator.cached_results()
    );
    assert!(validator.cached_results() > 0);
}

#[tokio::test]
async fn disabled_cache_still_validates() {
    let server = AuthServer::start().await.unwrap();
    let validator = BearerValidator::new(BearerConfig {
        cache: CacheConfig {
            max_entries: 0,
            ..server.bearer_config().cache
        },
        ..server.bearer_config()
    })
    .await
    .unwrap();
    let token = server
        .mint(TestKey::RsaA, "alice@example.com", &[], 300)
        .unwrap();
    validator.validate(&token).await.unwrap();
    validator.validate(&token).await.unwrap();
    assert_eq!(validator.cached_results(), 0);
    assert_eq!(server.requests(Endpoint::Jwks), 1);
}
