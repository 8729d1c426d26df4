//! Byte-level fuzzing of what the live detector reads from outside: remote_write and
//! OTLP/HTTP bodies through the router as a client sends them, PromQL replies, Kafka
//! sample records and selectors (`omen_common::fuzz`; `OMEN_FUZZ_CASES`, `OMEN_FUZZ_SEED`).
//! Every input is refused with a 4xx or an error, or taken; none panics, and what is taken
//! goes on through the models, the span pipeline and `/metrics`.

use std::io::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request};
use omen_common::fuzz::fuzz;
use omen_detector::wire::remote_write;
use omen_detector::wire::{Sample, ValueKind};
use tokio::runtime::Runtime;
use tower::ServiceExt;

use crate::config::{DetectConfig, QueryConfig, TracesConfig};
use crate::engine::select::Selector;
use crate::engine::Engine;
use crate::server::app;
use crate::state::LiveState;
use crate::traces::Traces;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

/// POSTs `body` to `uri` with `headers`; the status, after checking it is not a 5xx.
async fn post(state: &Arc<LiveState>, uri: &str, headers: &[(&str, &str)], body: Vec<u8>) -> u16 {
    let mut request = Request::post(uri);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = app(state.clone())
        .oneshot(request.body(Body::from(body)).expect("a request"))
        .await
        .expect("the router answers");
    let status = response.status();
    assert!(
        status.is_success() || status.is_client_error(),
        "{uri} answered {status}"
    );
    status.as_u16()
}

fn sample(name: &str, labels: &[(&str, &str)], value: f64, kind: ValueKind) -> Sample {
    Sample {
        name: name.to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        value,
        timestamp_ms: Some(1_700_000_000_000),
        kind,
    }
}

/// Valid remote_write requests, snappy-decoded: the fuzzer edits the protobuf.
fn write_requests() -> Vec<Vec<u8>> {
    let requests = [
        vec![sample("up", &[("job", "api")], 1.0, ValueKind::Unknown)],
        vec![
            sample(
                "http_requests_total",
                &[("code", "200"), ("job", "web")],
                4.0e3,
                ValueKind::Counter,
            ),
            sample("queue_depth", &[("queue", "q1")], 17.5, ValueKind::Gauge),
            sample(
                "latency_seconds_bucket",
                &[("le", "0.5")],
                3.0,
                ValueKind::Counter,
            ),
            sample(
                "latency_seconds_bucket",
                &[("le", "+Inf")],
                9.0,
                ValueKind::Counter,
            ),
        ],
    ];
    requests
        .iter()
        .map(|samples| {
            snap::raw::Decoder::new()
                .decompress_vec(&remote_write::encode(samples))
                .expect("our own encoding")
        })
        .collect()
}

#[test]
fn fuzz_remote_write_bodies() {
    let runtime = runtime();
    let state = Arc::new(LiveState::new(
        Engine::new(DetectConfig::default()),
        Vec::new(),
    ));
    let headers = [
        (header::CONTENT_TYPE.as_str(), "application/x-protobuf"),
        (header::CONTENT_ENCODING.as_str(), "snappy"),
        ("x-prometheus-remote-write-version", "0.1.0"),
    ];
    let mut now = 1_700_000_000_000;
    fuzz("a remote_write body", write_requests(), |protobuf| {
        // One body in four is sent as it is: a hostile snappy frame.
        let body = if protobuf.len() % 4 == 0 {
            protobuf.to_vec()
        } else {
            snap::raw::Encoder::new()
                .compress_vec(protobuf)
                .expect("snappy takes any bytes")
        };
        let status = runtime.block_on(post(&state, "/api/v1/write", &headers, body));
        now += 15_000;
        state.tick(now);
        status == 204
    });
    let metrics = state.render();
    assert!(
        metrics.contains("omen_detector_ingest_errors_total"),
        "{metrics}"
    );
}

/// Valid OTLP requests as protobuf and OTLP/JSON: a trace of two services with
/// attributes, events, links and statuses.
fn trace_requests() -> Vec<Vec<u8>> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"web"}}]},
      "scopeSpans":[{"scope":{"name":"s"},"spans":[
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /cart","kind":2,
         "startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000009000000",
         "attributes":[{"key":"http.status_code","value":{"intValue":"500"}},{"key":"peer.service","value":{"stringValue":"cart"}}],
         "status":{"code":2,"message":"boom"}},
        {"traceId":"5b8efff798038103d269b633813fc60c","spanId":"aaa19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b174",
         "name":"POST /pay","kind":3,"startTimeUnixNano":"1700000000001000000","endTimeUnixNano":"1700000000008000000",
         "events":[{"name":"retry","timeUnixNano":"1700000000002000000"}],
         "links":[{"traceId":"5b8efff798038103d269b633813fc60d","spanId":"eee19b7ec3c1b175"}]}]}]},
      {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},
      "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"bbb19b7ec3c1b174",
         "parentSpanId":"aaa19b7ec3c1b174","name":"POST /pay","kind":2,
         "startTimeUnixNano":"1700000000002000000","endTimeUnixNano":"1700000000007000000"}]}]}]}"#;
    let request: ExportTraceServiceRequest = serde_json::from_str(json).expect("OTLP/JSON");
    vec![json.as_bytes().to_vec(), request.encode_to_vec()]
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).expect("in memory");
    encoder.finish().expect("in memory")
}

#[test]
fn fuzz_otlp_http_bodies() {
    let runtime = runtime();
    let (traces, mut queue) = Traces::new(TracesConfig::default());
    let state = Arc::new(
        LiveState::new(Engine::new(DetectConfig::default()), Vec::new()).with_traces(traces),
    );
    let mut now = 1_700_000_000_000;
    fuzz("an OTLP/HTTP body", trace_requests(), |body| {
        // Sent as JSON when it looks like JSON, else as protobuf; one in three gzipped.
        let json = body.first() == Some(&b'{');
        let content_type = if json {
            "application/json"
        } else {
            "application/x-protobuf"
        };
        let mut headers = vec![(header::CONTENT_TYPE.as_str(), content_type)];
        let body = if body.len() % 3 == 0 {
            headers.push((header::CONTENT_ENCODING.as_str(), "gzip"));
            gzip(body)
        } else {
            body.to_vec()
        };
        let status = runtime.block_on(post(&state, "/v1/traces", &headers, body));
        let traces = state.traces().expect("traces on");
        while let Ok(spans) = queue.try_recv() {
            traces.dequeued(spans.len());
            traces.pipeline().push(spans);
        }
        now += 1_000;
        let _ = traces.pipeline().tick(now);
        status == 200
    });
    let metrics = state.render();
    assert!(
        metrics.contains("omen_traces_spans_received_total"),
        "{metrics}"
    );
}

#[test]
fn fuzz_promql_replies() {
    let reply = br#"{"status":"success","data":{"resultType":"matrix","result":[
        {"metric":{"__name__":"up","job":"api"},"values":[[1700000000,"1"],[1700000015.5,"0"]]},
        {"metric":{"job":"web"},"values":[[1700000000,"NaN"],[1700000015,"+Inf"],[1700000030,"2.5e3"]]}]}}"#;
    let error = br#"{"status":"error","errorType":"bad_data","error":"parse error"}"#;
    let query = QueryConfig {
        name: "q".to_owned(),
        expr: "up".to_owned(),
    };
    fuzz(
        "a PromQL reply",
        vec![reply.to_vec(), error.to_vec()],
        |body| crate::ingest::promql::matrix_samples(&query, body).is_ok(),
    );
}

#[test]
fn fuzz_kafka_sample_records() {
    let records: [&[u8]; 3] = [
        br#"{"timestamp":"2026-12-02T07:00:00Z","value":"1.5","name":"up","labels":{"__name__":"up","job":"a"}}"#,
        br#"{"value":2,"labels":{"__name__":"x","pod":"p-1"},"timestamp":5}"#,
        br#"{"name":"queue_depth","value":-3e2,"timestamp":1700000000000}"#,
    ];
    fuzz(
        "a Kafka sample record",
        records.iter().map(|r| r.to_vec()).collect(),
        |record| crate::ingest::kafka::decode(record).is_ok(),
    );
}

#[test]
fn fuzz_selectors() {
    let selectors: [&[u8]; 4] = [
        b"up",
        br#"http_requests_total{code=~"5..",job!="batch"}"#,
        br#"{__name__=~"scrape_.*"}"#,
        br#"queue_depth{queue!~"q[0-9]+", env="prod"}"#,
    ];
    let probe = sample(
        "queue_depth",
        &[("env", "prod"), ("queue", "q1")],
        1.0,
        ValueKind::Gauge,
    );
    fuzz(
        "a selector",
        selectors.iter().map(|s| s.to_vec()).collect(),
        |text| match Selector::parse(&String::from_utf8_lossy(text)) {
            Ok(selector) => {
                let _ = selector.matches(&probe);
                true
            }
            Err(_) => false,
        },
    );
}
