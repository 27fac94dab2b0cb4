//! Behaviour specific to the in-memory backend.

use std::time::Duration;

use bytes::Bytes;
use store::memory::MemoryBackend;
use store::{Backend, Key, Kind};

#[tokio::test]
async fn expired_records_are_purged() -> anyhow::Result<()> {
    let backend = MemoryBackend::new();
    for index in 0..10 {
        let key = Key::new(Kind::Bindings, format!("user{index}@example.com"));
        let ttl = if index < 6 { Some(500) } else { None };
        backend
            .cas_record(&key, 0, Some(Bytes::from_static(b"b")), ttl, None)
            .await?;
    }
    assert_eq!(backend.record_count(), 10);
    assert_eq!(backend.purge_expired(), 0);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(backend.purge_expired(), 6);
    assert_eq!(backend.record_count(), 4);
    Ok(())
}

#[tokio::test]
async fn swaps_purge_as_they_go() -> anyhow::Result<()> {
    let backend = MemoryBackend::new();
    let short = Key::new(Kind::Presentity, "short@example.com");
    backend
        .cas_record(&short, 0, Some(Bytes::from_static(b"s")), Some(30), None)
        .await?;
    tokio::time::sleep(Duration::from_millis(80)).await;
    // Any swap drops what has expired, without a separate sweep.
    let other = Key::new(Kind::Presentity, "other@example.com");
    backend
        .cas_record(&other, 0, Some(Bytes::from_static(b"o")), None, None)
        .await?;
    assert_eq!(backend.record_count(), 1);
    Ok(())
}

#[tokio::test]
async fn clones_share_state() -> anyhow::Result<()> {
    let backend = MemoryBackend::new();
    let clone = backend.clone();
    let key = Key::new(Kind::Rules, "alice@example.com");
    backend
        .cas_record(&key, 0, Some(Bytes::from_static(b"r")), None, None)
        .await?;
    assert_eq!(clone.get_record(&key).await?.map(|r| r.rev), Some(1));
    Ok(())
}
