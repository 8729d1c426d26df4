use std::net::SocketAddr;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::Router;
use tokio::sync::mpsc;

use super::*;
use crate::clock::ManualClock;
use crate::runtime::{Agent, AgentConfig};

const RULES: &str = r#"
parser: { format: logfmt }
rules:
  - name: http_requests_total
    type: counter
    help: Requests by method and status.
    match: { method: { exists: true } }
    labels: { method: method, status: status }
  - name: queue_depth
    type: gauge
    match: { queue: { exists: true } }
    value: queue
  - name: latency_seconds
    type: histogram
    match: { latency: { exists: true } }
    value: latency
    buckets: [0.1, 0.5, 1]
"#;

const START_NS: i64 = 1_700_000_000_500_000_000;

type Received = (HeaderMap, ExportMetricsServiceRequest);

/// A minimal OTLP/HTTP receiver on a free loopback port.
async fn receiver() -> (SocketAddr, mpsc::UnboundedReceiver<Received>) {
    async fn export(
        State(sink): State<mpsc::UnboundedSender<Received>>,
        headers: HeaderMap,
        body: Bytes,
    ) -> impl axum::response::IntoResponse {
        let request = ExportMetricsServiceRequest::decode(body).expect("a protobuf request");
        let _ = sink.send((headers, request));
        (
            [(CONTENT_TYPE, "application/x-protobuf")],
            ExportMetricsServiceResponse::default().encode_to_vec(),
        )
    }
    let (sink, received) = mpsc::unbounded_channel();
    let router = Router::new()
        .route("/v1/metrics", post(export))
        .with_state(sink);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    (addr, received)
}

fn start_agent(dir: &tempfile::TempDir, clock: Arc<ManualClock>) -> Agent {
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES).unwrap();
    Agent::start(AgentConfig::with_rules(rules), clock).unwrap()
}

fn feed(state: &AgentState, lines: &[&str]) {
    let mut pipeline = state.pipeline();
    pipeline.begin_batch();
    for line in lines {
        pipeline.process(line);
    }
    pipeline.end_batch();
}

fn exports(state: &AgentState, result: &str) -> f64 {
    match state
        .pipeline()
        .registry
        .get("omen_agent_otlp_exports_total", &[("result", result)])
    {
        Some(Value::Scalar(count)) => *count,
        _ => 0.0,
    }
}

fn find<'a>(request: &'a ExportMetricsServiceRequest, name: &str) -> &'a metric::Data {
    request.resource_metrics[0].scope_metrics[0]
        .metrics
        .iter()
        .find(|m| m.name == name)
        .and_then(|m| m.data.as_ref())
        .unwrap_or_else(|| panic!("no metric {name}"))
}

fn attributes(pairs: &[(&str, &str)]) -> Vec<KeyValue> {
    pairs
        .iter()
        .map(|(k, v)| string_attribute(k.to_string(), v.to_string()))
        .collect()
}

fn counter_points(request: &ExportMetricsServiceRequest) -> Vec<(Vec<KeyValue>, f64, u64, u64)> {
    let metric::Data::Sum(sum) = find(request, "http_requests_total") else {
        panic!("counter not a sum");
    };
    assert!(sum.is_monotonic);
    assert_eq!(
        sum.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    // In the order the series were created: GET first.
    sum.data_points
        .iter()
        .map(|p| {
            let Some(number_data_point::Value::AsDouble(value)) = p.value else {
                panic!("not a double");
            };
            (
                p.attributes.clone(),
                value,
                p.start_time_unix_nano,
                p.time_unix_nano,
            )
        })
        .collect()
}

#[tokio::test]
async fn pushes_counter_gauge_histogram_cumulatively_with_start_times() {
    let (addr, mut received) = receiver().await;
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(START_NS));
    let agent = start_agent(&dir, clock.clone());
    let state = agent.state();
    feed(
        &state,
        &[
            "method=GET status=200 latency=0.458 queue=7",
            "method=GET status=200 latency=0.1 queue=3",
            "method=POST status=500 latency=2 queue=5",
        ],
    );
    let exporter = OtlpConfig {
        endpoint: format!("http://{addr}/v1/metrics"),
        headers: [("x-tenant".to_owned(), "t1".to_owned())].into(),
        resource: [("deployment.environment".to_owned(), "test".to_owned())].into(),
        ..OtlpConfig::default()
    }
    .build()
    .unwrap();

    // A probe's measurement, pushed with the rules' metrics.
    let probes = state.probes();
    let lag = probes.define(
        "omen_kafka_consumer_group_lag",
        "lag",
        crate::registry::MetricKind::Gauge,
        &["group", "topic"],
    );
    probes.registry().set(lag, &["billing", "orders"], 30.0);

    let push_ns = START_NS + 10_000_000_000;
    clock.set(push_ns);
    exporter.push(&state).await.unwrap();
    let (headers, request) = tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .unwrap()
        .unwrap();

    assert_eq!(headers[CONTENT_TYPE], "application/x-protobuf");
    let metric::Data::Gauge(probe) = find(&request, "omen_kafka_consumer_group_lag") else {
        panic!("the probe's gauge is a gauge");
    };
    assert_eq!(
        probe.data_points[0].value,
        Some(number_data_point::Value::AsDouble(30.0))
    );
    assert_eq!(headers["x-tenant"], "t1");
    assert_eq!(
        request.resource_metrics[0]
            .resource
            .as_ref()
            .unwrap()
            .attributes,
        attributes(&[
            ("deployment.environment", "test"),
            ("service.name", "omen-agent")
        ])
    );
    let (start, now) = (START_NS as u64, push_ns as u64);
    assert_eq!(
        counter_points(&request),
        vec![
            (
                attributes(&[("method", "GET"), ("status", "200")]),
                2.0,
                start,
                now
            ),
            (
                attributes(&[("method", "POST"), ("status", "500")]),
                1.0,
                start,
                now
            ),
        ]
    );

    let metric::Data::Gauge(gauge) = find(&request, "queue_depth") else {
        panic!("gauge not a gauge");
    };
    assert_eq!(gauge.data_points.len(), 1);
    assert_eq!(
        gauge.data_points[0].value,
        Some(number_data_point::Value::AsDouble(5.0))
    );
    assert_eq!(gauge.data_points[0].time_unix_nano, now);

    let metric::Data::Histogram(histogram) = find(&request, "latency_seconds") else {
        panic!("histogram not a histogram");
    };
    assert_eq!(
        histogram.aggregation_temporality,
        AggregationTemporality::Cumulative as i32
    );
    assert_eq!(
        histogram.data_points,
        vec![HistogramDataPoint {
            start_time_unix_nano: start,
            time_unix_nano: now,
            count: 3,
            sum: Some(0.0 + 0.458 + 0.1 + 2.0),
            bucket_counts: vec![1, 1, 0, 1],
            explicit_bounds: vec![0.1, 0.5, 1.0],
            ..Default::default()
        }]
    );
    assert_eq!(exports(&state, "success"), 1.0);

    // The next push carries the running totals from the same start.
    feed(&state, &["method=GET status=200"]);
    let later_ns = push_ns + 10_000_000_000;
    clock.set(later_ns);
    exporter.push(&state).await.unwrap();
    let (_, request) = received.recv().await.unwrap();
    assert_eq!(
        counter_points(&request)[0],
        (
            attributes(&[("method", "GET"), ("status", "200")]),
            3.0,
            start,
            later_ns as u64
        )
    );
    assert_eq!(exports(&state, "success"), 2.0);
    agent.stop().unwrap();
}

/// A loopback port with nothing listening on it.
async fn closed_port() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

#[tokio::test]
async fn failed_pushes_are_counted_and_the_loop_keeps_going() {
    let addr = closed_port().await;
    let dir = tempfile::tempdir().unwrap();
    let agent = start_agent(&dir, Arc::new(ManualClock::new(START_NS)));
    let state = agent.state();
    let exporter = OtlpConfig {
        endpoint: format!("http://{addr}/v1/metrics"),
        interval: DurationConfig(Duration::from_millis(20)),
        timeout: DurationConfig(Duration::from_secs(2)),
        ..OtlpConfig::default()
    }
    .build()
    .unwrap();

    let error = exporter.push(&state).await.unwrap_err();
    assert!(matches!(error, OtlpPushError::Connect(_)), "{error}");
    assert_eq!(exports(&state, "failure"), 1.0);

    let pusher = tokio::spawn(exporter.push_loop(state.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while exports(&state, "failure") < 4.0 {
        assert!(Instant::now() < deadline, "the loop stopped pushing");
        assert!(!pusher.is_finished(), "the loop ended");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pusher.abort();
    assert_eq!(exports(&state, "success"), 0.0);
    agent.stop().unwrap();
}

#[tokio::test]
async fn a_silent_collector_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accepts and holds connections without ever answering.
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let exporter = OtlpConfig {
        endpoint: format!("http://{addr}/v1/metrics"),
        timeout: DurationConfig(Duration::from_millis(200)),
        ..OtlpConfig::default()
    }
    .build()
    .unwrap();
    let started = Instant::now();
    let error = exporter
        .send(&ExportMetricsServiceRequest::default())
        .await
        .unwrap_err();
    assert!(matches!(error, OtlpPushError::Timeout(_)), "{error}");
    assert!(started.elapsed() < Duration::from_secs(5));
    holder.abort();
}

#[test]
fn config_defaults_and_checks() {
    let config: OtlpConfig = serde_yaml::from_str("{}").unwrap();
    assert_eq!(config, OtlpConfig::default());
    assert_eq!(config.endpoint, "http://127.0.0.1:4318/v1/metrics");
    assert_eq!(config.interval.0, Duration::from_secs(10));
    assert_eq!(config.timeout.0, Duration::from_secs(5));

    let config: OtlpConfig = serde_yaml::from_str(
        "endpoint: http://[::1]:4318/v1/metrics\ninterval: 30s\nheaders: { authorization: Bearer x }\nresource: { service.name: shop }\n",
    )
    .unwrap();
    let exporter = config.build().unwrap();
    assert_eq!(exporter.interval, Duration::from_secs(30));
    assert_eq!(exporter.path.as_str(), "/v1/metrics");
    assert_eq!(exporter.resource, attributes(&[("service.name", "shop")]));

    assert!(serde_yaml::from_str::<OtlpConfig>("endpoint: x\nbogus: 1\n").is_err());
    let rejected = |yaml: &str| {
        serde_yaml::from_str::<OtlpConfig>(yaml)
            .unwrap()
            .build()
            .unwrap_err()
            .to_string()
    };
    assert_eq!(
        rejected("endpoint: ftp://collector:4318/v1/metrics"),
        "otlp.endpoint `ftp://collector:4318/v1/metrics`: only http:// and https:// are supported"
    );
    assert_eq!(
        rejected("endpoint: http://c:4318/v1/metrics\nhttp_config: { tls_config: {} }"),
        "otlp.endpoint `http://c:4318/v1/metrics`: tls_config needs an https:// endpoint"
    );
    assert_eq!(
        rejected("http_config: { basic_auth: { username: a } }"),
        "otlp.http_config: basic_auth.password: required"
    );
    assert_eq!(
        rejected("endpoint: not a url"),
        "otlp.endpoint `not a url`: not a URL"
    );
    assert_eq!(
        rejected("interval: 0s"),
        "otlp.interval: must be more than zero"
    );
    assert_eq!(
        rejected("headers: { \"bad header\": x }"),
        "otlp.headers: `bad header` is not a valid header name or value"
    );
}

#[test]
fn agent_config_reads_an_otlp_section() {
    let config: AgentConfig = serde_yaml::from_str(
        "rules: r.yaml\notlp: { endpoint: \"http://127.0.0.1:9/v1/metrics\" }\n",
    )
    .unwrap();
    assert_eq!(
        config.otlp.unwrap().endpoint,
        "http://127.0.0.1:9/v1/metrics"
    );
}

/// A collector behind TLS and basic auth (omen's own server with a web config file and
/// certificates made here): pushes go over TLS with the credentials of `http_config`,
/// and without the password they are refused and counted.
#[tokio::test]
async fn pushes_over_tls_with_basic_auth() {
    use omen_common::http::{bind, serve, ServerLimits, ServerStats};
    use omen_common::web::WebConfig;

    let dir = tempfile::tempdir().unwrap();
    let pki = omen_common::pki::test_pki(dir.path());
    let web = dir.path().join("web.yml");
    let hash = bcrypt_hash_of_s3cret();
    std::fs::write(
        &web,
        format!(
            "tls_server_config: {{ cert_file: server.crt, key_file: server.key }}\nbasic_auth_users: {{ omen: '{hash}' }}\n"
        ),
    )
    .unwrap();
    let (sink, mut received) = mpsc::unbounded_channel::<()>();
    let router = Router::new().route(
        "/v1/metrics",
        post(move |body: Bytes| {
            let sink = sink.clone();
            async move {
                ExportMetricsServiceRequest::decode(body).expect("a protobuf request");
                let _ = sink.send(());
                ExportMetricsServiceResponse::default().encode_to_vec()
            }
        }),
    );
    let listener = bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = listener.local_addr().unwrap();
    let web = Arc::new(WebConfig::load(&web).unwrap());
    let stats = Arc::new(ServerStats::default());
    tokio::spawn(serve(
        listener,
        router,
        ServerLimits::default(),
        Some(web),
        stats,
        std::future::pending(),
    ));

    let clock = Arc::new(ManualClock::new(START_NS));
    let agent = start_agent(&dir, clock);
    let state = agent.state();
    feed(&state, &["method=GET status=200 latency=0.1 queue=1"]);
    let exporter = |password: &str| {
        let yaml = format!(
            "endpoint: https://{addr}/v1/metrics\nhttp_config:\n  basic_auth: {{ username: omen, password: {password} }}\n  tls_config: {{ ca_file: {} }}\n",
            pki.ca.display()
        );
        serde_yaml::from_str::<OtlpConfig>(&yaml)
            .unwrap()
            .build()
            .unwrap()
    };
    exporter("s3cret").push(&state).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), received.recv())
        .await
        .unwrap()
        .unwrap();
    let refused = exporter("guess").push(&state).await.unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    assert_eq!(exports(&state, "success"), 1.0);
    assert_eq!(exports(&state, "failure"), 1.0);
    // A client that does not trust the server's CA does not send.
    let untrusting =
        serde_yaml::from_str::<OtlpConfig>(&format!("endpoint: https://{addr}/v1/metrics"))
            .unwrap()
            .build()
            .unwrap();
    assert!(untrusting.push(&state).await.is_err());
    agent.stop().unwrap();
}

/// bcrypt's lowest cost: the test checks the protocol, not bcrypt's slowness.
fn bcrypt_hash_of_s3cret() -> String {
    bcrypt::hash("s3cret", 4).unwrap()
}
