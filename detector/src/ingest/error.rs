//! What can go wrong reading history: each error names the file, and the line or series
//! where that helps.

use std::path::PathBuf;

use thiserror::Error;

/// Errors from reading history files.
#[derive(Debug, Error)]
pub enum IngestError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {reason}")]
    Parse {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{path}: not a Prometheus query_range response: {reason}")]
    QueryRange { path: PathBuf, reason: String },
    #[error("{path}: {malformed} lines of text exposition do not parse, the first at {first}")]
    Exposition {
        path: PathBuf,
        malformed: usize,
        first: String,
    },
    #[error("{path}: a sample of {selector} has no timestamp (a backtest needs one per sample)")]
    NoTimestamp { path: PathBuf, selector: String },
    #[error("no series found under {path}")]
    Empty { path: PathBuf },
    /// Two files' series would take one name: files that differ only in their extension
    /// (`a.csv` beside `a.txt`, both named from `a`), or a `query_range` response `q.json`
    /// (series `q/<selector>`) beside a CSV file `q/<selector>.csv`. Results would
    /// overwrite each other and labels could not tell them apart.
    #[error("{first} and {second} would both name series {name}; rename one of them")]
    SameName {
        name: String,
        first: PathBuf,
        second: PathBuf,
    },
    /// One file holds the same series twice (a selector repeated in a `query_range`
    /// response).
    #[error("{path}: series {name} appears twice")]
    Repeated { path: PathBuf, name: String },
}
