//! The live detector's core, free of I/O: samples in (from any source), one model per
//! series, anomalies correlated into incidents, alert changes out. Time is whatever the
//! caller says (the samples' own time, and `now_ms` for ticks), so the demo can run a day
//! in seconds through exactly this path.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::alert::{incident_alerts, selector, warning_alert, Alert, EarlyWarning};
use super::config::DetectConfig;
use super::correlate::{Correlator, Evidence, IncidentEvent};
use crate::model::detector::{DetectorConfig, Score, SeriesDetector, Transform};
use crate::model::forecast::WarningKind;
use crate::wire::{Sample, ValueKind};

/// Where samples came from (a label of the self-metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Source {
    Scrape,
    RemoteWrite,
    Prometheus,
    Kafka,
}

impl Source {
    pub const ALL: [Source; 4] = [
        Source::Scrape,
        Source::RemoteWrite,
        Source::Prometheus,
        Source::Kafka,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scrape => "scrape",
            Self::RemoteWrite => "remote_write",
            Self::Prometheus => "prometheus",
            Self::Kafka => "kafka",
        }
    }
}

/// Whether samples are live or history loaded at start (learnt from, never alerted on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Warmup,
}

/// Families the detector itself exports: never modelled, or a detector scraped by the
/// Prometheus it reads from would model its own scores.
const OWN_FAMILIES: [&str; 4] = [
    "omen_detector_",
    "omen_baseline_",
    "omen_incidents_",
    "omen_anomaly_",
];
const OWN_SERIES_VALUE: &str = "omen_series_value";

/// Consecutive points a forecast must say "trouble ahead" before a warning is raised.
const WARNING_PERSISTENCE: u32 = 3;

/// How far ahead of the detector's clock a sample may be stamped: senders' clocks drift,
/// but not by minutes.
pub const MAX_AHEAD_MS: i64 = 10 * 60 * 1000;

/// Per-point scoring latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 10] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2,
];

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct CounterState {
    timestamp_ms: i64,
    value: f64,
}

/// What the last point of a series looked like, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
struct Last {
    value: f64,
    score: f64,
    expected: f64,
    lower: f64,
    upper: f64,
}

#[derive(Debug, Clone)]
struct WarningState {
    kind: WarningKind,
    since_ms: i64,
    last_ms: i64,
    at_ms: i64,
    /// Consecutive points with a warning (raised at [`WARNING_PERSISTENCE`]).
    streak: u32,
    raised: bool,
}

/// One modelled series.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    name: String,
    labels: BTreeMap<String, String>,
    counter: bool,
    detector: SeriesDetector,
    previous: Option<CounterState>,
    last_timestamp_ms: i64,
    /// When a sample last arrived (caller's time), for the TTL.
    seen_ms: i64,
    #[serde(skip)]
    last: Option<Last>,
    #[serde(skip)]
    warning: Option<WarningState>,
    /// When the series last alarmed (its time), while another detector correlates.
    #[serde(skip)]
    last_alarm_ms: Option<i64>,
}

/// Counts behind the detector's self-metrics.
#[derive(Debug, Default)]
struct Stats {
    samples: BTreeMap<Source, u64>,
    errors: BTreeMap<(Source, &'static str), u64>,
    points: u64,
    latency_buckets: [u64; LATENCY_BUCKETS.len()],
    latency_sum: f64,
    anomalies: u64,
    warnings: u64,
    incidents: u64,
    dropped: u64,
    expired: u64,
    /// Series whose model state was taken over from another detector.
    handed_in: u64,
    /// Evidence sent to the correlator elsewhere, and evidence correlated here from there.
    evidence_published: u64,
    evidence_correlated: u64,
    out_of_order: u64,
    /// Samples stamped beyond [`MAX_AHEAD_MS`] of the clock.
    from_future: u64,
    last_snapshot_s: f64,
}

/// Saved model state: the series and the incidents.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub taken_ms: i64,
    series: Vec<(String, Entry)>,
    correlator: Correlator,
}

const SNAPSHOT_VERSION: u32 = 1;

/// A change worth telling someone about.
#[derive(Debug, Clone)]
pub enum Notification {
    Incident(IncidentEvent),
    Warning(EarlyWarning),
}

impl Notification {
    /// The alerts this change sends.
    pub fn alerts(&self, dashboard_url: &str, now_ms: i64) -> Vec<Alert> {
        match self {
            Self::Incident(event) => incident_alerts(event, dashboard_url, now_ms),
            Self::Warning(warning) => vec![warning_alert(warning, dashboard_url)],
        }
    }
}

/// The live detector.
pub struct Engine {
    config: DetectConfig,
    series: HashMap<String, Entry>,
    correlator: Correlator,
    stats: Stats,
    notifications: Vec<Notification>,
    /// Whether another detector correlates (evidence waits in `outbox` to go there) and,
    /// if so, whether this one is it.
    remote: Option<RemoteCorrelation>,
}

#[derive(Debug, Default)]
struct RemoteCorrelation {
    outbox: Vec<Evidence>,
    correlating: bool,
}

fn is_own(name: &str) -> bool {
    name == OWN_SERIES_VALUE || OWN_FAMILIES.iter().any(|p| name.starts_with(p))
}

/// Counters by type, or (untyped) by the names Prometheus conventions give them.
fn is_counter(sample: &Sample) -> bool {
    match sample.kind {
        ValueKind::Counter => true,
        ValueKind::Gauge => false,
        ValueKind::Unknown => ["_total", "_count", "_sum", "_bucket"]
            .iter()
            .any(|suffix| sample.name.ends_with(suffix)),
    }
}

/// Per-second increase between two counter samples; a drop is a reset (the counter
/// restarted from zero, so everything it holds is new).
fn rate(previous: CounterState, timestamp_ms: i64, value: f64) -> Option<f64> {
    let seconds = (timestamp_ms - previous.timestamp_ms) as f64 / 1000.0;
    if seconds <= 0.0 {
        return None;
    }
    let increase = if value >= previous.value {
        value - previous.value
    } else {
        value
    };
    Some(increase / seconds)
}

impl Engine {
    pub fn new(config: DetectConfig) -> Self {
        Self {
            config,
            series: HashMap::new(),
            correlator: Correlator::default(),
            stats: Stats::default(),
            notifications: Vec::new(),
            remote: None,
        }
    }

    pub fn config(&self) -> &DetectConfig {
        &self.config
    }

    pub fn correlator(&self) -> &Correlator {
        &self.correlator
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// The model of one series. A counter's rate is a count of events per interval
    /// rescaled, so `auto` gives it the square root that steadies count noise (the rate's
    /// fractional values would hide that they are counts).
    fn model_config(&self, name: &str, counter: bool) -> DetectorConfig {
        let mut config = self.config.detector_for(name);
        if counter && config.transform == Transform::Auto {
            config.transform = Transform::Sqrt;
        }
        config
    }

    /// Counts a source's failure (a scrape that timed out, a body that did not decode).
    pub fn count_error(&mut self, source: Source, reason: &'static str) {
        self.count_errors(source, reason, 1);
    }

    /// Counts `count` failures of one kind at once (series skipped from one request).
    pub fn count_errors(&mut self, source: Source, reason: &'static str, count: u64) {
        *self.stats.errors.entry((source, reason)).or_default() += count;
    }

    /// Takes the changes since the last call.
    pub fn take_notifications(&mut self) -> Vec<Notification> {
        self.stats.incidents += self
            .notifications
            .iter()
            .filter(|n| matches!(n, Notification::Incident(e) if e.change == super::correlate::Change::Opened))
            .count() as u64;
        std::mem::take(&mut self.notifications)
    }

    /// Scores samples; `now_ms` stamps samples without a timestamp and is the TTL's clock.
    pub fn ingest(&mut self, source: Source, samples: Vec<Sample>, now_ms: i64, mode: Mode) {
        *self.stats.samples.entry(source).or_default() += samples.len() as u64;
        for sample in samples {
            self.ingest_one(sample, now_ms, mode);
        }
    }

    fn ingest_one(&mut self, sample: Sample, now_ms: i64, mode: Mode) {
        let name = sample.name.as_str();
        if is_own(name)
            || name.ends_with("_created")
            || (!self.config.store.histogram_buckets && name.ends_with("_bucket"))
            || !sample.value.is_finite()
        {
            // Non-finite values include Prometheus' stale markers: nothing to learn.
            return;
        }
        let timestamp_ms = sample.timestamp_ms.unwrap_or(now_ms);
        if timestamp_ms > now_ms.saturating_add(MAX_AHEAD_MS) {
            // Taken, it would make every later sample of its series out of order.
            self.stats.from_future += 1;
            return;
        }
        let labels: BTreeMap<String, String> = sample.labels.iter().cloned().collect();
        let key = selector(name, &labels);
        if !self.series.contains_key(&key) {
            if self.series.len() >= self.config.store.max_series {
                self.stats.dropped += 1;
                return;
            }
            let counter = is_counter(&sample);
            // The configuration was checked at load, so the model builds.
            let Ok(detector) = SeriesDetector::new(self.model_config(name, counter)) else {
                self.stats.dropped += 1;
                return;
            };
            self.series.insert(
                key.clone(),
                Entry {
                    name: sample.name.clone(),
                    labels,
                    counter,
                    detector,
                    previous: None,
                    last_timestamp_ms: i64::MIN,
                    seen_ms: now_ms,
                    last: None,
                    warning: None,
                    last_alarm_ms: None,
                },
            );
        }
        let entry = self.series.get_mut(&key).expect("inserted above");
        entry.seen_ms = now_ms;
        if timestamp_ms <= entry.last_timestamp_ms {
            self.stats.out_of_order += 1;
            return;
        }
        entry.last_timestamp_ms = timestamp_ms;
        let value = if entry.counter {
            let current = CounterState {
                timestamp_ms,
                value: sample.value,
            };
            match entry.previous.replace(current) {
                Some(previous) => match rate(previous, timestamp_ms, sample.value) {
                    Some(rate) => rate,
                    None => return,
                },
                None => return,
            }
        } else {
            sample.value
        };
        let started = Instant::now();
        let score = entry.detector.update(timestamp_ms, value);
        let elapsed = started.elapsed().as_secs_f64();
        self.stats.points += 1;
        self.stats.latency_sum += elapsed;
        for (bucket, bound) in self.stats.latency_buckets.iter_mut().zip(LATENCY_BUCKETS) {
            *bucket += u64::from(elapsed <= bound);
        }
        entry.last = Some(Last {
            value,
            score: score.score,
            expected: score.expected,
            lower: score.lower,
            upper: score.upper,
        });
        if mode == Mode::Live {
            self.judge(&key, timestamp_ms, value, &score);
        }
    }

    /// Turns one point's score into anomalies, incident activity and early warnings.
    fn judge(&mut self, key: &str, timestamp_ms: i64, value: f64, score: &Score) {
        let alarm = self.config.detector.alarm_level;
        let entry = self.series.get_mut(key).expect("scored series");
        let off_band = score.lower < score.upper && !(score.lower..=score.upper).contains(&value);
        let evidence = if score.score >= alarm {
            self.stats.anomalies += 1;
            entry.last_alarm_ms = Some(timestamp_ms);
            Some(Evidence::Anomaly {
                series: key.to_owned(),
                labels: entry.labels.clone(),
                at_ms: timestamp_ms,
                score: score.score,
                off_band,
            })
        } else {
            // Alarms are suppressed for a while after one; a series stays part of its
            // incident while it is off its band or still unlikely.
            let unlikely = score.likelihood >= alarm;
            (off_band || unlikely).then(|| Evidence::Active {
                series: key.to_owned(),
                // Only a suppressed alarm can start or join an incident, which needs them.
                labels: if unlikely {
                    entry.labels.clone()
                } else {
                    BTreeMap::new()
                },
                at_ms: timestamp_ms,
                off_band,
                suppressed_alarm: unlikely.then_some(score.likelihood),
            })
        };
        let in_incident = match (&mut self.remote, evidence) {
            (Some(remote), evidence) => {
                remote.outbox.extend(evidence);
                // The correlator is elsewhere: a recent alarm stands for membership.
                let quiet = self.config.correlation.quiet.as_millis() as i64;
                entry
                    .last_alarm_ms
                    .is_some_and(|at| timestamp_ms - at < quiet)
            }
            (None, evidence) => {
                if let Some(evidence) = evidence {
                    let event = self.correlator.apply(&self.config.correlation, &evidence);
                    self.notifications.extend(event.map(Notification::Incident));
                }
                self.correlator.is_member(key)
            }
        };
        if !self.config.alerting.early_warnings {
            return;
        }
        match (score.warning, &mut entry.warning) {
            (Some(warning), Some(state)) => {
                state.last_ms = timestamp_ms;
                state.at_ms = warning.at_ms;
                state.streak += 1;
            }
            (Some(warning), None) => {
                entry.warning = Some(WarningState {
                    kind: warning.kind,
                    since_ms: timestamp_ms,
                    last_ms: timestamp_ms,
                    at_ms: warning.at_ms,
                    streak: 1,
                    raised: false,
                });
            }
            (None, Some(state)) if !state.raised => entry.warning = None,
            (None, _) => {}
        }
        if let Some(state) = entry.warning.as_mut() {
            if !state.raised && state.streak >= WARNING_PERSISTENCE && !in_incident {
                state.raised = true;
                self.stats.warnings += 1;
                self.notifications.push(Notification::Warning(EarlyWarning {
                    series: key.to_owned(),
                    labels: warning_labels(&entry.name, &entry.labels),
                    kind: state.kind,
                    since_ms: state.since_ms,
                    at_ms: state.at_ms,
                    resolved_ms: None,
                }));
            }
        }
    }

    /// Resolves quiet incidents and warnings, and forgets series past their TTL.
    pub fn tick(&mut self, now_ms: i64) {
        for event in self
            .correlator
            .resolve_quiet(&self.config.correlation, now_ms)
        {
            self.notifications.push(Notification::Incident(event));
        }
        let quiet = self.config.correlation.quiet.as_millis() as i64;
        for (key, entry) in &mut self.series {
            let Some(state) = &entry.warning else {
                continue;
            };
            if now_ms - state.last_ms >= quiet {
                if state.raised {
                    self.notifications.push(Notification::Warning(EarlyWarning {
                        series: key.clone(),
                        labels: warning_labels(&entry.name, &entry.labels),
                        kind: state.kind,
                        since_ms: state.since_ms,
                        at_ms: state.at_ms,
                        resolved_ms: Some(now_ms),
                    }));
                }
                entry.warning = None;
            }
        }
        let ttl = self.config.store.ttl.as_millis() as i64;
        let before = self.series.len();
        self.series.retain(|_, entry| now_ms - entry.seen_ms < ttl);
        self.stats.expired += (before - self.series.len()) as u64;
    }

    /// The state to save.
    pub fn snapshot(&self, now_ms: i64) -> Snapshot {
        let mut series: Vec<(String, Entry)> = self
            .series
            .iter()
            .map(|(k, e)| (k.clone(), e.clone()))
            .collect();
        // In key order, so the same state always saves as the same file.
        series.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Snapshot {
            version: SNAPSHOT_VERSION,
            taken_ms: now_ms,
            series,
            correlator: self.correlator.clone(),
        }
    }

    /// Restores saved state; returns the number of series restored. Series of a
    /// different model configuration start afresh (their state would not fit).
    pub fn restore(&mut self, snapshot: Snapshot, now_ms: i64) -> usize {
        if snapshot.version != SNAPSHOT_VERSION {
            return 0;
        }
        let mut restored = 0;
        for (key, mut entry) in snapshot.series {
            if *entry.detector.config() != self.model_config(&entry.name, entry.counter)
                || self.series.len() >= self.config.store.max_series
            {
                continue;
            }
            entry.seen_ms = now_ms;
            self.series.insert(key, entry);
            restored += 1;
        }
        self.correlator = snapshot.correlator;
        restored
    }

    /// The store key of a sample's series.
    pub fn series_key(sample: &Sample) -> String {
        let labels: BTreeMap<String, String> = sample.labels.iter().cloned().collect();
        selector(&sample.name, &labels)
    }

    /// The keys of the series modelled now.
    pub fn series_keys(&self) -> Vec<String> {
        self.series.keys().cloned().collect()
    }

    /// One series' model state, to hand it to another detector.
    pub fn export_series(&self, key: &str) -> Option<String> {
        self.series
            .get(key)
            .and_then(|entry| serde_json::to_string(entry).ok())
    }

    /// Takes over a series exported by another detector, unless it is modelled here
    /// already or its model does not fit this configuration; returns whether it did.
    pub fn import_series(&mut self, key: &str, state: &str, now_ms: i64) -> bool {
        let Ok(mut entry) = serde_json::from_str::<Entry>(state) else {
            return false;
        };
        if self.series.contains_key(key)
            || *entry.detector.config() != self.model_config(&entry.name, entry.counter)
            || self.series.len() >= self.config.store.max_series
        {
            return false;
        }
        entry.seen_ms = now_ms;
        self.series.insert(key.to_owned(), entry);
        self.stats.handed_in += 1;
        true
    }

    /// Sends evidence to a correlator elsewhere (see [`Engine::take_evidence`]) instead of
    /// correlating here; the incidents held here are dropped.
    pub fn correlate_elsewhere(&mut self) {
        self.remote = Some(RemoteCorrelation::default());
        self.correlator = Correlator::default();
    }

    /// The evidence for the correlator elsewhere since the last call.
    pub fn take_evidence(&mut self) -> Vec<Evidence> {
        self.remote
            .as_mut()
            .map(|remote| std::mem::take(&mut remote.outbox))
            .unwrap_or_default()
    }

    /// Counts evidence handed to the anomalies topic.
    pub fn count_published(&mut self, evidence: usize) {
        self.stats.evidence_published += evidence as u64;
    }

    /// Makes this detector the correlator, starting from `correlator` (handed over by the
    /// previous one), or stops it being that (`None`); returns the incidents held until
    /// now.
    pub fn set_correlating(&mut self, correlator: Option<Correlator>) -> Correlator {
        if let Some(remote) = &mut self.remote {
            remote.correlating = correlator.is_some();
        }
        std::mem::replace(&mut self.correlator, correlator.unwrap_or_default())
    }

    /// Correlates evidence from the detectors.
    pub fn correlate(&mut self, evidence: &[Evidence]) {
        self.stats.evidence_correlated += evidence.len() as u64;
        for evidence in evidence {
            let event = self.correlator.apply(&self.config.correlation, evidence);
            self.notifications.extend(event.map(Notification::Incident));
        }
    }

    /// Forgets a series (handed to another detector).
    pub fn forget_series(&mut self, key: &str) {
        self.series.remove(key);
    }

    pub fn set_last_snapshot(&mut self, unix_seconds: f64) {
        self.stats.last_snapshot_s = unix_seconds;
    }

    /// Prometheus text exposition of the scores, bands and self-metrics.
    pub fn render(&self, sink_stats: &[(String, SinkCounts)]) -> String {
        let mut out = String::with_capacity(256 + self.series.len() * 600);
        let mut keys: Vec<&String> = self.series.keys().collect();
        keys.sort();
        type Field = fn(&Last) -> f64;
        let families: [(&str, &str, Field); 5] = [
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
        ];
        for (family, help, field) in families {
            header(&mut out, family, help, "gauge");
            for key in &keys {
                let entry = &self.series[*key];
                if let Some(last) = &entry.last {
                    sample(&mut out, family, &series_labels(entry), field(last));
                }
            }
        }
        header(
            &mut out,
            "omen_incidents_open",
            "Incidents open now.",
            "gauge",
        );
        sample(
            &mut out,
            "omen_incidents_open",
            &[],
            self.correlator.open().len() as f64,
        );
        header(
            &mut out,
            "omen_detector_correlating",
            "1 while this detector correlates anomalies into incidents (with Kafka, one of the group does).",
            "gauge",
        );
        let correlating = self.remote.as_ref().is_none_or(|r| r.correlating);
        sample(
            &mut out,
            "omen_detector_correlating",
            &[],
            f64::from(u8::from(correlating)),
        );
        header(
            &mut out,
            "omen_incidents_total",
            "Incidents opened.",
            "counter",
        );
        sample(
            &mut out,
            "omen_incidents_total",
            &[],
            self.stats.incidents as f64,
        );
        header(
            &mut out,
            "omen_detector_series",
            "Series modelled.",
            "gauge",
        );
        sample(
            &mut out,
            "omen_detector_series",
            &[],
            self.series.len() as f64,
        );
        let counters: [(&str, &str, u64); 10] = [
            (
                "omen_detector_points_total",
                "Points scored.",
                self.stats.points,
            ),
            (
                "omen_detector_anomalies_total",
                "Points scored as anomalies.",
                self.stats.anomalies,
            ),
            (
                "omen_detector_early_warnings_total",
                "Early warnings raised.",
                self.stats.warnings,
            ),
            (
                "omen_detector_series_dropped_total",
                "Samples of new series refused at store.max_series.",
                self.stats.dropped,
            ),
            (
                "omen_detector_series_expired_total",
                "Series forgotten after store.ttl without samples.",
                self.stats.expired,
            ),
            (
                "omen_detector_series_handed_in_total",
                "Series whose model state was taken over from another detector.",
                self.stats.handed_in,
            ),
            (
                "omen_detector_evidence_published_total",
                "Anomalies and still-active points sent to the correlator on the anomalies topic.",
                self.stats.evidence_published,
            ),
            (
                "omen_detector_evidence_correlated_total",
                "Anomalies and still-active points from the anomalies topic correlated here.",
                self.stats.evidence_correlated,
            ),
            (
                "omen_detector_out_of_order_total",
                "Samples not newer than their series' last, skipped.",
                self.stats.out_of_order,
            ),
            (
                "omen_detector_future_samples_total",
                "Samples stamped more than 10 minutes ahead of the detector's clock, skipped.",
                self.stats.from_future,
            ),
        ];
        for (name, help, value) in counters {
            header(&mut out, name, help, "counter");
            sample(&mut out, name, &[], value as f64);
        }
        header(
            &mut out,
            "omen_detector_scoring_seconds",
            "Time to score one point.",
            "histogram",
        );
        for (count, bound) in self.stats.latency_buckets.iter().zip(LATENCY_BUCKETS) {
            let le = format!("{bound:e}");
            sample(
                &mut out,
                "omen_detector_scoring_seconds_bucket",
                &[("le", &le)],
                *count as f64,
            );
        }
        sample(
            &mut out,
            "omen_detector_scoring_seconds_bucket",
            &[("le", "+Inf")],
            self.stats.points as f64,
        );
        sample(
            &mut out,
            "omen_detector_scoring_seconds_sum",
            &[],
            self.stats.latency_sum,
        );
        sample(
            &mut out,
            "omen_detector_scoring_seconds_count",
            &[],
            self.stats.points as f64,
        );
        header(
            &mut out,
            "omen_detector_samples_total",
            "Samples received, by source.",
            "counter",
        );
        for source in Source::ALL {
            let count = self.stats.samples.get(&source).copied().unwrap_or(0);
            sample(
                &mut out,
                "omen_detector_samples_total",
                &[("source", source.as_str())],
                count as f64,
            );
        }
        header(
            &mut out,
            "omen_detector_ingest_errors_total",
            "Failed scrapes, polls and requests, by source and reason.",
            "counter",
        );
        for ((source, reason), count) in &self.stats.errors {
            sample(
                &mut out,
                "omen_detector_ingest_errors_total",
                &[("source", source.as_str()), ("reason", reason)],
                *count as f64,
            );
        }
        type SinkField = fn(&SinkCounts) -> u64;
        let sink_families: [(&str, &str, &str, SinkField); 4] = [
            (
                "omen_detector_alerts_sent_total",
                "Alert updates delivered, by sink.",
                "counter",
                |c| c.sent,
            ),
            (
                "omen_detector_alerts_failed_total",
                "Failed delivery attempts (retried), by sink.",
                "counter",
                |c| c.failed,
            ),
            (
                "omen_detector_alerts_dropped_total",
                "Alert updates dropped from a full queue, by sink.",
                "counter",
                |c| c.dropped,
            ),
            (
                "omen_detector_alert_queue_length",
                "Alert updates waiting, by sink.",
                "gauge",
                |c| c.queued,
            ),
        ];
        for (name, help, kind, field) in sink_families {
            header(&mut out, name, help, kind);
            for (sink, counts) in sink_stats {
                sample(&mut out, name, &[("sink", sink)], field(counts) as f64);
            }
        }
        header(
            &mut out,
            "omen_detector_last_snapshot_timestamp_seconds",
            "When model state was last saved (0: never).",
            "gauge",
        );
        sample(
            &mut out,
            "omen_detector_last_snapshot_timestamp_seconds",
            &[],
            self.stats.last_snapshot_s,
        );
        out
    }
}

/// Delivery counts of one alert sink.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkCounts {
    pub sent: u64,
    pub failed: u64,
    pub dropped: u64,
    pub queued: u64,
}

/// A warning's labels: the series' own plus its metric name.
fn warning_labels(name: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut all = labels.clone();
    all.insert("metric".to_owned(), name.to_owned());
    all
}

/// The labels of a series' score samples: `metric` (the source metric's name) and the
/// source labels; a source label called `metric` becomes `exported_metric`.
fn series_labels(entry: &Entry) -> Vec<(&str, &str)> {
    let mut labels = Vec::with_capacity(entry.labels.len() + 1);
    labels.push(("metric", entry.name.as_str()));
    for (k, v) in &entry.labels {
        let k = if k == "metric" {
            "exported_metric"
        } else {
            k.as_str()
        };
        labels.push((k, v.as_str()));
    }
    labels
}

fn header(out: &mut String, name: &str, help: &str, kind: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(k);
            out.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => out.push_str("\\\\"),
                    '"' => out.push_str("\\\""),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    if value.is_nan() {
        out.push_str("NaN");
    } else if value.is_infinite() {
        out.push_str(if value > 0.0 { "+Inf" } else { "-Inf" });
    } else {
        let _ = write!(out, "{value}");
    }
    out.push('\n');
}

#[cfg(test)]
mod tests;
