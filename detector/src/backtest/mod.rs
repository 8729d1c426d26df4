//! `omen backtest`: replays history through the live detection path and scores it.
//!
//! Every series is fed point by point to its own [`SeriesDetector`], exactly as the live
//! detector does, with one set of defaults and no look at labels or file names. The
//! outputs are NAB's results files, a JSON report scored by our own NAB scorer (three
//! profiles, event-level precision and recall, lead times against a static-threshold
//! rule), per-series plots and an index page.

mod decimal;
pub mod nab;
pub mod plot;
pub mod report;

use std::collections::HashMap;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use thiserror::Error;

use crate::ingest::{HistoryFiles, IngestError};
use crate::model::detector::DetectorError;
use crate::model::{DetectorConfig, SeriesDetector};
use crate::series::Series;

use self::nab::{LabelsError, Windows};
pub use self::report::Report;

/// Errors from a backtest run.
#[derive(Debug, Error)]
pub enum BacktestError {
    #[error(transparent)]
    Ingest(#[from] IngestError),
    #[error(transparent)]
    Labels(#[from] LabelsError),
    /// The detector's message, which names the setting; not its source too, or a chain
    /// would say it twice.
    #[error("detector configuration: {0}")]
    Detector(DetectorError),
    #[error("name {0:?} must match [A-Za-z0-9-]+")]
    BadName(String),
    /// A labels file none of whose keys names a series here: scored, the run would look
    /// like one on data without anomalies.
    #[error(
        "labels {labels}: no key names a series under {data} (keys look like {key}, series like {series})"
    )]
    LabelsMatchNothing {
        labels: PathBuf,
        data: PathBuf,
        key: String,
        series: String,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Two series names that differ only in characters a file name cannot hold (`a b`
    /// and `a_b`) would write one results file.
    #[error("series {first} and {second} would both write {path}; rename one of them")]
    SameResults {
        first: String,
        second: String,
        path: PathBuf,
    },
}

impl From<DetectorError> for BacktestError {
    fn from(error: DetectorError) -> Self {
        Self::Detector(error)
    }
}

/// What to replay and where to write.
#[derive(Debug, Clone)]
pub struct BacktestOptions {
    pub data: PathBuf,
    pub labels: Option<PathBuf>,
    pub out: PathBuf,
    pub name: String,
    pub config: DetectorConfig,
    pub plots: bool,
    /// Show a progress bar on stderr (when it is a terminal).
    pub progress: bool,
}

/// The detector's output for one series, row for row.
#[derive(Debug, Clone)]
pub struct SeriesRun {
    pub series: Series,
    /// Windows as row ranges, from the labels (empty without labels).
    pub windows: Vec<(usize, usize)>,
    pub scores: Vec<f64>,
    /// The band, row for row, when asked for (plots draw it); else empty.
    pub lower: Vec<f64>,
    pub upper: Vec<f64>,
    /// First early warning at or after each row, as rows ahead, if any was raised.
    pub warnings: Vec<Option<u32>>,
    pub detect_time: Duration,
    pub state_bytes: usize,
    pub snapshot_bytes: usize,
    /// The season the baseline found, in seconds.
    pub season_s: Option<i64>,
}

/// Feeds one series through a fresh detector; keeps the band if `keep_band`.
pub fn detect_series(
    series: Series,
    windows: Vec<(usize, usize)>,
    config: &DetectorConfig,
    keep_band: bool,
) -> Result<SeriesRun, DetectorError> {
    let mut detector = SeriesDetector::new(config.clone())?;
    let n = series.len();
    let mut run = SeriesRun {
        windows,
        scores: Vec::with_capacity(n),
        lower: Vec::with_capacity(if keep_band { n } else { 0 }),
        upper: Vec::with_capacity(if keep_band { n } else { 0 }),
        warnings: Vec::with_capacity(n),
        detect_time: Duration::ZERO,
        state_bytes: 0,
        snapshot_bytes: 0,
        season_s: None,
        series,
    };
    let started = Instant::now();
    for (&t, &v) in run.series.timestamps_ms.iter().zip(&run.series.values) {
        let score = detector.update(t, v);
        run.scores.push(score.score);
        if keep_band {
            run.lower.push(score.lower);
            run.upper.push(score.upper);
        }
        run.warnings.push(
            score
                .warning
                .map(|w| u32::try_from(w.steps_ahead).unwrap_or(u32::MAX)),
        );
    }
    run.detect_time = started.elapsed();
    run.state_bytes = detector.state_bytes();
    run.season_s = detector.baseline().period_ms().map(|ms| ms / 1000);
    let mut counter = ByteCounter(0);
    run.snapshot_bytes = serde_json::to_writer(&mut counter, &detector).map_or(0, |()| counter.0);
    Ok(run)
}

/// Counts the bytes written to it: a snapshot's size without building the snapshot.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// `<out>/<name>/<category>/<name>_<file>.csv` for a series named `<category>/<file>`.
/// Always inside `<out>/<name>`: a series name comes from the data (a Prometheus label
/// value may hold `/../`), so a folder of dots alone is written as underscores.
pub fn results_path(out: &Path, name: &str, series_name: &str) -> PathBuf {
    let clean = |s: &str| -> String {
        if s.bytes().all(|b| b == b'.') {
            return "_".repeat(s.len());
        }
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let (category, file) = series_name.rsplit_once('/').unwrap_or(("", series_name));
    let mut path = out.join(name);
    for part in category.split('/').filter(|p| !p.is_empty()) {
        path.push(clean(part));
    }
    path.join(format!("{name}_{}.csv", clean(file)))
}

/// Writes `run`'s results file; `text` is room to build it in, reused across series so
/// each does not fault in fresh pages.
fn write_results(path: &Path, run: &SeriesRun, text: &mut Vec<u8>) -> Result<(), BacktestError> {
    let write_error = |source| BacktestError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(write_error)?;
    }
    text.clear();
    text.reserve(run.scores.len() * 48);
    text.extend_from_slice(b"timestamp,value,anomaly_score,label\n");
    let mut window = run.windows.iter().peekable();
    for (i, ((stamp, value), score)) in run
        .series
        .timestamp_texts()
        .zip(&run.series.values)
        .zip(&run.scores)
        .enumerate()
    {
        while window.peek().is_some_and(|&&(_, last)| last < i) {
            window.next();
        }
        let label = window.peek().is_some_and(|&&(first, _)| first <= i);
        text.extend_from_slice(stamp.as_bytes());
        text.push(b',');
        decimal::push_f64(text, *value);
        text.push(b',');
        decimal::push_f64(text, *score);
        text.extend_from_slice(if label { b",1\n" } else { b",0\n" });
    }
    std::fs::write(path, &text).map_err(write_error)
}

/// Redraws the progress bar (by files read) on stderr.
fn progress(files_read: usize, files: usize, series: usize, points: usize) {
    let width = 30;
    let filled = files_read * width / files.max(1);
    eprint!(
        "\r[{}{}] {files_read}/{files} files, {series} series, {points} points",
        "#".repeat(filled),
        " ".repeat(width - filled)
    );
    let _ = std::io::stderr().flush();
}

/// Runs the whole backtest: detect, write results, score, report, plot.
pub fn run(options: &BacktestOptions) -> Result<Report, BacktestError> {
    if options.name.is_empty()
        || !options
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-')
    {
        return Err(BacktestError::BadName(options.name.clone()));
    }
    // Validate the configuration once before reading anything.
    SeriesDetector::new(options.config.clone())?;
    let files = HistoryFiles::find(&options.data)?;
    let windows = match &options.labels {
        Some(path) => {
            let windows = Windows::read(path)?;
            if let (Some(key), Some(series)) = (windows.0.keys().next(), files.names().next()) {
                if !files.names().any(|name| windows.names_file(name)) {
                    return Err(BacktestError::LabelsMatchNothing {
                        labels: path.clone(),
                        data: options.data.clone(),
                        key: key.clone(),
                        series: series.to_owned(),
                    });
                }
            }
            Some(windows)
        }
        None => None,
    };
    let show_progress = options.progress && std::io::stderr().is_terminal();
    let mut runs = Vec::new();
    let mut points = 0;
    let mut text = Vec::new();
    let mut written: HashMap<PathBuf, String> = HashMap::new();
    // One file at a time: its text, and each series' timestamp texts once its results
    // are written, are freed before the next is read, so their memory is reused.
    let read = files.read_each(|series, files_read| -> Result<(), BacktestError> {
        let path = results_path(&options.out, &options.name, &series.name);
        if let Some(first) = written.get(&path) {
            return Err(BacktestError::SameResults {
                first: first.clone(),
                second: series.name,
                path,
            });
        }
        let series_windows = windows
            .as_ref()
            .map(|w| nab::window_rows(&series.timestamps_ms, w.for_series(&series.name)))
            .unwrap_or_default();
        points += series.len();
        let mut run = detect_series(series, series_windows, &options.config, options.plots)?;
        write_results(&path, &run, &mut text)?;
        written.insert(path, run.series.name.clone());
        run.series.forget_timestamp_texts();
        runs.push(run);
        if show_progress {
            progress(files_read, files.len(), runs.len(), points);
        }
        Ok(())
    });
    if show_progress {
        eprintln!(); // off the progress bar's line, whether or not all went well
    }
    read?;
    let report = Report::build(&options.name, &runs, windows.is_some());
    let report_dir = options.out.join(&options.name);
    report.write(&report_dir.join("report.json"))?;
    if options.plots {
        plot::write_all(&report_dir.join("plots"), &runs, &report)?;
    }
    Ok(report)
}
