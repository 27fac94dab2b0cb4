//! One behaviour suite, run against every backend: both must give the
//! services exactly the same semantics.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::common::{
    expect_silence, message, next_item, next_message, wait_for_payload, DynBackend,
};
use bytes::Bytes;
use store::{FeedItem, Key, Kind, Record, Schedule, FEED_CAPACITY};

fn presentity(entity: &str) -> Key {
    Key::new(Kind::Presentity, entity)
}

async fn cas_creates_updates_and_deletes(backend: DynBackend) -> anyhow::Result<()> {
    let key = presentity("alice@example.com");
    assert_eq!(backend.get_record(&key).await?, None);

    let rev = backend
        .cas_record(&key, 0, Some(Bytes::from_static(b"v1")), None, None)
        .await?;
    assert_eq!(rev, Some(1));
    assert_eq!(
        backend.get_record(&key).await?,
        Some(Record {
            rev: 1,
            value: Bytes::from_static(b"v1")
        })
    );

    let rev = backend
        .cas_record(&key, 1, Some(Bytes::from_static(b"v2")), None, None)
        .await?;
    assert_eq!(rev, Some(2));

    // A stale revision changes nothing.
    let stale = backend
        .cas_record(&key, 1, Some(Bytes::from_static(b"lost")), None, None)
        .await?;
    assert_eq!(stale, None);
    // Creating over an existing record is a conflict too.
    let create = backend
        .cas_record(&key, 0, Some(Bytes::from_static(b"lost")), None, None)
        .await?;
    assert_eq!(create, None);
    let record = backend.get_record(&key).await?;
    assert_eq!(
        record,
        Some(Record {
            rev: 2,
            value: Bytes::from_static(b"v2")
        })
    );

    // Deleting with the right revision removes the record: it reads as
    // absent and the next write starts from revision 0 again.
    assert_eq!(
        backend.cas_record(&key, 2, None, None, None).await?,
        Some(3)
    );
    assert_eq!(backend.get_record(&key).await?, None);
    assert_eq!(backend.cas_record(&key, 2, None, None, None).await?, None);
    assert_eq!(
        backend
            .cas_record(&key, 0, Some(Bytes::from_static(b"again")), None, None)
            .await?,
        Some(1)
    );
    Ok(())
}

async fn empty_values_and_binary_values_round_trip(backend: DynBackend) -> anyhow::Result<()> {
    let empty = presentity("empty@example.com");
    assert_eq!(
        backend
            .cas_record(&empty, 0, Some(Bytes::new()), None, None)
            .await?,
        Some(1)
    );
    assert_eq!(
        backend.get_record(&empty).await?,
        Some(Record {
            rev: 1,
            value: Bytes::new()
        })
    );
    let binary = presentity("binary@example.com");
    let bytes = Bytes::from((0u8..=255).collect::<Vec<u8>>());
    backend
        .cas_record(&binary, 0, Some(bytes.clone()), None, None)
        .await?;
    assert_eq!(
        backend
            .get_record(&binary)
            .await?
            .map(|record| record.value),
        Some(bytes)
    );
    Ok(())
}

async fn kinds_and_entities_are_separate(backend: DynBackend) -> anyhow::Result<()> {
    let entity = "carol@example.com";
    let kinds = [
        Kind::Bindings,
        Kind::Presentity,
        Kind::Subscriptions,
        Kind::Rules,
    ];
    for (index, kind) in kinds.iter().enumerate() {
        let value = Bytes::from(format!("value {index}"));
        let rev = backend
            .cas_record(&Key::new(*kind, entity), 0, Some(value), None, None)
            .await?;
        assert_eq!(rev, Some(1));
    }
    for (index, kind) in kinds.iter().enumerate() {
        let record = backend.get_record(&Key::new(*kind, entity)).await?;
        assert_eq!(
            record.map(|record| record.value),
            Some(Bytes::from(format!("value {index}")))
        );
    }
    // A map of a key is not its record.
    let key = Key::new(Kind::Subscriptions, entity);
    backend
        .map_put(&key, "dialog", Bytes::from_static(b"x"))
        .await?;
    assert_eq!(
        backend.get_record(&key).await?.map(|record| record.rev),
        Some(1)
    );
    // Entities that would confuse a naive key layout stay apart.
    let braces = presentity("a{b}c");
    let plain = presentity("abc");
    backend
        .cas_record(&braces, 0, Some(Bytes::from_static(b"braces")), None, None)
        .await?;
    assert_eq!(backend.get_record(&plain).await?, None);
    assert_eq!(
        backend
            .get_record(&braces)
            .await?
            .map(|record| record.value),
        Some(Bytes::from_static(b"braces"))
    );
    Ok(())
}

/// A TTL long enough that a loaded machine still reads the record before it
/// expires, and the wait that surely outlasts it.
const SHORT_TTL_MS: u64 = 500;
const PAST_SHORT_TTL: Duration = Duration::from_millis(900);

async fn ttl_expires_the_record(backend: DynBackend) -> anyhow::Result<()> {
    let key = presentity("ttl@example.com");
    backend
        .cas_record(
            &key,
            0,
            Some(Bytes::from_static(b"short")),
            Some(SHORT_TTL_MS),
            None,
        )
        .await?;
    assert_eq!(
        backend.get_record(&key).await?.map(|record| record.rev),
        Some(1)
    );
    tokio::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(backend.get_record(&key).await?, None);
    // Expired means absent: revision 1 no longer matches, 0 does.
    assert_eq!(
        backend
            .cas_record(&key, 1, Some(Bytes::from_static(b"x")), None, None)
            .await?,
        None
    );
    assert_eq!(
        backend
            .cas_record(
                &key,
                0,
                Some(Bytes::from_static(b"x")),
                Some(SHORT_TTL_MS),
                None
            )
            .await?,
        Some(1)
    );
    // A later swap without a TTL makes the record permanent.
    assert_eq!(
        backend
            .cas_record(&key, 1, Some(Bytes::from_static(b"kept")), None, None)
            .await?,
        Some(2)
    );
    tokio::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(
        backend.get_record(&key).await?,
        Some(Record {
            rev: 2,
            value: Bytes::from_static(b"kept")
        })
    );
    // And a swap with a longer TTL replaces a shorter one.
    backend
        .cas_record(
            &key,
            2,
            Some(Bytes::from_static(b"a")),
            Some(SHORT_TTL_MS),
            None,
        )
        .await?;
    backend
        .cas_record(&key, 3, Some(Bytes::from_static(b"b")), Some(60_000), None)
        .await?;
    tokio::time::sleep(PAST_SHORT_TTL).await;
    assert_eq!(
        backend.get_record(&key).await?.map(|record| record.rev),
        Some(4)
    );
    Ok(())
}

async fn get_records_answers_in_order(backend: DynBackend) -> anyhow::Result<()> {
    assert!(backend.get_records(&[]).await?.is_empty());
    let keys: Vec<Key> = (0..5)
        .map(|index| Key::new(Kind::Bindings, format!("user{index}@example.com")))
        .collect();
    for (index, key) in keys.iter().enumerate() {
        if index % 2 == 0 {
            backend
                .cas_record(key, 0, Some(Bytes::from(format!("b{index}"))), None, None)
                .await?;
        }
    }
    let records = backend.get_records(&keys).await?;
    assert_eq!(records.len(), keys.len());
    for (index, record) in records.iter().enumerate() {
        if index % 2 == 0 {
            assert_eq!(
                record.as_ref().map(|record| record.value.clone()),
                Some(Bytes::from(format!("b{index}")))
            );
        } else {
            assert_eq!(record, &None);
        }
    }
    // The same key twice is answered twice.
    let twice = backend
        .get_records(&[keys[0].clone(), keys[0].clone()])
        .await?;
    assert_eq!(twice[0], twice[1]);
    assert!(twice[0].is_some());
    Ok(())
}

async fn announce_reaches_only_watching_feeds(backend: DynBackend) -> anyhow::Result<()> {
    let (alice_control, mut alice_feed) = backend.open_feed().await?;
    let (bob_control, mut bob_feed) = backend.open_feed().await?;
    alice_control.watch("alice@example.com").await?;
    bob_control.watch("bob@example.com").await?;

    let key = presentity("alice@example.com");
    backend
        .cas_record(
            &key,
            0,
            Some(Bytes::from_static(b"open")),
            None,
            Some(message("alice@example.com", "changed-1")),
        )
        .await?;
    let received = next_message(&mut alice_feed).await?;
    assert_eq!(received, message("alice@example.com", "changed-1"));
    expect_silence(&mut bob_feed).await?;
    Ok(())
}

async fn failed_swap_announces_nothing(backend: DynBackend) -> anyhow::Result<()> {
    let (control, mut feed) = backend.open_feed().await?;
    control.watch("dave@example.com").await?;
    let key = presentity("dave@example.com");
    let conflict = backend
        .cas_record(
            &key,
            7,
            Some(Bytes::from_static(b"x")),
            None,
            Some(message("dave@example.com", "must-not-arrive")),
        )
        .await?;
    assert_eq!(conflict, None);
    expect_silence(&mut feed).await?;
    // A delete announces like a write does.
    backend
        .cas_record(&key, 0, Some(Bytes::from_static(b"x")), None, None)
        .await?;
    backend
        .cas_record(
            &key,
            1,
            None,
            None,
            Some(message("dave@example.com", "gone")),
        )
        .await?;
    assert_eq!(
        next_message(&mut feed).await?,
        message("dave@example.com", "gone")
    );
    Ok(())
}

async fn announcements_follow_revision_order(backend: DynBackend) -> anyhow::Result<()> {
    let (control, mut feed) = backend.open_feed().await?;
    control.watch("erin@example.com").await?;
    let key = presentity("erin@example.com");
    for rev in 0..50u64 {
        let payload = format!("rev {}", rev + 1);
        let swapped = backend
            .cas_record(
                &key,
                rev,
                Some(Bytes::from(payload.clone())),
                None,
                Some(message("erin@example.com", &payload)),
            )
            .await?;
        assert_eq!(swapped, Some(rev + 1));
    }
    for rev in 1..=50u64 {
        assert_eq!(
            next_message(&mut feed).await?.payload,
            Bytes::from(format!("rev {rev}"))
        );
    }
    Ok(())
}

async fn unwatch_stops_delivery(backend: DynBackend) -> anyhow::Result<()> {
    let entity = "frank@example.com";
    let (control, mut feed) = backend.open_feed().await?;
    control.watch(entity).await?;
    // Watching twice is the same as once: one copy per message.
    control.watch(entity).await?;
    backend.publish(message(entity, "one")).await?;
    assert_eq!(next_message(&mut feed).await?.payload, "one");
    expect_silence(&mut feed).await?;

    control.unwatch(entity).await?;
    backend.publish(message(entity, "two")).await?;
    expect_silence(&mut feed).await?;
    // Unwatching what is not watched is harmless.
    control.unwatch(entity).await?;
    control.unwatch("nobody@example.com").await?;

    control.watch(entity).await?;
    backend.publish(message(entity, "three")).await?;
    assert_eq!(next_message(&mut feed).await?.payload, "three");
    Ok(())
}

async fn one_feed_hears_many_entities(backend: DynBackend) -> anyhow::Result<()> {
    let (control, mut feed) = backend.open_feed().await?;
    let entities: Vec<String> = (0..20).map(|i| format!("w{i}@example.com")).collect();
    for entity in &entities {
        control.watch(entity).await?;
    }
    for entity in &entities {
        backend.publish(message(entity, entity)).await?;
    }
    let mut heard = HashSet::new();
    for _ in &entities {
        let received = next_message(&mut feed).await?;
        assert_eq!(received.payload, received.entity.as_bytes());
        heard.insert(received.entity);
    }
    assert_eq!(heard.len(), entities.len());
    // Two feeds watching the same entity both hear it.
    let (other_control, mut other_feed) = backend.open_feed().await?;
    other_control.watch(&entities[0]).await?;
    backend.publish(message(&entities[0], "both")).await?;
    assert_eq!(next_message(&mut feed).await?.payload, "both");
    assert_eq!(next_message(&mut other_feed).await?.payload, "both");
    Ok(())
}

async fn lagging_feed_gets_resync(backend: DynBackend) -> anyhow::Result<()> {
    let entity = "busy@example.com";
    let (control, mut feed) = backend.open_feed().await?;
    control.watch(entity).await?;
    let published = 2 * FEED_CAPACITY;
    for index in 0..published {
        backend.publish(message(entity, &index.to_string())).await?;
    }
    // Let the feed take in everything before reading anything.
    tokio::time::sleep(Duration::from_secs(1)).await;
    // Nothing has been read yet, so the queue overflowed: the reader sees
    // the messages that fit, in order, then a resync.
    let mut expected = 0usize;
    while let FeedItem::Message(received) = next_item(&mut feed).await? {
        assert_eq!(received.payload, expected.to_string().into_bytes());
        expected += 1;
    }
    assert!(expected < published, "no message was dropped");
    // After the resync the feed carries new messages again.
    backend.publish(message(entity, "after")).await?;
    wait_for_payload(&mut feed, "after").await?;
    Ok(())
}

async fn dropped_receiver_closes_the_feed(backend: DynBackend) -> anyhow::Result<()> {
    let (control, feed) = backend.open_feed().await?;
    control.watch("gina@example.com").await?;
    drop(feed);
    // Publishing to a feed whose subscriber is gone is not an error, and
    // the control reports the feed as closed once it has shut down.
    backend.publish(message("gina@example.com", "x")).await?;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match control.watch("other@example.com").await {
            Err(store::StoreError::Unavailable(_)) => return Ok(()),
            Ok(()) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await
            }
            other => anyhow::bail!("feed did not close: {other:?}"),
        }
    }
}

async fn map_put_get_list_take(backend: DynBackend) -> anyhow::Result<()> {
    let key = Key::new(Kind::Subscriptions, "henry@example.com");
    assert_eq!(backend.map_get(&key, "d1").await?, None);
    assert!(backend.map_list(&key).await?.is_empty());

    backend
        .map_put(&key, "d1", Bytes::from_static(b"one"))
        .await?;
    backend
        .map_put(&key, "d2", Bytes::from_static(b"two"))
        .await?;
    backend
        .map_put(&key, "d2", Bytes::from_static(b"two'"))
        .await?;
    assert_eq!(
        backend.map_get(&key, "d2").await?,
        Some(Bytes::from_static(b"two'"))
    );
    let mut listed = backend.map_list(&key).await?;
    listed.sort();
    assert_eq!(
        listed,
        vec![
            ("d1".to_owned(), Bytes::from_static(b"one")),
            ("d2".to_owned(), Bytes::from_static(b"two'")),
        ]
    );

    // only_if mismatch: nothing removed.
    assert_eq!(backend.map_take(&key, "d1", Some(b"other")).await?, None);
    assert_eq!(
        backend.map_get(&key, "d1").await?,
        Some(Bytes::from_static(b"one"))
    );
    // only_if match: removed and returned.
    assert_eq!(
        backend.map_take(&key, "d1", Some(b"one")).await?,
        Some(Bytes::from_static(b"one"))
    );
    assert_eq!(backend.map_get(&key, "d1").await?, None);
    // Unconditional take, then taking again finds nothing.
    assert_eq!(
        backend.map_take(&key, "d2", None).await?,
        Some(Bytes::from_static(b"two'"))
    );
    assert_eq!(backend.map_take(&key, "d2", None).await?, None);
    assert_eq!(backend.map_take(&key, "absent", Some(b"x")).await?, None);
    assert!(backend.map_list(&key).await?.is_empty());
    // A field can come back after being taken.
    backend.map_put(&key, "d1", Bytes::new()).await?;
    assert_eq!(
        backend.map_take(&key, "d1", Some(b"")).await?,
        Some(Bytes::new())
    );
    Ok(())
}

async fn concurrent_takers_have_one_winner(backend: DynBackend) -> anyhow::Result<()> {
    let key = Key::new(Kind::Subscriptions, "ivan@example.com");
    for (round, only_if) in [(0, Some(b"state".as_slice())), (1, None)] {
        let field = format!("dialog-{round}");
        backend
            .map_put(&key, &field, Bytes::from_static(b"state"))
            .await?;
        let mut takers = Vec::new();
        for _ in 0..20 {
            let backend = Arc::clone(&backend);
            let key = key.clone();
            let field = field.clone();
            let only_if = only_if.map(<[u8]>::to_vec);
            takers.push(tokio::spawn(async move {
                backend.map_take(&key, &field, only_if.as_deref()).await
            }));
        }
        let mut winners = 0;
        for taker in takers {
            if let Some(value) = taker.await?? {
                assert_eq!(value, "state");
                winners += 1;
            }
        }
        assert_eq!(winners, 1, "round {round}");
    }
    Ok(())
}

async fn map_replace_moves_a_value_exactly_once(backend: DynBackend) -> anyhow::Result<()> {
    let key = Key::new(Kind::Subscriptions, "mallory@example.com");
    // Absent field or wrong expectation: nothing changes.
    assert!(
        !backend
            .map_replace(&key, "d", b"old", Bytes::from_static(b"new"))
            .await?
    );
    assert_eq!(backend.map_get(&key, "d").await?, None);
    backend
        .map_put(&key, "d", Bytes::from_static(b"owner=a"))
        .await?;
    assert!(
        !backend
            .map_replace(&key, "d", b"owner=x", Bytes::from_static(b"owner=b"))
            .await?
    );
    assert_eq!(
        backend.map_get(&key, "d").await?,
        Some(Bytes::from_static(b"owner=a"))
    );
    // Twenty claimers race to move the same value: one wins.
    let mut claimers = Vec::new();
    for i in 0..20 {
        let backend = Arc::clone(&backend);
        let key = key.clone();
        claimers.push(tokio::spawn(async move {
            let value = Bytes::from(format!("owner=c{i}"));
            backend.map_replace(&key, "d", b"owner=a", value).await
        }));
    }
    let mut winners = 0;
    for claimer in claimers {
        if claimer.await?? {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    let now = backend.map_get(&key, "d").await?.expect("still present");
    assert!(now.starts_with(b"owner=c"), "{now:?}");
    Ok(())
}

async fn concurrent_swaps_have_one_winner(backend: DynBackend) -> anyhow::Result<()> {
    let key = presentity("judy@example.com");
    let mut writers = Vec::new();
    for writer in 0..20 {
        let backend = Arc::clone(&backend);
        let key = key.clone();
        writers.push(tokio::spawn(async move {
            backend
                .cas_record(&key, 0, Some(Bytes::from(format!("w{writer}"))), None, None)
                .await
        }));
    }
    let mut winners = 0;
    for writer in writers {
        if let Some(rev) = writer.await?? {
            assert_eq!(rev, 1);
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
    Ok(())
}

async fn schedules_order_limit_and_move(backend: DynBackend) -> anyhow::Result<()> {
    let schedule = Schedule::Publications;
    assert!(backend.due(schedule, u64::MAX >> 12, 10).await?.is_empty());

    backend.schedule(schedule, "c", 3_000).await?;
    backend.schedule(schedule, "a", 1_000).await?;
    backend.schedule(schedule, "b", 2_000).await?;
    backend.schedule(schedule, "later", 9_000).await?;
    // Other schedules are independent.
    backend.schedule(Schedule::Bindings, "a", 10).await?;

    assert_eq!(
        backend.due(schedule, 3_000, 10).await?,
        vec![
            ("a".to_owned(), 1_000),
            ("b".to_owned(), 2_000),
            ("c".to_owned(), 3_000)
        ]
    );
    assert_eq!(
        backend.due(schedule, 3_000, 2).await?,
        vec![("a".to_owned(), 1_000), ("b".to_owned(), 2_000)]
    );
    assert!(backend.due(schedule, 999, 10).await?.is_empty());
    assert!(backend.due(schedule, 3_000, 0).await?.is_empty());

    // Rescheduling moves the member; it is never listed twice.
    backend.schedule(schedule, "a", 5_000).await?;
    assert_eq!(
        backend.due(schedule, 5_000, 10).await?,
        vec![
            ("b".to_owned(), 2_000),
            ("c".to_owned(), 3_000),
            ("a".to_owned(), 5_000)
        ]
    );
    backend.unschedule(schedule, "b").await?;
    backend.unschedule(schedule, "never-scheduled").await?;
    assert_eq!(
        backend.due(schedule, 10_000, 10).await?,
        vec![
            ("c".to_owned(), 3_000),
            ("a".to_owned(), 5_000),
            ("later".to_owned(), 9_000)
        ]
    );
    assert_eq!(
        backend.due(Schedule::Bindings, 10_000, 10).await?,
        vec![("a".to_owned(), 10)]
    );
    // Members are counted once, per schedule.
    assert_eq!(backend.schedule_len(schedule).await?, 3);
    assert_eq!(backend.schedule_len(Schedule::Bindings).await?, 1);
    assert_eq!(backend.schedule_len(Schedule::Subscriptions).await?, 0);
    assert!(backend
        .due(Schedule::Subscriptions, 10_000, 10)
        .await?
        .is_empty());
    Ok(())
}

async fn schedules_hold_realistic_times(backend: DynBackend) -> anyhow::Result<()> {
    // Current epoch milliseconds, and members with separators in them.
    let now: u64 = 1_790_000_000_123;
    let member = "alice@example.com\ndialog-1;tag=x";
    backend
        .schedule(Schedule::Subscriptions, member, now)
        .await?;
    backend
        .schedule(Schedule::Subscriptions, "other", now + 1)
        .await?;
    assert_eq!(
        backend.due(Schedule::Subscriptions, now, 10).await?,
        vec![(member.to_owned(), now)]
    );
    Ok(())
}

async fn ping_answers(backend: DynBackend) -> anyhow::Result<()> {
    backend.ping().await?;
    Ok(())
}

async fn scheduled_swap_writes_schedule_and_record(backend: DynBackend) -> anyhow::Result<()> {
    let (control, mut feed) = backend.open_feed().await?;
    control.watch("erin@example.com").await?;
    let key = presentity("erin@example.com");
    let schedule = Schedule::Publications;
    let written = backend
        .cas_record_scheduled(
            &key,
            0,
            Some(Bytes::from_static(b"v1")),
            None,
            Some(message("erin@example.com", "one")),
            (schedule, "erin@example.com", 5_000),
        )
        .await?;
    assert_eq!(written, Some(1));
    assert_eq!(
        backend.get_record(&key).await?.map(|r| (r.rev, r.value)),
        Some((1, Bytes::from_static(b"v1")))
    );
    assert_eq!(
        backend.due(schedule, 10_000, 10).await?,
        vec![("erin@example.com".to_owned(), 5_000)]
    );
    assert_eq!(
        next_message(&mut feed).await?,
        message("erin@example.com", "one")
    );
    // A second write moves the entry; without an announcement none is heard.
    backend
        .cas_record_scheduled(
            &key,
            1,
            Some(Bytes::from_static(b"v2")),
            None,
            None,
            (schedule, "erin@example.com", 7_000),
        )
        .await?;
    assert_eq!(
        backend.due(schedule, 10_000, 10).await?,
        vec![("erin@example.com".to_owned(), 7_000)]
    );
    expect_silence(&mut feed).await?;
    // A lost race writes nothing and announces nothing (its caller re-reads
    // and schedules again from what it writes then).
    let conflict = backend
        .cas_record_scheduled(
            &key,
            1,
            Some(Bytes::from_static(b"stale")),
            None,
            Some(message("erin@example.com", "must-not-arrive")),
            (schedule, "erin@example.com", 9_000),
        )
        .await?;
    assert_eq!(conflict, None);
    assert_eq!(
        backend.get_record(&key).await?.map(|r| r.value),
        Some(Bytes::from_static(b"v2"))
    );
    assert_eq!(backend.due(schedule, 10_000, 10).await?.len(), 1);
    expect_silence(&mut feed).await?;
    Ok(())
}

/// Runs every behaviour against a fresh store of each backend.
macro_rules! conformance {
    ($($behaviour:ident),* $(,)?) => {
        mod memory_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() -> anyhow::Result<()> {
                    let backend: super::DynBackend =
                        std::sync::Arc::new(store::memory::MemoryBackend::new());
                    super::$behaviour(backend).await
                }
            )*
        }

        mod redis_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() -> anyhow::Result<()> {
                    let server = store::testing::RedisServer::start()?;
                    let backend: super::DynBackend =
                        std::sync::Arc::new(crate::common::redis_backend(&server).await?);
                    super::$behaviour(backend).await
                }
            )*
        }

        mod redis_cluster_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $behaviour() -> anyhow::Result<()> {
                    let cluster = store::testing::RedisCluster::start(3)?;
                    let backend: super::DynBackend =
                        std::sync::Arc::new(crate::common::redis_cluster_backend(&cluster).await?);
                    super::$behaviour(backend).await
                }
            )*
        }
    };
}

conformance!(
    cas_creates_updates_and_deletes,
    empty_values_and_binary_values_round_trip,
    kinds_and_entities_are_separate,
    ttl_expires_the_record,
    get_records_answers_in_order,
    announce_reaches_only_watching_feeds,
    failed_swap_announces_nothing,
    announcements_follow_revision_order,
    unwatch_stops_delivery,
    one_feed_hears_many_entities,
    lagging_feed_gets_resync,
    dropped_receiver_closes_the_feed,
    map_put_get_list_take,
    concurrent_takers_have_one_winner,
    map_replace_moves_a_value_exactly_once,
    concurrent_swaps_have_one_winner,
    schedules_order_limit_and_move,
    schedules_hold_realistic_times,
    scheduled_swap_writes_schedule_and_record,
    ping_answers,
);
