//! Rate, errors and duration from spans, under the names Grafana already draws for Tempo's
//! metrics-generator: span metrics per (service, span name, span kind, status) and the
//! service graph per (client, server). Counters only grow; the live path renders them on
//! `/metrics`, and [`ServiceSeries`] turns them into the per-service and per-edge series
//! the models watch.
//!
//! Bounded: past `max_series` keys (`max_edges` edges), further keys fold into one
//! overflow series labelled `__overflow__`, and the spans folded are counted.

use std::collections::HashMap;
use std::sync::Arc;

use super::assemble::TraceFacts;
use super::span::{Span, SpanKind, StatusCode};

/// Histogram bucket bounds (seconds): Tempo's metrics-generator defaults.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024, 2.048, 4.096, 8.192,
    16.384,
];

/// The label value of an overflow series.
pub const OVERFLOW: &str = "__overflow__";

/// A cumulative histogram of durations in seconds over [`LATENCY_BUCKETS`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Observations at or under each bound (not cumulative; rendering accumulates).
    pub buckets: [u64; LATENCY_BUCKETS.len()],
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        let seconds = if seconds.is_finite() {
            seconds.max(0.0)
        } else {
            0.0
        };
        if let Some(i) = LATENCY_BUCKETS.iter().position(|b| seconds <= *b) {
            self.buckets[i] += 1;
        }
        self.count += 1;
        self.sum += seconds;
    }

    /// Cumulative counts per bound, then `+Inf` (= count).
    pub fn cumulative(&self) -> impl Iterator<Item = (f64, u64)> + '_ {
        let mut total = 0;
        LATENCY_BUCKETS
            .iter()
            .zip(self.buckets.iter())
            .map(move |(bound, n)| {
                total += n;
                (*bound, total)
            })
            .chain(std::iter::once((f64::INFINITY, self.count)))
    }
}

/// A span-metrics series key.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanKey {
    pub service: Arc<str>,
    pub span_name: Arc<str>,
    pub kind: SpanKindLabel,
    pub status: StatusLabel,
}

/// [`SpanKind`] as an ordered label (for stable rendering).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanKindLabel(pub &'static str);

/// [`StatusCode`] as an ordered label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusLabel(pub &'static str);

/// Calls and their durations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpanStats {
    pub calls: u64,
    pub latency: Histogram,
}

/// Span metrics; see the module doc.
#[derive(Debug)]
pub struct SpanMetrics {
    series: HashMap<SpanKey, SpanStats>,
    max_series: usize,
    /// Spans folded into the overflow series.
    pub overflowed: u64,
}

impl SpanMetrics {
    pub fn new(max_series: usize) -> Self {
        Self {
            series: HashMap::new(),
            max_series,
            overflowed: 0,
        }
    }

    pub fn observe(&mut self, span: &Span) {
        let key = SpanKey {
            service: span.service.clone(),
            span_name: span.name.clone(),
            kind: SpanKindLabel(span.kind.label()),
            status: StatusLabel(span.status.label()),
        };
        let stats = if self.series.contains_key(&key) || self.series.len() < self.max_series {
            self.series.entry(key).or_default()
        } else {
            self.overflowed += 1;
            self.series.entry(overflow_key()).or_default()
        };
        stats.calls += 1;
        stats.latency.observe(span.duration_nano as f64 / 1e9);
    }

    /// Series sorted by key.
    pub fn series(&self) -> Vec<(&SpanKey, &SpanStats)> {
        let mut all: Vec<_> = self.series.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

fn overflow_key() -> SpanKey {
    SpanKey {
        service: Arc::from(OVERFLOW),
        span_name: Arc::from(OVERFLOW),
        kind: SpanKindLabel(SpanKind::Unspecified.label()),
        status: StatusLabel(StatusCode::Unset.label()),
    }
}

/// Requests on one edge, as the caller and the callee saw them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EdgeStats {
    pub requests: u64,
    pub failed: u64,
    pub client: Histogram,
    pub server: Histogram,
}

/// A call edge: (client service, server service).
pub type Edge = (Arc<str>, Arc<str>);

/// The service graph; see the module doc.
#[derive(Debug)]
pub struct ServiceGraph {
    edges: HashMap<Edge, EdgeStats>,
    max_edges: usize,
    /// Edges' requests folded into the overflow edge.
    pub overflowed: u64,
    /// Spans whose parent never arrived within the trace's wait.
    pub unpaired: u64,
}

impl ServiceGraph {
    pub fn new(max_edges: usize) -> Self {
        Self {
            edges: HashMap::new(),
            max_edges,
            overflowed: 0,
            unpaired: 0,
        }
    }

    pub fn observe(&mut self, trace: &TraceFacts) {
        self.unpaired += trace.unpaired as u64;
        for edge in &trace.edges {
            let key = (edge.client.clone(), edge.server.clone());
            let stats = if self.edges.contains_key(&key) || self.edges.len() < self.max_edges {
                self.edges.entry(key).or_default()
            } else {
                self.overflowed += 1;
                let overflow: Arc<str> = Arc::from(OVERFLOW);
                self.edges.entry((overflow.clone(), overflow)).or_default()
            };
            stats.requests += 1;
            stats.failed += u64::from(edge.failed);
            stats.client.observe(edge.client_nano as f64 / 1e9);
            stats.server.observe(edge.server_nano as f64 / 1e9);
        }
    }

    /// Edges sorted by (client, server).
    pub fn edges(&self) -> Vec<(&Edge, &EdgeStats)> {
        let mut all: Vec<_> = self.edges.iter().collect();
        all.sort_by(|a, b| a.0.cmp(b.0));
        all
    }

    pub fn len(&self) -> usize {
        self.edges.len()
    }

    pub fn is_empty(&self) -> bool {
        self.edges.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::span::{SpanId, TraceId};

    fn span(service: &str, name: &str, ms: u64, status: StatusCode) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([1; 8]),
            parent_id: None,
            service: Arc::from(service),
            name: Arc::from(name),
            kind: SpanKind::Server,
            start_unix_nano: 0,
            duration_nano: ms * 1_000_000,
            status,
        }
    }

    #[test]
    fn spans_count_per_key_with_a_cumulative_histogram() {
        let mut metrics = SpanMetrics::new(10);
        metrics.observe(&span("cart", "GET", 3, StatusCode::Unset));
        metrics.observe(&span("cart", "GET", 100, StatusCode::Unset));
        metrics.observe(&span("cart", "GET", 100_000, StatusCode::Unset));
        metrics.observe(&span("cart", "GET", 1, StatusCode::Error));
        let series = metrics.series();
        assert_eq!(series.len(), 2);
        let (key, stats) = series[0];
        assert_eq!(key.status.0, "STATUS_CODE_ERROR");
        assert_eq!(stats.calls, 1);
        let ok = series[1].1;
        assert_eq!(ok.calls, 3);
        let cumulative: Vec<(f64, u64)> = ok.latency.cumulative().collect();
        assert_eq!(cumulative[1], (0.004, 1));
        assert_eq!(cumulative[7], (0.256, 2));
        assert_eq!(cumulative[13], (16.384, 2), "100 s is past the last bound");
        assert_eq!(*cumulative.last().unwrap(), (f64::INFINITY, 3));
        assert!((ok.latency.sum - 100.103).abs() < 1e-9);
    }

    #[test]
    fn keys_past_the_budget_fold_into_one_overflow_series() {
        let mut metrics = SpanMetrics::new(2);
        for name in ["a", "b", "c", "d"] {
            metrics.observe(&span("svc", name, 1, StatusCode::Unset));
        }
        assert_eq!(metrics.overflowed, 2);
        assert_eq!(metrics.len(), 3, "two keys and the overflow series");
        assert!(metrics
            .series()
            .iter()
            .any(|(k, s)| &*k.service == OVERFLOW && s.calls == 2));
    }
}
