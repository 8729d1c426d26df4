//! A parsed record: the field slots rules read ([`FieldNames`], [`Slot`]), the spans a
//! parser fills ([`Scratch`]), and the view rules read them through ([`Record`]).
//!
//! A span points into the record's own text, or into the scratch side buffer for
//! unescaped or converted values; offsets fit in u32 (the parser refuses longer records).
//! The first value of a key wins. Nothing here knows any record format.

use std::borrow::Cow;

/// A record's bytes as text: borrowed when they are UTF-8, else decoded lossily (the
/// flag says so, for the error count).
pub fn decode(bytes: &[u8]) -> (Cow<'_, str>, bool) {
    match std::str::from_utf8(bytes) {
        Ok(text) => (Cow::Borrowed(text), false),
        Err(_) => (String::from_utf8_lossy(bytes), true),
    }
}

/// The index of a field in [`FieldNames`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(pub usize);

/// The field names the rules read, each with its slot.
#[derive(Debug, Clone, Default)]
pub struct FieldNames {
    names: Vec<String>,
    /// Whether some rule reads the name from the record itself, rather than only from a
    /// capture of its own pattern.
    from_record: Vec<bool>,
}

impl FieldNames {
    /// The slot of a name read from the record, added if new.
    pub fn slot(&mut self, name: &str) -> Slot {
        let slot = self.capture_slot(name);
        self.from_record[slot.0] = true;
        slot
    }

    /// The slot of a name a rule reads from a capture of its own pattern, added if new.
    pub fn capture_slot(&mut self, name: &str) -> Slot {
        let known = self.names.iter().position(|n| n == name);
        Slot(known.unwrap_or_else(|| {
            self.names.push(name.to_owned());
            self.from_record.push(false);
            self.names.len() - 1
        }))
    }

    /// The names rules read from records, with their slots.
    pub fn record_fields(&self) -> impl Iterator<Item = (Slot, &str)> {
        self.names
            .iter()
            .enumerate()
            .filter(|(i, _)| self.from_record[*i])
            .map(|(i, name)| (Slot(i), name.as_str()))
    }

    /// The slot of a key seen in a record, if a rule reads it.
    pub fn find(&self, key: &str) -> Option<usize> {
        // Most keys in a record are not read by any rule: reject them on length and first
        // byte before comparing whole names.
        let first = *key.as_bytes().first()?;
        self.names.iter().position(|name| {
            name.len() == key.len()
                && name.as_bytes()[0] == first
                && name.as_bytes() == key.as_bytes()
        })
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// Where a field's value is: in the record itself, or in the scratch side buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    start: u32,
    end: u32,
    side: bool,
}

/// Per-record buffers, reused from record to record.
#[derive(Debug, Default)]
pub struct Scratch {
    pub(crate) spans: Vec<Option<Span>>,
    pub(crate) side: String,
}

impl Scratch {
    pub(super) fn reset(&mut self, slots: usize) {
        self.spans.clear();
        self.spans.resize(slots, None);
        self.side.clear();
    }

    /// Sets a slot to `value`, a sub-slice of `raw` (the first value of a key wins).
    pub(super) fn set_borrowed(&mut self, slot: usize, raw: &str, value: &str) {
        if self.spans[slot].is_none() {
            let start = value.as_ptr() as usize - raw.as_ptr() as usize;
            self.spans[slot] = Some(Span {
                start: start as u32,
                end: (start + value.len()) as u32,
                side: false,
            });
        }
    }

    /// Sets a slot to text written into the side buffer by `write`.
    pub(super) fn set_owned(&mut self, slot: usize, write: impl FnOnce(&mut String)) {
        if self.spans[slot].is_none() {
            let start = self.side.len();
            write(&mut self.side);
            self.spans[slot] = Some(Span {
                start: start as u32,
                end: self.side.len() as u32,
                side: true,
            });
        }
    }
}

/// The fields of one parsed record, by slot.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub raw: &'a str,
    spans: &'a [Option<Span>],
    side: &'a str,
}

impl<'a> Record<'a> {
    pub fn new(raw: &'a str, scratch: &'a Scratch) -> Self {
        Self {
            raw,
            spans: &scratch.spans,
            side: &scratch.side,
        }
    }

    pub(crate) fn from_parts(raw: &'a str, spans: &'a [Option<Span>], side: &'a str) -> Self {
        Self { raw, spans, side }
    }

    pub fn get(&self, slot: Slot) -> Option<&'a str> {
        let span = (*self.spans.get(slot.0)?)?;
        let text = if span.side { self.side } else { self.raw };
        text.get(span.start as usize..span.end as usize)
    }
}

/// A record's event time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventTime {
    /// No timestamp is configured: the read time stands in.
    NotConfigured,
    /// Configured, but missing or not in the format.
    Unreadable,
    /// Unix nanoseconds.
    At(i64),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum ParseError {
    #[error("line does not match the parser's pattern")]
    NoMatch,
    #[error("line is not a JSON object")]
    InvalidJson,
    #[error("line is longer than 4 GiB")]
    TooLong,
}

impl ParseError {
    /// A short, bounded label value for `omen_agent_errors_total{reason}`.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::NoMatch => "no_match",
            ParseError::InvalidJson => "invalid_json",
            ParseError::TooLong => "too_long",
        }
    }
}
