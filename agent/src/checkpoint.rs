//! The checkpoint: source positions, every metric value and the pair state, in one file
//! written atomically (temporary file, fsync, rename, fsync of the directory), so after a
//! crash at any moment the file on disk is either the old or the new consistent cut.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::pipeline::PipelineSnapshot;
use crate::source::SourceCheckpoint;

const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    /// Unix seconds when it was taken.
    pub taken_at: f64,
    pub sources: BTreeMap<String, SourceCheckpoint>,
    pub pipeline: PipelineSnapshot,
}

impl Checkpoint {
    pub fn new(
        taken_at: f64,
        sources: BTreeMap<String, SourceCheckpoint>,
        pipeline: PipelineSnapshot,
    ) -> Self {
        Self {
            version: VERSION,
            taken_at,
            sources,
            pipeline,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot write checkpoint {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read checkpoint {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("checkpoint {path} is not valid: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("checkpoint {path} has version {found}, this agent reads version {VERSION}")]
    Version { path: PathBuf, found: u32 },
}

/// Writes the checkpoint so that the file at `path` is always complete.
pub fn write(path: &Path, checkpoint: &Checkpoint) -> Result<(), CheckpointError> {
    let error = |source| CheckpointError::Write {
        path: path.to_owned(),
        source,
    };
    let bytes = serde_json::to_vec(checkpoint).map_err(|e| error(std::io::Error::other(e)))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = File::create(&temporary).map_err(error)?;
    file.write_all(&bytes).map_err(error)?;
    file.sync_all().map_err(error)?;
    drop(file);
    fs::rename(&temporary, path).map_err(error)?;
    if let Some(dir) = path.parent() {
        let dir = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        File::open(dir).and_then(|d| d.sync_all()).map_err(error)?;
    }
    Ok(())
}

/// Reads a checkpoint; `Ok(None)` when there is none yet.
pub fn read(path: &Path) -> Result<Option<Checkpoint>, CheckpointError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(CheckpointError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    #[derive(Deserialize)]
    struct Header {
        version: u32,
    }
    let corrupt = |source| CheckpointError::Corrupt {
        path: path.to_owned(),
        source,
    };
    let header: Header = serde_json::from_slice(&bytes).map_err(corrupt)?;
    if header.version != VERSION {
        return Err(CheckpointError::Version {
            path: path.to_owned(),
            found: header.version,
        });
    }
    serde_json::from_slice(&bytes).map(Some).map_err(corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::{FamilyDesc, MetricKind, Registry};
    use proptest::prelude::*;

    proptest! {
        /// Checkpointed values come back bit for bit: a sum that drifted by one ULP per
        /// restart would break "equal to one uninterrupted run".
        #[test]
        fn values_round_trip_bit_for_bit(values in proptest::collection::vec(-1e12f64..1e12, 1..50)) {
            let mut registry = Registry::new();
            let id = registry.define(FamilyDesc::new("h", "", MetricKind::Histogram).buckets(vec![0.5]), 10);
            let gauge = registry.define(FamilyDesc::new("g", "", MetricKind::Gauge), 10);
            for v in &values {
                registry.observe(id, &[] as &[&str], *v * 0.001);
                registry.inc(gauge, &[] as &[&str], *v / 3.0);
            }
            let saved = PipelineSnapshot { metrics: registry.snapshot(), pairs: BTreeMap::new(), newest_event_ns: None, last_event_ns: None, patterns: BTreeMap::new(), clocks: BTreeMap::new() };
            let json = serde_json::to_vec(&saved).unwrap();
            let back: PipelineSnapshot = serde_json::from_slice(&json).unwrap();
            prop_assert_eq!(back, saved);
        }
    }

    #[test]
    fn round_trips_and_reports_missing_and_corrupt_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.checkpoint");
        assert!(read(&path).unwrap().is_none());
        let checkpoint = Checkpoint::new(
            12.5,
            BTreeMap::from([("stdin".to_owned(), SourceCheckpoint::None)]),
            PipelineSnapshot {
                metrics: Vec::new(),
                pairs: BTreeMap::new(),
                newest_event_ns: Some(7),
                last_event_ns: Some(9),
                patterns: BTreeMap::new(),
                clocks: BTreeMap::from([("r.yaml".to_owned(), Default::default())]),
            },
        );
        write(&path, &checkpoint).unwrap();
        assert_eq!(read(&path).unwrap(), Some(checkpoint));
        assert!(!dir.path().join("agent.checkpoint.tmp").exists());
        fs::write(&path, b"{\"version\": 1, \"taken_at\": ").unwrap();
        assert!(matches!(read(&path), Err(CheckpointError::Corrupt { .. })));
        fs::write(&path, b"{\"version\": 99}").unwrap();
        assert!(matches!(
            read(&path),
            Err(CheckpointError::Version { found: 99, .. })
        ));
    }
}
