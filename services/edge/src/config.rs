//! Edge configuration, independent of how it was given (flags, environment,
//! tests).

use std::net::SocketAddr;
use std::time::Duration;

/// How an edge is set up.
#[derive(Clone, Debug)]
pub struct EdgeConfig {
    /// Unique name of this edge in the cluster (owner of its dialogs).
    pub edge_id: String,
    /// UDP listen addresses.
    pub udp: Vec<SocketAddr>,
    /// TCP listen addresses.
    pub tcp: Vec<SocketAddr>,
    /// TLS listen addresses.
    pub tls: Vec<SocketAddr>,
    /// WebSocket (RFC 7118) listen addresses.
    pub ws: Vec<SocketAddr>,
    /// Secure WebSocket listen addresses.
    pub wss: Vec<SocketAddr>,
    /// Browser origins allowed to open a WebSocket (empty: any). Upgrades
    /// without an Origin header (non-browser clients) are always allowed.
    pub ws_allowed_origins: Vec<String>,
    /// Certificate, key and client CA of the TLS and WSS listeners.
    pub tls_settings: Option<crate::transport::TlsSettings>,
    /// Host written in Via and Contact of what the edge sends; defaults to
    /// the listen address.
    pub advertised_host: Option<String>,
    /// gRPC endpoints of the presence and registrar services.
    pub presence_url: String,
    pub registrar_url: String,
    /// Deadline of every gRPC call.
    pub rpc_timeout: Duration,
    /// Limits applied to every incoming message.
    pub limits: sip::Limits,
    /// Largest UDP datagram accepted; larger ones are dropped and counted.
    pub max_datagram: usize,
    /// Receive loops per UDP socket. Each reads a datagram and handles it
    /// until it has to wait, so one loop keeps every UDP request's work on
    /// one core; several read the same socket concurrently.
    pub udp_receivers: usize,
    /// RFC 3261 timers: T1 (RTT estimate) and T2 (maximum retransmit interval).
    pub t1: Duration,
    pub t2: Duration,
    /// Shortest interval between two NOTIFYs of one dialog; state changes in
    /// between are coalesced (the latest wins).
    pub notify_min_interval: Duration,
    /// Most concurrent stream connections (TCP, TLS, WS and WSS together);
    /// further ones are refused.
    pub max_connections: usize,
    /// Most concurrent stream connections from one source (an IPv4
    /// address or an IPv6 /64); 0: no cap per source.
    pub max_connections_per_source: usize,
    /// Most SUBSCRIBE dialogs held from one source (an IPv4 address or an
    /// IPv6 /64, as for connections); a new SUBSCRIBE beyond it gets 503.
    /// Dialogs continued from another edge count but are never refused.
    /// 0: no cap.
    pub max_subscriptions_per_source: usize,
    /// A stream connection must deliver a whole SIP message within this
    /// time of opening (after the TLS handshake or WebSocket upgrade);
    /// keep-alives do not count.
    pub first_message_timeout: Duration,
    /// Request rate limits and the source block list.
    pub rate_limits: crate::limits::RateLimits,
    /// A stream connection idle this long is closed.
    pub idle_timeout: Duration,
    /// A message on a stream connection must arrive whole within this time
    /// of its first byte (also the TLS handshake and WebSocket upgrade
    /// deadline, and how long a write may stall).
    pub message_timeout: Duration,
    /// Answer UDP requests at their source port even without `rport`
    /// (RFC 3581 behaviour for every client, for phones behind NAT).
    pub force_rport: bool,
    /// Seconds advertised in Retry-After when a backend is unavailable.
    pub retry_after: u32,
    /// Length of this edge's lease, renewed every third of it; if it is not
    /// renewed for this long the edge counts as gone and other edges take
    /// over its dialogs.
    pub lease_ttl: Duration,
    /// How often the edge looks for dialogs of gone edges to claim.
    pub claim_interval: Duration,
    /// On shutdown (SIGTERM), how long the edge keeps answering requests
    /// before it closes its sockets; its dialogs are handed over at once.
    pub drain_grace: Duration,
    /// The bearer token presented to the services (`presence:internal`),
    /// when their gRPC API is authenticated.
    pub service_credentials: grpc_auth::ServiceCredentials,
    /// TLS for `https://` service URLs (CA, client certificate); the
    /// system's roots when `None`.
    pub services_tls: Option<tonic::transport::ClientTlsConfig>,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            edge_id: format!("edge-{}", std::process::id()),
            udp: Vec::new(),
            tcp: Vec::new(),
            tls: Vec::new(),
            ws: Vec::new(),
            wss: Vec::new(),
            ws_allowed_origins: Vec::new(),
            tls_settings: None,
            advertised_host: None,
            presence_url: "http://127.0.0.1:50051".into(),
            registrar_url: "http://127.0.0.1:50052".into(),
            rpc_timeout: Duration::from_secs(2),
            limits: sip::Limits::default(),
            max_datagram: 65_507,
            udp_receivers: std::thread::available_parallelism().map_or(1, |n| n.get()),
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            notify_min_interval: Duration::ZERO,
            max_connections: 10_000,
            max_connections_per_source: 32,
            max_subscriptions_per_source: 10_000,
            first_message_timeout: Duration::from_secs(10),
            rate_limits: crate::limits::RateLimits::default(),
            idle_timeout: Duration::from_secs(600),
            message_timeout: Duration::from_secs(10),
            force_rport: false,
            retry_after: 5,
            lease_ttl: Duration::from_millis(1500),
            claim_interval: Duration::from_millis(250),
            drain_grace: Duration::from_secs(5),
            service_credentials: grpc_auth::ServiceCredentials::none(),
            services_tls: None,
        }
    }
}
