//! What every source promises ([`Source`]) and what it hands records to
//! ([`RecordSink`], implemented by the pipeline).
//!
//! A source hands out complete records only, in stream order, and reports as its
//! checkpoint the position just after the last one; the worker polls sources and takes
//! checkpoints between polls, so positions and metric values always agree.

use super::framer::Framing;
use super::position::SourceCheckpoint;
use super::prepare::Preparer;
use crate::parse::ParsedBatch;

/// Index of a stream (one file, stdin, a partition) in the pipeline's self-metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StreamId(pub usize);

/// Where records go.
pub trait RecordSink {
    /// Registers a stream by name (idempotent) for per-stream self-metrics.
    fn stream(&mut self, name: &str) -> StreamId;
    /// One complete record; `truncated` when it was cut at the line-length limit.
    fn record(&mut self, stream: StreamId, record: &[u8], truncated: bool);
    /// Records already framed and parsed (off the pipeline thread), in stream order.
    fn parsed_batch(&mut self, stream: StreamId, batch: &ParsedBatch);
    /// Raw bytes read from a stream (counted whether or not they formed records yet).
    fn bytes_read(&mut self, stream: StreamId, bytes: u64);
    /// A stream event worth counting (rotation, truncation, read error).
    fn event(&mut self, stream: StreamId, what: SourceEvent);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceEvent {
    Rotated,
    Truncated,
    /// A truncated file whose unread rest was found nowhere (no copy beside it).
    Lost,
    ReadError,
}

impl SourceEvent {
    pub fn name(self) -> &'static str {
        match self {
            SourceEvent::Rotated => "rotated",
            SourceEvent::Truncated => "truncated",
            SourceEvent::Lost => "lost",
            SourceEvent::ReadError => "read_error",
        }
    }
}

pub trait Source: Send {
    fn name(&self) -> &str;
    /// Reads ahead what the next [`Source::poll`] hands out, without the pipeline: the
    /// worker calls it before taking the pipeline lock, so a source that may wait on the
    /// network here (a Kafka rebalance) does not hold up `/metrics`. The default does
    /// nothing.
    fn prefetch(&mut self) {}
    /// Reads what is available now (bounded), handing complete records to `sink`.
    /// Returns the number of bytes read; 0 means nothing new.
    fn poll(&mut self, sink: &mut dyn RecordSink) -> u64;
    /// Like `poll`, but may read, frame, parse and match on up to `threads` threads,
    /// handing the results to `sink` in stream order. The default polls.
    fn poll_parallel(
        &mut self,
        sink: &mut dyn RecordSink,
        preparer: &Preparer,
        threads: usize,
    ) -> u64 {
        let _ = (preparer, threads);
        self.poll(sink)
    }
    /// Hands out records held back waiting for more input (an incomplete multi-line
    /// record, or at end of input a last line without newline).
    fn flush(&mut self, sink: &mut dyn RecordSink, end_of_input: bool);
    /// True once the source can produce nothing more (stdin closed; never for tailing).
    fn finished(&self) -> bool;
    /// The files a file source tails now; `None` for other kinds.
    fn files(&self) -> Option<usize> {
        None
    }
    /// Whether input arrives by itself (a pipe) rather than being read when polled.
    fn is_stdin(&self) -> bool {
        false
    }
    fn checkpoint(&self) -> SourceCheckpoint;
    /// Resumes from a checkpoint taken by a source of the same name.
    fn restore(&mut self, checkpoint: SourceCheckpoint);
    /// Whether what the last poll handed out must be checkpointed before this source
    /// reads again (Kafka: a rebalance, served while reading, may move its partitions to
    /// another agent). The worker then checkpoints right after the poll.
    fn needs_checkpoint(&self) -> bool {
        false
    }
    /// The checkpoint holding `position` (what [`Source::checkpoint`] returned) is durable;
    /// without a checkpoint file, the records up to it are applied. Kafka commits here.
    fn checkpoint_written(&mut self, position: &SourceCheckpoint) {
        let _ = position;
    }
    /// Applies new framing rules (after a reload) to records not yet assembled.
    fn set_framing(&mut self, framing: &Framing);
}
