//! File tailing: glob patterns re-scanned so files that appear later are picked up;
//! rotation by rename + create (the old file is read to its end, then the new one from
//! its start) and by copytruncate (a file shorter than our position is read again from
//! 0); positions saved per file identity (device, inode).
//!
//! Files found at the first scan start at their beginning or end (`start_at`); files that
//! appear later always start at their beginning, since every line in them is new. After a
//! restart, a file whose saved inode now lives under another name in the same directory
//! (rotated while the agent was down) is first read from the saved offset to its end.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::{Framer, Framing, RecordSink, Source, SourceCheckpoint, SourceEvent, StreamId};
use crate::parse::{ParsedBatch, Scratch};
use crate::rule::Preparer;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    #[default]
    Beginning,
    End,
}

#[derive(Debug, Clone)]
pub struct FileSourceConfig {
    pub name: String,
    pub paths: Vec<String>,
    pub start_at: StartAt,
    /// How often globs are expanded again and files checked for rotation.
    pub rescan_interval: Duration,
    /// Bytes read from one file per poll, so one busy file cannot starve the others.
    pub read_budget: usize,
}

impl FileSourceConfig {
    pub fn new(name: impl Into<String>, paths: Vec<String>) -> Self {
        Self {
            name: name.into(),
            paths,
            start_at: StartAt::Beginning,
            rescan_interval: Duration::from_millis(500),
            read_budget: 1 << 20,
        }
    }
}

/// A file's saved position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilePosition {
    pub path: String,
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

#[derive(Debug)]
struct Tailed {
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    framer: Framer,
    stream: StreamId,
    idle_polls: u32,
}

pub struct FileSource {
    config: FileSourceConfig,
    framing: Framing,
    files: BTreeMap<PathBuf, Tailed>,
    /// Rotated files being read to their end.
    draining: Vec<Tailed>,
    restored: Vec<FilePosition>,
    /// Batches reused from poll to poll by the parallel readers (their buffers stay
    /// allocated).
    batch_pool: Vec<ParsedBatch>,
    scanned_once: bool,
    last_scan: Option<Instant>,
    buffer: Vec<u8>,
}

impl FileSource {
    pub fn new(config: FileSourceConfig, framing: Framing) -> Self {
        Self {
            config,
            framing,
            files: BTreeMap::new(),
            draining: Vec::new(),
            restored: Vec::new(),
            batch_pool: Vec::new(),
            scanned_once: false,
            last_scan: None,
            buffer: vec![0; 256 * 1024],
        }
    }

    fn scan(&mut self, sink: &mut dyn RecordSink) {
        let mut found = Vec::new();
        for pattern in &self.config.paths {
            match glob::glob(pattern) {
                Ok(paths) => found.extend(paths.flatten().filter(|p| p.is_file())),
                Err(error) => warn!(%pattern, %error, "invalid glob"),
            }
        }
        for path in found {
            if !self.files.contains_key(&path) {
                self.open(path, sink);
            }
        }
        if !self.scanned_once {
            self.scanned_once = true;
            for position in std::mem::take(&mut self.restored) {
                // Saved files whose inode moved: rotated while we were down.
                self.drain_moved(position, sink);
            }
        }
    }

    fn open(&mut self, path: PathBuf, sink: &mut dyn RecordSink) {
        let (file, meta) = match File::open(&path).and_then(|f| f.metadata().map(|m| (f, m))) {
            Ok(opened) => opened,
            Err(error) => {
                if error.kind() != ErrorKind::NotFound {
                    warn!(path = %path.display(), %error, "cannot open file");
                }
                return;
            }
        };
        let (dev, ino, len) = (meta.dev(), meta.ino(), meta.len());
        let path_text = path.to_string_lossy().into_owned();
        let saved = self
            .restored
            .iter()
            .position(|p| p.path == path_text && p.dev == dev && p.ino == ino)
            .map(|i| self.restored.remove(i));
        let offset = match saved {
            Some(p) if p.offset <= len => p.offset,
            Some(_) => 0, // truncated while we were down
            None if !self.scanned_once && self.config.start_at == StartAt::End => len,
            None => 0,
        };
        if let Some(tailed) = self.tailed(path, file, dev, ino, offset, sink) {
            info!(path = %tailed.path.display(), offset, "tailing file");
            self.files.insert(tailed.path.clone(), tailed);
        }
    }

    fn tailed(
        &self,
        path: PathBuf,
        mut file: File,
        dev: u64,
        ino: u64,
        offset: u64,
        sink: &mut dyn RecordSink,
    ) -> Option<Tailed> {
        if let Err(error) = file.seek(SeekFrom::Start(offset)) {
            warn!(path = %path.display(), %error, "cannot seek");
            return None;
        }
        let stream = sink.stream(&path.to_string_lossy());
        Some(Tailed {
            path,
            file,
            dev,
            ino,
            framer: Framer::new(self.framing.clone(), offset),
            stream,
            idle_polls: 0,
        })
    }

    fn drain_moved(&mut self, position: FilePosition, sink: &mut dyn RecordSink) {
        let path = Path::new(&position.path);
        let Some(dir) = path.parent() else { return };
        let Ok(entries) = fs::read_dir(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        }) else {
            return;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.dev() == position.dev
                && meta.ino() == position.ino
                && meta.len() >= position.offset
            {
                let Ok(file) = File::open(entry.path()) else {
                    return;
                };
                info!(path = %entry.path().display(), offset = position.offset, "reading rotated file to its end");
                if let Some(tailed) = self.tailed(
                    path.to_owned(),
                    file,
                    position.dev,
                    position.ino,
                    position.offset,
                    sink,
                ) {
                    self.draining.push(tailed);
                }
                return;
            }
        }
    }

    /// Reads a file up to the budget, framing what it reads into records for `emit`.
    fn read(
        tailed: &mut Tailed,
        buffer: &mut [u8],
        budget: usize,
        emit: &mut dyn FnMut(&[u8], bool),
    ) -> ReadOutcome {
        let mut outcome = ReadOutcome::default();
        loop {
            match tailed.file.read(buffer) {
                Ok(0) => {
                    outcome.at_end = true;
                    return outcome;
                }
                Ok(n) => {
                    outcome.bytes += n as u64;
                    tailed.framer.feed(&buffer[..n], emit);
                    if outcome.bytes as usize >= budget {
                        return outcome;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    warn!(path = %tailed.path.display(), %error, "read failed");
                    outcome.at_end = true;
                    outcome.failed = true;
                    return outcome;
                }
            }
        }
    }

    /// Reads a file straight into the sink (on the pipeline thread).
    fn read_to_sink(
        tailed: &mut Tailed,
        buffer: &mut [u8],
        budget: usize,
        sink: &mut dyn RecordSink,
    ) -> ReadOutcome {
        let stream = tailed.stream;
        let outcome = Self::read(tailed, buffer, budget, &mut |record, truncated| {
            sink.record(stream, record, truncated)
        });
        sink.bytes_read(stream, outcome.bytes);
        if outcome.failed {
            sink.event(stream, SourceEvent::ReadError);
        }
        outcome
    }

    /// Reads the tailed files on up to `threads` threads, each framing and parsing its
    /// share of the files; this thread hands each file's batch to the sink, in file order,
    /// as soon as it is ready, so applying rules overlaps with parsing the next files.
    fn read_parallel(
        &mut self,
        sink: &mut dyn RecordSink,
        preparer: &Preparer,
        threads: usize,
    ) -> Vec<ReadOutcome> {
        // The same budget as on one thread: records of different files then interleave
        // the same way whatever the number of threads, so results do not depend on it.
        let budget = self.config.read_budget;
        let streams: Vec<StreamId> = self.files.values().map(|t| t.stream).collect();
        let count = streams.len();
        let mut files: Vec<(usize, &mut Tailed)> = self.files.values_mut().enumerate().collect();
        let workers = threads.clamp(1, count.max(1));
        let mut outcomes = vec![ReadOutcome::default(); count];
        std::thread::scope(|scope| {
            let (sender, receiver) =
                std::sync::mpsc::channel::<(usize, ReadOutcome, ParsedBatch)>();
            // Files are dealt round-robin, so the first files in order finish first.
            let mut shares: Vec<Vec<(usize, &mut Tailed, ParsedBatch)>> =
                (0..workers).map(|_| Vec::new()).collect();
            for (position, (index, tailed)) in files.drain(..).enumerate() {
                let batch = self.batch_pool.pop().unwrap_or_default();
                shares[position % workers].push((index, tailed, batch));
            }
            for share in shares {
                let sender = sender.clone();
                let preparer = preparer.clone();
                scope.spawn(move || {
                    let mut scratch = Scratch::default();
                    let mut buffer = vec![0u8; 256 * 1024];
                    for (index, tailed, mut batch) in share {
                        batch.clear();
                        let outcome =
                            Self::read(tailed, &mut buffer, budget, &mut |record, truncated| {
                                preparer.push(&mut batch, &mut scratch, record, truncated)
                            });
                        if sender.send((index, outcome, batch)).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(sender);
            let mut waiting: BTreeMap<usize, (ReadOutcome, ParsedBatch)> = BTreeMap::new();
            let mut next = 0;
            for (index, outcome, batch) in receiver {
                waiting.insert(index, (outcome, batch));
                while let Some((outcome, batch)) = waiting.remove(&next) {
                    let stream = streams[next];
                    sink.bytes_read(stream, outcome.bytes);
                    sink.parsed_batch(stream, &batch);
                    if outcome.failed {
                        sink.event(stream, SourceEvent::ReadError);
                    }
                    outcomes[next] = outcome;
                    self.batch_pool.push(batch);
                    next += 1;
                }
            }
            if next < count {
                // Only a panicking reader thread (a bug) leaves files unreported.
                warn!(missing = count - next, "file reader threads stopped early");
            }
        });
        outcomes
    }

    /// Detects rotation (a new file at the path) and truncation of one tailed file.
    fn check_rotation(&mut self, path: &Path, sink: &mut dyn RecordSink) {
        let Ok(meta) = fs::metadata(path) else { return };
        let Some(tailed) = self.files.get_mut(path) else {
            return;
        };
        if meta.dev() != tailed.dev || meta.ino() != tailed.ino {
            // Renamed away and replaced: finish the old file, then start the new one.
            let Some(mut old) = self.files.remove(path) else {
                return;
            };
            Self::read_to_sink(&mut old, &mut self.buffer, usize::MAX, sink);
            let stream = old.stream;
            old.framer.flush(true, &mut |record, truncated| {
                sink.record(stream, record, truncated)
            });
            sink.event(stream, SourceEvent::Rotated);
            info!(path = %path.display(), "file rotated");
            if let Ok(file) = File::open(path) {
                if let Some(tailed) =
                    self.tailed(path.to_owned(), file, meta.dev(), meta.ino(), 0, sink)
                {
                    self.files.insert(path.to_owned(), tailed);
                }
            }
        } else if meta.len() < tailed.framer.position() {
            info!(path = %path.display(), "file truncated, reading from its start");
            sink.event(tailed.stream, SourceEvent::Truncated);
            if tailed.file.seek(SeekFrom::Start(0)).is_ok() {
                tailed.framer = Framer::new(self.framing.clone(), 0);
            }
        }
    }
}

/// What one read of one file did.
#[derive(Debug, Default, Clone, Copy)]
struct ReadOutcome {
    bytes: u64,
    at_end: bool,
    failed: bool,
}

impl FileSource {
    /// One poll: rescan, finish rotated files, read every file (in parallel when asked and
    /// there are several), then flush quiet multi-line records and check for rotation.
    /// Rotation is checked only after this poll's records are handed out, so a rotated
    /// file's records always come in order.
    fn poll_with(
        &mut self,
        sink: &mut dyn RecordSink,
        parallel: Option<(&Preparer, usize)>,
    ) -> u64 {
        let rescan = self
            .last_scan
            .is_none_or(|t| t.elapsed() >= self.config.rescan_interval);
        if rescan {
            self.last_scan = Some(Instant::now());
            self.scan(sink);
        }
        let mut total = 0;
        let budget = self.config.read_budget;
        let mut finished_drains = Vec::new();
        for (index, tailed) in self.draining.iter_mut().enumerate() {
            let outcome = Self::read_to_sink(tailed, &mut self.buffer, budget, sink);
            total += outcome.bytes;
            if outcome.at_end {
                let stream = tailed.stream;
                tailed
                    .framer
                    .flush(true, &mut |r, t| sink.record(stream, r, t));
                finished_drains.push(index);
            }
        }
        for index in finished_drains.into_iter().rev() {
            self.draining.remove(index);
        }
        let outcomes = match parallel {
            Some((preparer, threads)) if threads > 1 && self.files.len() > 1 => {
                self.read_parallel(sink, preparer, threads)
            }
            _ => {
                let buffer = &mut self.buffer;
                self.files
                    .values_mut()
                    .map(|tailed| Self::read_to_sink(tailed, buffer, budget, sink))
                    .collect()
            }
        };
        let mut idle = Vec::new();
        for ((path, tailed), outcome) in self.files.iter_mut().zip(outcomes) {
            total += outcome.bytes;
            if outcome.bytes == 0 {
                tailed.idle_polls = tailed.idle_polls.saturating_add(1);
                if tailed.idle_polls == 2 {
                    // Input went quiet: a held multi-line record is complete.
                    let stream = tailed.stream;
                    tailed
                        .framer
                        .flush(false, &mut |r, t| sink.record(stream, r, t));
                }
            } else {
                tailed.idle_polls = 0;
            }
            if outcome.at_end && (rescan || outcome.bytes == 0) {
                idle.push(path.clone());
            }
        }
        for path in idle {
            self.check_rotation(&path, sink);
        }
        total
    }
}

impl Source for FileSource {
    fn name(&self) -> &str {
        &self.config.name
    }

    fn poll(&mut self, sink: &mut dyn RecordSink) -> u64 {
        self.poll_with(sink, None)
    }

    fn poll_parallel(
        &mut self,
        sink: &mut dyn RecordSink,
        preparer: &Preparer,
        threads: usize,
    ) -> u64 {
        self.poll_with(sink, Some((preparer, threads)))
    }

    fn flush(&mut self, sink: &mut dyn RecordSink, end_of_input: bool) {
        for tailed in self.draining.iter_mut().chain(self.files.values_mut()) {
            let stream = tailed.stream;
            tailed
                .framer
                .flush(end_of_input, &mut |r, t| sink.record(stream, r, t));
        }
    }

    fn finished(&self) -> bool {
        false
    }

    fn checkpoint(&self) -> SourceCheckpoint {
        let files = self
            .draining
            .iter()
            .chain(self.files.values())
            .map(|t| FilePosition {
                path: t.path.to_string_lossy().into_owned(),
                dev: t.dev,
                ino: t.ino,
                offset: t.framer.committed(),
            })
            .chain(self.restored.iter().cloned())
            .collect();
        SourceCheckpoint::Files { files }
    }

    fn restore(&mut self, checkpoint: SourceCheckpoint) {
        if let SourceCheckpoint::Files { files } = checkpoint {
            self.restored = files;
        }
    }

    fn set_framing(&mut self, framing: &Framing) {
        self.framing = framing.clone();
        for tailed in self.draining.iter_mut().chain(self.files.values_mut()) {
            tailed.framer.set_framing(framing.clone());
        }
    }
}
