//! RFC 3261 §25 character classes and the small lexical helpers every typed parser shares:
//! tokens, quoted strings, linear whitespace, comma lists and `;name=value` parameters.

/// A byte class as a 256-entry table, built at compile time so membership is one load.
pub(crate) type ByteClass = [bool; 256];

/// Builds a class from ASCII alphanumerics (when `alnum`) plus the listed bytes.
pub(crate) const fn class(alnum: bool, extra: &[u8]) -> ByteClass {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = alnum && c.is_ascii_alphanumeric();
        b += 1;
    }
    let mut i = 0;
    while i < extra.len() {
        table[extra[i] as usize] = true;
        i += 1;
    }
    table
}

static TOKEN: ByteClass = class(true, b"-.!%*_+`'~");
static WORD: ByteClass = class(true, b"-.!%*_+`'~()<>:\\\"/[]?{}");
static PARAM_VALUE: ByteClass = class(true, b"-.!%*_+`'~:[]");

/// `token` characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~".
#[inline]
pub(crate) fn is_token_char(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// Whether `s` is a non-empty `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// `word` characters (Call-ID): token characters plus `( ) < > : \ " / [ ] ? { }`.
#[inline]
pub(crate) fn is_word_char(b: u8) -> bool {
    WORD[usize::from(b)]
}

/// Linear whitespace as it can remain inside an unfolded header value.
#[inline]
pub(crate) fn is_lws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

/// Trims linear whitespace from both ends.
pub(crate) fn trim(s: &str) -> &str {
    // Byte-wise: linear whitespace is ASCII, so both cut points are character boundaries.
    let b = s.as_bytes();
    let mut start = 0;
    let mut end = b.len();
    while start < end && is_lws(b[start]) {
        start += 1;
    }
    while end > start && is_lws(b[end - 1]) {
        end -= 1;
    }
    s.get(start..end).unwrap_or_default()
}

/// Position just after the closing quote of the quoted string opening at `bytes[start]`,
/// honouring backslash escapes; `None` when it is unterminated.
pub(crate) fn quoted_end(bytes: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// Removes the surrounding quotes and backslash escapes of a quoted string; other text is
/// returned as is.
pub(crate) fn unquote(s: &str) -> String {
    let s = trim(s);
    let Some(inner) = s.strip_prefix('"').and_then(|r| r.strip_suffix('"')) else {
        return s.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(escaped) = chars.next() {
                out.push(escaped);
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Writes `s` as a quoted string, escaping `"`, `\` and control characters with a backslash
/// (CR and LF cannot appear in a quoted string at all and become spaces).
pub(crate) fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '\r' | '\n' => out.push(' '),
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_control() && c != '\t' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Splits a header value at commas that are outside quoted strings and `<...>`, yielding each
/// element trimmed (empty elements included, so validators can reject them).
pub(crate) struct CommaSplit<'a> {
    rest: Option<&'a str>,
}

impl<'a> CommaSplit<'a> {
    pub(crate) fn new(s: &'a str) -> Self {
        CommaSplit { rest: Some(s) }
    }
}

impl<'a> Iterator for CommaSplit<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        let bytes = s.as_bytes();
        // Without a comma there is exactly one element, whatever the quoting.
        if memchr::memchr(b',', bytes).is_none() {
            self.rest = None;
            return Some(trim(s));
        }
        let mut i = 0;
        let mut in_angle = false;
        while i < bytes.len() {
            match bytes[i] {
                b'"' => match quoted_end(bytes, i) {
                    Some(end) => {
                        i = end;
                        continue;
                    }
                    None => break,
                },
                b'<' => in_angle = true,
                b'>' => in_angle = false,
                b',' if !in_angle => {
                    self.rest = Some(&s[i + 1..]);
                    return Some(trim(&s[..i]));
                }
                _ => {}
            }
            i += 1;
        }
        self.rest = None;
        Some(trim(s))
    }
}

/// A `;name[=value]` parameter list, iterated without allocating. Values are returned raw:
/// quoted strings keep their quotes. Each item is an error when the list is malformed.
#[derive(Clone)]
pub(crate) struct Params<'a> {
    rest: &'a str,
}

/// Which characters a parameter value may use outside quotes: token, and host characters
/// (IPv6 references included, and bare IPv6 `received=` values per RFC 5118 §4.5).
#[inline]
pub(crate) fn is_param_value_char(b: u8) -> bool {
    PARAM_VALUE[usize::from(b)]
}

impl<'a> Params<'a> {
    /// `s` must be empty or start (after optional whitespace) with `;`.
    pub(crate) fn new(s: &'a str) -> Self {
        Params { rest: s }
    }
}

impl<'a> Iterator for Params<'a> {
    type Item = Result<(&'a str, Option<&'a str>), ()>;

    fn next(&mut self) -> Option<Self::Item> {
        let s = trim(self.rest);
        if s.is_empty() {
            return None;
        }
        let Some(body) = s.strip_prefix(';') else {
            self.rest = "";
            return Some(Err(()));
        };
        let bytes = body.as_bytes();
        // name
        let mut i = 0;
        while i < bytes.len() && is_lws(bytes[i]) {
            i += 1;
        }
        let name_start = i;
        while i < bytes.len() && is_token_char(bytes[i]) {
            i += 1;
        }
        let name = &body[name_start..i];
        if name.is_empty() {
            self.rest = "";
            return Some(Err(()));
        }
        while i < bytes.len() && is_lws(bytes[i]) {
            i += 1;
        }
        if i >= bytes.len() || bytes[i] == b';' {
            self.rest = &body[i..];
            return Some(Ok((name, None)));
        }
        if bytes[i] != b'=' {
            self.rest = "";
            return Some(Err(()));
        }
        i += 1;
        while i < bytes.len() && is_lws(bytes[i]) {
            i += 1;
        }
        let value_start = i;
        if i < bytes.len() && bytes[i] == b'"' {
            match quoted_end(bytes, i) {
                Some(end) => i = end,
                None => {
                    self.rest = "";
                    return Some(Err(()));
                }
            }
        } else {
            while i < bytes.len() && is_param_value_char(bytes[i]) {
                i += 1;
            }
        }
        let value = &body[value_start..i];
        if value.is_empty() {
            self.rest = "";
            return Some(Err(()));
        }
        while i < bytes.len() && is_lws(bytes[i]) {
            i += 1;
        }
        if i < bytes.len() && bytes[i] != b';' {
            self.rest = "";
            return Some(Err(()));
        }
        self.rest = &body[i..];
        Some(Ok((name, Some(value))))
    }
}

/// Parses a parameter list into owned pairs.
pub(crate) fn owned_params(s: &str) -> Result<Vec<(String, Option<String>)>, ()> {
    Params::new(s)
        .map(|p| p.map(|(n, v)| (n.to_owned(), v.map(str::to_owned))))
        .collect()
}

/// Validates a parameter list without allocating.
///
/// Accepts exactly what iterating [`Params`] accepts, in one pass over the bytes.
pub(crate) fn check_params(s: &str) -> Result<(), ()> {
    let b = s.as_bytes();
    let len = b.len();
    let skip_lws = |mut i: usize| {
        while i < len && is_lws(b[i]) {
            i += 1;
        }
        i
    };
    let mut i = 0;
    loop {
        i = skip_lws(i);
        if i == len {
            return Ok(());
        }
        if b[i] != b';' {
            return Err(());
        }
        i = skip_lws(i + 1);
        let name_start = i;
        while i < len && is_token_char(b[i]) {
            i += 1;
        }
        if i == name_start {
            return Err(());
        }
        i = skip_lws(i);
        if i == len || b[i] == b';' {
            continue;
        }
        if b[i] != b'=' {
            return Err(());
        }
        i = skip_lws(i + 1);
        let value_start = i;
        if i < len && b[i] == b'"' {
            i = quoted_end(b, i).ok_or(())?;
        } else {
            while i < len && is_param_value_char(b[i]) {
                i += 1;
            }
        }
        if i == value_start {
            return Err(());
        }
        i = skip_lws(i);
        if i < len && b[i] != b';' {
            return Err(());
        }
    }
}

/// Finds a parameter by case-insensitive name in owned pairs.
pub(crate) fn find_param<'a>(
    params: &'a [(String, Option<String>)],
    name: &str,
) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

/// Replaces (or appends) a parameter in owned pairs.
pub(crate) fn set_param(
    params: &mut Vec<(String, Option<String>)>,
    name: &str,
    value: Option<String>,
) {
    match params
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        Some(slot) => slot.1 = value,
        None => params.push((name.to_owned(), value)),
    }
}

/// Writes `;name[=value]` pairs.
pub(crate) fn write_params(
    f: &mut std::fmt::Formatter<'_>,
    params: &[(String, Option<String>)],
) -> std::fmt::Result {
    for (name, value) in params {
        match value {
            Some(v) => write!(f, ";{name}={v}")?,
            None => write!(f, ";{name}")?,
        }
    }
    Ok(())
}

/// Parses an unsigned decimal that must fit `u32` (leading zeros allowed).
pub(crate) fn parse_u32(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.is_empty() || b.len() > 32 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let zeros = b.iter().take_while(|&&c| c == b'0').count();
    let digits = &b[zeros..];
    if digits.len() > 10 {
        return None;
    }
    let mut n: u64 = 0;
    for &c in digits {
        n = n * 10 + u64::from(c - b'0');
    }
    u32::try_from(n).ok()
}

/// Splits `s` at the first run of linear whitespace.
pub(crate) fn split_lws(s: &str) -> (&str, &str) {
    match s.bytes().position(is_lws) {
        Some(i) => (&s[..i], trim(&s[i..])),
        None => (s, ""),
    }
}

// Searches within one header value or URI. These are a few dozen bytes at most, where a plain
// loop beats the set-up cost of a vectorised `memchr` call.

/// Position of the first `a`.
#[inline]
pub(crate) fn find(hay: &[u8], a: u8) -> Option<usize> {
    hay.iter().position(|&b| b == a)
}

/// Position of the first `a` or `b`.
#[inline]
pub(crate) fn find2(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    hay.iter().position(|&c| c == a || c == b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_params_agrees_with_the_iterator() {
        let cases = [
            "",
            " ",
            ";a",
            ";a=b",
            " ;a = b ; c ",
            ";a=",
            ";a= ",
            ";=b",
            ";a=b c",
            ";a=\"x y\"",
            ";a=\"x",
            ";a=\"x\\\"",
            ";a=\"x\\\" ",
            "a",
            ";a;;b",
            ";a=b;",
            ";a=b; ",
            ";branch=z9hG4bK776;rport",
            ";received=[2001:db8::1]",
            ";a=\"q\";b",
            ";a\t=\tb",
            ";a=b\r\n ;c",
            ";a=b,c",
            ";\u{e9}",
            ";a=\"\u{e9}\"",
            "; ",
            ";a=b;c=\"\"",
        ];
        for case in cases {
            let reference = Params::new(case).try_for_each(|p| p.map(|_| ()));
            assert_eq!(check_params(case), reference, "{case:?}");
        }
    }
}
