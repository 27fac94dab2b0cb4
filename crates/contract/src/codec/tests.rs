//! The primitives' round trips, their refusals, and no panic on any
//! truncation or garbling of an encoded record.

use serde::Deserialize;

use super::*;

/// A record exercising every primitive.
#[derive(Clone, Debug, PartialEq, Deserialize)]
struct Sample {
    name: String,
    count: u64,
    small: u32,
    flag: bool,
    note: Option<String>,
    limit: Option<u32>,
    items: Vec<String>,
    raw: Vec<u8>,
}

const VERSION: u8 = 1;

impl Sample {
    fn encode(&self) -> Vec<u8> {
        let mut w = Writer::record(VERSION, 64);
        w.str(&self.name);
        w.varint(self.count);
        w.varint(u64::from(self.small));
        w.bool(self.flag);
        w.opt_str(self.note.as_deref());
        w.opt_varint(self.limit.map(u64::from));
        w.seq(&self.items, |w, item| w.str(item));
        w.bytes(&self.raw);
        w.into_vec()
    }

    fn decode(bytes: &[u8]) -> Result<Sample, CodecError> {
        decode_record(bytes, VERSION, |r| {
            Ok(Sample {
                name: r.string()?,
                count: r.varint()?,
                small: r.u32()?,
                flag: r.bool()?,
                note: r.opt_string()?,
                limit: r.opt_u32()?,
                items: r.seq(Reader::string)?,
                raw: r.bytes()?.to_vec(),
            })
        })
    }
}

fn sample() -> Sample {
    Sample {
        name: "Ælice \u{1F600} <note>\"x\"</note>".into(),
        count: u64::MAX,
        small: u32::MAX,
        flag: true,
        note: Some("ünïcödé".into()),
        limit: Some(0),
        items: vec!["a".into(), String::new(), "sip:b@x;lr".into()],
        raw: vec![0, 0xff, 0x80, 1],
    }
}

#[test]
fn varints_round_trip_at_every_width() {
    let mut values = vec![0u64, 1, 127, 128, 255, 300, 16_383, 16_384, u64::MAX];
    values.extend((0..64).map(|shift| 1u64 << shift));
    values.extend((1..64).map(|shift| (1u64 << shift) - 1));
    for value in values {
        let mut w = Writer::new();
        w.varint(value);
        let bytes = w.into_vec();
        assert!(bytes.len() <= MAX_VARINT_BYTES);
        let mut r = Reader::new(&bytes);
        assert_eq!(r.varint(), Ok(value));
        assert_eq!(r.finish(), Ok(()));
    }
    let mut w = Writer::new();
    w.varint(300);
    assert_eq!(w.into_vec(), [0xac, 0x02]);
}

#[test]
fn a_record_round_trips() {
    let record = sample();
    assert_eq!(Sample::decode(&record.encode()), Ok(record));
    let empty = Sample {
        name: String::new(),
        count: 0,
        small: 0,
        flag: false,
        note: None,
        limit: None,
        items: Vec::new(),
        raw: Vec::new(),
    };
    let bytes = empty.encode();
    assert_eq!(bytes[..2], [TAG, VERSION]);
    assert_eq!(Sample::decode(&bytes), Ok(empty));
}

#[test]
fn the_old_json_encoding_is_still_read() {
    let json = br#"
        {"name":"a","count":1,"small":2,"flag":false,"note":null,"limit":7,
         "items":["x"],"raw":[1,2]}"#;
    let record = Sample::decode(json).unwrap();
    assert_eq!(record.limit, Some(7));
    assert_eq!(record.items, ["x"]);
    assert!(matches!(
        Sample::decode(br#"{"name":"a"}"#),
        Err(CodecError::Json(_))
    ));
}

#[test]
fn what_is_not_a_record_is_refused() {
    assert_eq!(
        Sample::decode(b""),
        Err(CodecError::Truncated { at: 0, needed: 1 })
    );
    assert_eq!(Sample::decode(b"[1]"), Err(CodecError::UnknownFormat(b'[')));
    assert_eq!(Sample::decode(b"  "), Err(CodecError::UnknownFormat(b' ')));
    assert_eq!(
        Sample::decode(&[0x02, 1]),
        Err(CodecError::UnknownFormat(2))
    );
    let mut bytes = sample().encode();
    bytes[1] = VERSION + 1;
    assert_eq!(
        Sample::decode(&bytes),
        Err(CodecError::UnknownVersion(VERSION + 1))
    );
    let mut bytes = sample().encode();
    bytes.extend_from_slice(b"xy");
    assert_eq!(Sample::decode(&bytes), Err(CodecError::TrailingBytes(2)));
}

#[test]
fn bad_primitives_are_refused() {
    // Eleven continuation bytes; a tenth byte above 1 overflows u64.
    assert_eq!(
        Reader::new(&[0x80; 11]).varint(),
        Err(CodecError::BadVarint { at: 0 })
    );
    let mut overflow = vec![0xff; 9];
    overflow.push(0x02);
    assert_eq!(
        Reader::new(&overflow).varint(),
        Err(CodecError::BadVarint { at: 0 })
    );
    assert!(matches!(
        Reader::new(&[0x80]).varint(),
        Err(CodecError::Truncated { .. })
    ));
    assert!(matches!(
        Reader::new(&[2]).bool(),
        Err(CodecError::Invalid { what: "bool", .. })
    ));
    let mut w = Writer::new();
    w.varint(u64::from(u32::MAX) + 1);
    assert!(matches!(
        Reader::new(&w.into_vec()).u32(),
        Err(CodecError::Invalid { what: "u32", .. })
    ));
    assert_eq!(
        Reader::new(&[2, 0xc3, 0x28]).str(),
        Err(CodecError::InvalidUtf8 { at: 1 })
    );
    // A length or count far beyond the input allocates nothing.
    let mut w = Writer::new();
    w.varint(u64::MAX);
    let huge = w.into_vec();
    assert!(matches!(
        Reader::new(&huge).bytes(),
        Err(CodecError::Truncated { .. })
    ));
    assert!(matches!(
        Reader::new(&huge).count(),
        Err(CodecError::Truncated { .. })
    ));
    assert!(matches!(
        Reader::new(&[3, b'a']).str(),
        Err(CodecError::Truncated { at: 0, needed: 3 })
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample().encode();
    for len in 0..bytes.len() {
        assert!(
            Sample::decode(&bytes[..len]).is_err(),
            "a prefix of {len} bytes decoded"
        );
    }
}

#[test]
fn garbled_bytes_never_panic() {
    let bytes = sample().encode();
    for at in 0..bytes.len() {
        for mask in [0x01u8, 0x02, 0x40, 0x7f, 0x80, 0xff] {
            let mut garbled = bytes.clone();
            garbled[at] ^= mask;
            // Either an error or some record: never a panic or an abort.
            let _ = Sample::decode(&garbled);
            for len in [at, at + 1, bytes.len()] {
                let _ = Sample::decode(&garbled[..len.min(garbled.len())]);
            }
        }
        for value in [0x00u8, 0x7f, 0x80, 0xff] {
            let mut garbled = bytes.clone();
            garbled[at] = value;
            let _ = Sample::decode(&garbled);
        }
    }
}

fn known_round_trip(value: &str, known: &[&str]) -> (usize, Result<String, CodecError>) {
    let mut w = Writer::new();
    w.known_str(value, known);
    let bytes = w.into_vec();
    let mut r = Reader::new(&bytes);
    let read = r.known_str(known).and_then(|v| r.finish().map(|()| v));
    (bytes.len(), read)
}

#[test]
fn known_strings_round_trip_as_a_reference_a_prefix_or_a_literal() {
    let known = ["alice@example.com", "sip:alice@example.com", "ü"];
    // Exactly a known string: one byte.
    assert_eq!(
        known_round_trip("sip:alice@example.com", &known),
        (1, Ok("sip:alice@example.com".into()))
    );
    // Starts like one: index, kept bytes, the suffix.
    let target = "sip:alice@192.0.2.1:5060;transport=udp";
    let (len, read) = known_round_trip(target, &known);
    assert_eq!(read.as_deref(), Ok(target));
    assert!(len < target.len() - 5, "{len} bytes");
    // Nothing in common, or too little to pay: a literal.
    for value in ["", "bob", "s", "üx", "sip:b", "\u{1F600}"] {
        let (len, read) = known_round_trip(value, &known);
        assert_eq!(read.as_deref(), Ok(value));
        assert!(len <= value.len() + 1, "{value:?}: {len} bytes");
    }
    // No known strings at all.
    assert_eq!(known_round_trip("x", &[]), (2, Ok("x".into())));
    // A shared prefix never splits a character.
    assert_eq!(common_prefix("aé", "aè"), 1);
    assert_eq!(common_prefix("abc", "ab"), 2);
}

#[test]
fn known_string_references_out_of_range_are_refused() {
    let known = ["abc"];
    // A reference to a fourth known string of one.
    let mut r = Reader::new(&[(3 << 2) | 1]);
    assert!(matches!(
        r.known_str(&known),
        Err(CodecError::Invalid { .. })
    ));
    // A prefix longer than the known string, or inside a character.
    let mut r = Reader::new(&[2, 4, 0]);
    assert!(matches!(
        r.known_str(&known),
        Err(CodecError::Invalid { .. })
    ));
    let mut r = Reader::new(&[2, 1, 0]);
    assert!(matches!(
        r.known_str(&["é"]),
        Err(CodecError::Invalid { .. })
    ));
    // The reserved form, and a literal longer than the input.
    let mut r = Reader::new(&[3]);
    assert!(matches!(
        r.known_str(&known),
        Err(CodecError::Invalid { .. })
    ));
    let mut r = Reader::new(&[4 * 5, b'a']);
    assert!(matches!(
        r.known_str(&known),
        Err(CodecError::Truncated { .. })
    ));
    // Invalid UTF-8 in a literal or a suffix.
    let mut r = Reader::new(&[4, 0xff]);
    assert!(matches!(
        r.known_str(&known),
        Err(CodecError::InvalidUtf8 { .. })
    ));
    let mut r = Reader::new(&[2, 1, 1, 0xff]);
    assert!(matches!(
        r.known_str(&known),
        Err(CodecError::InvalidUtf8 { .. })
    ));
}

#[test]
fn a_record_of_another_version_is_handed_its_version() {
    let mut w = Writer::record(7, 8);
    w.str("x");
    let bytes = w.into_vec();
    assert_eq!(binary_version(&bytes), Some(7));
    assert_eq!(binary_version(b"{}"), None);
    let read: Result<(u8, String), CodecError> =
        decode_record_versions(&bytes, |version, r| Ok((version, r.string()?)));
    assert_eq!(read, Ok((7, "x".into())));
    assert_eq!(Sample::decode(&bytes), Err(CodecError::UnknownVersion(7)));
}
