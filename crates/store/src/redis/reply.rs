//! Decoding of Redis replies, in both RESP2 and RESP3 shapes.

use bytes::Bytes;
use redis::Value;

use super::keys::record_key;
use crate::{Key, Record, StoreError, UnixMillis};

pub(super) fn protocol_error(what: &str, value: &Value) -> StoreError {
    StoreError::Protocol(format!("unexpected reply to {what}: {value:?}"))
}

/// The bytes of a string-like reply; `None` for nil.
pub(super) fn bytes_of(value: Value) -> Result<Option<Vec<u8>>, Value> {
    match value {
        Value::Nil => Ok(None),
        Value::BulkString(bytes) => Ok(Some(bytes)),
        Value::SimpleString(text) => Ok(Some(text.into_bytes())),
        Value::VerbatimString { text, .. } => Ok(Some(text.into_bytes())),
        Value::Okay => Ok(Some(b"OK".to_vec())),
        other => Err(other),
    }
}

/// The elements of an aggregate reply (RESP2 array or RESP3 set).
pub(super) fn elements(value: Value) -> Result<Vec<Value>, Value> {
    match value {
        Value::Array(items) | Value::Set(items) => Ok(items),
        Value::Nil => Ok(Vec::new()),
        other => Err(other),
    }
}

/// Field/value pairs of a reply that is a RESP3 map, a flat RESP2 array,
/// or an array of two-element arrays.
pub(super) fn pairs(value: Value) -> Result<Vec<(Value, Value)>, Value> {
    match value {
        Value::Map(pairs) => Ok(pairs),
        Value::Array(items) => {
            if items
                .iter()
                .all(|item| matches!(item, Value::Array(pair) if pair.len() == 2))
            {
                let mut pairs = Vec::with_capacity(items.len());
                for item in items {
                    if let Value::Array(pair) = item {
                        let mut pair = pair.into_iter();
                        if let (Some(a), Some(b)) = (pair.next(), pair.next()) {
                            pairs.push((a, b));
                        }
                    }
                }
                return Ok(pairs);
            }
            if items.len() % 2 != 0 {
                return Err(Value::Array(items));
            }
            let mut pairs = Vec::with_capacity(items.len() / 2);
            let mut items = items.into_iter();
            while let (Some(a), Some(b)) = (items.next(), items.next()) {
                pairs.push((a, b));
            }
            Ok(pairs)
        }
        Value::Nil => Ok(Vec::new()),
        other => Err(other),
    }
}

pub(super) fn string_of(value: Value, what: &str) -> Result<String, StoreError> {
    match bytes_of(value) {
        Ok(Some(bytes)) => String::from_utf8(bytes)
            .map_err(|_| StoreError::Protocol(format!("non-UTF-8 {what} in reply"))),
        Ok(None) => Err(StoreError::Protocol(format!("nil {what} in reply"))),
        Err(other) => Err(protocol_error(what, &other)),
    }
}

/// A sorted-set score as due milliseconds.
pub(super) fn due_of(value: Value) -> Result<UnixMillis, StoreError> {
    let score = match value {
        Value::Double(score) => score,
        Value::Int(score) => score as f64,
        other => {
            let text = string_of(other, "score")?;
            text.parse::<f64>()
                .map_err(|_| StoreError::Protocol(format!("bad score {text:?}")))?
        }
    };
    if !(score >= 0.0 && score.is_finite()) {
        return Err(StoreError::Protocol(format!("bad score {score}")));
    }
    // Due times are far below 2^53 ms, where f64 is exact.
    Ok(score as UnixMillis)
}

/// Decodes the reply of `HMGET <record> rev val`.
pub(super) fn decode_record(key: &Key, reply: Value) -> Result<Option<Record>, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        key: record_key(key),
        reason,
    };
    let fields = elements(reply).map_err(|other| protocol_error("HMGET", &other))?;
    let mut fields = fields.into_iter();
    let (Some(rev), Some(val)) = (fields.next(), fields.next()) else {
        return Err(StoreError::Protocol("HMGET returned too few fields".into()));
    };
    let rev = bytes_of(rev).map_err(|other| protocol_error("HMGET", &other))?;
    let val = bytes_of(val).map_err(|other| protocol_error("HMGET", &other))?;
    match (rev, val) {
        (None, None) => Ok(None),
        (Some(rev), Some(val)) => {
            let rev = std::str::from_utf8(&rev)
                .ok()
                .and_then(|text| text.parse::<u64>().ok())
                .filter(|rev| *rev > 0)
                .ok_or_else(|| {
                    corrupt(format!("bad revision {:?}", String::from_utf8_lossy(&rev)))
                })?;
            Ok(Some(Record {
                rev,
                value: Bytes::from(val),
            }))
        }
        (Some(_), None) => Err(corrupt("revision without value".into())),
        (None, Some(_)) => Err(corrupt("value without revision".into())),
    }
}

pub(super) fn hmget_record(key: &Key) -> redis::Cmd {
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(record_key(key)).arg("rev").arg("val");
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Kind;

    #[test]
    fn replies_decode_in_both_protocols() -> Result<(), StoreError> {
        let flat = Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::BulkString(b"1500".to_vec()),
        ]);
        let nested = Value::Array(vec![Value::Array(vec![
            Value::BulkString(b"a".to_vec()),
            Value::Double(1500.0),
        ])]);
        for reply in [flat, nested] {
            let decoded = pairs(reply).map_err(|other| protocol_error("test", &other))?;
            let (member, score) = decoded
                .into_iter()
                .next()
                .ok_or_else(|| StoreError::Protocol("no pair".into()))?;
            assert_eq!(string_of(member, "member")?, "a");
            assert_eq!(due_of(score)?, 1500);
        }
        Ok(())
    }

    #[test]
    fn half_written_records_are_corrupt() {
        let key = Key::new(Kind::Presentity, "bob@example.com");
        let reply = Value::Array(vec![Value::BulkString(b"3".to_vec()), Value::Nil]);
        assert!(matches!(
            decode_record(&key, reply),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
