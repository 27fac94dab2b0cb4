//! Latency of the primitives the services call on every request, for the
//! in-memory backend and for Redis on loopback.
//!
//! Run with `cargo bench -p store --bench backends`; needs `redis-server`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use store::memory::MemoryBackend;
use store::redis::RedisBackend;
use store::testing::RedisServer;
use store::{Backend, ChannelMessage, FeedItem, Key, Kind};

/// A presence document of typical size.
const VALUE_SIZE: usize = 1024;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Benchmarks one backend: reads, swaps, swaps that announce to a watching
/// feed, and conditional map removal.
fn bench_backend(
    c: &mut Criterion,
    name: &str,
    rt: &tokio::runtime::Runtime,
    backend: Arc<dyn Backend>,
) {
    let value = Bytes::from(vec![b'x'; VALUE_SIZE]);
    let key = Key::new(Kind::Presentity, "alice@example.com");
    rt.block_on(backend.cas_record(&key, 0, Some(value.clone()), None, None))
        .expect("seed record");

    let mut group = c.benchmark_group(name);
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(3));

    group.bench_function("get_record", |b| {
        b.to_async(rt).iter(|| async {
            backend.get_record(&key).await.expect("get_record");
        })
    });

    let keys: Vec<Key> = (0..16)
        .map(|index| Key::new(Kind::Bindings, format!("user{index}@example.com")))
        .collect();
    for key in &keys {
        rt.block_on(backend.cas_record(key, 0, Some(value.clone()), None, None))
            .expect("seed batch");
    }
    group.bench_function("get_records_16", |b| {
        b.to_async(rt).iter(|| async {
            backend.get_records(&keys).await.expect("get_records");
        })
    });

    let rev = AtomicU64::new(1);
    group.bench_function("cas_record", |b| {
        b.to_async(rt).iter(|| async {
            let expected = rev.load(Ordering::Relaxed);
            let swapped = backend
                .cas_record(&key, expected, Some(value.clone()), Some(3_600_000), None)
                .await
                .expect("cas_record");
            assert_eq!(swapped, Some(expected + 1));
            rev.store(expected + 1, Ordering::Relaxed);
        })
    });

    // A swap announcing to a feed that watches the entity; the feed is
    // drained by a background task, as the presence service does.
    let (control, mut feed) = rt.block_on(backend.open_feed()).expect("open_feed");
    rt.block_on(control.watch("alice@example.com"))
        .expect("watch");
    let drained = rt.spawn(async move {
        let mut messages = 0u64;
        while let Some(item) = feed.recv().await {
            if let FeedItem::Message(_) = item {
                messages += 1;
            }
        }
        messages
    });
    group.bench_function("cas_record_announced", |b| {
        b.to_async(rt).iter(|| async {
            let expected = rev.load(Ordering::Relaxed);
            let announce = ChannelMessage {
                entity: "alice@example.com".into(),
                payload: Bytes::from_static(b"changed"),
            };
            backend
                .cas_record(&key, expected, Some(value.clone()), None, Some(announce))
                .await
                .expect("cas_record");
            rev.store(expected + 1, Ordering::Relaxed);
        })
    });
    drop(control);

    let map = Key::new(Kind::Subscriptions, "alice@example.com");
    group.bench_function("map_put_then_take", |b| {
        b.to_async(rt).iter(|| async {
            backend
                .map_put(&map, "dialog", Bytes::from_static(b"state"))
                .await
                .expect("map_put");
            let taken = backend
                .map_take(&map, "dialog", Some(b"state"))
                .await
                .expect("map_take");
            assert!(taken.is_some());
        })
    });
    group.finish();
    drained.abort();
}

fn memory(c: &mut Criterion) {
    let rt = runtime();
    bench_backend(c, "memory", &rt, Arc::new(MemoryBackend::new()));
}

fn redis(c: &mut Criterion) {
    let server = RedisServer::start().expect("redis-server for the benchmark");
    let rt = runtime();
    let backend = rt
        .block_on(RedisBackend::connect(&server.url()))
        .expect("connect to redis");
    bench_backend(c, "redis", &rt, Arc::new(backend));
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
