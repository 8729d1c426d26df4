//! Traces end to end: the OpenTelemetry Python SDK (`tests/traces/app.py`, real OTLP gRPC
//! and HTTP exporters) sends the spans of a three-service app to `omen detect`; the spans
//! counted per service and edge equal those sent; a latency fault on the downstream service
//! raises exactly one incident, rooted there, carrying trace ids the app sent; a real
//! Prometheus scrapes the detector and every query of the traces dashboard returns data.
//! Hostile OTLP over a real gRPC channel gets gRPC errors and the detector keeps serving.
//! Skips, with a message, when Prometheus or the SDK is missing (`.ci/setup` installs both).

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{free_port, wait_for, LiveDetector, Prometheus};

fn sdk_available() -> bool {
    let probe = Command::new("python3")
        .args(["-c", "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http"])
        .output();
    let ok = probe.is_ok_and(|o| o.status.success());
    if !ok {
        println!("skipped: the OpenTelemetry Python SDK is not installed (.ci/setup installs it)");
    }
    ok
}

fn loopback() -> SocketAddr {
    ([127, 0, 0, 1], free_port()).into()
}

fn detector_config(listen: SocketAddr, grpc: SocketAddr, http: SocketAddr) -> String {
    format!(
        "listen: {listen}
traces: {{ otlp_grpc: {grpc}, otlp_http: {http}, interval: 1s, wait: 1s }}
detector: {{ warmup_points: 20 }}
correlation: {{ window: 1m, quiet: 30s, onset_tolerance: 3s }}
"
    )
}

/// `omen detect` with its OTLP receivers, all on free loopback ports, logging into `dir`;
/// with the gRPC and HTTP receivers' addresses.
fn start_detector(dir: &tempfile::TempDir) -> (LiveDetector, SocketAddr, SocketAddr) {
    let (listen, grpc, http) = (loopback(), loopback(), loopback());
    let detector = LiveDetector::start(
        &detector_config(listen, grpc, http),
        listen,
        &dir.path().join("detector.log"),
    );
    (detector, grpc, http)
}

/// Sums `name{...}` samples whose labels contain every `label="value"` in `with`.
fn sum(samples: &std::collections::BTreeMap<String, f64>, name: &str, with: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && with.iter().all(|w| k.contains(w)))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn sdk_spans_are_counted_and_a_downstream_latency_fault_is_one_incident_rooted_downstream() {
    if !common::component_available("prometheus", "prometheus") || !sdk_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (detector, grpc, http) = start_detector(&dir);
    let listen = detector.addr;
    let prometheus = Prometheus::start(
        dir.path(),
        &format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}
scrape_configs:
  - job_name: omen-detector
    static_configs: [{{ targets: ['{listen}'] }}]
"
        ),
    );
    let sent_path = dir.path().join("sent.json");
    let app = Command::new("python3")
        .arg(common::repo_root().join("tests/traces/app.py"))
        .args(["--grpc", &grpc.to_string()])
        .args(["--http", &format!("http://{http}/v1/traces")])
        .args(["--healthy", "40", "--fault", "25", "--rate", "20", "--out"])
        .arg(&sent_path)
        .output()
        .expect("python3 runs the app");
    assert!(app.status.success(), "{}", common::stderr(&app));
    let sent: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&sent_path).unwrap()).unwrap();

    // Every span sent is counted, per service and per edge.
    let counted = wait_for(common::LIMIT, "every span counted", || {
        let samples = detector.samples();
        let all = ["frontend", "checkout", "payment"].iter().all(|service| {
            let label = format!("service=\"{service}\"");
            sum(&samples, "traces_spanmetrics_calls_total", &[&label])
                == sent["spans"][service].as_f64().unwrap()
        });
        all.then_some(samples)
    });
    for (edge, client, server) in [
        ("frontend->checkout", "frontend", "checkout"),
        ("checkout->payment", "checkout", "payment"),
    ] {
        let (c, s) = (
            format!("client=\"{client}\""),
            format!("server=\"{server}\""),
        );
        let requests = wait_for(common::LIMIT, "every edge paired", || {
            let n = sum(
                &detector.samples(),
                "traces_service_graph_request_total",
                &[&c, &s],
            );
            (n == sent["edges"][edge].as_f64().unwrap()).then_some(n)
        });
        assert!(requests > 0.0);
    }
    assert_eq!(
        sum(&counted, "traces_service_graph_unpaired_spans_total", &[]),
        0.0
    );

    // Exactly one incident, its root cause the slow downstream service, with exemplars.
    // On a loaded machine the fault may already be over and its incident resolved by now:
    // open or resolved, it is the same incident.
    let every_incident = || {
        let incidents = detector.incidents();
        let all: Vec<serde_json::Value> = ["open", "resolved"]
            .iter()
            .filter_map(|state| incidents[state].as_array())
            .flatten()
            .cloned()
            .collect();
        (incidents, all)
    };
    let incident = common::wait_for_or(
        Duration::from_secs(60),
        "an incident with its trace context",
        || {
            let (_, all) = every_incident();
            all.into_iter().find(|i| i.get("traces").is_some())
        },
        || {
            format!(
                "incidents: {:#}\nlog:\n{}",
                detector.incidents(),
                common::log_tail(&detector.log, 40)
            )
        },
    );
    let (incidents, all) = every_incident();
    assert_eq!(all.len(), 1, "exactly one incident: {incidents:#}");
    let root = &incident["members"][0];
    assert_eq!(root["labels"]["service"], "payment", "{incident:#}");
    assert_eq!(
        incident["traces"]["ranking"][0][0], "payment",
        "{incident:#}"
    );
    let fault_at = sent["fault_at_ms"].as_i64().unwrap();
    let started = incident["started_ms"].as_i64().unwrap();
    assert!(
        started >= fault_at - 2_000,
        "no incident before the fault: {incident:#}"
    );
    let exemplars = incident["traces"]["exemplar_trace_ids"].as_array().unwrap();
    assert!(!exemplars.is_empty(), "{incident:#}");
    let sent_ids: Vec<&str> = sent["trace_ids"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for id in exemplars {
        assert!(
            sent_ids.contains(&id.as_str().unwrap()),
            "exemplar {id} was sent"
        );
    }

    // The isolation forest over trace features ranks the fault's traces most anomalous.
    let (status, body) = common::http_get(listen, "/api/v1/traces/anomalous").unwrap();
    assert_eq!(status, 200);
    let anomalous: serde_json::Value = serde_json::from_str(&body).unwrap();
    let top = anomalous["data"].as_array().unwrap();
    assert!(top.len() >= 5, "{anomalous:#}");
    for trace in &top[..5] {
        let start_ms = trace["start_unix_nano"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            / 1_000_000;
        assert!(
            start_ms as i64 >= fault_at - 1_000,
            "a trace of the fault (at {fault_at}): {trace}\n{anomalous:#}"
        );
        assert!(sent_ids.contains(&trace["trace_id"].as_str().unwrap()));
    }

    // Prometheus scrapes the detector; every query of the traces dashboard returns data.
    let path = common::repo_root().join("dashboards/omen-traces.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let expressions = common::dashboard_expressions(&dashboard, "");
    assert!(expressions.len() >= 10, "{} expressions", expressions.len());
    for (title, expr) in expressions {
        wait_for(
            common::LIMIT,
            &format!("data for panel `{title}`: {expr}"),
            || prometheus.query(&expr).filter(|r| !r.is_empty()),
        );
    }
}

#[test]
fn hostile_grpc_input_gets_grpc_errors_and_the_detector_keeps_serving() {
    if !sdk_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (detector, grpc, _) = start_detector(&dir);
    let listen = detector.addr;
    // Raw bytes on the Export method, a message past the limit, and a good export after.
    let script = format!(
        r#"
import grpc, os
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as pb
channel = grpc.insecure_channel("{grpc}")
export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    request_serializer=None, response_deserializer=None)
def field(number, payload):
    key, n, out = (number << 3) | 2, len(payload), b""
    for v in (key, n):
        while v >= 0x80:
            out += bytes([v & 0x7f | 0x80]); v >>= 7
        out += bytes([v])
    return out + payload
# An attribute value nested 300 levels deep (kvlist -> key-value -> value ...).
value = field(1, b"x")
for _ in range(300):
    value = field(6, field(1, field(1, b"k") + field(2, value)))
deep_span = field(1, bytes(range(1, 17))) + field(2, bytes(range(1, 9))) + field(9, field(1, b"deep") + field(2, value))
deep = field(1, field(2, field(2, deep_span)))
codes = []
for body in [os.urandom(4096), b"\x0a\xff\xff\xff\xff\x0f", b"\x0a" * 3 + b"\x00" * (5 << 20), deep]:
    try:
        export(body, timeout=10)
        codes.append("OK")
    except grpc.RpcError as e:
        codes.append(e.code().name)
good = pb.ExportTraceServiceRequest()
span = good.resource_spans.add().scope_spans.add().spans.add()
span.trace_id = bytes(range(1, 17)); span.span_id = bytes(range(1, 9)); span.name = "ok"
span.start_time_unix_nano = 1; span.end_time_unix_nano = 2
export(good.SerializeToString(), timeout=10)
# A span with 100,000 attributes fits the message limit: taken, its attributes not kept.
wide = pb.ExportTraceServiceRequest()
span = wide.resource_spans.add().scope_spans.add().spans.add()
span.trace_id = bytes(range(2, 18)); span.span_id = bytes(range(2, 10)); span.name = "wide"
span.start_time_unix_nano = 1; span.end_time_unix_nano = 2
for i in range(100_000):
    attribute = span.attributes.add(); attribute.key = "a%d" % i; attribute.value.int_value = i
export(wide.SerializeToString(), timeout=30)
print(",".join(codes))
"#
    );
    let run = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", common::stderr(&run));
    let codes = String::from_utf8_lossy(&run.stdout).trim().to_owned();
    assert!(!codes.contains("OK"), "every hostile body refused: {codes}");
    let samples = wait_for(common::LIMIT, "the good and the wide span counted", || {
        let samples = detector.samples();
        (sum(
            &samples,
            "omen_traces_spans_received_total",
            &["protocol=\"grpc\""],
        ) == 2.0)
            .then_some(samples)
    });
    let refused = sum(
        &samples,
        "omen_detector_ingest_errors_total",
        &["source=\"traces\""],
    );
    assert_eq!(refused, 4.0, "each refusal counted ({codes})");
    // Memory stays bounded: what the detector holds after all this is a few dozen MB.
    let pid = detector.process.0.as_ref().expect("running").id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap();
    assert!(rss_kb < 200_000, "resident {rss_kb} kB");
    let (status, _) = common::http_get(listen, "/healthz").expect("still serving");
    assert_eq!(status, 200);
}
