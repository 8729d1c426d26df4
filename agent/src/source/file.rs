//! File tailing: glob patterns re-scanned so files that appear later are picked up;
//! rotation by rename + create and by copytruncate; positions saved per file identity
//! (device, inode), whatever the file's name.
//!
//! A file is read under one name at a time. When its path comes to hold another file
//! (or none), the old one is drained: read to its end and kept open until idle a few
//! polls, for writers that reopen late; the new file waits until the old one was read
//! to its end. A finished file's identity and offset are remembered, so a glob matching
//! its rotated name resumes there. A file shorter than our position was truncated
//! (copytruncate) and is read again from 0; globs should not match copytruncate's copies.
//!
//! Files found at the first scan start at their beginning or end (`start_at`), unless
//! resuming from a checkpoint; files that appear later start at their beginning. After a
//! restart, a saved file whose inode now lives under a name no glob matches (rotated
//! while the agent was down) is drained from its saved offset.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::framer::{Framer, Framing};
use super::position::{FilePosition, SourceCheckpoint};
use super::prepare::Preparer;
use super::traits::{RecordSink, Source, SourceEvent, StreamId};
use crate::parse::{ParsedBatch, Scratch};

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

#[derive(Debug)]
struct Tailed {
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    framer: Framer,
    stream: StreamId,
    idle_polls: u32,
    /// For a rotated file being drained: read to its end at least once since.
    reached_end: bool,
}

/// Polls a rotated file stays open after its last new byte, for writers that reopen
/// their log late.
const DRAIN_IDLE_POLLS: u32 = 8;

/// Identities of finished files remembered, so a rotated file found again under a name
/// the glob matches resumes where it was instead of being read again.
const RETIRED_LIMIT: usize = 1024;

pub struct FileSource {
    config: FileSourceConfig,
    framing: Framing,
    files: BTreeMap<PathBuf, Tailed>,
    /// Rotated or deleted files still being read (until idle for DRAIN_IDLE_POLLS).
    draining: Vec<Tailed>,
    /// Files finished with, by identity, with the offset they were read to.
    retired: VecDeque<FilePosition>,
    restored: Vec<FilePosition>,
    /// Resumed from a checkpoint: `start_at: end` no longer applies.
    had_checkpoint: bool,
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
            retired: VecDeque::new(),
            restored: Vec::new(),
            had_checkpoint: false,
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
        let same = |t: &Tailed| t.dev == dev && t.ino == ino;
        if self.files.values().any(same) || self.draining.iter().any(same) {
            // Already read under another name (a rotation in progress).
            return;
        }
        // Files are known by identity, whatever their name now.
        let known = |p: &FilePosition| p.dev == dev && p.ino == ino;
        let saved = match self.restored.iter().position(known) {
            Some(i) => Some(self.restored.remove(i)),
            None => self
                .retired
                .iter()
                .position(known)
                .and_then(|i| self.retired.remove(i)),
        };
        let fresh_start = !self.scanned_once && !self.had_checkpoint;
        let offset = match saved {
            Some(p) if p.offset <= len => p.offset,
            Some(_) => 0, // truncated while we were away
            None if fresh_start && self.config.start_at == StartAt::End => len,
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
            reached_end: false,
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
        blocked: &HashSet<PathBuf>,
    ) -> Vec<Option<ReadOutcome>> {
        // The same budget as on one thread: records of different files then interleave
        // the same way whatever the number of threads, so results do not depend on it.
        let budget = self.config.read_budget;
        let mut outcomes = vec![None; self.files.len()];
        // Positions (in `self.files` order) of the files read this poll.
        let mut files: Vec<(usize, &mut Tailed)> = self
            .files
            .iter_mut()
            .enumerate()
            .filter(|(_, (path, _))| !blocked.contains(*path))
            .map(|(position, (_, tailed))| (position, tailed))
            .collect();
        let streams: Vec<(usize, StreamId)> = files.iter().map(|(p, t)| (*p, t.stream)).collect();
        let count = streams.len();
        let workers = threads.clamp(1, count.max(1));
        std::thread::scope(|scope| {
            let (sender, receiver) =
                std::sync::mpsc::channel::<(usize, ReadOutcome, ParsedBatch)>();
            // Files are dealt round-robin, so the first files in order finish first.
            let mut shares: Vec<Vec<(usize, &mut Tailed, ParsedBatch)>> =
                (0..workers).map(|_| Vec::new()).collect();
            for (order, (_, tailed)) in files.drain(..).enumerate() {
                let batch = self.batch_pool.pop().unwrap_or_default();
                shares[order % workers].push((order, tailed, batch));
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
                    let (position, stream) = streams[next];
                    sink.bytes_read(stream, outcome.bytes);
                    sink.parsed_batch(stream, &batch);
                    if outcome.failed {
                        sink.event(stream, SourceEvent::ReadError);
                    }
                    outcomes[position] = Some(outcome);
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

    /// Detects rotation (a new file at the path, or none) and truncation of one tailed
    /// file. A rotated or deleted file moves to `draining`; a new file at the path is
    /// opened, and read once the old one has been read to its end.
    fn check_rotation(&mut self, path: &Path, sink: &mut dyn RecordSink) {
        let meta = match fs::metadata(path) {
            Ok(meta) => Some(meta),
            Err(error) if error.kind() == ErrorKind::NotFound => None,
            Err(_) => return,
        };
        let Some(tailed) = self.files.get_mut(path) else {
            return;
        };
        let replaced = meta
            .as_ref()
            .is_none_or(|m| m.dev() != tailed.dev || m.ino() != tailed.ino);
        if replaced {
            let Some(mut old) = self.files.remove(path) else {
                return;
            };
            sink.event(old.stream, SourceEvent::Rotated);
            info!(path = %path.display(), "file rotated or removed, reading it to its end");
            old.idle_polls = 0;
            old.reached_end = false;
            self.draining.push(old);
            if meta.is_some() {
                self.open(path.to_owned(), sink);
            }
        } else if meta.is_some_and(|m| m.len() < tailed.framer.position()) {
            info!(path = %path.display(), "file truncated, reading from its start");
            sink.event(tailed.stream, SourceEvent::Truncated);
            let stream = tailed.stream;
            // A complete record held before the truncation still counts.
            tailed.framer.flush(false, &mut |record, truncated| {
                sink.record(stream, record, truncated)
            });
            if tailed.file.seek(SeekFrom::Start(0)).is_ok() {
                tailed.framer = Framer::new(self.framing.clone(), 0);
            }
        }
    }

    /// Reads the files being drained; retires those idle long enough.
    fn poll_draining(&mut self, sink: &mut dyn RecordSink) -> u64 {
        let budget = self.config.read_budget;
        let mut total = 0;
        for tailed in &mut self.draining {
            let outcome = Self::read_to_sink(tailed, &mut self.buffer, budget, sink);
            total += outcome.bytes;
            if outcome.at_end {
                tailed.reached_end = true;
            }
            if outcome.bytes == 0 {
                tailed.idle_polls = tailed.idle_polls.saturating_add(1);
            } else {
                tailed.idle_polls = 0;
            }
        }
        let mut index = 0;
        while index < self.draining.len() {
            let done = {
                let t = &self.draining[index];
                t.reached_end && t.idle_polls >= DRAIN_IDLE_POLLS
            };
            if !done {
                index += 1;
                continue;
            }
            let mut finished = self.draining.remove(index);
            let stream = finished.stream;
            finished.framer.flush(true, &mut |record, truncated| {
                sink.record(stream, record, truncated)
            });
            if self.retired.len() >= RETIRED_LIMIT {
                self.retired.pop_front();
            }
            self.retired.push_back(position(&finished));
        }
        total
    }
}

fn position(tailed: &Tailed) -> FilePosition {
    FilePosition {
        path: tailed.path.to_string_lossy().into_owned(),
        dev: tailed.dev,
        ino: tailed.ino,
        offset: tailed.framer.committed(),
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
        let mut total = self.poll_draining(sink);
        let budget = self.config.read_budget;
        // A new file at a rotated file's path waits until the old one was read to its end.
        let blocked: HashSet<PathBuf> = self
            .draining
            .iter()
            .filter(|t| !t.reached_end)
            .map(|t| t.path.clone())
            .collect();
        let outcomes: Vec<Option<ReadOutcome>> = match parallel {
            Some((preparer, threads)) if threads > 1 && self.files.len() > 1 => {
                self.read_parallel(sink, preparer, threads, &blocked)
            }
            _ => {
                let buffer = &mut self.buffer;
                self.files
                    .iter_mut()
                    .map(|(path, tailed)| {
                        (!blocked.contains(path))
                            .then(|| Self::read_to_sink(tailed, buffer, budget, sink))
                    })
                    .collect()
            }
        };
        let mut idle = Vec::new();
        for ((path, tailed), outcome) in self.files.iter_mut().zip(outcomes) {
            let Some(outcome) = outcome else { continue };
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
            .map(position)
            .chain(self.retired.iter().cloned())
            .chain(self.restored.iter().cloned())
            .collect();
        SourceCheckpoint::Files { files }
    }

    fn restore(&mut self, checkpoint: SourceCheckpoint) {
        if let SourceCheckpoint::Files { files } = checkpoint {
            self.restored = files;
            self.had_checkpoint = true;
        }
    }

    fn set_framing(&mut self, framing: &Framing) {
        self.framing = framing.clone();
        for tailed in self.draining.iter_mut().chain(self.files.values_mut()) {
            tailed.framer.set_framing(framing.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::RulesConfig;
    use crate::pipeline::Pipeline;
    use crate::registry::Value;

    const RULES: &str = "rules:\n  - { name: x_total, type: counter, match: { msg: x } }\n";

    fn pipeline() -> Pipeline {
        let config = RulesConfig::from_yaml(RULES, Path::new("r.yaml")).unwrap();
        Pipeline::new(&config, Path::new("r.yaml"), Arc::new(ManualClock::new(1))).unwrap()
    }

    fn count(p: &Pipeline) -> f64 {
        match p.registry.get("x_total", &[] as &[(&str, &str)]) {
            Some(Value::Scalar(v)) => *v,
            _ => -1.0,
        }
    }

    fn source(glob: String, start_at: StartAt, framing: Framing) -> FileSource {
        let mut config = FileSourceConfig::new("f", vec![glob]);
        config.rescan_interval = Duration::ZERO;
        config.start_at = start_at;
        FileSource::new(config, framing)
    }

    fn polls(s: &mut FileSource, p: &mut Pipeline, n: usize) {
        for _ in 0..n {
            p.begin_batch();
            s.poll(p);
            p.end_batch();
        }
    }

    fn append(path: &Path, text: &str) {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }

    fn multiline() -> Framing {
        let c = RulesConfig::from_yaml(
            "parser: { multiline: { continuation: '^ ' } }\nrules: []\n",
            Path::new("r"),
        )
        .unwrap();
        Framing::build(&c.parser, &c.limits).unwrap()
    }

    /// A directory with `app.log` holding `first`, tailed by a glob under it.
    struct Fixture {
        dir: tempfile::TempDir,
        app: PathBuf,
        pipeline: Pipeline,
        source: FileSource,
    }

    fn fixture(first: &str, glob: &str, start_at: StartAt, framing: Framing) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("app.log");
        append(&app, first);
        let source = source(
            format!("{}/{glob}", dir.path().display()),
            start_at,
            framing,
        );
        Fixture {
            dir,
            app,
            pipeline: pipeline(),
            source,
        }
    }

    #[test]
    fn a_rotated_name_the_glob_also_matches_is_not_read_twice() {
        let Fixture {
            dir,
            app,
            pipeline: mut p,
            source: mut s,
        } = fixture(
            "msg=x\nmsg=x\nmsg=x\n",
            "app*",
            StartAt::Beginning,
            Framing::default(),
        );
        polls(&mut s, &mut p, 3);
        fs::rename(&app, dir.path().join("app.log.1")).unwrap();
        append(&app, "msg=x\n");
        polls(&mut s, &mut p, 2 * DRAIN_IDLE_POLLS as usize);
        assert_eq!(count(&p), 4.0);
        // A late write to the rotated file still counts, once.
        append(&dir.path().join("app.log.1"), "msg=x\n");
        polls(&mut s, &mut p, 2 * DRAIN_IDLE_POLLS as usize);
        assert_eq!(count(&p), 5.0);
    }

    #[test]
    fn a_late_writer_to_a_rotated_file_is_not_lost() {
        let Fixture {
            dir,
            app,
            pipeline: mut p,
            source: mut s,
        } = fixture("msg=x\n", "*.log", StartAt::Beginning, Framing::default());
        polls(&mut s, &mut p, 2);
        let rotated = dir.path().join("app.log.1");
        fs::rename(&app, &rotated).unwrap();
        append(&app, "msg=x\n");
        polls(&mut s, &mut p, 2);
        append(&rotated, "msg=x\n");
        polls(&mut s, &mut p, 2);
        assert_eq!(count(&p), 3.0);
    }

    #[test]
    fn start_at_end_does_not_apply_after_a_checkpoint() {
        let Fixture {
            dir,
            app,
            pipeline: mut p,
            source: mut s,
        } = fixture("msg=x\nmsg=x\n", "*.log", StartAt::End, Framing::default());
        let glob = format!("{}/*.log", dir.path().display());
        polls(&mut s, &mut p, 2);
        append(&app, "msg=x\n");
        polls(&mut s, &mut p, 2);
        assert_eq!(count(&p), 1.0);
        let (saved, positions) = (p.snapshot(), s.checkpoint());
        // While the agent is down: one more line, a rotation, a new file with two lines.
        append(&app, "msg=x\n");
        fs::rename(&app, dir.path().join("app.log.1")).unwrap();
        append(&app, "msg=x\nmsg=x\n");
        let mut p2 = pipeline();
        p2.restore(saved);
        let mut s2 = source(glob, StartAt::End, Framing::default());
        s2.restore(positions);
        polls(&mut s2, &mut p2, 4);
        assert_eq!(count(&p2), 4.0);
    }

    #[test]
    fn truncation_keeps_a_complete_held_record() {
        let Fixture {
            dir: _dir,
            app,
            pipeline: mut p,
            source: mut s,
        } = fixture("msg=x\n  more\n", "*.log", StartAt::Beginning, multiline());
        polls(&mut s, &mut p, 1);
        fs::write(&app, "msg=y\n").unwrap();
        polls(&mut s, &mut p, 5);
        assert_eq!(count(&p), 1.0);
    }

    #[test]
    fn a_deleted_file_is_released() {
        let Fixture {
            dir: _dir,
            app,
            pipeline: mut p,
            source: mut s,
        } = fixture("msg=x\n", "*.log", StartAt::Beginning, Framing::default());
        polls(&mut s, &mut p, 2);
        fs::remove_file(&app).unwrap();
        polls(&mut s, &mut p, 2 * DRAIN_IDLE_POLLS as usize);
        assert!(s.files.is_empty() && s.draining.is_empty());
        assert_eq!(count(&p), 1.0);
    }
}
