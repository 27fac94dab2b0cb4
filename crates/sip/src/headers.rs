//! The header fields of a message: ranges into the message bytes, looked up by name.

use std::fmt;

use bytes::Bytes;
use smallvec::SmallVec;

use crate::grammar::CommaSplit;
use crate::header_name::{AsHeaderName, HeaderName, Key, Known};

/// Header fields stored inline before spilling to the heap; a typical SUBSCRIBE or NOTIFY has
/// a dozen or so.
const INLINE_HEADERS: usize = 32;

/// A byte range either in the message buffer or in the side buffer of owned text. The top bit
/// of `start` marks the side buffer, keeping a header entry at 20 bytes (the inline entry list
/// is moved a few times per parse, so its size matters); offsets stay below 2^31 because
/// messages and side buffers are far smaller than that.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
}

const OWNED: u32 = 1 << 31;

impl Span {
    pub(crate) fn buf(start: usize, end: usize) -> Self {
        debug_assert!(start <= end && end < OWNED as usize);
        Span {
            start: start as u32 & !OWNED,
            end: end as u32,
        }
    }

    pub(crate) fn arena(start: usize, end: usize) -> Self {
        debug_assert!(start <= end && end < OWNED as usize);
        Span {
            start: start as u32 | OWNED,
            end: end as u32,
        }
    }

    #[inline]
    fn owned(self) -> bool {
        self.start & OWNED != 0
    }

    #[inline]
    fn range(self) -> std::ops::Range<usize> {
        (self.start & !OWNED) as usize..self.end as usize
    }

    #[inline]
    fn len(self) -> usize {
        self.range().len()
    }

    /// The bytes this span covers, given the buffers it may point into.
    pub(crate) fn resolve<'a>(&self, buf: &'a [u8], arena: &'a str) -> &'a [u8] {
        let source = if self.owned() { arena.as_bytes() } else { buf };
        source.get(self.range()).unwrap_or_default()
    }
}

/// One header line.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Entry {
    pub(crate) known: Option<Known>,
    pub(crate) name: Span,
    pub(crate) value: Span,
}

pub(crate) type EntryList = SmallVec<[Entry; INLINE_HEADERS]>;

/// The header fields of a request or response, in order.
///
/// Parsed messages keep each name and value as a range into the received bytes (shared, not
/// copied); values of folded header lines and values added by builders live in a side buffer.
/// Lookups are case-insensitive and treat compact forms (`v`, `m`, `i`, ...) as their full
/// names. Typed accessors (`via()`, `from()`, `cseq()`, ...) parse on demand.
#[derive(Clone, Default)]
pub struct Headers {
    buf: Bytes,
    arena: String,
    entries: EntryList,
}

/// Iterator over the values of one header name, splitting comma-separated lists.
pub struct Values<'a, 'n> {
    headers: &'a Headers,
    index: usize,
    known: Option<Known>,
    other: Option<&'n str>,
    split: Option<CommaSplit<'a>>,
    split_lists: bool,
}

impl<'a> Iterator for Values<'a, '_> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        loop {
            if let Some(split) = self.split.as_mut() {
                match split.next() {
                    Some("") => continue,
                    Some(v) => return Some(v),
                    None => self.split = None,
                }
            }
            let entry = loop {
                let e = self.headers.entries.get(self.index)?;
                self.index += 1;
                if self.headers.entry_matches(e, self.known, self.other) {
                    break e;
                }
            };
            let text = self.headers.text(entry.value);
            if self.split_lists && entry.known.is_some_and(Known::is_list) {
                self.split = Some(CommaSplit::new(text));
            } else {
                return Some(text);
            }
        }
    }
}

impl Headers {
    pub(crate) fn from_parts(buf: Bytes, arena: String, entries: EntryList) -> Self {
        Headers {
            buf,
            arena,
            entries,
        }
    }

    /// The entry list and side buffer, for the scanner to fill.
    pub(crate) fn parts_mut(&mut self) -> (&mut EntryList, &mut String) {
        (&mut self.entries, &mut self.arena)
    }

    pub(crate) fn text(&self, span: Span) -> &str {
        let range = span.range();
        if span.owned() {
            self.arena.get(range).unwrap_or_default()
        } else {
            self.buf
                .get(range)
                .and_then(|b| std::str::from_utf8(b).ok())
                .unwrap_or_default()
        }
    }

    /// Like [`text`](Self::text), for spans into `head`, which is the already validated text of
    /// the header section starting at byte `base` of the buffer (saves validating it again).
    pub(crate) fn text_in<'a>(&'a self, span: Span, head: &'a str, base: usize) -> &'a str {
        if span.owned() {
            return self.text(span);
        }
        let range = span.range();
        head.get(range.start - base..range.end - base)
            .unwrap_or_default()
    }

    pub(crate) fn entries(&self) -> &[Entry] {
        &self.entries
    }

    fn entry_matches(&self, e: &Entry, known: Option<Known>, other: Option<&str>) -> bool {
        match (known, other) {
            (Some(k), _) => e.known == Some(k),
            (None, Some(name)) => e.known.is_none() && self.text(e.name).eq_ignore_ascii_case(name),
            (None, None) => false,
        }
    }

    fn values<'a, 'n>(&'a self, name: &'n impl AsHeaderName, split_lists: bool) -> Values<'a, 'n> {
        let (known, other) = match name.key() {
            Key::Known(k) => (Some(k.0), None),
            Key::Other(s) => (None, Some(s)),
        };
        Values {
            headers: self,
            index: 0,
            known,
            other,
            split: None,
            split_lists,
        }
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no header lines.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The first value of a header: for list headers (Via, Contact, Route, Supported, ...)
    /// the first comma-separated element, otherwise the whole (unfolded) line value.
    pub fn get(&self, name: impl AsHeaderName) -> Option<&str> {
        self.values(&name, true).next()
    }

    /// Every value of a header, in order: each line, and for list headers each
    /// comma-separated element of each line (commas inside quoted strings and `<...>` do not
    /// split). Headers whose grammar contains commas (WWW-Authenticate, Authorization, Date,
    /// ...) and unknown headers are never split. Empty list elements are skipped.
    pub fn get_all<'a>(
        &'a self,
        name: impl AsHeaderName + 'a,
    ) -> impl Iterator<Item = &'a str> + 'a {
        let known = match name.key() {
            Key::Known(k) => Some(k.0),
            Key::Other(_) => None,
        };
        let mut index = 0;
        let mut split: Option<CommaSplit<'a>> = None;
        std::iter::from_fn(move || loop {
            if let Some(s) = split.as_mut() {
                match s.next() {
                    Some("") => continue,
                    Some(v) => return Some(v),
                    None => split = None,
                }
            }
            let entry = loop {
                let e = self.entries.get(index)?;
                index += 1;
                let matched = match (known, name.key()) {
                    (Some(k), _) => e.known == Some(k),
                    (None, Key::Other(n)) => {
                        e.known.is_none() && self.text(e.name).eq_ignore_ascii_case(n)
                    }
                    (None, Key::Known(_)) => false,
                };
                if matched {
                    break e;
                }
            };
            let text = self.text(entry.value);
            if entry.known.is_some_and(Known::is_list) {
                split = Some(CommaSplit::new(text));
            } else {
                return Some(text);
            }
        })
    }

    /// The values of each header line of that name, unsplit.
    pub fn lines<'a, 'n>(&'a self, name: &'n impl AsHeaderName) -> Values<'a, 'n> {
        self.values(name, false)
    }

    /// Whether the header is present.
    pub fn contains(&self, name: impl AsHeaderName) -> bool {
        self.values(&name, false).next().is_some()
    }

    /// Every header line as (name, value): well-known names in canonical spelling (compact
    /// forms expanded), other names as written.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.entries.iter().map(|e| {
            let name = match e.known {
                Some(k) => k.canonical(),
                None => self.text(e.name),
            };
            (name, self.text(e.value))
        })
    }

    /// Appends a header line. CR and LF in the value become spaces and characters that are
    /// not allowed in a header name are dropped, so no value can inject header lines; a name
    /// with no valid character at all is not added.
    pub fn push(&mut self, name: &HeaderName, value: &str) {
        self.push_with(name, |headers| headers.push_text(value));
    }

    /// Appends a header line whose value is `value` formatted straight into the message's own
    /// text (no intermediate string); the same rules as [`Headers::push`] apply.
    pub fn push_display(&mut self, name: &HeaderName, value: &dyn fmt::Display) {
        self.push_with(name, |headers| headers.push_formatted(value));
    }

    fn push_with(&mut self, name: &HeaderName, push_value: impl FnOnce(&mut Self) -> Span) {
        let known = name.known();
        if known.is_none() && !name.as_str().bytes().any(crate::grammar::is_token_char) {
            return;
        }
        let name_span = match known {
            Some(_) => Span::arena(0, 0),
            None => {
                let start = self.arena.len();
                self.arena.extend(
                    name.as_str()
                        .chars()
                        .filter(|c| c.is_ascii() && crate::grammar::is_token_char(*c as u8)),
                );
                Span::arena(start, self.arena.len())
            }
        };
        let value_span = push_value(self);
        self.entries.push(Entry {
            known,
            name: name_span,
            value: value_span,
        });
    }

    fn push_formatted(&mut self, value: &dyn fmt::Display) -> Span {
        use fmt::Write as _;
        let start = self.arena.len();
        // A Display impl that fails leaves what it wrote, as `to_string` would panic instead.
        let _ = write!(self.arena, "{value}");
        let written = &self.arena[start..];
        if crate::grammar::trim(written).len() == written.len() && !written.contains(['\r', '\n']) {
            return Span::arena(start, self.arena.len());
        }
        // Rare: surrounding whitespace or a line break to neutralise.
        let text = self.arena.split_off(start);
        self.push_text(&text)
    }

    fn push_text(&mut self, value: &str) -> Span {
        let start = self.arena.len();
        let value = crate::grammar::trim(value);
        if value.contains(['\r', '\n']) {
            self.arena.extend(
                value
                    .chars()
                    .map(|c| if c == '\r' || c == '\n' { ' ' } else { c }),
            );
        } else {
            self.arena.push_str(value);
        }
        Span::arena(start, self.arena.len())
    }

    /// Removes every line of that header.
    pub fn remove(&mut self, name: impl AsHeaderName) {
        let (known, other) = match name.key() {
            Key::Known(k) => (Some(k.0), None),
            Key::Other(s) => (None, Some(s)),
        };
        let keep: EntryList = self
            .entries
            .iter()
            .filter(|e| !self.entry_matches(e, known, other))
            .copied()
            .collect();
        self.entries = keep;
    }

    /// Replaces every line of that header with one line holding `value` (appended if absent).
    pub fn set(&mut self, name: &HeaderName, value: &str) {
        let known = name.known();
        let other = if known.is_some() {
            None
        } else {
            Some(name.as_str())
        };
        match self
            .entries
            .iter()
            .position(|e| self.entry_matches(e, known, other))
        {
            Some(first) => {
                let span = self.push_text(value);
                self.entries[first].value = span;
                let mut keep = EntryList::new();
                for (index, e) in self.entries.iter().enumerate() {
                    if index == first || !self.entry_matches(e, known, other) {
                        keep.push(*e);
                    }
                }
                self.entries = keep;
            }
            None => self.push(name, value),
        }
    }

    /// Replaces the first element of the first line of a list header (e.g. the top Via),
    /// keeping the other elements of that line; appends a line if the header is absent.
    pub(crate) fn replace_first_element(&mut self, name: &HeaderName, value: &str) {
        let known = name.known();
        let Some(first) = self.entries.iter().position(|e| e.known == known) else {
            self.push(name, value);
            return;
        };
        let line = self.text(self.entries[first].value);
        let mut elements = CommaSplit::new(line).filter(|v| !v.is_empty());
        let _replaced = elements.next();
        let mut new_line = String::with_capacity(line.len() + value.len());
        new_line.push_str(value);
        for rest in elements {
            new_line.push_str(", ");
            new_line.push_str(rest);
        }
        let span = self.push_text(&new_line);
        self.entries[first].value = span;
    }

    /// Writes every header line (canonical names, Content-Length lines skipped) to `out`.
    pub(crate) fn write_to(&self, out: &mut Vec<u8>) {
        for e in &self.entries {
            if e.known == Some(Known::ContentLength) {
                continue;
            }
            let name = match e.known {
                Some(k) => k.canonical(),
                None => self.text(e.name),
            };
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b": ");
            // Raw bytes: buffer spans lie in the header section, which parsing validated as
            // UTF-8, so this writes what `text` would without validating each value again.
            out.extend_from_slice(e.value.resolve(&self.buf, &self.arena));
            out.extend_from_slice(b"\r\n");
        }
    }

    /// Bytes [`write_to`](Self::write_to) will need, for sizing the output buffer.
    pub(crate) fn encoded_len(&self) -> usize {
        self.entries
            .iter()
            .map(|e| {
                let name_len = match e.known {
                    Some(k) => k.canonical().len(),
                    None => e.name.len(),
                };
                name_len + e.value.len() + 4
            })
            .sum()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}
