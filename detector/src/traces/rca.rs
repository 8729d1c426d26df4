//! Root cause from spans: which service, started it. [`Evidence`] keeps a bounded sample of
//! what each service and each call edge did over time; [`Evidence::rank`] compares the
//! time since an incident began with the time before it and ranks every service.
//!
//! Three signals, each measured in the same unit (how many e-folds the median rose, less
//! its own sampling noise, so a service with a handful of spans cannot win by chance):
//! - **self time**: the time a service spends in its own spans, not waiting on calls. A
//!   CPU-starved service shows here, its callers do not (their waiting is not self time).
//! - **edge gap**: client time minus server time on a call. A delay on the wire or in the
//!   callee's ingress shows only here: the callee's own spans stay flat, so a per-service
//!   latency ranking would blame the caller. A gap that rose is evidence against both ends:
//!   the callee (summed over its incoming edges) and the caller (over its outgoing edges).
//!   A delay at one callee's door rises on all its incoming edges but on one of each
//!   caller's outgoing edges; a caller that is slow to send rises on all its outgoing ones.
//!   On a tie the callee ranks first.
//! - **origin errors**: error spans none of whose children failed, where errors start
//!   rather than where they are passed up (the log ratio of the error rates).
//! - **log templates** (when logs are given, `logs.rs`): the largest rate change of one of
//!   the service's templates: an exception that starts, a line that stops.
//!
//! A service's score is the sum. Where the time before the incident holds fewer than
//! `min_before` values of a key, a fault-free reference period (when given) tops it up.

use std::collections::HashMap;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use serde::Serialize;

use super::assemble::TraceFacts;
use super::logs::LogRates;

/// The ranking's settings: one set for every system.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RcaParams {
    /// A rise counts only past this many standard errors of its own estimate.
    pub noise_multiplier: f64,
    /// Added to every duration before taking logs (ns): below it, changes are noise of
    /// the clock and the scheduler, not a fault.
    pub floor_nano: f64,
    /// Fewer values than this on either side: no evidence.
    pub min_values: usize,
    /// Fewer values than this before the incident: the reference period tops them up.
    pub min_before: usize,
    /// Values sampled per key per bucket of `bucket_nano`.
    pub sample_per_bucket: usize,
    pub bucket_nano: u64,
    /// Buckets kept per key (older ones are dropped).
    pub buckets: usize,
    /// Services kept, and edges kept (each); samples of further ones are counted.
    pub max_keys: usize,
}

impl Default for RcaParams {
    fn default() -> Self {
        Self {
            noise_multiplier: 1.5,
            floor_nano: 1e6,
            min_values: 3,
            min_before: 20,
            sample_per_bucket: 256,
            bucket_nano: 10_000_000_000,
            buckets: 90,
            max_keys: 2_000,
        }
    }
}

/// One sampled value: when, how long (self time or gap, ns; none for a client span, whose
/// self time is the wire's, already counted on its edge), and whether it failed (an origin
/// error, for a service's spans).
#[derive(Clone, Copy, Debug)]
struct Sample {
    at: u64,
    nano: Option<f32>,
    error: bool,
}

/// Time buckets of reservoir samples: a bounded, uniform sample of each bucket.
#[derive(Clone, Debug, Default)]
struct Samples {
    /// (bucket index, values seen in it, sample).
    buckets: std::collections::VecDeque<(u64, u64, Vec<Sample>)>,
}

impl Samples {
    fn add(&mut self, sample: Sample, params: &RcaParams, rng: &mut Xoshiro256PlusPlus) {
        let index = sample.at / params.bucket_nano.max(1);
        let position = self
            .buckets
            .iter()
            .rposition(|(i, _, _)| *i <= index)
            .filter(|&p| self.buckets[p].0 == index);
        let slot = match position {
            Some(p) => p,
            None => {
                // Insert keeping bucket order; samples arrive nearly in time order.
                let at = self.buckets.partition_point(|(i, _, _)| *i < index);
                self.buckets.insert(at, (index, 0, Vec::new()));
                while self.buckets.len() > params.buckets {
                    self.buckets.pop_front();
                }
                match self.buckets.iter().position(|(i, _, _)| *i == index) {
                    Some(p) => p,
                    None => return, // older than everything kept
                }
            }
        };
        let (_, seen, values) = &mut self.buckets[slot];
        *seen += 1;
        if values.len() < params.sample_per_bucket {
            values.push(sample);
        } else {
            let pick = rng.gen_range(0..*seen);
            if (pick as usize) < values.len() {
                values[pick as usize] = sample;
            }
        }
    }

    fn between(&self, from: u64, to: u64) -> impl Iterator<Item = &Sample> {
        self.buckets
            .iter()
            .flat_map(|(_, _, v)| v.iter())
            .filter(move |s| s.at >= from && s.at < to)
    }

    fn all(&self) -> impl Iterator<Item = &Sample> {
        self.buckets.iter().flat_map(|(_, _, v)| v.iter())
    }
}

#[derive(Clone, Debug, Default)]
struct Keys {
    services: HashMap<Arc<str>, Samples>,
    edges: HashMap<(Arc<str>, Arc<str>), Samples>,
    /// Samples of services or edges past `max_keys`, not kept.
    dropped: u64,
}

impl Keys {
    fn observe(&mut self, trace: &TraceFacts, params: &RcaParams, rng: &mut Xoshiro256PlusPlus) {
        for fact in &trace.spans {
            let sample = Sample {
                at: fact.span.start_unix_nano,
                nano: (!fact.calls_out).then_some(fact.self_nano as f32),
                error: fact.origin_error,
            };
            let room = self.services.len() < params.max_keys;
            match self.services.get_mut(&fact.span.service) {
                Some(samples) => samples.add(sample, params, rng),
                None if room => self
                    .services
                    .entry(fact.span.service.clone())
                    .or_default()
                    .add(sample, params, rng),
                None => self.dropped += 1,
            }
        }
        for edge in &trace.edges {
            let sample = Sample {
                at: edge.start_unix_nano,
                nano: Some(edge.gap_nano() as f32),
                error: edge.failed,
            };
            let key = (edge.client.clone(), edge.server.clone());
            let room = self.edges.len() < params.max_keys;
            match self.edges.get_mut(&key) {
                Some(samples) => samples.add(sample, params, rng),
                None if room => self.edges.entry(key).or_default().add(sample, params, rng),
                None => self.dropped += 1,
            }
        }
    }
}

/// Summed rise of a service's incoming gaps, and its worst edge with that edge's rise.
type Ingress = (f64, Option<(f64, EdgeEvidence)>);

/// What spans say about every service and edge, over time; see the module doc.
pub struct Evidence {
    params: RcaParams,
    live: Keys,
    reference: Keys,
    logs: LogRates,
    reference_logs: LogRates,
    rng: Xoshiro256PlusPlus,
}

/// Log-template keys (service, template) kept, live and in the reference each.
const MAX_LOG_KEYS: usize = 50_000;

/// One service's place in a ranking, with the evidence behind it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Candidate {
    pub service: String,
    pub score: f64,
    /// Rise of the median self time (e-folds past noise).
    pub self_time: f64,
    /// Summed rise of the gap on calls into the service.
    pub ingress_gap: f64,
    /// Summed rise of the gap on calls out of the service.
    pub egress_gap: f64,
    /// Rise of the origin-error rate (log rate ratio past noise).
    pub errors: f64,
    /// The largest rate change of one of the service's log templates (e-folds past noise).
    pub logs: f64,
    pub spans_before: usize,
    pub spans_during: usize,
    /// Median self time before and during (ms), when there were spans.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_ms_before: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub self_ms_during: Option<f64>,
    /// The incoming edge whose gap rose most: caller and its median gap before and during.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worst_ingress: Option<EdgeEvidence>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EdgeEvidence {
    pub client: String,
    pub gap_ms_before: f64,
    pub gap_ms_during: f64,
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Median and scaled MAD of `values`.
fn location_scale(mut values: Vec<f64>) -> (f64, f64) {
    let m = median(&mut values);
    let mut deviations: Vec<f64> = values.iter().map(|v| (v - m).abs()).collect();
    (m, 1.4826 * median(&mut deviations))
}

/// The rise of the median of log(value + floor), less `z` standard errors.
fn log_shift(before: &[f64], during: &[f64], params: &RcaParams) -> f64 {
    if before.len() < params.min_values || during.len() < params.min_values {
        return 0.0;
    }
    let logs = |v: &[f64]| v.iter().map(|x| (x + params.floor_nano).ln()).collect();
    let (mb, sb) = location_scale(logs(before));
    let (md, sd) = location_scale(logs(during));
    // Standard error of a median: 1.2533 σ / √n.
    let se = 1.2533 * (sb * sb / before.len() as f64 + sd * sd / during.len() as f64).sqrt();
    (md - mb - params.noise_multiplier * se).max(0.0)
}

/// The rise of the error rate as a log rate ratio, less `z` standard errors (of the two
/// counts, Poisson).
fn error_shift(before: (usize, usize), during: (usize, usize), params: &RcaParams) -> f64 {
    let ((nb, eb), (nd, ed)) = (before, during);
    if nd < params.min_values || nb < params.min_values || ed == 0 {
        return 0.0;
    }
    let rate = |n: usize, e: usize| (e as f64 + 0.5) / (n as f64 + 1.0);
    let se = (1.0 / (ed as f64 + 0.5) + 1.0 / (eb as f64 + 0.5)).sqrt();
    ((rate(nd, ed) / rate(nb, eb)).ln() - params.noise_multiplier * se).max(0.0)
}

/// Values of `key` before `at` (topped up from the reference when few) and in
/// `[at, until)`.
fn split(
    live: Option<&Samples>,
    reference: Option<&Samples>,
    at: u64,
    until: u64,
    params: &RcaParams,
) -> (Vec<Sample>, Vec<Sample>) {
    let mut before: Vec<Sample> = live
        .map(|s| s.between(0, at).copied().collect())
        .unwrap_or_default();
    if before.len() < params.min_before {
        if let Some(reference) = reference {
            before.extend(reference.all().copied());
        }
    }
    let during = live
        .map(|s| s.between(at, until).copied().collect())
        .unwrap_or_default();
    (before, during)
}

fn nanos(samples: &[Sample]) -> Vec<f64> {
    samples
        .iter()
        .filter_map(|s| s.nano.map(f64::from))
        .collect()
}

fn errors(samples: &[Sample]) -> (usize, usize) {
    (samples.len(), samples.iter().filter(|s| s.error).count())
}

fn median_ms(samples: &[Sample]) -> Option<f64> {
    let mut values = nanos(samples);
    (!values.is_empty()).then(|| median(&mut values) / 1e6)
}

impl Evidence {
    pub fn new(params: RcaParams) -> Self {
        Self {
            params,
            live: Keys::default(),
            reference: Keys::default(),
            logs: LogRates::new(MAX_LOG_KEYS),
            reference_logs: LogRates::new(MAX_LOG_KEYS),
            rng: Xoshiro256PlusPlus::seed_from_u64(0x6f6d_656e),
        }
    }

    /// Records a completed trace.
    pub fn observe(&mut self, trace: &TraceFacts) {
        self.live.observe(trace, &self.params, &mut self.rng);
    }

    /// Records a trace of a fault-free reference period.
    pub fn observe_reference(&mut self, trace: &TraceFacts) {
        self.reference.observe(trace, &self.params, &mut self.rng);
    }

    /// Records a log line of `service` whose template is `template`, at `at_nano`.
    pub fn observe_log(&mut self, service: &Arc<str>, template: u64, at_nano: u64) {
        self.logs.observe(service, template, at_nano);
    }

    /// Records `count` log lines of one template at once.
    pub fn observe_log_count(
        &mut self,
        service: &Arc<str>,
        template: u64,
        at_nano: u64,
        count: u64,
    ) {
        self.logs.observe_count(service, template, at_nano, count);
    }

    /// Records a log line of a fault-free reference period.
    pub fn observe_reference_log(&mut self, service: &Arc<str>, template: u64, at_nano: u64) {
        self.reference_logs.observe(service, template, at_nano);
    }

    /// Services seen so far, live or in the reference.
    /// Samples not kept: of services or edges past `max_keys`, and log lines past the
    /// template keys kept.
    pub fn dropped(&self) -> u64 {
        self.live.dropped + self.reference.dropped + self.logs.dropped + self.reference_logs.dropped
    }

    /// Whether spans or logs have said anything of `service`.
    pub fn knows(&self, service: &str) -> bool {
        self.services().any(|s| &**s == service) || self.logs.has_service(service)
    }

    pub fn services(&self) -> impl Iterator<Item = &Arc<str>> {
        self.live
            .services
            .keys()
            .chain(self.reference.services.keys())
    }

    /// Ranks `candidates` and every service seen, best root-cause candidate first, for an
    /// incident that began at `at` and is judged on spans starting before `until`.
    pub fn rank(&self, at: u64, until: u64, candidates: &[String]) -> Vec<Candidate> {
        let params = &self.params;
        let mut ingress: HashMap<&str, Ingress> = HashMap::new();
        let mut egress: HashMap<&str, f64> = HashMap::new();
        for ((client, server), samples) in &self.live.edges {
            let reference = self.reference.edges.get(&(client.clone(), server.clone()));
            let (before, during) = split(Some(samples), reference, at, until, params);
            let rise = log_shift(&nanos(&before), &nanos(&during), params);
            if rise <= 0.0 {
                continue;
            }
            *egress.entry(client).or_default() += rise;
            let entry = ingress.entry(server).or_default();
            entry.0 += rise;
            if entry.1.as_ref().is_none_or(|(worst, _)| rise > *worst) {
                let edge = EdgeEvidence {
                    client: client.to_string(),
                    gap_ms_before: median_ms(&before).unwrap_or(0.0),
                    gap_ms_during: median_ms(&during).unwrap_or(0.0),
                };
                entry.1 = Some((rise, edge));
            }
        }
        let log_shifts = self
            .logs
            .shifts(&self.reference_logs, at, until, params.noise_multiplier);
        let mut names: Vec<&str> = candidates.iter().map(String::as_str).collect();
        names.extend(log_shifts.keys().map(|s| &**s));
        names.extend(self.services().map(|s| &**s));
        names.sort_unstable();
        names.dedup();
        let mut ranking: Vec<Candidate> = names
            .into_iter()
            .map(|service| {
                let live = self.live.services.get(service);
                let reference = self.reference.services.get(service);
                let (before, during) = split(live, reference, at, until, params);
                let self_time = log_shift(&nanos(&before), &nanos(&during), params);
                let errors = error_shift(errors(&before), errors(&during), params);
                let (ingress_gap, worst) = ingress.remove(service).unwrap_or_default();
                let egress_gap = egress.get(service).copied().unwrap_or(0.0);
                let logs = log_shifts.get(service).copied().unwrap_or(0.0);
                Candidate {
                    service: service.to_owned(),
                    score: self_time + ingress_gap + egress_gap + errors + logs,
                    logs,
                    self_time,
                    ingress_gap,
                    egress_gap,
                    errors,
                    spans_before: before.len(),
                    spans_during: during.len(),
                    self_ms_before: median_ms(&before),
                    self_ms_during: median_ms(&during),
                    worst_ingress: worst.map(|(_, edge)| edge),
                }
            })
            .collect();
        ranking.sort_by(|a, b| {
            b.score
                .total_cmp(&a.score)
                .then(b.ingress_gap.total_cmp(&a.ingress_gap))
                .then_with(|| a.service.cmp(&b.service))
        });
        ranking
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traces::span::{Span, SpanId, SpanKind, StatusCode, TraceId};

    /// A trace `a → b → c` starting at `at`: each service works `work` ns of its own, and
    /// `wire` ns pass between a's client span and b's span (b's ingress).
    fn trace(n: u32, at: u64, work: [u64; 3], wire: u64, error_in_c: bool) -> TraceFacts {
        let id = |k: u8| SpanId([k, (n >> 8) as u8, n as u8, 0, 0, 0, 0, 1]);
        let span = |k: u8, parent: Option<u8>, service: &str, start: u64, dur: u64| Span {
            trace_id: TraceId([
                n as u8,
                (n >> 8) as u8,
                1,
                2,
                3,
                4,
                5,
                6,
                7,
                8,
                9,
                10,
                11,
                12,
                13,
                14,
            ]),
            span_id: id(k),
            parent_id: parent.map(id),
            service: Arc::from(service),
            name: Arc::from("op"),
            kind: SpanKind::Unspecified,
            start_unix_nano: start,
            duration_nano: dur,
            status: StatusCode::Unset,
        };
        let c_dur = work[2];
        let b_dur = work[1] + c_dur;
        let a_dur = work[0] + wire + b_dur;
        let mut c = span(3, Some(2), "c", at + work[0] + wire + work[1], c_dur);
        if error_in_c {
            c.status = StatusCode::Error;
        }
        let mut b = span(2, Some(4), "b", at + work[0] + wire, b_dur);
        if error_in_c {
            b.status = StatusCode::Error;
        }
        // a's client span: the call as a sees it, wire included.
        let client = span(4, Some(1), "a", at + work[0], wire + b_dur);
        let spans = vec![span(1, None, "a", at, a_dur), client, b, c];
        TraceFacts::from_spans(spans[0].trace_id, spans)
    }

    /// 200 healthy traces, then 200 with `fault` applied; the services ranked at the fault.
    fn ranked(fault: impl Fn(u32) -> TraceFacts) -> Vec<String> {
        let mut evidence = Evidence::new(RcaParams::default());
        let ms = 1_000_000;
        let jitter = |n: u32| u64::from(n % 7) * ms / 4;
        for n in 0..200 {
            let work = [
                2 * ms + jitter(n),
                3 * ms + jitter(n + 1),
                4 * ms + jitter(n + 2),
            ];
            evidence.observe(&trace(
                n,
                u64::from(n) * 100 * ms,
                work,
                ms + jitter(n + 3),
                false,
            ));
        }
        for n in 200..400 {
            evidence.observe(&fault(n));
        }
        let at = 200 * 100 * ms;
        evidence
            .rank(at, at + 200 * 100 * ms, &["d".to_owned()])
            .into_iter()
            .map(|c| c.service)
            .collect()
    }

    fn at(n: u32) -> u64 {
        u64::from(n) * 100_000_000
    }

    #[test]
    fn a_slow_service_is_found_by_its_self_time_not_its_callers() {
        let ranking = ranked(|n| {
            trace(
                n,
                at(n),
                [2_000_000, 3_000_000, 40_000_000],
                1_000_000,
                false,
            )
        });
        assert_eq!(ranking[0], "c", "{ranking:?}");
        assert_eq!(
            ranking.len(),
            4,
            "the candidate without spans is ranked too"
        );
    }

    #[test]
    fn a_delay_at_the_door_is_blamed_on_the_callee() {
        let ranking = ranked(|n| {
            trace(
                n,
                at(n),
                [2_000_000, 3_000_000, 4_000_000],
                900_000_000,
                false,
            )
        });
        assert_eq!(ranking[0], "b", "{ranking:?}");
    }

    #[test]
    fn errors_are_blamed_where_they_start() {
        let ranking = ranked(|n| {
            trace(
                n,
                at(n),
                [2_000_000, 3_000_000, 4_000_000],
                1_000_000,
                n % 2 == 0,
            )
        });
        assert_eq!(ranking[0], "c", "{ranking:?}");
    }

    #[test]
    fn with_no_fault_nothing_scores() {
        let mut evidence = Evidence::new(RcaParams::default());
        for n in 0..400 {
            let work = [2_000_000, 3_000_000 + u64::from(n % 5) * 10_000, 4_000_000];
            evidence.observe(&trace(n, at(n), work, 1_000_000, false));
        }
        let ranking = evidence.rank(at(200), at(400), &[]);
        assert!(ranking.iter().all(|c| c.score == 0.0), "{ranking:?}");
    }
}
