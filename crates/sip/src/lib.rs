//! The workspace's SIP message parser and serializer (RFC 3261 grammar, with the RFC 3265/6665,
//! 3903, 3581, 5626, 8898 pieces a presence service needs).
//!
//! # Zero-copy design
//!
//! A message arrives as one [`bytes::Bytes`] buffer. [`parse`] makes a single pass over it with
//! `memchr`, finding the start line, each header line and the body. Each header field is
//! recorded as a pair of byte ranges (name, value) into that buffer, in an inline array that
//! only spills to the heap past 32 header fields; the body is a `Bytes` slice of the same
//! buffer. Nothing is copied except the values of folded (multi-line) header fields, which are
//! unfolded into one side buffer, and the Request-URI, which is parsed eagerly.
//!
//! Typed values ([`Via`], [`NameAddr`], [`CSeq`], ...) are parsed lazily by the accessors on
//! [`Headers`]. [`parse`] still checks, without allocating, that the fields every element
//! depends on (Via, From, To, Call-ID, CSeq, Max-Forwards, Content-Length, Contact, Date) are
//! well-formed and not duplicated, so malformed input is rejected up front with the status
//! code RFC 3261 and RFC 4475 call for (see [`ParseError::status_code`] and
//! [`error_response`]).
//!
//! Output is built only through [`Request::builder`] and [`Response::for_request`]; the
//! serializer writes canonical header names and always a correct Content-Length.
//!
//! # Robustness
//!
//! Input from the network never panics the parser; [`Limits`] bound message, header and body
//! sizes. Stream transports use [`frame`] to find message boundaries before parsing.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod auth;
mod builder;
mod cseq;
mod error;
mod error_response;
mod event;
mod grammar;
mod header_name;
mod headers;
mod limits;
mod media_type;
mod message;
mod method;
mod name_addr;
mod scan;
mod status;
mod subscription_state;
mod typed;
mod uri;
mod validate;
mod via;

use bytes::Bytes;

pub use auth::{Authorization, Challenge};
pub use builder::{RequestBuilder, ResponseBuilder, TypedHeader};
pub use cseq::CSeq;
pub use error::{ErrorKind, ParseError};
pub use error_response::error_response;
pub use event::Event;
pub use header_name::{AsHeaderName, HeaderName};
pub use headers::{Headers, Values};
pub use limits::Limits;
pub use media_type::MediaType;
pub use message::{Message, Request, Response};
pub use method::Method;
pub use name_addr::{Contact, Contacts, NameAddr};
pub use status::reason_phrase;
pub use subscription_state::{SubState, SubscriptionState};
pub use uri::{Scheme, Uri};
pub use via::{Via, MAGIC_COOKIE};

use header_name::Known;
use headers::EntryList;
use scan::Mode;

/// Parses one whole message (a UDP datagram, a WebSocket message, or a message cut out of a
/// stream with [`frame`]) with default [`Limits`].
pub fn parse(buf: Bytes) -> Result<Message, ParseError> {
    parse_with(buf, &Limits::default())
}

/// Parses one whole message with the given limits.
///
/// Leading CRLFs are ignored. A Content-Length shorter than the remaining bytes truncates the
/// body (the rest is discarded, RFC 3261 §18.3); a longer one is an error; without
/// Content-Length the body is everything after the header section.
pub fn parse_with(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
    parse_datagram(buf, limits).map_err(ParseError::in_datagram)
}

#[inline]
fn parse_datagram(buf: Bytes, limits: &Limits) -> Result<Message, ParseError> {
    if buf.len() > limits.max_message || buf.len() > (u32::MAX / 2) as usize {
        return Err(ParseError::new(ErrorKind::MessageTooLarge));
    }
    let mut headers = Headers::from_parts(buf.clone(), String::new(), EntryList::new());
    let (entries, arena) = headers.parts_mut();
    let scanned = scan::scan(&buf, limits, Mode::Datagram, entries, arena)?
        .ok_or(ParseError::new(ErrorKind::Incomplete))?;
    let head = std::str::from_utf8(&buf[scanned.start..scanned.body_start])
        .map_err(|_| ParseError::new(ErrorKind::InvalidUtf8))?;
    let start_line = &head[..scanned.start_line_end - scanned.start];
    let body_start = scanned.body_start;
    let scanned_start = scanned.start;

    let message =
        if start_line.len() >= 4 && start_line.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
            let (status, reason) = parse_status_line(start_line)?;
            let checked = validate::response(&headers, head, scanned_start)?;
            let body = body(&buf, body_start, checked.content_length, limits)?;
            Message::Response(Response {
                status,
                reason: reason.to_owned(),
                headers,
                body,
            })
        } else {
            let (method, uri) = parse_request_line(start_line)?;
            let checked = validate::request(&method, &headers, head, scanned_start)?;
            let body = body(&buf, body_start, checked.content_length, limits)?;
            Message::Request(Request {
                method,
                uri,
                headers,
                body,
            })
        };
    Ok(message)
}

fn check_version(version: &str) -> Result<(), ParseError> {
    if version.eq_ignore_ascii_case("SIP/2.0") {
        Ok(())
    } else if version.len() > 4 && version.as_bytes()[..4].eq_ignore_ascii_case(b"SIP/") {
        Err(ParseError::new(ErrorKind::UnsupportedVersion))
    } else {
        Err(ParseError::new(ErrorKind::BadStartLine))
    }
}

/// `Method SP Request-URI SP SIP-Version`, single spaces only (RFC 4475 §3.1.2.9/10).
fn parse_request_line(line: &str) -> Result<(Method, Uri), ParseError> {
    let bad = || ParseError::new(ErrorKind::BadStartLine);
    // Exactly three fields separated by single spaces.
    let fields = grammar::find(line.as_bytes(), b' ').and_then(|a| {
        let rest = &line[a + 1..];
        let b = grammar::find(rest.as_bytes(), b' ')?;
        let version = &rest[b + 1..];
        grammar::find(version.as_bytes(), b' ')
            .is_none()
            .then(|| (&line[..a], &rest[..b], version))
    });
    let Some((method, uri, version)) = fields else {
        // Still answer 505 for a recognisable SIP request of another version.
        let last = line.rsplit(' ').next().unwrap_or_default();
        check_version(last)?;
        return Err(bad());
    };
    check_version(version)?;
    let method: Method = method.parse()?;
    if uri.starts_with('<') {
        return Err(ParseError::new(ErrorKind::BadRequestUri));
    }
    let parts = uri::analyze(uri).map_err(|_| ParseError::new(ErrorKind::BadRequestUri))?;
    if parts.is_sip() && parts.has_headers() {
        // RFC 3261 §19.1.1: headers are not allowed in a Request-URI (RFC 4475 §3.1.2.11).
        return Err(ParseError::new(ErrorKind::BadRequestUri));
    }
    Ok((method, Uri::from_parts(uri, parts)))
}

/// `SIP-Version SP Status-Code SP Reason-Phrase` (an empty phrase is accepted with or without
/// the final space).
fn parse_status_line(line: &str) -> Result<(u16, &str), ParseError> {
    let bad = || ParseError::new(ErrorKind::BadStartLine);
    let (version, rest) = line.split_once(' ').ok_or_else(bad)?;
    check_version(version)?;
    let (code, reason) = match rest.split_once(' ') {
        Some((code, reason)) => (code, reason),
        None => (rest, ""),
    };
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let status: u16 = code.parse().map_err(|_| bad())?;
    if !(100..=699).contains(&status) {
        return Err(bad());
    }
    Ok((status, reason))
}

fn body(
    buf: &Bytes,
    body_start: usize,
    content_length: Option<&str>,
    limits: &Limits,
) -> Result<Bytes, ParseError> {
    let available = buf.len() - body_start;
    let content_length = content_length
        .map(typed::parse_content_length)
        .transpose()?;
    let len = match content_length {
        Some(n) if n > limits.max_body => return Err(ParseError::new(ErrorKind::BodyTooLarge)),
        Some(n) if n > available => return Err(ParseError::new(ErrorKind::BadContentLength)),
        Some(n) => n,
        None if available > limits.max_body => {
            return Err(ParseError::new(ErrorKind::BodyTooLarge))
        }
        None => available,
    };
    Ok(buf.slice(body_start..body_start + len))
}

/// Where the next message lies in a stream buffer: after `skip` bytes of CRLF keep-alives,
/// `len` bytes (start line, header fields and Content-Length body), or `None` while more
/// bytes are needed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Framing {
    /// Leading CR/LF bytes to discard (keep-alives, RFC 5626 §3.5.1).
    pub skip: usize,
    /// Length of the complete message that follows the skipped bytes, if it is all there.
    pub len: Option<usize>,
}

/// Finds the first message in a stream buffer (TCP, TLS). Content-Length is required on
/// streams (RFC 3261 §18.3). Errors mean the stream cannot be resynchronised and should be
/// closed: the header section exceeds the limits, or Content-Length is missing, repeated,
/// malformed or too large.
///
/// The cost is linear in `buf.len()`; until the header section is complete it is a single
/// vectorised search, so calling it after every read is cheap.
pub fn frame(buf: &[u8], limits: &Limits) -> Result<Framing, ParseError> {
    let skip = scan::leading_crlf(buf);
    let rest = &buf[skip..];
    if rest.is_empty() {
        return Ok(Framing { skip, len: None });
    }
    // Cheap test for the end of the header section first, so that calling this on every read
    // of a slowly arriving header stays a SIMD search rather than a full scan.
    let head_complete = memchr::memchr_iter(b'\n', rest).any(|i| {
        let after = &rest[i + 1..];
        after.starts_with(b"\n") || after.starts_with(b"\r\n")
    });
    if !head_complete {
        if rest.len() > limits.max_message {
            return Err(ParseError::new(ErrorKind::MessageTooLarge));
        }
        let last_line = memchr::memrchr(b'\n', rest).map_or(rest, |i| &rest[i + 1..]);
        if last_line.len() > limits.max_header_line {
            return Err(ParseError::new(ErrorKind::HeaderTooLong));
        }
        if rest.len()
            > limits
                .max_header_line
                .saturating_mul(limits.max_headers.saturating_add(1))
        {
            return Err(ParseError::new(ErrorKind::TooManyHeaders));
        }
        return Ok(Framing { skip, len: None });
    }
    let mut entries = EntryList::new();
    let mut arena = String::new();
    let Some(scanned) = scan::scan(rest, limits, Mode::Stream, &mut entries, &mut arena)? else {
        if rest.len() > limits.max_message {
            return Err(ParseError::new(ErrorKind::MessageTooLarge));
        }
        return Ok(Framing { skip, len: None });
    };
    let mut lengths = entries
        .iter()
        .filter(|e| e.known == Some(Known::ContentLength))
        .map(|e| e.value.resolve(rest, &arena));
    let value = lengths
        .next()
        .ok_or(ParseError::new(ErrorKind::MissingHeader(
            HeaderName::ContentLength,
        )))?;
    if lengths.next().is_some() {
        return Err(ParseError::new(ErrorKind::DuplicateHeader(
            HeaderName::ContentLength,
        )));
    }
    let text =
        std::str::from_utf8(value).map_err(|_| ParseError::new(ErrorKind::BadContentLength))?;
    let text = grammar::trim(text);
    if text.is_empty() || text.len() > 12 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::new(ErrorKind::BadContentLength));
    }
    let body_len: usize = text
        .parse()
        .map_err(|_| ParseError::new(ErrorKind::BadContentLength))?;
    if body_len > limits.max_body {
        return Err(ParseError::new(ErrorKind::BodyTooLarge));
    }
    let total = scanned.body_start + body_len;
    if total > limits.max_message {
        return Err(ParseError::new(ErrorKind::MessageTooLarge));
    }
    Ok(Framing {
        skip,
        len: (rest.len() >= total).then_some(total),
    })
}
