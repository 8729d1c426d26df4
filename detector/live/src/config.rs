//! `omen detect --config FILE`: where samples come from, how series are kept, how anomalies
//! are grouped into incidents and where alerts go. Every field has a default, so an empty
//! file is a detector that serves remote_write and `/metrics` on 127.0.0.1:9751.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use regex::Regex;
use serde::Deserialize;
use thiserror::Error;

use crate::engine::select::{Selection, Selector};
use omen_common::http::ServerLimits;
use omen_common::tls::HttpClientConfig;
use omen_detector::model::baseline::{EventEffect, PlannedEvent};
use omen_detector::model::detector::{SeriesDetector, SeriesDetectorConfig};
use omen_detector::wire::remote_write;

/// Errors from loading or checking a detector configuration.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Yaml {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{field}: invalid regex: {source}")]
    Regex {
        field: String,
        source: Box<regex::Error>,
    },
    #[error("{field}: {reason}")]
    Invalid { field: String, reason: String },
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The default address of the detector's HTTP server (`/metrics`, remote_write).
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9751))
}

/// The whole `omen detect` configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    pub listen: SocketAddr,
    /// TLS and basic auth of every HTTP listener: a web config file in the Prometheus
    /// exporter toolkit's format (`--web.config.file`).
    pub web_config_file: Option<PathBuf>,
    /// Connection cap and timeouts of every HTTP listener (`listen`, OTLP/HTTP).
    pub http: ServerLimits,
    /// Prometheus/OpenMetrics targets scraped directly.
    pub scrape: Vec<ScrapeConfig>,
    /// The remote_write receiver at `POST /api/v1/write`.
    pub remote_write: RemoteWriteConfig,
    /// Prometheus servers polled with PromQL.
    pub prometheus: Vec<PrometheusConfig>,
    pub store: StoreConfig,
    /// Model settings for every series.
    pub detector: SeriesDetectorConfig,
    /// Limits that early warnings look ahead to, per metric name.
    pub limits: Vec<LimitConfig>,
    pub correlation: CorrelationConfig,
    pub alerting: AlertingConfig,
    /// Samples from a Kafka topic shared by a consumer group of detectors.
    pub kafka: Option<KafkaConfig>,
    /// Which series of every source are modelled (each source may narrow it further).
    pub select: Selection,
    /// OTLP trace receivers; without this section no spans are read.
    pub traces: Option<TracesConfig>,
    /// Planned events (a campaign, a migration): the series they touch are expected to
    /// change by their effect while they last, and are not learnt from meanwhile.
    pub calendar: Vec<CalendarEvent>,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            web_config_file: None,
            http: ServerLimits::default(),
            scrape: Vec::new(),
            remote_write: RemoteWriteConfig::default(),
            prometheus: Vec::new(),
            store: StoreConfig::default(),
            detector: SeriesDetectorConfig::default(),
            limits: Vec::new(),
            correlation: CorrelationConfig::default(),
            alerting: AlertingConfig::default(),
            kafka: None,
            select: Selection::default(),
            traces: None,
            calendar: Vec::new(),
        }
    }
}

/// A time in the configuration: RFC 3339 (or any form `omen backtest` reads), kept in Unix
/// milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeConfig(pub i64);

impl<'de> Deserialize<'de> for TimeConfig {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        omen_detector::series::parse_timestamp(&text)
            .map(TimeConfig)
            .map_err(|e| serde::de::Error::custom(format!("`{text}`: {e}")))
    }
}

/// One planned event of the calendar.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarEvent {
    pub name: String,
    pub start: TimeConfig,
    /// Exclusive.
    pub end: TimeConfig,
    /// The series it touches (a Prometheus series selector).
    #[serde(rename = "match")]
    pub select: Selector,
    /// What it does to them: `{type: scale, factor: 2}` or `{type: offset, offset: 10}`.
    pub effect: EventEffect,
}

/// A regex on metric names, anchored at both ends (as PromQL's `=~`).
#[derive(Debug, Clone)]
pub struct NameMatch(Regex);

impl NameMatch {
    pub fn new(field: &str, pattern: &str) -> Result<Self, ConfigError> {
        Regex::new(&format!("^(?:{pattern})$"))
            .map(Self)
            .map_err(|source| ConfigError::Regex {
                field: field.to_owned(),
                source: Box::new(source),
            })
    }

    pub fn is_match(&self, name: &str) -> bool {
        self.0.is_match(name)
    }
}

impl<'de> Deserialize<'de> for NameMatch {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let pattern = String::deserialize(deserializer)?;
        Self::new("match", &pattern).map_err(serde::de::Error::custom)
    }
}

/// One scraped target.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    pub url: String,
    #[serde(default = "default_interval", with = "omen_common::duration")]
    pub interval: Duration,
    #[serde(default = "default_timeout", with = "omen_common::duration")]
    pub timeout: Duration,
    /// Added as the `job` label, as Prometheus does; `instance` is the URL's host:port.
    #[serde(default = "default_job")]
    pub job: String,
    /// Only metric names matching this are modelled (default: all).
    #[serde(rename = "match")]
    pub name_match: Option<NameMatch>,
    /// Only series matching one of these are modelled (within the global `select`).
    #[serde(default)]
    pub include: Vec<Selector>,
    /// Series matching one of these are not modelled.
    #[serde(default)]
    pub exclude: Vec<Selector>,
    /// TLS and credentials for the target, as Prometheus' `http_config`.
    #[serde(default)]
    pub http_config: HttpClientConfig,
}

fn default_interval() -> Duration {
    Duration::from_secs(15)
}

fn default_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_job() -> String {
    "scrape".to_owned()
}

/// The OTLP trace receivers (gRPC and HTTP, plus `POST /v1/traces` on the detector's own
/// listener) and what they build from spans.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TracesConfig {
    /// OTLP/gRPC listener (`null`: none).
    pub otlp_grpc: Option<SocketAddr>,
    /// OTLP/HTTP listener (`null`: none; `/v1/traces` on `listen` stays).
    pub otlp_http: Option<SocketAddr>,
    /// How often the per-service and per-edge series are sampled for the models.
    #[serde(with = "omen_common::duration")]
    pub interval: Duration,
    /// A trace is complete once no span of it has ended for this long.
    #[serde(with = "omen_common::duration")]
    pub wait: Duration,
    /// Largest request body (compressed) or gRPC message accepted.
    pub max_body_bytes: usize,
    /// Largest decompressed body accepted.
    pub max_decoded_bytes: usize,
    /// Span-metrics series kept before further keys fold into the overflow series.
    pub max_span_series: usize,
    /// Service-graph edges kept before further edges fold into the overflow edge.
    pub max_edges: usize,
    /// Spans held while their traces complete.
    pub max_held_spans: usize,
    /// Spans waiting to be processed; a request that would take the queue past it is
    /// refused as retryable.
    pub queue: usize,
}

impl Default for TracesConfig {
    fn default() -> Self {
        Self {
            otlp_grpc: Some(SocketAddr::from(([127, 0, 0, 1], 4317))),
            otlp_http: Some(SocketAddr::from(([127, 0, 0, 1], 4318))),
            interval: Duration::from_secs(15),
            wait: Duration::from_secs(10),
            max_body_bytes: 4 << 20,
            max_decoded_bytes: 16 << 20,
            max_span_series: 10_000,
            max_edges: 10_000,
            max_held_spans: 1_000_000,
            queue: 200_000,
        }
    }
}

/// The remote_write receiver.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RemoteWriteConfig {
    pub enabled: bool,
    /// Largest compressed body accepted (413 beyond).
    pub max_body_bytes: usize,
    /// Largest decompressed body accepted (413 beyond).
    pub max_decoded_bytes: usize,
    /// Series per request (413 beyond).
    pub series_limit: usize,
    /// Labels per series, `__name__` included; a series over any label limit is skipped
    /// and counted, and the rest of its request taken.
    pub label_limit: usize,
    /// Bytes per label name.
    pub label_name_length_limit: usize,
    /// Bytes per label value.
    pub label_value_length_limit: usize,
    #[serde(rename = "match")]
    pub name_match: Option<NameMatch>,
    /// Only series matching one of these are modelled (within the global `select`).
    pub include: Vec<Selector>,
    /// Series matching one of these are not modelled.
    pub exclude: Vec<Selector>,
}

impl RemoteWriteConfig {
    /// What one request may hold.
    pub fn limits(&self) -> remote_write::Limits {
        remote_write::Limits {
            max_decoded_bytes: self.max_decoded_bytes,
            series_limit: self.series_limit,
            label_limit: self.label_limit,
            label_name_length_limit: self.label_name_length_limit,
            label_value_length_limit: self.label_value_length_limit,
        }
    }
}

impl Default for RemoteWriteConfig {
    fn default() -> Self {
        let limits = remote_write::Limits::default();
        Self {
            enabled: true,
            max_body_bytes: 1 << 20,
            max_decoded_bytes: limits.max_decoded_bytes,
            series_limit: limits.series_limit,
            label_limit: limits.label_limit,
            label_name_length_limit: limits.label_name_length_limit,
            label_value_length_limit: limits.label_value_length_limit,
            name_match: None,
            include: Vec::new(),
            exclude: Vec::new(),
        }
    }
}

/// A PromQL query polled from a Prometheus server.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryConfig {
    /// Names the resulting series when the query drops `__name__` (as `rate()` does).
    pub name: String,
    pub expr: String,
}

/// A Prometheus server polled with PromQL: `query_range` over `warmup` at start (learnt
/// from, not alerted on), then every `interval` the range since the last poll.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrometheusConfig {
    pub url: String,
    pub queries: Vec<QueryConfig>,
    #[serde(default = "default_interval", with = "omen_common::duration")]
    pub interval: Duration,
    /// Resolution of the series; defaults to `interval`.
    #[serde(default, with = "omen_common::duration::option")]
    pub step: Option<Duration>,
    #[serde(default = "default_warmup", with = "omen_common::duration")]
    pub warmup: Duration,
    #[serde(default = "default_timeout", with = "omen_common::duration")]
    pub timeout: Duration,
    /// TLS and credentials for the server, as Prometheus' `http_config`.
    #[serde(default)]
    pub http_config: HttpClientConfig,
}

fn default_warmup() -> Duration {
    Duration::from_secs(24 * 3600)
}

impl PrometheusConfig {
    pub fn step(&self) -> Duration {
        self.step.unwrap_or(self.interval)
    }
}

/// The series store.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Series beyond this many are not modelled (counted in
    /// `omen_detector_series_dropped_total`). About 50 KiB of state each.
    pub max_series: usize,
    /// A series with no sample for this long is forgotten.
    #[serde(with = "omen_common::duration")]
    pub ttl: Duration,
    /// Model state is saved here periodically and at shutdown, and restored at start.
    pub snapshot_path: Option<PathBuf>,
    #[serde(with = "omen_common::duration")]
    pub snapshot_interval: Duration,
    /// Model histogram buckets too (one series per bucket: off by default).
    pub histogram_buckets: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            max_series: 10_000,
            ttl: Duration::from_secs(15 * 60),
            snapshot_path: None,
            snapshot_interval: Duration::from_secs(60),
            histogram_buckets: false,
        }
    }
}

/// A limit for early warnings on every series of one metric.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    pub metric: String,
    pub upper: Option<f64>,
    pub lower: Option<f64>,
}

/// How anomalies are grouped into incidents.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelationConfig {
    /// An anomaly joins an open incident whose last activity is at most this old.
    #[serde(with = "omen_common::duration")]
    pub window: Duration,
    /// An incident resolves when none of its series has been anomalous for this long.
    #[serde(with = "omen_common::duration")]
    pub quiet: Duration,
    /// Anomalies sharing a value of any of these labels belong together. Not `job` or
    /// `instance` by default: every series of a target shares them, so they would join
    /// whatever goes wrong on one host into one incident.
    pub labels: Vec<String>,
    /// The label naming a series' service, for `dependencies`.
    pub service_label: String,
    /// Service → the services it calls. A callee anomalous with its caller joins the
    /// caller's incident and ranks as more likely root cause.
    pub dependencies: BTreeMap<String, Vec<String>>,
    /// Onsets this close count as simultaneous when ranking root causes.
    #[serde(with = "omen_common::duration")]
    pub onset_tolerance: Duration,
    /// An incident is raised once its series have been anomalous (alarm, off the band,
    /// or still unlikely) on this many points, or as soon as two series are in it.
    pub confirm_points: u32,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(5 * 60),
            quiet: Duration::from_secs(5 * 60),
            labels: vec!["service".to_owned()],
            service_label: "service".to_owned(),
            dependencies: BTreeMap::new(),
            onset_tolerance: Duration::from_secs(30),
            confirm_points: 3,
        }
    }
}

/// Where alerts go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertingConfig {
    /// Alertmanager base URLs (`POST {url}/api/v2/alerts`).
    pub alertmanager: Vec<String>,
    /// URLs that receive Alertmanager's webhook JSON, one notification per alert change.
    pub webhook: Vec<String>,
    /// Print every alert change as a JSON line on standard output.
    pub stdout: bool,
    /// Firing alerts are re-sent to Alertmanager this often.
    #[serde(with = "omen_common::duration")]
    pub resend: Duration,
    #[serde(with = "omen_common::duration")]
    pub timeout: Duration,
    /// Alert updates held per sink while it is unreachable; beyond, the oldest are
    /// dropped and counted.
    pub queue: usize,
    /// Raise `warning` alerts when a forecast leaves the band or crosses a limit.
    pub early_warnings: bool,
    /// Linked from every alert (`dashboard` annotation and generatorURL).
    pub dashboard_url: String,
    /// Where omen's runbooks are (`/runbooks` on a detector or agent): every alert links
    /// its section in the `runbook_url` annotation.
    pub runbook_url: String,
    /// TLS and credentials for every Alertmanager and webhook, as Prometheus'
    /// `http_config`.
    pub http_config: HttpClientConfig,
}

impl Default for AlertingConfig {
    fn default() -> Self {
        Self {
            alertmanager: Vec::new(),
            webhook: Vec::new(),
            stdout: false,
            resend: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            queue: 10_000,
            early_warnings: true,
            dashboard_url: "http://127.0.0.1:3000/d/omen-detector".to_owned(),
            runbook_url: "http://127.0.0.1:9751/runbooks".to_owned(),
            http_config: HttpClientConfig::default(),
        }
    }
}

/// The `kafka` section of `omen detect`'s configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    /// The consumer group the detectors share.
    pub group: String,
    /// Samples, keyed by series.
    pub topic: String,
    /// Model state per series, for hand-offs between detectors.
    pub state_topic: String,
    /// Evidence for the one correlator of the group (see the module's documentation);
    /// without it, each detector correlates what it scores.
    #[serde(default)]
    pub anomalies_topic: Option<String>,
    #[serde(default = "default_handoff", with = "omen_common::duration")]
    pub handoff_interval: Duration,
    /// Further librdkafka properties, for the consumer and the producer.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_handoff() -> Duration {
    Duration::from_secs(60)
}

impl DetectConfig {
    /// Reads and checks a YAML file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks YAML text; relative paths are relative to `path`'s folder.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config = Self::parse_unchecked(text, path)?;
        config.check()?;
        Ok(config)
    }

    /// Reads a YAML file and gives every problem in it, not only the first: a file that
    /// does not parse has one, one that parses as many as [`DetectConfig::problems`] finds.
    pub fn load_all(path: &Path) -> Result<Self, Vec<ConfigError>> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            vec![ConfigError::Io {
                path: path.to_owned(),
                source,
            }]
        })?;
        let config = Self::parse_unchecked(&text, path).map_err(|e| vec![e])?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(problems)
        }
    }

    fn parse_unchecked(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = if text.trim().is_empty() {
            Self::default()
        } else {
            serde_yaml::from_str(text).map_err(|source| ConfigError::Yaml {
                path: path.to_owned(),
                source,
            })?
        };
        let base = path.parent().unwrap_or(Path::new(""));
        config.alerting.http_config.resolve(base);
        for scrape in &mut config.scrape {
            scrape.http_config.resolve(base);
        }
        for prometheus in &mut config.prometheus {
            prometheus.http_config.resolve(base);
        }
        for relative in [&mut config.store.snapshot_path, &mut config.web_config_file]
            .into_iter()
            .flatten()
            .filter(|p| p.is_relative())
        {
            *relative = base.join(&*relative);
        }
        Ok(config)
    }

    /// `https` when the web config file asks for TLS, else `http`.
    fn scheme(&self) -> &'static str {
        let tls = self.web_config_file.as_deref().is_some_and(|path| {
            omen_common::web::WebSecurity::load(path).is_ok_and(|web| web.tls().is_some())
        });
        if tls {
            "https"
        } else {
            "http"
        }
    }

    /// The configuration resolved, one line per input, output and path: what `omen check
    /// detect` prints and `omen detect` logs when it starts.
    pub fn describe(&self) -> Vec<String> {
        let duration = |d: Duration| omen_common::duration::format(d);
        let mut lines = vec![format!(
            "listen: {}://{}/ (/metrics, /api/v1/incidents; at most {} connections)",
            self.scheme(),
            self.listen,
            self.http.max_connections
        )];
        if let Some(path) = &self.web_config_file {
            lines.push(format!("web config: {}", path.display()));
        }
        for scrape in &self.scrape {
            lines.push(format!(
                "scrape: {} every {} as job {}",
                scrape.url,
                duration(scrape.interval),
                scrape.job
            ));
        }
        if self.remote_write.enabled {
            lines.push(format!(
                "remote_write: receives on {}://{}/api/v1/write",
                self.scheme(),
                self.listen
            ));
        }
        for prometheus in &self.prometheus {
            lines.push(format!(
                "prometheus: {} queries of {} every {} (warm-up {})",
                prometheus.queries.len(),
                prometheus.url,
                duration(prometheus.interval),
                duration(prometheus.warmup)
            ));
        }
        if let Some(kafka) = &self.kafka {
            lines.push(format!(
                "kafka: topic {} of {} in group {} (state in {})",
                kafka.topic, kafka.brokers, kafka.group, kafka.state_topic
            ));
        }
        if let Some(traces) = &self.traces {
            let receivers: Vec<String> = [
                traces.otlp_grpc.map(|a| format!("OTLP/gRPC {a}")),
                traces
                    .otlp_http
                    .map(|a| format!("OTLP/HTTP {}://{a}/v1/traces", self.scheme())),
            ]
            .into_iter()
            .flatten()
            .collect();
            lines.push(format!("traces: {}", receivers.join(", ")));
        }
        lines.push(format!(
            "select: {} include, {} exclude{}",
            self.select.include.len(),
            self.select.exclude.len(),
            if self.select.defaults {
                " (and the default exclusions: up, scrape_*, ALERTS*, omen's own)"
            } else {
                ""
            }
        ));
        lines.push(match &self.store.snapshot_path {
            Some(path) => format!(
                "snapshot: {} every {}",
                path.display(),
                duration(self.store.snapshot_interval)
            ),
            None => "snapshot: none (a restart learns every series again)".to_owned(),
        });
        let mut sinks: Vec<String> = self
            .alerting
            .alertmanager
            .iter()
            .map(|url| format!("Alertmanager {url}"))
            .chain(
                self.alerting
                    .webhook
                    .iter()
                    .map(|url| format!("webhook {url}")),
            )
            .collect();
        if self.alerting.stdout {
            sinks.push("standard output".to_owned());
        }
        lines.push(if sinks.is_empty() {
            "alerts: nowhere (incidents only on /api/v1/incidents)".to_owned()
        } else {
            format!("alerts: {}", sinks.join(", "))
        });
        if !self.calendar.is_empty() || !self.limits.is_empty() {
            lines.push(format!(
                "calendar: {} planned events; limits: {} metrics",
                self.calendar.len(),
                self.limits.len()
            ));
        }
        lines
    }

    /// Every planned event ends after it starts and has an effect that can apply.
    fn check_calendar(&self) -> Result<(), ConfigError> {
        for (i, event) in self.calendar.iter().enumerate() {
            if event.end.0 <= event.start.0 {
                return Err(invalid(
                    format!("calendar[{i}] ({})", event.name),
                    "ends before it starts",
                ));
            }
            let valid = match event.effect {
                EventEffect::Scale { factor } => factor.is_finite() && factor > 0.0,
                EventEffect::Offset { offset } => offset.is_finite(),
                EventEffect::Shift => true,
            };
            if !valid {
                return Err(invalid(
                    format!("calendar[{i}].effect ({})", event.name),
                    "a factor must be positive and an offset finite",
                ));
            }
        }
        Ok(())
    }

    /// Checks what serde cannot: URLs, positive durations, a model that builds. The first
    /// problem found is the error; [`DetectConfig::problems`] lists them all.
    pub fn check(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// Every problem [`DetectConfig::check`] looks for, in the order of the file.
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let keep = |errors: &mut Vec<ConfigError>, checked: Result<(), ConfigError>| {
            if let Err(error) = checked {
                errors.push(error);
            }
        };
        self.endpoint_problems(&mut errors);
        if let Err(e) = SeriesDetector::new(self.detector.clone()) {
            errors.push(invalid("detector", e.to_string()));
        }
        keep(&mut errors, self.check_calendar());
        let positive = |field: String, d: Duration| {
            if d.is_zero() {
                Err(invalid(field, "must be more than zero"))
            } else {
                Ok(())
            }
        };
        for (i, scrape) in self.scrape.iter().enumerate() {
            keep(
                &mut errors,
                positive(format!("scrape[{i}].interval"), scrape.interval),
            );
            keep(
                &mut errors,
                positive(format!("scrape[{i}].timeout"), scrape.timeout),
            );
        }
        for (i, prometheus) in self.prometheus.iter().enumerate() {
            keep(
                &mut errors,
                positive(format!("prometheus[{i}].interval"), prometheus.interval),
            );
            keep(
                &mut errors,
                positive(format!("prometheus[{i}].step"), prometheus.step()),
            );
            if prometheus.queries.is_empty() {
                errors.push(invalid(format!("prometheus[{i}].queries"), "is empty"));
            }
        }
        keep(
            &mut errors,
            self.http
                .check()
                .map_err(|(field, reason)| invalid(format!("http.{field}"), reason)),
        );
        keep(
            &mut errors,
            positive("alerting.resend".to_owned(), self.alerting.resend),
        );
        keep(
            &mut errors,
            positive("alerting.timeout".to_owned(), self.alerting.timeout),
        );
        keep(
            &mut errors,
            positive("store.ttl".to_owned(), self.store.ttl),
        );
        keep(
            &mut errors,
            positive(
                "store.snapshot_interval".to_owned(),
                self.store.snapshot_interval,
            ),
        );
        keep(
            &mut errors,
            positive("correlation.quiet".to_owned(), self.correlation.quiet),
        );
        if self.alerting.queue == 0 {
            errors.push(invalid("alerting.queue", "must be at least 1"));
        }
        if self.store.max_series == 0 {
            errors.push(invalid("store.max_series", "must be at least 1"));
        }
        self.size_problems(&mut errors);
        if let Some(traces) = &self.traces {
            keep(
                &mut errors,
                positive("traces.interval".to_owned(), traces.interval),
            );
            keep(&mut errors, positive("traces.wait".to_owned(), traces.wait));
        }
        self.limit_problems(&mut errors);
        errors
    }

    /// What omen listens with and reaches out to: the web config file, every URL
    /// (`http://` or `https://`) and every client's `http_config`.
    fn endpoint_problems(&self, errors: &mut Vec<ConfigError>) {
        if let Some(path) = &self.web_config_file {
            if let Err(e) = omen_common::web::WebSecurity::load(path) {
                errors.push(invalid("web_config_file", e.to_string()));
            }
        }
        let url = |field: String, url: &str| -> Option<ConfigError> {
            match reqwest::Url::parse(url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") => None,
                Ok(_) => Some(invalid(
                    field,
                    format!("`{url}`: only http:// and https:// are supported"),
                )),
                Err(e) => Some(invalid(field, format!("`{url}`: {e}"))),
            }
        };
        let client = |field: String, http: &HttpClientConfig| {
            http.check().err().map(|reason| invalid(field, reason))
        };
        let scrapes = self.scrape.iter().enumerate().flat_map(|(i, scrape)| {
            [
                url(format!("scrape[{i}].url"), &scrape.url),
                client(format!("scrape[{i}].http_config"), &scrape.http_config),
            ]
        });
        let sources = self.prometheus.iter().enumerate().flat_map(|(i, source)| {
            [
                url(format!("prometheus[{i}].url"), &source.url),
                client(format!("prometheus[{i}].http_config"), &source.http_config),
            ]
        });
        let alerting = &self.alerting;
        let alertmanagers = alerting
            .alertmanager
            .iter()
            .enumerate()
            .map(|(i, am)| url(format!("alerting.alertmanager[{i}]"), am));
        let webhooks = alerting
            .webhook
            .iter()
            .enumerate()
            .map(|(i, hook)| url(format!("alerting.webhook[{i}]"), hook));
        let rest = [
            client("alerting.http_config".to_owned(), &alerting.http_config),
            url("alerting.runbook_url".to_owned(), &alerting.runbook_url),
        ];
        errors.extend(
            scrapes
                .chain(sources)
                .chain(alertmanagers)
                .chain(webhooks)
                .chain(rest)
                .flatten(),
        );
    }

    /// Forecast limits: finite, the lower below the upper.
    fn limit_problems(&self, errors: &mut Vec<ConfigError>) {
        for (i, limit) in self.limits.iter().enumerate() {
            let finite = |bound: Option<f64>| bound.is_none_or(f64::is_finite);
            if !finite(limit.upper) || !finite(limit.lower) {
                errors.push(invalid(
                    format!("limits[{i}]"),
                    "bounds must be finite numbers",
                ));
            }
            if let (Some(lower), Some(upper)) = (limit.lower, limit.upper) {
                if lower >= upper {
                    errors.push(invalid(
                        format!("limits[{i}]"),
                        format!("lower ({lower}) must be below upper ({upper})"),
                    ));
                }
            }
        }
    }

    /// Sizes and counts that must be at least 1, or every request would be refused.
    fn size_problems(&self, errors: &mut Vec<ConfigError>) {
        let remote_write = &self.remote_write;
        let mut sizes = vec![
            ("remote_write.max_body_bytes", remote_write.max_body_bytes),
            (
                "remote_write.max_decoded_bytes",
                remote_write.max_decoded_bytes,
            ),
            ("remote_write.series_limit", remote_write.series_limit),
            ("remote_write.label_limit", remote_write.label_limit),
            (
                "remote_write.label_name_length_limit",
                remote_write.label_name_length_limit,
            ),
            (
                "remote_write.label_value_length_limit",
                remote_write.label_value_length_limit,
            ),
        ];
        if let Some(traces) = &self.traces {
            sizes.extend([
                ("traces.max_body_bytes", traces.max_body_bytes),
                ("traces.max_decoded_bytes", traces.max_decoded_bytes),
                ("traces.max_span_series", traces.max_span_series),
                ("traces.max_edges", traces.max_edges),
                ("traces.max_held_spans", traces.max_held_spans),
                ("traces.queue", traces.queue),
            ]);
        }
        for (field, size) in sizes {
            if size == 0 {
                errors.push(invalid(
                    field,
                    "must be at least 1 (every request would be refused)",
                ));
            }
        }
    }

    /// The model configuration for one metric: the shared one plus its limits.
    pub fn detector_for(
        &self,
        metric: &str,
        labels: &BTreeMap<String, String>,
    ) -> SeriesDetectorConfig {
        let mut config = self.detector.clone();
        for limit in self.limits.iter().filter(|l| l.metric == metric) {
            config.forecast.upper_limit = limit.upper.or(config.forecast.upper_limit);
            config.forecast.lower_limit = limit.lower.or(config.forecast.lower_limit);
        }
        let planned = self
            .calendar
            .iter()
            .filter(|event| event.select.matches_series(metric, labels))
            .map(|event| PlannedEvent {
                start_ms: event.start.0,
                end_ms: event.end.0,
                effect: event.effect,
            });
        config.baseline.events.extend(planned);
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_default_detector() {
        let config = DetectConfig::parse("", Path::new("d.yaml")).unwrap();
        assert_eq!(config.listen, default_listen());
        assert!(config.remote_write.enabled);
    }

    #[test]
    fn a_full_file_parses_with_relative_snapshot_path() {
        let text = r#"
listen: 127.0.0.1:0
scrape:
  - { url: "http://127.0.0.1:9750/metrics", interval: 5s, job: agent, match: "stock_.*" }
prometheus:
  - url: http://127.0.0.1:9090
    queries: [{ name: lines, expr: "sum(rate(omen_agent_lines_total[1m]))" }]
    interval: 10s
    warmup: 1h
store: { snapshot_path: state.json, ttl: 10m }
detector: { warmup_points: 20 }
limits: [{ metric: queue_depth, upper: 1000 }]
correlation: { window: 1m, dependencies: { checkout: [inventory] } }
alerting: { alertmanager: ["http://127.0.0.1:9093"], stdout: true }
"#;
        let config = DetectConfig::parse(text, Path::new("/etc/omen/detect.yaml")).unwrap();
        assert_eq!(
            config.store.snapshot_path.as_deref(),
            Some(Path::new("/etc/omen/state.json"))
        );
        let scrape = &config.scrape[0];
        assert!(scrape
            .name_match
            .as_ref()
            .unwrap()
            .is_match("stock_event_pending"));
        assert!(!scrape.name_match.as_ref().unwrap().is_match("xstock_"));
        assert_eq!(config.prometheus[0].step(), Duration::from_secs(10));
        assert_eq!(config.detector.warmup_points, 20);
        assert_eq!(
            config
                .detector_for("queue_depth", &BTreeMap::new())
                .forecast
                .upper_limit,
            Some(1000.0)
        );
        assert_eq!(
            config
                .detector_for("other", &BTreeMap::new())
                .forecast
                .upper_limit,
            None
        );
    }

    #[test]
    fn the_documented_example_parses() {
        let text = include_str!("../../../examples/detector/detect.yaml");
        let config = DetectConfig::parse(text, Path::new("examples/detector/detect.yaml")).unwrap();
        assert_eq!(
            config.correlation.dependencies["inventory"],
            ["redis", "kafka"]
        );
        assert_eq!(
            config
                .detector_for("stock_event_pending", &BTreeMap::new())
                .forecast
                .upper_limit,
            Some(500.0)
        );
        let traces = config.traces.expect("the example enables traces");
        assert_eq!(traces.otlp_grpc, TracesConfig::default().otlp_grpc);
        assert_eq!(traces.interval, Duration::from_secs(15));
    }

    #[test]
    fn calendar_events_apply_to_the_series_they_match() {
        let text = r#"
calendar:
  - name: spring sale
    start: 2026-03-01T08:00:00Z
    end: 2026-03-01T20:00:00Z
    match: '{__name__="http_requests_per_second",service=~"web|api"}'
    effect: { type: scale, factor: 2 }
  - { name: deploy, start: '2026-03-02T10:00:00Z', end: '2026-03-02T11:00:00Z', match: '{service="api"}', effect: { type: shift } }
"#;
        let config = DetectConfig::parse(text, Path::new("t.yaml")).unwrap();
        let labels = |service: &str| BTreeMap::from([("service".to_owned(), service.to_owned())]);
        let events = |name: &str, service: &str| {
            config
                .detector_for(name, &labels(service))
                .baseline
                .events
                .iter()
                .map(|e| (e.start_ms, e.effect))
                .collect::<Vec<_>>()
        };
        let sale = (1_772_352_000_000, EventEffect::Scale { factor: 2.0 });
        let deploy = (1_772_445_600_000, EventEffect::Shift);
        assert_eq!(events("http_requests_per_second", "api"), [sale, deploy]);
        assert_eq!(events("http_requests_per_second", "web"), [sale]);
        assert_eq!(events("queue_depth", "api"), [deploy]);
        assert!(events("queue_depth", "worker").is_empty());
        for (text, field) in [
            (
                "calendar: [{ name: x, start: '2026-03-02T10:00:00Z', end: '2026-03-02T09:00:00Z', match: up, effect: { type: shift } }]",
                "calendar[0] (x)",
            ),
            (
                "calendar: [{ name: x, start: '2026-03-02T10:00:00Z', end: '2026-03-02T11:00:00Z', match: up, effect: { type: scale, factor: -1 } }]",
                "calendar[0].effect (x)",
            ),
        ] {
            let error = DetectConfig::parse(text, Path::new("t.yaml")).unwrap_err();
            assert!(error.to_string().starts_with(field), "{error}");
        }
        let unparsable = "calendar: [{ name: x, start: 'soon', end: '2026-03-02T11:00:00Z', match: up, effect: { type: shift } }]";
        assert!(DetectConfig::parse(unparsable, Path::new("t.yaml")).is_err());
    }

    #[test]
    fn bad_traces_settings_name_the_field() {
        for (text, field) in [
            ("traces: { interval: 0s }", "traces.interval"),
            ("traces: { queue: 0 }", "traces.queue"),
            ("traces: { max_body_bytes: 0 }", "traces.max_body_bytes"),
        ] {
            let error = DetectConfig::parse(text, Path::new("t.yaml")).unwrap_err();
            assert!(error.to_string().contains(field), "{text}: {error}");
        }
        let error = DetectConfig::parse("traces: { otlp: 1 }", Path::new("t.yaml")).unwrap_err();
        assert!(error.to_string().contains("unknown field"), "{error}");
    }

    #[test]
    fn bad_configs_say_what_is_wrong() {
        for (text, needle) in [
            ("scrape: [{ url: 'ftp://x/metrics' }]", "only http://"),
            (
                "scrape: [{ url: 'http://x', interval: 0s }]",
                "scrape[0].interval",
            ),
            ("alerting: { queue: 0 }", "alerting.queue"),
            ("scrape: [{ url: 'http://x', match: '(' }]", "regex"),
            ("prometheus: [{ url: 'http://x', queries: [] }]", "queries"),
            ("unknown: 1", "unknown field"),
            ("detector: { baseline: { band: -1 } }", "band"),
            (
                "detector: { alarm_level: .nan }",
                "alarm_level must be in (0, 1], got NaN",
            ),
            (
                "remote_write: { max_body_bytes: 0 }",
                "remote_write.max_body_bytes: must be at least 1",
            ),
            (
                "limits: [{ metric: x, upper: 1, lower: 5 }]",
                "limits[0]: lower (5) must be below upper (1)",
            ),
            (
                "limits: [{ metric: x, upper: .inf }]",
                "limits[0]: bounds must be finite numbers",
            ),
        ] {
            let error = DetectConfig::parse(text, Path::new("d.yaml")).unwrap_err();
            assert!(error.to_string().contains(needle), "{text}: {error}");
        }
    }
}
