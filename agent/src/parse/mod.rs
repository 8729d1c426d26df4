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
mod parser;
mod record;
mod regex;
#[cfg(test)]
pub(crate) mod testing;
pub mod timestamp;

pub use batch::{ParsedBatch, ParsedRecord};
pub use parser::{Parser, ParserBuildError};
pub use record::{decode, EventTime, FieldNames, ParseError, Record, Scratch, Slot};
pub use timestamp::{TimeFormat, TimestampParser};
