//! Size limits applied while scanning untrusted input.

/// Upper bounds on what the parser accepts; anything larger is rejected before it can cost
/// unbounded memory or time.
///
/// The defaults suit a presence service: a datagram never exceeds 64 KiB, real clients send a
/// few dozen header fields, and PIDF documents stay well below 60 KiB.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole message (start line, header fields and body) in bytes.
    pub max_message: usize,
    /// Largest number of header field lines (a folded field counts once).
    pub max_headers: usize,
    /// Longest single header field in bytes, continuation lines included.
    pub max_header_line: usize,
    /// Largest message body in bytes.
    pub max_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 64 * 1024,
            max_headers: 128,
            max_header_line: 8 * 1024,
            max_body: 60 * 1024,
        }
    }
}
