//! The live detector's core, free of I/O: samples in (from any source), one model per
//! series, anomalies correlated into incidents, alert changes out. Time is whatever the
//! caller says (the samples' own time, and `now_ms` for ticks), so the demo can run a day
//! in seconds through exactly this path.

pub mod alert;
pub mod correlate;
pub mod select;

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use self::alert::{incident_alerts, selector, warning_alert, Alert, EarlyWarning};
use self::correlate::{Correlator, Evidence, IncidentEvent};
use self::select::Skip;
use crate::config::DetectConfig;
use omen_detector::model::detector::{Score, SeriesDetector, SeriesDetectorConfig, Transform};
use omen_detector::model::forecast::WarningKind;
use omen_detector::wire::{Sample, ValueKind};

/// Where samples came from (a label of the self-metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    Scrape,
    RemoteWrite,
    Prometheus,
    Kafka,
    Traces,
}

impl Origin {
    pub const ALL: [Origin; 5] = [
        Origin::Scrape,
        Origin::RemoteWrite,
        Origin::Prometheus,
        Origin::Kafka,
        Origin::Traces,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scrape => "scrape",
            Self::RemoteWrite => "remote_write",
            Self::Prometheus => "prometheus",
            Self::Kafka => "kafka",
            Self::Traces => "traces",
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

/// How far ahead of the detector's clock a sample may be stamped: senders' clocks drift,
/// but not by minutes.
pub const MAX_AHEAD_MS: i64 = 10 * 60 * 1000;

/// Per-point scoring latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 10] = [
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 1e-2,
];

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct CounterState {
    timestamp_ms: i64,
    value: f64,
}

/// What the last point of a series looked like, for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub struct LastPoint {
    pub value: f64,
    pub score: f64,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    /// 1 while the full model warms up (only obvious changes alarm), else 0.
    pub learning: f64,
}

#[derive(Debug, Clone)]
struct WarningState {
    kind: WarningKind,
    since_ms: i64,
    last_ms: i64,
    at_ms: i64,
    raised: bool,
}

/// One modelled series.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ModelledSeries {
    name: String,
    labels: BTreeMap<String, String>,
    counter: bool,
    detector: SeriesDetector,
    previous: Option<CounterState>,
    last_timestamp_ms: i64,
    /// When a sample last arrived (caller's time), for the TTL.
    seen_ms: i64,
    #[serde(skip)]
    last: Option<LastPoint>,
    #[serde(skip)]
    warning: Option<WarningState>,
    /// When the series last alarmed (its time), while another detector correlates.
    #[serde(skip)]
    last_alarm_ms: Option<i64>,
}

/// Counts behind the detector's self-metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub samples: BTreeMap<Origin, u64>,
    /// Samples not modelled, by source and the selection's reason.
    pub skipped: BTreeMap<(Origin, Skip), u64>,
    pub errors: BTreeMap<(Origin, &'static str), u64>,
    pub points: u64,
    pub latency_buckets: [u64; LATENCY_BUCKETS.len()],
    pub latency_sum: f64,
    pub anomalies: u64,
    pub warnings: u64,
    pub incidents: u64,
    pub dropped: u64,
    pub expired: u64,
    /// Series whose model state was taken over from another detector.
    pub handed_in: u64,
    /// Evidence sent to the correlator elsewhere, and evidence correlated here from there.
    pub evidence_published: u64,
    pub evidence_correlated: u64,
    pub out_of_order: u64,
    /// Samples stamped beyond [`MAX_AHEAD_MS`] of the clock.
    pub from_future: u64,
    pub last_snapshot_s: f64,
}

/// Saved model state: the series and the incidents.
#[derive(Debug, Serialize, Deserialize)]
pub struct Snapshot {
    pub version: u32,
    pub taken_ms: i64,
    series: Vec<(String, ModelledSeries)>,
    correlator: Correlator,
}

const SNAPSHOT_VERSION: u32 = 1;

/// One modelled series, as `/api/v1/series` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesState<'a> {
    #[serde(skip)]
    pub key: &'a str,
    #[serde(rename = "metric")]
    pub name: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// Points learnt so far.
    pub points: u64,
    /// The full model still warms up: only an obvious change alarms.
    pub learning: bool,
}

/// What [`Engine::restore`] restored, and what it could not.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Series restored (under the current settings).
    pub series: usize,
    /// Series whose model learns differently under the current settings.
    pub other_settings: usize,
    /// Series beyond `store.max_series`.
    pub beyond_capacity: usize,
    /// Series not restored, of all three kinds.
    pub not_restored: usize,
    /// The snapshot's version, when it is not this build's.
    pub other_version: Option<u32>,
}

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
    series: HashMap<String, ModelledSeries>,
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

    /// Attaches what spans say to the open incident `id`.
    pub fn annotate_incident(&mut self, id: &str, context: correlate::TraceContext) {
        self.correlator.annotate(id, context);
    }

    /// Merges call edges learnt from spans (client, server) into correlation's dependency
    /// graph: a service and the services it calls join one incident, the callee ranked
    /// deeper. Configured dependencies stay; learnt ones only add.
    pub fn learn_dependencies<'a>(&mut self, edges: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let dependencies = &mut self.config.correlation.dependencies;
        for (client, server) in edges {
            if client == server {
                continue;
            }
            let callees = dependencies.entry(client.to_owned()).or_default();
            if !callees.iter().any(|c| c == server) {
                callees.push(server.to_owned());
            }
        }
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// The model of one series. A counter's rate is a count of events per interval
    /// rescaled, so `auto` gives it the square root that steadies count noise (the rate's
    /// fractional values would hide that they are counts).
    fn model_config(
        &self,
        name: &str,
        labels: &BTreeMap<String, String>,
        counter: bool,
    ) -> SeriesDetectorConfig {
        let mut config = self.config.detector_for(name, labels);
        if counter && config.transform == Transform::Auto {
            config.transform = Transform::Sqrt;
        }
        config
    }

    /// Counts a source's failure (a scrape that timed out, a body that did not decode).
    pub fn count_error(&mut self, source: Origin, reason: &'static str) {
        self.count_errors(source, reason, 1);
    }

    /// Counts `count` failures of one kind at once (series skipped from one request).
    pub fn count_errors(&mut self, source: Origin, reason: &'static str, count: u64) {
        *self.stats.errors.entry((source, reason)).or_default() += count;
    }

    /// Takes the changes since the last call.
    pub fn take_notifications(&mut self) -> Vec<Notification> {
        self.stats.incidents += self
            .notifications
            .iter()
            .filter(|n| matches!(n, Notification::Incident(e) if e.change == crate::engine::correlate::Change::Opened))
            .count() as u64;
        std::mem::take(&mut self.notifications)
    }

    /// Counts samples a source's own `include`/`exclude` kept from the models.
    pub fn count_skipped(&mut self, source: Origin, skip: Skip, count: u64) {
        *self.stats.skipped.entry((source, skip)).or_default() += count;
    }

    /// Scores samples; `now_ms` stamps samples without a timestamp and is the TTL's clock.
    /// Samples the global selection (`select`) refuses are counted and dropped.
    pub fn ingest(&mut self, source: Origin, samples: Vec<Sample>, now_ms: i64, mode: Mode) {
        *self.stats.samples.entry(source).or_default() += samples.len() as u64;
        for sample in samples {
            match self.config.select.admit(&sample) {
                Ok(()) => self.ingest_one(sample, now_ms, mode),
                Err(skip) => self.count_skipped(source, skip, 1),
            }
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
            let Ok(detector) = SeriesDetector::new(self.model_config(name, &labels, counter))
            else {
                self.stats.dropped += 1;
                return;
            };
            self.series.insert(
                key.clone(),
                ModelledSeries {
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
        entry.last = Some(LastPoint {
            value,
            score: score.score,
            expected: score.expected,
            lower: score.lower,
            upper: score.upper,
            learning: f64::from(u8::from(entry.detector.is_learning())),
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
                driver: score.driver,
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
                driver: score.driver.filter(|_| unlikely),
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
            }
            (Some(warning), None) => {
                entry.warning = Some(WarningState {
                    kind: warning.kind,
                    since_ms: timestamp_ms,
                    last_ms: timestamp_ms,
                    at_ms: warning.at_ms,
                    raised: false,
                });
            }
            (None, Some(state)) if !state.raised => entry.warning = None,
            (None, _) => {}
        }
        if let Some(state) = entry.warning.as_mut() {
            // The model raises a warning once it is sustained (`forecast.persistence`).
            if !state.raised && !in_incident {
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
        let mut series: Vec<(String, ModelledSeries)> = self
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

    /// Restores saved state. A series goes on under the current settings when they keep
    /// its model's state (an alarm level, suppression or forecast changed); one whose
    /// model learns differently now, or beyond `store.max_series`, is not restored, and
    /// nothing is from a snapshot of another version. The report says what was not.
    pub fn restore(&mut self, snapshot: Snapshot, now_ms: i64) -> Restored {
        let mut report = Restored::default();
        if snapshot.version != SNAPSHOT_VERSION {
            report.other_version = Some(snapshot.version);
            report.not_restored = snapshot.series.len();
            return report;
        }
        for (key, mut entry) in snapshot.series {
            let config = self.model_config(&entry.name, &entry.labels, entry.counter);
            if self.series.len() >= self.config.store.max_series {
                report.beyond_capacity += 1;
            } else if entry.detector.reconfigure(&config) {
                entry.seen_ms = now_ms;
                self.series.insert(key, entry);
                report.series += 1;
            } else {
                report.other_settings += 1;
            }
        }
        report.not_restored = report.other_settings + report.beyond_capacity;
        self.correlator = snapshot.correlator;
        report
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
        let Ok(mut entry) = serde_json::from_str::<ModelledSeries>(state) else {
            return false;
        };
        let config = self.model_config(&entry.name, &entry.labels, entry.counter);
        if self.series.contains_key(key)
            || !entry.detector.reconfigure(&config)
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

    /// The last point of every series, sorted by series key: name, labels and what
    /// the models made of it.
    pub fn last_points(&self) -> Vec<(&str, &BTreeMap<String, String>, &LastPoint)> {
        let mut keys: Vec<&String> = self.series.keys().collect();
        keys.sort();
        keys.into_iter()
            .filter_map(|key| {
                let series = &self.series[key];
                series
                    .last
                    .as_ref()
                    .map(|last| (series.name.as_str(), &series.labels, last))
            })
            .collect()
    }

    /// Every series modelled, sorted by key: name, labels, points learnt and whether
    /// the full model still warms up (`/api/v1/series`).
    pub fn series_states(&self) -> Vec<SeriesState<'_>> {
        let mut states: Vec<SeriesState<'_>> = self
            .series
            .iter()
            .map(|(key, series)| SeriesState {
                key,
                name: &series.name,
                labels: &series.labels,
                points: series.detector.points_seen(),
                learning: series.detector.is_learning(),
            })
            .collect();
        states.sort_by(|a, b| a.key.cmp(b.key));
        states
    }

    /// The counts behind the self-metrics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Whether this detector correlates anomalies into incidents (with Kafka, one of the
    /// group does).
    pub fn is_correlating(&self) -> bool {
        self.remote.as_ref().is_none_or(|r| r.correlating)
    }
}

/// A warning's labels: the series' own plus its metric name.
fn warning_labels(name: &str, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut all = labels.clone();
    all.insert("metric".to_owned(), name.to_owned());
    all
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
