//! In-memory series: the points of one metric in arrival order.
//!
//! Timestamps are Unix milliseconds (UTC). The text a timestamp was read from is kept so
//! that outputs (NAB's results format) reproduce the input exactly, row for row.

use thiserror::Error;

/// Errors from parsing a timestamp.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TimestampError {
    #[error(
        "timestamp {text:?} is not `YYYY-MM-DD HH:MM:SS[.fraction]`, RFC 3339 in UTC (no offset) or Unix seconds"
    )]
    /// `text` is the start of the timestamp, if it is long.
    Unrecognised { text: String },
}

/// One metric's history, in input order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Series {
    /// Identifies the series, e.g. `realTweets/Twitter_volume_IBM` or a Prometheus selector.
    pub name: String,
    /// Unix milliseconds, one per point.
    pub timestamps_ms: Vec<i64>,
    /// The timestamps as written in the input, one after the other (one allocation, not
    /// one per point); see [`timestamp_texts`](Self::timestamp_texts).
    timestamp_texts: String,
    /// Where each point's text ends in `timestamp_texts`.
    timestamp_text_ends: Vec<usize>,
    pub values: Vec<f64>,
}

impl Series {
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }

    /// Makes room for `points` more points whose timestamp texts take `text_bytes`.
    pub fn reserve(&mut self, points: usize, text_bytes: usize) {
        self.timestamps_ms.reserve(points);
        self.timestamp_text_ends.reserve(points);
        self.values.reserve(points);
        self.timestamp_texts.reserve(text_bytes);
    }

    pub fn push(&mut self, timestamp_ms: i64, timestamp_text: &str, value: f64) {
        self.timestamps_ms.push(timestamp_ms);
        self.timestamp_texts.push_str(timestamp_text);
        self.timestamp_text_ends.push(self.timestamp_texts.len());
        self.values.push(value);
    }

    /// Every point's timestamp as it was written in the input, in order.
    pub fn timestamp_texts(&self) -> impl Iterator<Item = &str> {
        let starts = std::iter::once(0).chain(self.timestamp_text_ends.iter().copied());
        starts
            .zip(&self.timestamp_text_ends)
            .map(|(start, &end)| &self.timestamp_texts[start..end])
    }

    /// Frees the timestamp texts once they are written out (a backtest keeps every
    /// series' values for its report, not their texts); [`timestamp_texts`] is then empty.
    ///
    /// [`timestamp_texts`]: Self::timestamp_texts
    pub fn forget_timestamp_texts(&mut self) {
        self.timestamp_texts = String::new();
        self.timestamp_text_ends = Vec::new();
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

/// Days from 1970-01-01 to the given proleptic Gregorian date.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`]: (year, month, day).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of Unix seconds.
fn format_seconds(seconds: i64) -> String {
    let (year, month, day) = civil_from_days(seconds.div_euclid(86_400));
    let second_of_day = seconds.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60
    )
}

/// Formats Unix milliseconds as NAB writes timestamps, `YYYY-MM-DD HH:MM:SS`, with
/// `.mmm` after the seconds when they are not whole (Prometheus samples may fall on any
/// millisecond), so that the text parses back to the same instant.
pub fn format_timestamp(timestamp_ms: i64) -> String {
    let text = format_seconds(timestamp_ms.div_euclid(1000));
    match timestamp_ms.rem_euclid(1000) {
        0 => text,
        ms => format!("{text}.{ms:03}"),
    }
}

/// Formats Unix milliseconds as RFC 3339 in UTC with milliseconds, as Alertmanager and
/// Prometheus write times: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn format_rfc3339(timestamp_ms: i64) -> String {
    let mut text = format_seconds(timestamp_ms.div_euclid(1000));
    text.replace_range(10..11, "T");
    format!("{text}.{:03}Z", timestamp_ms.rem_euclid(1000))
}

fn digits(text: &str) -> Option<i64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn parse_calendar(text: &str) -> Option<i64> {
    let text = text.trim();
    let text = text.strip_suffix('Z').unwrap_or(text);
    let (date, time) = text.split_once([' ', 'T'])?;
    let mut date_parts = date.splitn(3, '-');
    let year = digits(date_parts.next()?)?;
    let month = digits(date_parts.next()?)?;
    let day = digits(date_parts.next()?)?;
    let (time, fraction) = match time.split_once('.') {
        Some((time, fraction)) => (time, fraction),
        None => (time, ""),
    };
    let mut time_parts = time.splitn(3, ':');
    let hour = digits(time_parts.next()?)?;
    let minute = digits(time_parts.next()?)?;
    let second = match time_parts.next() {
        Some(second) => digits(second)?,
        None => 0,
    };
    if !is_date(year, month, day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let millis = if fraction.is_empty() {
        0
    } else {
        // Every digit must be one (`.123xyz` is not a time); milliseconds are kept.
        digits(fraction)?;
        let padded: String = fraction.chars().chain("000".chars()).take(3).collect();
        digits(&padded)?
    };
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

/// Whether `year-month-day` is a date of the proleptic Gregorian calendar, in years 0
/// to 9999 (so that no arithmetic on it overflows).
fn is_date(year: i64, month: i64, day: i64) -> bool {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return false,
    };
    (0..=9999).contains(&year) && (1..=days).contains(&day)
}

/// NAB's exact `YYYY-MM-DD HH:MM:SS`, the common case, read by position; `None` for
/// anything else (then the general parser decides).
fn parse_fixed_calendar(text: &[u8]) -> Option<i64> {
    if text.len() != 19
        || text[4] != b'-'
        || text[7] != b'-'
        || text[10] != b' '
        || text[13] != b':'
        || text[16] != b':'
    {
        return None;
    }
    let number = |range: std::ops::Range<usize>| {
        text[range].iter().try_fold(0i64, |n, &b| {
            b.is_ascii_digit().then(|| n * 10 + i64::from(b - b'0'))
        })
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !is_date(year, month, day) || hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000)
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff]` (NAB), RFC 3339 in UTC (`T`, optional `Z`) or
/// Unix seconds (integer or decimal) into Unix milliseconds.
pub fn parse_timestamp(text: &str) -> Result<i64, TimestampError> {
    if let Some(ms) = parse_fixed_calendar(text.as_bytes()) {
        return Ok(ms);
    }
    if let Some(ms) = parse_calendar(text) {
        return Ok(ms);
    }
    match text.trim().parse::<f64>() {
        Ok(seconds) if seconds.is_finite() && seconds.abs() < 1e15 => {
            Ok((seconds * 1000.0).round() as i64)
        }
        _ => Err(TimestampError::Unrecognised {
            text: crate::abbreviate(text, crate::QUOTED_CHARS),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_nab_and_window_formats_alike() {
        let row = parse_timestamp("2014-04-10 07:15:00").unwrap();
        let window = parse_timestamp("2014-04-10 07:15:00.000000").unwrap();
        assert_eq!(row, window);
        assert_eq!(row, 1_397_114_100_000);
        assert_eq!(parse_timestamp("2014-04-10T07:15:00Z").unwrap(), row);
        assert_eq!(parse_timestamp("1397114100").unwrap(), row);
        assert_eq!(parse_timestamp("1397114100.5").unwrap(), row + 500);
        assert_eq!(format_rfc3339(row + 7), "2014-04-10T07:15:00.007Z");
        assert_eq!(parse_timestamp(&format_rfc3339(row + 7)).unwrap(), row + 7);
    }

    #[test]
    fn the_extreme_milliseconds_format() {
        for ms in [i64::MIN, i64::MIN + 1, -1, i64::MAX] {
            assert!(format_rfc3339(ms).ends_with('Z'), "{ms}");
            assert!(format_timestamp(ms).len() >= 19, "{ms}");
        }
        assert_eq!(format_timestamp(-1), "1969-12-31 23:59:59.999");
    }

    #[test]
    fn rejects_garbage() {
        for text in [
            "",
            "yesterday",
            "2014-13-01 00:00:00",
            "2014-01-01 25:00:00",
            "NaN",
            "2015-02-29 00:00:00",
            "2014-04-31 00:00:00",
            "2014-01-01 00:00:00.123xyz",
            // Beyond year 9999 the arithmetic would overflow (a panic in debug builds).
            "99999999999-01-01 00:00:00",
            "99999999999-01-01T00:00:00Z",
        ] {
            assert!(parse_timestamp(text).is_err(), "{text}");
        }
        assert!(parse_timestamp("2016-02-29 00:00:00").is_ok());
        assert!(parse_timestamp("2000-02-29T23:59:59.5Z").is_ok());
    }

    proptest! {
        #[test]
        fn fixed_and_general_calendar_parsers_agree(text in "[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}") {
            prop_assert_eq!(parse_fixed_calendar(text.as_bytes()), parse_calendar(&text));
        }

        #[test]
        fn format_then_parse_round_trips(ms in -2_000_000_000_000i64..4_000_000_000_000) {
            prop_assert_eq!(parse_timestamp(&format_timestamp(ms)).unwrap(), ms);
            prop_assert_eq!(parse_timestamp(&format_rfc3339(ms)).unwrap(), ms);
        }

        #[test]
        fn any_millisecond_formats_without_overflow(ms in any::<i64>()) {
            prop_assert!(format_timestamp(ms).len() >= 19);
            prop_assert!(format_rfc3339(ms).ends_with('Z'));
        }
    }
}
