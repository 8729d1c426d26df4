//! Prometheus text exposition (format 0.0.4) and OpenMetrics 1.0 text, as scraped.
//!
//! One pass over the lines, no regex. A line that does not parse is skipped and counted;
//! the rest of the input still parses, and no input makes the parser panic.
//!
//! Timestamps: text format 0.0.4 writes integer milliseconds, OpenMetrics float seconds.
//! The input is read as OpenMetrics when any line is exactly `# EOF` or any `# TYPE` line
//! names a type only OpenMetrics has (`unknown`, `gaugehistogram`, `stateset`, `info`);
//! the rule looks at the whole input first, so a timestamp before the `# EOF` is read
//! right. Everything else is lenient in both dialects: tabs or several spaces between
//! fields, blank lines, `\r\n` endings, a trailing comma in the labels, exemplars (`# {…}`
//! after the value) ignored. Lines after `# EOF` are malformed.
//!
//! Samples belong to the family of the latest `# HELP`/`# TYPE`/`# UNIT` line (both
//! formats keep a family's lines together); see `FamilyType::kind_of` for the kinds.
//! `_created` samples are dropped, and so are the separate `x_created` gauge families that
//! the Python client writes after a counter, histogram or summary `x` in format 0.0.4.

use super::{label_name_len, metric_name_len, FamilyType, Sample, ValueKind};

/// What a scrape held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition {
    pub samples: Vec<Sample>,
    /// Lines skipped because they did not parse.
    pub malformed: usize,
    /// The first malformed line's number (from 1), the reason and the line's start.
    pub first_error: Option<String>,
}

/// Parses a whole exposition; see the module docs for the rules.
pub fn parse(text: &str) -> Exposition {
    let openmetrics = is_openmetrics(text);
    let mut exposition = Exposition::default();
    let mut family = Family::default();
    let mut previous_family = Family::default();
    let mut labels: Vec<RawLabel<'_>> = Vec::new();
    let mut after_eof = false;
    for (index, line) in text.split('\n').enumerate() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let line = line.trim_start_matches([' ', '\t']);
        if line.is_empty() {
            continue;
        }
        let outcome = if after_eof {
            Err("content after # EOF")
        } else if line.starts_with('#') {
            match parse_comment(line) {
                Ok(Comment::Eof) => {
                    after_eof = true;
                    Ok(())
                }
                Ok(Comment::Family { name, family_type }) => {
                    if name != family.name {
                        previous_family = family;
                        family = Family::new(name);
                    }
                    if let Some(declared) = family_type {
                        family.set_type(declared.family_type, &previous_family);
                    }
                    Ok(())
                }
                Ok(Comment::Other) => Ok(()),
                Err(reason) => Err(reason),
            }
        } else {
            parse_sample(line, openmetrics, &family, &mut labels)
                .map(|sample| exposition.samples.extend(sample))
        };
        if let Err(reason) = outcome {
            exposition.malformed += 1;
            if exposition.first_error.is_none() {
                exposition.first_error = Some(describe_error(index + 1, reason, line));
            }
        }
    }
    exposition
}

/// The metric family that the following samples belong to.
#[derive(Debug, Clone, Copy)]
struct Family<'a> {
    name: &'a str,
    family_type: FamilyType,
    /// A gauge family `x_created` right after a counter, histogram or summary `x`: it
    /// holds creation times (format 0.0.4 as the Python client writes it).
    holds_created_times: bool,
}

impl Default for Family<'_> {
    fn default() -> Self {
        Self::new("")
    }
}

impl<'a> Family<'a> {
    fn new(name: &'a str) -> Self {
        Self {
            name,
            family_type: FamilyType::Unknown,
            holds_created_times: false,
        }
    }

    fn set_type(&mut self, family_type: FamilyType, previous: &Family<'_>) {
        self.family_type = family_type;
        self.holds_created_times = family_type == FamilyType::Gauge
            && self
                .name
                .strip_suffix("_created")
                .is_some_and(|base| match previous.family_type {
                    FamilyType::Counter => {
                        previous.name == base || previous.name.strip_suffix("_total") == Some(base)
                    }
                    FamilyType::Histogram | FamilyType::Summary => previous.name == base,
                    _ => false,
                });
    }

    /// `None` when the sample is to be dropped.
    fn kind_of(&self, sample_name: &str) -> Option<ValueKind> {
        if self.holds_created_times && sample_name == self.name {
            return None;
        }
        self.family_type.kind_of(self.name, sample_name)
    }
}

fn is_openmetrics(text: &str) -> bool {
    text.split('\n').any(|line| {
        let line = line.trim_matches([' ', '\t', '\r']);
        line.starts_with('#')
            && match parse_comment(line) {
                Ok(Comment::Eof) => true,
                Ok(Comment::Family {
                    family_type: Some(family_type),
                    ..
                }) => family_type.openmetrics_only,
                _ => false,
            }
    })
}

/// The first error of a scrape: where, why, and the start of the line (quoted as the
/// other inputs' errors quote a field).
fn describe_error(line_number: usize, reason: &str, line: &str) -> String {
    let shown = crate::abbreviate(line, crate::QUOTED_CHARS);
    format!("line {line_number}: {reason}: {shown:?}")
}

enum Comment<'a> {
    Eof,
    /// `# HELP`, `# TYPE` (with its type) or `# UNIT`.
    Family {
        name: &'a str,
        family_type: Option<DeclaredType>,
    },
    /// Any other comment.
    Other,
}

struct DeclaredType {
    family_type: FamilyType,
    openmetrics_only: bool,
}

/// Parses a line starting with `#`.
fn parse_comment(line: &str) -> Result<Comment<'_>, &'static str> {
    let rest = &line[1..];
    let after_space = rest.trim_start_matches([' ', '\t']);
    if after_space.len() == rest.len() {
        return Ok(Comment::Other); // `#TYPE …` is a comment, as in Prometheus
    }
    let (keyword, rest) = split_token(after_space);
    match keyword {
        "EOF" if rest.trim_matches([' ', '\t']).is_empty() => Ok(Comment::Eof),
        "HELP" | "TYPE" | "UNIT" => {
            let rest = rest.trim_start_matches([' ', '\t']);
            let name_len = metric_name_len(rest.as_bytes());
            if name_len == 0 {
                return Err("invalid metric name in a HELP, TYPE or UNIT line");
            }
            let (name, rest) = rest.split_at(name_len);
            if !rest.is_empty() && !rest.starts_with([' ', '\t']) {
                return Err("invalid metric name in a HELP, TYPE or UNIT line");
            }
            let family_type = if keyword == "TYPE" {
                let (word, trailing) = split_token(rest.trim_start_matches([' ', '\t']));
                if !trailing.trim_matches([' ', '\t']).is_empty() {
                    return Err("text after the type in a TYPE line");
                }
                Some(declared_type(word).ok_or("unknown metric type")?)
            } else {
                None
            };
            Ok(Comment::Family { name, family_type })
        }
        _ => Ok(Comment::Other),
    }
}

fn declared_type(word: &str) -> Option<DeclaredType> {
    let (family_type, openmetrics_only) = match word {
        "counter" => (FamilyType::Counter, false),
        "gauge" => (FamilyType::Gauge, false),
        "histogram" => (FamilyType::Histogram, false),
        "summary" => (FamilyType::Summary, false),
        "untyped" => (FamilyType::Unknown, false),
        "unknown" => (FamilyType::Unknown, true),
        "gaugehistogram" => (FamilyType::GaugeHistogram, true),
        "stateset" => (FamilyType::StateSet, true),
        "info" => (FamilyType::Info, true),
        _ => return None,
    };
    Some(DeclaredType {
        family_type,
        openmetrics_only,
    })
}

/// Splits at the first space or tab.
fn split_token(text: &str) -> (&str, &str) {
    match text.find([' ', '\t']) {
        Some(end) => text.split_at(end),
        None => (text, ""),
    }
}

/// A label as written: `value` still escaped. Kept in a buffer reused across lines, so a
/// line is validated before anything is allocated for it.
#[derive(Debug, Clone, Copy)]
struct RawLabel<'a> {
    name: &'a str,
    value: &'a str,
    escaped: bool,
}

fn skip_blanks(bytes: &[u8], mut at: usize) -> usize {
    while matches!(bytes.get(at), Some(b' ' | b'\t')) {
        at += 1;
    }
    at
}

/// Parses `name{labels} value [timestamp] [# exemplar]`; `Ok(None)` for a sample dropped
/// on purpose (`_created`).
fn parse_sample<'a>(
    line: &'a str,
    openmetrics: bool,
    family: &Family<'_>,
    labels: &mut Vec<RawLabel<'a>>,
) -> Result<Option<Sample>, &'static str> {
    let bytes = line.as_bytes();
    let name_len = metric_name_len(bytes);
    if name_len == 0 {
        return Err("invalid metric name");
    }
    let name = &line[..name_len];
    let mut at = name_len;
    labels.clear();
    if bytes.get(at) == Some(&b'{') {
        at = parse_labels(line, at + 1, labels)?;
    }
    if !matches!(bytes.get(at), Some(b' ' | b'\t')) {
        return Err("expected a space before the value");
    }
    at = skip_blanks(bytes, at);
    let (value_text, rest) = split_token(&line[at..]);
    let value = parse_value(value_text).ok_or("invalid value")?;
    let rest = rest.trim_start_matches([' ', '\t']);
    let mut timestamp_ms = None;
    if !rest.is_empty() && !rest.starts_with('#') {
        let (timestamp_text, rest) = split_token(rest);
        timestamp_ms = Some(
            if openmetrics {
                parse_seconds_as_ms(timestamp_text)
            } else {
                timestamp_text.parse().ok()
            }
            .ok_or("invalid timestamp")?,
        );
        let rest = rest.trim_start_matches([' ', '\t']);
        if !rest.is_empty() && !rest.starts_with('#') {
            return Err("unexpected text after the timestamp");
        }
    }
    labels.sort_unstable_by_key(|label| label.name);
    if labels.windows(2).any(|pair| pair[0].name == pair[1].name) {
        return Err("duplicate label name");
    }
    let Some(kind) = family.kind_of(name) else {
        return Ok(None);
    };
    let kept = labels.iter().filter(|label| !label.value.is_empty());
    let mut owned_labels = Vec::with_capacity(kept.clone().count());
    owned_labels.extend(kept.map(|label| (label.name.to_owned(), unescape(label))));
    Ok(Some(Sample {
        name: name.to_owned(),
        labels: owned_labels,
        value,
        timestamp_ms,
        kind,
    }))
}

/// Parses labels from just after `{`; returns the position after `}`.
fn parse_labels<'a>(
    line: &'a str,
    mut at: usize,
    labels: &mut Vec<RawLabel<'a>>,
) -> Result<usize, &'static str> {
    let bytes = line.as_bytes();
    loop {
        at = skip_blanks(bytes, at);
        if bytes.get(at) == Some(&b'}') {
            return Ok(at + 1);
        }
        let name_len = label_name_len(&bytes[at..]);
        if name_len == 0 {
            return Err("invalid label name");
        }
        let name = &line[at..at + name_len];
        if name == "__name__" {
            return Err("__name__ given as a label");
        }
        at = skip_blanks(bytes, at + name_len);
        if bytes.get(at) != Some(&b'=') {
            return Err("expected = after a label name");
        }
        at = skip_blanks(bytes, at + 1);
        if bytes.get(at) != Some(&b'"') {
            return Err("label value not quoted");
        }
        at += 1;
        let start = at;
        let mut escaped = false;
        loop {
            match bytes.get(at) {
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    at += 2;
                }
                Some(_) => at += 1,
                None => return Err("unterminated label value"),
            }
        }
        labels.push(RawLabel {
            name,
            value: &line[start..at],
            escaped,
        });
        at = skip_blanks(bytes, at + 1);
        match bytes.get(at) {
            Some(b',') => at += 1,
            Some(b'}') => return Ok(at + 1),
            _ => return Err("expected , or } after a label value"),
        }
    }
}

/// Resolves `\\`, `\"` and `\n`; any other backslash stays as written, as in Prometheus.
fn unescape(label: &RawLabel<'_>) -> String {
    if !label.escaped {
        return label.value.to_owned();
    }
    let mut out = String::with_capacity(label.value.len());
    let mut rest = label.value;
    while let Some(backslash) = rest.find('\\') {
        out.push_str(&rest[..backslash]);
        let after = &rest[backslash + 1..];
        let resolved = match after.as_bytes().first() {
            Some(b'\\') => '\\',
            Some(b'"') => '"',
            Some(b'n') => '\n',
            _ => {
                out.push('\\');
                rest = after;
                continue;
            }
        };
        out.push(resolved);
        rest = &after[1..];
    }
    out.push_str(rest);
    out
}

/// A float as Prometheus writes one: decimal or exponent forms, `NaN`, `+Inf`, `-Inf`
/// (any case, as Go's `ParseFloat` takes them).
fn parse_value(text: &str) -> Option<f64> {
    text.parse().ok()
}

/// OpenMetrics' float seconds as whole milliseconds (rounded to the nearest).
fn parse_seconds_as_ms(text: &str) -> Option<i64> {
    let seconds: f64 = text.parse().ok()?;
    let ms = (seconds * 1000.0).round();
    // i64::MAX is not exact in f64; the bound below it is.
    (ms.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64)
}

#[cfg(test)]
mod tests {
    use std::fmt::Write as _;

    use proptest::prelude::*;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sample(name: &str, pairs: &[(&str, &str)], value: f64, ts: Option<i64>) -> Sample {
        Sample {
            name: name.to_owned(),
            labels: labels(pairs),
            value,
            timestamp_ms: ts,
            kind: ValueKind::Unknown,
        }
    }

    fn kinds(exposition: &Exposition) -> Vec<(&str, ValueKind)> {
        exposition
            .samples
            .iter()
            .map(|s| (s.name.as_str(), s.kind))
            .collect()
    }

    #[test]
    fn text_format_with_types_labels_and_timestamps() {
        let text = "# HELP http_requests_total The total number of HTTP requests.\n\
                    # TYPE http_requests_total counter\n\
                    http_requests_total{method=\"post\",code=\"200\"} 1027 1395066363000\n\
                    http_requests_total{method=\"post\",code=\"400\"}    3 1395066363000\n\
                    \n\
                    # A comment\n\
                    # TYPE temperature gauge\n\
                    temperature -3.5e1\n";
        let exposition = parse(text);
        assert_eq!(exposition.malformed, 0, "{:?}", exposition.first_error);
        let mut expected = sample(
            "http_requests_total",
            &[("code", "200"), ("method", "post")],
            1027.0,
            Some(1_395_066_363_000),
        );
        expected.kind = ValueKind::Counter;
        assert_eq!(exposition.samples[0], expected);
        assert_eq!(exposition.samples[1].value, 3.0);
        let mut temperature = sample("temperature", &[], -35.0, None);
        temperature.kind = ValueKind::Gauge;
        assert_eq!(exposition.samples[2], temperature);
        assert_eq!(exposition.samples.len(), 3);
    }

    #[test]
    fn label_values_keep_spaces_and_resolve_escapes() {
        let text = r#"msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\"", note="a } b, c=\"d\" \t"} 1.458255915e9"#;
        let exposition = parse(text);
        assert_eq!(exposition.malformed, 0, "{:?}", exposition.first_error);
        assert_eq!(
            exposition.samples[0].labels,
            labels(&[
                ("error", "Cannot find file:\n\"FILE.TXT\""),
                ("note", "a } b, c=\"d\" \\t"),
                ("path", "C:\\DIR\\FILE.TXT"),
            ])
        );
        assert_eq!(exposition.samples[0].value, 1.458255915e9);
    }

    #[test]
    fn special_values_and_exponents() {
        let text = "a NaN\nb +Inf\nc -Inf\nd 1e-3\ne 2.5E+2\nf -0\ng .5\nh Inf\n";
        let values: Vec<f64> = parse(text).samples.iter().map(|s| s.value).collect();
        assert!(values[0].is_nan());
        assert_eq!(
            values[1..],
            [
                f64::INFINITY,
                f64::NEG_INFINITY,
                1e-3,
                250.0,
                -0.0,
                0.5,
                f64::INFINITY
            ]
        );
    }

    #[test]
    fn histogram_and_summary_kinds() {
        let text = "# TYPE rpc summary\n\
                    rpc{quantile=\"0.5\"} 4773\n\
                    rpc_sum 1.7560473e+07\n\
                    rpc_count 2693\n\
                    # TYPE latency histogram\n\
                    latency_bucket{le=\"0.05\"} 24054\n\
                    latency_bucket{le=\"+Inf\"} 144320\n\
                    latency_sum 53423\n\
                    latency_count 144320\n\
                    untyped_metric 1\n";
        let exposition = parse(text);
        assert_eq!(
            kinds(&exposition),
            [
                ("rpc", ValueKind::Gauge),
                ("rpc_sum", ValueKind::Counter),
                ("rpc_count", ValueKind::Counter),
                ("latency_bucket", ValueKind::Counter),
                ("latency_bucket", ValueKind::Counter),
                ("latency_sum", ValueKind::Counter),
                ("latency_count", ValueKind::Counter),
                ("untyped_metric", ValueKind::Unknown),
            ]
        );
        assert_eq!(exposition.samples[4].labels, labels(&[("le", "+Inf")]));
    }

    #[test]
    fn openmetrics_counters_drop_created_and_read_seconds() {
        let text = "# TYPE foo counter\n\
                    # UNIT foo seconds\n\
                    # HELP foo Some help.\n\
                    foo_total{a=\"b\"} 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n\
                    foo_created{a=\"b\"} 1520430000.123\n\
                    # TYPE h histogram\n\
                    h_bucket{le=\"1\"} 0\n\
                    h_bucket{le=\"+Inf\"} 2\n\
                    h_count 2\n\
                    h_sum 3\n\
                    h_created 1520430000\n\
                    # TYPE s summary\n\
                    s_count 1\n\
                    s_created 1520430000\n\
                    # EOF\n";
        let exposition = parse(text);
        assert_eq!(exposition.malformed, 0, "{:?}", exposition.first_error);
        assert_eq!(
            kinds(&exposition),
            [
                ("foo_total", ValueKind::Counter),
                ("h_bucket", ValueKind::Counter),
                ("h_bucket", ValueKind::Counter),
                ("h_count", ValueKind::Counter),
                ("h_sum", ValueKind::Counter),
                ("s_count", ValueKind::Counter),
            ]
        );
        assert_eq!(exposition.samples[0].timestamp_ms, Some(1_520_879_607_789));
    }

    #[test]
    fn openmetrics_only_types_switch_timestamps_to_seconds() {
        let text = "# TYPE m gauge\nm 1 12.5\n# TYPE q stateset\nq{q=\"a\"} 1\n";
        let exposition = parse(text);
        assert_eq!(exposition.samples[0].timestamp_ms, Some(12_500));
        assert_eq!(exposition.samples[1].kind, ValueKind::Gauge);
        // The same line without them is text format: milliseconds, integers only.
        let exposition = parse("m 1 12.5\nm 1 12\n");
        assert_eq!(exposition.malformed, 1);
        assert_eq!(exposition.samples[0].timestamp_ms, Some(12));
    }

    #[test]
    fn python_created_gauges_are_dropped_in_text_format() {
        let text = "# TYPE c_total counter\n\
                    c_total 1.0\n\
                    # HELP c_created help\n\
                    # TYPE c_created gauge\n\
                    c_created 1.7e9\n\
                    # TYPE job_created gauge\n\
                    job_created 5\n";
        let exposition = parse(text);
        assert_eq!(
            kinds(&exposition),
            [
                ("c_total", ValueKind::Counter),
                ("job_created", ValueKind::Gauge)
            ]
        );
    }

    #[test]
    fn lines_after_eof_are_malformed() {
        let exposition = parse("a 1\n# EOF\nb 2\n");
        assert_eq!(exposition.samples.len(), 1);
        assert_eq!(exposition.malformed, 1);
        assert_eq!(
            exposition.first_error.as_deref(),
            Some("line 3: content after # EOF: \"b 2\"")
        );
    }

    #[test]
    fn leniencies() {
        let text = "a{x=\"1\",} 1\r\n  b{ y = \"2\" , z=\"3\" }\t2\t3\nc{} 4\nd{e=\"\"} 5\n#TYPE d counter\n";
        let exposition = parse(text);
        assert_eq!(exposition.malformed, 0, "{:?}", exposition.first_error);
        assert_eq!(
            exposition.samples,
            [
                sample("a", &[("x", "1")], 1.0, None),
                sample("b", &[("y", "2"), ("z", "3")], 2.0, Some(3)),
                sample("c", &[], 4.0, None),
                sample("d", &[], 5.0, None),
            ]
        );
    }

    #[test]
    fn malformed_lines_are_counted_and_skipped() {
        let cases = [
            ("1abc 1", "invalid metric name"),
            ("a{b=\"c\" 1", "expected , or } after a label value"),
            ("a{b=c} 1", "label value not quoted"),
            ("a{b=\"c} 1", "unterminated label value"),
            ("a{1b=\"c\"} 1", "invalid label name"),
            ("a{b} 1", "expected = after a label name"),
            ("a{b=\"1\",b=\"2\"} 1", "duplicate label name"),
            ("a{__name__=\"x\"} 1", "__name__ given as a label"),
            ("a", "expected a space before the value"),
            ("a{}1", "expected a space before the value"),
            ("a one", "invalid value"),
            ("a 1 2 3", "unexpected text after the timestamp"),
            ("a 1 1.5", "invalid timestamp"),
            ("# TYPE a countr", "unknown metric type"),
            ("# TYPE a counter x", "text after the type in a TYPE line"),
            (
                "# HELP 1a x",
                "invalid metric name in a HELP, TYPE or UNIT line",
            ),
        ];
        for (line, reason) in cases {
            let exposition = parse(&format!("ok 1\n{line}\nok 2\n"));
            assert_eq!(exposition.samples.len(), 2, "{line}");
            assert_eq!(exposition.malformed, 1, "{line}");
            let error = exposition.first_error.unwrap();
            assert!(
                error.starts_with(&format!("line 2: {reason}: ")),
                "{line}: {error}"
            );
        }
    }

    #[test]
    fn first_error_shows_only_the_start_of_a_long_line() {
        let line = format!("a {}", "x".repeat(500));
        let error = parse(&line).first_error.unwrap();
        let shown = format!("a {}…", "x".repeat(crate::QUOTED_CHARS - 2));
        assert!(error.ends_with(&format!("{shown:?}")), "{error}");
    }

    /// Writes samples as text exposition, escaping as a client library would.
    fn render(samples: &[Sample], openmetrics: bool) -> String {
        let mut text = String::new();
        for sample in samples {
            text.push_str(&sample.name);
            text.push('{');
            for (name, value) in &sample.labels {
                let escaped = value
                    .replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n");
                let _ = write!(text, "{name}=\"{escaped}\",");
            }
            let value = match sample.value {
                v if v.is_nan() => "NaN".to_owned(),
                v if v == f64::INFINITY => "+Inf".to_owned(),
                v if v == f64::NEG_INFINITY => "-Inf".to_owned(),
                v => format!("{v:e}"),
            };
            let _ = write!(text, "}} {value}");
            match (sample.timestamp_ms, openmetrics) {
                (Some(ms), false) => {
                    let _ = write!(text, " {ms}");
                }
                (Some(ms), true) => {
                    let sign = if ms < 0 { "-" } else { "" };
                    let ms = ms.unsigned_abs();
                    let _ = write!(text, " {sign}{}.{:03}", ms / 1000, ms % 1000);
                }
                (None, _) => {}
            }
            text.push('\n');
        }
        if openmetrics {
            text.push_str("# EOF\n");
        }
        text
    }

    fn arbitrary_sample() -> impl Strategy<Value = Sample> {
        (
            "[a-zA-Z_:][a-zA-Z0-9_:]{0,12}",
            proptest::collection::btree_map("[a-zA-Z_][a-zA-Z0-9_]{0,8}", "(.|\n){1,12}", 0..4),
            prop_oneof![
                any::<f64>(),
                Just(f64::NAN),
                Just(f64::INFINITY),
                Just(f64::NEG_INFINITY)
            ],
            proptest::option::of(-10_000_000_000_000i64..10_000_000_000_000),
        )
            .prop_filter("__name__ is not a label", |(_, labels, _, _)| {
                !labels.contains_key("__name__")
            })
            .prop_map(|(name, labels, value, timestamp_ms)| Sample {
                name,
                labels: labels.into_iter().collect(),
                value,
                timestamp_ms,
                kind: ValueKind::Unknown,
            })
    }

    fn same(a: &Sample, b: &Sample) -> bool {
        a.name == b.name
            && a.labels == b.labels
            && a.timestamp_ms == b.timestamp_ms
            && a.kind == b.kind
            && (a.value == b.value || a.value.is_nan() && b.value.is_nan())
    }

    proptest! {
        #[test]
        fn never_panics_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let text = String::from_utf8_lossy(&bytes);
            let exposition = parse(&text);
            prop_assert!(exposition.samples.len() + exposition.malformed <= text.split('\n').count());
        }

        #[test]
        fn never_panics_on_text_near_the_grammar(
            text in "([a-z_{}=\",# \n\\\\.eE+0-9]|TYPE|HELP|EOF|counter|Inf|NaN|é){0,80}"
        ) {
            let exposition = parse(&text);
            prop_assert_eq!(exposition.malformed == 0, exposition.first_error.is_none());
        }

        #[test]
        fn rendered_samples_parse_back(
            samples in proptest::collection::vec(arbitrary_sample(), 0..8),
            openmetrics in any::<bool>(),
        ) {
            let text = render(&samples, openmetrics);
            let exposition = parse(&text);
            prop_assert_eq!(exposition.malformed, 0, "{:?}\n{}", exposition.first_error, text);
            prop_assert_eq!(exposition.samples.len(), samples.len());
            for (parsed, written) in exposition.samples.iter().zip(&samples) {
                prop_assert!(same(parsed, written), "{:?} != {:?}", parsed, written);
            }
        }
    }
}
