//! Spans in, through OTLP (gRPC in [`grpc`], HTTP in [`http`]): each request is decoded by
//! the core (`omen_detector::traces::otlp`) and its spans queued; one task feeds them to
//! the [`TracePipeline`], which counts span metrics as spans arrive, assembles traces, and
//! from completed traces builds the service graph, the per-service series the models watch
//! and the root-cause evidence. Every second the pipeline completes idle traces and, once
//! per `interval`, hands its series to the engine like any other source's samples ([`task::run`]).
//!
//! Bounded everywhere: the body, the queue (a full queue refuses the request as retryable,
//! so the sender keeps the spans), the spans held, the series kept; each bound counted.

pub mod grpc;
pub mod http;
pub mod render;
pub mod task;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use omen_detector::traces::anomalous::TraceScorer;
use omen_detector::traces::assemble::AssemblerLimits;
use omen_detector::traces::red::{ServiceGraph, SpanMetrics, OVERFLOW};
use omen_detector::traces::series::ServiceSeries;
use omen_detector::traces::{
    Evidence, Names, RcaParams, Span, TraceAssembler, TraceFacts, TraceId,
};
use omen_detector::wire::Sample;
use tokio::sync::mpsc;

use crate::config::TracesConfig;
use crate::engine::correlate::TraceContext;

/// Which receiver a request came through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    Grpc,
    Http,
}

impl Protocol {
    pub const ALL: [Protocol; 2] = [Protocol::Grpc, Protocol::Http];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Grpc => "grpc",
            Protocol::Http => "http",
        }
    }
}

/// What the pipeline learns from spans; see the module doc.
pub struct TracePipeline {
    assembler: TraceAssembler,
    pub(crate) span_metrics: SpanMetrics,
    pub(crate) graph: ServiceGraph,
    series: ServiceSeries,
    evidence: Evidence,
    scorer: TraceScorer,
    done: Vec<TraceFacts>,
    /// Last value of each pattern counter seen (series key → value).
    pattern_counters: HashMap<String, f64>,
    names: Names,
    /// Recent traces, for exemplars: oldest first, at most [`RECENT_TRACES`].
    recent: VecDeque<RecentTrace>,
    interval_ms: i64,
    next_sample_ms: i64,
    /// Edges already handed to correlation.
    edges_learnt: usize,
}

/// Pattern counters followed for log evidence.
const MAX_PATTERN_COUNTERS: usize = 50_000;

fn hash(text: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    text.hash(&mut hasher);
    hasher.finish()
}

/// Traces kept for exemplars.
const RECENT_TRACES: usize = 20_000;
/// Services remembered per recent trace, for exemplars.
const SERVICES_PER_TRACE: usize = 64;
/// Exemplars and ranked services an incident carries.
const EXEMPLARS: usize = 5;
const RANKED: usize = 5;

/// What an exemplar search needs of a trace: per service, its slowest request into the
/// service and whether an error started there.
struct RecentTrace {
    trace_id: TraceId,
    start_nano: u64,
    services: Vec<(Arc<str>, u64, bool)>,
    /// The isolation forest's score (0 before its first fit).
    score: f64,
}

impl RecentTrace {
    fn of(trace: &TraceFacts, score: f64) -> Self {
        let mut by_service: HashMap<&Arc<str>, (u64, bool)> = HashMap::new();
        for fact in &trace.spans {
            let span = &fact.span;
            if by_service.len() >= SERVICES_PER_TRACE && !by_service.contains_key(&span.service) {
                continue;
            }
            let entry = by_service.entry(&span.service).or_default();
            entry.0 = entry.0.max(span.duration_nano);
            entry.1 |= fact.origin_error;
        }
        let services = by_service
            .into_iter()
            .map(|(service, (latency, error))| (service.clone(), latency, error))
            .collect();
        Self {
            trace_id: trace.trace_id,
            start_nano: trace.spans.first().map_or(0, |f| f.span.start_unix_nano),
            services,
            score,
        }
    }
}

impl TracePipeline {
    pub fn new(config: &TracesConfig) -> Self {
        let limits = AssemblerLimits {
            wait_nano: config.wait.as_nanos().min(u128::from(u64::MAX)) as u64,
            max_spans: config.max_held_spans,
            ..AssemblerLimits::default()
        };
        Self {
            assembler: TraceAssembler::new(limits),
            span_metrics: SpanMetrics::new(config.max_span_series),
            graph: ServiceGraph::new(config.max_edges),
            series: ServiceSeries::new(config.max_span_series),
            evidence: Evidence::new(RcaParams::default()),
            scorer: TraceScorer::new(),
            done: Vec::new(),
            pattern_counters: HashMap::new(),
            names: Names::default(),
            recent: VecDeque::new(),
            interval_ms: config.interval.as_millis().max(1) as i64,
            next_sample_ms: 0,
            edges_learnt: 0,
        }
    }

    /// Counts the spans and holds them until their traces complete.
    pub fn push(&mut self, spans: Vec<Span>) {
        for span in spans {
            self.span_metrics.observe(&span);
            self.assembler.push(span, &mut self.done);
        }
        self.complete();
    }

    /// Completes traces idle at `now_ms`; once per interval, the series' samples.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Sample> {
        let now_nano = u64::try_from(now_ms).unwrap_or(0).saturating_mul(1_000_000);
        self.assembler.flush(now_nano, &mut self.done);
        self.complete();
        if now_ms < self.next_sample_ms {
            return Vec::new();
        }
        self.next_sample_ms = now_ms - now_ms.rem_euclid(self.interval_ms) + self.interval_ms;
        self.series.take_samples(now_ms)
    }

    fn complete(&mut self) {
        for trace in self.done.drain(..) {
            self.graph.observe(&trace);
            self.series.observe(&trace);
            self.evidence.observe(&trace);
            if self.recent.len() == RECENT_TRACES {
                self.recent.pop_front();
            }
            let score = self.scorer.score(&trace).unwrap_or(0.0);
            self.recent.push_back(RecentTrace::of(&trace, score));
        }
    }

    /// Takes the agent's pattern counters (`*_lines_total` with `service` and `pattern`
    /// labels) from any source as log evidence: each increase is that many lines of the
    /// template, at the sample's time.
    pub fn observe_pattern_counts(&mut self, samples: &[Sample], now_ms: i64) {
        for sample in samples {
            if !sample.name.ends_with("_lines_total") {
                continue;
            }
            let label = |name: &str| {
                sample
                    .labels
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.as_str())
            };
            let (Some(service), Some(pattern)) = (label("service"), label("pattern")) else {
                continue;
            };
            let key = format!("{}{:?}", sample.name, sample.labels);
            let followed = self.pattern_counters.len();
            let previous = match self.pattern_counters.get_mut(&key) {
                Some(previous) => std::mem::replace(previous, sample.value),
                None => {
                    if followed < MAX_PATTERN_COUNTERS {
                        self.pattern_counters.insert(key, sample.value);
                    }
                    continue;
                }
            };
            // A drop is a restart of the counter: the new value is all new lines.
            let increase = if sample.value >= previous {
                sample.value - previous
            } else {
                sample.value
            };
            if increase >= 1.0 {
                let at = sample.timestamp_ms.unwrap_or(now_ms);
                let service = self.names.get(service);
                let template = u64::from_str_radix(pattern, 16).unwrap_or_else(|_| hash(pattern));
                self.evidence.observe_log_count(
                    &service,
                    template,
                    u64::try_from(at).unwrap_or(0).saturating_mul(1_000_000),
                    increase as u64,
                );
            }
        }
    }

    /// Call edges not yet handed to correlation (all of them when there are new ones).
    pub fn new_edges(&mut self) -> Option<Vec<(String, String)>> {
        if self.graph.len() == self.edges_learnt {
            return None;
        }
        self.edges_learnt = self.graph.len();
        Some(
            self.graph
                .edges()
                .into_iter()
                .filter(|((c, s), _)| &**c != OVERFLOW && &**s != OVERFLOW)
                .map(|((c, s), _)| (c.to_string(), s.to_string()))
                .collect(),
        )
    }

    /// What spans say of an incident that began at `started_ms`: services ranked by span
    /// evidence, and the traces through the top one, most anomalous first. `None` while
    /// spans point nowhere. A span series' sample at `started_ms` sums the interval before
    /// it, so the spans judged start one interval earlier.
    pub fn context(&self, started_ms: i64, now_ms: i64) -> Option<TraceContext> {
        let since_ms = started_ms.saturating_sub(self.interval_ms);
        let nano = |ms: i64| u64::try_from(ms).unwrap_or(0).saturating_mul(1_000_000);
        let ranking: Vec<(String, f64)> = self
            .evidence
            .rank(nano(since_ms), nano(now_ms).saturating_add(1), &[])
            .into_iter()
            .filter(|c| c.score > 0.0)
            .take(RANKED)
            .map(|c| (c.service, c.score))
            .collect();
        let top = ranking.first()?.0.clone();
        let mut through: Vec<&RecentTrace> = self
            .recent
            .iter()
            .rev()
            .filter(|t| t.start_nano >= nano(since_ms))
            .filter(|t| t.services.iter().any(|(s, _, _)| **s == *top))
            .collect();
        // The most anomalous first; then failed at the top service, then slowest there.
        let at_top = |t: &RecentTrace| {
            let (_, latency, error) = t.services.iter().find(|(s, _, _)| **s == *top)?;
            Some((*error, *latency))
        };
        through.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then_with(|| at_top(b).cmp(&at_top(a)))
        });
        Some(TraceContext {
            ranking,
            exemplar_trace_ids: through
                .into_iter()
                .take(EXEMPLARS)
                .map(|t| t.trace_id.to_string())
                .collect(),
        })
    }

    pub fn assembler(&self) -> &TraceAssembler {
        &self.assembler
    }

    pub fn evidence(&self) -> &Evidence {
        &self.evidence
    }

    pub fn series_dropped(&self) -> u64 {
        self.series.dropped
    }

    pub fn scorer(&self) -> &TraceScorer {
        &self.scorer
    }

    /// The `limit` most anomalous of the recent traces, most anomalous first: trace id,
    /// score, start (ns) and the services it passed through.
    pub fn most_anomalous(&self, limit: usize) -> Vec<serde_json::Value> {
        let mut ranked: Vec<&RecentTrace> = self.recent.iter().filter(|t| t.score > 0.0).collect();
        ranked.sort_by(|a, b| b.score.total_cmp(&a.score));
        ranked
            .into_iter()
            .take(limit)
            .map(|t| {
                serde_json::json!({
                    "trace_id": t.trace_id.to_string(),
                    "score": t.score,
                    "start_unix_nano": t.start_nano.to_string(),
                    "services": t.services.iter().map(|(s, _, _)| s.to_string()).collect::<Vec<_>>(),
                })
            })
            .collect()
    }
}

/// Counters of the receivers.
#[derive(Default)]
pub struct TraceCounters {
    /// Spans accepted, per [`Protocol`].
    pub received: [AtomicU64; 2],
    /// Spans rejected as unusable (partial success), per [`Protocol`].
    pub rejected: [AtomicU64; 2],
    /// Spans refused because the queue was full (the sender was told to retry).
    pub refused: AtomicU64,
}

/// The receivers' shared end: the queue into the pipeline, and the pipeline itself.
pub struct Traces {
    pipeline: Mutex<TracePipeline>,
    queue: mpsc::Sender<Vec<Span>>,
    /// Spans in the queue; a request that would take it past `config.queue` is refused.
    queued: AtomicUsize,
    pub counters: TraceCounters,
    pub config: TracesConfig,
}

/// Why a batch was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum Refused {
    QueueFull,
    Closed,
}

impl Traces {
    /// The shared end and the queue's receiving end (for [`task::run`]).
    pub fn new(config: TracesConfig) -> (Arc<Self>, mpsc::Receiver<Vec<Span>>) {
        // Bounded in spans by `queued`; the channel's own bound only caps tiny requests.
        let (queue, receiver) = mpsc::channel(config.queue.clamp(1, 65_536));
        let traces = Arc::new(Self {
            pipeline: Mutex::new(TracePipeline::new(&config)),
            queue,
            queued: AtomicUsize::new(0),
            counters: TraceCounters::default(),
            config,
        });
        (traces, receiver)
    }

    pub fn pipeline(&self) -> MutexGuard<'_, TracePipeline> {
        self.pipeline.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a request's spans; counts them as received, or as refused.
    pub fn offer(
        &self,
        protocol: Protocol,
        spans: Vec<Span>,
        rejected: u64,
    ) -> Result<(), Refused> {
        let count = spans.len() as u64;
        self.counters.rejected[protocol as usize].fetch_add(rejected, Ordering::Relaxed);
        if spans.is_empty() {
            return Ok(());
        }
        let n = spans.len();
        let admitted = self
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                (queued + n <= self.config.queue).then_some(queued + n)
            })
            .is_ok();
        if !admitted {
            self.counters.refused.fetch_add(count, Ordering::Relaxed);
            return Err(Refused::QueueFull);
        }
        match self.queue.try_send(spans) {
            Ok(()) => {
                self.counters.received[protocol as usize].fetch_add(count, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                self.queued.fetch_sub(n, Ordering::AcqRel);
                match error {
                    mpsc::error::TrySendError::Full(_) => {
                        self.counters.refused.fetch_add(count, Ordering::Relaxed);
                        Err(Refused::QueueFull)
                    }
                    mpsc::error::TrySendError::Closed(_) => Err(Refused::Closed),
                }
            }
        }
    }

    /// Takes a batch out of the queue's count once the pipeline has it.
    pub fn dequeued(&self, spans: usize) {
        self.queued.fetch_sub(spans, Ordering::AcqRel);
    }

    /// Spans waiting in the queue.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
}
