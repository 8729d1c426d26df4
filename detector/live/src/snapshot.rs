//! The model state on disk: written atomically (temporary file, fsync, rename) so a crash
//! leaves the previous snapshot whole; restored at start, an unreadable file set aside.

use std::path::{Path, PathBuf};

use thiserror::Error;
use tracing::{info, warn};

use crate::engine::Snapshot;
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

/// Restores model state saved at `path`, if any; a missing file is a first start, an
/// unreadable one is logged and set aside.
pub fn load(state: &LiveState, path: &Path) {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read snapshot, starting afresh");
            return;
        }
    };
    match serde_json::from_slice::<Snapshot>(&bytes) {
        Ok(snapshot) => {
            let restored = state.engine().restore(snapshot, now_ms());
            info!(path = %path.display(), series = restored, "model state restored");
        }
        Err(e) => {
            let aside = path.with_extension("corrupt");
            warn!(path = %path.display(), error = %e, aside = %aside.display(), "snapshot unreadable, starting afresh");
            let _ = std::fs::rename(path, aside);
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
