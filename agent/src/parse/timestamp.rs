//! Event time: read from a field or a token of the line, in a configured format, as Unix
//! nanoseconds. RFC 3339 has a hand-written fast path (it is on the hot path of every
//! pair rule); anything it does not cover falls back to chrono.

use std::cell::Cell;

use chrono::{DateTime, NaiveDateTime};

use super::record::{FieldNames, Record, Slot};
use crate::config::TimestampConfig;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimeFormat {
    Rfc3339,
    /// Unix time; the number is multiplied by this many nanoseconds.
    Unix(i64),
    Strftime {
        format: String,
        has_offset: bool,
    },
}

impl TimeFormat {
    pub fn from_name(name: &str) -> Result<Self, String> {
        Ok(match name {
            "rfc3339" => TimeFormat::Rfc3339,
            "unix" => TimeFormat::Unix(1_000_000_000),
            "unix_ms" => TimeFormat::Unix(1_000_000),
            "unix_us" => TimeFormat::Unix(1_000),
            "unix_ns" => TimeFormat::Unix(1),
            other if other.contains('%') => {
                let format = other.to_owned();
                let has_offset = format.contains("%z") || format.contains("%:z");
                TimeFormat::Strftime { format, has_offset }
            }
            other => {
                return Err(format!(
                    "unknown time format `{other}` (rfc3339, unix, unix_ms, unix_us, unix_ns or a strftime format)"
                ))
            }
        })
    }

    /// Unix nanoseconds, or `None` when the text is not in this format.
    pub fn parse(&self, text: &str) -> Option<i64> {
        match self {
            TimeFormat::Rfc3339 => parse_rfc3339(text),
            TimeFormat::Unix(scale) => {
                if let Ok(whole) = text.parse::<i64>() {
                    return whole.checked_mul(*scale);
                }
                let number: f64 = text.parse().ok()?;
                let nanos = number * *scale as f64;
                (nanos.is_finite() && nanos.abs() < i64::MAX as f64).then_some(nanos as i64)
            }
            TimeFormat::Strftime { format, has_offset } => {
                if *has_offset {
                    DateTime::parse_from_str(text, format)
                        .ok()?
                        .timestamp_nanos_opt()
                } else {
                    NaiveDateTime::parse_from_str(text, format)
                        .ok()?
                        .and_utc()
                        .timestamp_nanos_opt()
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Place {
    Field(Slot),
    Token(usize),
}

/// Where the time is and how to read it.
#[derive(Debug, Clone)]
pub struct TimestampParser {
    place: Place,
    format: TimeFormat,
    /// The last RFC 3339 minute prefix (`YYYY-MM-DDTHH:MM`) read and its Unix seconds:
    /// consecutive log lines almost always share it.
    minute_cache: Cell<([u8; 16], i64)>,
}

impl TimestampParser {
    /// Builds the reader; a time field becomes one of the fields the parser extracts.
    pub fn build(config: &TimestampConfig, fields: &mut FieldNames) -> Result<Self, String> {
        let place = match (&config.field, config.token) {
            (Some(field), None) => Place::Field(fields.slot(field)),
            (None, Some(token)) => Place::Token(token),
            _ => return Err("timestamp needs exactly one of `field` or `token`".to_owned()),
        };
        Ok(Self {
            place,
            format: TimeFormat::from_name(&config.format)?,
            minute_cache: Cell::new(([0; 16], 0)),
        })
    }

    /// `None` when the place is empty or holds text not in the format.
    pub fn read(&self, record: &Record<'_>) -> Option<i64> {
        let text = match &self.place {
            Place::Field(slot) => record.get(*slot),
            Place::Token(n) => record.raw.split_ascii_whitespace().nth(*n),
        };
        let text = text?;
        if self.format == TimeFormat::Rfc3339 {
            return self.parse_rfc3339_cached(text);
        }
        self.format.parse(text)
    }

    /// RFC 3339 with the minute prefix's value cached; everything after it is parsed
    /// and checked on every call, so the result always equals `parse_rfc3339`.
    fn parse_rfc3339_cached(&self, text: &str) -> Option<i64> {
        parse_rfc3339_with(text, |prefix| {
            let (cached_prefix, cached_seconds) = self.minute_cache.get();
            if prefix == cached_prefix {
                return Some(cached_seconds);
            }
            let seconds = minute_seconds(&prefix)?;
            self.minute_cache.set((prefix, seconds));
            Some(seconds)
        })
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, also with a space or `t` for `T`.
pub fn parse_rfc3339(text: &str) -> Option<i64> {
    parse_rfc3339_with(text, |prefix| minute_seconds(&prefix))
}

fn digits(bytes: &[u8]) -> Option<i64> {
    let mut value = 0i64;
    for &c in bytes {
        if !c.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i64::from(c - b'0');
    }
    Some(value)
}

/// Unix seconds of the minute `YYYY-MM-DDTHH:MM` (before any offset), validated.
fn minute_seconds(b: &[u8; 16]) -> Option<i64> {
    if b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') || b[13] != b':' {
        return None;
    }
    let (year, month, day) = (digits(&b[0..4])?, digits(&b[5..7])?, digits(&b[8..10])?);
    let (hour, minute) = (digits(&b[11..13])?, digits(&b[14..16])?);
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return None;
    }
    if hour > 23 || minute > 59 {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60)
}

/// Parses the seconds, fraction and offset after the minute prefix, whose value
/// `minute` gives (from a cache or computed).
fn parse_rfc3339_with(text: &str, minute: impl FnOnce([u8; 16]) -> Option<i64>) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() < 20 || b[16] != b':' {
        return None;
    }
    let second = digits(&b[17..19])?;
    if second > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let count = i - start;
        if count == 0 {
            return None;
        }
        for _ in count..9 {
            nanos *= 10;
        }
    }
    let offset_seconds = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let hours = digits(&b[i + 1..i + 3])?;
            let minutes = digits(&b[i + 4..i + 6])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let offset = hours * 3600 + minutes * 60;
            if *sign == b'+' {
                offset
            } else {
                -offset
            }
        }
        _ => {
            return DateTime::parse_from_rfc3339(text)
                .ok()?
                .timestamp_nanos_opt()
        }
    };
    let mut prefix = [0u8; 16];
    prefix.copy_from_slice(&b[..16]);
    let seconds = minute(prefix)? + second - offset_seconds;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (eras of 400 years).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y - era * 400;
    let shifted_month = (month + 9) % 12; // March = 0
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn rfc3339_matches_chrono() {
        for text in [
            "2025-07-14T09:00:00.003Z",
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59.999999999Z",
            "2025-07-14T09:00:00+02:00",
            "2025-07-14 09:00:00.5-05:30",
            "1969-12-31T23:59:59.1Z",
        ] {
            let expected = DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_nanos_opt()
                .unwrap();
            assert_eq!(parse_rfc3339(text), Some(expected), "{text}");
        }
        for bad in [
            "2025-13-01T00:00:00Z",
            "2025-02-30T00:00:00Z",
            "2025-07-14T09:00:00",
            "2025-07-14T09:00:00.Z",
            "hello",
            "",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn other_formats() {
        let unix = TimeFormat::from_name("unix").unwrap();
        assert_eq!(unix.parse("1.5"), Some(1_500_000_000));
        assert_eq!(unix.parse("2"), Some(2_000_000_000));
        assert_eq!(
            TimeFormat::from_name("unix_ms").unwrap().parse("1500"),
            Some(1_500_000_000)
        );
        let strf = TimeFormat::from_name("%Y-%m-%d %H:%M:%S").unwrap();
        assert_eq!(strf.parse("1970-01-01 00:00:10"), Some(10_000_000_000));
        assert!(TimeFormat::from_name("iso").is_err());
        assert_eq!(unix.parse("1e300"), None);
    }

    #[test]
    fn the_minute_cache_gives_the_same_times() {
        let config = TimestampConfig {
            field: None,
            token: Some(0),
            format: "rfc3339".into(),
        };
        let parser = TimestampParser::build(&config, &mut FieldNames::default()).unwrap();
        for text in [
            "2025-07-14T09:00:00.003Z",
            "2025-07-14T09:00:59.999Z",
            "2025-07-14T09:00:10+02:00",
            "2025-07-14T09:00:61Z",
            "2025-07-14T09:01:00Z",
            "2025-07-14T09:00:05.5Z",
        ] {
            assert_eq!(
                parser.parse_rfc3339_cached(text),
                parse_rfc3339(text),
                "{text}"
            );
        }
    }

    proptest! {
        #[test]
        fn fast_path_agrees_with_chrono(secs in 0i64..4_102_444_800, millis in 0u32..1000) {
            let time = DateTime::from_timestamp(secs, millis * 1_000_000).unwrap();
            let text = time.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
            prop_assert_eq!(parse_rfc3339(&text), time.timestamp_nanos_opt());
        }

        #[test]
        fn never_panics(text in "\\PC*") {
            let _ = parse_rfc3339(&text);
        }
    }
}
