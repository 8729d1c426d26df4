//! The detector's HTTP server: `/metrics`, the remote_write receiver
//! (`POST /api/v1/write`), `/api/v1/incidents`, `/healthz` and `/ready`. Hostile bodies
//! get a 4xx and a counted error; nothing they hold reaches the models.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use tracing::warn;

use crate::engine::{Mode, Origin};
use crate::state::{now_ms, LiveState};
use omen_detector::wire::remote_write;

pub fn app(state: Arc<LiveState>) -> Router {
    let remote_write = state.engine().config().remote_write.clone();
    let mut router = Router::new()
        .route("/metrics", get(metrics))
        .route("/api/v1/incidents", get(incidents))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ready", get(ready));
    if remote_write.enabled {
        router = router.route(
            "/api/v1/write",
            post(write).layer(DefaultBodyLimit::max(remote_write.max_body_bytes)),
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

async fn write(
    State(state): State<Arc<LiveState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> impl IntoResponse {
    // A body over the limit (or cut short) is refused before it is decoded, and counted.
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let reason = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                "too_large"
            } else {
                "unreadable"
            };
            state.count_error(Origin::RemoteWrite, reason);
            return rejection.into_response();
        }
    };
    let header_text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let (limit, name_match) = {
        let engine = state.engine();
        let config = &engine.config().remote_write;
        (config.max_decoded_bytes, config.name_match.clone())
    };
    let decoded = remote_write::decode(
        header_text(header::CONTENT_TYPE),
        header_text(header::CONTENT_ENCODING),
        &body,
        limit,
    );
    match decoded {
        Ok(request) => {
            if let Some(first) = &request.first_invalid {
                let count = request.invalid_series as u64;
                state.count_errors(Origin::RemoteWrite, "invalid_series", count);
                warn!(series = count, first = %first, "remote_write series skipped");
            }
            let samples = match name_match {
                Some(m) => request
                    .samples
                    .into_iter()
                    .filter(|s| m.is_match(&s.name))
                    .collect(),
                None => request.samples,
            };
            state.ingest(Origin::RemoteWrite, samples, now_ms(), Mode::Live);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(error) => {
            let status = StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_REQUEST);
            let reason = match status {
                StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
                StatusCode::PAYLOAD_TOO_LARGE => "too_large",
                _ => "malformed",
            };
            state.count_error(Origin::RemoteWrite, reason);
            (status, format!("{error}\n")).into_response()
        }
    }
}
