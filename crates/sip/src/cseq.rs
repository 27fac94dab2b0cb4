//! The CSeq header field.

use std::fmt;
use std::str::FromStr;

use crate::error::ParseError;
use crate::grammar::{is_token, parse_u32, split_lws, trim};
use crate::header_name::HeaderName;
use crate::method::Method;

/// `CSeq: <seq> <method>`; the sequence number must fit 32 bits (RFC 3261 §8.1.1.5).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CSeq {
    /// Sequence number.
    pub seq: u32,
    /// Method of the request this CSeq belongs to.
    pub method: Method,
}

/// Splits and checks a CSeq value without allocating: (sequence number, method token).
pub(crate) fn scan(s: &str) -> Result<(u32, &str), ParseError> {
    let err = || ParseError::invalid(HeaderName::CSeq);
    let (seq, method) = split_lws(trim(s));
    let seq = parse_u32(seq).ok_or_else(err)?;
    if !is_token(method) {
        return Err(err());
    }
    Ok((seq, method))
}

impl CSeq {
    /// Creates a CSeq.
    pub fn new(seq: u32, method: Method) -> Self {
        CSeq { seq, method }
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

impl FromStr for CSeq {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Self, ParseError> {
        let (seq, method) = scan(s)?;
        Ok(CSeq {
            seq,
            method: method.parse()?,
        })
    }
}
