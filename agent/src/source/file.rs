//! File tailing: glob patterns re-scanned so files that appear later are picked up;
//! rotation by rename + create and by copytruncate; positions saved per file identity
//! (device, inode) and content (a [`Fingerprint`] of the first bytes), whatever the
//! file's name.
//!
//! A file is read under one name at a time. When its path comes to hold another file
//! (or none), the old one is drained: read to its end and kept open until idle a few
//! polls, for writers that reopen late; the new file waits until the old one was read
//! to its end. A finished file's identity and offset are remembered, so a glob matching
//! its rotated name resumes there.
//!
//! A file shorter than our position, or whose first bytes are no longer the ones it was
//! fingerprinted by (checked before every read), was truncated: copytruncate, even when
//! the writer has since written more than the old file held. What we had not read yet is
//! in the copy, found beside it by its fingerprint and read from our position first; then
//! the file is read again from 0. A truncation whose copy is nowhere is counted (event
//! `lost`). Globs should not match copytruncate's copies.
//!
//! Rotated files are looked for beside the file, under its name and a numbered or dated
//! suffix (`app.log.1`, `app.log-20261207`; compressed ones are skipped). Files found at the
//! first scan start at their beginning or end (`start_at`), unless resuming from a
//! checkpoint; files that appear later start at their beginning. After a restart, a saved
//! file whose inode now lives under a name no glob matches (rotated while the agent was
//! down) is drained from its saved offset, and so is a copy holding a saved file's content
//! (copytruncate while down); rotated files written after it that the agent never saw
//! (two rotations between checkpoints) are drained next, oldest first, and the file
//! under the name last. The same is done when a rotation is seen while running.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::fingerprint::Fingerprint;
use super::framer::{Framer, Framing};
use super::position::{FilePosition, SourceCheckpoint};
use super::prepare::Preparer;
use super::traits::{RecordSink, Source, SourceEvent, StreamId};
use crate::log_backoff::LogBackoff;
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
    /// Where rotated files go besides the log's own folder (globs, e.g.
    /// `/var/log/old/app.log.*` for logrotate's `olddir`); a match counts as a rotation of
    /// a log when named as one (`app.log.1`, `app.log-20261207`).
    pub rotated: Vec<String>,
}

impl FileSourceConfig {
    pub fn new(name: impl Into<String>, paths: Vec<String>) -> Self {
        Self {
            name: name.into(),
            paths,
            start_at: StartAt::Beginning,
            rescan_interval: Duration::from_millis(500),
            read_budget: 1 << 20,
            rotated: Vec::new(),
        }
    }
}

#[derive(Debug)]
struct Tailed {
    path: PathBuf,
    file: File,
    /// Read errors are logged with backoff (each is counted as a source event).
    read_errors: LogBackoff,
    dev: u64,
    ino: u64,
    framer: Framer,
    /// Of the first bytes read (grows with a young file).
    fingerprint: Option<Fingerprint>,
    /// When the file was last written, as of the last look while it was empty.
    modified: Option<SystemTime>,
    /// When the file was last written, as of the last look for a copy while its
    /// fingerprint was short (`copied_while_short`).
    looked_for_copy: Option<SystemTime>,
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
    /// Files matched that cannot be opened (permissions, say), for logging with backoff.
    open_errors: HashMap<PathBuf, LogBackoff>,
    files: BTreeMap<PathBuf, Tailed>,
    /// Rotated or deleted files still being read (until idle for DRAIN_IDLE_POLLS).
    draining: Vec<Tailed>,
    /// The files being drained as last put in order (identities): found again in another
    /// order or with others, they are ordered again.
    draining_order: Vec<(u64, u64)>,
    /// Files finished with, by identity, with the offset they were read to.
    retired: VecDeque<FilePosition>,
    restored: Vec<FilePosition>,
    /// Resumed from a checkpoint: `start_at: end` no longer applies.
    had_checkpoint: bool,
    /// Per name, when the file last rotated away from it was last written: rotated files
    /// written after that and never seen are read before a new file under the name.
    rotated_at: BTreeMap<PathBuf, SystemTime>,
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
            open_errors: HashMap::new(),
            files: BTreeMap::new(),
            draining: Vec::new(),
            draining_order: Vec::new(),
            retired: VecDeque::new(),
            restored: Vec::new(),
            had_checkpoint: false,
            rotated_at: BTreeMap::new(),
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
        // A rotation of a log the globs also match (`app.log.1` under `app.log*`) is read
        // as a rotated file, in its place in the order: never as a log of its own.
        let (rotations, logs): (Vec<PathBuf>, Vec<PathBuf>) = found
            .iter()
            .cloned()
            .partition(|path| self.rotation_base(path, &found).is_some());
        for path in logs {
            if !self.files.contains_key(&path) {
                self.open(path, sink);
            }
        }
        let history = !self.scanned_once
            && !self.had_checkpoint
            && self.config.start_at == StartAt::Beginning;
        for rotated in rotations {
            let base = self.rotation_base(&rotated, &found).expect("partitioned");
            self.drain_matched_rotation(rotated, base, history, sink);
        }
        if !self.scanned_once {
            self.scanned_once = true;
            // Saved files not under their name any more: rotated while we were down
            // (or their content copied away by copytruncate).
            for position in std::mem::take(&mut self.restored) {
                self.drain_moved(position, sink);
            }
            // Then what was rotated after them, never seen; all in the order written.
            for (path, since) in self.rotated_at.clone() {
                self.drain_unseen_rotations(&path, since, sink);
            }
        }
        // A name whose file rotated away and has none now: files written and rotated
        // meanwhile, between two scans, are read all the same.
        let vacant: Vec<(PathBuf, SystemTime)> = self
            .rotated_at
            .iter()
            .filter(|(path, _)| !self.files.contains_key(*path))
            .map(|(path, since)| (path.clone(), *since))
            .collect();
        for (path, since) in vacant {
            self.drain_unseen_rotations(&path, since, sink);
        }
    }

    fn open(&mut self, path: PathBuf, sink: &mut dyn RecordSink) {
        let (file, meta) = match File::open(&path).and_then(|f| f.metadata().map(|m| (f, m))) {
            Ok(opened) => {
                self.open_errors.remove(&path);
                opened
            }
            Err(error) if error.kind() == ErrorKind::NotFound => {
                self.open_errors.remove(&path);
                return;
            }
            Err(error) => {
                // Tried again at every rescan: logged with backoff, per file.
                let backoff = self.open_errors.entry(path.clone()).or_default();
                if let Some(unlogged) = backoff.failed(Instant::now()) {
                    // EMFILE (24) and ENFILE (23): say what to do, not only what failed.
                    if matches!(error.raw_os_error(), Some(23 | 24)) {
                        warn!(path = %path.display(), %error, unlogged, "cannot open file: the open-files limit is reached; raise it (LimitNOFILE, ulimit -n) or tail fewer files");
                    } else {
                        warn!(path = %path.display(), %error, unlogged, "cannot open file");
                    }
                }
                return;
            }
        };
        if !meta.is_file() {
            // A directory (or a pipe) under a file's name: nothing to tail. Opened, every
            // read would fail and warn, poll after poll.
            return;
        }
        let (dev, ino, len) = (meta.dev(), meta.ino(), meta.len());
        if self.is_being_read(dev, ino) {
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
            Some(p) if p.offset <= len && same_content(&p, &file) => p.offset,
            Some(p) => {
                // Truncated, or its content replaced, while we were away (copytruncate):
                // the rest of what we were reading is in its copy.
                let stream = sink.stream(&path.to_string_lossy());
                sink.event(stream, SourceEvent::Truncated);
                if let Some(copy) = self.take_copy(&path, &p, stream, sink) {
                    self.draining.push(copy);
                    self.copies_after(&path, sink);
                }
                0
            }
            None if fresh_start && self.config.start_at == StartAt::End => len,
            None => {
                // A new file under a name whose last file rotated away: were others
                // written and rotated in between, too fast for us to see? (At the first
                // scan after a restart, once the saved files are found.)
                let since = self.rotated_at.get(&path).copied();
                if let Some(since) = since.filter(|_| self.scanned_once) {
                    self.drain_unseen_rotations(&path, since, sink);
                }
                0
            }
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
        // Of what was read: a file to be read from its start has nothing read to lose,
        // whatever its first bytes become before it is read.
        let fingerprint = Fingerprint::of(&file).ok().flatten();
        Some(Tailed {
            path,
            file,
            read_errors: LogBackoff::default(),
            dev,
            ino,
            framer: Framer::new(self.framing.clone(), offset),
            fingerprint,
            modified: None,
            looked_for_copy: None,
            stream,
            idle_polls: 0,
            reached_end: false,
        })
    }

    /// Drains a saved file found under another name (rotated while we were down) from
    /// its saved offset, or, when its content is no longer in it (copytruncate), the copy
    /// that holds it.
    fn drain_moved(&mut self, position: FilePosition, sink: &mut dyn RecordSink) {
        let path = PathBuf::from(&position.path);
        let beside = fs::read_dir(directory_of(&path))
            .into_iter()
            .flatten()
            .flatten();
        let beside = beside.filter_map(|entry| Some((entry.path(), entry.metadata().ok()?)));
        let moved = beside
            .chain(self.rotated_elsewhere(&path))
            .find_map(|(candidate, meta)| {
                let same = (meta.dev(), meta.ino()) == (position.dev, position.ino);
                if !same || meta.len() < position.offset {
                    return None;
                }
                let file = File::open(&candidate).ok()?;
                same_content(&position, &file).then_some((candidate, file))
            });
        let drained = match moved {
            Some((rotated, file)) => {
                info!(path = %rotated.display(), offset = position.offset, "reading rotated file to its end");
                let (dev, ino) = (position.dev, position.ino);
                self.tailed(path, file, dev, ino, position.offset, sink)
            }
            None => self.copy_of(&path, &position, sink),
        };
        if let Some(tailed) = drained {
            self.draining.push(tailed);
        }
    }

    /// The copy beside `path` that holds `saved`'s content (copytruncate's), to be read
    /// from the saved offset.
    fn copy_of(
        &self,
        path: &Path,
        saved: &FilePosition,
        sink: &mut dyn RecordSink,
    ) -> Option<Tailed> {
        let print = saved.fingerprint?;
        // Copies never seen that begin as the saved file did. A fingerprint of a short
        // file is a prefix that later copies may share (lines that start alike): the
        // oldest copy is the one made first after what was read, so it holds the rest.
        let mut copies: Vec<(SystemTime, RotationAge, PathBuf, File, u64, u64)> = self
            .rotations_of(path)
            .into_iter()
            .filter_map(|(rotated, meta)| {
                let (dev, ino) = (meta.dev(), meta.ino());
                let other = (dev, ino) != (saved.dev, saved.ino) && !self.is_known(dev, ino);
                if !other || meta.len() < saved.offset {
                    return None;
                }
                let file = File::open(&rotated).ok()?;
                if !print.matches(&file).unwrap_or(false) {
                    return None;
                }
                let age = RotationAge::of(&rotated, path);
                Some((meta.modified().ok()?, age, rotated, file, dev, ino))
            })
            .collect();
        copies.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let (_, _, rotated, file, dev, ino) = copies.into_iter().next()?;
        info!(path = %rotated.display(), offset = saved.offset, "reading the rest of a truncated file from its copy");
        self.tailed(path.to_owned(), file, dev, ino, saved.offset, sink)
    }

    /// Whether a copy holding `saved`'s content is read already (found another way, as a
    /// rotation never seen): nothing is lost then.
    fn copy_known(&self, path: &Path, saved: &FilePosition) -> bool {
        let Some(print) = saved.fingerprint else {
            return false;
        };
        self.rotations_of(path).into_iter().any(|(rotated, meta)| {
            (meta.dev(), meta.ino()) != (saved.dev, saved.ino)
                && self.is_known(meta.dev(), meta.ino())
                && meta.len() >= saved.offset
                && File::open(&rotated).is_ok_and(|f| print.matches(&f).unwrap_or(false))
        })
    }

    /// After a copy was taken for a truncated file: copies made after it (truncated again
    /// before we looked), never seen, are read after it and before the file.
    fn copies_after(&mut self, path: &Path, sink: &mut dyn RecordSink) {
        if let Some(since) = self.rotated_at.get(path).copied() {
            self.drain_unseen_rotations(path, since, sink);
        }
    }

    /// After a truncation: the copy holding the rest of `saved`, with the time it was made
    /// noted, so that what is copied away after it is read after it; or, when there is
    /// none, the loss counted.
    fn take_copy(
        &mut self,
        path: &Path,
        saved: &FilePosition,
        stream: StreamId,
        sink: &mut dyn RecordSink,
    ) -> Option<Tailed> {
        let copy = self.copy_of(path, saved, sink);
        match &copy {
            Some(copy) => {
                if let Some(since) = modified(&copy.file) {
                    self.rotated_at.insert(path.to_owned(), since);
                }
            }
            None if saved.fingerprint.is_some() && !self.copy_known(path, saved) => {
                sink.event(stream, SourceEvent::Lost)
            }
            None => {}
        }
        copy
    }

    /// Drains, oldest first and from their start, the files rotated beside `path` after
    /// `since` that were never seen: rotated twice before we could see the first.
    fn drain_unseen_rotations(
        &mut self,
        path: &Path,
        since: SystemTime,
        sink: &mut dyn RecordSink,
    ) {
        let mut unseen: Vec<(SystemTime, PathBuf, fs::Metadata)> = self
            .rotations_of(path)
            .into_iter()
            .filter(|(_, meta)| !self.is_known(meta.dev(), meta.ino()))
            .filter_map(|(p, meta)| {
                let modified = meta.modified().ok()?;
                (modified >= since).then_some((modified, p, meta))
            })
            .collect();
        unseen.sort_by_cached_key(|(modified, rotated, _)| {
            (*modified, RotationAge::of(rotated, path))
        });
        for (_, rotated, meta) in unseen {
            let Ok(file) = File::open(&rotated) else {
                continue;
            };
            info!(path = %rotated.display(), "reading a rotated file never seen");
            if let Some(tailed) =
                self.tailed(path.to_owned(), file, meta.dev(), meta.ino(), 0, sink)
            {
                self.draining.push(tailed);
            }
        }
        if self.moved_away(path) {
            // The file tailed under the name was rotated too, before or after those:
            // `poll_draining` reads them all in the order they were written.
            self.check_rotation(path, sink);
        }
    }

    /// The log `path` is a rotation of (`app.log` for `app.log.1`), if the globs match
    /// that log now (`found`) or it is tailed or rotated.
    fn rotation_base(&self, path: &Path, found: &[PathBuf]) -> Option<PathBuf> {
        let name = path.file_name()?.to_str()?;
        let known = self.files.keys().chain(self.rotated_at.keys());
        found
            .iter()
            .chain(known)
            .filter(|base| base.parent() == path.parent() && *base != path)
            .find(|base| {
                base.file_name()
                    .and_then(|b| b.to_str())
                    .is_some_and(|b| is_rotation_of(name, b))
            })
            .cloned()
    }

    /// A rotated file the globs match, read as one rotated from `base`: at the first
    /// start (`history`) from its beginning, before `base`; once finished with, again
    /// from where it was left if a late writer added to it.
    fn drain_matched_rotation(
        &mut self,
        rotated: PathBuf,
        base: PathBuf,
        history: bool,
        sink: &mut dyn RecordSink,
    ) {
        let Ok(file) = File::open(&rotated) else {
            return;
        };
        let Ok(meta) = file.metadata() else {
            return;
        };
        let (dev, ino) = (meta.dev(), meta.ino());
        let offset = if history && !self.is_known(dev, ino) {
            0
        } else {
            let grown = |p: &FilePosition| {
                (p.dev, p.ino) == (dev, ino) && p.offset < meta.len() && same_content(p, &file)
            };
            match self.retired.iter().position(grown) {
                Some(index) => self.retired.remove(index).map_or(0, |p| p.offset),
                None => return,
            }
        };
        info!(path = %rotated.display(), offset, "reading a rotated file the globs match");
        if let Some(tailed) = self.tailed(base, file, dev, ino, offset, sink) {
            self.draining.push(tailed);
        }
    }

    /// Puts the files being drained in the order they were written: by when each was
    /// last written, and between files written within one tick of the file-system clock
    /// (a few milliseconds: common when rotations come fast) by their rotated names. The
    /// sort is stable: files found in order stay so.
    fn sort_draining(&mut self) {
        let mut names: HashMap<(u64, u64), PathBuf> = HashMap::new();
        for tailed in &self.draining {
            for (rotated, meta) in self.rotations_of(&tailed.path) {
                names.insert((meta.dev(), meta.ino()), rotated);
            }
        }
        self.draining.sort_by_cached_key(|t| {
            let name = names.get(&(t.dev, t.ino)).unwrap_or(&t.path);
            (modified(&t.file), RotationAge::of(name, &t.path))
        });
    }

    /// The rotations of the log at `path`: beside it, and where `rotated` says.
    fn rotations_of(&self, path: &Path) -> Vec<(PathBuf, fs::Metadata)> {
        let mut found = rotated_beside(path);
        for (rotated, meta) in self.rotated_elsewhere(path) {
            if !found.iter().any(|(p, _)| *p == rotated) {
                found.push((rotated, meta));
            }
        }
        found
    }

    /// Files the `rotated` globs match that are named as rotations of the log at `path`.
    fn rotated_elsewhere(&self, path: &Path) -> Vec<(PathBuf, fs::Metadata)> {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return Vec::new();
        };
        let matched = self
            .config
            .rotated
            .iter()
            .filter_map(|p| glob::glob(p).ok());
        matched
            .flatten()
            .flatten()
            .filter(|rotated| {
                rotated
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|other| is_rotation_of(other, name))
            })
            .filter_map(|rotated| {
                let meta = fs::metadata(&rotated).ok().filter(|m| m.is_file())?;
                Some((rotated, meta))
            })
            .collect()
    }

    /// Whether a file is being read, under its name or drained.
    fn is_being_read(&self, dev: u64, ino: u64) -> bool {
        let same = |t: &Tailed| (t.dev, t.ino) == (dev, ino);
        self.files.values().any(same) || self.draining.iter().any(same)
    }

    /// Whether a file is being read, or was finished with or saved.
    fn is_known(&self, dev: u64, ino: u64) -> bool {
        let saved = |p: &FilePosition| (p.dev, p.ino) == (dev, ino);
        self.is_being_read(dev, ino)
            || self.retired.iter().any(saved)
            || self.restored.iter().any(saved)
    }

    /// Reads a file up to the budget, framing what it reads into records for `emit`.
    fn read(
        tailed: &mut Tailed,
        buffer: &mut [u8],
        budget: usize,
        emit: &mut dyn FnMut(&[u8], bool),
    ) -> ReadOutcome {
        let mut outcome = ReadOutcome::default();
        // Before reading on: copytruncate keeps the inode and may have been followed by
        // more than the old file held, so the length alone cannot tell.
        if let Some(print) = tailed.fingerprint {
            if !print.matches(&tailed.file).unwrap_or(true) {
                outcome.at_end = true;
                outcome.replaced = true;
                return outcome;
            }
        }
        loop {
            match tailed.file.read(buffer) {
                Ok(0) => {
                    tailed.read_errors.succeeded();
                    outcome.at_end = true;
                    return outcome;
                }
                Ok(n) => {
                    tailed.read_errors.succeeded();
                    outcome.bytes += n as u64;
                    tailed.framer.feed(&buffer[..n], emit);
                    if outcome.bytes as usize >= budget {
                        return outcome;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(error) => {
                    if let Some(unlogged) = tailed.read_errors.failed(Instant::now()) {
                        warn!(path = %tailed.path.display(), %error, unlogged, "read failed");
                    }
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
            if let Some(since) = modified(&old.file) {
                self.rotated_at.insert(path.to_owned(), since);
            }
            self.draining.push(old);
            if meta.is_some() {
                self.open(path.to_owned(), sink);
            }
        } else if meta.is_some_and(|m| m.len() < tailed.framer.position()) {
            self.truncated(path, sink);
        }
    }

    /// While nothing was read from a file under a name that has rotated: whenever it is
    /// written (or truncated), files rotated or copied away beside it since and never
    /// seen (written, then rotated or copied away between two polls) are read first.
    fn look_behind_first_content(&mut self, sink: &mut dyn RecordSink) {
        let mut first = Vec::new();
        for (path, tailed) in &mut self.files {
            if tailed.framer.position() > 0 {
                continue;
            }
            let Some(since) = self.rotated_at.get(path) else {
                continue;
            };
            let now = modified(&tailed.file);
            if now != tailed.modified {
                tailed.modified = now;
                first.push((path.clone(), *since));
            }
        }
        for (path, since) in first {
            self.drain_unseen_rotations(&path, since, sink);
        }
    }

    /// Whether the file tailed under `path` is no longer the file at `path`.
    fn moved_away(&self, path: &Path) -> bool {
        let Some(tailed) = self.files.get(path) else {
            return false;
        };
        fs::metadata(path).map_or(true, |m| (m.dev(), m.ino()) != (tailed.dev, tailed.ino))
    }

    /// A copytruncate the first bytes cannot show: while a file is shorter than a full
    /// fingerprint, what is written after a truncation may begin with the very bytes read
    /// before it (a line cut after its first characters, lines that start alike), and be
    /// longer. A copy beside it, never seen, that begins with those bytes and holds at
    /// least what was read, is then the evidence: the file is treated as truncated.
    fn copied_while_short(&mut self, sink: &mut dyn RecordSink) {
        let mut copied = Vec::new();
        for (path, tailed) in &mut self.files {
            let short = tailed.fingerprint.is_some_and(|f| !f.is_complete());
            let read = tailed.framer.position();
            let now = modified(&tailed.file);
            if !short || read == 0 || now == tailed.looked_for_copy {
                continue;
            }
            tailed.looked_for_copy = now;
            copied.push((
                path.clone(),
                tailed.fingerprint,
                (tailed.dev, tailed.ino),
                read,
            ));
        }
        for (path, print, identity, read) in copied {
            let Some(print) = print else { continue };
            let Some(live) = self.files.get(&path).map(|t| &t.file) else {
                continue;
            };
            let rotations = self.rotations_of(&path);
            // Where the file is now (renamed away, it may have been truncated before), and
            // so how old it is: a copy of it was made before its last write, while a later
            // file that merely begins alike was written after it.
            let name = match self.moved_away(&path) {
                false => path.clone(),
                true => match rotations
                    .iter()
                    .find(|(_, m)| (m.dev(), m.ino()) == identity)
                {
                    Some((name, _)) => name.clone(),
                    None => continue,
                },
            };
            let age = (modified(live), RotationAge::of(&name, &path));
            let copy = rotations.iter().any(|(rotated, meta)| {
                let (dev, ino) = (meta.dev(), meta.ino());
                if (dev, ino) == identity || self.is_known(dev, ino) || meta.len() < read {
                    return false;
                }
                let Ok(copy) = File::open(rotated) else {
                    return false;
                };
                let older = (meta.modified().ok(), RotationAge::of(rotated, &path)) < age;
                // A copy of the file as it still is (no truncation) goes on as it does.
                older && print.matches(&copy).unwrap_or(false) && !continues(live, &copy, read)
            });
            if copy {
                self.truncated(&path, sink);
            }
        }
    }

    /// A tailed file was truncated (copytruncate): the rest of what it held is read from
    /// its copy, if one is beside it, then the file from its start.
    fn truncated(&mut self, path: &Path, sink: &mut dyn RecordSink) {
        let Some(tailed) = self.files.get_mut(path) else {
            return;
        };
        info!(path = %path.display(), "file truncated, reading from its start");
        let stream = tailed.stream;
        sink.event(stream, SourceEvent::Truncated);
        let saved = position(tailed);
        if tailed.file.seek(SeekFrom::Start(0)).is_err() {
            return;
        }
        let mut held = std::mem::replace(&mut tailed.framer, Framer::new(self.framing.clone(), 0));
        tailed.fingerprint = None;
        match self.take_copy(path, &saved, stream, sink) {
            Some(copy) => {
                self.draining.push(copy);
                self.copies_after(path, sink);
            }
            // A complete record held before the truncation still counts.
            None => held.flush(false, &mut |record, truncated| {
                sink.record(stream, record, truncated)
            }),
        }
    }

    /// A rotated file being drained was truncated too: the rest of what it held is read
    /// from its copy, if one is beside it, then the file from its start.
    fn reread_draining(&mut self, index: usize, sink: &mut dyn RecordSink) {
        let saved = position(&self.draining[index]);
        let (path, stream) = (
            self.draining[index].path.clone(),
            self.draining[index].stream,
        );
        sink.event(stream, SourceEvent::Truncated);
        let copy = self.take_copy(&path, &saved, stream, sink);
        let tailed = &mut self.draining[index];
        if tailed.file.seek(SeekFrom::Start(0)).is_err() {
            return;
        }
        tailed.framer = Framer::new(self.framing.clone(), 0);
        tailed.fingerprint = None;
        tailed.reached_end = false;
        tailed.idle_polls = 0;
        if let Some(copy) = copy {
            self.draining.insert(index, copy);
            self.copies_after(&path, sink);
        }
    }

    /// Reads the files being drained; retires those idle long enough.
    fn poll_draining(&mut self, sink: &mut dyn RecordSink) -> u64 {
        let identities = |draining: &[Tailed]| -> Vec<(u64, u64)> {
            draining.iter().map(|t| (t.dev, t.ino)).collect()
        };
        if identities(&self.draining) != self.draining_order {
            self.sort_draining();
            self.draining_order = identities(&self.draining);
        }
        let budget = self.config.read_budget;
        let mut total = 0;
        // Files drained under one name are read in the order they were written: each
        // once the one before it was read to its end.
        let mut waiting: HashSet<PathBuf> = HashSet::new();
        let mut replaced = Vec::new();
        for (index, tailed) in self.draining.iter_mut().enumerate() {
            if waiting.contains(&tailed.path) {
                continue;
            }
            let outcome = Self::read_to_sink(tailed, &mut self.buffer, budget, sink);
            total += outcome.bytes;
            if outcome.replaced {
                // Truncated (copytruncate) after it was rotated: read again below.
                replaced.push(index);
                waiting.insert(tailed.path.clone());
                continue;
            }
            if outcome.at_end {
                tailed.reached_end = true;
            } else {
                waiting.insert(tailed.path.clone());
            }
            if outcome.bytes == 0 {
                tailed.idle_polls = tailed.idle_polls.saturating_add(1);
            } else {
                tailed.idle_polls = 0;
            }
        }
        for index in replaced.into_iter().rev() {
            self.reread_draining(index, sink);
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
        fingerprint: tailed.fingerprint,
        modified_ms: modified(&tailed.file).and_then(epoch_ms),
    }
}

/// Whether `file` holds what `copy` holds from `from` on (up to 4 KiB of it compared):
/// `copy` is then a copy of `file` as it is, not of what a truncation removed.
fn continues(file: &File, copy: &File, from: u64) -> bool {
    use std::os::unix::fs::FileExt;
    let (mut theirs, mut ours) = ([0u8; 4096], [0u8; 4096]);
    let read = |f: &File, buffer: &mut [u8]| f.read_at(buffer, from).unwrap_or(0);
    let n = read(copy, &mut theirs);
    read(file, &mut ours) >= n && theirs[..n] == ours[..n]
}

/// Milliseconds since the epoch, as checkpoints keep times.
fn epoch_ms(time: SystemTime) -> Option<i64> {
    let since = time.duration_since(SystemTime::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

/// Whether `file` still holds the content `saved` was read from (a position saved before
/// fingerprints has only its identity to go by).
fn same_content(saved: &FilePosition, file: &File) -> bool {
    saved
        .fingerprint
        .is_none_or(|print| print.matches(file).unwrap_or(true))
}

/// When `file` was last written.
fn modified(file: &File) -> Option<SystemTime> {
    file.metadata().and_then(|m| m.modified()).ok()
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Orders the names of rotated files, older first: numbered rotations by their number
/// (`app.log.2` is older than `app.log.1`, as logrotate and most loggers shift them), other
/// suffixes (dates) by name, and the live name last.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum RotationAge {
    Numbered(std::cmp::Reverse<u64>),
    Named(String),
    Live,
}

impl RotationAge {
    /// The age of `rotated`, a rotation of the file named `live` (or `live` itself).
    fn of(rotated: &Path, live: &Path) -> Self {
        let suffix = match (rotated.file_name(), live.file_name()) {
            (Some(rotated), Some(live)) if rotated != live => rotated
                .to_string_lossy()
                .strip_prefix(live.to_string_lossy().as_ref())
                .map(|s| s.get(1..).unwrap_or("").to_owned()),
            _ => None,
        };
        let Some(suffix) = suffix else {
            return RotationAge::Live;
        };
        // A short number counts rotations; a long one is a date or a time stamp.
        let counter = (1..=6).contains(&suffix.len()) && suffix.bytes().all(|b| b.is_ascii_digit());
        match suffix.parse() {
            Ok(n) if counter => RotationAge::Numbered(std::cmp::Reverse(n)),
            _ => RotationAge::Named(suffix),
        }
    }
}

/// Compressed rotations are not text to read.
const COMPRESSED: [&str; 5] = [".gz", ".bz2", ".xz", ".zst", ".zip"];

/// Whether `other` names a rotation of the file named `name`: `name`, then `.`, `-` or
/// `_` and a digit (`app.log.1`, `app.log-20261207`, `app.log.2026-12-07`), not
/// compressed. `app.log.bak` or `app.log-errors.log` are other files.
fn is_rotation_of(other: &str, name: &str) -> bool {
    let Some(suffix) = other.strip_prefix(name) else {
        return false;
    };
    let mut chars = suffix.chars();
    matches!(chars.next(), Some('.' | '-' | '_'))
        && chars.next().is_some_and(|c| c.is_ascii_digit())
        && !COMPRESSED
            .iter()
            .any(|compressed| suffix.ends_with(compressed))
}

/// Regular files beside `path` named as its rotations ([`is_rotation_of`]).
fn rotated_beside(path: &Path) -> Vec<(PathBuf, fs::Metadata)> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Vec::new();
    };
    let Ok(entries) = fs::read_dir(directory_of(path)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let file_name = entry.file_name();
            let other = file_name.to_str()?;
            if !is_rotation_of(other, name) {
                return None;
            }
            let meta = entry.metadata().ok().filter(|m| m.is_file())?;
            Some((entry.path(), meta))
        })
        .collect()
}

/// What one read of one file did.
#[derive(Debug, Default, Clone, Copy)]
struct ReadOutcome {
    bytes: u64,
    at_end: bool,
    failed: bool,
    /// The file's first bytes are not the ones it was fingerprinted by: nothing was read.
    replaced: bool,
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
        self.look_behind_first_content(sink);
        self.copied_while_short(sink);
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
        let mut replaced = Vec::new();
        for ((path, tailed), outcome) in self.files.iter_mut().zip(outcomes) {
            let Some(outcome) = outcome else { continue };
            if outcome.replaced {
                replaced.push(path.clone());
                continue;
            }
            total += outcome.bytes;
            if outcome.bytes > 0 && !tailed.fingerprint.is_some_and(|f| f.is_complete()) {
                tailed.fingerprint = Fingerprint::of(&tailed.file).ok().flatten();
            }
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
        for path in replaced {
            self.truncated(&path, sink);
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

    fn files(&self) -> Option<usize> {
        Some(self.files.len())
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
        let rotated = self
            .rotated_at
            .iter()
            .filter_map(|(path, since)| {
                Some((path.to_string_lossy().into_owned(), epoch_ms(*since)?))
            })
            .collect();
        SourceCheckpoint::Files { files, rotated }
    }

    fn restore(&mut self, checkpoint: SourceCheckpoint) {
        if let SourceCheckpoint::Files { files, rotated } = checkpoint {
            // Per name, when the file last rotated away had been written, as the agent
            // knew it: a file saved since may hold later lines (written after a
            // copytruncate) than copies of it that were never seen.
            let at = |ms: i64| SystemTime::UNIX_EPOCH + Duration::from_millis(ms.max(0) as u64);
            for (path, ms) in &rotated {
                self.rotated_at.insert(PathBuf::from(path), at(*ms));
            }
            // Otherwise (no rotation seen yet, or an older checkpoint), when the newest
            // file saved under it had last been written.
            for saved in files.iter().filter(|f| !rotated.contains_key(&f.path)) {
                let Some(ms) = saved.modified_ms else {
                    continue;
                };
                let path = PathBuf::from(&saved.path);
                let latest = self.rotated_at.entry(path).or_insert(at(ms));
                *latest = (*latest).max(at(ms));
            }
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
        config.rescan_interval = if std::env::var("RESCAN").is_ok() {
            Duration::from_secs(3600)
        } else {
            Duration::ZERO
        };
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

    /// A crash and a restart: a new pipeline and source, from what was saved.
    fn restarted(
        glob: String,
        start_at: StartAt,
        saved: (crate::pipeline::PipelineSnapshot, SourceCheckpoint),
    ) -> (Pipeline, FileSource) {
        let mut p = pipeline();
        p.restore(saved.0);
        let mut s = source(glob, start_at, Framing::default());
        s.restore(saved.1);
        (p, s)
    }

    /// `omen_agent_source_events_total` of the file's stream for `event`.
    fn source_events(p: &Pipeline, file: &Path, event: &str) -> Option<f64> {
        let stream = file.to_string_lossy().into_owned();
        let labels = [("stream", stream.as_str()), ("event", event)];
        let name = format!("{}source_events_total", crate::rule::SELF_METRIC_PREFIX);
        match p.registry.get(&name, &labels) {
            Some(Value::Scalar(v)) => Some(*v),
            _ => None,
        }
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
        let (mut p2, mut s2) = restarted(glob, StartAt::End, (saved, positions));
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

    /// Lines matching the rule, tagged so that each batch starts with different bytes
    /// (as a log's timestamps make them).
    fn lines(n: usize, tag: &str) -> String {
        (0..n).map(|i| format!("msg=x at={tag}{i}\n")).collect()
    }

    /// logrotate's copytruncate: copy, then truncate in place.
    fn copytruncate(app: &Path, copy: &Path) {
        fs::copy(app, copy).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .open(app)
            .unwrap()
            .set_len(0)
            .unwrap();
    }

    /// Lines counted when, after a poll that read `first` lines, `meanwhile` writes and
    /// rotates `app.log` before the next poll; with `crash`, the agent is then killed and
    /// restarts from the checkpoint taken after that poll.
    fn counted_after(first: usize, crash: bool, meanwhile: impl FnOnce(&Path)) -> f64 {
        let Fixture {
            dir,
            app,
            pipeline: mut p,
            source: mut s,
        } = fixture(
            &lines(first, "a"),
            "*.log",
            StartAt::Beginning,
            Framing::default(),
        );
        polls(&mut s, &mut p, 2);
        let saved = (p.snapshot(), s.checkpoint());
        meanwhile(&app);
        if crash {
            let glob = format!("{}/*.log", dir.path().display());
            (p, s) = restarted(glob, StartAt::End, saved);
        }
        polls(&mut s, &mut p, 3 * DRAIN_IDLE_POLLS as usize);
        count(&p)
    }

    /// 2 lines not read before a copytruncate, then `then` lines.
    fn copytruncate_with(then: usize) -> impl FnOnce(&Path) {
        move |app| {
            append(app, &lines(2, "b"));
            copytruncate(app, &app.with_extension("log.1"));
            append(app, &lines(then, "c"));
        }
    }

    /// One more line, a rotation; a successor written and rotated too; a third file.
    fn two_rotations(app: &Path) {
        append(app, &lines(1, "a"));
        rotate_numbered(app);
        append(app, &lines(3, "b"));
        rotate_numbered(app);
        append(app, &lines(4, "c"));
    }

    #[test]
    fn copytruncate_followed_by_more_than_the_old_file_held_loses_nothing() {
        assert_eq!(counted_after(3, false, copytruncate_with(10)), 15.0);
    }

    #[test]
    fn copytruncate_while_down_resumes_in_the_copy() {
        assert_eq!(counted_after(3, true, copytruncate_with(1)), 6.0);
        assert_eq!(counted_after(3, true, copytruncate_with(10)), 15.0);
    }

    #[test]
    fn two_rotations_between_polls_lose_no_file() {
        assert_eq!(counted_after(2, false, two_rotations), 10.0);
    }

    #[test]
    fn two_rotations_between_checkpoints_then_a_crash_lose_no_file() {
        assert_eq!(counted_after(2, true, two_rotations), 10.0);
    }

    #[test]
    fn a_truncation_whose_copy_is_nowhere_is_counted_as_lost() {
        let Fixture {
            dir: _dir,
            app,
            pipeline: mut p,
            source: mut s,
        } = fixture(
            &lines(3, "a"),
            "*.log",
            StartAt::Beginning,
            Framing::default(),
        );
        polls(&mut s, &mut p, 2);
        fs::write(&app, lines(5, "b")).unwrap(); // truncated and rewritten, no copy kept
        polls(&mut s, &mut p, 2);
        assert_eq!(count(&p), 8.0);
        assert_eq!(source_events(&p, &app, "lost"), Some(1.0));
    }

    #[test]
    fn rotations_are_told_by_their_suffix() {
        for rotated in [
            "app.log.1",
            "app.log-20261207",
            "app.log.2026-12-07",
            "app.log_3",
        ] {
            assert!(is_rotation_of(rotated, "app.log"), "{rotated}");
        }
        for other in [
            "app.log",
            "app.log.bak",
            "app.log-errors.log",
            "app.log.1.gz",
            "app.logx",
            "ap.log.1",
        ] {
            assert!(!is_rotation_of(other, "app.log"), "{other}");
        }
    }

    /// A checkpoint with hostile positions (past the end, negative times, unknown files,
    /// other fingerprints) restores to reading on, never to a panic.
    #[test]
    fn hostile_checkpoints_are_refused_or_read_on() {
        use omen_common::mutate::{for_each_seed, mutate};
        let Fixture {
            dir,
            app,
            pipeline: mut p,
            source: mut s,
        } = fixture(
            &lines(20, "a"),
            "app.log*",
            StartAt::Beginning,
            Framing::default(),
        );
        polls(&mut s, &mut p, 1);
        rotate_numbered(&app);
        append(&app, &lines(5, "b"));
        polls(&mut s, &mut p, 1);
        let saved = (p.snapshot(), s.checkpoint());
        let document = serde_json::to_value(&saved.1).unwrap();
        let glob = format!("{}/app.log*", dir.path().display());
        for_each_seed("a mutated file checkpoint", |seed| {
            let mutated = mutate(&document, seed, 1 + (seed % 3) as usize);
            let Ok(checkpoint) = serde_json::from_value::<SourceCheckpoint>(mutated) else {
                return false;
            };
            let (mut p, mut s) = restarted(
                glob.clone(),
                StartAt::Beginning,
                (saved.0.clone(), checkpoint),
            );
            polls(&mut s, &mut p, 2);
            true
        });
    }

    /// What a sink is handed, in order, as the rules would apply it.
    #[derive(Default)]
    struct Recorder {
        streams: HashMap<String, StreamId>,
        records: Vec<String>,
    }

    impl RecordSink for Recorder {
        fn stream(&mut self, name: &str) -> StreamId {
            let next = StreamId(self.streams.len());
            *self.streams.entry(name.to_owned()).or_insert(next)
        }
        fn record(&mut self, _: StreamId, record: &[u8], _: bool) {
            self.records
                .push(String::from_utf8_lossy(record).trim_end().to_owned());
        }
        fn parsed_batch(&mut self, _: StreamId, _: &ParsedBatch) {
            unreachable!("polled on one thread")
        }
        fn bytes_read(&mut self, _: StreamId, _: u64) {}
        fn event(&mut self, _: StreamId, _: SourceEvent) {}
    }

    /// The pair rules' clock is the records' order: rename and copytruncate rotations at
    /// random, crashes back to the last checkpoint, and a read budget so small that a
    /// poll rarely reaches a file's end (what a busy machine sees): every line is handed
    /// out once, in the order it was written.
    #[test]
    fn random_rotations_and_crashes_hand_out_lines_once_in_written_order() {
        // `OMEN_FUZZ_CASES=1000` runs more seeds. Known: seed 702 loses 2 lines (a file
        // opened to be read from its start, truncated before its first read).
        for seed in 1..=omen_common::mutate::cases() {
            let mut random = seed;
            let mut below = |n: u64| {
                random = random
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                (random >> 33) % n
            };
            let dir = tempfile::tempdir().unwrap();
            let app = dir.path().join("app.log");
            // Every other seed the glob matches the rotated names too (`app.log*`).
            let glob = format!("{}{}", app.display(), ["", "*"][seed as usize % 2]);
            let budget = 8 + below(60) as usize;
            let start = |checkpoint: Option<SourceCheckpoint>| {
                let mut s = source(glob.clone(), StartAt::Beginning, Framing::default());
                s.config.read_budget = budget;
                if let Some(checkpoint) = checkpoint {
                    s.restore(checkpoint);
                }
                s
            };
            // The agent runs before the log rotates for the first time.
            append(&app, "seq=0\n");
            let mut sink = Recorder::default();
            let mut s = start(None);
            s.poll(&mut sink);
            let mut saved = (s.checkpoint(), sink.records.len());
            let mut written = 1;
            let mut steps = Vec::new();
            let mut held: Option<String> = None;
            for _ in 0..80 {
                let n = below(6) as usize;
                let mut text: String = held.take().unwrap_or_default();
                text.extend((written..written + n).map(|i| format!("seq={i}\n")));
                written += n;
                if n > 0 && below(3) == 0 {
                    // The writer stops inside a line and ends it at its next write.
                    let cut = text.len() - 1 - below(4) as usize;
                    held = Some(text.split_off(cut));
                }
                append(&app, &text);
                steps.push(format!(
                    "write to {}{}",
                    written - 1,
                    ["", " (cut)"][held.is_some() as usize]
                ));
                // Rotations come between lines, never inside one.
                match below(6) {
                    _ if held.is_some() => {}
                    0 => {
                        rotate_numbered(&app);
                        steps.push("rename".into());
                    }
                    1 => {
                        shift_numbered(&app);
                        copytruncate(&app, &app.with_extension("log.1"));
                        steps.push("copytruncate".into());
                    }
                    _ => {}
                }
                match below(4) {
                    0 => {
                        s.poll(&mut sink);
                        steps.push(format!("poll: {:?}", sink.records.last()));
                    }
                    1 => {
                        s.poll(&mut sink);
                        let checkpoint = s.checkpoint();
                        s.checkpoint_written(&checkpoint);
                        saved = (checkpoint, sink.records.len());
                        steps.push(format!("poll+checkpoint: {:?}", sink.records.last()));
                    }
                    2 => {
                        // A crash: what was handed out since the checkpoint is undone.
                        sink.records.truncate(saved.1);
                        s = start(Some(saved.0.clone()));
                        steps.push(format!("crash: back to {:?}", sink.records.last()));
                    }
                    _ => {}
                }
            }
            if let Some(rest) = held.take() {
                append(&app, &rest);
            }
            for _ in 0..(written + 3 * DRAIN_IDLE_POLLS as usize) {
                s.poll(&mut sink);
            }
            let expected: Vec<String> = (0..written).map(|i| format!("seq={i}")).collect();
            let first = (0..expected.len().max(sink.records.len()))
                .find(|&i| sink.records.get(i) != expected.get(i));
            if let Some(at) = first {
                let window =
                    |v: &[String]| v[at.saturating_sub(3)..(at + 8).min(v.len())].join(" ");
                panic!(
                    "seed {seed}, budget {budget}, {glob}: {} of {written} handed out; from {at}: {} (want {})\n{}",
                    sink.records.len(),
                    window(&sink.records),
                    window(&expected),
                    steps.join("\n")
                );
            }
        }
    }

    /// logrotate's `olddir`: rotated files go to another folder, and `rotated` says
    /// where. Rotated twice while the agent was down, they are found there and read in
    /// order; without `rotated`, what they held past the checkpoint is not found.
    #[test]
    fn rotated_files_in_another_folder_are_found_after_a_restart() {
        for olddir_known in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let (app, old) = (dir.path().join("app.log"), dir.path().join("old"));
            fs::create_dir(&old).unwrap();
            let start = |checkpoint: Option<SourceCheckpoint>| {
                let glob = app.to_string_lossy().into_owned();
                let mut s = source(glob, StartAt::Beginning, Framing::default());
                if olddir_known {
                    s.config.rotated = vec![format!("{}/app.log.*", old.display())];
                }
                if let Some(checkpoint) = checkpoint {
                    s.restore(checkpoint);
                }
                s
            };
            let line = |i: usize| format!("seq={i}\n");
            append(&app, &(0..3).map(line).collect::<String>());
            let mut sink = Recorder::default();
            let mut s = start(None);
            s.poll(&mut sink);
            let saved = s.checkpoint();
            drop(s);
            append(&app, &(3..5).map(line).collect::<String>());
            fs::rename(&app, old.join("app.log.1")).unwrap();
            append(&app, &(5..7).map(line).collect::<String>());
            fs::rename(old.join("app.log.1"), old.join("app.log.2")).unwrap();
            fs::rename(&app, old.join("app.log.1")).unwrap();
            append(&app, &line(7));
            let mut s = start(Some(saved));
            for _ in 0..3 * DRAIN_IDLE_POLLS {
                s.poll(&mut sink);
            }
            let all: Vec<String> = (0..8).map(|i| format!("seq={i}")).collect();
            if olddir_known {
                assert_eq!(sink.records, all);
            } else {
                assert_eq!(sink.records, ["seq=0", "seq=1", "seq=2", "seq=7"]);
            }
        }
    }

    fn shift_numbered(app: &Path) {
        let numbered = |n: usize| PathBuf::from(format!("{}.{n}", app.display()));
        let mut highest = 0;
        while numbered(highest + 1).exists() {
            highest += 1;
        }
        for n in (1..=highest).rev() {
            fs::rename(numbered(n), numbered(n + 1)).unwrap();
        }
    }

    /// A rename rotation with numbered names: app.log.N → app.log.N+1, app.log → app.log.1.
    fn rotate_numbered(app: &Path) {
        shift_numbered(app);
        if app.exists() {
            fs::rename(app, app.with_extension("log.1")).unwrap();
        }
    }

    #[test]
    fn a_deleted_file_is_released_and_a_directory_under_its_name_not_read() {
        let Fixture {
            dir: _dir,
            app,
            pipeline: mut p,
            source: mut s,
        } = fixture("msg=x\n", "*.log", StartAt::Beginning, Framing::default());
        polls(&mut s, &mut p, 2);
        fs::remove_file(&app).unwrap();
        // A directory under its name at once is not tailed in its place (every read would
        // fail, poll after poll).
        fs::create_dir(&app).unwrap();
        polls(&mut s, &mut p, 2 * DRAIN_IDLE_POLLS as usize);
        assert!(s.files.is_empty() && s.draining.is_empty());
        assert_eq!(source_events(&p, &app, "read_error"), None);
        assert_eq!(count(&p), 1.0);
    }
}
