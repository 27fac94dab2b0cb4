//! Redis-only behaviour: what callers see while Redis is down, hung or
//! restarted, and that the documented key layout is what lands in Redis.

use std::time::Duration;

use crate::common::{eventually, message, next_item, redis_backend, wait_for_payload};
use bytes::Bytes;
use store::redis::RedisBackend;
use store::testing::RedisServer;
use store::{Backend, FeedItem, Key, Kind, Schedule, StoreError};

/// An upper bound on any single failing call: the command timeout (500 ms
/// in these tests) plus scheduling slack. Anything slower counts as a hang.
const FAIL_FAST: Duration = Duration::from_secs(3);

fn assert_unavailable<T: std::fmt::Debug>(result: Result<T, StoreError>, what: &str) {
    match result {
        Err(StoreError::Unavailable(_)) => {}
        other => panic!("{what}: expected Unavailable, got {other:?}"),
    }
}

/// Runs `call` and fails the test if it takes longer than [`FAIL_FAST`].
async fn bounded<T>(call: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(FAIL_FAST, call).await {
        Ok(value) => value,
        Err(_) => panic!("call hung for more than {FAIL_FAST:?}"),
    }
}

/// Starts `DEBUG SLEEP seconds` on the server from a blocking thread and
/// returns once the command has been sent (plus a moment for the server to
/// start executing it).
async fn put_to_sleep(server: &RedisServer, seconds: u32) -> tokio::task::JoinHandle<()> {
    let port = server.port();
    let (sent_tx, sent_rx) = tokio::sync::oneshot::channel();
    let sleeper = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        client
            .write_all(format!("DEBUG SLEEP {seconds}\r\n").as_bytes())
            .expect("send DEBUG SLEEP");
        let _ = sent_tx.send(());
        let mut reply = [0u8; 64];
        let _ = client.read(&mut reply);
    });
    let _ = sent_rx.await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    sleeper
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_fail_fast_when_redis_is_stopped() -> anyhow::Result<()> {
    let mut server = RedisServer::start()?;
    let backend = redis_backend(&server).await?;
    backend.ping().await?;
    server.stop()?;

    let key = Key::new(Kind::Presentity, "alice@example.com");
    assert_unavailable(bounded(backend.get_record(&key)).await, "get_record");
    assert_unavailable(
        bounded(backend.get_records(&[key.clone(), key.clone()])).await,
        "get_records",
    );
    assert_unavailable(
        bounded(backend.cas_record(&key, 0, Some(Bytes::from_static(b"x")), None, None)).await,
        "cas_record",
    );
    assert_unavailable(
        bounded(backend.map_put(&key, "f", Bytes::new())).await,
        "map_put",
    );
    assert_unavailable(bounded(backend.map_take(&key, "f", None)).await, "map_take");
    assert_unavailable(
        bounded(backend.due(Schedule::Bindings, 10, 10)).await,
        "due",
    );
    assert_unavailable(
        bounded(backend.publish(message("alice@example.com", "x"))).await,
        "publish",
    );
    assert_unavailable(bounded(backend.ping()).await, "ping");
    assert_unavailable(bounded(backend.open_feed()).await.map(drop), "open_feed");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_fails_when_redis_is_down() -> anyhow::Result<()> {
    let mut server = RedisServer::start()?;
    let url = server.url();
    server.stop()?;
    assert_unavailable(bounded(RedisBackend::connect(&url)).await, "connect");
    assert!(matches!(
        RedisBackend::connect("not a url").await,
        Err(StoreError::Protocol(_))
    ));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_time_out_when_redis_hangs() -> anyhow::Result<()> {
    let server = RedisServer::start_with_args(&["--enable-debug-command", "yes"])?;
    let backend = redis_backend(&server).await?;
    let key = Key::new(Kind::Presentity, "alice@example.com");
    backend.get_record(&key).await?;

    let sleeper = put_to_sleep(&server, 2).await;
    let started = tokio::time::Instant::now();
    assert_unavailable(bounded(backend.get_record(&key)).await, "get_record");
    assert!(started.elapsed() < Duration::from_millis(1500));
    sleeper.await?;

    // Once Redis answers again, so does the backend.
    eventually(|| backend.get_record(&key)).await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_brings_back_commands_and_the_feed() -> anyhow::Result<()> {
    let mut server = RedisServer::start()?;
    let backend = redis_backend(&server).await?;
    let entity = "alice@example.com";
    let key = Key::new(Kind::Presentity, entity);
    let (control, mut feed) = backend.open_feed().await?;
    control.watch(entity).await?;
    backend
        .cas_record(
            &key,
            0,
            Some(Bytes::from_static(b"v1")),
            None,
            Some(message(entity, "before")),
        )
        .await?;
    wait_for_payload(&mut feed, "before").await?;

    server.restart()?;

    // Commands work again (the restarted server is empty, and the swap
    // script is reloaded transparently).
    eventually(|| backend.ping()).await?;
    let rev = eventually(|| {
        backend.cas_record(
            &key,
            0,
            Some(Bytes::from_static(b"v1")),
            None,
            Some(message(entity, "swap-after")),
        )
    })
    .await?;
    assert_eq!(rev, Some(1));

    // The feed resubscribed and said so before delivering anything new.
    assert_eq!(next_item(&mut feed).await?, FeedItem::Resync);
    backend.publish(message(entity, "after")).await?;
    wait_for_payload(&mut feed, "after").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_while_disconnected_is_covered_by_the_resync() -> anyhow::Result<()> {
    let mut server = RedisServer::start()?;
    let backend = redis_backend(&server).await?;
    let (control, mut feed) = backend.open_feed().await?;
    control.watch("alice@example.com").await?;
    server.stop()?;
    // Give the feed a moment to notice.
    tokio::time::sleep(Duration::from_millis(200)).await;

    bounded(control.watch("bob@example.com")).await?;
    bounded(control.unwatch("alice@example.com")).await?;
    server.restart()?;

    assert_eq!(next_item(&mut feed).await?, FeedItem::Resync);
    eventually(|| backend.publish(message("alice@example.com", "not-watched"))).await?;
    backend
        .publish(message("bob@example.com", "watched"))
        .await?;
    match next_item(&mut feed).await? {
        FeedItem::Message(received) => {
            assert_eq!(received, message("bob@example.com", "watched"))
        }
        FeedItem::Resync => anyhow::bail!("second resync"),
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_feed_connection_reconnects_and_resyncs() -> anyhow::Result<()> {
    let server = RedisServer::start()?;
    let backend = redis_backend(&server).await?;
    let (control, mut feed) = backend.open_feed().await?;
    control.watch("alice@example.com").await?;

    let killed = server.command("CLIENT KILL TYPE pubsub")?;
    assert_eq!(killed.trim(), ":1", "one feed connection killed");

    assert_eq!(next_item(&mut feed).await?, FeedItem::Resync);
    backend
        .publish(message("alice@example.com", "again"))
        .await?;
    wait_for_payload(&mut feed, "again").await?;
    // Commands were never affected.
    backend.ping().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hung_feed_connection_is_detected() -> anyhow::Result<()> {
    let server = RedisServer::start_with_args(&["--enable-debug-command", "yes"])?;
    let backend = redis_backend(&server).await?;
    let (control, mut feed) = backend.open_feed().await?;
    control.watch("alice@example.com").await?;

    // The server stops answering for longer than the health check allows
    // (500 ms interval, 500 ms timeout): the feed must notice on its own.
    let sleeper = put_to_sleep(&server, 2).await;
    assert_eq!(next_item(&mut feed).await?, FeedItem::Resync);
    sleeper.await?;
    eventually(|| backend.publish(message("alice@example.com", "awake"))).await?;
    wait_for_payload(&mut feed, "awake").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_layout_is_as_documented() -> anyhow::Result<()> {
    let server = RedisServer::start()?;
    let backend = redis_backend(&server).await?;
    let entity = "alice@example.com";
    backend
        .cas_record(
            &Key::new(Kind::Presentity, entity),
            0,
            Some(Bytes::from_static(b"doc")),
            Some(60_000),
            None,
        )
        .await?;
    backend
        .map_put(
            &Key::new(Kind::Subscriptions, entity),
            "dialog-1",
            Bytes::from_static(b"sub"),
        )
        .await?;
    backend
        .schedule(Schedule::Publications, entity, 1234)
        .await?;
    let (control, _feed) = backend.open_feed().await?;
    control.watch(entity).await?;

    let client = redis::Client::open(server.url())?;
    let mut raw = client.get_multiplexed_async_connection().await?;
    let record: Vec<(String, String)> = redis::cmd("HGETALL")
        .arg("pres:{alice@example.com}")
        .query_async(&mut raw)
        .await?;
    let mut record = record;
    record.sort();
    assert_eq!(
        record,
        vec![
            ("rev".to_owned(), "1".to_owned()),
            ("val".to_owned(), "doc".to_owned())
        ]
    );
    let ttl: i64 = redis::cmd("PTTL")
        .arg("pres:{alice@example.com}")
        .query_async(&mut raw)
        .await?;
    assert!(ttl > 50_000 && ttl <= 60_000, "ttl {ttl}");
    let field: Option<String> = redis::cmd("HGET")
        .arg("subs:{alice@example.com}:m")
        .arg("dialog-1")
        .query_async(&mut raw)
        .await?;
    assert_eq!(field.as_deref(), Some("sub"));
    let score: Option<u64> = redis::cmd("ZSCORE")
        .arg("sched:publications")
        .arg(entity)
        .query_async(&mut raw)
        .await?;
    assert_eq!(score, Some(1234));
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg("CHANNELS")
        .query_async(&mut raw)
        .await?;
    assert_eq!(channels, vec!["chan:{alice@example.com}".to_owned()]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_records_are_reported() -> anyhow::Result<()> {
    let server = RedisServer::start()?;
    let backend = redis_backend(&server).await?;
    let client = redis::Client::open(server.url())?;
    let mut raw = client.get_multiplexed_async_connection().await?;
    let _: () = redis::cmd("HSET")
        .arg("pres:{mallory@example.com}")
        .arg("rev")
        .arg("not-a-number")
        .arg("val")
        .arg("x")
        .query_async(&mut raw)
        .await?;
    let key = Key::new(Kind::Presentity, "mallory@example.com");
    assert!(matches!(
        backend.get_record(&key).await,
        Err(StoreError::Corrupt { .. })
    ));
    // A key of the wrong type is a protocol error, not an outage.
    let _: () = redis::cmd("SET")
        .arg("pres:{trudy@example.com}")
        .arg("plain string")
        .query_async(&mut raw)
        .await?;
    let key = Key::new(Kind::Presentity, "trudy@example.com");
    assert!(matches!(
        backend.get_record(&key).await,
        Err(StoreError::Protocol(_))
    ));
    Ok(())
}
