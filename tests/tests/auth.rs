//! Bearer tokens (RFC 8898, RFC 6750) end to end: a real edge process
//! validating tokens from a real authorization server running in this test
//! (JWKS, OpenID Connect discovery, RFC 7662 introspection, real RSA, EC and
//! Ed25519 signatures), answered over real UDP.

use crate::auth_support::{
    bearer, publish, register, stored_subscriptions, subscribe, www_authenticate, Extra,
};
use auth::testing::{
    sign, AuthServer, Availability, Endpoint, TestKey, AUDIENCE, CLIENT_ID, CLIENT_SECRET,
};
use auth::{Algorithm, ClientAuthMethod};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use cluster_tests::cluster::Cluster;
use cluster_tests::ua::Ua;
use serde_json::{Map, Value};
use sip::{HeaderName, Response};
use tokio::task::block_in_place;

const REALM: &str = "example.com";
const BOTH_SCOPES: [&str; 2] = ["sip:register", "sip:presence"];

/// Standard claims for `subject`, made unique (`jti`) so that no two tokens
/// share a cached validation result.
fn claims(server: &AuthServer, subject: &str, scopes: &[&str]) -> Map<String, Value> {
    let mut claims = server.claims(subject, scopes, 600);
    claims.insert(
        "jti".into(),
        Value::from(hex::encode(rand::random::<[u8; 8]>())),
    );
    claims
}

/// A token signed by `key` with `alg`, naming the key's kid.
fn token(key: TestKey, alg: Algorithm, claims: &Map<String, Value>) -> String {
    sign(key, alg, Some(key.kid()), claims).expect("signing a test token")
}

/// A fresh token for `subject` with both SIP scopes, signed by `key` with
/// its natural algorithm.
fn fresh_token(server: &AuthServer, key: TestKey, subject: &str) -> String {
    token(
        key,
        key.default_algorithm(),
        &claims(server, subject, &BOTH_SCOPES),
    )
}

/// The Bearer challenge the edge should send for a method needing `scope`.
fn challenge(server: &AuthServer, scope: &str, error: Option<(&str, &str)>) -> String {
    let mut value = format!(
        "Bearer realm=\"{REALM}\", scope=\"{scope}\", authz_server=\"{}\"",
        server.issuer()
    );
    if let Some((code, description)) = error {
        value.push_str(&format!(
            ", error=\"{code}\", error_description=\"{description}\""
        ));
    }
    value
}

fn assert_refused(response: &Response, status: u16, challenges: &[String], what: &str) {
    assert_eq!(response.status(), status, "{what}");
    assert_eq!(www_authenticate(response), challenges, "{what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_tokens_get_the_rfc_8898_answers_and_bind_identity() {
    let server = AuthServer::start().await.expect("authorization server");
    let mut cluster = block_in_place(|| Cluster::start(0));
    let args: Vec<String> = vec![
        "--auth-jwks-url".into(),
        server.jwks_url(),
        "--auth-issuer".into(),
        server.issuer(),
        "--auth-audience".into(),
        AUDIENCE.into(),
        "--auth-realm".into(),
        REALM.into(),
        "--auth-authz-server".into(),
        server.issuer(),
    ];
    let edge = block_in_place(|| cluster.add_edge_with_auth("edge-bearer", &args));
    let mut alice = Ua::udp("alice@example.com", cluster.edge(edge)).await;
    let invalid = Some(("invalid_token", "the access token is invalid"));

    // No credentials: 401 with the challenge naming the method's scope and
    // the authorization server (RFC 8898 §3.2), and no error (RFC 6750 §3.1).
    let none = register(&mut alice, "alice@example.com", Vec::new()).await;
    assert_refused(
        &none,
        401,
        &[challenge(&server, "sip:register", None)],
        "REGISTER without credentials",
    );
    let to = none.headers().to().expect("To");
    assert!(to.tag().is_some(), "a final response carries a To tag");
    let none = publish(&mut alice, "alice@example.com", Vec::new()).await;
    assert_refused(
        &none,
        401,
        &[challenge(&server, "sip:presence", None)],
        "PUBLISH without credentials",
    );
    let none = subscribe(&mut alice, "bob@example.com", Vec::new()).await;
    assert_refused(
        &none,
        401,
        &[challenge(&server, "sip:presence", None)],
        "SUBSCRIBE without credentials",
    );

    // Another scheme only: the client is told which one this edge speaks.
    let basic: Extra = vec![(HeaderName::Authorization, "Basic YWxpY2U6c2VjcmV0".into())];
    let other = register(&mut alice, "alice@example.com", basic).await;
    assert_refused(
        &other,
        401,
        &[challenge(&server, "sip:register", None)],
        "Basic credentials",
    );

    // Every algorithm the provider signs with is verified.
    for (key, alg) in [
        (TestKey::RsaA, Algorithm::RS256),
        (TestKey::RsaA, Algorithm::RS384),
        (TestKey::RsaA, Algorithm::RS512),
        (TestKey::RsaA, Algorithm::PS256),
        (TestKey::EcP256, Algorithm::ES256),
        (TestKey::EcP384, Algorithm::ES384),
        (TestKey::Ed25519, Algorithm::EdDSA),
    ] {
        let good = token(
            key,
            alg,
            &claims(&server, "alice@example.com", &BOTH_SCOPES),
        );
        let ok = register(&mut alice, "alice@example.com", bearer(&good)).await;
        assert_eq!(ok.status(), 200, "REGISTER with an {alg:?} token");
    }

    // Tokens that must not pass: 401 error="invalid_token".
    let now = auth::testing::unix_now();
    let mut expired = claims(&server, "alice@example.com", &BOTH_SCOPES);
    expired.insert("exp".into(), Value::from(now - 120));
    expired.insert("iat".into(), Value::from(now - 900));
    expired.insert("nbf".into(), Value::from(now - 900));
    let expired = token(TestKey::RsaA, Algorithm::RS256, &expired);
    let refused = register(&mut alice, "alice@example.com", bearer(&expired)).await;
    assert_refused(
        &refused,
        401,
        &[challenge(
            &server,
            "sip:register",
            Some(("invalid_token", "the access token expired")),
        )],
        "expired token",
    );
    let mut cases: Vec<(&str, String)> = Vec::new();
    let mut wrong_issuer = claims(&server, "alice@example.com", &BOTH_SCOPES);
    wrong_issuer.insert("iss".into(), Value::from("https://elsewhere.example.net"));
    cases.push((
        "wrong issuer",
        token(TestKey::RsaA, Algorithm::RS256, &wrong_issuer),
    ));
    let mut wrong_audience = claims(&server, "alice@example.com", &BOTH_SCOPES);
    wrong_audience.insert("aud".into(), Value::from("some-other-api"));
    cases.push((
        "wrong audience",
        token(TestKey::RsaA, Algorithm::RS256, &wrong_audience),
    ));
    let mut not_yet = claims(&server, "alice@example.com", &BOTH_SCOPES);
    not_yet.insert("nbf".into(), Value::from(now + 600));
    cases.push((
        "not yet valid",
        token(TestKey::RsaA, Algorithm::RS256, &not_yet),
    ));
    let unsigned_claims = claims(&server, "alice@example.com", &BOTH_SCOPES);
    let unsigned = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(Value::Object(unsigned_claims).to_string())
    );
    cases.push(("alg none", unsigned));
    let genuine = fresh_token(&server, TestKey::RsaA, "alice@example.com");
    let (head, rest) = genuine.split_once('.').expect("JWT");
    let (_, signature) = rest.split_once('.').expect("JWT");
    let mut forged_claims = claims(&server, "alice@example.com", &BOTH_SCOPES);
    forged_claims.insert("sub".into(), Value::from("bob@example.com"));
    let forged = format!(
        "{head}.{}.{signature}",
        URL_SAFE_NO_PAD.encode(Value::Object(forged_claims).to_string())
    );
    cases.push(("claims changed after signing", forged));
    cases.push(("garbage", "not.a.token".into()));
    for (what, bad) in cases {
        let refused = register(&mut alice, "alice@example.com", bearer(&bad)).await;
        assert_refused(
            &refused,
            401,
            &[challenge(&server, "sip:register", invalid)],
            what,
        );
    }

    // A valid token without the method's scope: 403 insufficient_scope.
    let register_only = token(
        TestKey::RsaA,
        Algorithm::RS256,
        &claims(&server, "alice@example.com", &["sip:register"]),
    );
    assert_eq!(
        register(&mut alice, "alice@example.com", bearer(&register_only))
            .await
            .status(),
        200
    );
    let scoped = publish(&mut alice, "alice@example.com", bearer(&register_only)).await;
    assert_refused(
        &scoped,
        403,
        &[challenge(
            &server,
            "sip:presence",
            Some((
                "insufficient_scope",
                "the access token lacks the required scope",
            )),
        )],
        "PUBLISH with a token lacking sip:presence",
    );
    let scoped = subscribe(&mut alice, "bob@example.com", bearer(&register_only)).await;
    assert_eq!(
        scoped.status(),
        403,
        "SUBSCRIBE with a token lacking sip:presence"
    );

    // A malformed Authorization header: 400 with error="invalid_request".
    let malformed: Extra = vec![(HeaderName::Authorization, "Bearer two words".into())];
    let bad = register(&mut alice, "alice@example.com", malformed).await;
    assert_refused(
        &bad,
        400,
        &[challenge(
            &server,
            "sip:register",
            Some(("invalid_request", "malformed credentials")),
        )],
        "malformed Authorization",
    );

    // Identity binding: Alice's token registers and publishes only for Alice.
    let alice_token = fresh_token(&server, TestKey::RsaA, "alice@example.com");
    let bob_token = fresh_token(&server, TestKey::EcP256, "bob@example.com");
    let foreign = register(&mut alice, "bob@example.com", bearer(&alice_token)).await;
    assert_eq!(
        foreign.status(),
        403,
        "REGISTER of Bob's AOR with Alice's token"
    );
    assert!(www_authenticate(&foreign).is_empty());
    let foreign = publish(&mut alice, "bob@example.com", bearer(&alice_token)).await;
    assert_eq!(
        foreign.status(),
        403,
        "PUBLISH of Bob's presence with Alice's token"
    );
    assert_eq!(
        publish(&mut alice, "alice@example.com", bearer(&alice_token))
            .await
            .status(),
        200
    );

    // SUBSCRIBE: the watcher is the token's identity, whatever From claims.
    let mut mallory = Ua::udp("mallory@example.com", cluster.edge(edge)).await;
    let watched = subscribe(&mut mallory, "alice@example.com", bearer(&bob_token)).await;
    assert!(
        (200..300).contains(&watched.status()),
        "{}",
        watched.status()
    );
    let stored = stored_subscriptions(&cluster.redis.url(), "alice@example.com").await;
    assert_eq!(
        stored,
        vec![(
            "bob@example.com".to_string(),
            "sip:mallory@example.com".to_string()
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn algorithms_scopes_and_leeway_are_the_operators_choice() {
    let server = AuthServer::start().await.expect("authorization server");
    let mut cluster = block_in_place(|| Cluster::start(0));
    let common: Vec<String> = vec![
        "--auth-jwks-url".into(),
        server.jwks_url(),
        "--auth-issuer".into(),
        server.issuer(),
        "--auth-audience".into(),
        AUDIENCE.into(),
        "--auth-realm".into(),
        REALM.into(),
    ];
    let lenient = block_in_place(|| cluster.add_edge_with_auth("edge-defaults", &common));
    let mut strict_args = common.clone();
    strict_args.extend(
        [
            "--auth-algorithms",
            "ES256,EdDSA",
            "--auth-scopes",
            "REGISTER=voip,*=voip",
            "--auth-leeway-s",
            "0",
        ]
        .map(String::from),
    );
    let strict = block_in_place(|| cluster.add_edge_with_auth("edge-strict", &strict_args));
    let mut at_lenient = Ua::udp("alice@example.com", cluster.edge(lenient)).await;
    let mut at_strict = Ua::udp("alice@example.com", cluster.edge(strict)).await;

    // The algorithm allow-list: RS256 is refused where only ES256 and EdDSA
    // are allowed.
    let rs256 = token(
        TestKey::RsaA,
        Algorithm::RS256,
        &claims(&server, "alice@example.com", &["voip"]),
    );
    let refused = register(&mut at_strict, "alice@example.com", bearer(&rs256)).await;
    assert_refused(
        &refused,
        401,
        &[format!(
            "Bearer realm=\"{REALM}\", scope=\"voip\", error=\"invalid_token\", \
             error_description=\"the access token is invalid\""
        )],
        "RS256 outside the allow-list",
    );

    // Scopes per method: `voip` for everything on the strict edge.
    let voip = token(
        TestKey::EcP256,
        Algorithm::ES256,
        &claims(&server, "alice@example.com", &["voip"]),
    );
    assert_eq!(
        register(&mut at_strict, "alice@example.com", bearer(&voip))
            .await
            .status(),
        200
    );
    assert_eq!(
        publish(&mut at_strict, "alice@example.com", bearer(&voip))
            .await
            .status(),
        200
    );
    let sip_scopes = token(
        TestKey::EcP256,
        Algorithm::ES256,
        &claims(&server, "alice@example.com", &BOTH_SCOPES),
    );
    let scoped = subscribe(&mut at_strict, "bob@example.com", bearer(&sip_scopes)).await;
    assert_refused(
        &scoped,
        403,
        &[format!(
            "Bearer realm=\"{REALM}\", scope=\"voip\", error=\"insufficient_scope\", \
             error_description=\"the access token lacks the required scope\""
        )],
        "SUBSCRIBE without voip",
    );
    assert_eq!(
        register(&mut at_lenient, "alice@example.com", bearer(&sip_scopes))
            .await
            .status(),
        200,
        "the default policy wants sip:register"
    );

    // Leeway: ten seconds past `exp` is within the default 30 s, not 0 s.
    let now = auth::testing::unix_now();
    let mut just_expired = claims(&server, "alice@example.com", &["voip", "sip:register"]);
    just_expired.insert("exp".into(), Value::from(now - 10));
    let just_expired = token(TestKey::EcP256, Algorithm::ES256, &just_expired);
    assert_eq!(
        register(&mut at_lenient, "alice@example.com", bearer(&just_expired))
            .await
            .status(),
        200,
        "within the default leeway"
    );
    let refused = register(&mut at_strict, "alice@example.com", bearer(&just_expired)).await;
    assert_eq!(refused.status(), 401, "no leeway");
    assert!(
        www_authenticate(&refused)[0].contains("the access token expired"),
        "{:?}",
        www_authenticate(&refused)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_edge_follows_key_rotation_and_survives_provider_outages() {
    let server = AuthServer::start().await.expect("authorization server");
    let mut cluster = block_in_place(|| Cluster::start(0));
    // Keys by OpenID Connect discovery (the issuer is the discovered one),
    // opaque tokens by introspection with client_secret_post.
    let args: Vec<String> = vec![
        "--auth-discovery-url".into(),
        server.issuer(),
        "--auth-audience".into(),
        AUDIENCE.into(),
        "--auth-realm".into(),
        REALM.into(),
        "--auth-introspection-url".into(),
        server.introspection_url(),
        "--auth-introspection-client-id".into(),
        CLIENT_ID.into(),
        "--auth-introspection-client-secret".into(),
        CLIENT_SECRET.into(),
        "--auth-introspection-auth-method".into(),
        "post".into(),
    ];
    let edge = block_in_place(|| cluster.add_edge_with_auth("edge-rotation", &args));
    assert!(
        server.requests(Endpoint::Discovery) >= 1,
        "the edge read the discovery document"
    );
    let mut alice = Ua::udp("alice@example.com", cluster.edge(edge)).await;
    let invalid = vec![format!(
        "Bearer realm=\"{REALM}\", scope=\"sip:register\", error=\"invalid_token\", \
         error_description=\"the access token is invalid\""
    )];

    let first = fresh_token(&server, TestKey::RsaA, "alice@example.com");
    assert_eq!(
        register(&mut alice, "alice@example.com", bearer(&first))
            .await
            .status(),
        200
    );

    // Opaque tokens: active ones pass, inactive ones are invalid_token.
    let now = auth::testing::unix_now();
    let opaque = |sub: &str, active: bool| {
        let mut members = Map::new();
        members.insert("active".into(), Value::from(active));
        members.insert("sub".into(), Value::from(sub));
        members.insert("scope".into(), Value::from(BOTH_SCOPES.join(" ")));
        members.insert("exp".into(), Value::from(now + 600));
        members
    };
    server.register_opaque("opaque-alice-1", opaque("alice@example.com", true));
    server.register_opaque("opaque-alice-revoked", opaque("alice@example.com", false));
    server.register_opaque("opaque-alice-2", opaque("alice@example.com", true));
    assert_eq!(
        register(&mut alice, "alice@example.com", bearer("opaque-alice-1"))
            .await
            .status(),
        200
    );
    let revoked = register(
        &mut alice,
        "alice@example.com",
        bearer("opaque-alice-revoked"),
    )
    .await;
    assert_refused(&revoked, 401, &invalid, "inactive opaque token");
    assert!(server.introspection_requests_by(ClientAuthMethod::Post) >= 2);
    assert_eq!(server.introspection_requests_by(ClientAuthMethod::Basic), 0);

    // Rotation: the provider now publishes only RSA key B. A token naming
    // the new kid makes the running edge fetch the keys again; key A is
    // retired with it.
    server.publish(&[TestKey::RsaB]);
    let rotated = fresh_token(&server, TestKey::RsaB, "alice@example.com");
    assert_eq!(
        register(&mut alice, "alice@example.com", bearer(&rotated))
            .await
            .status(),
        200,
        "token signed with the new key"
    );
    let retired = fresh_token(&server, TestKey::RsaA, "alice@example.com");
    let refused = register(&mut alice, "alice@example.com", bearer(&retired)).await;
    assert_refused(&refused, 401, &invalid, "token signed with the retired key");

    // The provider goes down: known keys and cached results keep working,
    // an unknown kid is a clean 401, an opaque token nobody has seen is 503.
    server
        .set_availability(Availability::Refusing)
        .await
        .expect("stopping the authorization server");
    let during = fresh_token(&server, TestKey::RsaB, "alice@example.com");
    assert_eq!(
        register(&mut alice, "alice@example.com", bearer(&during))
            .await
            .status(),
        200,
        "new token, cached key, provider down"
    );
    assert_eq!(
        register(&mut alice, "alice@example.com", bearer("opaque-alice-1"))
            .await
            .status(),
        200,
        "cached introspection result, provider down"
    );
    let unknown = token(
        TestKey::EcP256,
        Algorithm::ES256,
        &claims(&server, "alice@example.com", &BOTH_SCOPES),
    );
    let refused = register(&mut alice, "alice@example.com", bearer(&unknown)).await;
    assert_refused(&refused, 401, &invalid, "unknown kid, provider down");
    let unseen = register(&mut alice, "alice@example.com", bearer("opaque-alice-2")).await;
    assert_eq!(unseen.status(), 503, "introspection impossible");
    assert_eq!(unseen.headers().get(HeaderName::RetryAfter), Some("5"));

    // The provider is back: outages were not cached.
    server
        .set_availability(Availability::Up)
        .await
        .expect("restarting the authorization server");
    assert_eq!(
        register(&mut alice, "alice@example.com", bearer("opaque-alice-2"))
            .await
            .status(),
        200,
        "provider back"
    );
}
