//! Durations written Prometheus-style: a sequence of `<number><unit>` parts, units `ms`,
//! `s`, `m`, `h`, `d`, `w` (`1h30m`, `500ms`, `2d`, `1.5s`); a part without a unit is
//! seconds, so a bare number is seconds. Parts may be separated by spaces (`1h 30m`).
//!
//! Serde helpers read a string in that syntax or a plain number of seconds:
//! `#[serde(with = "omen_common::duration")]` on a `Duration` field and
//! `#[serde(default, with = "omen_common::duration::option")]` on an `Option<Duration>`.
//! Serialising writes the same syntax (`1h30m`, `250ms`), which reads back exactly for
//! whole milliseconds (finer durations are written as fractional seconds).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Serializer;

/// Why a duration did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseDurationError {
    #[error("empty duration")]
    Empty,
    #[error("invalid duration `{0}`")]
    Invalid(String),
    #[error("unknown unit `{unit}` in duration `{text}`")]
    UnknownUnit { unit: String, text: String },
    #[error("duration `{0}` out of range")]
    OutOfRange(String),
}

/// Parses `1h30m`, `30s`, `250ms`, `2d`, `1w`, `1.5` (seconds).
pub fn parse(text: &str) -> Result<Duration, ParseDurationError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ParseDurationError::Empty);
    }
    let invalid = || ParseDurationError::Invalid(text.to_owned());
    let out_of_range = || ParseDurationError::OutOfRange(text.to_owned());
    let is_number = |c: char| c.is_ascii_digit() || c == '.';
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c| !is_number(c)).unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest.find(is_number).unwrap_or(rest.len());
        let seconds_per_unit = match rest[..unit_len].trim_end() {
            "ms" => 0.001,
            "s" | "" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "d" => 86_400.0,
            "w" => 604_800.0,
            unit => {
                return Err(ParseDurationError::UnknownUnit {
                    unit: unit.to_owned(),
                    text: text.to_owned(),
                })
            }
        };
        rest = &rest[unit_len..];
        let part =
            Duration::try_from_secs_f64(number * seconds_per_unit).map_err(|_| out_of_range())?;
        total = total.checked_add(part).ok_or_else(out_of_range)?;
    }
    Ok(total)
}

/// Writes a duration in the syntax [`parse`] reads: whole milliseconds as units from
/// weeks down (`1h30m`, `250ms`, `0s`), anything finer as fractional seconds.
pub fn format(duration: Duration) -> String {
    const UNITS: [(&str, u128); 6] = [
        ("w", 604_800_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ];
    if duration.subsec_nanos() % 1_000_000 != 0 {
        let fraction = format!("{:09}", duration.subsec_nanos());
        return format!("{}.{}s", duration.as_secs(), fraction.trim_end_matches('0'));
    }
    if duration.is_zero() {
        return "0s".to_owned();
    }
    let mut millis = duration.as_millis();
    let mut out = String::new();
    for (unit, size) in UNITS {
        if millis >= size {
            out.push_str(&(millis / size).to_string());
            out.push_str(unit);
            millis %= size;
        }
    }
    out
}

/// Reads a [`Duration`]: a string in the syntax of [`parse`], or a number of seconds.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

/// Writes a [`Duration`] as [`format()`] does.
pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format(*duration))
}

/// The same for `Option<Duration>` (absent or null is `None`); pair it with
/// `#[serde(default)]` so a missing field reads as `None`.
pub mod option {
    use std::time::Duration;

    use serde::de::{Deserializer, Visitor};
    use serde::Serializer;

    /// Reads `null` as `None`, anything else as [`super::deserialize`] does.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        deserializer.deserialize_option(OptionVisitor)
    }

    /// Writes `None` as null, a duration as [`super::serialize`] does.
    pub fn serialize<S: Serializer>(
        duration: &Option<Duration>,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        match duration {
            Some(duration) => super::serialize(duration, serializer),
            None => serializer.serialize_none(),
        }
    }

    struct OptionVisitor;

    impl<'de> Visitor<'de> for OptionVisitor {
        type Value = Option<Duration>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a duration such as 30s, 5m or 250ms, or nothing")
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(
            self,
            deserializer: D,
        ) -> Result<Self::Value, D::Error> {
            super::deserialize(deserializer).map(Some)
        }
    }
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration such as 30s, 5m or 250ms")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Duration::from_secs(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        u64::try_from(v)
            .map(Duration::from_secs)
            .map_err(|_| E::custom("a duration cannot be negative"))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Duration::try_from_secs_f64(v)
            .map_err(|_| E::custom("a duration must be finite and not negative"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde::{Deserialize, Serialize};

    use super::*;

    #[test]
    fn parses_like_prometheus() {
        let ok = [
            ("30s", Duration::from_secs(30)),
            ("250ms", Duration::from_millis(250)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h 30m", Duration::from_secs(5400)),
            ("2d", Duration::from_secs(2 * 86_400)),
            ("1w", Duration::from_secs(604_800)),
            ("1.5", Duration::from_millis(1500)),
            ("1m30", Duration::from_secs(90)),
            (" 5m ", Duration::from_secs(300)),
        ];
        for (text, duration) in ok {
            assert_eq!(parse(text), Ok(duration), "{text}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        let error = |text: &str| parse(text).unwrap_err().to_string();
        assert_eq!(error(""), "empty duration");
        assert_eq!(error("m"), "invalid duration `m`");
        assert_eq!(error("5y"), "unknown unit `y` in duration `5y`");
        assert_eq!(error("1..2s"), "invalid duration `1..2s`");
        assert_eq!(
            error("10000000000000000000s10000000000000000000s"),
            "duration `10000000000000000000s10000000000000000000s` out of range"
        );
    }

    #[test]
    fn formats_in_the_syntax_it_parses() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_secs(8 * 86_400), "1w1d"),
            (Duration::from_micros(1500), "0.0015s"),
        ];
        for (duration, text) in cases {
            assert_eq!(format(duration), text);
            assert_eq!(parse(text), Ok(duration), "{text}");
        }
    }

    #[derive(Debug, PartialEq, Deserialize, Serialize)]
    #[serde(deny_unknown_fields)]
    struct Config {
        #[serde(with = "crate::duration")]
        interval: Duration,
        #[serde(default, with = "crate::duration::option")]
        step: Option<Duration>,
    }

    fn read(yaml: &str) -> Result<Config, serde_yaml::Error> {
        serde_yaml::from_str(yaml)
    }

    #[test]
    fn serde_reads_strings_and_seconds() {
        let config = read("interval: 1m\nstep: 250ms").unwrap();
        assert_eq!(config.interval, Duration::from_secs(60));
        assert_eq!(config.step, Some(Duration::from_millis(250)));
        assert_eq!(
            read("interval: 15").unwrap().interval,
            Duration::from_secs(15)
        );
        assert_eq!(
            read("interval: 0.5").unwrap().interval,
            Duration::from_millis(500)
        );
        assert_eq!(read("interval: 1s").unwrap().step, None);
        assert_eq!(read("interval: 1s\nstep: null").unwrap().step, None);
        assert!(read("interval: -1").is_err());
        let message = read("interval: 5y").unwrap_err().to_string();
        assert!(message.contains("unknown unit `y`"), "{message}");
    }

    #[test]
    fn serde_round_trips() {
        let config = Config {
            interval: Duration::from_secs(5400),
            step: Some(Duration::from_millis(1500)),
        };
        let yaml = serde_yaml::to_string(&config).unwrap();
        assert_eq!(yaml, "interval: 1h30m\nstep: 1s500ms\n");
        assert_eq!(read(&yaml).unwrap(), config);
    }

    proptest! {
        #[test]
        fn whole_milliseconds_round_trip(millis in 0u64..10_000_000_000_000) {
            let duration = Duration::from_millis(millis);
            prop_assert_eq!(parse(&format(duration)), Ok(duration));
        }

        #[test]
        fn parse_never_panics(text in "[0-9.a-z ]{0,12}") {
            let _ = parse(&text);
        }
    }
}
