//! `omen agent test`: run rules over a finished input and print the final exposition, or
//! check rule test cases (input lines and expected sample values).
//!
//! Pair timeouts are evaluated against the newest event time seen, exactly as the live
//! agent would at that point in the logs: starts still inside their timeout stay pending.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::audit::Finding;
use crate::clock::Clock;
use crate::config::{ConfigError, RulesConfig};
use crate::pipeline::Pipeline;
use crate::source::{Framer, RecordSink};

#[derive(Debug, thiserror::Error)]
pub enum OneShotError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot read {path}: {source}")]
    Input {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Cases {
        path: PathBuf,
        source: serde_yaml::Error,
    },
}

/// Feeds a whole reader through the pipeline as one stream.
pub fn feed_reader(
    pipeline: &mut Pipeline,
    stream_name: &str,
    mut reader: impl Read,
) -> std::io::Result<()> {
    let stream = pipeline.stream(stream_name);
    let mut framer = Framer::new(pipeline.framing().clone(), 0);
    let mut buffer = vec![0u8; 1 << 20];
    pipeline.begin_batch();
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        pipeline.bytes_read(stream, n as u64);
        framer.feed(&buffer[..n], &mut |record, truncated| {
            pipeline.record(stream, record, truncated)
        });
    }
    framer.flush(true, &mut |record, truncated| {
        pipeline.record(stream, record, truncated)
    });
    pipeline.end_batch();
    Ok(())
}

/// What a run over a finished input gives: the rules' exposition and what the audit found.
#[derive(Debug)]
pub struct TestRun {
    pub exposition: String,
    pub records: u64,
    pub findings: Vec<Finding>,
}

/// Runs the rules over `input` (`-` for stdin) and returns the rules' exposition, with
/// what the audit found of the rules on that input.
pub fn run_input(
    rules: &Path,
    input: &Path,
    clock: Arc<dyn Clock>,
) -> Result<TestRun, OneShotError> {
    let config = RulesConfig::load(rules)?;
    let mut pipeline = Pipeline::new(&config, rules, clock)?;
    pipeline.start_audit();
    let name = input.to_string_lossy();
    let result = if input == Path::new("-") {
        feed_reader(&mut pipeline, &name, std::io::stdin().lock())
    } else {
        std::fs::File::open(input).and_then(|file| feed_reader(&mut pipeline, &name, file))
    };
    result.map_err(|source| OneShotError::Input {
        path: input.to_owned(),
        source,
    })?;
    let audit = pipeline.audit().expect("started above");
    Ok(TestRun {
        exposition: pipeline.render_rules(),
        records: audit.records,
        findings: audit.findings(pipeline.rule_names()),
    })
}

/// A rule test file: cases of input lines and expected sample values.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesFile {
    pub cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    pub name: String,
    pub input: String,
    #[serde(default)]
    pub expect: Vec<Expectation>,
    /// Records of the input that did not parse, plus values a rule could not use.
    pub errors: Option<u64>,
    /// Records of the input that no rule matched.
    pub unmatched: Option<u64>,
}

/// One expected sample, named as in the exposition (`x_total`, `h_bucket`, `h_sum`…).
/// A sample expected to be absent has `value: null`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub metric: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub value: Option<f64>,
}

/// The outcome of a cases file: one line per failed expectation.
#[derive(Debug, Default)]
pub struct CasesReport {
    pub cases: usize,
    pub failures: Vec<String>,
}

pub fn run_cases(
    rules: &Path,
    cases: &Path,
    clock: Arc<dyn Clock>,
) -> Result<CasesReport, OneShotError> {
    let config = RulesConfig::load(rules)?;
    let text = std::fs::read_to_string(cases).map_err(|source| OneShotError::Input {
        path: cases.to_owned(),
        source,
    })?;
    let file: CasesFile = serde_yaml::from_str(&text).map_err(|source| OneShotError::Cases {
        path: cases.to_owned(),
        source,
    })?;
    let mut report = CasesReport {
        cases: file.cases.len(),
        failures: Vec::new(),
    };
    for case in &file.cases {
        let mut pipeline = Pipeline::new(&config, rules, clock.clone())?;
        pipeline.start_audit();
        feed_reader(&mut pipeline, "case", case.input.as_bytes()).map_err(|source| {
            OneShotError::Input {
                path: cases.to_owned(),
                source,
            }
        })?;
        let audit = pipeline.audit().expect("started above");
        for (what, want, got) in [
            ("errors", case.errors, audit.errors()),
            ("unmatched", case.unmatched, audit.unmatched.count),
        ] {
            if want.is_some_and(|want| want != got) {
                let findings: Vec<String> = audit
                    .findings(pipeline.rule_names())
                    .into_iter()
                    .map(|f| format!("    {}", f.text))
                    .collect();
                report.failures.push(format!(
                    "case `{}`: {what}\n  - expected {}\n  + got      {got}\n{}",
                    case.name,
                    want.unwrap_or_default(),
                    findings.join("\n")
                ));
            }
        }
        let exposition = pipeline.render_rules();
        let samples = parse_exposition(&exposition);
        for expectation in &case.expect {
            let key = sample_key(&expectation.metric, &expectation.labels);
            let got = samples.get(&key).copied();
            let same = match (expectation.value, got) {
                (Some(want), Some(got)) => (want - got).abs() <= 1e-9 * want.abs().max(1.0),
                (None, None) => true,
                _ => false,
            };
            if !same {
                let show = |v: Option<f64>| v.map_or("absent".to_owned(), |v| v.to_string());
                let related: Vec<String> = samples
                    .iter()
                    .filter(|(k, _)| k.starts_with(expectation.metric.as_str()))
                    .map(|(k, v)| format!("      {k} {v}"))
                    .collect();
                report.failures.push(format!(
                    "case `{}`: {key}\n  - expected {}\n  + got      {}\n    samples of this metric:\n{}",
                    case.name,
                    show(expectation.value),
                    show(got),
                    if related.is_empty() { "      (none)".to_owned() } else { related.join("\n") }
                ));
            }
        }
    }
    Ok(report)
}

/// `name{a="1",b="2"}` with labels sorted, the form samples are compared in.
pub fn sample_key(name: &str, labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        return name.to_owned();
    }
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// Parses Prometheus text exposition into `sample_key → value` (comments skipped).
pub fn parse_exposition(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (name_end, labels, rest) = match line.find('{') {
            Some(open) => {
                let (labels, close) = parse_labels(&line[open + 1..]);
                (open, labels, &line[open + 1 + close..])
            }
            None => {
                let end = line.find(' ').unwrap_or(line.len());
                (end, BTreeMap::new(), &line[end..])
            }
        };
        let value = rest.split_whitespace().next().unwrap_or("");
        let value = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other.parse().unwrap_or(f64::NAN),
        };
        samples.insert(sample_key(&line[..name_end], &labels), value);
    }
    samples
}

/// Parses `a="x",b="y"}`; returns the labels and the index just past the `}`.
fn parse_labels(text: &str) -> (BTreeMap<String, String>, usize) {
    let mut labels = BTreeMap::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() && bytes[i] != b'}' {
        let key_start = i;
        while i < bytes.len() && bytes[i] != b'=' {
            i += 1;
        }
        let key = text[key_start..i].trim_matches(',').trim().to_owned();
        i += 2; // `="`
        let mut value = String::new();
        while i < bytes.len() && bytes[i] != b'"' {
            if bytes[i] == b'\\' && i + 1 < bytes.len() {
                i += 1;
                value.push(match bytes[i] {
                    b'n' => '\n',
                    other => other as char,
                });
                i += 1;
                continue;
            }
            let ch = text[i..].chars().next().unwrap_or('\u{fffd}');
            value.push(ch);
            i += ch.len_utf8();
        }
        i += 1; // closing quote
        if i < bytes.len() && bytes[i] == b',' {
            i += 1;
        }
        labels.insert(key, value);
    }
    (labels, (i + 1).min(text.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_its_own_exposition() {
        let text = "# TYPE a counter\na{x=\"1\",y=\"q\\\"z\"} 2\nb 3.5\nc_bucket{le=\"+Inf\"} 4\n";
        let samples = parse_exposition(text);
        assert_eq!(samples.get("a{x=\"1\",y=\"q\"z\"}"), Some(&2.0));
        assert_eq!(samples.get("b"), Some(&3.5));
        assert_eq!(samples.get("c_bucket{le=\"+Inf\"}"), Some(&4.0));
    }
}
