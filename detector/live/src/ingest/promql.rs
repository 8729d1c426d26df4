//! Polling a Prometheus server with PromQL: `query_range` over the warm-up at start
//! (learnt, not alerted on), then the range since the last poll. A failed poll is logged
//! and counted; the loop carries on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tracing::{info, warn};

use super::body::read_body;
use crate::config::{PrometheusConfig, QueryConfig};
use crate::engine::{Mode, Origin};
use crate::state::{now_ms, LiveState};
use omen_detector::wire::{Sample, ValueKind};

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
    shared: Arc<LiveState>,
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
                    Ok(samples) => shared.ingest(Origin::Prometheus, samples, now_ms(), mode),
                    Err((reason, error)) => {
                        shared.count_error(Origin::Prometheus, reason);
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
}
