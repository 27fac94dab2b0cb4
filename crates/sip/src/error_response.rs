//! Best-effort answers to requests that failed to parse.

use crate::error::ParseError;
use crate::header_name::{lookup, HeaderName, Known};
use crate::message::Response;
use crate::scan::leading_crlf;

/// Builds the error response for an unparseable request from its raw bytes, using
/// `err.status_code()` and `err.reason()` for the status line.
///
/// The Via header fields and CSeq are required (without them the answer could neither be
/// routed back nor matched to the client transaction); From, To and Call-ID are copied when
/// they can be found, and To gets a tag when it has none. Returns `None` — drop the message —
/// for responses, for ACK (which is never answered), and when Via or CSeq cannot be located.
pub fn error_response(raw: &[u8], err: &ParseError) -> Option<Response> {
    let raw = &raw[leading_crlf(raw)..];
    let line_end = memchr::memchr(b'\n', raw).unwrap_or(raw.len());
    let start_line = &raw[..line_end];
    if start_line.starts_with(b"SIP/") || start_line.starts_with(b"ACK ") {
        return None;
    }
    let mut found: Vec<(Known, String)> = Vec::new();
    // Whether continuation lines extend the last entry of `found`.
    let mut folding = false;
    let mut pos = (line_end + 1).min(raw.len());
    while pos < raw.len() {
        let end = memchr::memchr(b'\n', &raw[pos..]).map_or(raw.len(), |i| pos + i);
        let line = trim_cr(&raw[pos..end]);
        pos = end + 1;
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            // Folded continuation of the previous header.
            if let (true, Some((_, value)), Ok(more)) =
                (folding, found.last_mut(), std::str::from_utf8(line))
            {
                value.push(' ');
                value.push_str(more.trim());
            }
            continue;
        }
        folding = false;
        let Some(colon) = memchr::memchr(b':', line) else {
            continue;
        };
        let Some(known) = lookup(trim_ws(&line[..colon])) else {
            continue;
        };
        if !matches!(
            known,
            Known::Via | Known::From | Known::To | Known::CallId | Known::CSeq
        ) {
            continue;
        }
        let Ok(value) = std::str::from_utf8(&line[colon + 1..]) else {
            continue;
        };
        found.push((known, value.trim().replace('\r', " ")));
        folding = true;
    }
    let has = |k: Known| found.iter().any(|(f, v)| *f == k && !v.is_empty());
    if !has(Known::Via) || !has(Known::CSeq) {
        return None;
    }
    let mut builder = Response::builder(err.status_code()).reason(err.reason());
    for known in [
        Known::Via,
        Known::From,
        Known::To,
        Known::CallId,
        Known::CSeq,
    ] {
        let name: HeaderName = known.name();
        for (_, value) in found.iter().filter(|(f, v)| *f == known && !v.is_empty()) {
            builder = builder.header(name.clone(), value);
            if known != Known::Via {
                break;
            }
        }
    }
    let response = builder.to_tag(&tag_for(raw)).build();
    Some(response)
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn trim_ws(s: &[u8]) -> &[u8] {
    let start = s
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(s.len());
    let end = s
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

/// A To tag derived from the request bytes (FNV-1a), so retransmissions of the same bad
/// request get the same answer without keeping state.
fn tag_for(raw: &[u8]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in raw.iter().take(4096) {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
