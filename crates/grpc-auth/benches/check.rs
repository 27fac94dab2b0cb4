//! Cost the authentication layer adds to each gRPC call: a valid token
//! (validated once, then served from the validator's cache) and a call
//! without a token.
//!
//! Run with `cargo bench -p grpc-auth --bench check`.

use std::time::Duration;

use auth::dev::DevIssuer;
use criterion::{criterion_group, criterion_main, Criterion};
use grpc_auth::{api_bearer_config, Access, AccessPolicy, ApiAuth};

fn check(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let issuer = DevIssuer::generate("https://issuer.test", "presence").expect("issuer");
    let validator = rt
        .block_on(auth::BearerValidator::new(api_bearer_config(
            issuer.bearer_config(),
        )))
        .expect("validator");
    let policy =
        AccessPolicy::new().service("presence.v1.Presence", &[("GetPresence", Access::Read)]);
    let auth = ApiAuth::new(validator, policy);
    let token = issuer.mint("crm", &["presence:read"], 3600).expect("token");
    let mut with_token = http::HeaderMap::new();
    with_token.insert(
        http::header::AUTHORIZATION,
        format!("Bearer {token}").parse().expect("header"),
    );
    let without = http::HeaderMap::new();
    let path = "/presence.v1.Presence/GetPresence";

    let mut group = c.benchmark_group("api_auth");
    group.measurement_time(Duration::from_secs(3));
    group.bench_function("valid_token_cached", |b| {
        b.to_async(&rt).iter(|| async {
            auth.check(path, &with_token).await.expect("allowed");
        })
    });
    group.bench_function("missing_token", |b| {
        b.to_async(&rt).iter(|| async {
            auth.check(path, &without).await.expect_err("refused");
        })
    });
    group.finish();
}

criterion_group!(benches, check);
criterion_main!(benches);
