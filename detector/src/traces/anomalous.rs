//! Anomalous traces: each completed trace becomes a feature vector — per service its self
//! time and its origin errors, per call edge its gap (all `ln(1 + ms)` or counts) — scored
//! by the isolation forest (`model::iforest`) fitted on a sliding window of recent traces
//! and refitted on a schedule. A service or edge a trace does not touch is 0 in its
//! vector, so traces that take another path stand apart as well as slow ones.
//!
//! The forest follows the original algorithm (a value past a split's range follows the
//! nearest side), which cannot tell a value far past everything seen from one just past
//! the edge. So a trace with a feature beyond the window's range by more than the range's
//! own width (in `ln(1 + ms)`: several times slower than any trace seen), or with a
//! service or edge the window never had, scores 1: never seen, isolated at once.
//!
//! Bounded: at most [`MAX_FEATURES`] columns (further services and edges are not
//! featurised, and counted), a window of [`WINDOW`] vectors.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use linfa::prelude::ParamGuard;
use ndarray::Array2;

use super::assemble::TraceFacts;
use crate::model::iforest::{IsolationForest, IsolationForestParams};

/// Columns of the feature space.
pub const MAX_FEATURES: usize = 96;
/// Traces the forest is fitted on.
pub const WINDOW: usize = 1024;
/// Traces between refits.
const REFIT_EVERY: usize = 1024;
/// Traces needed before the first fit.
const MIN_FIT: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Feature {
    SelfTime(Arc<str>),
    Errors(Arc<str>),
    Gap(Arc<str>, Arc<str>),
}

/// Scores traces; see the module doc.
pub struct TraceScorer {
    columns: HashMap<Feature, usize>,
    window: VecDeque<Vec<(usize, f64)>>,
    forest: Option<IsolationForest>,
    /// Per column, the window's (low, high) at the last fit.
    ranges: Vec<(f64, f64)>,
    since_fit: usize,
    /// Features not given a column, past [`MAX_FEATURES`].
    pub unfeatured: u64,
}

impl Default for TraceScorer {
    fn default() -> Self {
        Self::new()
    }
}

impl TraceScorer {
    pub fn new() -> Self {
        Self {
            columns: HashMap::new(),
            window: VecDeque::with_capacity(WINDOW),
            forest: None,
            ranges: Vec::new(),
            since_fit: 0,
            unfeatured: 0,
        }
    }

    fn column(&mut self, feature: Feature) -> Option<usize> {
        if let Some(&column) = self.columns.get(&feature) {
            return Some(column);
        }
        if self.columns.len() >= MAX_FEATURES {
            self.unfeatured += 1;
            return None;
        }
        let column = self.columns.len();
        self.columns.insert(feature, column);
        Some(column)
    }

    /// The trace's sparse feature vector.
    fn features(&mut self, trace: &TraceFacts) -> Vec<(usize, f64)> {
        let mut row: Vec<(usize, f64)> = Vec::new();
        let add = |row: &mut Vec<(usize, f64)>, column: Option<usize>, value: f64| {
            if let Some(column) = column {
                match row.iter_mut().find(|(c, _)| *c == column) {
                    Some(cell) => cell.1 += value,
                    None => row.push((column, value)),
                }
            }
        };
        for fact in &trace.spans {
            let service = &fact.span.service;
            if !fact.calls_out {
                let column = self.column(Feature::SelfTime(service.clone()));
                add(&mut row, column, fact.self_nano as f64 / 1e6);
            }
            if fact.origin_error {
                let column = self.column(Feature::Errors(service.clone()));
                add(&mut row, column, 1.0);
            }
        }
        for edge in &trace.edges {
            let column = self.column(Feature::Gap(edge.client.clone(), edge.server.clone()));
            add(&mut row, column, edge.gap_nano() as f64 / 1e6);
        }
        // Times summed per column, then compressed: a doubling counts alike at any scale.
        for cell in &mut row {
            cell.1 = cell.1.ln_1p();
        }
        row
    }

    /// Scores a completed trace (in [0, 1]; about 0.5 is ordinary, near 1 isolated at
    /// once), `None` until the forest is first fitted; then learns it.
    pub fn score(&mut self, trace: &TraceFacts) -> Option<f64> {
        let row = self.features(trace);
        let score = self.forest.as_ref().map(|forest| {
            let mut dense = vec![0.0; forest.features()];
            for &(column, value) in &row {
                if column < dense.len() {
                    dense[column] = value;
                } else if value > 0.0 {
                    // A column the forest has never seen: nothing like it in the window.
                    return 1.0;
                }
            }
            let beyond = dense.iter().zip(&self.ranges).any(|(&v, &(low, high))| {
                let width = high - low;
                v > high + width || v < low - width
            });
            if beyond {
                return 1.0;
            }
            forest.score_slice(&dense)
        });
        if self.window.len() == WINDOW {
            self.window.pop_front();
        }
        self.window.push_back(row);
        self.since_fit += 1;
        let due = match self.forest {
            None => self.window.len() >= MIN_FIT,
            Some(_) => self.since_fit >= REFIT_EVERY,
        };
        if due {
            self.refit();
        }
        score
    }

    fn refit(&mut self) {
        self.since_fit = 0;
        let width = self.columns.len().max(1);
        let mut records = Array2::zeros((self.window.len(), width));
        for (i, row) in self.window.iter().enumerate() {
            for &(column, value) in row {
                records[[i, column]] = value;
            }
        }
        self.ranges = records
            .columns()
            .into_iter()
            .map(|c| {
                c.iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                        (lo.min(v), hi.max(v))
                    })
            })
            .collect();
        // Standard isolation (a value past the fitted range follows the nearest side):
        // a window of a few hundred traces has not seen every ordinary extreme.
        let params = IsolationForestParams::new()
            .trees(32)
            .subsample(256)
            .seed(0x7472_6163)
            .isolate_out_of_range(false);
        // Constant settings that check; a fit fails only on non-finite cells, which
        // `ln_1p` of non-negative times cannot make: on failure the old forest stays.
        let Ok(params) = params.check() else {
            return;
        };
        if let Ok(forest) = params.fit_records(records.view()) {
            self.forest = Some(forest);
        }
    }

    pub fn features_used(&self) -> usize {
        self.columns.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::span::{Span, SpanId, SpanKind, StatusCode, TraceId};

    /// Web calls db; durations in microseconds, web's own work jittered.
    fn trace(n: u32, db_us: u64) -> TraceFacts {
        let span = |k: u8, parent: Option<u8>, service: &str, start: u64, ms: u64| Span {
            trace_id: TraceId([
                n as u8,
                (n >> 8) as u8,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
                1,
            ]),
            span_id: SpanId([k, 1, 1, 1, 1, 1, 1, 1]),
            parent_id: parent.map(|p| SpanId([p, 1, 1, 1, 1, 1, 1, 1])),
            service: Arc::from(service),
            name: Arc::from("op"),
            kind: SpanKind::Unspecified,
            start_unix_nano: start,
            duration_nano: ms * 1_000,
            status: StatusCode::Unset,
        };
        let jitter = u64::from(n * 7919 % 1000);
        let spans = vec![
            span(1, None, "web", 0, 10_000 + jitter + db_us),
            span(2, Some(1), "db", 2_000_000, db_us),
        ];
        TraceFacts::from_spans(spans[0].trace_id, spans)
    }

    #[test]
    fn a_trace_far_slower_in_one_service_is_isolated_and_ordinary_ones_are_not() {
        let mut scorer = TraceScorer::new();
        let mut ordinary = Vec::new();
        for n in 0..1200 {
            let db = 4_000 + u64::from(n * 104_729 % 2_000);
            if let Some(score) = scorer.score(&trace(n, db)) {
                ordinary.push(score);
            }
        }
        assert!(!ordinary.is_empty(), "fitted after {MIN_FIT} traces");
        let isolated = ordinary.iter().filter(|s| **s >= 1.0).count();
        assert!(
            isolated * 100 <= ordinary.len(),
            "{isolated} of {} ordinary traces isolated",
            ordinary.len()
        );
        let slow = scorer.score(&trace(2_000, 400_000)).unwrap();
        assert_eq!(slow, 1.0, "a hundred times slower than anything seen");
    }

    #[test]
    fn a_new_path_is_isolated_at_once() {
        let mut scorer = TraceScorer::new();
        for n in 0..200 {
            scorer.score(&trace(n, 5_000));
        }
        let mut odd = trace(999, 5_000);
        odd.edges[0].server = Arc::from("cache");
        assert_eq!(scorer.score(&odd), Some(1.0));
    }
}
