//! `omen backtest`: replays history through the live detection path and scores it.
//!
//! Every series is fed point by point to its own [`SeriesDetector`], exactly as the live
//! detector does, with one set of defaults and no look at labels or file names. The
//! outputs are NAB's results files, a JSON report scored by our own NAB scorer (three
//! profiles, event-level precision and recall, lead times against a static-threshold
//! rule), per-series plots and an index page.

pub mod crossval;
mod decimal;
mod error;
pub mod nab;
#[cfg(feature = "plots")]
pub mod plot;
mod replay;
pub mod report;

use std::collections::HashMap;
use std::io::{IsTerminal, Write as _};
use std::path::{Path, PathBuf};

use crate::ingest::HistoryFiles;
use crate::model::{SeriesDetector, SeriesDetectorConfig};

pub use self::error::BacktestError;
use self::nab::Windows;
pub use self::replay::{detect_series, SeriesRun};
pub use self::report::Report;

/// What to replay and where to write.
#[derive(Debug, Clone)]
pub struct BacktestOptions {
    pub data: PathBuf,
    pub labels: Option<PathBuf>,
    pub out: PathBuf,
    pub name: String,
    pub config: SeriesDetectorConfig,
    pub plots: bool,
    /// Show a progress bar on stderr (when it is a terminal).
    pub progress: bool,
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
    if options.plots && !cfg!(feature = "plots") {
        return Err(BacktestError::NoPlots);
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
    #[cfg(feature = "plots")]
    if options.plots {
        let marks = plot::Marks {
            threshold: options.config.alarm_level,
            warmup_rows: options.config.warmup_points,
        };
        plot::write_all(&report_dir, &runs, &report, marks)?;
    }
    Ok(report)
}
