//! What can stop a backtest: bad input (files, labels, configuration) or a failed write.

use std::path::PathBuf;

use thiserror::Error;

use super::nab::LabelsError;
use crate::ingest::IngestError;
use crate::model::detector::DetectorError;

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
    #[error("plots asked for, but this build has no plots (the `plots` feature)")]
    NoPlots,
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
