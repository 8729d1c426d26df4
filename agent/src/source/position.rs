//! Where a source is, as saved in the agent's checkpoint: per file its identity (device,
//! inode, and the fingerprint of its first bytes) and offset, per Kafka partition the next
//! offset to read.
//!
//! A position is always just after the last record handed to the pipeline, so resuming
//! from it neither loses nor repeats a record. The serialised shape is the checkpoint
//! file's: changing it breaks resuming from older checkpoints.

use serde::{Deserialize, Serialize};

use super::fingerprint::Fingerprint;

/// A source's position, as stored in the agent's checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceCheckpoint {
    Files {
        files: Vec<FilePosition>,
        /// Per name, when the file last rotated or copied away from it was last written
        /// (ms since the epoch): files rotated beside it since, and not among `files`, were
        /// never seen. Missing from older checkpoints: the files' own times stand in.
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        rotated: std::collections::BTreeMap<String, i64>,
    },
    Kafka {
        partitions: Vec<KafkaPosition>,
    },
    None,
}

/// A file's saved position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
    /// Of the content read (missing from checkpoints written before fingerprints: the
    /// identity alone decides then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// When the file was last written, as of the checkpoint (ms since the epoch): files
    /// rotated beside it later hold lines written after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modified_ms: Option<i64>,
}

/// A partition's next offset to read, as saved in the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}
