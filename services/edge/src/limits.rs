//! Request rate limits and the source block list, applied to every new
//! request before anything expensive (token validation, service calls).
//!
//! * A source on the block list (`--block-source CIDR`) is answered
//!   `403 Forbidden`.
//! * Each source (an IPv4 address, or an IPv6 /64: see
//!   [`SourceKey`]) and each identity has a token bucket; a request finding
//!   its bucket empty is answered `503 Service Unavailable` with
//!   `Retry-After` (the seconds until a token is back), as RFC 3261 §21.5.4
//!   has servers do when overloaded.
//!
//! The identity is the From address-of-record (`user@host`), the only name
//! every request carries before it is authenticated: the bearer token may be
//! absent (Digest, trusted peers, no authentication) and changes on every
//! refresh, while one misbehaving client (a phone looping on REGISTER, a
//! script) keeps its From. The bucket is that of the identity *at its
//! source*: a request forging someone's From from another address draws
//! on a bucket of its own, so it cannot lock the real user out, and a flood
//! of invented names is bounded by the per-source limit.
//!
//! Memory is bounded: a bucket that has filled up again is the same as no
//! bucket, so idle buckets are dropped when a table reaches its size, and
//! past that size new keys go unlimited (counted) rather than unbounded.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sip::{HeaderName, Request, Response};

use crate::transport::{Source, SourceKey};
use crate::Edge;

/// A token bucket's rate (requests per second) and burst (its size).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: f64,
}

impl Rate {
    /// `None` (no limit) when the rate is zero.
    pub fn new(per_second: f64, burst: f64) -> Option<Rate> {
        (per_second > 0.0).then(|| Rate {
            per_second,
            burst: burst.max(1.0),
        })
    }
}

/// Default requests per second of one identity (From address-of-record).
pub const IDENTITY_RATE: f64 = 50.0;
/// Default burst of one identity: a phone registering, publishing and
/// subscribing to a buddy list of a hundred at start-up fits.
pub const IDENTITY_BURST: f64 = 200.0;
/// Most buckets held per table (sources, identities): some 100 bytes each.
pub const MAX_TRACKED: usize = 100_000;

/// How requests are limited.
#[derive(Clone, Debug)]
pub struct RateLimits {
    /// Off by default: one address may carry a whole site (a NAT, an SBC,
    /// a load generator), which the identity limit and the connection caps
    /// tell apart better than an address can.
    pub per_source: Option<Rate>,
    pub per_identity: Option<Rate>,
    /// Sources answered 403.
    pub blocked: auth::peers::TrustedPeers,
    /// Most buckets per table.
    pub max_tracked: usize,
}

impl Default for RateLimits {
    fn default() -> Self {
        RateLimits {
            per_source: None,
            per_identity: Rate::new(IDENTITY_RATE, IDENTITY_BURST),
            blocked: auth::peers::TrustedPeers::default(),
            max_tracked: MAX_TRACKED,
        }
    }
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets by key, bounded in number.
struct Buckets<K> {
    rate: Rate,
    max: usize,
    table: Mutex<Table<K>>,
}

struct Table<K> {
    buckets: HashMap<K, Bucket>,
    last_sweep: Instant,
}

impl<K: std::hash::Hash + Eq> Buckets<K> {
    fn new(rate: Rate, max: usize) -> Self {
        Buckets {
            rate,
            max,
            table: Mutex::new(Table {
                buckets: HashMap::new(),
                last_sweep: Instant::now(),
            }),
        }
    }

    /// Takes a token for `key`: `Err` with the wait until the next one
    /// when there is none, `Ok(false)` when the key could not be tracked.
    fn take(&self, key: K, now: Instant) -> Result<bool, Duration> {
        let mut table = locks::lock(&self.table);
        let rate = self.rate;
        if table.buckets.len() >= self.max && !table.buckets.contains_key(&key) {
            // Sweeping is linear in the table: at most once a second.
            if now.duration_since(table.last_sweep) >= Duration::from_secs(1) {
                table.last_sweep = now;
                table
                    .buckets
                    .retain(|_, b| refill(b, rate, now) < rate.burst);
            }
            if table.buckets.len() >= self.max {
                return Ok(false);
            }
        }
        let bucket = table.buckets.entry(key).or_insert(Bucket {
            tokens: rate.burst,
            at: now,
        });
        bucket.tokens = refill(bucket, rate, now);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(true)
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / rate.per_second,
            ))
        }
    }

    fn len(&self) -> usize {
        locks::lock(&self.table).buckets.len()
    }
}

fn refill(bucket: &Bucket, rate: Rate, now: Instant) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * rate.per_second).min(rate.burst)
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limited {
    Blocked,
    Source(Duration),
    Identity(Duration),
}

impl Limited {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Limited::Blocked => "blocked",
            Limited::Source(_) => "source",
            Limited::Identity(_) => "identity",
        }
    }
}

/// The limits of one edge.
pub struct Limiter {
    blocked: auth::peers::TrustedPeers,
    sources: Option<Buckets<SourceKey>>,
    /// Keyed by a hash of the identity and its source with a per-process
    /// random key: no string is held per identity, and collisions cannot be
    /// aimed at.
    identities: Option<Buckets<u64>>,
    hasher: RandomState,
    /// New keys left unlimited because a table was full of busy buckets.
    pub untracked: AtomicU64,
}

impl Limiter {
    pub fn new(limits: &RateLimits) -> Self {
        Limiter {
            blocked: limits.blocked.clone(),
            sources: limits
                .per_source
                .map(|r| Buckets::new(r, limits.max_tracked)),
            identities: limits
                .per_identity
                .map(|r| Buckets::new(r, limits.max_tracked)),
            hasher: RandomState::new(),
            untracked: AtomicU64::new(0),
        }
    }

    /// Buckets held (sources, identities).
    pub fn tracked(&self) -> (usize, usize) {
        (
            self.sources.as_ref().map_or(0, Buckets::len),
            self.identities.as_ref().map_or(0, Buckets::len),
        )
    }

    /// Whether a request from `ip` by `identity` may go on.
    pub fn admit(&self, ip: IpAddr, identity: Option<&str>) -> Result<(), Limited> {
        if !self.blocked.is_empty() && self.blocked.is_trusted(ip) {
            return Err(Limited::Blocked);
        }
        let now = Instant::now();
        if let Some(sources) = &self.sources {
            match sources.take(SourceKey::of(ip), now) {
                Ok(true) => {}
                Ok(false) => {
                    self.untracked.fetch_add(1, Ordering::Relaxed);
                }
                Err(wait) => return Err(Limited::Source(wait)),
            }
        }
        if let (Some(identities), Some(identity)) = (&self.identities, identity) {
            match identities.take(self.hasher.hash_one((identity, SourceKey::of(ip))), now) {
                Ok(true) => {}
                Ok(false) => {
                    self.untracked.fetch_add(1, Ordering::Relaxed);
                }
                Err(wait) => return Err(Limited::Identity(wait)),
            }
        }
        Ok(())
    }
}

/// The answer to a request over a limit, or `None` when it may go on.
/// Called for every new request before its handler runs.
pub fn check(edge: &Edge, request: &Request, source: Source) -> Option<Response> {
    let identity = request.headers().from().ok().map(|from| from.uri.aor());
    let limited = edge
        .limiter
        .admit(source.remote.ip(), identity.as_deref())
        .err()?;
    crate::metrics::limited(limited.label());
    tracing::debug!(remote = %source.remote, identity = identity.as_deref().unwrap_or(""), limit = limited.label(), "request refused by a limit");
    Some(match limited {
        Limited::Blocked => Response::for_request(request, 403)
            .reason("Source Blocked")
            .build(),
        Limited::Source(wait) | Limited::Identity(wait) => Response::for_request(request, 503)
            .reason("Rate Limited")
            .header(
                HeaderName::RetryAfter,
                (wait.as_secs_f64().ceil() as u64).max(1),
            )
            .build(),
    })
}

/// The `sip_requests_limited_total` label of a SUBSCRIBE refused by the
/// cap on dialogs per source.
pub const SUBSCRIPTIONS_PER_SOURCE: &str = "subscriptions_per_source";

/// A place for a new SUBSCRIBE dialog from `source` in the edge's count of
/// dialogs per source (`--max-subscriptions-per-source`), or the answer
/// when that source holds as many as the cap: `503 Too Many Subscriptions`
/// with `Retry-After`, counted. One address may be a NAT or an SBC, so the
/// cap is well above one client's needs; it bounds the memory and NOTIFY
/// work one address can make an edge hold.
pub fn subscription_slot(
    edge: &Edge,
    request: &Request,
    source: Source,
) -> Result<crate::dialogs::SourceSlot, Response> {
    let cap = edge.config.max_subscriptions_per_source;
    edge.dialogs
        .reserve_source(source.remote.ip(), cap)
        .ok_or_else(|| {
            crate::metrics::limited(SUBSCRIPTIONS_PER_SOURCE);
            tracing::debug!(remote = %source.remote, cap, "SUBSCRIBE refused: the source holds the most dialogs allowed");
            Response::for_request(request, 503)
                .reason("Too Many Subscriptions")
                .header(HeaderName::RetryAfter, edge.config.retry_after)
                .build()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let buckets = Buckets::new(Rate::new(10.0, 3.0).unwrap(), 10);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(buckets.take("a", start), Ok(true));
        }
        let wait = buckets.take("a", start).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another key has a bucket of its own.
        assert_eq!(buckets.take("b", start), Ok(true));
        // A tenth of a second later, one more token.
        let later = start + Duration::from_millis(100);
        assert_eq!(buckets.take("a", later), Ok(true));
        assert!(buckets.take("a", later).is_err());
    }

    #[test]
    fn idle_buckets_are_dropped_when_the_table_is_full() {
        let buckets = Buckets::new(Rate::new(10.0, 2.0).unwrap(), 2);
        let start = Instant::now();
        assert_eq!(buckets.take(1, start), Ok(true));
        assert_eq!(buckets.take(2, start), Ok(true));
        // Full of busy buckets: a third key is not tracked.
        assert_eq!(buckets.take(3, start), Ok(false));
        assert_eq!(buckets.len(), 2);
        // Two seconds on, both have filled up again: they go, 3 comes in.
        let later = start + Duration::from_secs(2);
        assert_eq!(buckets.take(3, later), Ok(true));
        assert_eq!(buckets.len(), 1);
    }

    #[test]
    fn blocked_sources_then_sources_then_identities() {
        let limits = RateLimits {
            per_source: Rate::new(1.0, 2.0),
            per_identity: Rate::new(1.0, 1.0),
            blocked: auth::peers::TrustedPeers::new(["192.0.2.0/24"]).unwrap(),
            max_tracked: 100,
        };
        let limiter = Limiter::new(&limits);
        assert_eq!(
            limiter.admit(ip("192.0.2.9"), Some("a@example.com")),
            Err(Limited::Blocked)
        );
        assert_eq!(
            limiter.admit(ip("198.51.100.1"), Some("a@example.com")),
            Ok(())
        );
        assert!(matches!(
            limiter.admit(ip("198.51.100.1"), Some("a@example.com")),
            Err(Limited::Identity(_))
        ));
        assert!(matches!(
            limiter.admit(ip("198.51.100.1"), Some("b@example.com")),
            Err(Limited::Source(_))
        ));
        assert_eq!(
            limiter.admit(ip("198.51.100.2"), Some("b@example.com")),
            Ok(())
        );
    }

    #[test]
    fn a_forged_from_elsewhere_does_not_use_up_the_users_bucket() {
        let limiter = Limiter::new(&RateLimits::default());
        // Someone floods with alice's From from another address ...
        while limiter
            .admit(ip("203.0.113.66"), Some("alice@example.com"))
            .is_ok()
        {}
        // ... alice, at her own address, is not refused.
        assert_eq!(
            limiter.admit(ip("198.51.100.7"), Some("alice@example.com")),
            Ok(())
        );
    }

    #[test]
    fn the_defaults_limit_identities_only() {
        let limiter = Limiter::new(&RateLimits::default());
        for _ in 0..IDENTITY_BURST as usize {
            assert_eq!(
                limiter.admit(ip("127.0.0.1"), Some("a@example.com")),
                Ok(())
            );
        }
        assert!(limiter
            .admit(ip("127.0.0.1"), Some("a@example.com"))
            .is_err());
        for i in 0..1000 {
            let user = format!("u{i}@example.com");
            assert_eq!(limiter.admit(ip("127.0.0.1"), Some(&user)), Ok(()));
        }
    }
}
