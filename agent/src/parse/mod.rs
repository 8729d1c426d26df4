//! Parsing: a record (one line, or a line with its continuation lines) becomes the fields
//! the rules read, and optionally an event time.
//!
//! Rules name the fields they read when they are built; each name gets a slot
//! ([`FieldNames`]). A parser fills only those slots, as spans into the record (or into a
//! side buffer for unescaped or converted values), in a [`Scratch`] reused from record to
//! record: the common case (logfmt without escapes) allocates nothing per record, and a
//! rule reads a field by index, not by comparing names.

mod batch;
mod json;
mod logfmt;
mod regex;
pub mod timestamp;

pub use batch::{ParsedBatch, ParsedRecord};

use std::borrow::Cow;

use crate::config::{ParserConfig, ParserFormat};
pub use timestamp::{TimeFormat, TimestampParser};

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
}

impl FieldNames {
    /// The slot of a name, added if new.
    pub fn slot(&mut self, name: &str) -> Slot {
        let known = self.names.iter().position(|n| n == name);
        Slot(known.unwrap_or_else(|| {
            self.names.push(name.to_owned());
            self.names.len() - 1
        }))
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
    fn reset(&mut self, slots: usize) {
        self.spans.clear();
        self.spans.resize(slots, None);
        self.side.clear();
    }

    /// Sets a slot to `value`, a sub-slice of `raw` (the first value of a key wins).
    fn set_borrowed(&mut self, slot: usize, raw: &str, value: &str) {
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
    fn set_owned(&mut self, slot: usize, write: impl FnOnce(&mut String)) {
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

#[derive(Debug, thiserror::Error)]
pub enum ParserBuildError {
    #[error("`format: regex` needs a `pattern`")]
    MissingPattern,
    #[error("invalid regex: {0}")]
    Regex(#[from] ::regex::Error),
    #[error("{0}")]
    Timestamp(String),
}

/// A built parser: the record format, the fields to extract, and the event time.
#[derive(Debug, Clone)]
pub struct Parser {
    format: Format,
    fields: FieldNames,
    timestamp: Option<TimestampParser>,
}

#[derive(Debug, Clone)]
enum Format {
    Logfmt,
    Json(Vec<Vec<String>>),
    Regex(::regex::Regex, Vec<Option<usize>>),
    None,
}

impl Parser {
    /// Builds a parser extracting `fields` (the timestamp field is added to them).
    pub fn build(config: &ParserConfig, mut fields: FieldNames) -> Result<Self, ParserBuildError> {
        let timestamp = config
            .timestamp
            .as_ref()
            .map(|ts| TimestampParser::build(ts, &mut fields))
            .transpose()
            .map_err(ParserBuildError::Timestamp)?;
        let format = match config.format {
            ParserFormat::Logfmt => Format::Logfmt,
            ParserFormat::None => Format::None,
            ParserFormat::Json => Format::Json(
                fields
                    .names()
                    .iter()
                    .map(|name| name.split('.').map(str::to_owned).collect())
                    .collect(),
            ),
            ParserFormat::Regex => {
                let pattern = config
                    .pattern
                    .as_deref()
                    .ok_or(ParserBuildError::MissingPattern)?;
                let regex = ::regex::Regex::new(pattern)?;
                let slots = regex
                    .capture_names()
                    .map(|name| name.and_then(|n| fields.find(n)))
                    .collect();
                Format::Regex(regex, slots)
            }
        };
        Ok(Self {
            format,
            fields,
            timestamp,
        })
    }

    /// Parses `line` into `scratch`; read the fields with `Record::new(line, scratch)`.
    pub fn parse(&self, line: &str, scratch: &mut Scratch) -> Result<(), ParseError> {
        if u32::try_from(line.len()).is_err() {
            return Err(ParseError::TooLong);
        }
        scratch.reset(self.fields.len());
        match &self.format {
            Format::Logfmt => logfmt::parse_into(line, &self.fields, scratch),
            Format::Json(paths) => json::parse_into(line, paths, scratch)?,
            Format::Regex(regex, slots) => regex::parse_into(regex, slots, line, scratch)?,
            Format::None => {}
        }
        Ok(())
    }

    /// The event time of a parsed record, in Unix nanoseconds.
    pub fn event_time(&self, record: &Record<'_>) -> EventTime {
        match &self.timestamp {
            None => EventTime::NotConfigured,
            Some(ts) => ts.read(record).map_or(EventTime::Unreadable, EventTime::At),
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Parses a line with a parser extracting `names`, returning the values by name.
    pub fn fields(
        config: &ParserConfig,
        names: &[&str],
        line: &str,
    ) -> Result<Vec<Option<String>>, ParseError> {
        let mut field_names = FieldNames::default();
        let slots: Vec<Slot> = names.iter().map(|n| field_names.slot(n)).collect();
        let parser = Parser::build(config, field_names).unwrap();
        let mut scratch = Scratch::default();
        parser.parse(line, &mut scratch)?;
        let record = Record::new(line, &scratch);
        Ok(slots
            .iter()
            .map(|s| record.get(*s).map(str::to_owned))
            .collect())
    }
}
