//! Replays fault cases in the layout of `shared/traces` (one directory per case with
//! `case.json`, `spans.csv.gz` and, when present, `logs.csv.gz`; fault-free minutes under
//! `_reference/<system-day>/`)
//! through the same assembler and [`Evidence`] as the live path, in time order, and ranks
//! root-cause candidates at the case's alarm time. `ground_truth.json` is read only by
//! [`score`], never to predict.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::assemble::{AssemblerLimits, TraceAssembler, TraceFacts};
use super::rca::{Candidate, Evidence, RcaParams};
use super::span::{Names, Span, SpanId, SpanKind, StatusCode, TraceId};

/// How long after the alarm spans are judged: the cases' faults last 180 s.
pub const JUDGED_NANO: u64 = 180_000_000_000;

#[derive(Debug, Error)]
pub enum CaseError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("no case directories (with case.json) under {0}")]
    NoCases(PathBuf),
}

/// The inputs of `case.json` a method may use.
#[derive(Debug, Deserialize)]
pub struct CaseInfo {
    pub case_id: String,
    pub alarm_time_unix: u64,
    #[serde(default)]
    pub candidate_services: Vec<String>,
}

/// A case's answer, for scoring only.
#[derive(Debug, Deserialize)]
pub struct GroundTruth {
    pub root_cause_service: String,
    #[serde(default)]
    pub fault_type: String,
}

/// One case's result.
#[derive(Debug, Serialize)]
pub struct CaseRanking {
    pub case_id: String,
    pub alarm_time_unix: u64,
    pub spans: u64,
    pub traces: u64,
    pub reference_spans: u64,
    /// Log records read (0 without logs, or when logs were not asked for).
    pub logs: u64,
    /// Log records skipped for a time that does not parse.
    pub logs_skipped: u64,
    pub ranking: Vec<Candidate>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaseError + '_ {
    move |source| CaseError::Io {
        path: path.to_owned(),
        source,
    }
}

fn format(path: &Path, reason: impl Into<String>) -> CaseError {
    CaseError::Format {
        path: path.to_owned(),
        reason: reason.into(),
    }
}

/// Case directories: `path` itself when it holds `case.json`, else its subdirectories that
/// do (sorted; `_reference` and other `_` directories skipped).
pub fn find_cases(path: &Path) -> Result<Vec<PathBuf>, CaseError> {
    if path.join("case.json").is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut cases = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io(path))? {
        let dir = entry.map_err(io(path))?.path();
        let hidden = dir
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('_'));
        if !hidden && dir.join("case.json").is_file() {
            cases.push(dir);
        }
    }
    cases.sort();
    if cases.is_empty() {
        return Err(CaseError::NoCases(path.to_owned()));
    }
    Ok(cases)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, CaseError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|e| format(path, e.to_string()))
}

pub fn read_case_info(dir: &Path) -> Result<CaseInfo, CaseError> {
    read_json(&dir.join("case.json"))
}

pub fn read_ground_truth(dir: &Path) -> Result<Option<GroundTruth>, CaseError> {
    let path = dir.join("ground_truth.json");
    if !path.is_file() {
        return Ok(None);
    }
    read_json(&path).map(Some)
}

/// Reads `spans.csv.gz` (or plain `spans.csv`): `trace_id, span_id, parent_span_id,
/// service, pod, operation, start_unix_nano, duration_nano, status_code`, by header name.
/// Returns the spans sorted by start time.
pub fn read_spans(path: &Path, names: &mut Names) -> Result<Vec<Span>, CaseError> {
    let (mut csv, headers) = open_csv(path)?;
    let column = |name: &str| column(&headers, path, name);
    let [trace, span, parent, service, operation, start, duration, status] = [
        "trace_id",
        "span_id",
        "parent_span_id",
        "service",
        "operation",
        "start_unix_nano",
        "duration_nano",
        "status_code",
    ]
    .map(column);
    let (trace, span, parent, service, operation, start, duration) = (
        trace?, span?, parent?, service?, operation?, start?, duration?,
    );
    let status = status.ok();
    let mut spans = Vec::new();
    let mut record = csv::StringRecord::new();
    while csv
        .read_record(&mut record)
        .map_err(|e| format(path, e.to_string()))?
    {
        let line = record.position().map_or(0, |p| p.line());
        let bad = |what: &str| format(path, format!("line {line}: bad {what}"));
        let field = |i: usize| record.get(i).unwrap_or("");
        let parent_text = field(parent);
        spans.push(Span {
            trace_id: TraceId::from_hex(field(trace)).ok_or_else(|| bad("trace_id"))?,
            span_id: SpanId::from_hex(field(span)).ok_or_else(|| bad("span_id"))?,
            parent_id: if parent_text.is_empty() {
                None
            } else {
                Some(SpanId::from_hex(parent_text).ok_or_else(|| bad("parent_span_id"))?)
            },
            service: names.get(field(service)),
            name: names.get(field(operation)),
            kind: SpanKind::Unspecified,
            start_unix_nano: field(start).parse().map_err(|_| bad("start_unix_nano"))?,
            duration_nano: field(duration).parse().map_err(|_| bad("duration_nano"))?,
            status: match status.map(field) {
                Some("ERROR") => StatusCode::Error,
                Some("OK") => StatusCode::Ok,
                _ => StatusCode::Unset,
            },
        });
    }
    spans.sort_by_key(|s| s.start_unix_nano);
    Ok(spans)
}

type CsvReader = csv::Reader<Box<dyn Read>>;

/// Opens a CSV file, gunzipped when its name ends in `.gz`, and reads its header row.
fn open_csv(path: &Path) -> Result<(CsvReader, csv::StringRecord), CaseError> {
    let file = File::open(path).map_err(io(path))?;
    let reader: Box<dyn Read> = if path.extension().is_some_and(|e| e == "gz") {
        Box::new(GzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    let mut csv = csv::Reader::from_reader(reader);
    let headers = csv
        .headers()
        .map_err(|e| format(path, e.to_string()))?
        .clone();
    Ok((csv, headers))
}

/// The position of column `name` in `headers`.
fn column(headers: &csv::StringRecord, path: &Path, name: &str) -> Result<usize, CaseError> {
    headers
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| format(path, format!("no column {name}")))
}

/// One log record of a case.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub time_unix_nano: u64,
    pub service: std::sync::Arc<str>,
    pub message: String,
}

/// Reads `logs.csv.gz`: `time_unix_nano, service, ..., message`, by header name, sorted by
/// time. Records whose time is not a non-negative integer (the source holds some overflowed
/// ones) are skipped and counted in the second value.
pub fn read_logs(path: &Path, names: &mut Names) -> Result<(Vec<LogRecord>, u64), CaseError> {
    let (mut csv, headers) = open_csv(path)?;
    let column = |name: &str| column(&headers, path, name);
    let (time, service, message) = (
        column("time_unix_nano")?,
        column("service")?,
        column("message")?,
    );
    let mut logs = Vec::new();
    let mut skipped = 0;
    let mut record = csv::StringRecord::new();
    while csv
        .read_record(&mut record)
        .map_err(|e| format(path, e.to_string()))?
    {
        let field = |i: usize| record.get(i).unwrap_or("");
        let Ok(time_unix_nano) = field(time).parse() else {
            skipped += 1;
            continue;
        };
        logs.push(LogRecord {
            time_unix_nano,
            service: names.get(field(service)),
            message: field(message).to_owned(),
        });
    }
    logs.sort_by_key(|l| l.time_unix_nano);
    Ok((logs, skipped))
}

/// Feeds spans in time order through an assembler, completing traces as span time passes.
fn assemble(spans: Vec<Span>, mut each: impl FnMut(&TraceFacts)) -> u64 {
    let mut assembler = TraceAssembler::new(AssemblerLimits::default());
    let mut done = Vec::new();
    let mut next_flush = 0;
    for span in spans {
        let start = span.start_unix_nano;
        assembler.push(span, &mut done);
        if start >= next_flush {
            assembler.flush(start, &mut done);
            next_flush = start.saturating_add(1_000_000_000);
        }
        done.drain(..).for_each(|trace| each(&trace));
    }
    assembler.finish(&mut done);
    done.drain(..).for_each(|trace| each(&trace));
    assembler.counts().traces
}

/// A file of the fault-free reference minute of the case's system and day:
/// `../_reference/<id less its last dash-part>/<file>`, when present.
fn reference_file(dir: &Path, case_id: &str, file: &str) -> Option<PathBuf> {
    let day = case_id.rsplit_once('-')?.0;
    let path = dir.parent()?.join("_reference").join(day).join(file);
    path.is_file().then_some(path)
}

/// Maps a log message to its template id (the agent's template miner, in `omen rca`).
pub type Templater<'a> = dyn FnMut(&str) -> u64 + 'a;

/// Replays one case and ranks its services at the alarm. With `templates`, the case's
/// logs (and the reference's) count towards the ranking too.
pub fn replay_case(
    dir: &Path,
    params: RcaParams,
    templates: Option<&mut Templater<'_>>,
) -> Result<CaseRanking, CaseError> {
    let info = read_case_info(dir)?;
    let mut names = Names::default();
    let mut evidence = Evidence::new(params);
    let mut reference_count = 0;
    if let Some(path) = reference_file(dir, &info.case_id, "spans.csv.gz") {
        let spans = read_spans(&path, &mut names)?;
        reference_count = spans.len() as u64;
        assemble(spans, |trace| evidence.observe_reference(trace));
    }
    let (mut log_count, mut logs_skipped) = (0, 0);
    if let Some(templates) = templates {
        if let Some(path) = reference_file(dir, &info.case_id, "logs.csv.gz") {
            for log in read_logs(&path, &mut names)?.0 {
                let template = templates(&log.message);
                evidence.observe_reference_log(&log.service, template, log.time_unix_nano);
            }
        }
        let path = dir.join("logs.csv.gz");
        if path.is_file() {
            let (logs, skipped) = read_logs(&path, &mut names)?;
            logs_skipped = skipped;
            for log in logs {
                let template = templates(&log.message);
                evidence.observe_log(&log.service, template, log.time_unix_nano);
                log_count += 1;
            }
        }
    }
    let spans = read_spans(&dir.join("spans.csv.gz"), &mut names)?;
    let span_count = spans.len() as u64;
    let traces = assemble(spans, |trace| evidence.observe(trace));
    let at = info.alarm_time_unix.saturating_mul(1_000_000_000);
    let ranking = evidence.rank(at, at.saturating_add(JUDGED_NANO), &info.candidate_services);
    Ok(CaseRanking {
        case_id: info.case_id,
        alarm_time_unix: info.alarm_time_unix,
        spans: span_count,
        traces,
        reference_spans: reference_count,
        logs: log_count,
        logs_skipped,
        ranking,
    })
}

/// AC@1..5 overall and per fault type, over the cases that have a ground truth.
#[derive(Debug, Default, Serialize)]
pub struct Scores {
    pub cases: usize,
    /// AC@k for k = 1..=5.
    pub ac: [f64; 5],
    pub by_fault_type: BTreeMap<String, (usize, [f64; 5])>,
}

impl Scores {
    pub fn avg5(&self) -> f64 {
        self.ac.iter().sum::<f64>() / 5.0
    }
}

/// Scores rankings against ground truths (case id → truth). A case without a ranking
/// counts as a miss.
pub fn score(rankings: &HashMap<String, Vec<String>>, truths: &[(String, GroundTruth)]) -> Scores {
    let mut scores = Scores::default();
    let mut hits = [0usize; 5];
    let mut by_type: BTreeMap<String, (usize, [usize; 5])> = BTreeMap::new();
    for (case, truth) in truths {
        let place = rankings
            .get(case)
            .and_then(|r| r.iter().position(|s| *s == truth.root_cause_service));
        let entry = by_type.entry(truth.fault_type.clone()).or_default();
        entry.0 += 1;
        for (k, (all, this_type)) in hits.iter_mut().zip(entry.1.iter_mut()).enumerate() {
            if place.is_some_and(|p| p <= k) {
                *all += 1;
                *this_type += 1;
            }
        }
    }
    scores.cases = truths.len();
    let share = |h: usize, n: usize| if n == 0 { 0.0 } else { h as f64 / n as f64 };
    scores.ac = hits.map(|h| share(h, truths.len()));
    scores.by_fault_type = by_type
        .into_iter()
        .map(|(t, (n, h))| (t, (n, h.map(|h| share(h, n)))))
        .collect();
    scores
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_count_places_and_misses() {
        let rankings = HashMap::from([
            ("a".to_owned(), vec!["x".to_owned(), "y".to_owned()]),
            ("b".to_owned(), vec!["x".to_owned(), "y".to_owned()]),
        ]);
        let truth = |s: &str, t: &str| GroundTruth {
            root_cause_service: s.to_owned(),
            fault_type: t.to_owned(),
        };
        let truths = vec![
            ("a".to_owned(), truth("x", "cpu")),
            ("b".to_owned(), truth("y", "cpu")),
            ("c".to_owned(), truth("y", "delay")),
        ];
        let s = score(&rankings, &truths);
        assert_eq!(s.cases, 3);
        assert!((s.ac[0] - 1.0 / 3.0).abs() < 1e-9);
        assert!((s.ac[1] - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(s.by_fault_type["delay"].1[4], 0.0);
        assert_eq!(s.by_fault_type["cpu"].1[1], 1.0);
    }
}
