//! Checks applied to every parsed message, without allocating: the mandatory header fields are
//! present once and well-formed (RFC 3261 §8.1.1, §20), so that what reaches the application
//! can be answered and routed.

use crate::cseq;
use crate::error::{ErrorKind, ParseError};
use crate::grammar::{find, is_word_char, parse_u32, trim, CommaSplit};
use crate::header_name::{HeaderName, Known};
use crate::headers::Headers;
use crate::method::Method;
use crate::name_addr;
use crate::via;

/// Header fields that may appear at most once.
const SINGLETONS: [Known; 7] = [
    Known::From,
    Known::To,
    Known::CallId,
    Known::CSeq,
    Known::MaxForwards,
    Known::ContentLength,
    Known::ContentType,
];

fn invalid(known: Known) -> ParseError {
    ParseError::invalid(known.name())
}

/// Values of the single-occurrence fields that parsing needs after validation.
pub(crate) struct Checked<'a> {
    /// The Content-Length value, if present.
    pub(crate) content_length: Option<&'a str>,
}

/// Checks a request's header fields; `method` is the start-line method.
pub(crate) fn request<'a>(
    method: &Method,
    headers: &'a Headers,
    head: &'a str,
    base: usize,
) -> Result<Checked<'a>, ParseError> {
    let found = common(headers, head, base)?;
    let cseq_value = found.cseq.unwrap_or_default();
    let (_, cseq_method) = cseq::scan(cseq_value)?;
    if !method.matches(cseq_method) {
        return Err(ParseError::new(ErrorKind::CSeqMethodMismatch {
            unknown_method: !method.is_known(),
        }));
    }
    if let Some(v) = found.max_forwards {
        match parse_u32(trim(v)) {
            Some(n) if n <= 255 => {}
            _ => return Err(invalid(Known::MaxForwards)),
        }
    }
    Ok(Checked {
        content_length: found.content_length,
    })
}

/// Checks a response's header fields.
pub(crate) fn response<'a>(
    headers: &'a Headers,
    head: &'a str,
    base: usize,
) -> Result<Checked<'a>, ParseError> {
    let found = common(headers, head, base)?;
    let cseq_value = found.cseq.unwrap_or_default();
    cseq::scan(cseq_value)?;
    Ok(Checked {
        content_length: found.content_length,
    })
}

/// The (only) value of each single-occurrence field the checks below need.
#[derive(Default)]
struct Found<'a> {
    cseq: Option<&'a str>,
    max_forwards: Option<&'a str>,
    content_length: Option<&'a str>,
}

/// Index of a header field that may appear at most once in [`SINGLETONS`].
#[inline]
fn singleton_index(known: Known) -> Option<usize> {
    match known {
        Known::From => Some(0),
        Known::To => Some(1),
        Known::CallId => Some(2),
        Known::CSeq => Some(3),
        Known::MaxForwards => Some(4),
        Known::ContentLength => Some(5),
        Known::ContentType => Some(6),
        _ => None,
    }
}

fn common<'a>(headers: &'a Headers, head: &'a str, base: usize) -> Result<Found<'a>, ParseError> {
    let mut counts = [0u8; 7];
    let mut found = Found::default();
    let mut vias = 0usize;
    for e in headers.entries() {
        let Some(known) = e.known else { continue };
        if let Some(i) = singleton_index(known) {
            debug_assert_eq!(SINGLETONS[i], known);
            counts[i] = counts[i].saturating_add(1);
            if counts[i] > 1 {
                return Err(ParseError::new(ErrorKind::DuplicateHeader(known.name())));
            }
        }
        let value = headers.text_in(e.value, head, base);
        match known {
            Known::Via => {
                for element in CommaSplit::new(value) {
                    via::scan(element).map_err(|_| invalid(Known::Via))?;
                    vias += 1;
                }
            }
            Known::From | Known::To => {
                name_addr::scan(value).map_err(|_| invalid(known))?;
            }
            Known::CallId => {
                let v = trim(value);
                if !is_call_id(v) {
                    return Err(invalid(Known::CallId));
                }
            }
            Known::Contact => check_contact(value)?,
            Known::CSeq => found.cseq = Some(value),
            Known::MaxForwards => found.max_forwards = Some(value),
            Known::ContentLength => found.content_length = Some(value),
            Known::Date if !is_rfc1123_date(trim(value)) => {
                return Err(invalid(Known::Date));
            }
            _ => {}
        }
    }
    let missing = |i: usize, name: HeaderName| {
        if counts[i] == 0 {
            Err(ParseError::new(ErrorKind::MissingHeader(name)))
        } else {
            Ok(())
        }
    };
    if vias == 0 {
        return Err(ParseError::new(ErrorKind::MissingHeader(HeaderName::Via)));
    }
    missing(0, HeaderName::From)?;
    missing(1, HeaderName::To)?;
    missing(2, HeaderName::CallId)?;
    missing(3, HeaderName::CSeq)?;
    Ok(found)
}

/// `word ["@" word]`.
fn is_call_id(v: &str) -> bool {
    let ok = |w: &[u8]| !w.is_empty() && w.iter().all(|&b| is_word_char(b));
    let v = v.as_bytes();
    match find(v, b'@') {
        None => ok(v),
        Some(at) => ok(&v[..at]) && ok(&v[at + 1..]),
    }
}

fn check_contact(value: &str) -> Result<(), ParseError> {
    if trim(value) == "*" {
        return Ok(());
    }
    for element in CommaSplit::new(value) {
        name_addr::scan(element).map_err(|_| invalid(Known::Contact))?;
    }
    Ok(())
}

/// `wkday "," SP 2DIGIT SP month SP 4DIGIT SP 2DIGIT ":" 2DIGIT ":" 2DIGIT SP "GMT"`
/// (RFC 3261 §20.17 allows only GMT).
pub(crate) fn is_rfc1123_date(v: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = v.as_bytes();
    if b.len() != 29 {
        return false;
    }
    let digits = |range: std::ops::Range<usize>| b[range].iter().all(u8::is_ascii_digit);
    let name_in = |list: &[&str], range: std::ops::Range<usize>| {
        list.iter().any(|n| n.as_bytes() == &b[range.clone()])
    };
    name_in(&DAYS, 0..3)
        && &b[3..5] == b", "
        && digits(5..7)
        && b[7] == b' '
        && name_in(&MONTHS, 8..11)
        && b[11] == b' '
        && digits(12..16)
        && b[16] == b' '
        && digits(17..19)
        && b[19] == b':'
        && digits(20..22)
        && b[22] == b':'
        && digits(23..25)
        && &b[25..29] == b" GMT"
}
