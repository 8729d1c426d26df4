//! The detector's HTTP server: `/` (a page linking the rest), `/metrics`, the remote_write receiver
//! (`POST /api/v1/write`, handled in `ingest::remote_write`), `/api/v1/incidents`,
//! `/api/v1/series` (each series' learning state), OTLP/HTTP `POST /v1/traces` and
//! `/api/v1/traces/anomalous` when traces are enabled (handled in `traces::http`),
//! `/healthz` and `/ready`. The router is built in [`app`], so tests call it without a
//! socket.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use crate::ingest::remote_write;
use crate::state::LiveState;

pub fn app(state: Arc<LiveState>) -> Router {
    let remote_write = state.engine().config().remote_write.clone();
    let traced = state.traces().is_some();
    let mut links = vec![
        (
            "/metrics",
            "series modelled, anomaly scores, the detector's own metrics",
        ),
        ("/api/v1/incidents", "open and recently resolved incidents"),
        ("/api/v1/series", "each series' learning state"),
    ];
    if traced {
        links.push((
            "/api/v1/traces/anomalous",
            "the most anomalous recent traces",
        ));
    }
    links.extend([
        (
            "/runbooks",
            "what each of omen's alerts means and what to do",
        ),
        ("/healthz", "200 while the process runs"),
        (
            "/ready",
            "200 once snapshots are restored and sources started",
        ),
    ]);
    let mut router = Router::new()
        .route(
            "/",
            get(move || async move { omen_common::http::landing_page("omen detector", &links) }),
        )
        .route("/metrics", get(metrics))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/series", get(series))
        .route("/runbooks", get(|| async { omen_common::runbooks::page() }))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ready", get(ready));
    if let Some(traces) = state.traces() {
        router = router
            .merge(crate::traces::http::routes(traces.config.max_body_bytes))
            .route("/api/v1/traces/anomalous", get(anomalous_traces));
    }
    if remote_write.enabled {
        router = router.route(
            "/api/v1/write",
            post(remote_write::receive).layer(DefaultBodyLimit::max(remote_write.max_body_bytes)),
        );
    }
    router.with_state(state)
}

async fn metrics(State(state): State<Arc<LiveState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.render(),
    )
}

/// The most anomalous recent traces, by the isolation forest over trace features.
async fn anomalous_traces(State(state): State<Arc<LiveState>>) -> impl IntoResponse {
    let data = state
        .traces()
        .map(|t| t.pipeline().most_anomalous(20))
        .unwrap_or_default();
    let body = serde_json::json!({ "status": "success", "data": data }).to_string();
    ([(header::CONTENT_TYPE, "application/json")], body)
}

async fn ready(State(state): State<Arc<LiveState>>) -> impl IntoResponse {
    if state.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}

/// Every series modelled, with the points it has learnt and whether its full model still
/// warms up.
async fn series(State(state): State<Arc<LiveState>>) -> impl IntoResponse {
    let body = {
        let engine = state.engine();
        serde_json::json!({ "status": "success", "data": engine.series_states() }).to_string()
    };
    ([(header::CONTENT_TYPE, "application/json")], body)
}

/// Open and recently resolved incidents, ranked members first.
async fn incidents(State(state): State<Arc<LiveState>>) -> impl IntoResponse {
    let engine = state.engine();
    let correlator = engine.correlator();
    // An open incident resolves once every member has been quiet for `quiet`: the member
    // active last is the one keeping it open.
    let open: Vec<serde_json::Value> = correlator
        .open()
        .iter()
        .map(|incident| {
            let mut value = serde_json::to_value(incident).unwrap_or_default();
            if let Some(member) = incident.members.iter().max_by_key(|m| m.last_active_ms) {
                value["kept_open_by"] = serde_json::json!({
                    "series": member.series,
                    "last_active_ms": member.last_active_ms,
                    "onset_ms": member.onset_ms,
                });
            }
            value
        })
        .collect();
    let body = serde_json::json!({
        "open": open,
        "resolved": correlator.recent().collect::<Vec<_>>(),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use omen_detector::wire::{Sample, ValueKind};
    use tower::ServiceExt;

    use super::*;
    use crate::config::DetectConfig;
    use crate::engine::{Engine, Mode, Origin};

    async fn get_json(state: &Arc<LiveState>, uri: &str) -> serde_json::Value {
        let request = Request::get(uri).body(Body::empty()).unwrap();
        let response = app(state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&body).unwrap()
    }

    #[tokio::test]
    async fn incidents_say_which_member_keeps_them_open_and_series_say_they_learn() {
        let state = Arc::new(LiveState::new(
            Engine::new(DetectConfig::default()),
            Vec::new(),
        ));
        for i in 0..14i64 {
            let t = i * 15_000;
            let value = if i < 10 { 25.0 + (i % 3) as f64 } else { 221.0 };
            let sample = Sample {
                name: "queue_depth".to_owned(),
                labels: vec![("service".to_owned(), "orders".to_owned())],
                value,
                timestamp_ms: Some(t),
                kind: ValueKind::Gauge,
            };
            state.ingest(Origin::Scrape, vec![sample], t, Mode::Live);
            state.tick(t);
        }
        let incidents = get_json(&state, "/api/v1/incidents").await;
        let open = incidents["open"].as_array().unwrap();
        assert_eq!(open.len(), 1, "{incidents}");
        let kept = &open[0]["kept_open_by"];
        assert_eq!(
            kept["series"], "queue_depth{service=\"orders\"}",
            "{incidents}"
        );
        assert_eq!(kept["last_active_ms"], 13 * 15_000);
        let series = get_json(&state, "/api/v1/series").await;
        assert_eq!(series["data"][0]["metric"], "queue_depth");
        assert_eq!(series["data"][0]["learning"], true);
        assert_eq!(series["data"][0]["points"], 14);
    }

    #[tokio::test]
    async fn remote_write_takes_its_own_include_and_exclude_and_counts_what_it_skips() {
        let config = DetectConfig::parse(
            "remote_write: { include: ['queue_depth'], exclude: ['{queue=\"q2\"}'] }",
            std::path::Path::new("test.yaml"),
        )
        .unwrap();
        let state = Arc::new(LiveState::new(Engine::new(config), Vec::new()));
        let sample = |name: &str, queue: &str| Sample {
            name: name.to_owned(),
            labels: vec![("queue".to_owned(), queue.to_owned())],
            value: 1.0,
            timestamp_ms: Some(1_000),
            kind: ValueKind::Gauge,
        };
        let body = omen_detector::wire::remote_write::encode(&[
            sample("queue_depth", "q1"),
            sample("queue_depth", "q2"),
            sample("open_files", "q1"),
        ]);
        let request = Request::post("/api/v1/write")
            .header(header::CONTENT_TYPE, "application/x-protobuf")
            .header(header::CONTENT_ENCODING, "snappy")
            .body(Body::from(body))
            .unwrap();
        let response = app(state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NO_CONTENT);
        let series = get_json(&state, "/api/v1/series").await;
        assert_eq!(series["data"].as_array().unwrap().len(), 1, "{series}");
        assert_eq!(series["data"][0]["labels"]["queue"], "q1");
        let text = state.render();
        for (reason, count) in [("exclude", 1), ("not_included", 1)] {
            let line = format!("omen_detector_samples_skipped_total{{source=\"remote_write\",reason=\"{reason}\"}} {count}\n");
            assert!(text.contains(&line), "{line}{text}");
        }
    }
}
