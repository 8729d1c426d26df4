//! The Prometheus text exposition format (0.0.4), and the OpenMetrics 1.0 details the
//! agent serves: writers that append `# HELP`/`# TYPE` headers and sample lines to a
//! `String`, with the escaping and value formatting both formats share.
//!
//! Invariants: label values escape `\`, `"` and newline; HELP text escapes `\` and
//! newline; values are written as Rust's shortest round-trip decimal (`1`, `0.25`,
//! `100000000000000000000`, never an exponent), `+Inf`, `-Inf` or `NaN`. The output is
//! byte-for-byte what the agent wrote before this module existed (its golden files hold it).
//!
//! Why not the `prometheus` crate's `TextEncoder`: it encodes only its own protobuf
//! `MetricFamily` values, so every scrape would first copy each series (name, labels,
//! value) into those types; it writes no OpenMetrics; and the agent's registry must stay
//! its own (exact checkpoint and restore, cardinality overflow). Writing straight from
//! our data into one `String` needs no copy and no extra dependency.

use std::fmt::Write as _;

/// The trailer that ends an OpenMetrics exposition.
pub const OPENMETRICS_EOF: &str = "# EOF\n";

/// Exposition formats a scraper may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Prometheus,
    /// OpenMetrics 1.0.0 text (adds `_created`, `# EOF`).
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// A family's type, as written after `# TYPE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
}

impl MetricType {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
        }
    }
}

/// Appends a family's header: `# HELP name help` (only when `help` is not empty, escaped)
/// then `# TYPE name kind`.
pub fn write_header(out: &mut String, name: &str, help: &str, kind: MetricType) {
    if !help.is_empty() {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        write_escaped_help(out, help);
        out.push('\n');
    }
    out.push_str("# TYPE ");
    out.push_str(name);
    out.push(' ');
    out.push_str(kind.as_str());
    out.push('\n');
}

/// Appends one sample line: `name{label="value",...} value`, braces only when there
/// are labels. Labels are written in the order given, values escaped; names are written
/// as they are (the caller keeps them valid).
pub fn write_sample<'a>(
    out: &mut String,
    name: &str,
    labels: impl IntoIterator<Item = (&'a str, &'a str)>,
    value: f64,
) {
    out.push_str(name);
    let mut any = false;
    for (label, label_value) in labels {
        out.push(if any { ',' } else { '{' });
        any = true;
        out.push_str(label);
        out.push_str("=\"");
        write_escaped_label_value(out, label_value);
        out.push('"');
    }
    if any {
        out.push('}');
    }
    out.push(' ');
    write_value(out, value);
    out.push('\n');
}

/// Appends a sample value as Prometheus writes it: `+Inf`, `-Inf`, `NaN`, else the
/// shortest decimal that reads back as the same `f64`.
pub fn write_value(out: &mut String, value: f64) {
    // 2^53: every integer below it is exact, and written the same by both paths.
    const EXACT_INTEGER: f64 = 9_007_199_254_740_992.0;
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else if value.fract() == 0.0
        && value.abs() < EXACT_INTEGER
        && (value != 0.0 || value.is_sign_positive())
    {
        // Counters are mostly whole numbers: integer formatting is several times faster
        // than float formatting, with the same text (`-0.0` keeps the float path: `-0`).
        out.push_str(itoa::Buffer::new().format(value as i64));
    } else {
        let _ = write!(out, "{value}");
    }
}

/// A sample value as [`write_value`] writes it.
pub fn format_value(value: f64) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

/// Appends a label value with `\`, `"` and newline escaped.
pub fn write_escaped_label_value(out: &mut String, value: &str) {
    write_escaped(out, value, |byte| match byte {
        b'\\' => Some("\\\\"),
        b'"' => Some("\\\""),
        b'\n' => Some("\\n"),
        _ => None,
    });
}

/// Appends HELP text with `\` and newline escaped (quotes stay as they are).
pub fn write_escaped_help(out: &mut String, help: &str) {
    write_escaped(out, help, |byte| match byte {
        b'\\' => Some("\\\\"),
        b'\n' => Some("\\n"),
        _ => None,
    });
}

/// Copies `text` in runs between the bytes `escape` replaces. Those are ASCII, so every
/// cut falls on a character boundary.
fn write_escaped(out: &mut String, text: &str, escape: impl Fn(u8) -> Option<&'static str>) {
    let mut copied = 0;
    for (index, byte) in text.bytes().enumerate() {
        if let Some(replacement) = escape(byte) {
            out.push_str(&text[copied..index]);
            out.push_str(replacement);
            copied = index + 1;
        }
    }
    out.push_str(&text[copied..]);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn label_value(value: &str) -> String {
        let mut out = String::new();
        write_escaped_label_value(&mut out, value);
        out
    }

    fn help(text: &str) -> String {
        let mut out = String::new();
        write_escaped_help(&mut out, text);
        out
    }

    #[test]
    fn label_values_escape_backslash_quote_and_newline() {
        assert_eq!(label_value("plain"), "plain");
        assert_eq!(label_value(r"C:\tmp"), r"C:\\tmp");
        assert_eq!(label_value("say \"hi\""), r#"say \"hi\""#);
        assert_eq!(label_value("two\nlines"), r"two\nlines");
        assert_eq!(label_value("\\\"\n"), r#"\\\"\n"#);
        assert_eq!(label_value("tab\tand é"), "tab\tand é");
    }

    #[test]
    fn help_escapes_backslash_and_newline_but_not_quotes() {
        assert_eq!(help("Rows \"deleted\"."), "Rows \"deleted\".");
        assert_eq!(help("a\\b\nc"), r"a\\b\nc");
    }

    #[test]
    fn values_are_written_like_prometheus() {
        let cases = [
            (1.0, "1"),
            (0.0, "0"),
            (-0.0, "-0"),
            (-3.0, "-3"),
            (0.1, "0.1"),
            (3.6, "3.6"),
            (1000.5, "1000.5"),
            (1e20, "100000000000000000000"),
            (9_007_199_254_740_993.0, "9007199254740992"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (value, text) in cases {
            assert_eq!(format_value(value), text, "{value:?}");
        }
    }

    #[test]
    fn headers_skip_empty_help() {
        let mut out = String::new();
        write_header(&mut out, "up", "", MetricType::Gauge);
        write_header(
            &mut out,
            "a_total",
            "Line one\nline two.",
            MetricType::Counter,
        );
        assert_eq!(
            out,
            "# TYPE up gauge\n# HELP a_total Line one\\nline two.\n# TYPE a_total counter\n"
        );
    }

    #[test]
    fn samples_have_braces_only_with_labels() {
        let mut out = String::new();
        write_sample(&mut out, "up", [], 1.0);
        write_sample(&mut out, "x", [("a", "1"), ("b", "q\"")], 0.5);
        let pairs: &[(&str, &str)] = &[("le", "+Inf")];
        write_sample(&mut out, "h_bucket", pairs.iter().copied(), 3.0);
        assert_eq!(
            out,
            "up 1\nx{a=\"1\",b=\"q\\\"\"} 0.5\nh_bucket{le=\"+Inf\"} 3\n"
        );
    }

    #[test]
    fn content_types_name_the_format_version() {
        assert_eq!(
            Format::Prometheus.content_type(),
            "text/plain; version=0.0.4; charset=utf-8"
        );
        assert!(Format::OpenMetrics.content_type().contains("version=1.0.0"));
    }

    /// Reverses the escaping, as a scraper does; `quotes`: label values (else HELP).
    fn unescape(text: &str, quotes: bool) -> Option<String> {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next()? {
                    '\\' => out.push('\\'),
                    '"' if quotes => out.push('"'),
                    'n' => out.push('\n'),
                    _ => return None,
                },
                '"' if quotes => return None,
                '\n' => return None,
                c => out.push(c),
            }
        }
        Some(out)
    }

    proptest! {
        #[test]
        fn escaped_label_values_read_back(value in any::<String>()) {
            let escaped = label_value(&value);
            prop_assert_eq!(unescape(&escaped, true), Some(value));
        }

        #[test]
        fn escaped_help_reads_back(text in any::<String>()) {
            let escaped = help(&text);
            prop_assert_eq!(unescape(&escaped, false), Some(text));
        }

        #[test]
        fn values_match_rust_display(value in any::<f64>()) {
            prop_assume!(value.is_finite());
            prop_assert_eq!(format_value(value), value.to_string());
        }

        #[test]
        fn whole_values_match_rust_display(value in -1e17f64..1e17) {
            let value = value.trunc();
            prop_assert_eq!(format_value(value), value.to_string());
        }
    }
}
