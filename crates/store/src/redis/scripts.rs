//! The Lua scripts: every multi-step change that must be atomic, and how
//! each is invoked. Each script names in KEYS only real keys of one entity
//! (or one schedule), so that it runs within one Redis Cluster slot, and
//! keeps channels and everything else in ARGV.

use bytes::Bytes;
use redis::{Script, ScriptInvocation};

use super::keys::{channel_name, map_key, record_key, schedule_key};
use crate::{ChannelMessage, Key, Schedule, UnixMillis};

/// Compare-and-swap of one record, with its announcement.
///
/// KEYS[1] record hash, and KEYS[2] the schedule sorted set (only when
/// scheduling, on a single server). ARGV[1] expected revision, ARGV[2] new
/// revision, ARGV[3] `s` (set) or `d` (delete), ARGV[4] value, ARGV[5] TTL
/// in ms or empty, ARGV[6] payload, ARGV[7] the publish command (`PUBLISH`,
/// or `SPUBLISH` on a cluster; empty when not announcing), ARGV[8] `z` to
/// schedule ARGV[10] at ARGV[9] in KEYS[2], with the swap, ARGV[11] the
/// channel.
///
/// The channel is an argument, not a key: it never exists as a key, and
/// while its slot migrates Redis answers a script whose keys are partly
/// missing with TRYAGAIN for as long as the migration lasts. A cluster
/// still checks that the SPUBLISH channel hashes to the record's slot.
/// Revisions are compared as decimal strings, so no precision is lost.
const CAS_SCRIPT: &str = r"
local current = redis.call('HGET', KEYS[1], 'rev')
if not current then current = '0' end
if current ~= ARGV[1] then return false end
if ARGV[3] == 's' then
  redis.call('HSET', KEYS[1], 'rev', ARGV[2], 'val', ARGV[4])
  if ARGV[5] ~= '' then
    redis.call('PEXPIRE', KEYS[1], ARGV[5])
  else
    redis.call('PERSIST', KEYS[1])
  end
else
  redis.call('DEL', KEYS[1])
end
if ARGV[7] ~= '' then
  redis.call(ARGV[7], ARGV[11], ARGV[6])
end
if ARGV[8] == 'z' then
  redis.call('ZADD', KEYS[2], ARGV[9], ARGV[10])
end
return 1
";

/// Conditional removal of one map field.
///
/// KEYS[1] map hash. ARGV[1] field, ARGV[2] `1` when ARGV[3] holds the
/// value the field must have, `0` to remove whatever is there.
const TAKE_SCRIPT: &str = r"
local value = redis.call('HGET', KEYS[1], ARGV[1])
if not value then return false end
if ARGV[2] == '1' and value ~= ARGV[3] then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
return value
";

/// Conditional replacement of one map field.
///
/// KEYS[1] map hash. ARGV[1] field, ARGV[2] the value it must have now,
/// ARGV[3] its new value. Returns 1 when replaced, 0 otherwise.
const REPLACE_SCRIPT: &str = r"
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
";

/// Claims due members of one schedule for a sweeper.
///
/// KEYS[1] the schedule sorted set. ARGV[1] now (ms), ARGV[2] limit,
/// ARGV[3] the hold score. Returns the claimed members with their scores,
/// flat. The hold score is `hold_until + 0.5`: every other writer of a
/// schedule sets whole milliseconds, so a fractional score means "claimed
/// and not scheduled since", which is what [`RELEASE_SCRIPT`] checks.
const CLAIM_SCRIPT: &str = r"
local due = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, ARGV[2], 'WITHSCORES')
for i = 1, #due, 2 do
  redis.call('ZADD', KEYS[1], 'XX', ARGV[3], due[i])
end
return due
";

/// Drops claimed members nobody scheduled again.
///
/// KEYS[1] the schedule sorted set. ARGV the members. Returns how many
/// were removed.
const RELEASE_SCRIPT: &str = r"
local removed = 0
for i = 1, #ARGV do
  local score = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if score then
    local n = tonumber(score)
    if n ~= math.floor(n) then
      redis.call('ZREM', KEYS[1], ARGV[i])
      removed = removed + 1
    end
  end
end
return removed
";

/// The longest TTL passed to Redis (about 100 years). Longer ones are
/// clamped so that `now + ttl` cannot overflow on the server.
const MAX_TTL_MS: u64 = 100 * 365 * 24 * 3600 * 1000;

/// One swap, as [`CAS_SCRIPT`] takes it.
pub(super) struct Swap<'a> {
    pub key: &'a Key,
    pub expected_rev: u64,
    pub new_rev: u64,
    pub value: Option<&'a Bytes>,
    pub ttl_ms: Option<u64>,
    /// The announcement and the command that publishes it.
    pub announce: Option<(&'a ChannelMessage, &'static str)>,
    /// A schedule entry written by the script itself (single server only).
    pub schedule: Option<(Schedule, &'a str, UnixMillis)>,
}

/// The scripts, hashed once; invoked by EVALSHA and loaded again
/// transparently when a server answers NOSCRIPT (after a restart, or on
/// the target of a slot migration).
pub(super) struct Scripts {
    cas: Script,
    take: Script,
    replace: Script,
    claim: Script,
    release: Script,
}

impl Scripts {
    pub(super) fn new() -> Self {
        Scripts {
            cas: Script::new(CAS_SCRIPT),
            take: Script::new(TAKE_SCRIPT),
            replace: Script::new(REPLACE_SCRIPT),
            claim: Script::new(CLAIM_SCRIPT),
            release: Script::new(RELEASE_SCRIPT),
        }
    }

    /// [`CAS_SCRIPT`] for `swap`; replies 1, or nil on a revision mismatch.
    pub(super) fn swap(&self, swap: &Swap<'_>) -> ScriptInvocation<'_> {
        let mut invocation = self.cas.prepare_invoke();
        invocation.key(record_key(swap.key));
        if let Some((which, _, _)) = swap.schedule {
            invocation.key(schedule_key(which));
        }
        invocation
            .arg(swap.expected_rev.to_string())
            .arg(swap.new_rev.to_string());
        match swap.value {
            Some(value) => invocation.arg("s").arg(value.as_ref()),
            None => invocation.arg("d").arg(""),
        };
        match swap.ttl_ms {
            Some(ttl) => invocation.arg(ttl.min(MAX_TTL_MS).to_string()),
            None => invocation.arg(""),
        };
        match swap.announce {
            Some((message, command)) => invocation.arg(message.payload.as_ref()).arg(command),
            None => invocation.arg("").arg(""),
        };
        match swap.schedule {
            Some((_, member, due)) => invocation.arg("z").arg(due).arg(member),
            None => invocation.arg("").arg("").arg(""),
        };
        match swap.announce {
            Some((message, _)) => invocation.arg(channel_name(&message.entity)),
            None => invocation.arg(""),
        };
        invocation
    }

    /// [`TAKE_SCRIPT`]: the removed value, or nil.
    pub(super) fn take(
        &self,
        key: &Key,
        field: &str,
        only_if: Option<&[u8]>,
    ) -> ScriptInvocation<'_> {
        let mut invocation = self.take.prepare_invoke();
        invocation.key(map_key(key)).arg(field);
        match only_if {
            Some(expected) => invocation.arg("1").arg(expected),
            None => invocation.arg("0").arg(""),
        };
        invocation
    }

    /// [`REPLACE_SCRIPT`]: 1 when replaced, 0 otherwise.
    pub(super) fn replace(
        &self,
        key: &Key,
        field: &str,
        expected: &[u8],
        value: &Bytes,
    ) -> ScriptInvocation<'_> {
        let mut invocation = self.replace.prepare_invoke();
        invocation
            .key(map_key(key))
            .arg(field)
            .arg(expected)
            .arg(value.as_ref());
        invocation
    }

    /// [`CLAIM_SCRIPT`]: the claimed members and their scores, flat.
    pub(super) fn claim(
        &self,
        schedule: Schedule,
        now: UnixMillis,
        limit: usize,
        hold_until: UnixMillis,
    ) -> ScriptInvocation<'_> {
        let mut invocation = self.claim.prepare_invoke();
        invocation
            .key(schedule_key(schedule))
            .arg(now)
            .arg(limit)
            .arg(format!("{hold_until}.5"));
        invocation
    }

    /// [`RELEASE_SCRIPT`]: how many members were removed.
    pub(super) fn release(&self, schedule: Schedule, members: &[String]) -> ScriptInvocation<'_> {
        let mut invocation = self.release.prepare_invoke();
        invocation.key(schedule_key(schedule));
        for member in members {
            invocation.arg(member.as_str());
        }
        invocation
    }
}
