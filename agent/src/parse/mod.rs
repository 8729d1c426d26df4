//! Parsing: a record (one line, or a line with its continuation lines) becomes named
//! fields, and optionally an event time.
//!
//! Parsers borrow from the record wherever they can, so the common case (logfmt without
//! escapes) allocates only the field list. A record that does not parse is an error the
//! pipeline counts; it never stops the pipeline.

mod json;
mod logfmt;
mod regex;
pub mod timestamp;

use std::borrow::Cow;

use crate::config::{ParserConfig, ParserFormat};
pub use timestamp::{TimeFormat, TimestampParser};

/// The fields of one parsed record.
#[derive(Debug, Default)]
pub struct Record<'a> {
    pub raw: &'a str,
    fields: Vec<(Cow<'a, str>, Cow<'a, str>)>,
}

impl<'a> Record<'a> {
    pub fn new(raw: &'a str) -> Self {
        Self {
            raw,
            fields: Vec::new(),
        }
    }

    /// The value of a field; the first one wins when a name repeats.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_ref())
    }

    pub fn push(&mut self, name: impl Into<Cow<'a, str>>, value: impl Into<Cow<'a, str>>) {
        self.fields.push((name.into(), value.into()));
    }

    pub fn fields(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
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
}

impl ParseError {
    /// A short, bounded label value for `omen_agent_errors_total{reason}`.
    pub fn reason(self) -> &'static str {
        match self {
            ParseError::NoMatch => "no_match",
            ParseError::InvalidJson => "invalid_json",
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

/// A built parser: the record format plus where the event time comes from.
#[derive(Debug, Clone)]
pub struct Parser {
    format: Format,
    timestamp: Option<TimestampParser>,
}

#[derive(Debug, Clone)]
enum Format {
    Logfmt,
    Json,
    Regex(::regex::Regex),
    None,
}

impl Parser {
    pub fn build(config: &ParserConfig) -> Result<Self, ParserBuildError> {
        let format = match config.format {
            ParserFormat::Logfmt => Format::Logfmt,
            ParserFormat::Json => Format::Json,
            ParserFormat::None => Format::None,
            ParserFormat::Regex => {
                let pattern = config
                    .pattern
                    .as_deref()
                    .ok_or(ParserBuildError::MissingPattern)?;
                Format::Regex(::regex::Regex::new(pattern)?)
            }
        };
        let timestamp = config
            .timestamp
            .as_ref()
            .map(TimestampParser::build)
            .transpose()
            .map_err(ParserBuildError::Timestamp)?;
        Ok(Self { format, timestamp })
    }

    pub fn parse<'a>(&'a self, line: &'a str) -> Result<Record<'a>, ParseError> {
        let mut record = Record::new(line);
        match &self.format {
            Format::Logfmt => logfmt::parse_into(line, &mut record),
            Format::Json => json::parse_into(line, &mut record)?,
            Format::Regex(regex) => regex::parse_into(regex, line, &mut record)?,
            Format::None => {}
        }
        Ok(record)
    }

    /// The event time of a parsed record, in Unix nanoseconds.
    pub fn event_time(&self, record: &Record<'_>) -> EventTime {
        match &self.timestamp {
            None => EventTime::NotConfigured,
            Some(ts) => ts.read(record).map_or(EventTime::Unreadable, EventTime::At),
        }
    }
}
