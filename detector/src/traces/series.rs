//! The series the models watch for traces: per service and per call edge, a few signals
//! that each catch one kind of fault, sampled once per interval. They go into the same
//! per-series models as every other metric, so baselines, the forest and correlation apply
//! to them unchanged; the `service` label (the callee's, on an edge) lets correlation join
//! them with the service's other series.
//!
//! | series | kind | catches |
//! |---|---|---|
//! | `traces_service_calls_total{service}` | counter | traffic lost or flooding |
//! | `traces_service_errors_total{service}` | counter | errors that start here (origin errors) |
//! | `traces_service_latency_seconds{service}` | mean per interval | slow requests |
//! | `traces_service_self_seconds{service}` | mean per interval | a slow service, not its callees |
//! | `traces_service_graph_gap_seconds{client, server, service}` | mean per interval | a delay on the wire or at the callee's door |
//!
//! A mean is taken over at least [`MIN_VALUES`] requests: an interval with fewer sends no
//! sample and its requests count towards the next one. So a mean's noise does not swell
//! at night when traffic is thin (a model's bands, learnt over the whole day, fit every
//! hour of it), samples never share a request (an excursion is not repeated), and no
//! traffic is no evidence.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::assemble::TraceFacts;
use crate::wire::{Sample, ValueKind};

/// Requests a mean is taken over, at least.
pub const MIN_VALUES: usize = 20;

/// The mean of the values since the last mean, once there are [`MIN_VALUES`] of them.
#[derive(Clone, Copy, Debug, Default)]
struct Mean {
    sum: f64,
    count: u64,
}

impl Mean {
    fn add(&mut self, value: f64) {
        self.sum += value;
        self.count += 1;
    }

    fn take(&mut self) -> Option<f64> {
        if (self.count as usize) < MIN_VALUES {
            return None;
        }
        let mean = self.sum / self.count as f64;
        *self = Mean::default();
        Some(mean)
    }
}

#[derive(Clone, Debug, Default)]
struct ServiceSignals {
    calls: u64,
    errors: u64,
    latency: Mean,
    self_time: Mean,
}

/// Accumulates completed traces and emits one sample per series per interval.
#[derive(Debug)]
pub struct ServiceSeries {
    services: BTreeMap<Arc<str>, ServiceSignals>,
    gaps: BTreeMap<(Arc<str>, Arc<str>), Mean>,
    max_keys: usize,
    /// Services and edges past `max_keys`, not modelled.
    pub dropped: u64,
}

impl ServiceSeries {
    pub fn new(max_keys: usize) -> Self {
        Self {
            services: BTreeMap::new(),
            gaps: BTreeMap::new(),
            max_keys,
            dropped: 0,
        }
    }

    fn room(&self) -> bool {
        self.services.len() + self.gaps.len() < self.max_keys
    }

    pub fn observe(&mut self, trace: &TraceFacts) {
        for fact in &trace.spans {
            let span = &fact.span;
            if !self.services.contains_key(&span.service) && !self.room() {
                self.dropped += 1;
                continue;
            }
            let signals = self.services.entry(span.service.clone()).or_default();
            if fact.entry {
                signals.calls += 1;
                signals.latency.add(span.duration_nano as f64 / 1e9);
            }
            signals.errors += u64::from(fact.origin_error);
            if !fact.calls_out {
                signals.self_time.add(fact.self_nano as f64 / 1e9);
            }
        }
        for edge in &trace.edges {
            let key = (edge.client.clone(), edge.server.clone());
            if !self.gaps.contains_key(&key) && !self.room() {
                self.dropped += 1;
                continue;
            }
            self.gaps
                .entry(key)
                .or_default()
                .add(edge.gap_nano() as f64 / 1e9);
        }
    }

    /// The samples of the interval ending at `timestamp_ms`; means restart.
    pub fn take_samples(&mut self, timestamp_ms: i64) -> Vec<Sample> {
        let mut out = Vec::with_capacity(self.services.len() * 4 + self.gaps.len());
        let sample = |name: &str, labels: Vec<(String, String)>, value, kind| Sample {
            name: name.to_owned(),
            labels,
            value,
            timestamp_ms: Some(timestamp_ms),
            kind,
        };
        for (service, signals) in &mut self.services {
            let labels = vec![("service".to_owned(), service.to_string())];
            out.push(sample(
                "traces_service_calls_total",
                labels.clone(),
                signals.calls as f64,
                ValueKind::Counter,
            ));
            out.push(sample(
                "traces_service_errors_total",
                labels.clone(),
                signals.errors as f64,
                ValueKind::Counter,
            ));
            if let Some(mean) = signals.latency.take() {
                out.push(sample(
                    "traces_service_latency_seconds",
                    labels.clone(),
                    mean,
                    ValueKind::Gauge,
                ));
            }
            if let Some(mean) = signals.self_time.take() {
                out.push(sample(
                    "traces_service_self_seconds",
                    labels,
                    mean,
                    ValueKind::Gauge,
                ));
            }
        }
        for ((client, server), gap) in &mut self.gaps {
            if let Some(mean) = gap.take() {
                let labels = vec![
                    ("client".to_owned(), client.to_string()),
                    ("server".to_owned(), server.to_string()),
                    ("service".to_owned(), server.to_string()),
                ];
                out.push(sample(
                    "traces_service_graph_gap_seconds",
                    labels,
                    mean,
                    ValueKind::Gauge,
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::span::{Span, StatusCode, TraceId};

    fn span(id: u8, parent: Option<u8>, service: &str, start: u64, ms: u64) -> Span {
        crate::traces::assemble::tests::span(1, id, parent, service, start, ms * 1_000_000)
    }

    #[test]
    fn one_interval_gives_rates_means_and_gaps_and_quiet_means_are_not_sent() {
        let mut series = ServiceSeries::new(100);
        let mut db = span(3, Some(2), "db", 2_000_000, 4);
        db.status = StatusCode::Error;
        let trace = TraceFacts::from_spans(
            TraceId([1; 16]),
            vec![
                span(1, None, "web", 0, 10),
                span(2, Some(1), "web", 1_000_000, 6),
                db,
            ],
        );
        for _ in 0..MIN_VALUES {
            series.observe(&trace);
        }
        let samples = series.take_samples(1_000);
        let find = |name: &str, service: &str| {
            samples
                .iter()
                .find(|s| {
                    s.name == name && s.labels.iter().any(|(k, v)| k == "service" && v == service)
                })
                // Means of repeated sums: compare at the microsecond.
                .map(|s| (s.value * 1e6).round() / 1e6)
        };
        assert_eq!(
            find("traces_service_calls_total", "web"),
            Some(MIN_VALUES as f64),
            "one request a trace entered web"
        );
        assert_eq!(
            find("traces_service_errors_total", "db"),
            Some(MIN_VALUES as f64)
        );
        assert_eq!(find("traces_service_latency_seconds", "web"), Some(0.010));
        // web's server span works 10 - 6 = 4 ms; its client span (calls db) is not work.
        assert_eq!(find("traces_service_self_seconds", "web"), Some(0.004));
        assert_eq!(find("traces_service_graph_gap_seconds", "db"), Some(0.002));
        let quiet = series.take_samples(2_000);
        assert_eq!(
            quiet.len(),
            4,
            "only the two counters per service: {quiet:?}"
        );
    }

    #[test]
    fn a_thin_interval_waits_for_enough_requests() {
        let mut mean = Mean::default();
        for _ in 0..MIN_VALUES {
            mean.add(1.0);
        }
        assert_eq!(mean.take(), Some(1.0));
        mean.add(3.0);
        assert_eq!(mean.take(), None, "one request is not a mean");
        for _ in 1..MIN_VALUES {
            mean.add(1.0);
        }
        let expected = (3.0 + (MIN_VALUES - 1) as f64) / MIN_VALUES as f64;
        assert_eq!(
            mean.take(),
            Some(expected),
            "the thin interval's request counts next time"
        );
        assert_eq!(mean.take(), None, "no request, no evidence");
    }
}
