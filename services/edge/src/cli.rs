//! Command-line and environment configuration shared by the `edge` and
//! `presence-node` binaries.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use auth::digest::{DigestAlgorithm, DigestAuthenticator, DigestConfig};
use auth::peers::TrustedPeers;
use auth::{BearerConfig, BearerValidator, ScopePolicy};
use clap::Args;

use crate::authn::{Authenticator, Ha1Credentials, ModeRule, Policy, Schemes, HA1_RELOAD_INTERVAL};
use crate::EdgeConfig;

/// SIP listener and edge behaviour.
#[derive(Args, Debug, Clone)]
pub struct SipArgs {
    /// UDP listen addresses (repeat or comma-separate).
    #[arg(
        long = "udp",
        env = "SIP_UDP",
        value_delimiter = ',',
        default_value = "127.0.0.1:5060"
    )]
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses (repeat or comma-separate).
    #[arg(
        long = "tcp",
        env = "SIP_TCP",
        value_delimiter = ',',
        default_value = "127.0.0.1:5060"
    )]
    pub tcp: Vec<SocketAddr>,
    /// Host written in Via and Contact of what the edge sends (defaults to
    /// the first listen address; set it behind NAT or in Kubernetes).
    #[arg(long, env = "SIP_ADVERTISED_HOST")]
    pub advertised_host: Option<String>,
    /// Name of this edge in the cluster (defaults to the host name).
    #[arg(long, env = "EDGE_ID")]
    pub edge_id: Option<String>,
    /// Deadline of every gRPC call to the services (milliseconds).
    #[arg(long, env = "EDGE_RPC_TIMEOUT_MS", default_value_t = 2000)]
    pub rpc_timeout_ms: u64,
    /// Shortest interval between two NOTIFYs of one dialog (milliseconds);
    /// changes in between are coalesced, the latest state winning.
    #[arg(long, env = "EDGE_NOTIFY_MIN_INTERVAL_MS", default_value_t = 0)]
    pub notify_min_interval_ms: u64,
    /// Most concurrent stream connections (TCP, TLS, WS and WSS together).
    #[arg(long, env = "EDGE_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: usize,
    /// Most concurrent stream connections from one source address (an IPv6
    /// source counts per /64); 0: no cap per source. Raise it for a NAT or
    /// SBC carrying many clients over one address.
    #[arg(long, env = "EDGE_MAX_CONNECTIONS_PER_SOURCE", default_value_t = 32)]
    pub max_connections_per_source: usize,
    /// Most SUBSCRIBE dialogs this edge holds from one source address (an
    /// IPv6 source counts per /64); 0: no cap. A new SUBSCRIBE beyond it
    /// gets 503 with Retry-After. Raise it for an SBC or a load generator
    /// carrying more watchers over one address.
    #[arg(
        long,
        env = "EDGE_MAX_SUBSCRIPTIONS_PER_SOURCE",
        default_value_t = 10_000
    )]
    pub max_subscriptions_per_source: usize,
    /// Lease length (milliseconds): an edge silent this long counts as gone
    /// and its dialogs are continued by the others. Renewed every third.
    #[arg(long, env = "EDGE_LEASE_TTL_MS", default_value_t = 1500)]
    pub lease_ttl_ms: u64,
    /// How often to look for dialogs of gone edges (milliseconds).
    #[arg(long, env = "EDGE_CLAIM_INTERVAL_MS", default_value_t = 250)]
    pub claim_interval_ms: u64,
    /// On SIGTERM, how long the edge keeps answering requests before it
    /// closes its sockets (milliseconds); its dialogs move at once.
    #[arg(long, env = "EDGE_DRAIN_GRACE_MS", default_value_t = 5000)]
    pub drain_grace_ms: u64,
}

impl SipArgs {
    /// The edge configuration these arguments describe.
    pub fn to_config(&self, presence_url: String, registrar_url: String) -> EdgeConfig {
        EdgeConfig {
            edge_id: self.edge_id.clone().unwrap_or_else(default_edge_id),
            udp: self.udp.clone(),
            tcp: self.tcp.clone(),
            advertised_host: self.advertised_host.clone(),
            presence_url,
            registrar_url,
            rpc_timeout: Duration::from_millis(self.rpc_timeout_ms),
            notify_min_interval: Duration::from_millis(self.notify_min_interval_ms),
            max_connections: self.max_connections,
            max_connections_per_source: self.max_connections_per_source,
            max_subscriptions_per_source: self.max_subscriptions_per_source,
            lease_ttl: Duration::from_millis(self.lease_ttl_ms.max(300)),
            claim_interval: Duration::from_millis(self.claim_interval_ms.max(100)),
            drain_grace: Duration::from_millis(self.drain_grace_ms),
            ..EdgeConfig::default()
        }
    }
}

/// The host name plus a random suffix: a restarted edge is a new owner,
/// so the dialogs of its previous life are claimed like any gone edge's.
fn default_edge_id() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "edge".into());
    format!("{host}-{}", hex::encode(rand::random::<[u8; 4]>()))
}

/// TLS, WebSocket and stream-transport flags, and the RFC 3261 timers.
#[derive(Args, Debug, Clone)]
pub struct TransportArgs {
    /// TLS listen addresses (repeat or comma-separate; none by default).
    #[arg(long = "tls", env = "SIP_TLS", value_delimiter = ',')]
    pub tls: Vec<SocketAddr>,
    /// WebSocket (RFC 7118, subprotocol `sip`) listen addresses.
    #[arg(long = "ws", env = "SIP_WS", value_delimiter = ',')]
    pub ws: Vec<SocketAddr>,
    /// Secure WebSocket listen addresses (uses the TLS certificate).
    #[arg(long = "wss", env = "SIP_WSS", value_delimiter = ',')]
    pub wss: Vec<SocketAddr>,
    /// Web origins allowed to open a WebSocket, e.g. `https://app.example.com`
    /// (comma-separated; none: any). Browser upgrades from other origins get
    /// 403; clients sending no Origin are not affected.
    #[arg(
        long = "ws-allowed-origin",
        env = "SIP_WS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub ws_allowed_origins: Vec<String>,
    /// PEM certificate chain (leaf first) of the TLS and WSS listeners.
    #[arg(long, env = "SIP_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of that certificate.
    #[arg(long, env = "SIP_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates to verify client certificates against (checked
    /// when presented).
    #[arg(long, env = "SIP_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
    /// Refuse TLS clients without a valid certificate (needs --tls-client-ca).
    #[arg(long, env = "SIP_TLS_REQUIRE_CLIENT_CERT", default_value_t = false)]
    pub tls_require_client_cert: bool,
    /// Close a stream connection after this many seconds without a message
    /// or keep-alive.
    #[arg(long, env = "EDGE_IDLE_TIMEOUT_S", default_value_t = 600)]
    pub idle_timeout_s: u64,
    /// A stream message must arrive whole within this many milliseconds of
    /// its first byte (slow-loris defence; also the TLS and WebSocket
    /// handshake deadline).
    #[arg(long, env = "EDGE_MESSAGE_TIMEOUT_MS", default_value_t = 10_000)]
    pub message_timeout_ms: u64,
    /// A stream connection must deliver a whole SIP message within this
    /// many milliseconds of opening (after the TLS handshake or WebSocket
    /// upgrade); CRLF keep-alives do not count.
    #[arg(long, env = "EDGE_FIRST_MESSAGE_TIMEOUT_MS", default_value_t = 10_000)]
    pub first_message_timeout_ms: u64,
    /// Receive loops per UDP socket, each reading and handling datagrams
    /// on its own (0, the default: one per core). One loop keeps all UDP
    /// work on one core, however many the runtime has.
    #[arg(long, env = "EDGE_UDP_RECEIVERS", default_value_t = 0)]
    pub udp_receivers: usize,
    /// Requests per second allowed from one source address (IPv6: per
    /// /64); 0, the default, is no limit (one address may carry a whole
    /// site). Over it: 503 with Retry-After.
    #[arg(long, env = "EDGE_RATE_PER_SOURCE", default_value_t = 0.0)]
    pub rate_per_source: f64,
    /// Burst allowed from one source above its rate.
    #[arg(long, env = "EDGE_BURST_PER_SOURCE", default_value_t = 2_000.0)]
    pub burst_per_source: f64,
    /// Requests per second allowed from one identity (the From
    /// address-of-record); 0: no limit. Over it: 503 with Retry-After.
    #[arg(long, env = "EDGE_RATE_PER_IDENTITY", default_value_t = crate::limits::IDENTITY_RATE)]
    pub rate_per_identity: f64,
    /// Burst allowed from one identity above its rate.
    #[arg(long, env = "EDGE_BURST_PER_IDENTITY", default_value_t = crate::limits::IDENTITY_BURST)]
    pub burst_per_identity: f64,
    /// Source networks whose requests are answered 403 (CIDR or address;
    /// repeat or comma-separate).
    #[arg(
        long = "block-source",
        env = "EDGE_BLOCK_SOURCES",
        value_delimiter = ','
    )]
    pub block_sources: Vec<String>,
    /// Answer every UDP request at its source port, as if it carried
    /// `rport` (phones behind NAT that do not ask for it).
    #[arg(long, env = "EDGE_FORCE_RPORT", default_value_t = false)]
    pub force_rport: bool,
    /// RFC 3261 T1, the round-trip estimate (ms): NOTIFY retransmissions
    /// over UDP start at T1, and a NOTIFY times out after 64·T1.
    #[arg(long, env = "SIP_T1_MS", default_value_t = 500)]
    pub t1_ms: u64,
    /// RFC 3261 T2, the longest retransmission interval (ms).
    #[arg(long, env = "SIP_T2_MS", default_value_t = 4000)]
    pub t2_ms: u64,
    /// Largest SIP message accepted, in bytes; larger ones get 413 on
    /// stream transports and 513 on UDP.
    #[arg(long, env = "SIP_MAX_MESSAGE_BYTES", default_value_t = 65_536)]
    pub max_message_bytes: usize,
}

impl TransportArgs {
    /// Adds these settings to an edge configuration.
    pub fn apply(&self, config: &mut EdgeConfig) -> anyhow::Result<()> {
        if self.t1_ms == 0 || self.t2_ms < self.t1_ms {
            anyhow::bail!(
                "SIP timers need 0 < T1 <= T2 (got T1 = {} ms, T2 = {} ms)",
                self.t1_ms,
                self.t2_ms
            );
        }
        if self.message_timeout_ms == 0 || self.idle_timeout_s == 0 {
            anyhow::bail!("--message-timeout-ms and --idle-timeout-s must be positive");
        }
        config.tls = self.tls.clone();
        config.ws = self.ws.clone();
        config.wss = self.wss.clone();
        config.ws_allowed_origins = self.ws_allowed_origins.clone();
        config.tls_settings = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crate::transport::TlsSettings {
                cert_chain: cert.clone(),
                key: key.clone(),
                client_ca: self.tls_client_ca.clone(),
                require_client_cert: self.tls_require_client_cert,
            }),
            (None, None) => None,
            _ => anyhow::bail!("--tls-cert and --tls-key go together"),
        };
        if (!config.tls.is_empty() || !config.wss.is_empty()) && config.tls_settings.is_none() {
            anyhow::bail!("--tls and --wss listeners need --tls-cert and --tls-key");
        }
        config.idle_timeout = Duration::from_secs(self.idle_timeout_s);
        config.message_timeout = Duration::from_millis(self.message_timeout_ms);
        if self.first_message_timeout_ms == 0 {
            anyhow::bail!("--first-message-timeout-ms must be positive");
        }
        config.first_message_timeout = Duration::from_millis(self.first_message_timeout_ms);
        if self.udp_receivers > 0 {
            config.udp_receivers = self.udp_receivers;
        }
        for (name, value) in [
            ("--rate-per-source", self.rate_per_source),
            ("--burst-per-source", self.burst_per_source),
            ("--rate-per-identity", self.rate_per_identity),
            ("--burst-per-identity", self.burst_per_identity),
        ] {
            if !value.is_finite() || value < 0.0 {
                anyhow::bail!("{name} must be a number of requests, 0 or more (got {value})");
            }
        }
        config.rate_limits = crate::limits::RateLimits {
            per_source: crate::limits::Rate::new(self.rate_per_source, self.burst_per_source),
            per_identity: crate::limits::Rate::new(self.rate_per_identity, self.burst_per_identity),
            blocked: TrustedPeers::new(&self.block_sources).map_err(|_| {
                anyhow::anyhow!(
                    "--block-source takes CIDR blocks or addresses (got {:?})",
                    self.block_sources
                )
            })?,
            ..config.rate_limits.clone()
        };
        config.force_rport = self.force_rport;
        config.t1 = Duration::from_millis(self.t1_ms);
        config.t2 = Duration::from_millis(self.t2_ms);
        if self.max_message_bytes < 1024 {
            anyhow::bail!("--max-message-bytes must be at least 1024");
        }
        config.limits.max_message = self.max_message_bytes;
        config.limits.max_body = config.limits.max_body.min(self.max_message_bytes);
        Ok(())
    }
}

/// How requests are authenticated: bearer tokens (RFC 8898), Digest
/// (RFC 2617, RFC 8760), trusted peers (RFC 3325) or, for experiments,
/// nothing. See `docs/authentication.md`.
#[derive(Args, Debug, Clone)]
pub struct AuthArgs {
    /// Credentials accepted from every source: `bearer`, `digest` or both
    /// (comma-separated); `deny` accepts none, so only trusted peers get in.
    #[arg(
        long,
        env = "AUTH_MODE",
        value_delimiter = ',',
        default_value = "bearer"
    )]
    pub auth_mode: Vec<String>,
    /// Per source network and/or transport: `SELECTOR=MODES`, e.g.
    /// `10.0.0.0/8=digest`, `udp=bearer+digest`, `tcp@192.0.2.0/24=deny`
    /// (repeat, or separate with `;`). The longest matching network wins,
    /// then a rule naming the transport.
    #[arg(long, env = "AUTH_MODE_FOR", value_delimiter = ';')]
    pub auth_mode_for: Vec<String>,
    /// Networks (CIDR or address) of proxies and SBCs whose
    /// P-Asserted-Identity is believed; ignored from everyone else.
    #[arg(long, env = "AUTH_TRUSTED_PEERS", value_delimiter = ',')]
    pub auth_trusted_peer: Vec<String>,
    /// The token provider: realm, keys, issuers, audiences, identity claim
    /// and introspection (the same flags as the gRPC servers').
    #[command(flatten)]
    pub bearer: grpc_auth::BearerArgs,
    /// Allowed JWS algorithms (default RS256,RS384,RS512,PS256,ES256,ES384,EdDSA);
    /// `none` and HMAC are always refused.
    #[arg(long, env = "AUTH_ALGORITHMS", value_delimiter = ',')]
    pub auth_algorithms: Vec<String>,
    /// Clock-skew tolerance for `exp`, `nbf` and `iat` (seconds).
    #[arg(long, env = "AUTH_LEEWAY_S", default_value_t = 30)]
    pub auth_leeway_s: u64,
    /// Scope each method needs, `METHOD=scope` comma-separated (`*` for
    /// every other method), or `none` to check no scope. Default
    /// REGISTER=sip:register,PUBLISH=sip:presence,SUBSCRIBE=sip:presence.
    #[arg(long, env = "AUTH_SCOPES", value_delimiter = ',')]
    pub auth_scopes: Vec<String>,
    /// Domain appended to a bare user name in the identity claim.
    #[arg(long, env = "AUTH_DEFAULT_DOMAIN")]
    pub auth_default_domain: Option<String>,
    /// How the introspection client authenticates: `basic`
    /// (client_secret_basic) or `post` (client_secret_post).
    #[arg(long, env = "AUTH_INTROSPECTION_AUTH_METHOD", default_value = "basic")]
    pub auth_introspection_auth_method: String,
    /// Authorization server advertised in challenges (RFC 8898 authz_server).
    #[arg(long, env = "AUTH_AUTHZ_SERVER")]
    pub auth_authz_server: Option<String>,
    /// Digest credentials: `user:realm:HA1[:ALGORITHM]` lines (or
    /// `user:password` for development); re-read when it changes.
    #[arg(long, env = "AUTH_DIGEST_HA1_FILE")]
    pub auth_digest_ha1_file: Option<PathBuf>,
    /// Digest realm; a user name without `@` belongs to this domain. Defaults
    /// to --auth-default-domain, else --auth-realm.
    #[arg(long, env = "AUTH_DIGEST_REALM")]
    pub auth_digest_realm: Option<String>,
    /// Digest algorithms offered, in this order (RFC 8760): `SHA-256`,
    /// `SHA-512-256`, `MD5`. MD5 alone by default: baresip 1.x (libre)
    /// answers no challenge at all when a 401 also offers another
    /// algorithm. `SHA-256,MD5` adds SHA-256 for phones that know it.
    #[arg(
        long,
        env = "AUTH_DIGEST_ALGORITHMS",
        value_delimiter = ',',
        default_value = "MD5"
    )]
    pub auth_digest_algorithms: Vec<String>,
    /// Lifetime of a Digest nonce (seconds); an older one gets `stale=true`.
    #[arg(long, env = "AUTH_DIGEST_NONCE_TTL_S", default_value_t = 300)]
    pub auth_digest_nonce_ttl_s: u64,
    /// Key signing Digest nonces; give every edge the same one so any edge
    /// accepts another's nonces (default: a random key per process).
    #[arg(long, env = "AUTH_DIGEST_SECRET", hide_env_values = true)]
    pub auth_digest_secret: Option<String>,
    /// Accept Digest credentials whose `uri` is not the Request-URI (sipp
    /// puts the server's address there); refused with 400 by default.
    #[arg(long, env = "AUTH_DIGEST_ALLOW_URI_MISMATCH", default_value_t = false)]
    pub auth_digest_allow_uri_mismatch: bool,
    /// Accept every request without authentication, believing the From
    /// header. For local experiments only.
    #[arg(long, env = "AUTH_DISABLED", default_value_t = false)]
    pub insecure_no_auth: bool,
}

impl AuthArgs {
    /// Whether a key source or introspection endpoint was configured.
    pub fn has_provider(&self) -> bool {
        self.bearer.has_provider()
    }

    /// The default schemes and the per-source rules.
    pub fn modes(&self) -> anyhow::Result<(Schemes, Vec<ModeRule>)> {
        let default = Schemes::parse_list(&self.auth_mode).context("--auth-mode")?;
        let rules = self
            .auth_mode_for
            .iter()
            .filter(|rule| !rule.trim().is_empty())
            .map(|rule| rule.parse::<ModeRule>())
            .collect::<Result<Vec<_>, _>>()
            .context("--auth-mode-for")?;
        Ok((default, rules))
    }

    /// Whether any source may present bearer tokens.
    pub fn uses_bearer(&self) -> anyhow::Result<bool> {
        let (default, rules) = self.modes()?;
        Ok(!self.insecure_no_auth && (default.bearer || rules.iter().any(|r| r.schemes.bearer)))
    }

    fn scope_policy(&self) -> anyhow::Result<ScopePolicy> {
        let items: Vec<&str> = self
            .auth_scopes
            .iter()
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .collect();
        match items.as_slice() {
            [] => return Ok(ScopePolicy::default()),
            [only] if only.eq_ignore_ascii_case("none") => return Ok(ScopePolicy::disabled()),
            _ => {}
        }
        let mut policy = ScopePolicy::empty();
        for item in items {
            let (method, scope) = item
                .split_once('=')
                .with_context(|| format!("--auth-scopes: {item:?} is not METHOD=scope"))?;
            let (method, scope) = (method.trim(), scope.trim());
            if method.is_empty() || scope.is_empty() {
                anyhow::bail!("--auth-scopes: {item:?} is not METHOD=scope");
            }
            if method == "*" {
                policy.default_scope = Some(scope.to_owned());
            } else {
                policy = policy.with(method, scope);
            }
        }
        Ok(policy)
    }

    /// The bearer configuration; `dev` supplies the keys, issuer and
    /// audience when no provider is configured (the single-process node's
    /// development issuer).
    pub fn bearer_config(&self, dev: Option<BearerConfig>) -> anyhow::Result<BearerConfig> {
        let algorithms = if self.auth_algorithms.is_empty() {
            BearerConfig::default().algorithms
        } else {
            self.auth_algorithms
                .iter()
                .map(|name| {
                    name.trim().parse::<auth::Algorithm>().map_err(|_| {
                        anyhow::anyhow!("--auth-algorithms: unknown algorithm {name:?}")
                    })
                })
                .collect::<anyhow::Result<Vec<_>>>()?
        };
        let auth_method = match self
            .auth_introspection_auth_method
            .to_ascii_lowercase()
            .as_str()
        {
            "basic" | "client_secret_basic" => auth::ClientAuthMethod::Basic,
            "post" | "client_secret_post" => auth::ClientAuthMethod::Post,
            other => anyhow::bail!(
                "--auth-introspection-auth-method: {other:?} is neither basic nor post"
            ),
        };
        let configured = BearerConfig {
            algorithms,
            leeway_secs: self.auth_leeway_s,
            default_domain: self.auth_default_domain.clone(),
            introspection: self.bearer.introspection(auth_method),
            scopes: self.scope_policy()?,
            authz_server: self.auth_authz_server.clone(),
            ..self.bearer.bearer_config()
        };
        Ok(match dev {
            Some(dev) if !self.has_provider() => BearerConfig {
                issuers: dev.issuers,
                audiences: dev.audiences,
                jwks: dev.jwks,
                ..configured
            },
            _ => configured,
        })
    }

    /// The Digest verifier, checking credentials from the HA1 file (which
    /// is watched for changes).
    fn digest(&self) -> anyhow::Result<DigestAuthenticator> {
        let path = self.auth_digest_ha1_file.as_ref().context(
            "Digest is accepted but no credentials are configured: set --auth-digest-ha1-file",
        )?;
        let credentials = Ha1Credentials::load(path)
            .with_context(|| format!("loading Digest credentials from {}", path.display()))?;
        credentials.watch(HA1_RELOAD_INTERVAL);
        let algorithms = self
            .auth_digest_algorithms
            .iter()
            .map(|name| {
                DigestAlgorithm::from_name(name.trim()).with_context(|| {
                    format!("--auth-digest-algorithms: unknown algorithm {name:?}")
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        if algorithms.is_empty() {
            anyhow::bail!("--auth-digest-algorithms is empty");
        }
        if self.auth_digest_nonce_ttl_s == 0 {
            anyhow::bail!("--auth-digest-nonce-ttl-s must be positive");
        }
        let secret = match &self.auth_digest_secret {
            Some(secret) if !secret.is_empty() => secret.as_bytes().to_vec(),
            _ => {
                tracing::warn!("no --auth-digest-secret: Digest nonces are signed with a key of this process only, so other edges will not accept them");
                rand::random::<[u8; 32]>().to_vec()
            }
        };
        let realm = self
            .auth_digest_realm
            .clone()
            .or_else(|| self.auth_default_domain.clone())
            .unwrap_or_else(|| self.bearer.auth_realm.clone());
        tracing::info!(
            %realm,
            users = credentials.users(),
            algorithms = ?algorithms.iter().map(|a| a.name()).collect::<Vec<_>>(),
            "Digest authentication enabled"
        );
        Ok(DigestAuthenticator::new(
            DigestConfig {
                realm,
                algorithms,
                nonce_ttl_secs: self.auth_digest_nonce_ttl_s,
                secret,
            },
            credentials,
        ))
    }

    /// The authenticator these arguments describe; `dev` as for
    /// [`AuthArgs::bearer_config`].
    pub async fn authenticator(&self, dev: Option<BearerConfig>) -> anyhow::Result<Authenticator> {
        if self.insecure_no_auth {
            tracing::warn!("AUTHENTICATION IS DISABLED: every request is accepted as its From header claims. Never run this way in production.");
            return Ok(Authenticator::insecure_no_auth());
        }
        let (default_schemes, rules) = self.modes()?;
        let every = || std::iter::once(default_schemes).chain(rules.iter().map(|r| r.schemes));
        let bearer = if every().any(|s| s.bearer) {
            let config = self.bearer_config(dev)?;
            if config.jwks.is_none() && config.introspection.is_none() {
                anyhow::bail!(
                    "bearer tokens are accepted but no token provider is configured: set --auth-jwks-file, --auth-jwks-url, --auth-discovery-url or --auth-introspection-url (or choose other modes with --auth-mode)"
                );
            }
            Some(
                BearerValidator::new_waiting_for_provider(config)
                    .await
                    .context("setting up bearer-token validation")?,
            )
        } else {
            if self.has_provider() {
                tracing::warn!("a token provider is configured but no source may use bearer tokens (--auth-mode, --auth-mode-for)");
            }
            None
        };
        let digest = if every().any(|s| s.digest) {
            Some(Arc::new(self.digest()?))
        } else {
            None
        };
        let trusted_peers =
            TrustedPeers::new(&self.auth_trusted_peer).context("--auth-trusted-peer")?;
        if trusted_peers.is_empty() && every().all(Schemes::is_deny) {
            tracing::warn!("every source is denied and no trusted peer is configured: no request can be authenticated");
        }
        tracing::info!(
            default = %default_schemes,
            rules = ?rules.iter().map(|r| r.to_string()).collect::<Vec<_>>(),
            trusted_peers = ?self.auth_trusted_peer,
            "authentication modes"
        );
        Ok(Authenticator::new(Policy {
            bearer,
            digest,
            default_schemes,
            rules,
            trusted_peers,
            digest_uri_must_match: !self.auth_digest_allow_uri_mismatch,
        })?)
    }
}
