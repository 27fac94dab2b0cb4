//! Choosing a backend from configuration.

use std::time::Duration;

use bytes::Bytes;
use store::testing::{RedisServer, TestServerError};
use store::{Key, Kind, StoreError};

#[tokio::test]
async fn memory_url_opens_the_in_memory_store() -> anyhow::Result<()> {
    for url in ["memory", "memory:"] {
        let backend = store::open(url).await?;
        let key = Key::new(Kind::Rules, "alice@example.com");
        assert_eq!(
            backend
                .cas_record(&key, 0, Some(Bytes::from_static(b"r")), None, None)
                .await?,
            Some(1)
        );
    }
    Ok(())
}

#[tokio::test]
async fn redis_url_opens_redis() -> anyhow::Result<()> {
    let server = RedisServer::start()?;
    let backend = store::open(&server.url()).await?;
    backend.ping().await?;
    let key = Key::new(Kind::Rules, "alice@example.com");
    backend
        .cas_record(&key, 0, Some(Bytes::from_static(b"r")), None, None)
        .await?;
    // A second backend on the same server sees the same state.
    let other = store::open(&server.url()).await?;
    assert_eq!(other.get_record(&key).await?.map(|r| r.rev), Some(1));
    Ok(())
}

#[tokio::test]
async fn unknown_urls_are_rejected() {
    let result = tokio::time::timeout(Duration::from_secs(5), store::open("postgres://x")).await;
    assert!(matches!(result, Ok(Err(StoreError::Protocol(_)))));
}

#[test]
fn missing_binary_error_names_the_package() {
    let message = TestServerError::NotInstalled.to_string();
    assert!(message.contains("redis-server"));
    assert!(message.contains("apt-get install"));
}

#[test]
fn stopped_server_can_be_restarted_on_its_port() -> anyhow::Result<()> {
    let mut server = RedisServer::start()?;
    let port = server.port();
    assert!(server.is_running());
    server.stop()?;
    assert!(!server.is_running());
    assert!(server.command("PING").is_err());
    server.restart()?;
    assert_eq!(server.port(), port);
    assert!(server.command("PING")?.starts_with("+PONG"));
    Ok(())
}
