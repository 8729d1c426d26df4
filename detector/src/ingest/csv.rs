//! `timestamp,value` CSV, NAB's data format. A header row is optional; blank lines are
//! skipped; extra columns are ignored.

use std::path::Path;

use super::IngestError;
use crate::series::{parse_timestamp, Series};

/// Parses `timestamp,value` rows into one series named `name`.
pub fn read_csv(text: &str, path: &Path, name: &str) -> Result<Series, IngestError> {
    let mut series = Series::new(name);
    // One row a line: sized once, the vectors are not grown (and copied) as rows come.
    let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
    series.reserve(lines, lines * 20);
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let error = |reason: String| IngestError::Parse {
            path: path.to_owned(),
            line: index + 1,
            reason,
        };
        // Fields by a byte scan: lines are short, and `split` costs more than the scan.
        let comma = |text: &str| text.bytes().position(|b| b == b',');
        let Some(first_comma) = comma(line) else {
            return Err(error("expected `timestamp,value`".to_owned()));
        };
        let rest = &line[first_comma + 1..];
        let timestamp_text = unquote(&line[..first_comma]);
        let value_text = unquote(comma(rest).map_or(rest, |end| &rest[..end]));
        let timestamp = match parse_timestamp(timestamp_text) {
            Ok(timestamp) => timestamp,
            Err(_) if index == 0 || series.is_empty() && value_text.parse::<f64>().is_err() => {
                continue; // a header
            }
            Err(e) => return Err(error(e.to_string())),
        };
        let value = value_text
            .parse::<f64>()
            .map_err(|e| error(format!("value {value_text:?}: {e}")))?;
        series.push(timestamp, timestamp_text, value);
    }
    Ok(series)
}

/// A field without surrounding blanks and double quotes.
fn unquote(field: &str) -> &str {
    let plain = |b: Option<&u8>| b.is_some_and(|&b| b.is_ascii_graphic() && b != b'"');
    if plain(field.as_bytes().first()) && plain(field.as_bytes().last()) {
        return field; // the usual case, without the Unicode-aware trim
    }
    let field = field.trim();
    if field.starts_with('"') || field.ends_with('"') {
        field.trim_matches('"')
    } else {
        field
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn header_is_optional_and_bad_rows_are_located() {
        let path = Path::new("x.csv");
        let s = read_csv("2014-01-01 00:00:00,3\n", path, "x").unwrap();
        assert_eq!(s.values, [3.0]);
        let e = read_csv("timestamp,value\n2014-01-01 00:00:00,oops\n", path, "x").unwrap_err();
        assert!(e.to_string().contains("x.csv:2"), "{e}");
    }

    proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,200}") {
            let _ = read_csv(&text, Path::new("p.csv"), "p");
        }
    }
}
