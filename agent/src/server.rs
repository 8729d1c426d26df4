//! The agent's HTTP server: `/` (a page linking the rest), `/metrics`,
//! `/api/v1/patterns` (the log templates of the patterns rules), `/healthz`, `/ready`. The router is built by [`app`] so tests drive
//! it without a socket.
//!
//! Handlers only read the [`AgentState`]; the worker thread owns every change to it.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;

use crate::export::prometheus;
use crate::state::AgentState;

pub fn app(state: Arc<AgentState>) -> Router {
    Router::new()
        .route("/", get(landing))
        .route("/metrics", get(metrics))
        .route("/api/v1/patterns", get(patterns))
        .route("/runbooks", get(|| async { omen_common::runbooks::page() }))
        .route("/healthz", get(healthz))
        .route("/ready", get(ready))
        .with_state(state)
}

async fn landing() -> impl IntoResponse {
    omen_common::http::landing_page(
        "omen agent",
        &[
            ("/metrics", "the rules' metrics and the agent's own"),
            ("/api/v1/patterns", "log templates learnt by patterns rules"),
            (
                "/runbooks",
                "what each of omen's alerts means and what to do",
            ),
            ("/healthz", "200 while the worker runs"),
            (
                "/ready",
                "200 once the sources are open and checkpoints succeed",
            ),
        ],
    )
}

async fn metrics(State(state): State<Arc<AgentState>>, headers: HeaderMap) -> impl IntoResponse {
    let format = prometheus::negotiate(
        headers
            .get(header::ACCEPT)
            .and_then(|value| value.to_str().ok()),
    );
    let body = state.render(format);
    ([(header::CONTENT_TYPE, format.content_type())], body)
}

/// The templates of every patterns rule, largest first, in the shape of Loki's patterns
/// API (`{"status": "success", "data": [...]}`); each entry's `pattern` is the template
/// text and `id` the `pattern` label of `<rule>_lines_total`, whose rate over time is in
/// Prometheus.
async fn patterns(State(state): State<Arc<AgentState>>) -> impl IntoResponse {
    let data: Vec<serde_json::Value> = {
        let pipeline = state.pipeline();
        let mut data: Vec<(u64, serde_json::Value)> = pipeline
            .patterns()
            .flat_map(|rule| {
                rule.templates().map(|template| {
                    let entry = serde_json::json!({
                        "rule": rule.name(),
                        "id": template.id.to_string(),
                        "pattern": template.text(),
                        "count": template.count,
                    });
                    (template.count, entry)
                })
            })
            .collect();
        data.sort_by_key(|(count, _)| std::cmp::Reverse(*count));
        data.into_iter().map(|(_, entry)| entry).collect()
    };
    let body = serde_json::json!({ "status": "success", "data": data });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn healthz(State(state): State<Arc<AgentState>>) -> impl IntoResponse {
    if state.is_alive() {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the agent's worker stopped\n",
        )
    }
}

async fn ready(State(state): State<Arc<AgentState>>) -> impl IntoResponse {
    if !state.is_ready() {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n")
    } else if state.is_checkpoint_failing() {
        (StatusCode::SERVICE_UNAVAILABLE, "checkpoint failing\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::clock::ManualClock;
    use crate::config::RulesConfig;
    use crate::pipeline::Pipeline;

    fn state() -> Arc<AgentState> {
        let rules = RulesConfig::from_yaml(
            "rules:\n  - name: deletes_total\n    type: counter\n    match: { msg: delete }\n",
            Path::new("rules.yaml"),
        )
        .unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000_000_000));
        let mut pipeline = Pipeline::new(&rules, Path::new("rules.yaml"), clock.clone()).unwrap();
        pipeline.process("msg=delete");
        pipeline.end_batch();
        Arc::new(AgentState::new(pipeline, clock))
    }

    async fn get(app: Router, uri: &str, accept: Option<&str>) -> (StatusCode, String, String) {
        let mut request = Request::get(uri);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT, accept);
        }
        let response = app
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn serves_metrics_in_both_formats() {
        let state = state();
        let (status, content_type, body) = get(app(state.clone()), "/metrics", None).await;
        assert_eq!(status, StatusCode::OK);
        assert!(content_type.starts_with("text/plain; version=0.0.4"));
        assert!(body.contains("deletes_total 1\n"), "{body}");
        assert!(
            body.contains("omen_agent_rule_matches_total{rule=\"deletes_total\"} 1\n"),
            "{body}"
        );

        let accept = "application/openmetrics-text;version=1.0.0,text/plain;q=0.5";
        let (_, content_type, body) = get(app(state), "/metrics", Some(accept)).await;
        assert!(content_type.starts_with("application/openmetrics-text"));
        assert!(body.contains("deletes_created 1000\n"), "{body}");
        assert!(body.ends_with("# EOF\n"));
    }

    #[tokio::test]
    async fn health_and_readiness() {
        let state = state();
        assert_eq!(
            get(app(state.clone()), "/healthz", None).await.0,
            StatusCode::OK
        );
        assert_eq!(
            get(app(state.clone()), "/ready", None).await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        state.set_ready();
        assert_eq!(
            get(app(state.clone()), "/ready", None).await.0,
            StatusCode::OK
        );
        assert_eq!(
            get(app(state.clone()), "/nope", None).await.0,
            StatusCode::NOT_FOUND
        );
        // A checkpoint that cannot be written takes readiness away until one succeeds.
        state.set_checkpoint_failed();
        let (status, _, body) = get(app(state.clone()), "/ready", None).await;
        assert_eq!(
            (status, body.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "checkpoint failing\n")
        );
        state.set_last_checkpoint(state.now_ns());
        assert_eq!(
            get(app(state.clone()), "/ready", None).await.0,
            StatusCode::OK
        );
        // A stopped (or dead) worker shows on both.
        state.set_stopped();
        let healthz = get(app(state.clone()), "/healthz", None).await.0;
        assert_eq!(healthz, StatusCode::SERVICE_UNAVAILABLE);
        let ready = get(app(state), "/ready", None).await.0;
        assert_eq!(ready, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[tokio::test]
    async fn the_checkpoint_age_counts_from_the_start_until_a_checkpoint_succeeds() {
        let rules = RulesConfig::from_yaml("rules: []\n", Path::new("rules.yaml")).unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000_000_000));
        let pipeline = Pipeline::new(&rules, Path::new("rules.yaml"), clock.clone()).unwrap();
        let state = Arc::new(AgentState::new(pipeline, clock.clone()));
        let age = |body: &str| {
            body.lines()
                .find_map(|l| l.strip_prefix("omen_agent_checkpoint_age_seconds "))
                .map(str::to_owned)
        };
        // Without a checkpoint file there is no age to tell.
        assert_eq!(
            age(&get(app(state.clone()), "/metrics", None).await.2),
            None
        );
        state.expect_checkpoints();
        clock.set(1_030_000_000_000);
        assert_eq!(
            age(&get(app(state.clone()), "/metrics", None).await.2).as_deref(),
            Some("30")
        );
        state.set_last_checkpoint(1_020_000_000_000);
        assert_eq!(
            age(&get(app(state), "/metrics", None).await.2).as_deref(),
            Some("10")
        );
    }

    #[tokio::test]
    async fn serves_the_templates_of_patterns_rules_largest_first() {
        let rules = RulesConfig::from_yaml(
            "rules:\n  - { name: log_pattern, type: patterns, field: msg, level: level }\n",
            Path::new("rules.yaml"),
        )
        .unwrap();
        let clock = Arc::new(ManualClock::new(1_000_000_000_000));
        let mut pipeline = Pipeline::new(&rules, Path::new("rules.yaml"), clock.clone()).unwrap();
        for line in [
            "level=info msg=\"user 1 logged in\"",
            "level=info msg=\"user 2 logged in\"",
            "level=error msg=\"disk full\"",
        ] {
            pipeline.process(line);
        }
        pipeline.end_batch();
        let state = Arc::new(AgentState::new(pipeline, clock));
        let (status, content_type, body) = get(app(state), "/api/v1/patterns", None).await;
        assert_eq!(
            (status, content_type.as_str()),
            (StatusCode::OK, "application/json")
        );
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(body["status"], "success");
        let data = body["data"].as_array().unwrap();
        assert_eq!(data.len(), 2);
        assert_eq!(data[0]["pattern"], "user <*> logged in");
        assert_eq!(data[0]["count"], 2);
        assert_eq!(data[0]["rule"], "log_pattern");
        assert_eq!(data[1]["pattern"], "disk full");
    }
}
