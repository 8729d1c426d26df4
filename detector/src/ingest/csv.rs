//! `timestamp,value` CSV, NAB's data format. A header row is optional (a first row whose
//! value is not a number; one at most); blank lines are skipped; extra columns are
//! ignored; fields may be quoted; lines may end in LF, CRLF or CR alone. Rows stay in
//! file order, even where the time goes back (NAB's machine_temperature repeats an hour
//! after a clock change).

use std::borrow::Cow;
use std::path::Path;

use super::error::IngestError;
use crate::series::{parse_timestamp, Series};

/// Parses `timestamp,value` rows into one series named `name`.
pub fn read_csv(text: &str, path: &Path, name: &str) -> Result<Series, IngestError> {
    // A byte-order mark is no part of the first field.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    // Lines ended by a carriage return alone (classic Mac OS), if no line feed is seen: a
    // usual file has one on its first line, so only such a file is scanned whole.
    let text: Cow<'_, str> = if !text.contains('\n') && text.contains('\r') {
        Cow::Owned(text.replace('\r', "\n"))
    } else {
        Cow::Borrowed(text)
    };
    let mut series = Series::new(name);
    // One row a line: sized once, the vectors are not grown (and copied) as rows come.
    let lines = text.bytes().filter(|&b| b == b'\n').count() + 1;
    series.reserve(lines, lines * 20);
    let mut first_row = true;
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let header_allowed = std::mem::replace(&mut first_row, false);
        let error = |reason: String| IngestError::Parse {
            path: path.to_owned(),
            line: index + 1,
            reason,
        };
        let Some((timestamp_text, value_text)) = two_fields(line) else {
            return Err(error("expected `timestamp,value`".to_owned()));
        };
        let (timestamp_text, value_text) = (unquote(timestamp_text), unquote(value_text));
        let timestamp = match parse_timestamp(timestamp_text) {
            Ok(timestamp) => timestamp,
            // A header names its columns; a first row with a number in it is data, and its
            // timestamp is wrong.
            Err(_) if header_allowed && value_text.parse::<f64>().is_err() => continue,
            Err(e) => return Err(error(e.to_string())),
        };
        let value = value_text.parse::<f64>().map_err(|e| {
            let shown = crate::abbreviate(value_text, crate::QUOTED_CHARS);
            error(format!("value {shown:?}: {e}"))
        })?;
        series.push(timestamp, timestamp_text, value);
    }
    if series.is_empty() {
        return Err(IngestError::Parse {
            path: path.to_owned(),
            line: 1,
            reason: "no `timestamp,value` rows".to_owned(),
        });
    }
    Ok(series)
}

/// The first two fields of a line: up to the first comma outside double quotes, and
/// from there to the next (a quoted `"1,234"` is one field); `None` without a comma.
fn two_fields(line: &str) -> Option<(&str, &str)> {
    let mut quoted = false;
    let mut first = None;
    for (i, byte) in line.bytes().enumerate() {
        match byte {
            b'"' => quoted = !quoted,
            b',' if !quoted => match first {
                None => first = Some(i),
                Some(first) => return Some((&line[..first], &line[first + 1..i])),
            },
            _ => {}
        }
    }
    first.map(|first| (&line[..first], &line[first + 1..]))
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
    fn quotes_a_byte_order_mark_and_a_bad_first_row_are_read_as_they_are() {
        let path = Path::new("x.csv");
        // A quoted value with a comma is one field, and not a number.
        let e = read_csv("2014-01-01 00:00:00,\"1,234\"\n", path, "x").unwrap_err();
        assert!(e.to_string().contains("\"1,234\""), "{e}");
        let s = read_csv("\"2014-01-01 00:00:00\",\"5\",\"a,b\"\n", path, "x").unwrap();
        assert_eq!(s.values, [5.0]);
        // A byte-order mark before a first data row keeps the row.
        let s = read_csv(
            "\u{feff}2014-01-01 00:00:00,1\n2014-01-01 00:05:00,2\n",
            path,
            "x",
        );
        assert_eq!(s.unwrap().values, [1.0, 2.0]);
        // A first row with a number and a bad timestamp is an error, not a header.
        let e = read_csv("2014-01-01 24:00:00,1\n2014-01-02 00:05:00,2\n", path, "x").unwrap_err();
        assert!(e.to_string().contains("x.csv:1"), "{e}");
    }

    #[test]
    fn rows_keep_file_order_and_a_file_without_rows_is_an_error() {
        let path = Path::new("x.csv");
        let text = "timestamp,value\n2014-01-01 00:05:00,1\n2014-01-01 00:00:00,2\n";
        assert_eq!(read_csv(text, path, "x").unwrap().values, [1.0, 2.0]);
        let e = read_csv("timestamp,value\n\n", path, "x")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no `timestamp,value` rows"), "{e}");
    }

    #[test]
    fn header_is_optional_and_bad_rows_are_located() {
        let path = Path::new("x.csv");
        let s = read_csv("2014-01-01 00:00:00,3\n", path, "x").unwrap();
        assert_eq!(s.values, [3.0]);
        let e = read_csv("timestamp,value\n2014-01-01 00:00:00,oops\n", path, "x").unwrap_err();
        assert!(e.to_string().contains("x.csv:2"), "{e}");
        // One header: a second row of words is an error, not another header.
        let e = read_csv(
            "timestamp,value\ntime,value\n2014-01-01 00:00:00,1\n",
            path,
            "x",
        );
        assert!(e.unwrap_err().to_string().contains("x.csv:2"));
    }

    #[test]
    fn lines_ended_by_carriage_returns_alone_are_rows() {
        let path = Path::new("x.csv");
        let series = read_csv(
            "timestamp,value\r2014-01-01 00:00:00,1\r2014-01-01 00:05:00,2\r",
            path,
            "x",
        )
        .unwrap();
        assert_eq!(series.values, [1.0, 2.0]);
    }

    #[test]
    fn an_error_quotes_the_start_of_a_long_field() {
        let path = Path::new("x.csv");
        let long = "9".repeat(100_000);
        for text in [
            format!("2014-01-01 00:00:00,1\n{long}x,2\n"),
            format!("2014-01-01 00:00:00,1\n2014-01-01 00:05:00,{long}x\n"),
        ] {
            let message = read_csv(&text, path, "x").unwrap_err().to_string();
            assert!(message.len() < 200, "{} bytes", message.len());
            assert!(
                message.contains(&format!("\"{}…\"", "9".repeat(64))),
                "{message}"
            );
        }
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = read_csv(&String::from_utf8_lossy(&bytes), Path::new("p.csv"), "p");
        }
    }
}
