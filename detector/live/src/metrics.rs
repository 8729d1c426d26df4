//! `/metrics`: the engine's scores and bands per series, and the detector's self-metrics,
//! as Prometheus text exposition. Reads the engine, never changes it; the engine itself
//! knows nothing of the format.

use std::collections::BTreeMap;

use omen_common::exposition::{write_header, write_sample, MetricType};

use crate::engine::{Engine, LastPoint, Origin, Stats, LATENCY_BUCKETS};
use crate::sinks::SinkCounts;

/// Prometheus text exposition of the scores, bands and self-metrics.
pub fn render(engine: &Engine, sink_stats: &[(String, SinkCounts)]) -> String {
    let points = engine.last_points();
    let mut out = String::with_capacity(2048 + points.len() * 600);
    series_families(&mut out, &points);
    incident_gauges(&mut out, engine);
    counters(&mut out, engine.stats());
    scoring_latency(&mut out, engine.stats());
    ingest(&mut out, engine.stats());
    sinks(&mut out, sink_stats);
    write_header(
        &mut out,
        "omen_detector_last_snapshot_timestamp_seconds",
        "When model state was last saved (0: never).",
        MetricType::Gauge,
    );
    sample(
        &mut out,
        "omen_detector_last_snapshot_timestamp_seconds",
        &[],
        engine.stats().last_snapshot_s,
    );
    out
}

type Point<'a> = (&'a str, &'a BTreeMap<String, String>, &'a LastPoint);

/// One family per field of the last point, each series a sample.
fn series_families(out: &mut String, points: &[Point<'_>]) {
    type Field = fn(&LastPoint) -> f64;
    let families: [(&str, &str, Field); 6] = [
        (
            "omen_series_value",
            "The value modelled (a per-second rate for counters).",
            |l| l.value,
        ),
        (
            "omen_anomaly_score",
            "Anomaly score in [0, 1]; at or above the alarm level is an anomaly.",
            |l| l.score,
        ),
        (
            "omen_baseline_expected",
            "The value the baseline expected.",
            |l| l.expected,
        ),
        (
            "omen_baseline_lower",
            "Lower edge of the expected band.",
            |l| l.lower,
        ),
        (
            "omen_baseline_upper",
            "Upper edge of the expected band.",
            |l| l.upper,
        ),
        (
            "omen_series_learning",
            "1 while the series' full model warms up (only an obvious change alarms), else 0.",
            |l| l.learning,
        ),
    ];
    let labels: Vec<Vec<(&str, &str)>> = points
        .iter()
        .map(|(name, labels, _)| series_labels(name, labels))
        .collect();
    for (family, help, field) in families {
        write_header(out, family, help, MetricType::Gauge);
        for ((_, _, last), labels) in points.iter().zip(&labels) {
            sample(out, family, labels, field(last));
        }
    }
}

fn incident_gauges(out: &mut String, engine: &Engine) {
    let gauges: [(&str, &str, MetricType, f64); 4] = [
        (
            "omen_incidents_open",
            "Incidents open now.",
            MetricType::Gauge,
            engine.correlator().open().len() as f64,
        ),
        (
            "omen_detector_correlating",
            "1 while this detector correlates anomalies into incidents (with Kafka, one of the group does).",
            MetricType::Gauge,
            f64::from(u8::from(engine.is_correlating())),
        ),
        (
            "omen_incidents_total",
            "Incidents opened.",
            MetricType::Counter,
            engine.stats().incidents as f64,
        ),
        (
            "omen_detector_series",
            "Series modelled.",
            MetricType::Gauge,
            engine.series_count() as f64,
        ),
    ];
    for (name, help, kind, value) in gauges {
        write_header(out, name, help, kind);
        sample(out, name, &[], value);
    }
}

fn counters(out: &mut String, stats: &Stats) {
    let counters: [(&str, &str, u64); 10] = [
        ("omen_detector_points_total", "Points scored.", stats.points),
        (
            "omen_detector_anomalies_total",
            "Points scored as anomalies.",
            stats.anomalies,
        ),
        (
            "omen_detector_early_warnings_total",
            "Early warnings raised.",
            stats.warnings,
        ),
        (
            "omen_detector_series_dropped_total",
            "Samples of new series refused at store.max_series.",
            stats.dropped,
        ),
        (
            "omen_detector_series_expired_total",
            "Series forgotten after store.ttl without samples.",
            stats.expired,
        ),
        (
            "omen_detector_series_handed_in_total",
            "Series whose model state was taken over from another detector.",
            stats.handed_in,
        ),
        (
            "omen_detector_evidence_published_total",
            "Anomalies and still-active points sent to the correlator on the anomalies topic.",
            stats.evidence_published,
        ),
        (
            "omen_detector_evidence_correlated_total",
            "Anomalies and still-active points from the anomalies topic correlated here.",
            stats.evidence_correlated,
        ),
        (
            "omen_detector_out_of_order_total",
            "Samples not newer than their series' last, skipped.",
            stats.out_of_order,
        ),
        (
            "omen_detector_future_samples_total",
            "Samples stamped more than 10 minutes ahead of the detector's clock, skipped.",
            stats.from_future,
        ),
    ];
    for (name, help, value) in counters {
        write_header(out, name, help, MetricType::Counter);
        sample(out, name, &[], value as f64);
    }
}

fn scoring_latency(out: &mut String, stats: &Stats) {
    let name = "omen_detector_scoring_seconds";
    write_header(out, name, "Time to score one point.", MetricType::Histogram);
    let bucket = "omen_detector_scoring_seconds_bucket";
    for (count, bound) in stats.latency_buckets.iter().zip(LATENCY_BUCKETS) {
        let le = format!("{bound:e}");
        sample(out, bucket, &[("le", &le)], *count as f64);
    }
    sample(out, bucket, &[("le", "+Inf")], stats.points as f64);
    sample(
        out,
        "omen_detector_scoring_seconds_sum",
        &[],
        stats.latency_sum,
    );
    sample(
        out,
        "omen_detector_scoring_seconds_count",
        &[],
        stats.points as f64,
    );
}

fn ingest(out: &mut String, stats: &Stats) {
    let name = "omen_detector_samples_total";
    write_header(
        out,
        name,
        "Samples received, by source.",
        MetricType::Counter,
    );
    for source in Origin::ALL {
        let count = stats.samples.get(&source).copied().unwrap_or(0);
        sample(out, name, &[("source", source.as_str())], count as f64);
    }
    let name = "omen_detector_samples_skipped_total";
    write_header(
        out,
        name,
        "Samples not modelled, by source and reason (default_exclude, exclude, not_included).",
        MetricType::Counter,
    );
    for ((source, skip), count) in &stats.skipped {
        let labels = [("source", source.as_str()), ("reason", skip.as_str())];
        sample(out, name, &labels, *count as f64);
    }
    let name = "omen_detector_ingest_errors_total";
    write_header(
        out,
        name,
        "Failed scrapes, polls and requests, by source and reason.",
        MetricType::Counter,
    );
    for ((source, reason), count) in &stats.errors {
        let labels = [("source", source.as_str()), ("reason", *reason)];
        sample(out, name, &labels, *count as f64);
    }
}

fn sinks(out: &mut String, sink_stats: &[(String, SinkCounts)]) {
    type SinkField = fn(&SinkCounts) -> u64;
    let families: [(&str, &str, MetricType, SinkField); 4] = [
        (
            "omen_detector_alerts_sent_total",
            "Alert updates delivered, by sink.",
            MetricType::Counter,
            |c| c.sent,
        ),
        (
            "omen_detector_alerts_failed_total",
            "Failed delivery attempts (retried), by sink.",
            MetricType::Counter,
            |c| c.failed,
        ),
        (
            "omen_detector_alerts_dropped_total",
            "Alert updates dropped from a full queue, by sink.",
            MetricType::Counter,
            |c| c.dropped,
        ),
        (
            "omen_detector_alert_queue_length",
            "Alert updates waiting, by sink.",
            MetricType::Gauge,
            |c| c.queued,
        ),
    ];
    for (name, help, kind, field) in families {
        write_header(out, name, help, kind);
        for (sink, counts) in sink_stats {
            sample(out, name, &[("sink", sink)], field(counts) as f64);
        }
    }
}

/// The labels of a series' score samples: `metric` (the source metric's name) and the
/// source labels; a source label called `metric` becomes `exported_metric`.
fn series_labels<'a>(
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
) -> Vec<(&'a str, &'a str)> {
    let mut out = Vec::with_capacity(labels.len() + 1);
    out.push(("metric", name));
    for (k, v) in labels {
        let k = if k == "metric" {
            "exported_metric"
        } else {
            k.as_str()
        };
        out.push((k, v.as_str()));
    }
    out
}

/// One sample line, labels as written here.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    write_sample(out, name, labels.iter().copied(), value);
}
