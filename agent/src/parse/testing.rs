//! Test helpers shared by the format parsers' tests: parse one line with a given parser
//! configuration and read the named fields back, as the rules would.
//!
//! Compiled for tests only.

use super::parser::Parser;
use super::record::{FieldNames, ParseError, Record, Scratch, Slot};
use crate::config::ParserConfig;

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
