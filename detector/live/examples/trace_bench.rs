//! Spans per second per core through the whole trace path: OTLP protobuf decode → span
//! metrics → trace assembly → service graph → per-service series → root-cause evidence
//! and exemplars (the live `TracePipeline`), on pre-encoded batches of 512 spans; then the
//! heap held per service-graph edge and per span-metrics series, measured by a counting
//! allocator. Run by `bench/traces.sh`; single-threaded, so spans/s is per core.
//!
//! `cargo run --release -p omen-detector-live --example trace_bench -- [SPANS] [RUNS]`

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use omen_detector::traces::otlp;
use omen_detector::traces::red::{ServiceGraph, SpanMetrics};
use omen_detector::traces::{
    EdgeFacts, Names, Span, SpanId, SpanKind, StatusCode, TraceFacts, TraceId,
};
use omen_detector_live::config::TracesConfig;
use omen_detector_live::traces::TracePipeline;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
use prost::Message;

struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const SERVICES: u64 = 20;
const SPANS_PER_TRACE: u64 = 8;
const BATCH: u64 = 512;

/// A chain of `SPANS_PER_TRACE` spans over consecutive services, 1 ms each level.
fn trace_spans(trace: u64, start: u64) -> Vec<(u64, OtlpSpan)> {
    (0..SPANS_PER_TRACE)
        .map(|level| {
            let service = (trace + level) % SERVICES;
            let mut trace_id = [0u8; 16];
            trace_id[..8].copy_from_slice(&(trace + 1).to_be_bytes());
            let span = OtlpSpan {
                trace_id: trace_id.to_vec(),
                span_id: (trace * 64 + level + 1).to_be_bytes().to_vec(),
                parent_span_id: if level == 0 {
                    Vec::new()
                } else {
                    (trace * 64 + level).to_be_bytes().to_vec()
                },
                name: format!("op{}", level % 4),
                kind: if level == 0 { 2 } else { 3 },
                start_time_unix_nano: start + level * 1_000_000,
                end_time_unix_nano: start + (SPANS_PER_TRACE * 2 - level) * 1_000_000,
                ..Default::default()
            };
            (service, span)
        })
        .collect()
}

/// Batches of `BATCH` spans, one resource per service within a batch.
fn batches(spans: u64) -> Vec<Vec<u8>> {
    let traces = spans / SPANS_PER_TRACE;
    let per_batch = BATCH / SPANS_PER_TRACE;
    (0..traces.div_ceil(per_batch))
        .map(|b| {
            let mut by_service: Vec<Vec<OtlpSpan>> = vec![Vec::new(); SERVICES as usize];
            for t in b * per_batch..((b + 1) * per_batch).min(traces) {
                let start = 1_700_000_000_000_000_000 + t * 5_000_000;
                for (service, span) in trace_spans(t, start) {
                    by_service[service as usize].push(span);
                }
            }
            let resource_spans = by_service
                .into_iter()
                .enumerate()
                .filter(|(_, s)| !s.is_empty())
                .map(|(service, spans)| ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![KeyValue {
                            key: "service.name".into(),
                            value: Some(AnyValue {
                                value: Some(Value::StringValue(format!("service-{service}"))),
                            }),
                            ..Default::default()
                        }],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans,
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect();
            ExportTraceServiceRequest { resource_spans }.encode_to_vec()
        })
        .collect()
}

fn run(batches: &[Vec<u8>]) -> (f64, u64) {
    let mut pipeline = TracePipeline::new(&TracesConfig::default());
    let started = Instant::now();
    let mut spans = 0;
    for (i, body) in batches.iter().enumerate() {
        // As the receiver does: a fresh interner per request.
        let decoded = otlp::decode_protobuf(body, &mut Names::default()).expect("decodes");
        spans += decoded.spans.len() as u64;
        pipeline.push(decoded.spans);
        if i % 64 == 63 {
            // The live pipeline ticks each second; here every 32,768 spans (≈ 0.02 s).
            let clock = pipeline.assembler().clock() / 1_000_000;
            pipeline.tick(clock as i64);
        }
    }
    pipeline.tick(i64::MAX / 2_000_000);
    (started.elapsed().as_secs_f64(), spans)
}

fn held() -> isize {
    HELD.load(Ordering::Relaxed)
}

/// Heap bytes per key, adding `n` keys to a fresh aggregate.
fn memory_per_key(n: usize) -> (f64, f64) {
    let mut names = Names::default();
    let before = held();
    let mut metrics = SpanMetrics::new(usize::MAX);
    let services: Vec<_> = (0..n).map(|i| names.get(&format!("service-{i}"))).collect();
    let op = names.get("GET /api/v1/items");
    let after_names = held();
    for service in &services {
        metrics.observe(&Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([1; 8]),
            parent_id: None,
            service: service.clone(),
            name: op.clone(),
            kind: SpanKind::Server,
            start_unix_nano: 0,
            duration_nano: 1_000_000,
            status: StatusCode::Unset,
        });
    }
    let per_series = (held() - after_names) as f64 / n as f64;
    let mut graph = ServiceGraph::new(usize::MAX);
    let graph_before = held();
    let edges: Vec<EdgeFacts> = services
        .windows(2)
        .map(|pair| EdgeFacts {
            client: pair[0].clone(),
            server: pair[1].clone(),
            start_unix_nano: 0,
            client_nano: 2_000_000,
            server_nano: 1_000_000,
            failed: false,
        })
        .collect();
    let facts = TraceFacts {
        edges,
        ..TraceFacts::default()
    };
    let facts_bytes = held() - graph_before;
    graph.observe(&facts);
    let per_edge = (held() - graph_before - facts_bytes) as f64 / (n - 1) as f64;
    drop((metrics, graph, facts));
    let _ = before;
    (per_series, per_edge)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let spans: u64 = args.next().map_or(2_000_000, |a| a.parse().expect("SPANS"));
    let runs: usize = args.next().map_or(5, |a| a.parse().expect("RUNS"));
    let batches = batches(spans);
    let mut rates: Vec<f64> = (0..runs)
        .map(|_| {
            let (seconds, count) = run(&batches);
            count as f64 / seconds
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "{} spans in batches of {BATCH}, {runs} runs: median {:.0} spans/s per core (min {:.0}, max {:.0})",
        spans,
        median,
        rates[0],
        rates[rates.len() - 1]
    );
    println!(
        "target 500000 spans/s per core: {}",
        if median >= 500_000.0 {
            "met"
        } else {
            "NOT met"
        }
    );
    let (per_series, per_edge) = memory_per_key(10_000);
    println!(
        "heap per span-metrics series: {per_series:.0} B; per service-graph edge: {per_edge:.0} B"
    );
}
