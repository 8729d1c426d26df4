//! The traces' part of `/metrics`: span metrics and the service graph under Tempo's
//! metrics-generator names (so Grafana's service-graph and RED views work unchanged), and
//! the receivers' self-metrics.

use std::sync::atomic::Ordering;

use omen_common::exposition::{write_header, write_sample, MetricType};
use omen_detector::traces::red::{Histogram, SpanKey};

use super::{Protocol, TracePipeline, Traces};

fn histogram(out: &mut String, name: &str, labels: &[(&str, &str)], h: &Histogram) {
    let bucket = format!("{name}_bucket");
    for (bound, count) in h.cumulative() {
        let le = if bound.is_infinite() {
            "+Inf".to_owned()
        } else {
            omen_common::exposition::format_value(bound)
        };
        let with_le = labels.iter().copied().chain([("le", le.as_str())]);
        write_sample(out, &bucket, with_le, count as f64);
    }
    write_sample(out, &format!("{name}_sum"), labels.iter().copied(), h.sum);
    write_sample(
        out,
        &format!("{name}_count"),
        labels.iter().copied(),
        h.count as f64,
    );
}

fn span_labels(key: &SpanKey) -> [(&str, &str); 4] {
    [
        ("service", &*key.service),
        ("span_name", &*key.span_name),
        ("span_kind", key.kind.0),
        ("status_code", key.status.0),
    ]
}

/// Appends the traces' families to `out`.
pub fn render(out: &mut String, traces: &Traces) {
    let pipeline = traces.pipeline();
    span_families(out, &pipeline);
    graph_families(out, &pipeline);
    self_metrics(out, traces, &pipeline);
}

fn span_families(out: &mut String, pipeline: &TracePipeline) {
    let spans = pipeline.span_metrics.series();
    write_header(
        out,
        "traces_spanmetrics_calls_total",
        "Spans received, per service, span name, kind and status.",
        MetricType::Counter,
    );
    for (key, stats) in &spans {
        let labels = span_labels(key);
        write_sample(
            out,
            "traces_spanmetrics_calls_total",
            labels,
            stats.calls as f64,
        );
    }
    write_header(
        out,
        "traces_spanmetrics_latency",
        "Span durations in seconds.",
        MetricType::Histogram,
    );
    for (key, stats) in &spans {
        let labels = span_labels(key);
        histogram(out, "traces_spanmetrics_latency", &labels, &stats.latency);
    }
}

fn graph_families(out: &mut String, pipeline: &TracePipeline) {
    let edges = pipeline.graph.edges();
    type Field = fn(&omen_detector::traces::red::EdgeStats) -> u64;
    let counters: [(&str, &str, Field); 2] = [
        (
            "traces_service_graph_request_total",
            "Requests between two services.",
            |e| e.requests,
        ),
        (
            "traces_service_graph_request_failed_total",
            "Failed requests between two services.",
            |e| e.failed,
        ),
    ];
    for (name, help, field) in counters {
        write_header(out, name, help, MetricType::Counter);
        for ((client, server), stats) in &edges {
            write_sample(
                out,
                name,
                [("client", &**client), ("server", &**server)],
                field(stats) as f64,
            );
        }
    }
    for (name, help, client_side) in [
        (
            "traces_service_graph_request_client_seconds",
            "Request durations seen by the client.",
            true,
        ),
        (
            "traces_service_graph_request_server_seconds",
            "Request durations seen by the server.",
            false,
        ),
    ] {
        write_header(out, name, help, MetricType::Histogram);
        for ((client, server), stats) in &edges {
            let h = if client_side {
                &stats.client
            } else {
                &stats.server
            };
            histogram(out, name, &[("client", client), ("server", server)], h);
        }
    }
}

fn self_metrics(out: &mut String, traces: &Traces, pipeline: &TracePipeline) {
    let assembler = pipeline.assembler().counts();
    let plain: [(&str, &str, MetricType, f64); 9] = [
        ("omen_traces_features", "Columns of the trace feature space (services' self time and errors, edges' gaps).", MetricType::Gauge, pipeline.scorer().features_used() as f64),
        ("traces_service_graph_unpaired_spans_total", "Spans whose parent never arrived.", MetricType::Counter, pipeline.graph.unpaired as f64),
        ("omen_traces_completed_total", "Traces completed and learnt from.", MetricType::Counter, assembler.traces as f64),
        ("omen_traces_forced_total", "Traces completed early to stay within max_held_spans.", MetricType::Counter, assembler.forced as f64),
        ("omen_traces_spans_held", "Spans held while their traces complete.", MetricType::Gauge, pipeline.assembler().held_spans() as f64),
        ("omen_traces_span_series", "Span-metrics series kept.", MetricType::Gauge, pipeline.span_metrics.len() as f64),
        ("omen_traces_edges", "Service-graph edges kept.", MetricType::Gauge, pipeline.graph.len() as f64),
        ("omen_traces_spans_refused_total", "Spans refused because the queue was full (the sender retries).", MetricType::Counter, traces.counters.refused.load(Ordering::Relaxed) as f64),
        ("omen_traces_series_overflow_total", "Spans and edges folded into an overflow series, or services not modelled, past a budget.", MetricType::Counter, (pipeline.span_metrics.overflowed + pipeline.graph.overflowed + pipeline.series_dropped()) as f64),
    ];
    for (name, help, kind, value) in plain {
        write_header(out, name, help, kind);
        write_sample(out, name, std::iter::empty(), value);
    }
    write_header(
        out,
        "omen_traces_spans_dropped_total",
        "Spans dropped: past max_spans_per_trace in one trace.",
        MetricType::Counter,
    );
    write_sample(
        out,
        "omen_traces_spans_dropped_total",
        [("reason", "trace_too_large")],
        assembler.dropped_spans as f64,
    );
    for (name, help, counters) in [
        (
            "omen_traces_spans_received_total",
            "Spans accepted, per protocol.",
            &traces.counters.received,
        ),
        (
            "omen_traces_spans_rejected_total",
            "Spans rejected as unusable (partial success), per protocol.",
            &traces.counters.rejected,
        ),
    ] {
        write_header(out, name, help, MetricType::Counter);
        for protocol in Protocol::ALL {
            let value = counters[protocol as usize].load(Ordering::Relaxed);
            write_sample(out, name, [("protocol", protocol.as_str())], value as f64);
        }
    }
}
