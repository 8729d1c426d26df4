//! The model state on disk: written atomically (temporary file, fsync, rename) so a crash
//! leaves the previous snapshot whole; restored at start. A snapshot that cannot be read,
//! or whose series could not all be restored (another version, models that learn
//! differently now), is moved aside and logged at WARN, never overwritten silently.

use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::{info, warn};

use crate::engine::{Restored, Snapshot};
use crate::state::{now_ms, LiveState};

/// A snapshot that could not be written.
#[derive(Debug, Error)]
#[error("cannot write snapshot {path}: {source}")]
pub struct SnapshotError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Writes the model state to `path` atomically.
pub fn save(state: &LiveState, path: &Path) -> Result<(), SnapshotError> {
    let now = now_ms();
    let json = {
        let engine = state.engine();
        serde_json::to_vec(&engine.snapshot(now)).map_err(|e| SnapshotError {
            path: path.to_owned(),
            source: e.into(),
        })?
    };
    write_atomically(path, &json).map_err(|source| SnapshotError {
        path: path.to_owned(),
        source,
    })?;
    state.engine().set_last_snapshot(now as f64 / 1000.0);
    Ok(())
}

/// Restores model state saved at `path`, if any; a missing file is a first start. What
/// cannot be restored is set aside (see the module) and returned in the report.
pub fn load(state: &LiveState, path: &Path) -> Option<Restored> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read snapshot, starting afresh");
            return None;
        }
    };
    match serde_json::from_slice::<Snapshot>(&bytes) {
        Ok(snapshot) => {
            let taken_ms = snapshot.taken_ms;
            let report = state.engine().restore(snapshot, now_ms());
            info!(path = %path.display(), series = report.series, "model state restored");
            if report.not_restored > 0 || report.other_version.is_some() {
                let aside = path.with_extension(format!("{taken_ms}.unrestored"));
                warn!(
                    path = %path.display(),
                    aside = %aside.display(),
                    restored = report.series,
                    other_settings = report.other_settings,
                    beyond_capacity = report.beyond_capacity,
                    other_version = ?report.other_version,
                    "snapshot not wholly restored: kept aside, the series not restored learn afresh"
                );
                let _ = std::fs::copy(path, aside);
            }
            Some(report)
        }
        Err(e) => {
            let aside = path.with_extension("corrupt");
            warn!(path = %path.display(), error = %e, aside = %aside.display(), "snapshot unreadable, starting afresh");
            let _ = std::fs::rename(path, aside);
            None
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DetectConfig;
    use crate::engine::{Engine, Mode, Origin};
    use omen_detector::wire::{Sample, ValueKind};

    fn state(config: &str) -> LiveState {
        let config = DetectConfig::parse(config, Path::new("test.yaml")).unwrap();
        LiveState::new(Engine::new(config), Vec::new())
    }

    #[test]
    fn a_snapshot_not_wholly_restored_is_kept_aside_and_one_unreadable_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("detector.json");
        let before = state("");
        let samples = (0..10)
            .map(|i| Sample {
                name: "queue_depth".to_owned(),
                labels: vec![],
                value: f64::from(i),
                timestamp_ms: Some(i64::from(i) * 1000),
                kind: ValueKind::Gauge,
            })
            .collect();
        before.ingest(Origin::Scrape, samples, 10_000, Mode::Live);
        save(&before, &path).unwrap();

        let same = load(&state("detector: { alarm_level: 0.7 }"), &path).unwrap();
        assert_eq!((same.series, same.not_restored), (1, 0));
        let aside = |dir: &Path| -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != "detector.json")
                .collect();
            names.sort();
            names
        };
        assert!(aside(dir.path()).is_empty());

        let other = load(&state("detector: { forest: { window: 64 } }"), &path).unwrap();
        assert_eq!((other.series, other.other_settings), (0, 1));
        let kept = aside(dir.path());
        assert_eq!(kept.len(), 1, "{kept:?}");
        assert!(kept[0].ends_with(".unrestored"), "{kept:?}");
        assert!(
            path.exists(),
            "the snapshot itself stays until the next one is written"
        );

        std::fs::write(&path, b"{ not json").unwrap();
        assert!(load(&state(""), &path).is_none());
        assert!(dir.path().join("detector.corrupt").exists());
        assert!(!path.exists());
    }
}
