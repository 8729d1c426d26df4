//! The built parser: a record format (logfmt, JSON, regex or none), the fields the rules
//! read, and where the event time comes from. Building it checks the parser section of
//! the rules file; parsing fills a [`Scratch`] with the fields' spans, allocating nothing
//! in the common case.

use super::json;
use super::logfmt;
use super::record::{EventTime, FieldNames, ParseError, Record, Scratch};
use super::regex;
use super::timestamp::TimestampParser;
use crate::config::{ParserConfig, ParserFormat};

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

    /// The fields the rules read.
    pub fn fields(&self) -> &FieldNames {
        &self.fields
    }

    /// The format's name and, for `regex`, the pattern's capture names: what an audit
    /// lists the keys of a line by.
    pub fn keys_of(&self, line: &str) -> Vec<String> {
        match &self.format {
            Format::Logfmt => logfmt::keys(line),
            Format::Json(_) => json::keys(line),
            Format::Regex(regex, _) => regex.capture_names().flatten().map(str::to_owned).collect(),
            Format::None => Vec::new(),
        }
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
