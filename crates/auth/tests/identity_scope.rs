//! Claim-to-identity mapping, scope policy and challenges.

use auth::testing::{sign, AuthServer, TestKey};
use auth::{
    Algorithm, AuthError, AuthMethod, BearerConfig, BearerValidator, Identity, ScopePolicy,
};
use serde_json::Value;

async fn validator_with(_server: &AuthServer, config: BearerConfig) -> BearerValidator {
    BearerValidator::new(config).await.unwrap()
}

fn token_with(server: &AuthServer, extra: &[(&str, Value)]) -> String {
    let mut claims = server.claims(
        "f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
        &["sip:presence"],
        300,
    );
    for (name, value) in extra {
        claims.insert((*name).to_owned(), value.clone());
    }
    sign(TestKey::Ed25519, Algorithm::EdDSA, Some("ed25519"), &claims).unwrap()
}

#[tokio::test]
async fn identity_from_each_claim_shape() {
    let server = AuthServer::start().await.unwrap();
    // (identity claim, default domain, claim present in the token, expected address of record)
    type Case<'a> = (&'a str, Option<&'a str>, (&'a str, Value), &'a str);
    let cases: [Case; 5] = [
        (
            "preferred_username",
            Some("Example.COM"),
            ("preferred_username", Value::from("alice")),
            "alice@example.com",
        ),
        (
            "preferred_username",
            None,
            ("preferred_username", Value::from("alice@Example.com")),
            "alice@example.com",
        ),
        (
            "sip_uri",
            None,
            ("sip_uri", Value::from("sip:Bob@Sip.Example.com")),
            "Bob@sip.example.com",
        ),
        (
            "sip_uri",
            None,
            (
                "sip_uri",
                Value::from("sips:carol@example.com;transport=tls"),
            ),
            "carol@example.com",
        ),
        (
            "email",
            None,
            ("email", Value::from("dave@mail.example.org")),
            "dave@mail.example.org",
        ),
    ];
    for (claim, default_domain, (name, value), expected) in cases {
        let validator = validator_with(
            &server,
            BearerConfig {
                identity_claim: claim.to_owned(),
                default_domain: default_domain.map(str::to_owned),
                ..server.bearer_config()
            },
        )
        .await;
        let token = token_with(&server, &[(name, value.clone())]);
        let identity = validator
            .validate(&token)
            .await
            .unwrap_or_else(|e| panic!("{claim}={value}: {e}"));
        assert_eq!(identity.aor, expected, "{claim}={value}");
        assert_eq!(identity.subject, "f81d4fae-7dec-11d0-a765-00a0c91e6bf6");
    }
}

#[tokio::test]
async fn sub_is_the_default_identity_claim() {
    let server = AuthServer::start().await.unwrap();
    let validator = validator_with(
        &server,
        BearerConfig {
            default_domain: Some("example.com".to_owned()),
            ..server.bearer_config()
        },
    )
    .await;
    let token = server.mint(TestKey::RsaA, "erin", &[], 300).unwrap();
    assert_eq!(
        validator.validate(&token).await.unwrap().aor,
        "erin@example.com"
    );
}

#[tokio::test]
async fn missing_or_unusable_identity_claim_is_refused() {
    let server = AuthServer::start().await.unwrap();
    let validator = validator_with(
        &server,
        BearerConfig {
            identity_claim: "sip_uri".to_owned(),
            ..server.bearer_config()
        },
    )
    .await;
    // No sip_uri claim.
    let token = token_with(&server, &[]);
    assert!(matches!(
        validator.validate(&token).await,
        Err(AuthError::InvalidToken(_))
    ));
    // Bare user without a default domain.
    let token = token_with(&server, &[("sip_uri", Value::from("frank"))]);
    assert!(matches!(
        validator.validate(&token).await,
        Err(AuthError::InvalidToken(_))
    ));
    // Header injection attempt.
    let token = token_with(
        &server,
        &[("sip_uri", Value::from("sip:a@b.com>\r\nVia: x"))],
    );
    assert!(matches!(
        validator.validate(&token).await,
        Err(AuthError::InvalidToken(_))
    ));
}

#[tokio::test]
async fn scopes_per_method() {
    let server = AuthServer::start().await.unwrap();
    let validator = validator_with(&server, server.bearer_config()).await;
    let register_only = server
        .mint(
            TestKey::RsaA,
            "alice@example.com",
            &["openid", "sip:register"],
            300,
        )
        .unwrap();
    let identity = validator.validate(&register_only).await.unwrap();
    validator.authorize(&identity, "REGISTER").unwrap();
    validator.authorize(&identity, "register").unwrap();
    validator.authorize(&identity, "OPTIONS").unwrap();
    for method in ["SUBSCRIBE", "PUBLISH"] {
        let error = validator.authorize(&identity, method).unwrap_err();
        assert_eq!(
            error,
            AuthError::InsufficientScope {
                required: "sip:presence".to_owned()
            }
        );
        assert_eq!(error.sip_status(), 403);
        let challenge = validator.challenge(Some(&error));
        assert_eq!(challenge.error, Some("insufficient_scope"));
        assert_eq!(challenge.scope.as_deref(), Some("sip:presence"));
    }

    // `scp` arrays count too.
    let mut claims = server.claims("alice@example.com", &[], 300);
    claims.insert("scp".into(), serde_json::json!(["sip:presence"]));
    let token = sign(TestKey::RsaA, Algorithm::RS256, Some("rsa-a"), &claims).unwrap();
    let identity = validator.validate(&token).await.unwrap();
    validator.authorize(&identity, "SUBSCRIBE").unwrap();
    assert!(validator.authorize(&identity, "REGISTER").is_err());
}

#[tokio::test]
async fn scope_policy_is_configurable_and_can_be_disabled() {
    let server = AuthServer::start().await.unwrap();
    let custom = ScopePolicy::empty()
        .with("REGISTER", "phone")
        .with("MESSAGE", "chat");
    let custom = ScopePolicy {
        default_scope: Some("sip".to_owned()),
        ..custom
    };
    let validator = validator_with(
        &server,
        BearerConfig {
            scopes: custom,
            ..server.bearer_config()
        },
    )
    .await;
    let token = server
        .mint(TestKey::RsaA, "alice@example.com", &["phone", "sip"], 300)
        .unwrap();
    let identity = validator.validate(&token).await.unwrap();
    validator.authorize(&identity, "REGISTER").unwrap();
    validator.authorize(&identity, "SUBSCRIBE").unwrap();
    assert_eq!(
        validator.authorize(&identity, "MESSAGE"),
        Err(AuthError::InsufficientScope {
            required: "chat".to_owned()
        })
    );

    let open = validator_with(
        &server,
        BearerConfig {
            scopes: ScopePolicy::disabled(),
            ..server.bearer_config()
        },
    )
    .await;
    let token = server
        .mint(TestKey::RsaA, "alice@example.com", &[], 300)
        .unwrap();
    let identity = open.validate(&token).await.unwrap();
    for method in ["REGISTER", "SUBSCRIBE", "PUBLISH"] {
        open.authorize(&identity, method).unwrap();
    }
}

#[test]
fn non_bearer_identities_skip_scope_checks() {
    let policy = ScopePolicy::default();
    let digest = Identity {
        aor: "alice@example.com".to_owned(),
        subject: "alice".to_owned(),
        scopes: Vec::new(),
        client_id: None,
        expires_at: None,
        method: AuthMethod::Digest,
    };
    policy.check(&digest, "REGISTER").unwrap();
    let bearer = Identity {
        method: AuthMethod::Bearer,
        ..digest
    };
    assert!(policy.check(&bearer, "REGISTER").is_err());
}

#[tokio::test]
async fn challenges_follow_rfc_6750_and_8898() {
    let server = AuthServer::start().await.unwrap();
    let validator = validator_with(
        &server,
        BearerConfig {
            realm: "example.com".to_owned(),
            authz_server: Some("https://idp.example.com/realms/sip".to_owned()),
            ..server.bearer_config()
        },
    )
    .await;
    let bare = validator.challenge(None);
    assert_eq!(bare.error, None);
    assert_eq!(
        bare.header_value(),
        "Bearer realm=\"example.com\", authz_server=\"https://idp.example.com/realms/sip\""
    );
    let expired = validator.challenge(Some(&AuthError::Expired));
    assert_eq!(expired.error, Some("invalid_token"));
    assert_eq!(
        expired.error_description.as_deref(),
        Some("the access token expired")
    );
    let malformed = validator.challenge(Some(&AuthError::Malformed("x\"y".to_owned())));
    assert_eq!(malformed.error, Some("invalid_request"));
    assert!(!malformed.header_value().contains("x\"y"));
    let for_register = validator.challenge_for_method("REGISTER", None);
    assert_eq!(for_register.scope.as_deref(), Some("sip:register"));
    assert_eq!(AuthError::Missing.sip_status(), 401);
    assert_eq!(AuthError::Malformed(String::new()).sip_status(), 400);
    assert_eq!(
        AuthError::ProviderUnavailable(String::new()).sip_status(),
        503
    );
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let introspection = auth::IntrospectionConfig {
        url: "https://idp.example.com/introspect".to_owned(),
        client_id: "sip-edge".to_owned(),
        client_secret: "s3cr3t-value".to_owned(),
        auth_method: auth::ClientAuthMethod::Basic,
    };
    let config = BearerConfig {
        introspection: Some(introspection),
        ..BearerConfig::default()
    };
    assert!(!format!("{config:?}").contains("s3cr3t-value"));
    let digest = auth::digest::DigestConfig {
        realm: "example.com".to_owned(),
        algorithms: Vec::new(),
        nonce_ttl_secs: 60,
        secret: b"s3cr3t-value".to_vec(),
    };
    assert!(!format!("{digest:?}").contains("115, 51"));
    let file = auth::digest::Ha1File::parse("alice:s3cr3t-value").unwrap();
    assert!(!format!("{file:?}").contains("s3cr3t"));
}
