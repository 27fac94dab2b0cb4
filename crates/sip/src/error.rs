//! The parser's error type and the SIP status code each failure maps to.

use crate::header_name::HeaderName;

/// What went wrong while parsing or interpreting a SIP message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The datagram or framed message is larger than [`Limits::max_message`](crate::Limits).
    MessageTooLarge,
    /// More header fields than [`Limits::max_headers`](crate::Limits).
    TooManyHeaders,
    /// A header field longer than [`Limits::max_header_line`](crate::Limits).
    HeaderTooLong,
    /// The body is larger than [`Limits::max_body`](crate::Limits).
    BodyTooLarge,
    /// The input ended before the message was complete.
    Incomplete,
    /// The header section is not valid UTF-8.
    InvalidUtf8,
    /// The start line is malformed (wrong number of fields, bad spacing, bad status code).
    BadStartLine,
    /// The SIP version is not SIP/2.0.
    UnsupportedVersion,
    /// The request method is not a token.
    BadMethod,
    /// The Request-URI is malformed or not allowed there.
    BadRequestUri,
    /// A line in the header section is not `name: value` and not a continuation.
    BadHeaderLine,
    /// A mandatory header field is absent.
    MissingHeader(HeaderName),
    /// A header field that may appear once appears several times.
    DuplicateHeader(HeaderName),
    /// A header field value does not match its grammar.
    InvalidHeader(HeaderName),
    /// Content-Length is malformed, or disagrees with the bytes present.
    BadContentLength,
    /// The CSeq method differs from the request method.
    CSeqMethodMismatch {
        /// Whether the request method is an extension method the element does not know,
        /// in which case 501 is the better answer (RFC 4475 §3.1.2.18).
        unknown_method: bool,
    },
    /// A URI is malformed.
    InvalidUri,
    /// A value (outside a message) is malformed; the text names what was expected.
    InvalidValue(&'static str),
}

/// A parse failure, with the SIP response a server should answer it with.
///
/// `status_code()` and `reason()` are what [`error_response`](crate::error_response) puts in
/// the status line; `Display` gives the same reason plus detail for logs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{} ({})", self.reason(), self.status_code())]
pub struct ParseError {
    kind: ErrorKind,
    datagram: bool,
}

impl ParseError {
    /// Creates an error of the given kind.
    pub fn new(kind: ErrorKind) -> Self {
        ParseError {
            kind,
            datagram: false,
        }
    }

    pub(crate) fn invalid(name: HeaderName) -> Self {
        ParseError::new(ErrorKind::InvalidHeader(name))
    }

    /// Marks the error as raised on a datagram, where an oversized message is answered with
    /// 513 rather than 413.
    pub(crate) fn in_datagram(mut self) -> Self {
        self.datagram = true;
        self
    }

    /// The kind of failure.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The SIP status code a server should answer the offending request with.
    pub fn status_code(&self) -> u16 {
        match &self.kind {
            ErrorKind::MessageTooLarge if self.datagram => 513,
            ErrorKind::MessageTooLarge => 413,
            ErrorKind::TooManyHeaders | ErrorKind::HeaderTooLong => 513,
            ErrorKind::BodyTooLarge => 413,
            ErrorKind::UnsupportedVersion => 505,
            ErrorKind::CSeqMethodMismatch {
                unknown_method: true,
            } => 501,
            _ => 400,
        }
    }

    /// A reason phrase naming the problem, suitable for the status line of the answer.
    pub fn reason(&self) -> &str {
        match &self.kind {
            ErrorKind::MessageTooLarge => "Message Too Large",
            ErrorKind::TooManyHeaders => "Too Many Header Fields",
            ErrorKind::HeaderTooLong => "Header Field Too Long",
            ErrorKind::BodyTooLarge => "Request Entity Too Large",
            ErrorKind::Incomplete => "Incomplete Message",
            ErrorKind::InvalidUtf8 => "Invalid UTF-8 In Header",
            ErrorKind::BadStartLine => "Malformed Start Line",
            ErrorKind::UnsupportedVersion => "Version Not Supported",
            ErrorKind::BadMethod => "Malformed Method",
            ErrorKind::BadRequestUri => "Malformed Request-URI",
            ErrorKind::BadHeaderLine => "Malformed Header Line",
            ErrorKind::MissingHeader(name) => missing_reason(name),
            ErrorKind::DuplicateHeader(name) => duplicate_reason(name),
            ErrorKind::InvalidHeader(name) => invalid_reason(name),
            ErrorKind::BadContentLength => "Bad Content-Length",
            ErrorKind::CSeqMethodMismatch {
                unknown_method: true,
            } => "Not Implemented",
            ErrorKind::CSeqMethodMismatch {
                unknown_method: false,
            } => "CSeq Method Mismatch",
            ErrorKind::InvalidUri => "Malformed URI",
            ErrorKind::InvalidValue(what) => what,
        }
    }
}

fn missing_reason(name: &HeaderName) -> &'static str {
    match name {
        HeaderName::Via => "Missing Via Header",
        HeaderName::From => "Missing From Header",
        HeaderName::To => "Missing To Header",
        HeaderName::CallId => "Missing Call-ID Header",
        HeaderName::CSeq => "Missing CSeq Header",
        HeaderName::MaxForwards => "Missing Max-Forwards Header",
        HeaderName::ContentLength => "Missing Content-Length Header",
        _ => "Missing Mandatory Header",
    }
}

fn duplicate_reason(name: &HeaderName) -> &'static str {
    match name {
        HeaderName::From => "Multiple From Headers",
        HeaderName::To => "Multiple To Headers",
        HeaderName::CallId => "Multiple Call-ID Headers",
        HeaderName::CSeq => "Multiple CSeq Headers",
        HeaderName::MaxForwards => "Multiple Max-Forwards Headers",
        HeaderName::ContentLength => "Multiple Content-Length Headers",
        HeaderName::ContentType => "Multiple Content-Type Headers",
        _ => "Repeated Single-Value Header",
    }
}

fn invalid_reason(name: &HeaderName) -> &'static str {
    match name {
        HeaderName::Via => "Malformed Via Header",
        HeaderName::From => "Malformed From Header",
        HeaderName::To => "Malformed To Header",
        HeaderName::CallId => "Malformed Call-ID Header",
        HeaderName::CSeq => "Malformed CSeq Header",
        HeaderName::Contact => "Malformed Contact Header",
        HeaderName::MaxForwards => "Malformed Max-Forwards Header",
        HeaderName::Expires => "Malformed Expires Header",
        HeaderName::MinExpires => "Malformed Min-Expires Header",
        HeaderName::Event => "Malformed Event Header",
        HeaderName::ContentType => "Malformed Content-Type Header",
        HeaderName::ContentLength => "Malformed Content-Length Header",
        HeaderName::Accept => "Malformed Accept Header",
        HeaderName::Authorization => "Malformed Authorization Header",
        HeaderName::Route => "Malformed Route Header",
        HeaderName::RecordRoute => "Malformed Record-Route Header",
        HeaderName::SubscriptionState => "Malformed Subscription-State Header",
        HeaderName::Date => "Malformed Date Header",
        HeaderName::PAssertedIdentity => "Malformed P-Asserted-Identity Header",
        _ => "Malformed Header Value",
    }
}
