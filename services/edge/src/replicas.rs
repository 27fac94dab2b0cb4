//! Client-side balancing over the replicas of one gRPC service.
//!
//! `--presence-url` and `--registrar-url` name one or more replicas,
//! comma-separated (`http://presence-0:50051,http://presence-1:50051`). A
//! host name is resolved again every [`RESOLVE_INTERVAL`], and every
//! address it resolves to is a replica: a Kubernetes headless service (one
//! record per ready pod) or a Docker network name is followed as replicas
//! come and go, with no proxy in between.
//!
//! Each call goes to the next replica in turn. A replica that cannot be
//! connected to is set aside for [`SET_ASIDE`] and the call goes to the next
//! one: a connection that was never made carried nothing, so this retry is
//! safe for every operation. A call that fails after it was sent is not
//! retried, because the replica may have applied it; the caller sees
//! `UNAVAILABLE` (SIP 503 with Retry-After) and the replica is set aside,
//! unless the call merely ran out of time: a slow replica is reachable.
//! The whole call, retries included, keeps the one deadline it was given.

use std::collections::HashSet;
use std::error::Error as StdErrorTrait;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tonic::body::Body;
use tonic::codegen::{http, BoxFuture, Service, StdError};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Status;

/// How often host names are resolved again.
pub const RESOLVE_INTERVAL: Duration = Duration::from_secs(2);

/// How long a replica that could not be reached is passed over (unless no
/// other replica is left).
pub const SET_ASIDE: Duration = Duration::from_secs(2);

/// A configuration error in a replica list.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    #[error("no URL given for the {0} service")]
    Empty(&'static str),
    #[error("invalid {service} URL {url:?}: {reason}")]
    InvalidUrl {
        service: &'static str,
        url: String,
        reason: String,
    },
}

/// One configured URL: a host (name or address) and port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    scheme: String,
    host: String,
    port: u16,
    /// The URL as configured, sent as the HTTP/2 authority.
    origin: http::Uri,
}

fn parse_targets(service: &'static str, urls: &str) -> Result<Vec<Target>, ReplicaError> {
    let mut targets = Vec::new();
    for url in urls.split(',').map(str::trim).filter(|u| !u.is_empty()) {
        let invalid = |reason: &str| ReplicaError::InvalidUrl {
            service,
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| invalid(&e.to_string()))?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_string(),
            _ => return Err(invalid("the scheme must be http or https")),
        };
        let host = uri
            .host()
            .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_string())
            .filter(|h| !h.is_empty())
            .ok_or_else(|| invalid("no host"))?;
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        targets.push(Target {
            scheme,
            host,
            port,
            origin: uri,
        });
    }
    if targets.is_empty() {
        return Err(ReplicaError::Empty(service));
    }
    Ok(targets)
}

struct Replica {
    addr: SocketAddr,
    /// Index of the configured URL this address came from.
    target: usize,
    channel: Channel,
    set_aside_until: Option<Instant>,
}

struct Shared {
    service: &'static str,
    targets: Vec<Target>,
    /// Used for `https://` targets, with the target's host as the name
    /// the certificate must carry.
    tls: ClientTlsConfig,
    timeout: Duration,
    connect_timeout: Duration,
    replicas: Mutex<Vec<Replica>>,
    /// Whether host names were resolved at least once.
    resolved: std::sync::atomic::AtomicBool,
    next: AtomicUsize,
}

/// The replicas of one service, usable as the transport of a generated
/// gRPC client (`PresenceClient<Replicas>`). Cloning is cheap.
#[derive(Clone)]
pub struct Replicas {
    shared: Arc<Shared>,
}

// Every critical section below leaves the list consistent.
use locks::lock;

impl Replicas {
    /// The replicas named by `urls` (comma-separated). Calls have the
    /// deadline `timeout`, retries included. Must be called inside a Tokio
    /// runtime to keep following DNS; without one, names are resolved when
    /// calls need them.
    pub fn new(service: &'static str, urls: &str, timeout: Duration) -> Result<Self, ReplicaError> {
        Self::new_with_tls(service, urls, timeout, None)
    }

    /// [`Replicas::new`] with the TLS settings of `https://` URLs (the
    /// system's roots when `None`); each connection checks the
    /// certificate against its URL's host name.
    pub fn new_with_tls(
        service: &'static str,
        urls: &str,
        timeout: Duration,
        tls: Option<ClientTlsConfig>,
    ) -> Result<Self, ReplicaError> {
        let targets = parse_targets(service, urls)?;
        // Connecting may take a third of the deadline, so that an address
        // that swallows SYNs still leaves time to try another replica.
        let connect_timeout = (timeout / 3).max(Duration::from_millis(100));
        let shared = Arc::new(Shared {
            service,
            targets,
            tls: tls.unwrap_or_else(|| ClientTlsConfig::new().with_native_roots()),
            timeout,
            connect_timeout,
            replicas: Mutex::new(Vec::new()),
            resolved: std::sync::atomic::AtomicBool::new(false),
            next: AtomicUsize::new(0),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(follow_dns(Arc::downgrade(&shared)));
        }
        Ok(Replicas { shared })
    }

    /// The addresses currently known (for logs and tests).
    pub fn addresses(&self) -> Vec<SocketAddr> {
        lock(&self.shared.replicas).iter().map(|r| r.addr).collect()
    }
}

/// Resolves the names again every [`RESOLVE_INTERVAL`] while the replicas
/// are in use.
async fn follow_dns(shared: Weak<Shared>) {
    loop {
        match shared.upgrade() {
            Some(shared) => shared.refresh().await,
            None => return,
        }
        tokio::time::sleep(RESOLVE_INTERVAL).await;
    }
}

impl Shared {
    /// Resolves every configured URL and updates the replica list: new
    /// addresses are added, vanished ones removed. A name that no longer
    /// resolves loses its replicas, unless that would leave none at all (a
    /// DNS outage must not take the service away).
    async fn refresh(&self) {
        let lookups = self.targets.iter().map(|t| async move {
            tokio::net::lookup_host((t.host.as_str(), t.port))
                .await
                .map(|addrs| addrs.collect::<Vec<_>>())
        });
        let results = futures::future::join_all(lookups).await;
        let mut replicas = lock(&self.replicas);
        let mut resolved: Vec<(usize, SocketAddr)> = Vec::new();
        let mut failed: HashSet<usize> = HashSet::new();
        for (index, result) in results.into_iter().enumerate() {
            match result {
                Ok(addrs) if !addrs.is_empty() => {
                    resolved.extend(addrs.into_iter().map(|a| (index, a)));
                }
                Ok(_) => {
                    failed.insert(index);
                }
                Err(error) => {
                    tracing::debug!(service = self.service, host = %self.targets[index].host, %error, "name does not resolve");
                    failed.insert(index);
                }
            }
        }
        if resolved.is_empty() {
            if !replicas.is_empty() {
                tracing::warn!(
                    service = self.service,
                    "no replica name resolves; keeping the last known addresses"
                );
            }
            return;
        }
        self.resolved.store(true, Ordering::Release);
        let before: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
        let wanted: HashSet<SocketAddr> = resolved.iter().map(|(_, a)| *a).collect();
        replicas.retain(|r| wanted.contains(&r.addr));
        for (index, addr) in resolved {
            if replicas.iter().any(|r| r.addr == addr) {
                continue;
            }
            match self.channel(&self.targets[index], addr) {
                Ok(channel) => replicas.push(Replica {
                    addr,
                    target: index,
                    channel,
                    set_aside_until: None,
                }),
                Err(error) => {
                    tracing::warn!(service = self.service, %addr, %error, "cannot use replica address")
                }
            }
        }
        replicas.sort_by_key(|r| (r.target, r.addr));
        let after: Vec<SocketAddr> = replicas.iter().map(|r| r.addr).collect();
        if before != after {
            tracing::info!(service = self.service, replicas = ?after, "replica set changed");
        }
    }

    fn channel(
        &self,
        target: &Target,
        addr: SocketAddr,
    ) -> Result<Channel, tonic::transport::Error> {
        let mut endpoint = Endpoint::from_shared(format!("{}://{addr}", target.scheme))?;
        if target.scheme == "https" {
            endpoint = endpoint.tls_config(self.tls.clone().domain_name(target.host.clone()))?;
        }
        Ok(endpoint
            .origin(target.origin.clone())
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true)
            // A replica that vanishes without closing its connections
            // (a partition, a frozen host) is noticed by the pings.
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5))
            .keep_alive_while_idle(true)
            .connect_lazy())
    }

    /// The replicas to try for one call, in order: the next one in turn
    /// first, replicas set aside last.
    async fn candidates(&self) -> Vec<(SocketAddr, Channel)> {
        if !self.resolved.load(Ordering::Acquire) {
            self.refresh().await;
        }
        let replicas = lock(&self.replicas);
        if replicas.is_empty() {
            return Vec::new();
        }
        let now = Instant::now();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % replicas.len();
        let rotated = replicas[start..].iter().chain(replicas[..start].iter());
        let (ready, set_aside): (Vec<&Replica>, Vec<&Replica>) =
            rotated.partition(|r| r.set_aside_until.is_none_or(|until| until <= now));
        ready
            .into_iter()
            .chain(set_aside)
            .map(|r| (r.addr, r.channel.clone()))
            .collect()
    }

    fn set_aside(&self, addr: SocketAddr, error: &StdError) {
        let mut replicas = lock(&self.replicas);
        if let Some(replica) = replicas.iter_mut().find(|r| r.addr == addr) {
            replica.set_aside_until = Some(Instant::now() + SET_ASIDE);
        }
        tracing::warn!(service = self.service, %addr, error = %chain(error.as_ref()), "replica unreachable; set aside");
    }

    fn restore(&self, addr: SocketAddr) {
        let mut replicas = lock(&self.replicas);
        if let Some(replica) = replicas.iter_mut().find(|r| r.addr == addr) {
            replica.set_aside_until = None;
        }
    }

    /// Sends one unary call, moving to the next replica while connections
    /// cannot be made.
    async fn send(&self, request: http::Request<Body>) -> Result<http::Response<Body>, StdError> {
        let deadline = Instant::now() + self.timeout;
        let (parts, body) = request.into_parts();
        let body: Bytes = body.collect().await.map_err(boxed)?.to_bytes();
        let candidates = self.candidates().await;
        if candidates.is_empty() {
            return Err(boxed(Status::unavailable(format!(
                "no {} replica address resolves",
                self.service
            ))));
        }
        let mut last_error = None;
        for (addr, mut channel) in candidates {
            if Instant::now() >= deadline {
                break;
            }
            let request =
                http::Request::from_parts(parts.clone(), Body::new(Full::new(body.clone())));
            let attempt = async {
                std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(request).await
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(response)) => {
                    self.restore(addr);
                    return Ok(response);
                }
                Ok(Err(error)) => {
                    let error: StdError = Box::new(error);
                    // A call that ran out of time reached a replica that is
                    // slow to answer (its store redirecting or retrying),
                    // not one that is unreachable: setting it aside would
                    // only push its share of calls onto the others.
                    if !timed_out(error.as_ref()) {
                        self.set_aside(addr, &error);
                    }
                    if !never_sent(error.as_ref()) {
                        return Err(boxed(Status::unavailable(format!(
                            "{} replica {addr} failed: {}",
                            self.service,
                            chain(error.as_ref())
                        ))));
                    }
                    last_error = Some(error);
                }
                Err(_) => break,
            }
        }
        Err(boxed(Status::unavailable(match last_error {
            Some(error) => format!(
                "no {} replica reachable: {}",
                self.service,
                chain(error.as_ref())
            ),
            None => format!("no {} replica answered in time", self.service),
        })))
    }
}

fn boxed(status: Status) -> StdError {
    Box::new(status)
}

/// Whether the failure happened while connecting, before anything of the
/// request was written.
fn never_sent(error: &(dyn StdErrorTrait + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.downcast_ref::<tonic::ConnectError>().is_some() {
            return true;
        }
        source = error.source();
    }
    false
}

/// Whether the call ended because its gRPC deadline passed.
fn timed_out(error: &(dyn StdErrorTrait + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(error) = source {
        if error.downcast_ref::<tonic::TimeoutExpired>().is_some() {
            return true;
        }
        source = error.source();
    }
    false
}

/// An error and its causes on one line.
fn chain(error: &(dyn StdErrorTrait + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

impl Service<http::Request<Body>> for Replicas {
    type Response = http::Response<Body>;
    type Error = StdError;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is decided per call, replica by replica.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        Box::pin(async move { shared.send(request).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_of_urls_are_parsed() -> Result<(), ReplicaError> {
        let targets = parse_targets(
            "presence",
            "http://presence-0:50051, http://10.0.0.7:50051,https://[::1]:7,http://presence",
        )?;
        let seen: Vec<(&str, &str, u16)> = targets
            .iter()
            .map(|t| (t.scheme.as_str(), t.host.as_str(), t.port))
            .collect();
        assert_eq!(
            seen,
            vec![
                ("http", "presence-0", 50051),
                ("http", "10.0.0.7", 50051),
                ("https", "::1", 7),
                ("http", "presence", 80),
            ]
        );
        Ok(())
    }

    #[test]
    fn bad_lists_are_refused() {
        assert!(matches!(
            parse_targets("presence", " , "),
            Err(ReplicaError::Empty("presence"))
        ));
        for bad in [
            "presence:50051",
            "ftp://presence:1",
            "http://",
            "http://a b:1",
        ] {
            assert!(
                matches!(
                    parse_targets("presence", bad),
                    Err(ReplicaError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn addresses_follow_the_configured_list() -> Result<(), ReplicaError> {
        let replicas = Replicas::new(
            "presence",
            "http://127.0.0.1:1,http://127.0.0.1:2",
            Duration::from_secs(1),
        )?;
        replicas.shared.refresh().await;
        let expected: Vec<SocketAddr> = vec![
            SocketAddr::from(([127, 0, 0, 1], 1)),
            SocketAddr::from(([127, 0, 0, 1], 2)),
        ];
        assert_eq!(replicas.addresses(), expected);
        Ok(())
    }

    #[tokio::test]
    async fn nothing_reachable_is_unavailable_within_the_deadline() -> Result<(), ReplicaError> {
        // Two ports where nothing listens: both refused, both tried.
        let free = |_| {
            std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
        };
        let ports: Vec<u16> = (0..2).filter_map(|i| free(i).ok()).collect();
        assert_eq!(ports.len(), 2);
        let urls = format!(
            "http://127.0.0.1:{},http://127.0.0.1:{}",
            ports[0], ports[1]
        );
        let mut replicas = Replicas::new("presence", &urls, Duration::from_secs(2))?;
        let started = Instant::now();
        let request = http::Request::builder()
            .uri("http://presence/presence.v1.Presence/GetPresence")
            .body(Body::empty());
        let Ok(request) = request else {
            panic!("building a request");
        };
        let outcome = replicas.call(request).await;
        let Err(error) = outcome else {
            panic!("a call with no replica listening succeeded");
        };
        let Some(status) = error.downcast_ref::<Status>() else {
            panic!("not a gRPC status: {error}");
        };
        assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
        assert!(
            status.message().contains("no presence replica reachable"),
            "{status:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        // Both were set aside.
        let set_aside = lock(&replicas.shared.replicas)
            .iter()
            .filter(|r| r.set_aside_until.is_some())
            .count();
        assert_eq!(set_aside, 2);
        Ok(())
    }

    /// A replica that answers, only slowly, stays in the rotation when a
    /// call to it runs out of time (here its own `grpc-timeout`).
    #[tokio::test]
    async fn a_slow_replica_is_not_set_aside() -> Result<(), Box<dyn std::error::Error>> {
        #[derive(Clone)]
        struct Slow;
        impl tonic::server::NamedService for Slow {
            const NAME: &'static str = "presence.v1.Presence";
        }
        impl Service<http::Request<Body>> for Slow {
            type Response = http::Response<Body>;
            type Error = std::convert::Infallible;
            type Future = BoxFuture<Self::Response, Self::Error>;
            fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
                Poll::Ready(Ok(()))
            }
            fn call(&mut self, _request: http::Request<Body>) -> Self::Future {
                Box::pin(async {
                    tokio::time::sleep(Duration::from_secs(3)).await;
                    Ok(http::Response::new(Body::empty()))
                })
            }
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(Slow)
                .serve(addr),
        );
        let mut replicas = Replicas::new(
            "presence",
            &format!("http://127.0.0.1:{port}"),
            Duration::from_secs(2),
        )?;
        // Wait until the server accepts connections.
        let deadline = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            assert!(Instant::now() < deadline, "test server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let request = http::Request::builder()
            .uri("http://presence/presence.v1.Presence/GetPresence")
            .header("grpc-timeout", "300m")
            .body(Body::empty())?;
        assert!(
            replicas.call(request).await.is_err(),
            "the slow call timed out"
        );
        let set_aside = lock(&replicas.shared.replicas)
            .iter()
            .filter(|r| r.set_aside_until.is_some())
            .count();
        assert_eq!(set_aside, 0);
        Ok(())
    }
}
