//! An in-process OAuth 2.0 authorization server for tests (feature `test-server`).
//!
//! [`AuthServer::start`] listens on `127.0.0.1:0` and serves
//! * `GET /.well-known/openid-configuration`: OpenID Connect discovery;
//! * `GET /jwks`: the published keys, with an optional `Cache-Control: max-age`;
//! * `POST /introspect`: RFC 7662 introspection of registered opaque tokens, requiring the client
//!   credentials [`CLIENT_ID`]/[`CLIENT_SECRET`] by `client_secret_basic` or `client_secret_post`.
//!
//! Tokens are signed with real keys: the fixed RSA, P-256, P-384 and Ed25519 test keys checked in under
//! `crates/auth/tests/keys/` (published in the repository, so never trusted outside tests). The server can
//! rotate its published keys, fail with HTTP 500, refuse connections outright, answer slowly, and counts
//! the requests each endpoint receives.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http_body_util::{BodyExt as _, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Map, Value};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::bearer::now_ms;
use crate::config::{BearerConfig, CacheConfig, ClientAuthMethod, IntrospectionConfig, KeySource};
use crate::error::AuthError;
use crate::jws::{Algorithm, SigningKey};

/// Audience of tokens minted by [`AuthServer::mint`].
pub const AUDIENCE: &str = "sip-edge";
/// Client id the introspection endpoint accepts.
pub const CLIENT_ID: &str = "sip-edge";
/// Client secret the introspection endpoint accepts (deliberately containing characters that need
/// form-encoding in `client_secret_basic`).
pub const CLIENT_SECRET: &str = "edge secret:with/odd+chars";

/// The fixed test keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TestKey {
    /// RSA 2048, first key (RS256/384/512, PS256).
    RsaA,
    /// RSA 2048, second key, for rotation tests.
    RsaB,
    /// EC P-256 (ES256).
    EcP256,
    /// EC P-384 (ES384).
    EcP384,
    /// Ed25519 (EdDSA).
    Ed25519,
}

impl TestKey {
    /// Every test key.
    pub const ALL: [TestKey; 5] = [
        TestKey::RsaA,
        TestKey::RsaB,
        TestKey::EcP256,
        TestKey::EcP384,
        TestKey::Ed25519,
    ];

    /// The key id under which the key is published.
    pub fn kid(self) -> &'static str {
        match self {
            TestKey::RsaA => "rsa-a",
            TestKey::RsaB => "rsa-b",
            TestKey::EcP256 => "ec-p256",
            TestKey::EcP384 => "ec-p384",
            TestKey::Ed25519 => "ed25519",
        }
    }

    /// The natural algorithm of the key.
    pub fn default_algorithm(self) -> Algorithm {
        match self {
            TestKey::RsaA | TestKey::RsaB => Algorithm::RS256,
            TestKey::EcP256 => Algorithm::ES256,
            TestKey::EcP384 => Algorithm::ES384,
            TestKey::Ed25519 => Algorithm::EdDSA,
        }
    }

    /// The private key, PKCS#8 PEM.
    pub fn private_pem(self) -> &'static str {
        match self {
            TestKey::RsaA => include_str!("../tests/keys/rsa-a.pem"),
            TestKey::RsaB => include_str!("../tests/keys/rsa-b.pem"),
            TestKey::EcP256 => include_str!("../tests/keys/ec-p256.pem"),
            TestKey::EcP384 => include_str!("../tests/keys/ec-p384.pem"),
            TestKey::Ed25519 => include_str!("../tests/keys/ed25519.pem"),
        }
    }

    /// The public key, SubjectPublicKeyInfo PEM.
    pub fn public_pem(self) -> &'static str {
        match self {
            TestKey::RsaA => include_str!("../tests/keys/rsa-a.pub.pem"),
            TestKey::RsaB => include_str!("../tests/keys/rsa-b.pub.pem"),
            TestKey::EcP256 => include_str!("../tests/keys/ec-p256.pub.pem"),
            TestKey::EcP384 => include_str!("../tests/keys/ec-p384.pub.pem"),
            TestKey::Ed25519 => include_str!("../tests/keys/ed25519.pub.pem"),
        }
    }

    fn jwk_json(self) -> &'static str {
        match self {
            TestKey::RsaA => include_str!("../tests/keys/rsa-a.jwk.json"),
            TestKey::RsaB => include_str!("../tests/keys/rsa-b.jwk.json"),
            TestKey::EcP256 => include_str!("../tests/keys/ec-p256.jwk.json"),
            TestKey::EcP384 => include_str!("../tests/keys/ec-p384.jwk.json"),
            TestKey::Ed25519 => include_str!("../tests/keys/ed25519.jwk.json"),
        }
    }

    /// The public JWK with `kid` and `use` set.
    pub fn jwk(self) -> Value {
        let mut jwk: Map<String, Value> = serde_json::from_str(self.jwk_json()).unwrap_or_default();
        jwk.insert("kid".to_owned(), Value::from(self.kid()));
        jwk.insert("use".to_owned(), Value::from("sig"));
        Value::Object(jwk)
    }

    /// A JWKS document holding the given keys.
    pub fn jwks(keys: &[TestKey]) -> String {
        json!({ "keys": keys.iter().map(|k| k.jwk()).collect::<Vec<_>>() }).to_string()
    }

    /// The private key, ready to sign.
    pub fn signing_key(self) -> Result<SigningKey, AuthError> {
        SigningKey::from_pkcs8_pem(self.private_pem())
            .map_err(|e| AuthError::Config(format!("test key {self:?}: {e}")))
    }
}

/// Signs `claims` with `key` using `alg`, naming `kid` in the header (no `kid` member when `None`).
pub fn sign(
    key: TestKey,
    alg: Algorithm,
    kid: Option<&str>,
    claims: &Map<String, Value>,
) -> Result<String, AuthError> {
    let mut header = Map::new();
    header.insert("typ".to_owned(), Value::from("JWT"));
    if let Some(kid) = kid {
        header.insert("kid".to_owned(), Value::from(kid));
    }
    key.signing_key()?
        .encode(alg, &header, claims)
        .map_err(|e| AuthError::Config(format!("signing with {key:?}: {e}")))
}

/// Signs `claims` under an arbitrary JOSE `header` (which should name `alg` consistently with `alg`), for
/// tokens with unusual headers (`typ`, `crit`, extra members).
pub fn sign_with_header(
    key: TestKey,
    alg: Algorithm,
    header: &Value,
    claims: &Map<String, Value>,
) -> Result<String, AuthError> {
    key.signing_key()?
        .encode_raw(alg, header, claims)
        .map_err(|e| AuthError::Config(format!("signing with {key:?}: {e}")))
}

/// Current Unix time in seconds.
pub fn unix_now() -> u64 {
    now_ms() / 1000
}

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Availability {
    /// Normal service.
    Up,
    /// Every request gets HTTP 500.
    Failing,
    /// The listening socket is closed and open connections are cut: connections are refused.
    Refusing,
}

/// Endpoints whose requests are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/.well-known/openid-configuration`
    Discovery,
    /// `/jwks`
    Jwks,
    /// `/introspect`
    Introspection,
}

struct State {
    issuer: String,
    published: Mutex<Vec<TestKey>>,
    jwks_max_age: Mutex<Option<u64>>,
    failing: Mutex<bool>,
    delay: Mutex<Duration>,
    opaque: Mutex<HashMap<String, Value>>,
    discovery: AtomicU64,
    jwks: AtomicU64,
    introspection: AtomicU64,
    introspection_basic: AtomicU64,
    introspection_post: AtomicU64,
    connections: Mutex<Vec<AbortHandle>>,
}

use locks::lock;

/// The running test authorization server. Stops when dropped.
pub struct AuthServer {
    address: SocketAddr,
    state: Arc<State>,
    /// Stops the accept loop; the loop confirms on the enclosed sender once the socket is closed.
    stop: Mutex<Option<oneshot::Sender<oneshot::Sender<()>>>>,
}

impl AuthServer {
    /// Starts the server on an ephemeral loopback port, publishing [`TestKey::ALL`] except
    /// [`TestKey::RsaB`] (kept back for rotation tests).
    pub async fn start() -> std::io::Result<AuthServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let state = Arc::new(State {
            issuer: format!("http://{address}"),
            published: Mutex::new(vec![
                TestKey::RsaA,
                TestKey::EcP256,
                TestKey::EcP384,
                TestKey::Ed25519,
            ]),
            jwks_max_age: Mutex::new(None),
            failing: Mutex::new(false),
            delay: Mutex::new(Duration::ZERO),
            opaque: Mutex::new(HashMap::new()),
            discovery: AtomicU64::new(0),
            jwks: AtomicU64::new(0),
            introspection: AtomicU64::new(0),
            introspection_basic: AtomicU64::new(0),
            introspection_post: AtomicU64::new(0),
            connections: Mutex::new(Vec::new()),
        });
        let server = AuthServer {
            address,
            state,
            stop: Mutex::new(None),
        };
        server.serve(listener);
        Ok(server)
    }

    fn serve(&self, listener: TcpListener) {
        let (stop_tx, mut stop_rx) = oneshot::channel::<oneshot::Sender<()>>();
        *lock(&self.stop) = Some(stop_tx);
        let state = Arc::clone(&self.state);
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    stopped = &mut stop_rx => {
                        // Close the listening socket before confirming, so the port is free again.
                        drop(listener);
                        if let Ok(confirm) = stopped {
                            let _ = confirm.send(());
                        }
                        break;
                    }
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                };
                let connection_state = Arc::clone(&state);
                let task = tokio::spawn(async move {
                    let service = service_fn(move |request| {
                        let state = Arc::clone(&connection_state);
                        async move { Ok::<_, Infallible>(handle(&state, request).await) }
                    });
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                let mut connections = lock(&state.connections);
                connections.retain(|c| !c.is_finished());
                connections.push(task.abort_handle());
            }
        });
    }

    /// The issuer URL, `http://127.0.0.1:PORT`.
    pub fn issuer(&self) -> String {
        self.state.issuer.clone()
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.state.issuer)
    }

    /// The discovery document URL.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.state.issuer)
    }

    /// The introspection endpoint URL.
    pub fn introspection_url(&self) -> String {
        format!("{}/introspect", self.state.issuer)
    }

    /// A validator configuration trusting this server: JWKS by URL, issuer and audience pinned, and a
    /// cache tuned for tests (unknown-kid refetches allowed every 200 ms, 1 s HTTP timeout).
    pub fn bearer_config(&self) -> BearerConfig {
        BearerConfig {
            issuers: vec![self.issuer()],
            audiences: vec![AUDIENCE.to_owned()],
            jwks: Some(KeySource::Url(self.jwks_url())),
            cache: CacheConfig {
                unknown_kid_min_interval: Duration::from_millis(200),
                http_timeout: Duration::from_secs(1),
                ..CacheConfig::default()
            },
            ..BearerConfig::default()
        }
    }

    /// Introspection client settings for this server.
    pub fn introspection_config(&self, auth_method: ClientAuthMethod) -> IntrospectionConfig {
        IntrospectionConfig {
            url: self.introspection_url(),
            client_id: CLIENT_ID.to_owned(),
            client_secret: CLIENT_SECRET.to_owned(),
            auth_method,
        }
    }

    /// Replaces the published key set (key rotation).
    pub fn publish(&self, keys: &[TestKey]) {
        *lock(&self.state.published) = keys.to_vec();
    }

    /// Sets the `Cache-Control: max-age` of JWKS responses (`None`: no header).
    pub fn set_jwks_max_age(&self, seconds: Option<u64>) {
        *lock(&self.state.jwks_max_age) = seconds;
    }

    /// Delays every response by `delay` (to exercise client timeouts).
    pub fn set_delay(&self, delay: Duration) {
        *lock(&self.state.delay) = delay;
    }

    /// Changes availability. Coming back from [`Availability::Refusing`] binds the same port again.
    pub async fn set_availability(&self, availability: Availability) -> std::io::Result<()> {
        *lock(&self.state.failing) = availability == Availability::Failing;
        let listening = lock(&self.stop).is_some();
        match availability {
            Availability::Refusing if listening => {
                let stop = lock(&self.stop).take();
                if let Some(stop) = stop {
                    let (confirm_tx, confirm_rx) = oneshot::channel();
                    if stop.send(confirm_tx).is_ok() {
                        let _ = confirm_rx.await;
                    }
                }
                let connections: Vec<AbortHandle> =
                    lock(&self.state.connections).drain(..).collect();
                for connection in connections {
                    connection.abort();
                }
            }
            Availability::Up | Availability::Failing if !listening => {
                let socket = TcpSocket::new_v4()?;
                socket.set_reuseaddr(true)?;
                socket.bind(self.address)?;
                let listener = socket.listen(128)?;
                self.serve(listener);
            }
            _ => {}
        }
        Ok(())
    }

    /// Registers an opaque token and the introspection response members it gets (`active: true` is added
    /// unless the members say otherwise).
    pub fn register_opaque(&self, token: &str, mut members: Map<String, Value>) {
        members.entry("active").or_insert(Value::Bool(true));
        lock(&self.state.opaque).insert(token.to_owned(), Value::Object(members));
    }

    /// Requests received by `endpoint` so far (including failed ones).
    pub fn requests(&self, endpoint: Endpoint) -> u64 {
        let counter = match endpoint {
            Endpoint::Discovery => &self.state.discovery,
            Endpoint::Jwks => &self.state.jwks,
            Endpoint::Introspection => &self.state.introspection,
        };
        counter.load(Ordering::SeqCst)
    }

    /// Introspection requests that authenticated with `method`.
    pub fn introspection_requests_by(&self, method: ClientAuthMethod) -> u64 {
        match method {
            ClientAuthMethod::Basic => self.state.introspection_basic.load(Ordering::SeqCst),
            ClientAuthMethod::Post => self.state.introspection_post.load(Ordering::SeqCst),
        }
    }

    /// Standard claims for a token from this server: `iss`, `aud`, `sub`, `scope`, `iat`, `nbf` and `exp`
    /// (`ttl_secs` from now). Adjust the map and pass it to [`sign`] for unusual tokens.
    pub fn claims(&self, subject: &str, scopes: &[&str], ttl_secs: u64) -> Map<String, Value> {
        let now = unix_now();
        let mut claims = Map::new();
        claims.insert("iss".to_owned(), Value::from(self.issuer()));
        claims.insert("aud".to_owned(), Value::from(AUDIENCE));
        claims.insert("sub".to_owned(), Value::from(subject));
        claims.insert("scope".to_owned(), Value::from(scopes.join(" ")));
        claims.insert("iat".to_owned(), Value::from(now));
        claims.insert("nbf".to_owned(), Value::from(now));
        claims.insert("exp".to_owned(), Value::from(now + ttl_secs));
        claims.insert("azp".to_owned(), Value::from("sip-phone"));
        claims
    }

    /// A token for `subject` signed with `key` under its default algorithm and its own `kid`.
    pub fn mint(
        &self,
        key: TestKey,
        subject: &str,
        scopes: &[&str],
        ttl_secs: u64,
    ) -> Result<String, AuthError> {
        sign(
            key,
            key.default_algorithm(),
            Some(key.kid()),
            &self.claims(subject, scopes, ttl_secs),
        )
    }
}

impl Drop for AuthServer {
    fn drop(&mut self) {
        if let Some(stop) = lock(&self.stop).take() {
            let (confirm, _) = oneshot::channel();
            let _ = stop.send(confirm);
        }
        for connection in lock(&self.state.connections).drain(..) {
            connection.abort();
        }
    }
}

fn respond(status: StatusCode, body: String, max_age: Option<u64>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    if let Some(max_age) = max_age {
        if let Ok(value) =
            hyper::header::HeaderValue::from_str(&format!("public, max-age={max_age}"))
        {
            headers.insert(hyper::header::CACHE_CONTROL, value);
        }
    }
    response
}

async fn handle(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let delay = *lock(&state.delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let endpoint = match (request.method(), request.uri().path()) {
        (&Method::GET, "/.well-known/openid-configuration") => Endpoint::Discovery,
        (&Method::GET, "/jwks") => Endpoint::Jwks,
        (&Method::POST, "/introspect") => Endpoint::Introspection,
        _ => return respond(StatusCode::NOT_FOUND, "{}".to_owned(), None),
    };
    let counter = match endpoint {
        Endpoint::Discovery => &state.discovery,
        Endpoint::Jwks => &state.jwks,
        Endpoint::Introspection => &state.introspection,
    };
    counter.fetch_add(1, Ordering::SeqCst);
    if *lock(&state.failing) {
        return respond(StatusCode::INTERNAL_SERVER_ERROR, "{}".to_owned(), None);
    }
    match endpoint {
        Endpoint::Discovery => {
            let issuer = &state.issuer;
            let document = json!({
                "issuer": issuer,
                "jwks_uri": format!("{issuer}/jwks"),
                "introspection_endpoint": format!("{issuer}/introspect"),
                "token_endpoint": format!("{issuer}/token"),
                "id_token_signing_alg_values_supported": ["RS256", "ES256", "ES384", "EdDSA"],
            });
            respond(StatusCode::OK, document.to_string(), None)
        }
        Endpoint::Jwks => {
            let keys = lock(&state.published).clone();
            let max_age = *lock(&state.jwks_max_age);
            respond(StatusCode::OK, TestKey::jwks(&keys), max_age)
        }
        Endpoint::Introspection => introspect(state, request).await,
    }
}

async fn introspect(state: &State, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let basic = request
        .headers()
        .get(hyper::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| STANDARD.decode(b64).ok())
        .and_then(|raw| String::from_utf8(raw).ok());
    let body = match request.into_body().collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => return respond(StatusCode::BAD_REQUEST, "{}".to_owned(), None),
    };
    let form: HashMap<String, String> = form_urlencoded::parse(&body).into_owned().collect();
    let decode = |s: &str| {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    let authenticated_by = if let Some(basic) = basic {
        let ok = basic.split_once(':').is_some_and(|(id, secret)| {
            decode(id).as_deref() == Some(CLIENT_ID)
                && decode(secret).as_deref() == Some(CLIENT_SECRET)
        });
        ok.then_some(ClientAuthMethod::Basic)
    } else {
        let ok = form.get("client_id").map(String::as_str) == Some(CLIENT_ID)
            && form.get("client_secret").map(String::as_str) == Some(CLIENT_SECRET);
        ok.then_some(ClientAuthMethod::Post)
    };
    match authenticated_by {
        Some(ClientAuthMethod::Basic) => state.introspection_basic.fetch_add(1, Ordering::SeqCst),
        Some(ClientAuthMethod::Post) => state.introspection_post.fetch_add(1, Ordering::SeqCst),
        None => {
            return respond(
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid_client"}).to_string(),
                None,
            )
        }
    };
    let answer = form
        .get("token")
        .and_then(|token| lock(&state.opaque).get(token).cloned())
        .unwrap_or_else(|| json!({"active": false}));
    respond(StatusCode::OK, answer.to_string(), None)
}
