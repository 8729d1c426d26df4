//! Spans arrive one by one, in any order within a trace; what omen learns from them needs
//! the whole trace (a span's self time needs its children, an edge needs both halves). The
//! [`TraceAssembler`] holds each trace until `wait` has passed since the latest end of its
//! spans, by the clock the caller gives [`TraceAssembler::flush`] (span time in a replay,
//! as the agent's pair rule does; the wall clock live, so a span stamped in the future
//! cannot make every trace look idle), then hands it over as [`TraceFacts`].
//!
//! Bounded: at most `max_spans` spans are held; past that the oldest traces are completed
//! early (counted in `forced`), and a trace past `max_spans_per_trace` drops its further
//! spans (counted in `dropped_spans`). Nothing is lost silently.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use super::span::{Span, SpanId, TraceId};

/// A span with what its trace says about it.
#[derive(Clone, Debug, PartialEq)]
pub struct SpanFacts {
    pub span: Span,
    /// Duration minus the union of its children's intervals (clipped to the span): the
    /// time the service itself spent, not waiting on calls.
    pub self_nano: u64,
    /// An error span none of whose children is an error: where the error started.
    pub origin_error: bool,
    /// A child runs in another service: this is the caller's side of a call (a client
    /// span), and its self time is time on the wire, not work.
    pub calls_out: bool,
    /// A request enters the service here: a root span, one whose parent is missing, or one
    /// called from another service.
    pub entry: bool,
}

/// A call between two services: a parent span and its child in another service (a client
/// span and its server span, or any cross-service pair: kinds are not required, as the
/// replayed cases have none).
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeFacts {
    pub client: Arc<str>,
    pub server: Arc<str>,
    /// When the server side started.
    pub start_unix_nano: u64,
    /// Duration seen by the caller (the parent span).
    pub client_nano: u64,
    /// Duration seen by the callee (the child span).
    pub server_nano: u64,
    /// Either side ended in error.
    pub failed: bool,
}

impl EdgeFacts {
    /// Client time minus server time: the network and the callee's ingress queue.
    pub fn gap_nano(&self) -> u64 {
        self.client_nano.saturating_sub(self.server_nano)
    }
}

/// One completed trace.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TraceFacts {
    pub trace_id: TraceId,
    pub spans: Vec<SpanFacts>,
    pub edges: Vec<EdgeFacts>,
    /// Spans naming a parent that is not in the trace (lost, or sampled away).
    pub unpaired: usize,
}

impl TraceFacts {
    /// Works out self times, origin errors and edges of one trace's spans (any order).
    pub fn from_spans(trace_id: TraceId, mut spans: Vec<Span>) -> Self {
        spans.sort_by_key(|s| (s.start_unix_nano, s.span_id));
        let index: HashMap<SpanId, usize> = spans
            .iter()
            .enumerate()
            .map(|(i, s)| (s.span_id, i))
            .collect();
        let mut children: Vec<Vec<usize>> = vec![Vec::new(); spans.len()];
        let mut entries = vec![true; spans.len()];
        let mut unpaired = 0;
        for (i, span) in spans.iter().enumerate() {
            match span.parent_id.map(|p| index.get(&p)) {
                Some(Some(&parent)) => {
                    entries[i] = spans[parent].service != span.service;
                    if parent != i {
                        children[parent].push(i);
                    }
                }
                Some(None) => unpaired += 1,
                None => {}
            }
        }
        let mut edges = Vec::new();
        let mut facts = Vec::with_capacity(spans.len());
        for (i, span) in spans.iter().enumerate() {
            let kids = &children[i];
            let origin_error = span.is_error() && !kids.iter().any(|&k| spans[k].is_error());
            let self_nano = span
                .duration_nano
                .saturating_sub(covered(span, kids.iter().map(|&k| &spans[k])));
            let mut calls_out = false;
            for &k in kids {
                let child = &spans[k];
                if child.service != span.service {
                    calls_out = true;
                    edges.push(EdgeFacts {
                        client: span.service.clone(),
                        server: child.service.clone(),
                        start_unix_nano: child.start_unix_nano,
                        client_nano: span.duration_nano,
                        server_nano: child.duration_nano,
                        failed: span.is_error() || child.is_error(),
                    });
                }
            }
            facts.push((self_nano, origin_error, calls_out));
        }
        let spans = spans
            .into_iter()
            .zip(facts)
            .zip(entries)
            .map(
                |((span, (self_nano, origin_error, calls_out)), entry)| SpanFacts {
                    span,
                    self_nano,
                    origin_error,
                    calls_out,
                    entry,
                },
            )
            .collect();
        Self {
            trace_id,
            spans,
            edges,
            unpaired,
        }
    }
}

/// Nanoseconds of `span` covered by the union of `children` (children start-sorted).
fn covered<'a>(span: &Span, children: impl Iterator<Item = &'a Span>) -> u64 {
    let (start, end) = (span.start_unix_nano, span.end_unix_nano());
    let mut total = 0;
    let mut reach = start;
    for child in children {
        let a = child.start_unix_nano.max(reach);
        let b = child.end_unix_nano().min(end);
        if b > a {
            total += b - a;
            reach = b;
        }
    }
    total
}

/// The assembler's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AssemblerLimits {
    /// A trace is complete once no span of it has ended for this long.
    pub wait_nano: u64,
    pub max_spans: usize,
    pub max_spans_per_trace: usize,
}

impl Default for AssemblerLimits {
    fn default() -> Self {
        Self {
            wait_nano: 10_000_000_000,
            max_spans: 1_000_000,
            max_spans_per_trace: 10_000,
        }
    }
}

/// What the assembler has counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AssemblerCounts {
    pub spans: u64,
    pub traces: u64,
    /// Traces completed before their wait was over, to stay within `max_spans`.
    pub forced: u64,
    /// Spans past `max_spans_per_trace`, dropped.
    pub dropped_spans: u64,
}

struct OpenTrace {
    spans: Vec<Span>,
    last_end: u64,
}

/// Groups spans into traces; see the module doc.
pub struct TraceAssembler {
    limits: AssemblerLimits,
    open: HashMap<TraceId, OpenTrace>,
    /// Trace ids in order of first arrival; stale entries (already completed) are skipped.
    arrival: VecDeque<TraceId>,
    held: usize,
    clock: u64,
    counts: AssemblerCounts,
}

impl TraceAssembler {
    pub fn new(limits: AssemblerLimits) -> Self {
        Self {
            limits,
            open: HashMap::new(),
            arrival: VecDeque::new(),
            held: 0,
            clock: 0,
            counts: AssemblerCounts::default(),
        }
    }

    pub fn counts(&self) -> AssemblerCounts {
        self.counts
    }

    /// Spans held, waiting for their traces to complete.
    pub fn held_spans(&self) -> usize {
        self.held
    }

    /// The latest span start seen: how far the feed has come.
    pub fn clock(&self) -> u64 {
        self.clock
    }

    /// Adds a span; completed traces (forced out by the bound) go to `done`.
    pub fn push(&mut self, span: Span, done: &mut Vec<TraceFacts>) {
        self.counts.spans += 1;
        let end = span.end_unix_nano();
        self.clock = self.clock.max(span.start_unix_nano);
        let trace = match self.open.get_mut(&span.trace_id) {
            Some(trace) => trace,
            None => {
                self.arrival.push_back(span.trace_id);
                self.open.entry(span.trace_id).or_insert(OpenTrace {
                    spans: Vec::new(),
                    last_end: 0,
                })
            }
        };
        if trace.spans.len() >= self.limits.max_spans_per_trace {
            self.counts.dropped_spans += 1;
            return;
        }
        trace.last_end = trace.last_end.max(end);
        trace.spans.push(span);
        self.held += 1;
        while self.held > self.limits.max_spans {
            let Some(oldest) = self.arrival.pop_front() else {
                break;
            };
            if let Some(trace) = self.open.remove(&oldest) {
                self.counts.forced += 1;
                done.push(self.complete(oldest, trace));
            }
        }
    }

    /// Completes every trace idle for `wait` at `now` (span time in a replay; the wall
    /// clock live, so that a quiet stream still completes its traces).
    pub fn flush(&mut self, now_unix_nano: u64, done: &mut Vec<TraceFacts>) {
        let now = now_unix_nano;
        let wait = self.limits.wait_nano;
        let mut kept = VecDeque::with_capacity(self.arrival.len());
        while let Some(id) = self.arrival.pop_front() {
            let idle = match self.open.get(&id) {
                Some(trace) => trace.last_end.saturating_add(wait) <= now,
                None => continue,
            };
            if idle {
                let trace = self.open.remove(&id).expect("checked above");
                done.push(self.complete(id, trace));
            } else {
                kept.push_back(id);
            }
        }
        self.arrival = kept;
    }

    /// Completes every trace now (end of a replay, shutdown).
    pub fn finish(&mut self, done: &mut Vec<TraceFacts>) {
        while let Some(id) = self.arrival.pop_front() {
            if let Some(trace) = self.open.remove(&id) {
                done.push(self.complete(id, trace));
            }
        }
    }

    fn complete(&mut self, id: TraceId, trace: OpenTrace) -> TraceFacts {
        self.held -= trace.spans.len();
        self.counts.traces += 1;
        TraceFacts::from_spans(id, trace.spans)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::traces::span::{SpanKind, StatusCode};

    /// A span of trace `[trace; 16]` with id `[id; 8]`, named "op", kind unspecified.
    pub(crate) fn span(
        trace: u8,
        id: u8,
        parent: Option<u8>,
        service: &str,
        start: u64,
        dur: u64,
    ) -> Span {
        Span {
            trace_id: TraceId([trace; 16]),
            span_id: SpanId([id; 8]),
            parent_id: parent.map(|p| SpanId([p; 8])),
            service: Arc::from(service),
            name: Arc::from("op"),
            kind: SpanKind::Unspecified,
            start_unix_nano: start,
            duration_nano: dur,
            status: StatusCode::Unset,
        }
    }

    #[test]
    fn self_time_subtracts_the_union_of_children() {
        // Root 0..100 with children 10..40 and 30..60 (overlapping) and one in-service.
        let mut spans = vec![
            span(1, 1, None, "front", 0, 100),
            span(1, 2, Some(1), "cart", 10, 30),
            span(1, 3, Some(1), "cart", 30, 30),
            span(1, 4, Some(1), "front", 80, 40), // runs past the parent's end
        ];
        spans[1].status = StatusCode::Error;
        let facts = TraceFacts::from_spans(TraceId([1; 16]), spans);
        let root = &facts.spans[0];
        assert_eq!(root.self_nano, 100 - 50 - 20);
        assert!(!root.origin_error);
        assert!(facts.spans[1].origin_error);
        assert_eq!(
            facts.edges.len(),
            2,
            "two calls into cart, none within front"
        );
        assert_eq!(facts.edges[0].gap_nano(), 70);
        assert!(facts.edges[0].failed);
    }

    #[test]
    fn a_trace_completes_after_its_wait_in_span_time() {
        let mut asm = TraceAssembler::new(AssemblerLimits {
            wait_nano: 100,
            ..AssemblerLimits::default()
        });
        let mut done = Vec::new();
        asm.push(span(1, 2, Some(1), "b", 10, 5), &mut done);
        asm.push(span(1, 1, None, "a", 0, 50), &mut done);
        asm.push(span(2, 1, None, "a", 100, 60), &mut done);
        asm.flush(160, &mut done);
        assert_eq!(
            done.len(),
            1,
            "at 160, trace 1 (ended at 50) has waited its 100"
        );
        assert_eq!(done[0].spans.len(), 2);
        assert_eq!(done[0].edges.len(), 1);
        asm.push(span(2, 2, Some(1), "b", 120, 40), &mut done);
        asm.flush(250, &mut done);
        assert_eq!(done.len(), 1, "trace 2 ended at 160, waits till 260");
        asm.flush(260, &mut done);
        assert_eq!(done.len(), 2);
        assert_eq!(done[1].spans.len(), 2);
        asm.push(span(3, 1, None, "a", 300, 1), &mut done);
        asm.finish(&mut done);
        assert_eq!(done.len(), 3);
        assert_eq!(asm.held_spans(), 0);
        assert_eq!(asm.counts().traces, 3);
    }

    #[test]
    fn a_span_stamped_in_the_future_completes_no_other_trace() {
        let mut asm = TraceAssembler::new(AssemblerLimits {
            wait_nano: 100,
            ..AssemblerLimits::default()
        });
        let mut done = Vec::new();
        asm.push(span(1, 1, None, "a", 0, 50), &mut done);
        asm.push(span(2, 1, None, "b", u64::MAX / 2, 1), &mut done);
        asm.flush(120, &mut done);
        assert!(
            done.is_empty(),
            "trace 1 waits till 150 whatever else was stamped"
        );
        asm.push(span(1, 2, Some(1), "c", 10, 20), &mut done);
        asm.flush(150, &mut done);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].spans.len(), 2, "whole");
    }

    #[test]
    fn the_bounds_force_out_the_oldest_and_drop_counted() {
        let mut asm = TraceAssembler::new(AssemblerLimits {
            wait_nano: 1_000,
            max_spans: 3,
            max_spans_per_trace: 2,
        });
        let mut done = Vec::new();
        for id in 1..=3 {
            asm.push(span(1, id, None, "a", 0, 1), &mut done);
        }
        assert_eq!(asm.counts().dropped_spans, 1);
        asm.push(span(2, 1, None, "a", 0, 1), &mut done);
        asm.push(span(3, 1, None, "a", 0, 1), &mut done);
        assert_eq!(done.len(), 1, "trace 1 forced out");
        assert_eq!(asm.counts().forced, 1);
        assert!(asm.held_spans() <= 3);
    }
}
