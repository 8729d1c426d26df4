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
/// The largest scrape body read.
const MAX_SCRAPE_BYTES: usize = 64 << 20;

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
                    warn!(url = %config.url, lines = parsed.malformed, first = ?parsed.first_error, "scrape had malformed lines");
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
    if response
        .content_length()
        .is_some_and(|n| n > MAX_SCRAPE_BYTES as u64)
    {
        return Err(("too_large", "body over 64 MiB".to_owned()));
    }
    let body = response
        .bytes()
        .await
        .map_err(|e| ("unreachable", e.to_string()))?;
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
    let body = response
        .bytes()
        .await
        .map_err(|e| ("unreachable", e.to_string()))?;
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
