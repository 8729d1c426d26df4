//! OTLP push: every `interval`, the registry is read under the pipeline lock into one
//! `ExportMetricsServiceRequest` and POSTed as protobuf over OTLP/HTTP.
//!
//! Everything is cumulative: counters are monotonic Sums and histograms cumulative
//! Histograms, each point starting at its series' `_created` time, which survives
//! restarts through the checkpoint. A failed push therefore loses nothing: the next one
//! carries the totals. Failures are counted in `omen_agent_otlp_exports_total{result}` and
//! logged at most once a minute.
//!
//! Why the `opentelemetry-proto` messages and not the `opentelemetry-otlp` exporter: the
//! SDK's `ResourceMetrics` has no public constructor (it is only filled by the SDK's own
//! instruments) and holds one start time per metric, not per series, so our values and
//! start times cannot go through it. The wire format is the same. Plain `http://` only:
//! no TLS stack is linked (a local collector is the intended peer).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::uri::{Authority, PathAndQuery, Scheme};
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use omen_common::tls::HttpClientConfig;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::metrics::v1::{
    metric, number_data_point, AggregationTemporality, Gauge, Histogram as OtlpHistogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde::Deserialize;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;
use tracing::{debug, error, info, warn};

use crate::config::DurationConfig;
use crate::registry::{FamilyDesc, MetricKind, Registry, Series, Value};
use crate::state::AgentState;

const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:4318/v1/metrics";
const DEFAULT_SERVICE_NAME: &str = "omen-agent";
const SERVICE_NAME: &str = "service.name";
/// A collector's reply is a small protobuf message; anything longer is not read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
const WARN_EVERY: Duration = Duration::from_secs(60);

/// The `otlp:` section of the agent's config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OtlpConfig {
    /// OTLP/HTTP metrics URL (protobuf), `http://` only.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    #[serde(default = "default_interval")]
    pub interval: DurationConfig,
    /// Bound on one push: connect, send and read the reply.
    #[serde(default = "default_timeout")]
    pub timeout: DurationConfig,
    /// Extra request headers (e.g. an auth token for the collector).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Resource attributes; `service.name` is `omen-agent` unless given.
    #[serde(default)]
    pub resource: BTreeMap<String, String>,
    /// TLS (for an `https://` endpoint) and credentials, as Prometheus' `http_config`.
    #[serde(default)]
    pub http_config: HttpClientConfig,
}

fn default_endpoint() -> String {
    DEFAULT_ENDPOINT.to_owned()
}

fn default_interval() -> DurationConfig {
    DurationConfig(Duration::from_secs(10))
}

fn default_timeout() -> DurationConfig {
    DurationConfig(Duration::from_secs(5))
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            endpoint: default_endpoint(),
            interval: default_interval(),
            timeout: default_timeout(),
            headers: BTreeMap::new(),
            resource: BTreeMap::new(),
            http_config: HttpClientConfig::default(),
        }
    }
}

/// Why an `otlp:` section cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OtlpConfigError {
    #[error("otlp.endpoint `{endpoint}`: {reason}")]
    Endpoint {
        endpoint: String,
        reason: &'static str,
    },
    #[error("otlp.{field}: must be more than zero")]
    ZeroDuration { field: &'static str },
    #[error("otlp.headers: `{name}` is not a valid header name or value")]
    Header { name: String },
    #[error("otlp.http_config: {0}")]
    HttpConfig(String),
}

/// Why one push failed; the next push retries with the cumulative values.
#[derive(Debug, thiserror::Error)]
pub enum OtlpPushError {
    #[error("cannot connect: {0}")]
    Connect(#[source] std::io::Error),
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    #[error("no reply within {0:?}")]
    Timeout(Duration),
    #[error("collector answered {status}: {message}")]
    Status { status: StatusCode, message: String },
    #[error("credentials: {0}")]
    Credentials(String),
}

impl OtlpConfig {
    /// Checks the config without I/O.
    pub fn build(self) -> Result<OtlpExporter, OtlpConfigError> {
        let bad_endpoint = |reason| OtlpConfigError::Endpoint {
            endpoint: self.endpoint.clone(),
            reason,
        };
        let uri: Uri = self
            .endpoint
            .parse()
            .map_err(|_| bad_endpoint("not a URL"))?;
        let tls = if uri.scheme() == Some(&Scheme::HTTPS) {
            let config = self
                .http_config
                .rustls()
                .map_err(OtlpConfigError::HttpConfig)?;
            Some(Arc::new(config))
        } else if uri.scheme() == Some(&Scheme::HTTP) {
            if self.http_config.tls_config.is_some() {
                return Err(bad_endpoint("tls_config needs an https:// endpoint"));
            }
            None
        } else {
            return Err(bad_endpoint("only http:// and https:// are supported"));
        };
        self.http_config
            .check()
            .map_err(OtlpConfigError::HttpConfig)?;
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| bad_endpoint("no host"))?;
        let host_header = HeaderValue::from_str(authority.as_str())
            .map_err(|_| bad_endpoint("the host is not a valid Host header"))?;
        let path = uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        for (field, duration) in [("interval", self.interval), ("timeout", self.timeout)] {
            if duration.0.is_zero() {
                return Err(OtlpConfigError::ZeroDuration { field });
            }
        }
        let headers = self
            .headers
            .iter()
            .map(|(name, value)| {
                match (
                    HeaderName::try_from(name.as_str()),
                    HeaderValue::try_from(value.as_str()),
                ) {
                    (Ok(name), Ok(value)) => Ok((name, value)),
                    _ => Err(OtlpConfigError::Header { name: name.clone() }),
                }
            })
            .collect::<Result<_, _>>()?;
        let mut resource = self.resource;
        resource
            .entry(SERVICE_NAME.to_owned())
            .or_insert_with(|| DEFAULT_SERVICE_NAME.to_owned());
        Ok(OtlpExporter {
            authority,
            tls,
            http_config: Arc::new(self.http_config),
            host_header,
            path,
            interval: self.interval.0,
            timeout: self.timeout.0,
            headers,
            resource: resource
                .into_iter()
                .map(|(key, value)| string_attribute(key, value))
                .collect(),
        })
    }
}

/// A checked OTLP/HTTP push target.
#[derive(Debug, Clone)]
pub struct OtlpExporter {
    authority: Authority,
    /// For an `https://` endpoint.
    tls: Option<Arc<tokio_rustls::rustls::ClientConfig>>,
    http_config: Arc<HttpClientConfig>,
    host_header: HeaderValue,
    path: PathAndQuery,
    interval: Duration,
    timeout: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
    resource: Vec<KeyValue>,
}

/// Checks `config`, then pushes every interval until the task is aborted. An invalid
/// config is logged and nothing is pushed; `runtime::run` checks it before starting.
pub async fn push_loop(config: OtlpConfig, state: Arc<AgentState>) {
    match config.build() {
        Ok(exporter) => exporter.push_loop(state).await,
        Err(error) => error!(%error, "otlp push disabled"),
    }
}

impl OtlpExporter {
    /// Pushes every interval (the first one interval after the start) until aborted.
    pub async fn push_loop(self, state: Arc<AgentState>) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks.tick().await;
        let mut failures = FailureLog::default();
        loop {
            ticks.tick().await;
            match self.push(&state).await {
                Ok(()) => failures.recovered(),
                Err(error) => failures.failed(&self.authority, &error),
            }
        }
    }

    /// Reads the registry (under the pipeline lock, released before sending) and the
    /// probes' metrics, sends them, and counts the outcome in
    /// `omen_agent_otlp_exports_total`.
    pub async fn push(&self, state: &AgentState) -> Result<(), OtlpPushError> {
        let (mut request, now_ns) =
            state.read_registry(|registry, now_ns| (self.collect(registry, now_ns), now_ns));
        // The probes' measurements go out with the rules' metrics.
        let now = u64::try_from(now_ns).unwrap_or(0);
        if let Some(scope) = request
            .resource_metrics
            .first_mut()
            .and_then(|r| r.scope_metrics.first_mut())
        {
            let probes = state.probes();
            let registry = probes.registry();
            scope.metrics.extend(
                registry
                    .families()
                    .map(|(desc, series)| to_metric(desc, series, now)),
            );
        }
        let result = self.send(&request).await;
        state.pipeline().count_otlp_export(result.is_ok());
        result
    }

    /// The registry's active families as one OTLP request, stamped `now_ns`.
    pub fn collect(&self, registry: &Registry, now_ns: i64) -> ExportMetricsServiceRequest {
        let now = u64::try_from(now_ns).unwrap_or(0);
        let metrics = registry
            .families()
            .map(|(desc, series)| to_metric(desc, series, now))
            .collect();
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: self.resource.clone(),
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(InstrumentationScope {
                        name: DEFAULT_SERVICE_NAME.to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..Default::default()
                    }),
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// POSTs one request as protobuf, bounded by the timeout.
    pub async fn send(&self, request: &ExportMetricsServiceRequest) -> Result<(), OtlpPushError> {
        let body = Bytes::from(request.encode_to_vec());
        tokio::time::timeout(self.timeout, self.post(body))
            .await
            .unwrap_or(Err(OtlpPushError::Timeout(self.timeout)))
    }

    async fn post(&self, body: Bytes) -> Result<(), OtlpPushError> {
        // `Authority::host` keeps the brackets of an IPv6 literal; connect wants them off.
        let host = self.authority.host();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let default_port = if self.tls.is_some() { 443 } else { 80 };
        let port = self.authority.port_u16().unwrap_or(default_port);
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(OtlpPushError::Connect)?;
        match &self.tls {
            None => self.exchange(stream, body).await,
            Some(config) => {
                let connector = TlsConnector::from(config.clone());
                let name = ServerName::try_from(host.to_owned()).map_err(|e| {
                    OtlpPushError::Connect(std::io::Error::new(std::io::ErrorKind::InvalidInput, e))
                })?;
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(OtlpPushError::Connect)?;
                self.exchange(stream, body).await
            }
        }
    }

    /// Sends `body` on `stream` (plain or TLS) and reads the collector's reply.
    async fn exchange<S>(&self, stream: S, body: Bytes) -> Result<(), OtlpPushError>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        // Drives the connection; ends when `sender` is dropped.
        let connection = tokio::spawn(connection);
        let mut http_request = Request::new(Full::new(body));
        *http_request.method_mut() = Method::POST;
        *http_request.uri_mut() = Uri::from(self.path.clone());
        let headers = http_request.headers_mut();
        headers.insert(HOST, self.host_header.clone());
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-protobuf"),
        );
        for (name, value) in &self.headers {
            headers.insert(name.clone(), value.clone());
        }
        if let Some(value) = self
            .http_config
            .authorization_header()
            .map_err(OtlpPushError::Credentials)?
        {
            let value = HeaderValue::try_from(value)
                .map_err(|_| OtlpPushError::Credentials("not a valid header value".to_owned()))?;
            headers.insert(AUTHORIZATION, value);
        }
        let response = sender.send_request(http_request).await?;
        let status = response.status();
        let reply = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .unwrap_or_default();
        drop(sender);
        connection.abort();
        if !status.is_success() {
            let message = String::from_utf8_lossy(&reply[..reply.len().min(200)]).into_owned();
            return Err(OtlpPushError::Status { status, message });
        }
        // OTLP partial success: the collector took the request but dropped some points.
        if let Some(partial) = ExportMetricsServiceResponse::decode(reply)
            .ok()
            .and_then(|r| r.partial_success)
            .filter(|p| p.rejected_data_points > 0)
        {
            warn!(
                rejected = partial.rejected_data_points,
                message = %partial.error_message,
                "otlp collector rejected some data points"
            );
        }
        Ok(())
    }
}

fn to_metric(desc: &FamilyDesc, series: &[Series], now: u64) -> Metric {
    let attributes = |series: &Series| -> Vec<KeyValue> {
        desc.label_names
            .iter()
            .zip(series.labels())
            .map(|(name, value)| string_attribute(name.clone(), value.clone()))
            .collect()
    };
    let number_points = |with_start: bool| -> Vec<NumberDataPoint> {
        series
            .iter()
            .filter_map(|s| match s.value {
                Value::Scalar(value) => Some(NumberDataPoint {
                    attributes: attributes(s),
                    start_time_unix_nano: if with_start {
                        unix_nanos(s.created())
                    } else {
                        0
                    },
                    time_unix_nano: now,
                    value: Some(number_data_point::Value::AsDouble(value)),
                    ..Default::default()
                }),
                Value::Histogram(_) => None,
            })
            .collect()
    };
    let cumulative = AggregationTemporality::Cumulative as i32;
    let data = match desc.kind {
        MetricKind::Counter => metric::Data::Sum(Sum {
            data_points: number_points(true),
            aggregation_temporality: cumulative,
            is_monotonic: true,
        }),
        MetricKind::Gauge => metric::Data::Gauge(Gauge {
            data_points: number_points(false),
        }),
        MetricKind::Histogram => metric::Data::Histogram(OtlpHistogram {
            data_points: series
                .iter()
                .filter_map(|s| match &s.value {
                    // Both count per bucket, upper bounds inclusive, +Inf last.
                    Value::Histogram(h) => Some(HistogramDataPoint {
                        attributes: attributes(s),
                        start_time_unix_nano: unix_nanos(s.created()),
                        time_unix_nano: now,
                        count: h.count,
                        sum: Some(h.sum),
                        bucket_counts: h.counts.clone(),
                        explicit_bounds: desc.buckets.clone(),
                        ..Default::default()
                    }),
                    Value::Scalar(_) => None,
                })
                .collect(),
            aggregation_temporality: cumulative,
        }),
    };
    Metric {
        name: desc.name.clone(),
        description: desc.help.clone(),
        data: Some(data),
        ..Default::default()
    }
}

/// Unix seconds (as the registry keeps them) to OTLP's nanoseconds.
fn unix_nanos(seconds: f64) -> u64 {
    // `as` saturates: negative and NaN become 0.
    (seconds * 1e9).round() as u64
}

fn string_attribute(key: String, value: String) -> KeyValue {
    KeyValue {
        key,
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value)),
        }),
        ..Default::default()
    }
}

/// Logs the first failure, then at most one line a minute while failures continue.
#[derive(Default)]
struct FailureLog {
    last_warned: Option<Instant>,
    suppressed: u64,
}

impl FailureLog {
    fn failed(&mut self, target: &Authority, error: &OtlpPushError) {
        if self.last_warned.is_some_and(|at| at.elapsed() < WARN_EVERY) {
            self.suppressed += 1;
            debug!(%target, %error, "otlp push failed");
            return;
        }
        warn!(%target, %error, suppressed = self.suppressed, "otlp push failed, retrying next interval");
        self.last_warned = Some(Instant::now());
        self.suppressed = 0;
    }

    fn recovered(&mut self) {
        if self.last_warned.take().is_some() {
            info!("otlp push recovered");
        }
        self.suppressed = 0;
    }
}

#[cfg(test)]
mod tests;
