//! Pair rule: a start event and an end event with the same key, in the logs' own time.
//!
//! Semantics: a start at t0 is *matched* by an end with its key at t1 <= t0 + timeout;
//! once the logs' clock (the pipeline's: the newest time seen, where a jump longer than a
//! timeout needs a second record to confirm it) is > t0 + timeout the start is *unmatched*
//! and forgotten, and so is it when an end of its key comes later than that; an end that
//! finds no open start in time is an *orphan*; open starts are *pending*. Several open
//! starts of one key are matched first in, first out. Whether a start is matched depends
//! on the two events' times only, not on how far the clock has moved when the end is read.
//! A record is tested as an end before it is tested as a start. State is bounded by
//! `max_open`: a start beyond it is dropped and counted as overflow (its end will then
//! count as an orphan).

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use super::matcher::{FieldRef, Matcher};
use super::parts::{DefinedFamily, Labels};
use crate::parse::Record;
use crate::registry::{Registry, Value};

#[derive(Debug, Clone)]
pub struct PairMetrics {
    pub matched: DefinedFamily,
    pub unmatched: DefinedFamily,
    pub orphan: DefinedFamily,
    pub pending: DefinedFamily,
    pub latency: DefinedFamily,
}

#[derive(Debug, Clone)]
pub struct PairRule {
    pub(super) name: String,
    pub(super) start: Matcher,
    pub(super) end: Matcher,
    pub(super) start_key: FieldRef,
    pub(super) end_key: FieldRef,
    pub(super) timeout_ns: i64,
    pub(super) max_open: usize,
    pub(super) labels: Labels,
    pub(super) end_labels: Labels,
    pub(super) metrics: PairMetrics,
    pub(super) state: PairState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OpenStart {
    seq: u64,
    t0: i64,
    labels: Vec<String>,
}

/// Open starts, indexed by key and by deadline.
#[derive(Debug, Clone, Default)]
pub struct PairState {
    open: HashMap<String, VecDeque<OpenStart>, foldhash::fast::RandomState>,
    deadlines: BTreeMap<(i64, u64), String>,
    next_seq: u64,
    overflow: u64,
}

/// The serialised form of a pair rule's state, for the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairSnapshot {
    pub fingerprint: String,
    pub next_seq: u64,
    pub overflow: u64,
    open: Vec<(String, OpenStart)>,
}

/// What one record did to a pair rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairOutcome {
    None,
    Started,
    Overflow,
    Matched,
    Orphan,
}

impl PairRule {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn open_count(&self) -> usize {
        self.state.deadlines.len()
    }

    pub fn overflow_count(&self) -> u64 {
        self.state.overflow
    }

    /// Identity of the state's meaning: state is only carried over when this is unchanged.
    pub fn fingerprint(&self) -> String {
        format!(
            "{}|{}|{}|{}|{}",
            self.start_key.name,
            self.end_key.name,
            self.timeout_ns,
            self.labels.fingerprint(),
            self.metrics.latency.desc_fingerprint
        )
    }

    /// Forgets every start whose deadline is before `newest`, counting it as unmatched.
    pub fn expire(&mut self, newest: i64, registry: &mut Registry) {
        while let Some((&(deadline, seq), _)) = self.state.deadlines.first_key_value() {
            if deadline >= newest {
                break;
            }
            let Some((_, key)) = self.state.deadlines.pop_first() else {
                break;
            };
            if let Some(start) = self.state.take(&key, seq) {
                registry.inc(self.metrics.unmatched.id, &start.labels, 1.0);
                registry.inc(self.metrics.pending.id, &start.labels, -1.0);
            }
        }
    }

    /// Applies one record at event time `time` (the caller has already expired starts
    /// against the newest time).
    pub fn apply(
        &mut self,
        record: Record<'_>,
        mask: Option<u128>,
        time: i64,
        registry: &mut Registry,
    ) -> PairOutcome {
        if let Some(event) = self.end.matches_with(record, mask) {
            if let Some(key) = event.get(&self.end_key) {
                let taken = self.take_in_time(key, time, registry);
                return match taken {
                    Some(start) => {
                        let t0 = start.t0;
                        let latency = (time.saturating_sub(t0)).max(0) as f64 / 1e9;
                        registry.inc(self.metrics.matched.id, &start.labels, 1.0);
                        registry.inc(self.metrics.pending.id, &start.labels, -1.0);
                        registry.observe(self.metrics.latency.id, &start.labels, latency);
                        PairOutcome::Matched
                    }
                    None => {
                        let orphan = self.metrics.orphan.id;
                        self.end_labels
                            .with_values(&event, |labels| registry.inc(orphan, labels, 1.0));
                        PairOutcome::Orphan
                    }
                };
            }
        }
        let Some(event) = self.start.matches_with(record, mask) else {
            return PairOutcome::None;
        };
        let Some(key) = event.get(&self.start_key) else {
            return PairOutcome::None;
        };
        if self.state.deadlines.len() >= self.max_open {
            self.state.overflow = self.state.overflow.saturating_add(1);
            return PairOutcome::Overflow;
        }
        let labels = self.labels.owned_values(&event);
        registry.inc(self.metrics.pending.id, &labels, 1.0);
        let seq = self.state.next_seq;
        self.state.next_seq = self.state.next_seq.saturating_add(1);
        self.state
            .deadlines
            .insert((time.saturating_add(self.timeout_ns), seq), key.to_owned());
        self.state
            .open
            .entry(key.to_owned())
            .or_default()
            .push_back(OpenStart {
                seq,
                t0: time,
                labels,
            });
        PairOutcome::Started
    }

    /// The oldest open start of `key` that an end at `time` is in time for; older ones it
    /// is too late for are unmatched, as the clock would have made them by `time`.
    fn take_in_time(&mut self, key: &str, time: i64, registry: &mut Registry) -> Option<OpenStart> {
        loop {
            let front = self.state.open.get(key).and_then(|queue| queue.front())?;
            let (deadline, seq) = (front.t0.saturating_add(self.timeout_ns), front.seq);
            self.state.deadlines.remove(&(deadline, seq));
            let start = self.state.take(key, seq)?;
            if time <= deadline {
                return Some(start);
            }
            registry.inc(self.metrics.unmatched.id, &start.labels, 1.0);
            registry.inc(self.metrics.pending.id, &start.labels, -1.0);
        }
    }

    /// The shortest timeout: a clock jump longer than this can expire starts.
    pub fn timeout_ns(&self) -> i64 {
        self.timeout_ns
    }

    pub fn snapshot(&self) -> PairSnapshot {
        let mut open: Vec<(String, OpenStart)> = self
            .state
            .open
            .iter()
            .flat_map(|(key, queue)| queue.iter().map(move |s| (key.clone(), s.clone())))
            .collect();
        open.sort_by_key(|(_, s)| s.seq);
        PairSnapshot {
            fingerprint: self.fingerprint(),
            next_seq: self.state.next_seq,
            overflow: self.state.overflow,
            open,
        }
    }

    /// Restores state saved with the same fingerprint; returns false (and keeps the
    /// current state) otherwise.
    pub fn restore(&mut self, snapshot: PairSnapshot, registry: &mut Registry) -> bool {
        if snapshot.fingerprint != self.fingerprint() {
            return false;
        }
        let mut state = PairState {
            next_seq: snapshot.next_seq,
            overflow: snapshot.overflow,
            ..PairState::default()
        };
        for (key, start) in snapshot.open {
            state.deadlines.insert(
                (start.t0.saturating_add(self.timeout_ns), start.seq),
                key.clone(),
            );
            state.open.entry(key).or_default().push_back(start);
        }
        self.state = state;
        self.resync_pending(registry);
        true
    }

    /// Takes over the state of the same rule from before a reload, if it still means the
    /// same thing.
    pub fn adopt(&mut self, previous: &mut PairRule, registry: &mut Registry) {
        if previous.fingerprint() == self.fingerprint() {
            self.state = std::mem::take(&mut previous.state);
        }
        self.resync_pending(registry);
    }

    /// Sets the pending gauges from the open starts, so they agree after any restore.
    pub fn resync_pending(&self, registry: &mut Registry) {
        let mut counts: BTreeMap<&[String], f64> = BTreeMap::new();
        for start in self.state.open.values().flatten() {
            *counts.entry(start.labels.as_slice()).or_default() += 1.0;
        }
        registry.for_each_series(self.metrics.pending.id, |_, value| {
            if let Value::Scalar(v) = value {
                *v = 0.0;
            }
        });
        // Added, not set: label sets past the budget share the overflow series.
        for (labels, count) in counts {
            registry.inc(self.metrics.pending.id, labels, count);
        }
    }
}

impl PairState {
    fn take(&mut self, key: &str, seq: u64) -> Option<OpenStart> {
        let queue = self.open.get_mut(key)?;
        let position = queue.iter().position(|s| s.seq == seq)?;
        let start = queue.remove(position);
        if queue.is_empty() {
            self.open.remove(key);
        }
        start
    }
}
