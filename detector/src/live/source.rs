//! Pulling sources: scraping Prometheus/OpenMetrics targets, and polling a Prometheus
//! server with PromQL (`query_range` over the warm-up at start, then the range since the
//! last poll). Failures are logged and counted; the loop carries on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tracing::{info, warn};

use super::config::{NameMatch, PrometheusConfig, QueryConfig, ScrapeConfig};
use super::engine::{Mode, Source};
use super::runtime::{now_ms, Shared};
use crate::wire::{exposition, Sample, ValueKind};

/// What Prometheus sends when scraping: OpenMetrics preferred, text format accepted.
const SCRAPE_ACCEPT: &str =
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
/// The largest scrape or query body read.
const MAX_BODY_BYTES: usize = 64 << 20;

/// Why a body was not read whole: more than `max` bytes, or the connection failed.
#[derive(Debug)]
pub enum BodyError {
    TooLarge { max: usize },
    Read(reqwest::Error),
}

impl BodyError {
    /// The reason counted for it, as a scrape or a query counts errors.
    fn counted(self) -> (&'static str, String) {
        match self {
            Self::TooLarge { max } => ("too_large", format!("body over {max} bytes")),
            Self::Read(error) => ("unreachable", error.to_string()),
        }
    }
}

/// Reads a response's body, or its first `max` bytes: whatever length it declares, or
/// none, reading stops once it passes `max` (the error then holds what was read).
pub async fn read_capped(
    mut response: reqwest::Response,
    max: usize,
) -> Result<Vec<u8>, (BodyError, Vec<u8>)> {
    // Sized once for a body that says how long it is (up to the cap), not grown by doubling.
    let declared = response.content_length().unwrap_or(0).min(max as u64);
    let mut body = Vec::with_capacity(declared as usize);
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > max {
                    body.extend_from_slice(&chunk[..max - body.len()]);
                    return Err((BodyError::TooLarge { max }, body));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(error) => return Err((BodyError::Read(error), body)),
        }
    }
}

/// A scrape's or a query's body, whole: one that declares a length over
/// [`MAX_BODY_BYTES`] is refused unread.
async fn read_body(response: reqwest::Response) -> Result<Vec<u8>, (&'static str, String)> {
    let max = MAX_BODY_BYTES;
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge { max }.counted());
    }
    read_capped(response, max)
        .await
        .map_err(|(error, _)| error.counted())
}

fn keep(name_match: Option<&NameMatch>, sample: &Sample) -> bool {
    name_match.is_none_or(|m| m.is_match(&sample.name))
}

/// Adds `job` and `instance` as Prometheus does (a target's own labels win).
pub fn target_labels(sample: &mut Sample, job: &str, instance: &str) {
    for (key, value) in [("job", job), ("instance", instance)] {
        if let Err(at) = sample.labels.binary_search_by(|(k, _)| k.as_str().cmp(key)) {
            sample.labels.insert(at, (key.to_owned(), value.to_owned()));
        }
    }
}

/// Scrapes one target every `interval` until the process ends.
pub async fn scrape_loop(config: ScrapeConfig, shared: Arc<Shared>, client: reqwest::Client) {
    let instance = reqwest::Url::parse(&config.url)
        .ok()
        .map(|u| {
            format!(
                "{}:{}",
                u.host_str().unwrap_or(""),
                u.port_or_known_default().unwrap_or(80)
            )
        })
        .unwrap_or_default();
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = now_ms();
        match scrape(&client, &config).await {
            Ok(parsed) => {
                if parsed.malformed > 0 {
                    shared.count_error(Source::Scrape, "malformed_lines");
                    warn!(url = %config.url, lines = parsed.malformed, first = parsed.first_error.as_deref().unwrap_or(""), "scrape had malformed lines");
                }
                let samples: Vec<Sample> = parsed
                    .samples
                    .into_iter()
                    .filter(|s| keep(config.name_match.as_ref(), s))
                    .map(|mut s| {
                        target_labels(&mut s, &config.job, &instance);
                        s
                    })
                    .collect();
                shared.ingest(Source::Scrape, samples, now, Mode::Live);
            }
            Err((reason, error)) => {
                shared.count_error(Source::Scrape, reason);
                warn!(url = %config.url, %error, "scrape failed");
            }
        }
    }
}

async fn scrape(
    client: &reqwest::Client,
    config: &ScrapeConfig,
) -> Result<exposition::Exposition, (&'static str, String)> {
    let response = client
        .get(&config.url)
        .header(reqwest::header::ACCEPT, SCRAPE_ACCEPT)
        .timeout(config.timeout)
        .send()
        .await
        .map_err(|e| ("unreachable", e.to_string()))?;
    if !response.status().is_success() {
        return Err(("status", response.status().to_string()));
    }
    let body = read_body(response).await?;
    let text = std::str::from_utf8(&body).map_err(|e| ("malformed", e.to_string()))?;
    Ok(exposition::parse(text))
}

#[derive(Debug, Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<MatrixSeries>,
}

#[derive(Debug, Deserialize)]
struct MatrixSeries {
    metric: BTreeMap<String, String>,
    values: Vec<(f64, String)>,
}

/// Turns a `query_range` reply into samples; series without `__name__` take the query's
/// name. Values are taken as they are (queries are expected to return rates or gauges).
fn matrix_samples(query: &QueryConfig, body: &[u8]) -> Result<Vec<Sample>, String> {
    let reply: ApiResponse =
        serde_json::from_slice(body).map_err(|e| format!("not a Prometheus API reply: {e}"))?;
    if reply.status != "success" {
        return Err(reply.error.unwrap_or(reply.status));
    }
    let data = reply.data.ok_or("reply has no data")?;
    if data.result_type != "matrix" {
        return Err(format!("expected a matrix, got {}", data.result_type));
    }
    let mut samples = Vec::new();
    for mut series in data.result {
        let name = series
            .metric
            .remove("__name__")
            .unwrap_or_else(|| query.name.clone());
        let labels: Vec<(String, String)> = series.metric.into_iter().collect();
        for (seconds, value) in series.values {
            let Ok(value) = value.parse::<f64>() else {
                continue;
            };
            samples.push(Sample {
                name: name.clone(),
                labels: labels.clone(),
                value,
                timestamp_ms: Some((seconds * 1000.0).round() as i64),
                kind: ValueKind::Gauge,
            });
        }
    }
    Ok(samples)
}

async fn query_range(
    client: &reqwest::Client,
    config: &PrometheusConfig,
    query: &QueryConfig,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<Sample>, (&'static str, String)> {
    let url = format!("{}/api/v1/query_range", config.url.trim_end_matches('/'));
    let step = config.step().as_secs_f64().max(0.001);
    let response = client
        .get(&url)
        .query(&[
            ("query", query.expr.as_str()),
            ("start", &format!("{:.3}", start_ms as f64 / 1000.0)),
            ("end", &format!("{:.3}", end_ms as f64 / 1000.0)),
            ("step", &format!("{step}")),
        ])
        .timeout(config.timeout)
        .send()
        .await
        .map_err(|e| ("unreachable", e.to_string()))?;
    let status = response.status();
    let body = read_body(response).await?;
    // Prometheus answers bad queries with 400 and a JSON error: report its message.
    match matrix_samples(query, &body) {
        Ok(samples) if status.is_success() => Ok(samples),
        Ok(_) => Err(("status", status.to_string())),
        Err(error) => Err(("bad_query", format!("{status}: {error}"))),
    }
}

/// Polls a Prometheus server: the warm-up range first (learnt, not alerted on), then every
/// `interval` the points since the last poll.
pub async fn prometheus_loop(
    config: PrometheusConfig,
    shared: Arc<Shared>,
    client: reqwest::Client,
) {
    let step_ms = config.step().as_millis().max(1) as i64;
    let align = |t: i64| t - t.rem_euclid(step_ms);
    let warmup_ms = config.warmup.as_millis() as i64;
    let mut ends: Vec<Option<i64>> = vec![None; config.queries.len()];
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let now = align(now_ms());
        for (query, end) in config.queries.iter().zip(ends.iter_mut()) {
            let (start, mode) = match *end {
                Some(end) => (end + step_ms, Mode::Live),
                None => (now - warmup_ms, Mode::Warmup),
            };
            if start > now {
                continue;
            }
            // A long warm-up is fetched in pieces Prometheus accepts (11,000 points each).
            let mut from = start;
            let mut ok = true;
            while from <= now {
                let to = (from + step_ms * 10_000).min(now);
                match query_range(&client, &config, query, from, to).await {
                    Ok(samples) => shared.ingest(Source::Prometheus, samples, now_ms(), mode),
                    Err((reason, error)) => {
                        shared.count_error(Source::Prometheus, reason);
                        warn!(url = %config.url, query = %query.name, %error, "PromQL poll failed");
                        ok = false;
                        break;
                    }
                }
                from = to + step_ms;
            }
            if ok {
                if end.is_none() {
                    info!(query = %query.name, "warm-up history loaded");
                }
                *end = Some(now);
            }
        }
    }
}

/// Gives up waiting on a slow poll at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use super::*;

    /// Serves one connection on 127.0.0.1 with `head` then `chunks` chunks of 64 KiB, each
    /// framed for chunked transfer when `chunked`; returns its URL.
    fn serve_once(head: &'static str, chunks: usize, chunked: bool) -> String {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(head.as_bytes());
            let chunk = vec![b'#'; 64 << 10];
            for _ in 0..chunks {
                let written = if chunked {
                    write!(stream, "{:x}\r\n", chunk.len())
                        .and_then(|()| stream.write_all(&chunk))
                        .and_then(|()| stream.write_all(b"\r\n"))
                } else {
                    stream.write_all(&chunk)
                };
                // The reader hangs up once it has enough.
                if written.is_err() {
                    return;
                }
            }
            if chunked {
                let _ = stream.write_all(b"0\r\n\r\n");
            }
        });
        url
    }

    #[tokio::test]
    async fn a_body_streamed_without_a_length_is_read_up_to_the_cap_only() {
        // 100 chunks of 64 KiB (6.4 MiB) against a cap of 1 MiB.
        let url = serve_once(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            100,
            true,
        );
        let response = reqwest::get(&url).await.unwrap();
        let (error, read) = read_capped(response, 1 << 20).await.unwrap_err();
        assert!(
            matches!(error, BodyError::TooLarge { max } if max == 1 << 20),
            "{error:?}"
        );
        assert_eq!(read.len(), 1 << 20);
        // A body within the cap is read whole.
        let url = serve_once(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
            3,
            true,
        );
        let response = reqwest::get(&url).await.unwrap();
        assert_eq!(read_capped(response, 1 << 20).await.unwrap().len(), 3 << 16);
    }

    #[tokio::test]
    async fn a_body_declared_over_the_cap_is_refused_unread() {
        let url = serve_once(
            "HTTP/1.1 200 OK\r\ncontent-length: 1000000000\r\n\r\n",
            1,
            false,
        );
        let response = reqwest::get(&url).await.unwrap();
        let (reason, message) = read_body(response).await.unwrap_err();
        assert_eq!(reason, "too_large");
        assert_eq!(message, format!("body over {MAX_BODY_BYTES} bytes"));
    }

    #[test]
    fn matrix_replies_become_samples_named_by_query_when_nameless() {
        let query = QueryConfig {
            name: "lines_rate".to_owned(),
            expr: "sum(rate(x[1m]))".to_owned(),
        };
        let body = br#"{"status":"success","data":{"resultType":"matrix","result":[
            {"metric":{"job":"a"},"values":[[1700000000,"1.5"],[1700000015.5,"NaN"]]},
            {"metric":{"__name__":"up","job":"b"},"values":[[1700000000,"1"]]}]}}"#;
        let samples = matrix_samples(&query, body).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].name, "lines_rate");
        assert_eq!(samples[0].labels, [("job".to_owned(), "a".to_owned())]);
        assert_eq!(samples[1].timestamp_ms, Some(1_700_000_015_500));
        assert!(samples[1].value.is_nan());
        assert_eq!(samples[2].name, "up");
        let error = br#"{"status":"error","errorType":"bad_data","error":"parse error at char 3"}"#;
        assert!(matrix_samples(&query, error)
            .unwrap_err()
            .contains("parse error"));
        assert!(matrix_samples(&query, b"<html>").is_err());
    }

    #[test]
    fn target_labels_do_not_override_the_target_s_own() {
        let mut sample = Sample {
            name: "x".to_owned(),
            labels: vec![
                ("a".to_owned(), "1".to_owned()),
                ("job".to_owned(), "own".to_owned()),
            ],
            value: 1.0,
            timestamp_ms: None,
            kind: ValueKind::Gauge,
        };
        target_labels(&mut sample, "scrape", "127.0.0.1:9750");
        let keys: Vec<&str> = sample.labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["a", "instance", "job"]);
        assert_eq!(sample.labels[2].1, "own");
    }
}
