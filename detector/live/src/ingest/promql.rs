//! Polling a Prometheus server with PromQL: `query_range` over the warm-up at start
//! (learnt, not alerted on), then the range since the last poll. A failed poll is logged
//! and counted; the loop carries on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tracing::{info, warn};

use super::body::read_body;
use crate::client::HttpClient;
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
pub(crate) fn matrix_samples(query: &QueryConfig, body: &[u8]) -> Result<Vec<Sample>, String> {
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
    client: &HttpClient,
    config: &PrometheusConfig,
    query: &QueryConfig,
    start_ms: i64,
    end_ms: i64,
) -> Result<Vec<Sample>, (&'static str, String)> {
    let url = format!("{}/api/v1/query_range", config.url.trim_end_matches('/'));
    let step = config.step().as_secs_f64().max(0.001);
    let response = client
        .request(reqwest::Method::GET, &url)
        .map_err(|e| ("credentials", e))?
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

/// Steps in one `query_range` piece: Prometheus answers at most 11,000 points a series.
const PIECE_STEPS: i64 = 10_000;

/// `from..=to` cut into `query_range` pieces Prometheus accepts, each `(from, to)` inclusive.
fn pieces(from: i64, to: i64, step_ms: i64) -> impl Iterator<Item = (i64, i64)> {
    std::iter::successors(Some(from), move |start| {
        Some(start + step_ms * (PIECE_STEPS + 1))
    })
    .take_while(move |start| *start <= to)
    .map(move |start| (start, (start + step_ms * PIECE_STEPS).min(to)))
}

/// Polls a Prometheus server: the warm-up range first (learnt, not alerted on), then every
/// `interval` the points since the last poll.
pub async fn prometheus_loop(config: PrometheusConfig, shared: Arc<LiveState>, client: HttpClient) {
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
            // A long warm-up is fetched in pieces Prometheus accepts.
            let mut ok = true;
            for (from, to) in pieces(start, now, step_ms) {
                match query_range(&client, &config, query, from, to).await {
                    Ok(samples) => shared.ingest(Origin::Prometheus, samples, now_ms(), mode),
                    Err((reason, error)) => {
                        shared.count_error(Origin::Prometheus, reason);
                        warn!(url = %config.url, query = %query.name, %error, "PromQL poll failed");
                        ok = false;
                        break;
                    }
                }
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

/// A stretch of Prometheus history replayed through the live path: `omen detect --replay`.
#[derive(Debug, Clone, Copy)]
pub struct Replay {
    pub from_ms: i64,
    pub to_ms: i64,
    /// Wall time per step while an incident is open; with any, every alert update is
    /// delivered before the next step (zero: as fast as possible, latest states only).
    pub pace: Duration,
}

/// Steps fetched per query at a time during a replay.
const REPLAY_CHUNK_STEPS: i64 = 720;
/// How long a replay waits for the sinks to deliver before it goes on regardless.
const REPLAY_DELIVERY_WAIT: Duration = Duration::from_secs(10);

/// What a replay did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayReport {
    pub warmup_samples: usize,
    pub samples: usize,
    pub steps: usize,
}

/// Replays `replay.from_ms..=replay.to_ms` of every source's queries in the series' own
/// time: each source's `warmup` before it is learnt first (not alerted on); then, step by
/// step, every query's samples at that time are scored together and the engine ticks at
/// that time, so incidents open, join and resolve as they would have live, and alerts go to
/// the sinks. With a `pace`, each step waits for the sinks to deliver what it raised, and
/// a step while an incident is open takes at least `pace` of wall time, so that
/// Alertmanager (which notifies after its group wait) sees each incident firing.
pub async fn replay(
    configs: &[(PrometheusConfig, HttpClient)],
    shared: &Arc<LiveState>,
    replay: Replay,
) -> Result<ReplayReport, String> {
    let mut report = ReplayReport::default();
    for (config, client) in configs {
        let step_ms = config.step().as_millis().max(1) as i64;
        let start = replay.from_ms - config.warmup.as_millis() as i64;
        for query in &config.queries {
            for (from, to) in pieces(start, replay.from_ms - step_ms, step_ms) {
                let samples = fetch(client, config, query, from, to, shared).await?;
                report.warmup_samples += samples.len();
                shared.ingest(Origin::Prometheus, samples, to, Mode::Warmup);
            }
        }
    }
    let step_ms = configs
        .iter()
        .map(|(c, _)| c.step().as_millis().max(1) as i64)
        .min()
        .unwrap_or(1);
    let mut from = replay.from_ms;
    while from <= replay.to_ms {
        let to = (from + step_ms * (REPLAY_CHUNK_STEPS - 1)).min(replay.to_ms);
        let mut samples = Vec::new();
        for (config, client) in configs {
            for query in &config.queries {
                samples.extend(fetch(client, config, query, from, to, shared).await?);
            }
        }
        samples.sort_by_key(|s| s.timestamp_ms);
        report.samples += samples.len();
        let mut samples = samples.into_iter().peekable();
        while let Some(first) = samples.next() {
            let at = first.timestamp_ms.unwrap_or(to);
            let mut step = vec![first];
            while let Some(next) = samples.next_if(|s| s.timestamp_ms.unwrap_or(to) == at) {
                step.push(next);
            }
            shared.ingest(Origin::Prometheus, step, at, Mode::Live);
            shared.tick(at);
            report.steps += 1;
            if !replay.pace.is_zero() {
                // Every alert update reaches the sinks before the next step replaces it,
                // and an open incident lasts long enough in wall time to be notified.
                let open = !shared.engine().correlator().open().is_empty();
                let paced = tokio::time::sleep(if open { replay.pace } else { Duration::ZERO });
                shared.delivered(REPLAY_DELIVERY_WAIT).await;
                paced.await;
            }
        }
        from = to + step_ms;
    }
    shared.tick(replay.to_ms);
    shared.delivered(REPLAY_DELIVERY_WAIT).await;
    Ok(report)
}

/// One query's samples over `from..=to` (a replay stops at the first failure).
async fn fetch(
    client: &HttpClient,
    config: &PrometheusConfig,
    query: &QueryConfig,
    from: i64,
    to: i64,
    shared: &LiveState,
) -> Result<Vec<Sample>, String> {
    query_range(client, config, query, from, to)
        .await
        .map_err(|(reason, error)| {
            shared.count_error(Origin::Prometheus, reason);
            format!("{}: query {}: {error}", config.url, query.name)
        })
}

/// Gives up waiting on a slow poll at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn query() -> QueryConfig {
        QueryConfig {
            name: "q".to_owned(),
            expr: "up".to_owned(),
        }
    }

    proptest! {
        #[test]
        fn a_reply_with_any_values_gives_samples_or_an_error(
            seconds in any::<f64>(),
            value in "\\PC{0,12}",
            name in "\\PC{0,12}",
        ) {
            let reply = serde_json::json!({
                "status": "success",
                "data": { "resultType": "matrix", "result": [
                    { "metric": { "__name__": name }, "values": [[seconds, value]] }
                ] }
            });
            let _ = matrix_samples(&query(), reply.to_string().as_bytes());
        }
    }

    #[test]
    fn a_range_is_cut_into_pieces_prometheus_accepts_with_no_gap_or_overlap() {
        let step = 60_000;
        let cut: Vec<(i64, i64)> = pieces(0, 25_000 * step, step).collect();
        assert_eq!(cut.len(), 3);
        assert_eq!(cut[0], (0, 10_000 * step));
        for pair in cut.windows(2) {
            assert_eq!(pair[1].0, pair[0].1 + step);
        }
        assert_eq!(cut[2].1, 25_000 * step);
        assert!(cut.iter().all(|(from, to)| (to - from) / step < 11_000));
        assert_eq!(pieces(5, 5, step).collect::<Vec<_>>(), vec![(5, 5)]);
        assert_eq!(pieces(6, 5, step).count(), 0);
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
}
