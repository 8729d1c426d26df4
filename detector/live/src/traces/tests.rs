//! The receivers in process: OTLP/HTTP through the router without a socket, OTLP/gRPC on a
//! real socket with tonic's client; spans counted into span metrics and the service graph,
//! hostile input refused and counted.

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use http_body_util::BodyExt;
use omen_detector::traces::Span;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, KeyValueList};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
use prost::Message;
use tokio::sync::mpsc;
use tower::ServiceExt;

use super::Traces;
use crate::config::{DetectConfig, TracesConfig};
use crate::engine::Engine;
use crate::server::app;
use crate::state::LiveState;

fn state(config: TracesConfig) -> (Arc<LiveState>, mpsc::Receiver<Vec<Span>>) {
    let (traces, queue) = Traces::new(config);
    let state =
        LiveState::new(Engine::new(DetectConfig::default()), Vec::new()).with_traces(traces);
    (Arc::new(state), queue)
}

fn attribute(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn resource_spans(service: &str, spans: Vec<OtlpSpan>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![attribute(
                "service.name",
                Value::StringValue(service.to_owned()),
            )],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Trace `n`: web (server) → web (client) → cart (server), starting at `start` ns.
fn request(n: u8, start: u64) -> ExportTraceServiceRequest {
    let span = |id: u8, parent: Option<u8>, kind: i32, offset: u64, dur: u64| OtlpSpan {
        trace_id: vec![n; 16],
        span_id: vec![id; 8],
        parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
        name: "GET /cart".to_owned(),
        kind,
        start_time_unix_nano: start + offset,
        end_time_unix_nano: start + offset + dur,
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans(
                "web",
                vec![
                    span(1, None, 2, 0, 9_000_000),
                    span(2, Some(1), 3, 1_000_000, 6_000_000),
                ],
            ),
            resource_spans("cart", vec![span(3, Some(2), 2, 2_000_000, 4_000_000)]),
        ],
    }
}

async fn post(
    state: &Arc<LiveState>,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Vec<u8>) {
    let mut builder = Request::post("/v1/traces").header(header::CONTENT_TYPE, content_type);
    if let Some(encoding) = encoding {
        builder = builder.header(header::CONTENT_ENCODING, encoding);
    }
    let response = app(state.clone())
        .oneshot(builder.body(Body::from(body)).unwrap())
        .await
        .unwrap();
    let status = response.status();
    (
        status,
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
}

fn drain(state: &LiveState, queue: &mut mpsc::Receiver<Vec<Span>>) {
    let traces = state.traces().unwrap();
    while let Ok(spans) = queue.try_recv() {
        traces.pipeline().push(spans);
    }
    traces.pipeline().tick(i64::MAX / 2_000_000);
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
        .trim()
        .parse()
        .unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test]
async fn spans_over_http_become_span_metrics_and_a_service_graph_edge() {
    let (state, mut queue) = state(TracesConfig::default());
    for n in 1..=3u8 {
        let body = request(n, 1_000_000_000 * u64::from(n)).encode_to_vec();
        let (status, body) = post(&state, "application/x-protobuf", None, body).await;
        assert_eq!(status, StatusCode::OK);
        let response = ExportTraceServiceResponse::decode(&body[..]).unwrap();
        assert_eq!(response.partial_success, None);
    }
    let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},
      "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
      "name":"GET /cart","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"2000"}]}]}]}"#;
    let (status, _) = post(
        &state,
        "application/json",
        Some("gzip"),
        gzip(json.as_bytes()),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    drain(&state, &mut queue);
    let text = state.render();
    let calls = "traces_spanmetrics_calls_total{service=\"web\",span_name=\"GET /cart\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\"}";
    assert_eq!(metric(&text, calls), 3.0);
    let cart = "traces_spanmetrics_calls_total{service=\"cart\",span_name=\"GET /cart\",span_kind=\"SPAN_KIND_SERVER\",status_code=\"STATUS_CODE_UNSET\"}";
    assert_eq!(metric(&text, cart), 4.0);
    assert_eq!(
        metric(
            &text,
            "traces_service_graph_request_total{client=\"web\",server=\"cart\"}"
        ),
        3.0
    );
    assert_eq!(
        metric(&text, "traces_service_graph_request_client_seconds_bucket{client=\"web\",server=\"cart\",le=\"0.008\"}"),
        3.0
    );
    assert_eq!(
        metric(&text, "omen_traces_spans_received_total{protocol=\"http\"}"),
        10.0
    );
    assert_eq!(metric(&text, "omen_traces_completed_total"), 4.0);
    assert_eq!(metric(&text, "omen_traces_spans_held"), 0.0);
}

#[tokio::test]
async fn hostile_http_bodies_get_4xx_and_are_counted() {
    let config = TracesConfig {
        max_body_bytes: 3 << 20,
        max_decoded_bytes: 4 << 20,
        ..TracesConfig::default()
    };
    let (state, mut queue) = state(config);
    let random: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let truncated = {
        let body = request(1, 1).encode_to_vec();
        body[..body.len() - 7].to_vec()
    };
    // A nested key-value list 200 levels deep: past prost's recursion limit.
    let mut deep = AnyValue {
        value: Some(Value::StringValue("x".into())),
    };
    for _ in 0..200 {
        deep = AnyValue {
            value: Some(Value::KvlistValue(KeyValueList {
                values: vec![KeyValue {
                    key: "k".into(),
                    value: Some(deep),
                    ..Default::default()
                }],
            })),
        };
    }
    let mut nested = request(2, 1);
    nested.resource_spans[0].scope_spans[0].spans[0].attributes = vec![KeyValue {
        key: "deep".into(),
        value: Some(deep),
        ..Default::default()
    }];
    let bomb = gzip(&vec![0u8; 8 << 20]);
    let cases: Vec<(&str, Option<&str>, Vec<u8>, StatusCode)> = vec![
        (
            "application/x-protobuf",
            None,
            random,
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/x-protobuf",
            None,
            truncated,
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/x-protobuf",
            None,
            nested.encode_to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "application/json",
            None,
            b"{\"resourceSpans\": [".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "text/plain",
            None,
            b"hello".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/x-protobuf",
            Some("br"),
            b"x".to_vec(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            "application/x-protobuf",
            None,
            vec![0u8; 7 << 19],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "application/x-protobuf",
            Some("gzip"),
            bomb,
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
        (
            "application/x-protobuf",
            Some("gzip"),
            b"not gzip".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
    ];
    let refused = cases.len();
    for (i, (content_type, encoding, body, expected)) in cases.into_iter().enumerate() {
        let protobuf = content_type == "application/x-protobuf";
        let (status, body) = post(&state, content_type, encoding, body).await;
        assert_eq!(status, expected, "case {i}");
        if protobuf && status == StatusCode::BAD_REQUEST {
            // OTLP/HTTP: the refusal is a google.rpc.Status in the request's encoding.
            let answer = super::http::RpcStatus::decode(&body[..]).expect("a Status");
            assert!(
                !answer.message.is_empty() && answer.code != 0,
                "case {i}: {answer:?}"
            );
        }
    }
    // A span with 100,000 attributes fits the limit and is taken; its attributes are not kept.
    let mut wide = request(3, 1);
    wide.resource_spans[0].scope_spans[0].spans[0].attributes = (0..100_000)
        .map(|i| attribute(&format!("a{i}"), Value::IntValue(i)))
        .collect();
    let (status, _) = post(&state, "application/x-protobuf", None, wide.encode_to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    // Bad ids are rejected one by one, the rest of the request taken (partial success).
    let mut partial = request(4, 1);
    partial.resource_spans[1].scope_spans[0].spans[0].trace_id = vec![1, 2, 3];
    let (status, body) = post(
        &state,
        "application/x-protobuf",
        None,
        partial.encode_to_vec(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let answer = ExportTraceServiceResponse::decode(&body[..]).unwrap();
    assert_eq!(answer.partial_success.unwrap().rejected_spans, 1);
    drain(&state, &mut queue);
    let text = state.render();
    let errors: f64 = text
        .lines()
        .filter(|l| l.starts_with("omen_detector_ingest_errors_total{source=\"traces\""))
        .filter(|l| !l.contains("invalid_span"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap())
        .sum();
    assert_eq!(errors, refused as f64, "{text}");
    assert_eq!(
        metric(&text, "omen_traces_spans_rejected_total{protocol=\"http\"}"),
        1.0
    );
    assert_eq!(
        metric(&text, "omen_traces_spans_received_total{protocol=\"http\"}"),
        5.0
    );
}

#[tokio::test]
async fn a_full_queue_refuses_as_retryable_and_keeps_nothing_half_done() {
    let config = TracesConfig {
        queue: 3,
        ..TracesConfig::default()
    };
    let (state, _queue) = state(config);
    let body = request(1, 1).encode_to_vec();
    assert_eq!(
        post(&state, "application/x-protobuf", None, body.clone())
            .await
            .0,
        StatusCode::OK
    );
    let (status, _) = post(&state, "application/x-protobuf", None, body).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let text = state.render();
    assert_eq!(metric(&text, "omen_traces_spans_refused_total"), 3.0);
    assert_eq!(
        metric(&text, "omen_traces_spans_received_total{protocol=\"http\"}"),
        3.0
    );
}

#[tokio::test]
async fn grpc_export_is_counted_and_garbage_gets_a_grpc_error() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    let (state, mut queue) = state(TracesConfig::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(super::grpc::serve(
        listener,
        addr,
        state.clone(),
        1 << 20,
        async {
            let _ = stopped.await;
        },
    ));
    let mut client = TraceServiceClient::connect(format!("http://{addr}"))
        .await
        .unwrap();
    let answer = client.export(request(1, 1)).await.unwrap().into_inner();
    assert_eq!(answer.partial_success, None);
    // Past the message limit: the gRPC error, counted.
    let mut huge = request(2, 1);
    huge.resource_spans[0].scope_spans[0].spans[0].name = "x".repeat(2 << 20);
    let error = client.export(huge).await.unwrap_err();
    assert_eq!(error.code(), tonic::Code::OutOfRange, "{error}");
    drain(&state, &mut queue);
    let text = state.render();
    assert_eq!(
        metric(&text, "omen_traces_spans_received_total{protocol=\"grpc\"}"),
        3.0
    );
    assert!(
        text.contains(
            "omen_detector_ingest_errors_total{source=\"traces\",reason=\"grpc_too_large\"} 1"
        ),
        "{text}"
    );
    let _ = stop.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_agents_pattern_counters_are_log_evidence_for_their_service() {
    use crate::engine::{Mode, Origin};
    use omen_detector::wire::{Sample, ValueKind};
    let (state, _queue) = state(TracesConfig::default());
    let counter = |pattern: &str, value: f64, t: i64| Sample {
        name: "app_lines_total".to_owned(),
        labels: vec![
            ("level".to_owned(), "error".to_owned()),
            ("pattern".to_owned(), pattern.to_owned()),
            ("service".to_owned(), "billing".to_owned()),
        ],
        value,
        timestamp_ms: Some(t),
        kind: ValueKind::Counter,
    };
    // A steady template for two minutes, then a new exception every second for a minute.
    let mut steady = 0.0;
    let mut fresh = 0.0;
    for second in 0..180i64 {
        let t = 1_000_000 + second * 1_000;
        steady += 2.0;
        let mut samples = vec![counter("00000000000000aa", steady, t)];
        if second >= 120 {
            fresh += 3.0;
            samples.push(counter("00000000000000bb", fresh, t));
        }
        state.ingest(Origin::Scrape, samples, t, Mode::Live);
    }
    let traces = state.traces().unwrap();
    let pipeline = traces.pipeline();
    let ranking = pipeline
        .evidence()
        .rank(1_120_000 * 1_000_000, 1_180_000 * 1_000_000, &[]);
    let billing = ranking.iter().find(|c| c.service == "billing").unwrap();
    assert!(billing.logs > 1.0, "{ranking:?}");
    let quiet = pipeline
        .evidence()
        .rank(1_060_000 * 1_000_000, 1_120_000 * 1_000_000, &[]);
    assert_eq!(
        quiet.iter().find(|c| c.service == "billing").unwrap().logs,
        0.0
    );
}
