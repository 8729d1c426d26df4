//! The agent's HTTP server: `/metrics`, `/healthz`, `/ready`. The router is built by
//! [`app`] so tests drive it without a socket.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::export::prometheus;
use crate::runtime::Shared;

pub fn app(state: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/ready", get(ready))
        .with_state(state)
}

async fn metrics(State(state): State<Arc<Shared>>, headers: HeaderMap) -> impl IntoResponse {
    let format = prometheus::negotiate(
        headers
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok()),
    );
    let body = state.render(format);
    ([(header::CONTENT_TYPE, format.content_type())], body)
}

async fn ready(State(state): State<Arc<Shared>>) -> impl IntoResponse {
    if state.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    }
}
