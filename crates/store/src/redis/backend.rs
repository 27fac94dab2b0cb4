//! [`Backend`] on Redis: each primitive as one command, pipeline or script.

use async_trait::async_trait;
use bytes::Bytes;
use redis::Value;
use tokio::sync::mpsc;

use super::keys::{channel_name, map_key, schedule_key};
use super::reply::{
    bytes_of, decode_record, due_of, hmget_record, pairs, protocol_error, string_of,
};
use super::scripts::Swap;
use super::{feed, with_timeout, RedisBackend};
use crate::{
    next_revision, Backend, ChannelMessage, FeedControl, FeedItem, Key, Record, Schedule,
    StoreError, UnixMillis,
};

impl RedisBackend {
    /// The swap script, scheduling with it when asked.
    async fn swap(
        &self,
        key: &Key,
        expected_rev: u64,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        announce: Option<ChannelMessage>,
        schedule: Option<(Schedule, &str, UnixMillis)>,
    ) -> Result<Option<u64>, StoreError> {
        let new_rev = next_revision(key, expected_rev)?;
        let publish = self.inner.topology.publish_command();
        let invocation = self.inner.scripts.swap(&Swap {
            key,
            expected_rev,
            new_rev,
            value: value.as_ref(),
            ttl_ms,
            announce: announce.as_ref().map(|message| (message, publish)),
            schedule,
        });
        match self.run_script(&invocation).await? {
            Value::Nil => Ok(None),
            Value::Int(1) => Ok(Some(new_rev)),
            other => Err(protocol_error("the swap script", &other)),
        }
    }
}

#[async_trait]
impl Backend for RedisBackend {
    async fn get_record(&self, key: &Key) -> Result<Option<Record>, StoreError> {
        let reply = self.run(&hmget_record(key)).await?;
        decode_record(key, reply)
    }

    async fn get_records(&self, keys: &[Key]) -> Result<Vec<Option<Record>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        if self.is_cluster() {
            // A cluster pipeline must stay within one slot; entities are
            // spread over all of them, so the reads go out concurrently.
            return futures::future::try_join_all(keys.iter().map(|key| self.get_record(key)))
                .await;
        }
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.add_command(hmget_record(key));
        }
        let mut conn = self.inner.commands.clone();
        let replies: Vec<Value> = with_timeout(
            self.inner.config.command_timeout,
            pipe.query_async(&mut conn),
        )
        .await?;
        if replies.len() != keys.len() {
            return Err(StoreError::Protocol(format!(
                "pipeline of {} HMGET returned {} replies",
                keys.len(),
                replies.len()
            )));
        }
        keys.iter()
            .zip(replies)
            .map(|(key, reply)| decode_record(key, reply))
            .collect()
    }

    async fn cas_record(
        &self,
        key: &Key,
        expected_rev: u64,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        announce: Option<ChannelMessage>,
    ) -> Result<Option<u64>, StoreError> {
        self.swap(key, expected_rev, value, ttl_ms, announce, None)
            .await
    }

    /// On a single server the schedule entry is written by the swap
    /// script itself: one round trip, and atomic with the record. A Redis
    /// Cluster keeps each schedule in one slot, generally not the record's,
    /// so there it is written first, as the default does.
    async fn cas_record_scheduled(
        &self,
        key: &Key,
        expected_rev: u64,
        value: Option<Bytes>,
        ttl_ms: Option<u64>,
        announce: Option<ChannelMessage>,
        schedule: (Schedule, &str, UnixMillis),
    ) -> Result<Option<u64>, StoreError> {
        if self.inner.topology.sharded() {
            self.schedule(schedule.0, schedule.1, schedule.2).await?;
            return self
                .swap(key, expected_rev, value, ttl_ms, announce, None)
                .await;
        }
        self.swap(key, expected_rev, value, ttl_ms, announce, Some(schedule))
            .await
    }

    async fn map_put(&self, key: &Key, field: &str, value: Bytes) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("HSET");
        cmd.arg(map_key(key)).arg(field).arg(value.as_ref());
        self.run(&cmd).await.map(drop)
    }

    async fn map_get(&self, key: &Key, field: &str) -> Result<Option<Bytes>, StoreError> {
        let mut cmd = redis::cmd("HGET");
        cmd.arg(map_key(key)).arg(field);
        let reply = self.run(&cmd).await?;
        bytes_of(reply)
            .map(|bytes| bytes.map(Bytes::from))
            .map_err(|other| protocol_error("HGET", &other))
    }

    async fn map_list(&self, key: &Key) -> Result<Vec<(String, Bytes)>, StoreError> {
        let mut cmd = redis::cmd("HGETALL");
        cmd.arg(map_key(key));
        let reply = self.run(&cmd).await?;
        let pairs = pairs(reply).map_err(|other| protocol_error("HGETALL", &other))?;
        pairs
            .into_iter()
            .map(|(field, value)| {
                let field = string_of(field, "map field")?;
                let value = match bytes_of(value) {
                    Ok(Some(bytes)) => Bytes::from(bytes),
                    Ok(None) => Bytes::new(),
                    Err(other) => return Err(protocol_error("HGETALL", &other)),
                };
                Ok((field, value))
            })
            .collect()
    }

    async fn map_take(
        &self,
        key: &Key,
        field: &str,
        only_if: Option<&[u8]>,
    ) -> Result<Option<Bytes>, StoreError> {
        let invocation = self.inner.scripts.take(key, field, only_if);
        let reply = self.run_script(&invocation).await?;
        bytes_of(reply)
            .map(|bytes| bytes.map(Bytes::from))
            .map_err(|other| protocol_error("the take script", &other))
    }

    async fn map_replace(
        &self,
        key: &Key,
        field: &str,
        expected: &[u8],
        value: Bytes,
    ) -> Result<bool, StoreError> {
        let invocation = self.inner.scripts.replace(key, field, expected, &value);
        let reply = self.run_script(&invocation).await?;
        match reply {
            Value::Int(1) => Ok(true),
            Value::Int(0) => Ok(false),
            other => Err(protocol_error("the replace script", &other)),
        }
    }

    async fn schedule(
        &self,
        schedule: Schedule,
        member: &str,
        due: UnixMillis,
    ) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("ZADD");
        cmd.arg(schedule_key(schedule)).arg(due).arg(member);
        self.run(&cmd).await.map(drop)
    }

    async fn schedule_len(&self, schedule: Schedule) -> Result<u64, StoreError> {
        let mut cmd = redis::cmd("ZCARD");
        cmd.arg(schedule_key(schedule));
        match self.run(&cmd).await? {
            Value::Int(n) => Ok(u64::try_from(n).unwrap_or(0)),
            other => Err(StoreError::Protocol(format!("ZCARD answered {other:?}"))),
        }
    }

    async fn unschedule(&self, schedule: Schedule, member: &str) -> Result<(), StoreError> {
        let mut cmd = redis::cmd("ZREM");
        cmd.arg(schedule_key(schedule)).arg(member);
        self.run(&cmd).await.map(drop)
    }

    async fn due(
        &self,
        schedule: Schedule,
        now: UnixMillis,
        limit: usize,
    ) -> Result<Vec<(String, UnixMillis)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("ZRANGE");
        cmd.arg(schedule_key(schedule))
            .arg("-inf")
            .arg(now)
            .arg("BYSCORE")
            .arg("LIMIT")
            .arg(0)
            .arg(limit)
            .arg("WITHSCORES");
        let reply = self.run(&cmd).await?;
        let pairs = pairs(reply).map_err(|other| protocol_error("ZRANGE", &other))?;
        pairs
            .into_iter()
            .map(|(member, score)| Ok((string_of(member, "schedule member")?, due_of(score)?)))
            .collect()
    }

    async fn claim_due(
        &self,
        schedule: Schedule,
        now: UnixMillis,
        limit: usize,
        hold_until: UnixMillis,
    ) -> Result<Vec<(String, UnixMillis)>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let invocation = self.inner.scripts.claim(schedule, now, limit, hold_until);
        let reply = self.run_script(&invocation).await?;
        let pairs = pairs(reply).map_err(|other| protocol_error("the claim script", &other))?;
        pairs
            .into_iter()
            .map(|(member, score)| Ok((string_of(member, "schedule member")?, due_of(score)?)))
            .collect()
    }

    async fn release(&self, schedule: Schedule, members: &[String]) -> Result<usize, StoreError> {
        if members.is_empty() {
            return Ok(0);
        }
        let invocation = self.inner.scripts.release(schedule, members);
        match self.run_script(&invocation).await? {
            Value::Int(removed) => Ok(usize::try_from(removed).unwrap_or(0)),
            other => Err(protocol_error("the release script", &other)),
        }
    }

    async fn publish(&self, message: ChannelMessage) -> Result<(), StoreError> {
        let mut cmd = redis::cmd(self.inner.topology.publish_command());
        cmd.arg(channel_name(&message.entity))
            .arg(message.payload.as_ref());
        self.run(&cmd).await.map(drop)
    }

    async fn open_feed(
        &self,
    ) -> Result<(Box<dyn FeedControl>, mpsc::Receiver<FeedItem>), StoreError> {
        feed::open(self.inner.topology.clone(), self.inner.config.clone()).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let reply = self.run(&redis::cmd("PING")).await?;
        match bytes_of(reply) {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(StoreError::Protocol("nil reply to PING".into())),
            Err(other) => Err(protocol_error("PING", &other)),
        }
    }
}
