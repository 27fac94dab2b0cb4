//! A real cluster on loopback: `redis-server`, the `presence` and
//! `registrar` services and N `edge` processes — or the single-process
//! `presence-node` on its in-memory backend.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use auth::dev::DevIssuer;
use store::testing::RedisServer;

use crate::free_port;
use crate::process::{wait_for_tcp, Process};

const STARTUP: Duration = Duration::from_secs(60);

/// A token issuer the cluster trusts: a real signing key whose JWKS is
/// written to a file the edges load.
pub struct Tokens {
    issuer: DevIssuer,
    pub jwks_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Tokens {
    pub fn new() -> Tokens {
        let issuer =
            DevIssuer::generate("https://issuer.test", "presence").expect("development issuer");
        let dir = tempfile::tempdir().expect("temporary directory");
        let jwks_path = dir.path().join("jwks.json");
        std::fs::write(&jwks_path, issuer.jwks_json()).expect("writing JWKS");
        Tokens {
            issuer,
            jwks_path,
            _dir: dir,
        }
    }

    /// A token for `aor` with the SIP scopes.
    pub fn token(&self, aor: &str) -> String {
        self.issuer
            .mint(aor, &["sip:register", "sip:presence"], 3600)
            .expect("minting a token")
    }

    /// A token for `aor` with only the given scopes.
    pub fn token_with_scopes(&self, aor: &str, scopes: &[&str]) -> String {
        self.issuer
            .mint(aor, scopes, 3600)
            .expect("minting a token")
    }

    /// A token for `subject` with `scopes`, valid for `ttl_secs`.
    pub fn token_with_ttl(&self, subject: &str, scopes: &[&str], ttl_secs: u64) -> String {
        self.issuer
            .mint(subject, scopes, ttl_secs)
            .expect("minting a token")
    }

    /// A token for an application calling the gRPC API with `scopes`
    /// (`presence:read`, `presence:write`, `presence:admin`).
    pub fn api_token(&self, scopes: &[&str]) -> String {
        self.token_with_scopes("app@example.com", scopes)
    }

    /// The token edges present to the services (`presence:internal`).
    pub fn internal_token(&self) -> String {
        self.token_with_scopes("edge@example.com", &["presence:internal"])
    }

    /// Presence and registrar flags that make their gRPC API require
    /// tokens of this issuer.
    pub fn service_auth_args(&self) -> Vec<String> {
        vec![
            "--auth-jwks-file".into(),
            self.jwks_path.display().to_string(),
            "--auth-issuer".into(),
            self.issuer.issuer().to_string(),
            "--auth-audience".into(),
            self.issuer.audience().to_string(),
        ]
    }

    /// Edge flags that make it trust this issuer.
    pub fn edge_args(&self) -> Vec<String> {
        vec![
            "--auth-jwks-file".into(),
            self.jwks_path.display().to_string(),
            "--auth-issuer".into(),
            self.issuer.issuer().to_string(),
            "--auth-audience".into(),
            self.issuer.audience().to_string(),
            "--auth-realm".into(),
            "presence-test".into(),
        ]
    }
}

impl Default for Tokens {
    fn default() -> Self {
        Self::new()
    }
}

/// A cluster of separate processes sharing one Redis.
pub struct Cluster {
    pub tokens: Tokens,
    pub redis: RedisServer,
    pub presence: Process,
    pub presence_port: u16,
    pub registrar: Process,
    pub registrar_port: u16,
    pub edges: Vec<Process>,
    pub edge_ports: Vec<u16>,
    /// Token edges present to the services, when their API is authenticated.
    pub service_token: Option<String>,
}

/// Presence and registrar flags common to the tests: short minimum
/// intervals and fast sweeps, so expiry can be tested in seconds.
fn service_args(listen_port: u16, redis_url: &str, min_expires_flag: &str) -> Vec<String> {
    vec![
        "--listen".into(),
        format!("127.0.0.1:{listen_port}"),
        "--redis-url".into(),
        redis_url.to_string(),
        min_expires_flag.into(),
        "1".into(),
    ]
}

impl Cluster {
    /// Starts Redis, one presence, one registrar and `edges` edges.
    pub fn start(edges: usize) -> Cluster {
        Cluster::start_with(edges, false)
    }

    /// Like [`Cluster::start`], but the services' gRPC API requires bearer
    /// tokens of `tokens` (see [`Tokens::api_token`]) and edges present a
    /// `presence:internal` token.
    pub fn start_authenticated(edges: usize) -> Cluster {
        Cluster::start_with(edges, true)
    }

    fn start_with(edges: usize, authenticated: bool) -> Cluster {
        let redis = RedisServer::start()
            .expect("redis-server (Debian package redis-server) must be installed");
        let tokens = Tokens::new();
        let presence_port = free_port();
        let registrar_port = free_port();
        let mut presence_args = service_args(presence_port, &redis.url(), "--min-expires");
        presence_args.extend(["--sweep-ms".into(), "200".into()]);
        let auth_args = if authenticated {
            tokens.service_auth_args()
        } else {
            Vec::new()
        };
        presence_args.extend(auth_args.iter().cloned());
        let presence = Process::spawn("presence", "presence", &presence_args, &[]);
        let mut registrar_args = service_args(registrar_port, &redis.url(), "--min-expires");
        registrar_args.extend(["--sweep-ms".into(), "200".into()]);
        registrar_args.extend(auth_args);
        let registrar = Process::spawn("registrar", "registrar", &registrar_args, &[]);
        wait_for_tcp(presence_port, STARTUP);
        wait_for_tcp(registrar_port, STARTUP);
        let service_token = authenticated.then(|| tokens.internal_token());
        let mut cluster = Cluster {
            service_token,
            tokens,
            redis,
            presence,
            presence_port,
            registrar,
            registrar_port,
            edges: Vec::new(),
            edge_ports: Vec::new(),
        };
        for i in 0..edges {
            cluster.add_edge(&format!("edge-{i}"));
        }
        cluster
    }

    /// Starts one more edge.
    pub fn add_edge(&mut self, id: &str) -> usize {
        let auth = self.tokens.edge_args();
        self.add_edge_with_auth(id, &auth)
    }

    /// Starts one more edge with `auth` as its authentication flags instead
    /// of those trusting [`Cluster::tokens`].
    pub fn add_edge_with_auth(&mut self, id: &str, auth: &[String]) -> usize {
        let port = free_port();
        let mut args = vec![
            "--udp".into(),
            format!("127.0.0.1:{port}"),
            "--tcp".into(),
            format!("127.0.0.1:{port}"),
            "--edge-id".into(),
            id.into(),
            "--presence-url".into(),
            format!("http://127.0.0.1:{}", self.presence_port),
            "--registrar-url".into(),
            format!("http://127.0.0.1:{}", self.registrar_port),
            "--redis-url".into(),
            self.redis.url(),
            "--rpc-timeout-ms".into(),
            "1000".into(),
        ];
        args.extend(auth.iter().cloned());
        if let Some(token) = &self.service_token {
            args.extend(["--service-token".into(), token.clone()]);
        }
        let process = Process::spawn(id, "edge", &args, &[]);
        wait_for_tcp(port, STARTUP);
        self.edges.push(process);
        self.edge_ports.push(port);
        self.edges.len() - 1
    }

    /// SIP address of edge `i`.
    pub fn edge(&self, i: usize) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.edge_ports[i]))
    }

    pub fn presence_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.presence_port)
    }

    pub fn registrar_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.registrar_port)
    }
}

/// The single-process node (`presence-node`) on its in-memory backend.
pub struct Node {
    pub tokens: Tokens,
    pub process: Process,
    pub sip_port: u16,
    pub presence_port: u16,
    pub registrar_port: u16,
}

impl Node {
    pub fn start() -> Node {
        Node::start_with(|_| Vec::new())
    }

    /// The node with extra command-line flags, which may use its tokens.
    pub fn start_with(extra_args: impl FnOnce(&Tokens) -> Vec<String>) -> Node {
        let tokens = Tokens::new();
        let sip_port = free_port();
        let presence_port = free_port();
        let registrar_port = free_port();
        let mut args = vec![
            "--udp".into(),
            format!("127.0.0.1:{sip_port}"),
            "--tcp".into(),
            format!("127.0.0.1:{sip_port}"),
            "--presence-listen".into(),
            format!("127.0.0.1:{presence_port}"),
            "--registrar-listen".into(),
            format!("127.0.0.1:{registrar_port}"),
        ];
        let extra = extra_args(&tokens);
        // Short intervals unless the test chooses its own.
        if !extra.iter().any(|a| a == "--min-expires") {
            args.extend(["--min-expires".into(), "1".into()]);
        }
        args.extend(tokens.edge_args());
        args.extend(extra);
        let process = Process::spawn("presence-node", "presence-node", &args, &[]);
        wait_for_tcp(sip_port, STARTUP);
        wait_for_tcp(presence_port, STARTUP);
        Node {
            tokens,
            process,
            sip_port,
            presence_port,
            registrar_port,
        }
    }

    pub fn sip(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.sip_port))
    }

    pub fn presence_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.presence_port)
    }

    pub fn registrar_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.registrar_port)
    }
}
