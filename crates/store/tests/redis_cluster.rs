//! Cluster-only behaviour, against a real 3-master Redis Cluster: keys of
//! one entity share a slot, entities spread over the shards, a feed follows
//! slot migrations and master restarts.

use std::collections::HashSet;

use crate::common::{eventually, message, next_item, redis_cluster_backend, wait_for_payload};
use bytes::Bytes;
use store::redis::{channel_name, map_key, record_key};
use store::testing::RedisCluster;
use store::{Backend, FeedItem, Key, Kind};

/// Entities whose channels land on `count` different masters.
fn entities_on_distinct_masters(
    cluster: &RedisCluster,
    count: usize,
) -> anyhow::Result<Vec<String>> {
    let mut chosen = Vec::new();
    let mut owners = HashSet::new();
    for index in 0..1000 {
        let entity = format!("user{index}@example.com");
        let owner = cluster.owner_of(cluster.slot_of(&channel_name(&entity))?)?;
        if owners.insert(owner) {
            chosen.push(entity);
            if chosen.len() == count {
                return Ok(chosen);
            }
        }
    }
    anyhow::bail!("could not find entities on {count} masters")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_of_an_entity_share_one_slot() -> anyhow::Result<()> {
    let cluster = RedisCluster::start(3)?;
    for entity in ["alice@example.com", "we{ir}d", "sip:bob@example.com;x=1"] {
        let record = Key::new(Kind::Presentity, entity);
        let subs = Key::new(Kind::Subscriptions, entity);
        let slot = cluster.slot_of(&channel_name(entity))?;
        assert_eq!(cluster.slot_of(&record_key(&record))?, slot);
        assert_eq!(cluster.slot_of(&record_key(&subs))?, slot);
        assert_eq!(cluster.slot_of(&map_key(&subs))?, slot);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_feed_hears_entities_on_every_master() -> anyhow::Result<()> {
    let cluster = RedisCluster::start(3)?;
    let backend = redis_cluster_backend(&cluster).await?;
    let entities = entities_on_distinct_masters(&cluster, 3)?;
    let (control, mut feed) = backend.open_feed().await?;
    for entity in &entities {
        control.watch(entity).await?;
    }
    for entity in &entities {
        let key = Key::new(Kind::Presentity, entity.as_str());
        backend
            .cas_record(
                &key,
                0,
                Some(Bytes::from_static(b"x")),
                None,
                Some(message(entity, entity)),
            )
            .await?;
    }
    let mut heard = HashSet::new();
    for _ in &entities {
        match next_item(&mut feed).await? {
            FeedItem::Message(received) => {
                assert_eq!(received.payload, received.entity.as_bytes());
                heard.insert(received.entity);
            }
            FeedItem::Resync => anyhow::bail!("unexpected resync"),
        }
    }
    assert_eq!(heard.len(), 3);
    // Batch reads span every shard.
    let keys: Vec<Key> = entities
        .iter()
        .map(|entity| Key::new(Kind::Presentity, entity.as_str()))
        .collect();
    let records = backend.get_records(&keys).await?;
    assert!(records
        .iter()
        .all(|record| record.as_ref().map(|r| r.rev) == Some(1)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_follows_a_slot_migration() -> anyhow::Result<()> {
    let cluster = RedisCluster::start(3)?;
    let backend = redis_cluster_backend(&cluster).await?;
    let entity = "alice@example.com";
    let key = Key::new(Kind::Presentity, entity);
    backend
        .cas_record(&key, 0, Some(Bytes::from_static(b"v1")), None, None)
        .await?;
    let (control, mut feed) = backend.open_feed().await?;
    control.watch(entity).await?;
    backend.publish(message(entity, "before")).await?;
    wait_for_payload(&mut feed, "before").await?;

    let slot = cluster.slot_of(&channel_name(entity))?;
    let from = cluster.owner_of(slot)?;
    let to = (from + 1) % cluster.nodes().len();
    cluster.migrate_slot(slot, to)?;
    assert_eq!(cluster.owner_of(slot)?, to);

    // The old owner dropped the shard subscription; the feed re-subscribes
    // at the new owner and tells the subscriber to resynchronise.
    assert_eq!(next_item(&mut feed).await?, FeedItem::Resync);
    // The record moved with its slot, and swaps announce from the new owner.
    let record = eventually(|| backend.get_record(&key)).await?;
    assert_eq!(record.map(|record| record.rev), Some(1));
    backend
        .cas_record(
            &key,
            1,
            Some(Bytes::from_static(b"v2")),
            None,
            Some(message(entity, "after")),
        )
        .await?;
    wait_for_payload(&mut feed, "after").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feed_resyncs_after_a_master_restarts() -> anyhow::Result<()> {
    let mut cluster = RedisCluster::start(3)?;
    let backend = redis_cluster_backend(&cluster).await?;
    let entity = "alice@example.com";
    let (control, mut feed) = backend.open_feed().await?;
    control.watch(entity).await?;
    backend.publish(message(entity, "before")).await?;
    wait_for_payload(&mut feed, "before").await?;

    let owner = cluster.owner_of(cluster.slot_of(&channel_name(entity))?)?;
    cluster.restart_node(owner)?;

    assert_eq!(next_item(&mut feed).await?, FeedItem::Resync);
    eventually(|| backend.publish(message(entity, "after"))).await?;
    wait_for_payload(&mut feed, "after").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_master_makes_its_entities_unavailable_not_hung() -> anyhow::Result<()> {
    let mut cluster = RedisCluster::start(3)?;
    let backend = redis_cluster_backend(&cluster).await?;
    let entities = entities_on_distinct_masters(&cluster, 3)?;
    let dead = &entities[0];
    let alive = &entities[1];
    let dead_owner = cluster.owner_of(cluster.slot_of(&channel_name(dead))?)?;
    let dead_key = Key::new(Kind::Presentity, dead.as_str());
    let alive_key = Key::new(Kind::Presentity, alive.as_str());
    backend
        .cas_record(&alive_key, 0, Some(Bytes::from_static(b"a")), None, None)
        .await?;

    cluster.stop_node(dead_owner)?;
    let started = std::time::Instant::now();
    let result = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        backend.get_record(&dead_key),
    )
    .await?;
    assert!(
        matches!(result, Err(store::StoreError::Unavailable(_))),
        "{result:?}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Entities on the other masters are still served.
    let record = eventually(|| backend.get_record(&alive_key)).await?;
    assert_eq!(record.map(|record| record.rev), Some(1));

    cluster.restart_node(dead_owner)?;
    // The restarted master is empty but serves its slots again.
    let record = eventually(|| backend.get_record(&dead_key)).await?;
    assert_eq!(record, None);
    Ok(())
}
