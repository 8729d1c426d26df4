//! Where a source is, as saved in the agent's checkpoint: per file its identity (device,
//! inode) and offset, per Kafka partition the next offset to read.
//!
//! A position is always just after the last record handed to the pipeline, so resuming
//! from it neither loses nor repeats a record. The serialised shape is the checkpoint
//! file's: changing it breaks resuming from older checkpoints.

use serde::{Deserialize, Serialize};

/// A source's position, as stored in the agent's checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SourceCheckpoint {
    Files { files: Vec<FilePosition> },
    Kafka { partitions: Vec<KafkaPosition> },
    None,
}

/// A file's saved position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

/// A partition's next offset to read, as saved in the checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KafkaPosition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}
