//! Sources: where records come from (files, stdin, Kafka consumer groups).
//!
//! A source hands complete records to a [`RecordSink`] and reports, as a serialisable
//! checkpoint, the position just after the last record it handed out. The pipeline takes
//! checkpoints only between polls, so positions and metric state always agree: after a
//! crash, replaying from the checkpoint neither loses nor repeats a record. Framing
//! (bytes → records) is built here from the rules file's parser and limits sections.

mod file;
mod fingerprint;
mod framer;
mod kafka;
mod position;
mod prepare;
mod stdin;
mod traits;

pub use file::{FileSource, FileSourceConfig, StartAt};
pub use fingerprint::Fingerprint;
pub use framer::{Framer, Framing};
pub use kafka::{KafkaSource, KafkaSourceConfig, KafkaSourceError, KafkaStartAt};
pub use position::{FilePosition, KafkaPosition, SourceCheckpoint};
pub use prepare::Preparer;
pub use stdin::StdinSource;
pub use traits::{RecordSink, Source, SourceEvent, StreamId};
