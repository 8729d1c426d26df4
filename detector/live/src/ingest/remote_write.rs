//! The Prometheus remote_write 1.0 receiver (`POST /api/v1/write`): the body is decoded
//! by the core (`omen_detector::wire::remote_write`) and its samples go to the engine.
//! Hostile bodies get a 4xx and a counted error (too large, wrong content type or
//! encoding, malformed); an invalid series is skipped and counted, and the rest of its
//! request taken, as Prometheus' own receiver does. Nothing they hold reaches the models.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use tracing::warn;

use crate::engine::{Mode, Origin};
use crate::state::{now_ms, LiveState};
use omen_detector::wire::remote_write;

/// A request body; a body over the limit (or cut short) is counted for `origin`
/// (`too_large` or `unreadable`) and its rejection answers the request.
pub fn accept_body(
    state: &LiveState,
    origin: Origin,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, BytesRejection> {
    body.inspect_err(|rejection| {
        let reason = if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            "too_large"
        } else {
            "unreadable"
        };
        state.count_error(origin, reason);
    })
}

/// `POST /api/v1/write`: decodes the body and hands its samples to the engine.
pub async fn receive(
    State(state): State<Arc<LiveState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    // A body over the limit (or cut short) is refused before it is decoded, and counted.
    let body = match accept_body(&state, Origin::RemoteWrite, body) {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    let header_text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    let (limits, name_match, include, exclude) = {
        let engine = state.engine();
        let config = &engine.config().remote_write;
        let selectors = (config.include.clone(), config.exclude.clone());
        (
            config.limits(),
            config.name_match.clone(),
            selectors.0,
            selectors.1,
        )
    };
    let decoded = remote_write::decode(
        header_text(header::CONTENT_TYPE),
        header_text(header::CONTENT_ENCODING),
        &body,
        &limits,
    );
    match decoded {
        Ok(request) => {
            let skipped = [
                (
                    "invalid_series",
                    request.invalid_series,
                    &request.first_invalid,
                ),
                (
                    "label_limits",
                    request.over_limits,
                    &request.first_over_limits,
                ),
            ];
            for (reason, count, first) in skipped {
                if let Some(first) = first {
                    state.count_errors(Origin::RemoteWrite, reason, count as u64);
                    warn!(series = count, first = %first, reason, "remote_write series skipped");
                }
            }
            let samples = request
                .samples
                .into_iter()
                .filter(|s| name_match.as_ref().is_none_or(|m| m.is_match(&s.name)));
            let samples = state.select(Origin::RemoteWrite, (&include, &exclude), samples);
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
