//! The server layer and the client credentials, over real sockets: a tonic
//! server behind `ApiAuth`, tokens from a real signing key, and a token
//! endpoint speaking HTTP on loopback.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use auth::dev::DevIssuer;
use grpc_auth::{
    api_bearer_config, Access, AccessPolicy, ApiAuth, ClientCredentials, ServiceCredentials,
    TokenSource,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::Code;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

fn issuer() -> DevIssuer {
    DevIssuer::generate("https://issuer.test", "presence").expect("issuer")
}

async fn api_auth(issuer: &DevIssuer, policy: AccessPolicy) -> ApiAuth {
    let validator = auth::BearerValidator::new(api_bearer_config(issuer.bearer_config()))
        .await
        .expect("validator");
    ApiAuth::new(validator, policy)
}

fn headers(token: Option<&str>) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    if let Some(token) = token {
        map.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {token}").parse().expect("header"),
        );
    }
    map
}

fn policy() -> AccessPolicy {
    AccessPolicy::new().service(
        "presence.v1.Presence",
        &[
            ("GetPresence", Access::Read),
            ("SetPresence", Access::Write),
            ("Publish", Access::Internal),
        ],
    )
}

#[tokio::test]
async fn scopes_decide_each_rpc() {
    let issuer = issuer();
    let auth = api_auth(&issuer, policy()).await;
    let read = issuer.mint("crm", &["presence:read"], 600).expect("token");
    let write = issuer.mint("crm", &["presence:write"], 600).expect("token");
    let admin = issuer.mint("ops", &["presence:admin"], 600).expect("token");
    let internal = issuer
        .mint("edge-1", &["presence:internal"], 600)
        .expect("token");
    let sip_only = issuer
        .mint("alice@example.com", &["sip:presence"], 600)
        .expect("token");

    let get = "/presence.v1.Presence/GetPresence";
    let set = "/presence.v1.Presence/SetPresence";
    let publish = "/presence.v1.Presence/Publish";
    let unlisted = "/presence.v1.Presence/Future";

    let code = |r: Result<Option<grpc_auth::Caller>, Box<tonic::Status>>| match r {
        Ok(_) => Code::Ok,
        Err(status) => status.code(),
    };
    for (token, path, expected) in [
        (&read, get, Code::Ok),
        (&read, set, Code::PermissionDenied),
        (&write, get, Code::Ok),
        (&write, set, Code::Ok),
        (&write, publish, Code::PermissionDenied),
        (&admin, set, Code::Ok),
        (&admin, publish, Code::PermissionDenied),
        (&admin, unlisted, Code::Ok),
        (&write, unlisted, Code::PermissionDenied),
        (&internal, publish, Code::Ok),
        (&internal, get, Code::Ok),
        (&internal, set, Code::PermissionDenied),
        (&sip_only, get, Code::PermissionDenied),
    ] {
        let result = auth.check(path, &headers(Some(token))).await;
        assert_eq!(code(result), expected, "{path}");
    }

    // The caller is known to the RPC: a service subject needs no domain.
    let caller = auth.check(set, &headers(Some(&write))).await;
    let caller = caller.ok().flatten().expect("caller");
    assert_eq!(caller.identity.subject, "crm");
    assert!(caller.identity.has_scope("presence:write"));

    // No token, a bad token, an expired token.
    let missing = auth.check(get, &headers(None)).await.expect_err("refused");
    assert_eq!(missing.code(), Code::Unauthenticated);
    let challenge = missing
        .metadata()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(challenge.starts_with("Bearer realm="), "{challenge}");
    assert!(challenge.contains("scope=\"presence:read\""), "{challenge}");
    let garbage = auth
        .check(get, &headers(Some("not-a-token")))
        .await
        .expect_err("refused");
    assert_eq!(garbage.code(), Code::Unauthenticated);
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), "crm".into());
    claims.insert("scope".into(), "presence:read".into());
    claims.insert("exp".into(), 1_000_000.into());
    let expired = issuer.mint_claims(claims).expect("token");
    let expired = auth
        .check(get, &headers(Some(&expired)))
        .await
        .expect_err("refused");
    assert_eq!(expired.code(), Code::Unauthenticated);
    let denied = auth
        .check(set, &headers(Some(&read)))
        .await
        .expect_err("refused");
    let challenge = denied
        .metadata()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(challenge.contains("insufficient_scope"), "{challenge}");
    assert!(
        denied.message().contains("presence:write"),
        "{}",
        denied.message()
    );

    // Health and reflection need nothing; a disabled API checks nothing.
    assert!(auth
        .check("/grpc.health.v1.Health/Check", &headers(None))
        .await
        .is_ok());
    assert!(ApiAuth::disabled()
        .check(publish, &headers(None))
        .await
        .is_ok());
}

/// A gRPC round trip through the layer: the health service, declared
/// protected for the test, refuses a call without a token and serves one
/// with a token presented by `ServiceCredentials`.
#[tokio::test]
async fn the_layer_guards_a_real_server() {
    let issuer = issuer();
    let policy = AccessPolicy::new().service("grpc.health.v1.Health", &[("Check", Access::Read)]);
    let auth = api_auth(&issuer, policy).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let (_reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(auth.layer())
            .add_service(health)
            .serve_with_incoming(
                tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            ),
    );
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        .tcp_nodelay(true)
        .connect_lazy();

    let mut anonymous = HealthClient::new(channel.clone());
    let refused = anonymous
        .check(HealthCheckRequest::default())
        .await
        .expect_err("refused");
    assert_eq!(refused.code(), Code::Unauthenticated);

    let token = issuer.mint("crm", &["presence:read"], 600).expect("token");
    let credentials = ServiceCredentials::start(TokenSource::Static(token))
        .await
        .expect("credentials");
    let mut authorised = HealthClient::with_interceptor(channel.clone(), credentials);
    let served = authorised.check(HealthCheckRequest::default()).await;
    assert!(served.is_ok(), "{served:?}");

    let wrong = issuer.mint("crm", &["openid"], 600).expect("token");
    let credentials = ServiceCredentials::start(TokenSource::Static(wrong))
        .await
        .expect("credentials");
    let mut unscoped = HealthClient::with_interceptor(channel, credentials);
    let denied = unscoped
        .check(HealthCheckRequest::default())
        .await
        .expect_err("refused");
    assert_eq!(denied.code(), Code::PermissionDenied);
}

/// A token endpoint on loopback implementing the client credentials grant
/// for one client, minting tokens that live `lifetime` seconds.
async fn token_endpoint(issuer: Arc<DevIssuer>, lifetime: u64) -> (String, Arc<AtomicU64>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = listener.local_addr().expect("address");
    let issued = Arc::new(AtomicU64::new(0));
    let counter = issued.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let issuer = issuer.clone();
            let counter = counter.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                // Headers, then the form body (Content-Length bytes).
                loop {
                    let n = stream.read(&mut buffer).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    request.extend_from_slice(&buffer[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let text = String::from_utf8_lossy(&request).to_string();
                // client_secret_basic of "edge-1" / "s3cret: x" (form-encoded first).
                let expected_basic = "Basic ZWRnZS0xOnMzY3JldCUzQSt4";
                let authorised = text
                    .lines()
                    .any(|l| l.eq_ignore_ascii_case(&format!("authorization: {expected_basic}")));
                let grant = text.contains("grant_type=client_credentials")
                    && text.contains("scope=presence%3Ainternal");
                let (status, body) = if authorised && grant {
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    let token = issuer
                        .mint(&format!("edge-1-{n}"), &["presence:internal"], lifetime)
                        .expect("token");
                    (
                        "200 OK",
                        format!(
                            r#"{{"access_token":"{token}","token_type":"Bearer","expires_in":{lifetime}}}"#
                        ),
                    )
                } else {
                    (
                        "401 Unauthorized",
                        r#"{"error":"invalid_client"}"#.to_string(),
                    )
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (format!("http://{address}/token"), issued)
}

#[tokio::test]
async fn client_credentials_are_obtained_and_renewed_before_expiry() {
    let issuer = Arc::new(issuer());
    let (url, issued) = token_endpoint(issuer.clone(), 6).await;
    let grant = ClientCredentials {
        token_url: url.clone(),
        client_id: "edge-1".into(),
        client_secret: "s3cret: x".into(),
        scope: "presence:internal".into(),
        audience: None,
    };
    let credentials = ServiceCredentials::start(TokenSource::ClientCredentials(grant.clone()))
        .await
        .expect("first token");
    let first = credentials.current().expect("token");
    assert_eq!(issued.load(Ordering::SeqCst), 1);

    // The token is accepted by a server trusting the issuer.
    let auth = api_auth(&issuer, policy()).await;
    let mut map = http::HeaderMap::new();
    map.insert(
        http::header::AUTHORIZATION,
        first.to_str().expect("ascii").parse().expect("header"),
    );
    assert!(auth
        .check("/presence.v1.Presence/Publish", &map)
        .await
        .is_ok());

    // Renewed at 80 % of six seconds (at least five): a new token appears.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while credentials.current().as_ref() == Some(&first) {
        assert!(tokio::time::Instant::now() < deadline, "token not renewed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(issued.load(Ordering::SeqCst) >= 2);

    // Wrong credentials: the start fails with the server's refusal.
    let wrong = ClientCredentials {
        client_secret: "nope".into(),
        ..grant
    };
    let refused = ServiceCredentials::start(TokenSource::ClientCredentials(wrong)).await;
    assert!(
        matches!(
            refused,
            Err(grpc_auth::CredentialsError::Refused { status: 401, .. })
        ),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_token_file_is_followed() {
    let dir = tempfile::tempdir().expect("directory");
    let path = dir.path().join("token");
    std::fs::write(&path, "first-token\n").expect("write");
    let credentials = ServiceCredentials::start(TokenSource::File(path.clone()))
        .await
        .expect("credentials");
    let value = |c: &ServiceCredentials| {
        c.current()
            .and_then(|v| v.to_str().ok().map(str::to_string))
            .unwrap_or_default()
    };
    assert_eq!(value(&credentials), "Bearer first-token");
    std::fs::write(&path, "second-token").expect("write");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while value(&credentials) != "Bearer second-token" {
        assert!(tokio::time::Instant::now() < deadline, "file not re-read");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A file that disappears keeps the last token in use.
    std::fs::remove_file(&path).expect("remove");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(value(&credentials), "Bearer second-token");

    let missing = ServiceCredentials::start(TokenSource::File(dir.path().join("absent"))).await;
    assert!(matches!(
        missing,
        Err(grpc_auth::CredentialsError::File { .. })
    ));
}
