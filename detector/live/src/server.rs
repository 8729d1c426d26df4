//! The detector's HTTP server: `/metrics`, the remote_write receiver
//! (`POST /api/v1/write`, handled in `ingest::remote_write`), `/api/v1/incidents`,
//! `/api/v1/series` (each series' learning state),
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
    let mut router = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/incidents", get(incidents))
        .route("/api/v1/series", get(series))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ready", get(ready));
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
    let body = serde_json::json!({
        "open": correlator.open(),
        "resolved": correlator.recent().collect::<Vec<_>>(),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}
