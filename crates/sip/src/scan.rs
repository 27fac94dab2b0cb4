//! The single pass over the raw bytes that locates the start line, every header field and the
//! body. Header fields are recorded as byte ranges into the message buffer in an inline
//! array; only folded (multi-line) values are copied, unfolded, into a side buffer.

use memchr::{memchr, memchr2};

use crate::error::{ErrorKind, ParseError};
use crate::grammar::is_token_char;
use crate::header_name::lookup_token;
use crate::headers::{Entry, EntryList, Span};
use crate::limits::Limits;

/// Whether the input is one whole datagram (UDP) or a prefix of a byte stream (TCP/TLS/WS).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// The buffer is the whole message; a missing final empty line is tolerated.
    Datagram,
    /// More bytes may follow; the header section must end with an empty line.
    Stream,
}

/// Where the scan found the parts of the message; the header fields go to the caller's list.
#[derive(Clone, Copy)]
pub(crate) struct Scanned {
    /// Offset where the start line begins (after skipped CRLFs).
    pub(crate) start: usize,
    /// End of the start line (CR/LF excluded).
    pub(crate) start_line_end: usize,
    /// Offset of the first body byte.
    pub(crate) body_start: usize,
}

/// Number of leading CR/LF bytes (keep-alives and the CRLFs RFC 3261 §7.5 says to ignore).
pub(crate) fn leading_crlf(buf: &[u8]) -> usize {
    buf.iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count()
}

/// The last header field seen, while continuation lines may still extend it. Its entry is
/// already in the list (value trimmed as for a single line); a folded value is unfolded into
/// the arena when the field is closed.
#[derive(Clone, Copy)]
struct Open {
    line_start: usize,
    value_start: usize,
    value_end: usize,
    folded: bool,
}

#[inline]
fn is_wsp(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Where the line starting at `pos` ends: (end of its content, start of the next line), or
/// `None` when no line feed follows. Lines end with CRLF or a bare LF; a bare CR inside a line
/// is an error, since another parser could take it for a line break.
fn find_line_end(buf: &[u8], pos: usize) -> Result<Option<(usize, usize)>, ParseError> {
    let Some(i) = memchr2(b'\r', b'\n', &buf[pos..]) else {
        return Ok(None);
    };
    let at = pos + i;
    if buf[at] == b'\n' {
        return Ok(Some((at, at + 1)));
    }
    match buf.get(at + 1) {
        Some(b'\n') => Ok(Some((at, at + 2))),
        None => Ok(None),
        Some(_) => Err(ParseError::new(ErrorKind::BadHeaderLine)),
    }
}

/// The content end of an unterminated last line of a datagram (a final CR is dropped).
fn last_line_end(buf: &[u8], pos: usize) -> Result<usize, ParseError> {
    let len = buf.len();
    match memchr(b'\r', &buf[pos..]) {
        Some(i) if pos + i + 1 == len => Ok(len - 1),
        Some(_) => Err(ParseError::new(ErrorKind::BadHeaderLine)),
        None => Ok(len),
    }
}

/// Scans the head of a message. `Ok(None)` means a stream needs more bytes.
#[inline]
///
/// Header fields are appended to `entries` (which the caller passes empty) and unfolded values
/// to `arena`; filling the caller's list saves moving the inline array around.
pub(crate) fn scan(
    buf: &[u8],
    limits: &Limits,
    mode: Mode,
    entries: &mut EntryList,
    arena: &mut String,
) -> Result<Option<Scanned>, ParseError> {
    let start = leading_crlf(buf);
    let len = buf.len();
    let mut open: Option<Open> = None;

    // Start line.
    let (start_line_end, mut pos) = match find_line_end(buf, start)? {
        Some(found) => found,
        None => match mode {
            Mode::Stream if len - start > limits.max_header_line => {
                return Err(ParseError::new(ErrorKind::HeaderTooLong))
            }
            Mode::Stream => return Ok(None),
            Mode::Datagram => (last_line_end(buf, start)?, len),
        },
    };
    if start_line_end - start > limits.max_header_line {
        return Err(ParseError::new(ErrorKind::HeaderTooLong));
    }
    if start_line_end == start {
        return Err(ParseError::new(ErrorKind::BadStartLine));
    }

    let body_start;
    loop {
        if pos >= len {
            match mode {
                Mode::Stream => return Ok(None),
                Mode::Datagram => {
                    close(buf, open.take(), entries, arena)?;
                    body_start = len;
                    break;
                }
            }
        }
        let (line_end, next) = match find_line_end(buf, pos)? {
            Some(found) => found,
            None => match mode {
                Mode::Stream => {
                    let from = open.as_ref().map_or(pos, |o| o.line_start);
                    if len - from > limits.max_header_line {
                        return Err(ParseError::new(ErrorKind::HeaderTooLong));
                    }
                    return Ok(None);
                }
                Mode::Datagram => (last_line_end(buf, pos)?, len),
            },
        };
        let line = &buf[pos..line_end];
        let Some(&first) = line.first() else {
            close(buf, open.take(), entries, arena)?;
            body_start = next;
            break;
        };
        if is_wsp(first) {
            // Continuation line (header folding, RFC 3261 §7.3.1).
            let Some(o) = open.as_mut() else {
                return Err(ParseError::new(ErrorKind::BadHeaderLine));
            };
            o.value_end = line_end;
            o.folded = true;
            if line_end - o.line_start > limits.max_header_line {
                return Err(ParseError::new(ErrorKind::HeaderTooLong));
            }
        } else {
            close(buf, open.take(), entries, arena)?;
            if line.len() > limits.max_header_line {
                return Err(ParseError::new(ErrorKind::HeaderTooLong));
            }
            if entries.len() >= limits.max_headers {
                return Err(ParseError::new(ErrorKind::TooManyHeaders));
            }
            // Name, optional whitespace, colon: one pass over the name's bytes.
            let name_end = line
                .iter()
                .position(|&b| !is_token_char(b))
                .unwrap_or(line.len());
            let mut colon = name_end;
            while colon < line.len() && is_wsp(line[colon]) {
                colon += 1;
            }
            if name_end == 0 || line.get(colon) != Some(&b':') {
                return Err(ParseError::new(ErrorKind::BadHeaderLine));
            }
            let mut value_start = pos + colon + 1;
            while value_start < line_end && is_wsp(buf[value_start]) {
                value_start += 1;
            }
            let mut value_end = line_end;
            while value_end > value_start && is_wsp(buf[value_end - 1]) {
                value_end -= 1;
            }
            entries.push(Entry {
                known: lookup_token(&line[..name_end]),
                name: Span::buf(pos, pos + name_end),
                value: Span::buf(value_start, value_end),
            });
            open = Some(Open {
                line_start: pos,
                value_start,
                value_end: line_end,
                folded: false,
            });
        }
        pos = next;
    }
    Ok(Some(Scanned {
        start,
        start_line_end,
        body_start,
    }))
}

/// Completes the last header field: a folded value is unfolded into the arena, each line
/// break and its surrounding whitespace replaced by one space.
#[inline]
fn close(
    buf: &[u8],
    open: Option<Open>,
    entries: &mut EntryList,
    arena: &mut String,
) -> Result<(), ParseError> {
    match open {
        Some(o) if o.folded => unfold(buf, o, entries, arena),
        _ => Ok(()),
    }
}

#[cold]
fn unfold(
    buf: &[u8],
    o: Open,
    entries: &mut EntryList,
    arena: &mut String,
) -> Result<(), ParseError> {
    let raw = &buf[o.value_start..o.value_end];
    let text = std::str::from_utf8(raw).map_err(|_| ParseError::new(ErrorKind::InvalidUtf8))?;
    let start = arena.len();
    for piece in text.split('\n') {
        let piece = piece.trim_matches(|c| c == ' ' || c == '\t' || c == '\r');
        if piece.is_empty() {
            continue;
        }
        if arena.len() > start {
            arena.push(' ');
        }
        arena.push_str(piece);
    }
    if let Some(last) = entries.last_mut() {
        last.value = Span::arena(start, arena.len());
    }
    Ok(())
}
