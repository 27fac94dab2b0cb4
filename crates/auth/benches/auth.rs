//! Validation cost: result-cache hits and cold (uncached) JWT verification per algorithm.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use auth::digest::{ha1, response, DigestAlgorithm, DigestAuthenticator, DigestConfig, Ha1File};
use auth::testing::{sign, unix_now, TestKey};
use auth::{Algorithm, BearerConfig, BearerValidator, CacheConfig, KeySource};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{Map, Value};

const ISSUER: &str = "https://idp.bench.invalid/realms/sip";

fn config(max_entries: usize) -> BearerConfig {
    BearerConfig {
        issuers: vec![ISSUER.to_owned()],
        audiences: vec!["sip-edge".to_owned()],
        jwks: Some(KeySource::Inline(TestKey::jwks(&TestKey::ALL))),
        cache: CacheConfig {
            max_entries,
            ..CacheConfig::default()
        },
        ..BearerConfig::default()
    }
}

fn token(key: TestKey, alg: Algorithm) -> String {
    let now = unix_now();
    let mut claims = Map::new();
    claims.insert("iss".into(), Value::from(ISSUER));
    claims.insert("aud".into(), Value::from("sip-edge"));
    claims.insert("sub".into(), Value::from("alice@example.com"));
    claims.insert(
        "scope".into(),
        Value::from("openid sip:register sip:presence"),
    );
    claims.insert("azp".into(), Value::from("softphone"));
    claims.insert("iat".into(), Value::from(now));
    claims.insert("exp".into(), Value::from(now + 86_400));
    sign(key, alg, Some(key.kid()), &claims).expect("test keys sign")
}

/// Polls a future that completes without suspending (cache hits and verification with loaded keys never
/// wait), so the measurement holds no executor overhead.
fn complete_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut context) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("validation unexpectedly suspended"),
    }
}

fn bench_bearer(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();

    let cached = runtime
        .block_on(BearerValidator::new(config(10_000)))
        .expect("validator");
    // Cache hits for a long (RS256, 2048-bit signature) and a short (EdDSA) token: hashing the token for the
    // cache key is most of the cost, so the hash alone is measured too.
    for (name, key, alg) in [
        ("RS256", TestKey::RsaA, Algorithm::RS256),
        ("EdDSA", TestKey::Ed25519, Algorithm::EdDSA),
    ] {
        let hot = token(key, alg);
        complete_now(cached.validate(&hot)).expect("valid token");
        let bytes = hot.len();
        c.bench_function(&format!("bearer/token_sha256/{name}_{bytes}B"), |b| {
            b.iter(|| <sha2::Sha256 as sha2::Digest>::digest(black_box(hot.as_bytes())))
        });
        c.bench_function(&format!("bearer/cache_hit/{name}_{bytes}B"), |b| {
            b.iter(|| complete_now(cached.validate(black_box(&hot))).expect("valid token"))
        });
    }

    let uncached = runtime
        .block_on(BearerValidator::new(config(0)))
        .expect("validator");
    for (name, key, alg) in [
        ("RS256", TestKey::RsaA, Algorithm::RS256),
        ("PS256", TestKey::RsaA, Algorithm::PS256),
        ("ES256", TestKey::EcP256, Algorithm::ES256),
        ("ES384", TestKey::EcP384, Algorithm::ES384),
        ("EdDSA", TestKey::Ed25519, Algorithm::EdDSA),
    ] {
        let cold = token(key, alg);
        complete_now(uncached.validate(&cold)).expect("valid token");
        c.bench_function(&format!("bearer/cold/{name}"), |b| {
            b.iter(|| complete_now(uncached.validate(black_box(&cold))).expect("valid token"))
        });
    }
}

fn bench_digest(c: &mut Criterion) {
    let file = Ha1File::parse("alice:wonderland").expect("credentials");
    let digest = DigestAuthenticator::new(
        DigestConfig {
            realm: "example.com".to_owned(),
            algorithms: vec![DigestAlgorithm::Sha256],
            nonce_ttl_secs: 3600,
            secret: b"bench".to_vec(),
        },
        Arc::new(file),
    );
    let challenge = digest.challenges(false).remove(0);
    let ha1 = ha1(
        DigestAlgorithm::Sha256,
        "alice",
        "example.com",
        "wonderland",
    );
    let mut nc: u32 = 0;
    c.bench_function("digest/verify/SHA-256", |b| {
        b.iter(|| {
            nc = nc.wrapping_add(1);
            let nc_text = format!("{nc:08x}");
            let answer = response(
                DigestAlgorithm::Sha256,
                &ha1,
                &challenge.nonce,
                &nc_text,
                "c0ffee",
                "auth",
                "REGISTER",
                "sip:example.com",
            );
            let params: Vec<(String, String)> = [
                ("username", "alice"),
                ("realm", "example.com"),
                ("nonce", challenge.nonce.as_str()),
                ("uri", "sip:example.com"),
                ("response", answer.as_str()),
                ("algorithm", "SHA-256"),
                ("qop", "auth"),
                ("nc", nc_text.as_str()),
                ("cnonce", "c0ffee"),
            ]
            .into_iter()
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
            digest
                .verify("REGISTER", black_box(&params))
                .expect("valid credentials")
        })
    });
}

criterion_group!(benches, bench_bearer, bench_digest);
criterion_main!(benches);
