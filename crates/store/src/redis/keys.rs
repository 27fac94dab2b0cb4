//! Key naming: every key of one entity carries the entity as its Redis
//! Cluster hash tag (`{...}`), so a record, its map and its channel share
//! one slot (see the table in the module documentation of `redis`).

use crate::{Key, Schedule};

/// Percent-encodes the characters that would end or nest a hash tag.
fn escape_entity(entity: &str) -> std::borrow::Cow<'_, str> {
    if !entity.contains(['{', '}', '%']) {
        return std::borrow::Cow::Borrowed(entity);
    }
    let mut escaped = String::with_capacity(entity.len() + 6);
    for c in entity.chars() {
        match c {
            '{' => escaped.push_str("%7B"),
            '}' => escaped.push_str("%7D"),
            '%' => escaped.push_str("%25"),
            other => escaped.push(other),
        }
    }
    std::borrow::Cow::Owned(escaped)
}

/// Reverses [`escape_entity`]; `None` for a malformed escape.
fn unescape_entity(escaped: &str) -> Option<String> {
    if !escaped.contains('%') {
        return Some(escaped.to_owned());
    }
    let mut entity = String::with_capacity(escaped.len());
    let mut rest = escaped;
    while let Some(at) = rest.find('%') {
        entity.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 3)?;
        entity.push(match code {
            "7B" => '{',
            "7D" => '}',
            "25" => '%',
            _ => return None,
        });
        rest = &rest[at + 3..];
    }
    entity.push_str(rest);
    Some(entity)
}

/// The Redis key of a record.
pub fn record_key(key: &Key) -> String {
    format!("{}:{{{}}}", key.kind.prefix(), escape_entity(&key.entity))
}

/// The Redis key of a map.
pub fn map_key(key: &Key) -> String {
    format!("{}:{{{}}}:m", key.kind.prefix(), escape_entity(&key.entity))
}

/// The pub/sub channel of an entity.
pub fn channel_name(entity: &str) -> String {
    format!("chan:{{{}}}", escape_entity(entity))
}

/// The entity whose channel is `channel`; `None` for foreign channels.
pub(super) fn entity_of_channel(channel: &[u8]) -> Option<String> {
    let channel = std::str::from_utf8(channel).ok()?;
    let escaped = channel.strip_prefix("chan:{")?.strip_suffix('}')?;
    unescape_entity(escaped)
}

/// The Redis key of a schedule.
pub fn schedule_key(schedule: Schedule) -> &'static str {
    match schedule {
        Schedule::Bindings => "sched:bindings",
        Schedule::Publications => "sched:publications",
        Schedule::Subscriptions => "sched:subscriptions",
        Schedule::Leases => "sched:leases",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;

    #[test]
    fn keys_share_the_entity_hash_tag() {
        let key = Key::new(Kind::Subscriptions, "alice@example.com");
        assert_eq!(record_key(&key), "subs:{alice@example.com}");
        assert_eq!(map_key(&key), "subs:{alice@example.com}:m");
        assert_eq!(
            channel_name("alice@example.com"),
            "chan:{alice@example.com}"
        );
    }

    #[test]
    fn braces_in_entities_are_escaped_and_recovered() {
        let entity = "we{ir}d%20name";
        let channel = channel_name(entity);
        assert_eq!(channel, "chan:{we%7Bir%7Dd%2520name}");
        assert_eq!(
            entity_of_channel(channel.as_bytes()).as_deref(),
            Some(entity)
        );
    }

    #[test]
    fn foreign_channels_are_not_entities() {
        assert_eq!(entity_of_channel(b"other:{x}"), None);
        assert_eq!(entity_of_channel(b"chan:{bad%zz}"), None);
    }
}
