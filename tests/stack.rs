//! The whole stack on real components, started on 127.0.0.1 by the tests: an `omen agent`
//! tails a log being written, Prometheus (Debian's `prometheus`) scrapes the agent and the
//! detector, `omen detect` reads the agent's series (through Prometheus with PromQL, or
//! scraping the agent), and Alertmanager (Debian's `prometheus-alertmanager`, running the
//! repository's `alertmanager/alertmanager.yml`) notifies a webhook receiver.
//!
//! The log carries three related services' latencies (checkout calls inventory, which
//! calls redis); the anomaly slows redis down first and the other two a few seconds later,
//! so one incident with redis as its root cause is expected, and nothing else. Every
//! dashboard's PromQL is run against that Prometheus too. Outside CI the tests skip when
//! the components are not installed; `.ci/setup` installs them.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use omen_detector::wire::{remote_write, Sample, ValueKind};
use omen_detector_live::state::now_ms;

use common::{
    free_port, http_get, http_post, log_tail, wait_for, Alertmanager, ChildGuard, LiveAgent,
    LiveDetector, Prometheus, WebhookReceiver,
};

/// The three services, their normal latency in milliseconds, and how many seconds after
/// the root cause each one slows down.
const SERVICES: [(&str, f64, u64); 3] = [
    ("redis", 2.0, 0),
    ("inventory", 40.0, 3),
    ("checkout", 200.0, 3),
];
/// How much slower a service is during the anomaly.
const SLOWDOWN: f64 = 50.0;
/// Points each series learns before the anomaly (the detector below warms up on 30 and
/// needs 30 more scores to normalise them).
const CALM_POINTS: f64 = 75.0;
/// How long a test waits for the detector and Alertmanager to act.
const ACT_LIMIT: Duration = Duration::from_secs(90);

/// Appends a line batch every 250 ms, in wall-clock time: each service's latency (slowed
/// down while its flag is set), and inventory traffic for the agent's dashboard (hard
/// deletes, decrements with their event, one in four lost, HTTP requests with an unusable
/// latency now and then).
struct LogWriter {
    slow: Arc<[AtomicBool; 3]>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl LogWriter {
    fn start(path: PathBuf) -> Self {
        let slow: Arc<[AtomicBool; 3]> = Arc::new(Default::default());
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (slow, stop) = (slow.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .expect("open log");
                let mut n: u64 = 0;
                while !stop.load(Ordering::SeqCst) {
                    let batch = log_batch(n, &slow);
                    file.write_all(batch.as_bytes()).expect("append log");
                    n += 1;
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
        };
        Self {
            slow,
            stop,
            thread: Some(thread),
        }
    }

    /// Slows the services down (`true`) or back to normal, the root cause first and the
    /// others after their lag.
    fn slow_down(&self, on: bool) {
        let mut waited = 0;
        for (k, (_, _, lag)) in SERVICES.iter().enumerate() {
            if on {
                std::thread::sleep(Duration::from_secs(lag - waited));
                waited = *lag;
            }
            self.slow[k].store(on, Ordering::SeqCst);
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn log_batch(n: u64, slow: &[AtomicBool; 3]) -> String {
    let now = chrono::Utc::now();
    let at = |offset_ms: i64| {
        (now + chrono::Duration::milliseconds(offset_ms))
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let mut text = String::new();
    for (k, (service, level, _)) in SERVICES.iter().enumerate() {
        // A small deterministic wiggle, ±1%.
        let wiggle = 1.0 + 0.02 * (((n * 7919 + k as u64) % 13) as f64 / 13.0 - 0.5);
        let factor = if slow[k].load(Ordering::SeqCst) {
            SLOWDOWN
        } else {
            1.0
        };
        text += &format!(
            "{} level=info msg=probe service={service} latency_ms={:.4}\n",
            at(0),
            level * wiggle * factor
        );
    }
    text += &format!(
        "{} level=warn msg=\"hard-delete\" table=t{} id={n}\n",
        at(0),
        n % 3
    );
    text += &format!(
        "{} level=info msg=\"stock decremented\" order_id=o{n} sku=s1 qty=1\n",
        at(1)
    );
    if n % 4 != 0 {
        text += &format!(
            "{} level=info msg=\"event published\" order_id=o{n} topic=orders\n",
            at(120)
        );
    }
    let latency = if n % 7 == 0 {
        "oops".to_owned()
    } else {
        (n * 37 % 900).to_string()
    };
    text += &format!(
        "{} level=info method=GET path=/x status={} latency_ms={latency}\n",
        at(2),
        [200, 500][(n % 2) as usize]
    );
    text
}

/// The inventory example's rules plus a gauge of each service's latency.
fn agent_rules(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(common::repo_root().join("examples/agent/inventory.yaml"))
        .expect("inventory rules");
    let mut rules: serde_yaml::Value = serde_yaml::from_str(&text).expect("rules YAML");
    let gauge: serde_yaml::Value = serde_yaml::from_str(
        "{ name: service_latency_seconds, type: gauge, help: Probe latency by service.,
           match: { msg: probe }, labels: { service: service }, value: latency_ms, scale: 0.001 }",
    )
    .expect("gauge rule");
    rules["rules"]
        .as_sequence_mut()
        .expect("rules list")
        .push(gauge);
    let path = dir.join("rules.yaml");
    std::fs::write(&path, serde_yaml::to_string(&rules).expect("rules YAML")).expect("rules");
    path
}

/// `omen detect` settings for one-second data: models that learn from a few dozen points,
/// the services' call graph, Alertmanager re-sent to every 2 s; `source` says where the
/// samples come from.
fn detector_config(
    dir: &Path,
    listen: SocketAddr,
    alertmanager: SocketAddr,
    source: &str,
) -> String {
    format!(
        "listen: {listen}
{source}
store: {{ snapshot_path: {snapshot}, snapshot_interval: 5s }}
detector: {{ transform: none, warmup_points: 30, likelihood: {{ min_history: 30 }} }}
correlation:
  window: 1m
  quiet: 20s
  onset_tolerance: 1500ms
  dependencies: {{ checkout: [inventory], inventory: [redis] }}
alerting:
  alertmanager: [\"http://{alertmanager}\"]
  resend: 2s
  timeout: 2s
  dashboard_url: http://127.0.0.1:3000/d/omen-detector
",
        snapshot = dir.join("detector.json").display(),
    )
}

/// Everything but Prometheus and the detector: the log, its writer, the agent, the
/// webhook receiver and Alertmanager in front of it.
struct Stack {
    dir: tempfile::TempDir,
    writer: LogWriter,
    agent: LiveAgent,
    webhook: WebhookReceiver,
    alertmanager: Alertmanager,
    alertmanager_config: PathBuf,
}

impl Stack {
    fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("app.log");
        let writer = LogWriter::start(log.clone());
        wait_for(common::LIMIT, "the first log lines", || {
            log.exists().then_some(())
        });
        let agent = LiveAgent::start(
            &agent_rules(dir.path()),
            &log.display().to_string(),
            Some(&dir.path().join("agent.checkpoint")),
            free_port(),
        );
        let webhook = WebhookReceiver::start();
        let alertmanager_config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &alertmanager_config,
            common::alertmanager_config(webhook.addr),
        )
        .expect("alertmanager config");
        let addr = ([127, 0, 0, 1], free_port()).into();
        let alertmanager = Self::alertmanager_at(dir.path(), &alertmanager_config, addr);
        Self {
            dir,
            writer,
            agent,
            webhook,
            alertmanager,
            alertmanager_config,
        }
    }

    fn alertmanager_at(dir: &Path, config: &Path, addr: SocketAddr) -> Alertmanager {
        Alertmanager::start(
            config,
            &dir.join("alertmanager-data"),
            addr,
            &dir.join("alertmanager.log"),
        )
    }

    /// Stops Alertmanager; `restart_alertmanager` brings it back on the same address and
    /// storage.
    fn stop_alertmanager(&mut self) {
        self.alertmanager.process.kill();
    }

    fn restart_alertmanager(&mut self) {
        self.alertmanager = Self::alertmanager_at(
            self.dir.path(),
            &self.alertmanager_config,
            self.alertmanager.addr,
        );
    }

    /// Starts `omen detect` on `addr` alerting this stack's Alertmanager, its samples from
    /// `source` (a YAML fragment).
    fn start_detector(&self, addr: SocketAddr, source: &str) -> LiveDetector {
        LiveDetector::start(
            &detector_config(self.dir.path(), addr, self.alertmanager.addr, source),
            addr,
            &self.dir.path().join("detector.log"),
        )
    }

    /// Waits until the detector has learnt `CALM_POINTS` points of each service.
    fn learn(&self, detector: &LiveDetector) {
        wait_for(ACT_LIMIT, "the detector to learn the calm series", || {
            let points = detector
                .samples()
                .get("omen_detector_points_total")
                .copied()
                .unwrap_or(0.0);
            (points >= CALM_POINTS * SERVICES.len() as f64).then_some(())
        });
    }

    /// The OmenIncident alerts the webhook received so far.
    fn incident_alerts(&self) -> Vec<serde_json::Value> {
        self.webhook
            .alerts()
            .into_iter()
            .filter(|a| a["labels"]["alertname"] == "OmenIncident")
            .collect()
    }

    /// Waits for the webhook to receive an OmenIncident with `status` ("firing" or
    /// "resolved"), and returns it.
    fn wait_incident_alert(&self, detector: &LiveDetector, status: &str) -> serde_json::Value {
        let start = Instant::now();
        loop {
            if let Some(alert) = self
                .incident_alerts()
                .into_iter()
                .find(|a| a["status"] == status)
            {
                return alert;
            }
            assert!(
                start.elapsed() < ACT_LIMIT,
                "no {status} OmenIncident at the webhook after {ACT_LIMIT:?}\nreceived: {:#?}\nincidents: {}\ndetector log:\n{}\nalertmanager log:\n{}",
                self.webhook.notifications(),
                detector.incidents(),
                log_tail(&detector.log, 40),
                log_tail(&self.dir.path().join("alertmanager.log"), 20),
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Exactly one incident reached the webhook, with redis as its root cause throughout,
    /// and the detector agrees: one incident, resolved, with the three services in it.
    fn assert_one_incident_rooted_at_redis(&self, detector: &LiveDetector) {
        let alerts = self.incident_alerts();
        let ids: BTreeSet<&str> = alerts
            .iter()
            .filter_map(|a| a["labels"]["incident"].as_str())
            .collect();
        assert_eq!(ids.len(), 1, "{alerts:#?}");
        for alert in &alerts {
            assert_eq!(alert["labels"]["severity"], "critical", "{alert:#}");
            let root = alert["labels"]["root_cause"].as_str().unwrap_or("");
            assert!(
                root.starts_with("service_latency_seconds{") && root.contains("service=\"redis\""),
                "{alert:#}"
            );
            assert_eq!(alert["labels"]["service"], "redis", "{alert:#}");
        }
        let incidents = detector.incidents();
        assert_eq!(
            incidents["open"].as_array().map(Vec::len),
            Some(0),
            "{incidents:#}"
        );
        let resolved = incidents["resolved"].as_array().expect("resolved list");
        assert_eq!(resolved.len(), 1, "{incidents:#}");
        let members: Vec<&str> = resolved[0]["members"]
            .as_array()
            .expect("members")
            .iter()
            .filter_map(|m| m["labels"]["service"].as_str())
            .collect();
        assert_eq!(members.len(), 3, "{incidents:#}");
        assert_eq!(members[0], "redis", "{incidents:#}");
        assert_eq!(
            resolved[0]["id"].as_str(),
            ids.first().copied(),
            "{incidents:#}"
        );
    }
}

fn components_available() -> bool {
    common::component_available("prometheus", "prometheus")
        && common::component_available("prometheus-alertmanager", "prometheus-alertmanager")
}

/// Runs every dashboard's queries against `prometheus`; each must return data.
fn assert_every_dashboard_query_returns_data(prometheus: &Prometheus) {
    // The detector dashboard's series picker: the label set of one modelled series.
    let series = wait_for(common::LIMIT, "a scored series in Prometheus", || {
        let result = prometheus.query("omen_anomaly_score{service=\"redis\"}")?;
        let metric = result.first()?["metric"].as_object()?.clone();
        Some(
            metric
                .iter()
                .filter(|(k, _)| *k != "__name__")
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(","),
        )
    });
    let mut checked = 0;
    for entry in std::fs::read_dir(common::repo_root().join("dashboards")).expect("dashboards") {
        let path = entry.expect("entry").path();
        // The traces dashboard needs spans flowing: tests/traces.rs checks it.
        if path.extension().is_none_or(|e| e != "json") || path.ends_with("omen-traces.json") {
            continue;
        }
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("read"))
                .expect("dashboard JSON");
        assert_eq!(
            dashboard["__inputs"][0]["name"],
            "DS_PROMETHEUS",
            "{}",
            path.display()
        );
        // Annotation queries (incidents) must be valid; they have data only during one.
        for annotation in dashboard["annotations"]["list"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(expr) = annotation["expr"].as_str() {
                wait_for(common::LIMIT, &format!("an answer to `{expr}`"), || {
                    prometheus.query(expr)
                });
                checked += 1;
            }
        }
        for (title, expr) in common::dashboard_expressions(&dashboard, &series) {
            wait_for(
                common::LIMIT,
                &format!("data for panel `{title}` of {}: {expr}", path.display()),
                || prometheus.query(&expr).filter(|r| !r.is_empty()),
            );
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} expressions checked");
}

#[test]
fn an_anomaly_across_three_services_pages_once_with_its_root_cause_and_resolves() {
    if !components_available() {
        return;
    }
    let stack = Stack::start();
    let detector_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let prometheus = Prometheus::start(
        stack.dir.path(),
        &format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}
scrape_configs:
  - job_name: omen-agent
    static_configs: [{{ targets: ['{}'] }}]
  - job_name: omen-detector
    static_configs: [{{ targets: ['{detector_addr}'] }}]
",
            stack.agent.addr
        ),
    );
    // The detector reads the agent's series from Prometheus.
    let detector = stack.start_detector(
        detector_addr,
        &format!(
            "prometheus:
  - url: http://{}
    interval: 1s
    step: 1s
    warmup: 5m
    queries: [{{ name: service_latency_seconds, expr: service_latency_seconds }}]",
            prometheus.addr
        ),
    );

    stack.learn(&detector);
    assert!(
        stack.incident_alerts().is_empty(),
        "{:#?}",
        stack.webhook.notifications()
    );
    stack.writer.slow_down(true);
    let firing = stack.wait_incident_alert(&detector, "firing");
    assert!(
        firing["annotations"]["summary"]
            .as_str()
            .is_some_and(|s| !s.is_empty()),
        "{firing:#}"
    );
    // It links its runbook (at the default `alerting.runbook_url`), which every detector
    // serves.
    let runbook = "http://127.0.0.1:9751/runbooks#omenincident";
    assert_eq!(firing["annotations"]["runbook_url"], runbook);
    let (status, page) = common::http_get(detector.addr, "/runbooks").expect("runbooks");
    assert!(
        status == 200 && page.contains("id=\"omenincident\""),
        "{page}"
    );
    // Let the other two services join before the slowdown ends.
    std::thread::sleep(Duration::from_secs(10));
    stack.writer.slow_down(false);
    stack.wait_incident_alert(&detector, "resolved");
    stack.assert_one_incident_rooted_at_redis(&detector);

    assert_every_dashboard_query_returns_data(&prometheus);
}

#[test]
fn an_incident_raised_while_alertmanager_is_down_is_delivered_once_it_is_back() {
    if !components_available() {
        return;
    }
    let mut stack = Stack::start();
    let detector_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    // The detector scrapes the agent itself.
    let detector = stack.start_detector(
        detector_addr,
        &format!(
            "scrape:
  - {{ url: 'http://{}/metrics', interval: 1s, job: omen-agent, match: service_latency_seconds }}",
            stack.agent.addr
        ),
    );

    stack.learn(&detector);
    stack.stop_alertmanager();
    let stopped = Instant::now();
    stack.writer.slow_down(true);
    // The incident opens and its alert fails to go out while Alertmanager is away.
    wait_for(ACT_LIMIT, "an open incident whose alert failed", || {
        let open = detector.incidents()["open"].as_array().map_or(0, Vec::len);
        let failed = detector
            .samples()
            .get("omen_detector_alerts_failed_total{sink=\"alertmanager\"}")
            .copied()
            .unwrap_or(0.0);
        (open == 1 && failed > 0.0).then_some(())
    });
    let down = Duration::from_secs(30);
    std::thread::sleep(down.saturating_sub(stopped.elapsed()));
    assert!(stack.incident_alerts().is_empty());
    stack.restart_alertmanager();

    let firing = stack.wait_incident_alert(&detector, "firing");
    assert_eq!(firing["labels"]["service"], "redis", "{firing:#}");
    stack.writer.slow_down(false);
    stack.wait_incident_alert(&detector, "resolved");
    stack.assert_one_incident_rooted_at_redis(&detector);
    let queued = detector.samples()["omen_detector_alert_queue_length{sink=\"alertmanager\"}"];
    assert_eq!(queued, 0.0);
}

#[test]
fn hostile_remote_write_bodies_get_4xx_and_the_detector_keeps_serving() {
    if !common::component_available("prometheus", "prometheus") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let detector_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let detector = LiveDetector::start(
        &format!(
            "listen: {detector_addr}
remote_write: {{ max_body_bytes: 65536, max_decoded_bytes: 1048576, match: up }}
store: {{ snapshot_path: {} }}
",
            dir.path().join("detector.json").display()
        ),
        detector_addr,
        &dir.path().join("detector.log"),
    );
    // A real Prometheus remote-writes its own series to the detector all along.
    let _prometheus = Prometheus::start(
        dir.path(),
        &format!(
            "global: {{ scrape_interval: 1s }}
scrape_configs:
  - job_name: omen-detector
    static_configs: [{{ targets: ['{detector_addr}'] }}]
remote_write:
  - url: http://{detector_addr}/api/v1/write
    queue_config: {{ batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s }}
"
        ),
    );
    let remote_write_samples = || {
        detector
            .samples()
            .get("omen_detector_samples_total{source=\"remote_write\"}")
            .copied()
            .unwrap_or(0.0)
    };
    wait_for(ACT_LIMIT, "remote_write samples from Prometheus", || {
        (remote_write_samples() > 0.0).then_some(())
    });

    let mut random = vec![0u8; 4096];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    for byte in &mut random {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        *byte = state as u8;
    }
    let proper = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    // A valid snappy frame of bytes that are no protobuf WriteRequest.
    let not_protobuf = snappy_literal(&random[..60]);
    let oversized = vec![0u8; 256 * 1024];
    let cases: [(&str, Headers, &[u8], u16); 6] = [
        ("random bytes", &proper, &random, 400),
        ("snappy around garbage", &proper, &not_protobuf, 400),
        ("an oversized body", &proper, &oversized, 413),
        (
            "a wrong content type",
            &[
                ("Content-Type", "text/plain"),
                ("Content-Encoding", "snappy"),
            ],
            &random,
            415,
        ),
        (
            "a wrong encoding",
            &[
                ("Content-Type", "application/x-protobuf"),
                ("Content-Encoding", "gzip"),
            ],
            &random,
            415,
        ),
        ("an empty body", &proper, &[], 400),
    ];
    for (what, headers, body, expected) in cases {
        let (status, reply) = http_post(detector_addr, "/api/v1/write", headers, body)
            .unwrap_or_else(|| panic!("no answer to {what}"));
        assert!(
            status == expected,
            "{what}: {status} {reply}, expected {expected}"
        );
        let (ready, _) = http_get(detector_addr, "/ready").expect("still serving");
        assert_eq!(ready, 200, "after {what}");
    }
    let errors: f64 = detector
        .samples()
        .iter()
        .filter(|(k, _)| {
            k.starts_with("omen_detector_ingest_errors_total{") && k.contains("remote_write")
        })
        .map(|(_, v)| v)
        .sum();
    // One counted error per hostile body, by reason.
    assert_eq!(errors, cases.len() as f64, "{:#?}", detector.samples());
    let too_large = detector.samples()
        ["omen_detector_ingest_errors_total{reason=\"too_large\",source=\"remote_write\"}"];
    assert_eq!(too_large, 1.0);
    // A series without a name beside a valid one: the request is taken, the bad series
    // counted and skipped.
    let sample = |name: &str| Sample {
        name: name.to_owned(),
        labels: vec![("job".to_owned(), "hostile".to_owned())],
        value: 1.0,
        timestamp_ms: Some(now_ms()),
        kind: ValueKind::Gauge,
    };
    let mixed = remote_write::encode(&[sample(""), sample("up")]);
    let (status, reply) = http_post(detector_addr, "/api/v1/write", &proper, &mixed)
        .expect("an answer to a request with an invalid series");
    assert_eq!(status, 204, "{reply}");
    let invalid = detector.samples()
        ["omen_detector_ingest_errors_total{reason=\"invalid_series\",source=\"remote_write\"}"];
    assert_eq!(invalid, 1.0);
    // Prometheus's own remote_write is still taken.
    let before = remote_write_samples();
    wait_for(
        ACT_LIMIT,
        "more remote_write samples after the hostile ones",
        || (remote_write_samples() > before).then_some(()),
    );
}

#[test]
fn slow_clients_and_wide_series_under_a_low_fd_limit_leave_metrics_answering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = dir.path().join("detector.yaml");
    std::fs::write(&config, format!("listen: {addr}\n")).expect("config");
    // An open-files limit of 256, soft and hard: the connection cap becomes 128.
    let process = ChildGuard::spawn_logged(
        std::process::Command::new("sh")
            .args(["-c", "ulimit -n 256 && exec \"$0\" detect --config \"$1\""])
            .arg(env!("CARGO_BIN_EXE_omen"))
            .arg(&config)
            .env("OMEN_LOG", "info"),
        &dir.path().join("detector.log"),
    );
    let pid = process.0.as_ref().expect("running").id();
    wait_for(common::LIMIT, "the detector to be ready", || {
        http_get(addr, "/ready").filter(|(status, _)| *status == 200)
    });

    // Throughout: a scrape every 50 ms, each answered within a second, and the
    // detector's resident memory.
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let (mut scrapes, mut slowest, mut peak_rss_kib) = (0, Duration::ZERO, 0u64);
            while !stop.load(Ordering::SeqCst) {
                let started = Instant::now();
                let answered = timed_get(addr, "/metrics", Duration::from_secs(1));
                let took = started.elapsed();
                assert!(answered, "/metrics unanswered after {took:?}");
                (scrapes, slowest) = (scrapes + 1, slowest.max(took));
                peak_rss_kib = peak_rss_kib.max(resident_kib(pid));
                std::thread::sleep(Duration::from_millis(50));
            }
            (scrapes, slowest, peak_rss_kib)
        })
    };
    // 1,000 slow clients: half stop in the request head, half in the body.
    let mut slow = Vec::new();
    for i in 0..1_000 {
        let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
            continue;
        };
        let head = if i % 2 == 0 {
            "POST /api/v1/write HTTP/1.1\r\nHost: x\r\n".to_owned()
        } else {
            "POST /api/v1/write HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nContent-Encoding: snappy\r\nContent-Length: 100000\r\n\r\nabc".to_owned()
        };
        let _ = stream.write_all(head.as_bytes());
        slow.push(stream);
    }
    // Four series of 20,000 labels on 400 samples each, sent at once.
    let wide = {
        let labels: Vec<(String, String)> = (0..20_000)
            .map(|i| (format!("label_{i}"), format!("value_{i}")))
            .collect();
        let samples: Vec<Sample> = (0..400)
            .map(|i| Sample {
                name: "wide".to_owned(),
                labels: labels.clone(),
                value: 1.0,
                timestamp_ms: Some(now_ms() - 400_000 + i * 1_000),
                kind: ValueKind::Gauge,
            })
            .collect();
        Arc::new(remote_write::encode(&samples))
    };
    let senders: Vec<_> = (0..4)
        .map(|_| {
            let wide = wide.clone();
            std::thread::spawn(move || {
                let headers = [
                    ("Content-Type", "application/x-protobuf"),
                    ("Content-Encoding", "snappy"),
                ];
                http_post(addr, "/api/v1/write", &headers, &wide).map(|(status, _)| status)
            })
        })
        .collect();
    for sender in senders {
        assert_eq!(
            sender.join().expect("sender"),
            Some(204),
            "the series is skipped"
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    let (scrapes, slowest, peak_rss_kib) = watcher.join().expect("every scrape answered");
    drop(slow);

    let samples = http_get(addr, "/metrics")
        .map(|(_, body)| omen_agent::oneshot::parse_exposition(&body))
        .expect("metrics");
    let skipped = samples
        ["omen_detector_ingest_errors_total{reason=\"label_limits\",source=\"remote_write\"}"];
    assert_eq!(skipped, 4.0);
    let closed = samples["omen_detector_http_connections_closed_total{reason=\"limit\"}"];
    assert!(closed >= 800.0, "{closed} connections closed at the cap");
    eprintln!(
        "{scrapes} scrapes, slowest {slowest:?}; peak RSS {peak_rss_kib} KiB; {closed} closed at the cap"
    );
    assert!(peak_rss_kib < 64 * 1024, "peak RSS {peak_rss_kib} KiB");
}

/// `GET path`, true when a whole answer came back within `limit`.
fn timed_get(addr: SocketAddr, path: &str, limit: Duration) -> bool {
    use std::io::Read;
    let deadline = Instant::now() + limit;
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, limit) else {
        return false;
    };
    let head = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(head.as_bytes()).is_err() {
        return false;
    }
    let mut answer = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return false;
        }
        match stream.read(&mut buffer) {
            Ok(0) => {
                return answer.starts_with(b"HTTP/1.1 200") || answer.starts_with(b"HTTP/1.0 200")
            }
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(_) => return false,
        }
    }
}

/// A process's resident memory, from /proc.
fn resident_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        })
        .unwrap_or(0)
}

/// Request headers, name and value.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// A snappy block holding `data` as one literal (the format's simplest valid encoding).
fn snappy_literal(data: &[u8]) -> Vec<u8> {
    assert!(data.len() <= 60);
    let mut out = vec![data.len() as u8];
    out.push(((data.len() - 1) as u8) << 2);
    out.extend_from_slice(data);
    out
}

#[test]
fn a_detector_stopped_with_sigterm_restores_its_models_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let writer = LogWriter::start(log.clone());
    wait_for(common::LIMIT, "the first log lines", || {
        log.exists().then_some(())
    });
    let mut agent = LiveAgent::start(
        &agent_rules(dir.path()),
        &log.display().to_string(),
        None,
        free_port(),
    );
    let detector_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = format!(
        "listen: {detector_addr}
scrape:
  - {{ url: 'http://{}/metrics', interval: 250ms, job: omen-agent, match: service_latency_seconds }}
store: {{ snapshot_path: {}, snapshot_interval: 1h }}
",
        agent.addr,
        dir.path().join("detector.json").display()
    );
    let detector_log = dir.path().join("detector.log");
    let mut detector = LiveDetector::start(&config, detector_addr, &detector_log);
    wait_for(ACT_LIMIT, "points of every series", || {
        let samples = detector.samples();
        (samples
            .get("omen_detector_points_total")
            .copied()
            .unwrap_or(0.0)
            >= 60.0)
            .then_some(())
    });
    // The agent goes away, so nothing changes the models from here on.
    drop(writer);
    agent.process.kill();
    let snapshot_path = dir.path().join("detector.json");
    let stop = |detector: &mut LiveDetector| {
        detector.process.signal(15);
        let status = detector
            .process
            .wait_exit(common::LIMIT)
            .expect("the detector stops on SIGTERM");
        assert!(status.success(), "{}", log_tail(&detector_log, 20));
        let text = std::fs::read_to_string(&snapshot_path).expect("snapshot written at shutdown");
        let mut snapshot: serde_json::Value = serde_json::from_str(&text).expect("snapshot JSON");
        // When a series was last seen is reset at restore, for the TTL; the rest is state.
        for pair in snapshot["series"].as_array_mut().expect("series") {
            pair[1].as_object_mut().expect("entry").remove("seen_ms");
        }
        snapshot
            .as_object_mut()
            .expect("snapshot")
            .remove("taken_ms");
        snapshot
    };
    let saved = stop(&mut detector);
    assert_eq!(saved["series"].as_array().map(Vec::len), Some(3));

    // Nothing feeds the restarted detector: what it knows comes from the snapshot, and it
    // saves the very same state again.
    let mut restarted = LiveDetector::start(&config, detector_addr, &detector_log);
    let samples = restarted.samples();
    assert_eq!(samples["omen_detector_series"], 3.0, "{samples:#?}");
    assert_eq!(samples["omen_detector_points_total"], 0.0, "{samples:#?}");
    assert!(
        std::fs::read_to_string(&detector_log)
            .unwrap_or_default()
            .contains("model state restored"),
        "{}",
        log_tail(&detector_log, 20)
    );
    assert_eq!(stop(&mut restarted), saved);
}

/// The example configuration, with Prometheus remote-writing everything it scrapes (an
/// agent, the detector, their `up` and `scrape_*` series) to the detector: only the
/// agent's rule metrics are modelled, and what was skipped is counted by reason.
#[test]
fn the_example_config_models_no_up_scrape_alerts_or_omen_series() {
    if !common::component_available("prometheus", "prometheus") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("inventory.log");
    std::fs::copy(
        common::repo_root().join("examples/agent/inventory.log"),
        &log,
    )
    .expect("log");
    let agent = LiveAgent::start(
        &common::repo_root().join("examples/agent/inventory.yaml"),
        &log.display().to_string(),
        None,
        free_port(),
    );
    let detector_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let example =
        std::fs::read_to_string(common::repo_root().join("examples/detector/detect.yaml"))
            .expect("example config");
    // The example as it is, but on free ports and in this test's folder, without its
    // scrape of the default agent port (Prometheus brings the agent's series here).
    let config = example
        .replace(
            "listen: 127.0.0.1:9751",
            &format!("listen: {detector_addr}"),
        )
        .replace(
            "/var/lib/omen/detector.json",
            &dir.path().join("detector.json").display().to_string(),
        )
        .replace(
            "http://127.0.0.1:9750/metrics",
            "http://127.0.0.1:9/metrics",
        )
        .replace("127.0.0.1:4317", &format!("127.0.0.1:{}", free_port()))
        .replace("127.0.0.1:4318", &format!("127.0.0.1:{}", free_port()));
    assert_ne!(
        config, example,
        "the example's listen and snapshot path are where the test expects"
    );
    let detector = LiveDetector::start(&config, detector_addr, &dir.path().join("detector.log"));
    let _prometheus = Prometheus::start(
        dir.path(),
        &format!(
            "global: {{ scrape_interval: 1s }}
scrape_configs:
  - job_name: omen-agent
    static_configs: [{{ targets: ['{}'] }}]
  - job_name: omen-detector
    static_configs: [{{ targets: ['{detector_addr}'] }}]
remote_write:
  - url: http://{detector_addr}/api/v1/write
    queue_config: {{ batch_send_deadline: 1s, min_backoff: 100ms, max_backoff: 1s }}
",
            agent.addr
        ),
    );
    let modelled = |samples: &BTreeMap<String, f64>| -> Vec<String> {
        samples
            .keys()
            .filter(|k| k.starts_with("omen_series_value{"))
            .cloned()
            .collect()
    };
    wait_for(
        ACT_LIMIT,
        "the agent's rule metrics modelled from remote_write",
        || {
            let samples = detector.samples();
            let series = modelled(&samples);
            let skipped = samples
            .get("omen_detector_samples_skipped_total{reason=\"default_exclude\",source=\"remote_write\"}")
            .copied()
            .unwrap_or(0.0);
            (series
                .iter()
                .any(|k| k.contains("metric=\"hard_deletes_total\""))
                && skipped > 0.0)
                .then_some(())
        },
    );
    let samples = detector.samples();
    for series in modelled(&samples) {
        let metric = series
            .split("metric=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or("");
        assert!(
            !(metric == "up"
                || metric.starts_with("scrape_")
                || metric.starts_with("ALERTS")
                || metric.starts_with("omen_")),
            "{series} should not be modelled"
        );
    }
}

/// What an on-call engineer sees first: health as stat panels, incidents marked on every
/// graph, and on the agent dashboard nothing tied to one set of rules outside a collapsed
/// row (the example's panels stay there for the demo).
#[test]
fn dashboards_lead_with_health_and_mark_incidents() {
    for name in ["omen-agent.json", "omen-detector.json"] {
        let path = common::repo_root().join("dashboards").join(name);
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let panels = dashboard["panels"].as_array().unwrap();
        assert_eq!(panels[0]["type"], "row", "{name}");
        let stats = panels.iter().filter(|p| p["type"] == "stat").count();
        assert!(stats >= 4, "{name}: {stats} stat panels");
        assert!(
            panels[1..=stats].iter().all(|p| p["type"] == "stat"),
            "{name}: the stat panels come first"
        );
        let incidents = dashboard["annotations"]["list"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| {
                a["expr"]
                    .as_str()
                    .is_some_and(|e| e.contains("omen_incidents_open"))
            });
        assert!(incidents, "{name}: incidents annotated");
    }
    let path = common::repo_root().join("dashboards/omen-agent.json");
    let agent: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    for panel in agent["panels"].as_array().unwrap() {
        let expressions = panel["targets"].as_array().into_iter().flatten();
        for expr in expressions.filter_map(|t| t["expr"].as_str()) {
            for example in ["hard_deletes", "stock_event", "http_request"] {
                assert!(
                    !expr.contains(example),
                    "`{}` is tied to the example's rules: {expr}",
                    panel["title"]
                );
            }
        }
        if panel["collapsed"] == true {
            assert!(!panel["panels"].as_array().unwrap().is_empty());
        }
    }
}
