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

/// A slot held in migration (IMPORTING on the target, MIGRATING on the
/// owner) for seconds, with its keys moved part-way: every command of an
/// entity in that slot keeps answering within the command timeout (ASK
/// redirections followed, no TRYAGAIN), swaps announce to the feed, and it
/// all goes on once the slot has moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_in_migration_keeps_serving_its_entities() -> anyhow::Result<()> {
    let cluster = RedisCluster::start(3)?;
    let backend = redis_cluster_backend(&cluster).await?;
    let entity = "alice@example.com";
    let record = Key::new(Kind::Presentity, entity);
    let subs = Key::new(Kind::Subscriptions, entity);
    // A key of the same slot that exists nowhere until the migration began.
    let late = Key::new(Kind::Rules, entity);
    let mut rev = backend
        .cas_record(&record, 0, Some(Bytes::from_static(b"v0")), None, None)
        .await?
        .ok_or_else(|| anyhow::anyhow!("first swap lost"))?;
    backend
        .map_put(&subs, "dialog-1", Bytes::from_static(b"edge-0"))
        .await?;
    let (control, mut feed) = backend.open_feed().await?;
    control.watch(entity).await?;

    let slot = cluster.slot_of(&record_key(&record))?;
    let from = cluster.owner_of(slot)?;
    let migration = cluster.begin_migration(slot, (from + 1) % cluster.nodes().len())?;
    let mut late_rev = 0;
    // Rounds of traffic while the slot is migrating; after the third, the
    // keys move to the target (later commands are answered there via ASK).
    for round in 0..8 {
        if round == 3 {
            assert!(cluster.migrate_keys(&migration, 100)? > 0);
        }
        let payload = format!("during-{round}");
        let swapped = backend
            .cas_record(
                &record,
                rev,
                Some(Bytes::from(payload.clone())),
                None,
                Some(message(entity, &payload)),
            )
            .await?;
        rev = swapped.ok_or_else(|| anyhow::anyhow!("swap in round {round} lost"))?;
        if round < 3 {
            // The owner still holds the record and serves the channel.
            wait_for_payload(&mut feed, &payload).await?;
        }
        assert_eq!(
            backend.get_record(&record).await?.map(|r| r.value),
            Some(Bytes::from(payload.clone()))
        );
        late_rev = backend
            .cas_record(&late, late_rev, Some(Bytes::from(payload)), None, None)
            .await?
            .ok_or_else(|| anyhow::anyhow!("swap of a new key in round {round} lost"))?;
        let field = format!("dialog-during-{round}");
        backend
            .map_put(&subs, &field, Bytes::from_static(b"edge-1"))
            .await?;
        assert_eq!(
            backend.map_get(&subs, &field).await?,
            Some(Bytes::from_static(b"edge-1"))
        );
        assert!(backend.map_list(&subs).await?.len() >= 2);
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    }
    assert_eq!(
        backend.map_take(&subs, "dialog-1", Some(b"edge-0")).await?,
        Some(Bytes::from_static(b"edge-0"))
    );

    cluster.finish_migration(migration)?;
    assert_eq!(cluster.owner_of(slot)?, (from + 1) % cluster.nodes().len());
    // Swaps answered by the target once the record had moved announced on
    // the target's shard, which the feed joins only when the slot is
    // handed over: the feed then tells its subscriber to re-read.
    while next_item(&mut feed).await? != FeedItem::Resync {}
    let after = eventually(|| {
        backend.cas_record(
            &record,
            rev,
            Some(Bytes::from_static(b"after")),
            None,
            Some(message(entity, "after")),
        )
    })
    .await?;
    assert_eq!(after, Some(rev + 1));
    wait_for_payload(&mut feed, "after").await?;
    assert_eq!(
        backend.get_record(&late).await?.map(|r| r.rev),
        Some(late_rev)
    );
    Ok(())
}
