//! Cost of the application API's paths, in process (no gRPC transport), on
//! the memory backend and on Redis over loopback:
//! * `set_to_watch_event` — SetPresence until a WatchPresence stream has the
//!   change (compositor swap, channel, hub, stream task);
//! * `watch_start_100` — opening a stream on 100 presentities until `synced`
//!   (channel watches, snapshot read);
//! * `batch_views_300` — the read behind BatchGetPresence of 300.
//!
//! Run with `cargo bench -p presence --bench api`; needs `redis-server`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use pidf::PresenceStatus;
use presence::sources::{SetSourceCommand, SourceContent};
use presence::watch::{WatchHub, WatchRequest};
use presence::{Compositor, PresenceConfig};
use rpc::presence::v1::watch_presence_event::Event;
use store::testing::RedisServer;
use store::Backend;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

fn set(presentity: &str, note: String) -> SetSourceCommand {
    SetSourceCommand {
        presentity: presentity.to_string(),
        source: "bench".into(),
        content: SourceContent::Status {
            status: PresenceStatus::Busy,
            note: Some(note),
        },
        expires: Some(3600),
        publisher: "bench".into(),
    }
}

fn bench_backend(
    c: &mut Criterion,
    name: &str,
    rt: &tokio::runtime::Runtime,
    backend: Arc<dyn Backend>,
) {
    let compositor = Compositor::new(backend.clone(), PresenceConfig::default());
    let hub = WatchHub::new(backend);
    let mut group = c.benchmark_group(name);
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(4));

    let mut events = rt
        .block_on(presence::watch::start(
            &hub,
            compositor.clone(),
            WatchRequest::new(vec!["alice@example.com".into()], HashMap::new()).expect("request"),
        ))
        .expect("stream");
    // Snapshot and `synced`.
    rt.block_on(async {
        for _ in 0..2 {
            events.recv().await.expect("event").expect("healthy");
        }
    });
    let mut round = 0u64;
    group.bench_function("set_to_watch_event", |b| {
        b.iter(|| {
            round += 1;
            rt.block_on(async {
                compositor
                    .set_source(
                        &set("alice@example.com", format!("{round}")),
                        contract::now_ms(),
                    )
                    .await
                    .expect("set");
                loop {
                    let event = events.recv().await.expect("event").expect("healthy");
                    if let Some(Event::State(state)) = event.event {
                        if state.note == round.to_string() {
                            break;
                        }
                    }
                }
            })
        })
    });

    let hundred: Vec<String> = (0..100)
        .map(|i| format!("watched{i}@example.com"))
        .collect();
    group.bench_function("watch_start_100", |b| {
        b.iter(|| {
            rt.block_on(async {
                let request = WatchRequest::new(hundred.clone(), HashMap::new()).expect("request");
                let mut events = presence::watch::start(&hub, compositor.clone(), request)
                    .await
                    .expect("stream");
                loop {
                    let event = events.recv().await.expect("event").expect("healthy");
                    if matches!(event.event, Some(Event::Synced(_))) {
                        break;
                    }
                }
            })
        })
    });

    let three_hundred: Vec<String> = (0..300).map(|i| format!("member{i}@example.com")).collect();
    rt.block_on(async {
        for presentity in &three_hundred {
            compositor
                .set_source(&set(presentity, "seeded".into()), contract::now_ms())
                .await
                .expect("seed");
        }
    });
    group.bench_function("batch_views_300", |b| {
        b.to_async(rt).iter(|| async {
            let views = compositor.views(&three_hundred).await.expect("views");
            assert_eq!(views.len(), 300);
        })
    });
    group.finish();
}

fn memory(c: &mut Criterion) {
    let rt = runtime();
    bench_backend(
        c,
        "memory",
        &rt,
        Arc::new(store::memory::MemoryBackend::new()),
    );
}

fn redis(c: &mut Criterion) {
    let server = RedisServer::start().expect("redis-server for the benchmark");
    let rt = runtime();
    let backend = rt
        .block_on(store::redis::RedisBackend::connect(&server.url()))
        .expect("connect to redis");
    bench_backend(c, "redis", &rt, Arc::new(backend));
}

criterion_group!(benches, memory, redis);
criterion_main!(benches);
