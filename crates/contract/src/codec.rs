//! A compact binary encoding of stored records, and the primitives to write
//! and read it.
//!
//! The records the services keep in the state backend (presentities,
//! subscriptions, bindings) were JSON. Under load (REGISTER and PUBLISH at
//! 12,000/s) their `serde_json` serialisation was about 12 % of all CPU:
//! the PIDF documents inside are escaped character by character, and every
//! field name is repeated in every record, which also costs backend memory.
//! Here a record is one format tag byte ([`TAG`]), a format version byte,
//! then its fields in declaration order: integers as unsigned LEB128
//! varints, strings and byte strings length-prefixed and unescaped.
//!
//! The tag can never start a JSON document, so [`decode_record`] still reads
//! records written as JSON by an earlier release (through their serde
//! derives).
//!
//! [`Reader`] never panics, whatever the bytes: a truncated or garbled
//! record is a [`CodecError`].

use std::sync::atomic::{AtomicBool, Ordering};

use serde::de::DeserializeOwned;

/// Whether records are written as JSON instead of the binary encoding.
///
/// A release before the binary encoding reads only JSON: while a cluster
/// is being upgraded from one (old and new replicas side by side, or a
/// rollback possible), the new services must keep writing JSON, or an old
/// replica would fail on, or sweep away, a record it cannot read. Set once
/// at start-up (`--record-encoding json`, see `runtime::RecordEncodingArgs`);
/// process-wide because it concerns every record the process writes.
static WRITE_JSON: AtomicBool = AtomicBool::new(false);

/// Writes records as JSON (`true`) or in the binary encoding (`false`, the
/// default). See [`WRITE_JSON`].
pub fn set_write_json(json: bool) {
    WRITE_JSON.store(json, Ordering::Relaxed);
}

/// True when records are to be written as JSON (see [`set_write_json`]).
pub fn writes_json() -> bool {
    WRITE_JSON.load(Ordering::Relaxed)
}

/// The first byte of a binary record. JSON starts with `{` (after optional
/// whitespace), never with a control character.
pub const TAG: u8 = 0x01;

/// The longest unsigned LEB128 encoding of a `u64`.
const MAX_VARINT_BYTES: usize = 10;
/// Elements of a sequence allocated for before they are read: a garbled
/// count that the input could still hold must not reserve many times the
/// input's size in memory.
const MAX_PREALLOCATED: usize = 64;

/// Why stored bytes are not a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// The input ended in the middle of a value.
    #[error("truncated: {needed} more bytes needed at offset {at}")]
    Truncated { at: usize, needed: u64 },
    /// A varint longer than ten bytes, or beyond `u64`.
    #[error("bad varint at offset {at}")]
    BadVarint { at: usize },
    /// A string that is not UTF-8.
    #[error("invalid UTF-8 at offset {at}")]
    InvalidUtf8 { at: usize },
    /// The first byte is neither [`TAG`] nor the start of a JSON object.
    #[error("unknown format tag {0:#04x}")]
    UnknownFormat(u8),
    /// A binary record of a format version this build does not know.
    #[error("unknown format version {0}")]
    UnknownVersion(u8),
    /// Bytes left after the record's last field.
    #[error("{0} trailing bytes")]
    TrailingBytes(usize),
    /// A value out of its field's range (a bool that is neither 0 nor 1, an
    /// enum variant that does not exist, a `u32` above `u32::MAX`).
    #[error("invalid {what} {value} at offset {at}")]
    Invalid {
        what: &'static str,
        value: u64,
        at: usize,
    },
    /// A record in the earlier JSON encoding that does not parse.
    #[error("invalid JSON record: {0}")]
    Json(String),
}

/// Writes the fields of a record.
#[derive(Clone, Debug, Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// An empty writer (no header), for nested values.
    pub fn new() -> Self {
        Writer::default()
    }

    /// A writer that starts a record: [`TAG`], then `version`.
    /// `capacity` is a hint of the encoded size, to spare reallocations.
    pub fn record(version: u8, capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity.saturating_add(2));
        buf.push(TAG);
        buf.push(version);
        Writer { buf }
    }

    pub fn u8(&mut self, value: u8) {
        self.buf.push(value);
    }

    /// An unsigned LEB128 varint: seven bits a byte, low bits first.
    pub fn varint(&mut self, mut value: u64) {
        while value >= 0x80 {
            self.buf.push((value & 0x7f) as u8 | 0x80);
            value >>= 7;
        }
        self.buf.push(value as u8);
    }

    pub fn bool(&mut self, value: bool) {
        self.buf.push(u8::from(value));
    }

    /// The number of elements of a sequence that follows.
    pub fn count(&mut self, count: usize) {
        self.varint(count as u64);
    }

    /// A sequence: its count, then each element as `element` writes it.
    pub fn seq<T>(&mut self, items: &[T], mut element: impl FnMut(&mut Writer, &T)) {
        self.count(items.len());
        for item in items {
            element(self, item);
        }
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self, value: &[u8]) {
        self.count(value.len());
        self.buf.extend_from_slice(value);
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self, value: &str) {
        self.bytes(value.as_bytes());
    }

    /// A string that often equals, or starts like, one of `known` (strings
    /// the reader knows when it reaches this one: other fields, the key the
    /// record is stored under, fixed names). One varint `h` says how:
    ///
    /// * `h % 4 == 0`: a literal of `h / 4` bytes follows;
    /// * `h % 4 == 1`: exactly `known[h / 4]`;
    /// * `h % 4 == 2`: the first `keep` bytes of `known[h / 4]` (a varint
    ///   follows), then a length-prefixed literal suffix.
    ///
    /// The writer takes whichever is shortest. `known` must be the same list,
    /// in the same order, when [`Reader::known_str`] reads the value.
    pub fn known_str(&mut self, value: &str, known: &[&str]) {
        if let Some(index) = known.iter().position(|k| *k == value) {
            self.varint(((index as u64) << 2) | 1);
            return;
        }
        let literal = varint_len(value.len() as u64 * 4) + value.len();
        let best = known
            .iter()
            .enumerate()
            .map(|(index, k)| (index, common_prefix(k, value)))
            .max_by_key(|&(index, keep)| (keep, std::cmp::Reverse(index)));
        if let Some((index, keep)) = best {
            let suffix = value.len() - keep;
            let cost = varint_len(((index as u64) << 2) | 2)
                + varint_len(keep as u64)
                + varint_len(suffix as u64)
                + suffix;
            if keep > 0 && cost < literal {
                self.varint(((index as u64) << 2) | 2);
                self.varint(keep as u64);
                self.str(&value[keep..]);
                return;
            }
        }
        self.varint(value.len() as u64 * 4);
        self.buf.extend_from_slice(value.as_bytes());
    }

    /// A presence byte, then the string when present.
    pub fn opt_str(&mut self, value: Option<&str>) {
        self.bool(value.is_some());
        if let Some(value) = value {
            self.str(value);
        }
    }

    /// A presence byte, then the varint when present.
    pub fn opt_varint(&mut self, value: Option<u64>) {
        self.bool(value.is_some());
        if let Some(value) = value {
            self.varint(value);
        }
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_vec(self) -> Vec<u8> {
        self.buf
    }
}

/// Bytes of the unsigned LEB128 encoding of `value`.
fn varint_len(value: u64) -> usize {
    let bits = 64 - value.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// The length in bytes of the longest common prefix of `a` and `b` that
/// ends on a character boundary of both.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, ca), cb)| ca != cb)
        .map(|((at, _), _)| at)
        .unwrap_or_else(|| a.len().min(b.len()))
}

/// Reads the fields of a record, never panicking.
#[derive(Clone, Debug)]
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader of `bytes` as they are (no header), for nested values.
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    /// Where the next value starts, for error reports.
    pub fn offset(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let truncated = CodecError::Truncated {
            at: self.pos,
            needed: n as u64,
        };
        let end = self.pos.checked_add(n).ok_or(truncated.clone())?;
        let taken = self.bytes.get(self.pos..end).ok_or(truncated)?;
        self.pos = end;
        Ok(taken)
    }

    pub fn u8(&mut self) -> Result<u8, CodecError> {
        let taken = self.take(1)?;
        taken.first().copied().ok_or(CodecError::Truncated {
            at: self.pos,
            needed: 1,
        })
    }

    pub fn varint(&mut self) -> Result<u64, CodecError> {
        let start = self.pos;
        let mut value = 0u64;
        for i in 0..MAX_VARINT_BYTES {
            let byte = self.u8()?;
            // The tenth byte holds bit 63 alone.
            if i == MAX_VARINT_BYTES - 1 && byte > 1 {
                return Err(CodecError::BadVarint { at: start });
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(CodecError::BadVarint { at: start })
    }

    /// A varint that must fit a `u32`.
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        let at = self.pos;
        let value = self.varint()?;
        u32::try_from(value).map_err(|_| CodecError::Invalid {
            what: "u32",
            value,
            at,
        })
    }

    pub fn bool(&mut self) -> Result<bool, CodecError> {
        let at = self.pos;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(CodecError::Invalid {
                what: "bool",
                value: u64::from(other),
                at,
            }),
        }
    }

    /// The number of elements of a sequence that follows. Every element
    /// takes at least one byte, so a count beyond what is left is refused
    /// here, before anyone allocates for it.
    pub fn count(&mut self) -> Result<usize, CodecError> {
        let at = self.pos;
        let count = self.varint()?;
        match usize::try_from(count) {
            Ok(n) if n <= self.remaining() => Ok(n),
            _ => Err(CodecError::Truncated { at, needed: count }),
        }
    }

    /// What [`Writer::seq`] wrote, each element read by `element`.
    pub fn seq<T>(
        &mut self,
        mut element: impl FnMut(&mut Reader<'a>) -> Result<T, CodecError>,
    ) -> Result<Vec<T>, CodecError> {
        let n = self.count()?;
        let mut items = Vec::with_capacity(n.min(MAX_PREALLOCATED));
        for _ in 0..n {
            items.push(element(self)?);
        }
        Ok(items)
    }

    /// A length-prefixed byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], CodecError> {
        let len = self.count()?;
        self.take(len)
    }

    /// A length-prefixed UTF-8 string.
    pub fn str(&mut self) -> Result<&'a str, CodecError> {
        let len = self.count()?;
        let at = self.pos;
        std::str::from_utf8(self.take(len)?).map_err(|_| CodecError::InvalidUtf8 { at })
    }

    /// [`Reader::str`], owned.
    pub fn string(&mut self) -> Result<String, CodecError> {
        self.str().map(str::to_owned)
    }

    /// What [`Writer::known_str`] wrote, with the same `known` list.
    pub fn known_str(&mut self, known: &[&str]) -> Result<String, CodecError> {
        let at = self.pos;
        let h = self.varint()?;
        let index = h >> 2;
        let known_at = |index: u64| {
            usize::try_from(index)
                .ok()
                .and_then(|i| known.get(i))
                .copied()
                .ok_or(CodecError::Invalid {
                    what: "known string",
                    value: index,
                    at,
                })
        };
        match h & 3 {
            0 => {
                let len = usize::try_from(index)
                    .map_err(|_| CodecError::Truncated { at, needed: index })?;
                let start = self.pos;
                std::str::from_utf8(self.take(len)?)
                    .map(str::to_owned)
                    .map_err(|_| CodecError::InvalidUtf8 { at: start })
            }
            1 => known_at(index).map(str::to_owned),
            2 => {
                let base = known_at(index)?;
                let keep_at = self.pos;
                let keep = self.varint()?;
                let prefix = usize::try_from(keep)
                    .ok()
                    .and_then(|keep| base.get(..keep))
                    .ok_or(CodecError::Invalid {
                        what: "known string prefix",
                        value: keep,
                        at: keep_at,
                    })?;
                let suffix = self.str()?;
                let mut value = String::with_capacity(prefix.len() + suffix.len());
                value.push_str(prefix);
                value.push_str(suffix);
                Ok(value)
            }
            _ => Err(CodecError::Invalid {
                what: "known string form",
                value: h,
                at,
            }),
        }
    }

    /// What [`Writer::opt_str`] wrote.
    pub fn opt_str(&mut self) -> Result<Option<&'a str>, CodecError> {
        if self.bool()? {
            self.str().map(Some)
        } else {
            Ok(None)
        }
    }

    /// [`Reader::opt_str`], owned.
    pub fn opt_string(&mut self) -> Result<Option<String>, CodecError> {
        Ok(self.opt_str()?.map(str::to_owned))
    }

    /// What [`Writer::opt_varint`] wrote.
    pub fn opt_varint(&mut self) -> Result<Option<u64>, CodecError> {
        if self.bool()? {
            self.varint().map(Some)
        } else {
            Ok(None)
        }
    }

    /// An optional varint that must fit a `u32`.
    pub fn opt_u32(&mut self) -> Result<Option<u32>, CodecError> {
        if self.bool()? {
            self.u32().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Checks that everything was read.
    pub fn finish(self) -> Result<(), CodecError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(CodecError::TrailingBytes(n)),
        }
    }
}

/// Encodes a stored record: `binary` (a [`Writer::record`]'s bytes), or
/// `value`'s JSON when `json` (upgrade mode, see [`set_write_json`]; a value
/// that JSON cannot express falls back to binary, which every release
/// since the binary encoding reads).
pub fn encode_record<T: serde::Serialize>(
    value: &T,
    json: bool,
    binary: impl FnOnce() -> Vec<u8>,
) -> Vec<u8> {
    if json {
        if let Ok(text) = serde_json::to_vec(value) {
            return text;
        }
    }
    binary()
}

/// The format version of a record in the binary encoding; `None` for
/// anything else (JSON, empty or garbled bytes).
pub fn binary_version(bytes: &[u8]) -> Option<u8> {
    match bytes {
        [TAG, version, ..] => Some(*version),
        _ => None,
    }
}

/// Decodes a stored record: binary (after [`TAG`] and `version`, with
/// `fields`, which must read the whole rest) or, for records written by an
/// earlier release, JSON through `T`'s serde derive.
pub fn decode_record<T, F>(bytes: &[u8], version: u8, fields: F) -> Result<T, CodecError>
where
    T: DeserializeOwned,
    F: FnOnce(&mut Reader<'_>) -> Result<T, CodecError>,
{
    decode_record_versions(bytes, |found, reader| {
        if found != version {
            return Err(CodecError::UnknownVersion(found));
        }
        fields(reader)
    })
}

/// [`decode_record`] for a record with several binary versions: `fields`
/// is given the version found (and answers [`CodecError::UnknownVersion`]
/// for one it does not know).
pub fn decode_record_versions<T, F>(bytes: &[u8], fields: F) -> Result<T, CodecError>
where
    T: DeserializeOwned,
    F: FnOnce(u8, &mut Reader<'_>) -> Result<T, CodecError>,
{
    let first = bytes
        .iter()
        .copied()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    match (bytes.first().copied(), first) {
        (None, _) => Err(CodecError::Truncated { at: 0, needed: 1 }),
        (Some(TAG), _) => {
            let mut reader = Reader::new(bytes);
            reader.u8()?;
            let found = reader.u8()?;
            let record = fields(found, &mut reader)?;
            reader.finish()?;
            Ok(record)
        }
        (_, Some(b'{')) => {
            serde_json::from_slice(bytes).map_err(|e| CodecError::Json(e.to_string()))
        }
        (Some(other), _) => Err(CodecError::UnknownFormat(other)),
    }
}

#[cfg(test)]
mod tests;
