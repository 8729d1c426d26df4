//! TLS and basic auth end to end, with certificates made in the test, every server taking
//! the web config file Prometheus and its exporters take (`--web.config.file`):
//! - a real Prometheus scrapes the agent and remote-writes to the detector over HTTPS
//!   with basic auth, and the detector scrapes the agent the same way (`http_config`);
//! - the detector replays history from a real Prometheus and alerts a real Alertmanager,
//!   both behind TLS and basic auth.
//!
//! Clients without the password, or without TLS, are refused.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::{free_port, http_get, log_tail, omen, wait_for_or, ChildGuard, Prometheus};
use omen_common::pki::{https_get, test_pki, TestPki};

const LIMIT: Duration = Duration::from_secs(60);
const AUTH: &str = "prometheus:s3cret";

/// A web config with TLS and the user `prometheus`.
fn web_config(dir: &Path, pki: &TestPki) -> std::path::PathBuf {
    let path = dir.join("web.yml");
    let hash = bcrypt::hash("s3cret", 4).expect("a hash");
    let text = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  prometheus: '{hash}'\n",
        pki.server_cert.display(),
        pki.server_key.display()
    );
    std::fs::write(&path, text).expect("a web config");
    path
}

/// Waits until `GET path` over TLS with the password answers 200; its body.
fn wait_ready(addr: SocketAddr, path: &str, pki: &TestPki, log: &Path) -> String {
    wait_for_or(
        LIMIT,
        &format!("{path} over TLS on {addr}"),
        || {
            https_get(addr, path, pki, false, Some(AUTH))
                .ok()
                .filter(|(status, _)| *status == 200)
                .map(|(_, body)| body)
        },
        || log_tail(log, 20),
    )
}

fn value(exposition: &str, prefix: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|value| value.trim().parse().ok())
}

#[test]
fn prometheus_scrapes_and_remote_writes_over_tls_with_basic_auth() {
    if !common::component_available("prometheus", "prometheus") {
        return;
    }
    let dir = tempfile::tempdir().expect("a directory");
    let pki = test_pki(dir.path());
    let web = web_config(dir.path(), &pki);
    let log_file = dir.path().join("app.log");
    std::fs::copy(
        common::repo_root().join("examples/agent/inventory.log"),
        &log_file,
    )
    .expect("a log");

    let agent_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let agent_log = dir.path().join("agent.log");
    let _agent = ChildGuard::spawn_logged(
        omen()
            .args(["agent", "--rules"])
            .arg(common::repo_root().join("examples/agent/inventory.yaml"))
            .arg("--tail")
            .arg(&log_file)
            .args(["--listen", &agent_addr.to_string(), "--web.config.file"])
            .arg(&web),
        &agent_log,
    );
    wait_ready(agent_addr, "/ready", &pki, &agent_log);

    let detector_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let detector_log = dir.path().join("detector.log");
    let detector_config = dir.path().join("detect.yaml");
    std::fs::write(
        &detector_config,
        format!(
            "listen: {detector_addr}\nweb_config_file: web.yml\nscrape:\n  - url: https://{agent_addr}/metrics\n    interval: 1s\n    http_config: {{ basic_auth: {{ username: prometheus, password: s3cret }}, tls_config: {{ ca_file: ca.crt }} }}\n"
        ),
    )
    .expect("a detector config");
    let _detector = ChildGuard::spawn_logged(
        omen().args(["detect", "--config"]).arg(&detector_config),
        &detector_log,
    );
    wait_ready(detector_addr, "/ready", &pki, &detector_log);

    // Without the password, or without TLS, neither answers.
    for addr in [agent_addr, detector_addr] {
        let (status, _) = https_get(addr, "/metrics", &pki, false, None).expect("an answer");
        assert_eq!(status, 401);
        let wrong = https_get(addr, "/metrics", &pki, false, Some("prometheus:guess"));
        assert_eq!(wrong.expect("an answer").0, 401);
        assert!(http_get(addr, "/metrics").is_none_or(|(status, _)| status != 200));
    }

    let tls = format!(
        "tls_config: {{ ca_file: {}, server_name: localhost }}\n    basic_auth: {{ username: prometheus, password: s3cret }}",
        pki.ca.display()
    );
    let prometheus = Prometheus::start(
        dir.path(),
        &format!(
            "global: {{ scrape_interval: 1s }}
scrape_configs:
  - job_name: agent
    scheme: https
    {tls}
    static_configs: [{{ targets: ['{agent_addr}'] }}]
remote_write:
  - url: https://{detector_addr}/api/v1/write
    {tls}
    queue_config: {{ batch_send_deadline: 1s }}
"
        ),
    );

    // Scraped over TLS with the password: the target is up and the rules' metrics arrive.
    wait_for_or(
        LIMIT,
        "Prometheus to scrape the agent over TLS",
        || {
            let up = prometheus.query("up{job=\"agent\"} == 1")?;
            let deletes = prometheus.query("hard_deletes_total{job=\"agent\"}")?;
            (!up.is_empty() && !deletes.is_empty()).then_some(())
        },
        || log_tail(&prometheus.log, 20),
    );
    // Remote-written to the detector over TLS with the password, and scraped by the
    // detector itself the same way.
    wait_for_or(
        LIMIT,
        "remote_write and the detector's scrape over TLS",
        || {
            let (_, metrics) =
                https_get(detector_addr, "/metrics", &pki, false, Some(AUTH)).ok()?;
            let written = value(
                &metrics,
                "omen_detector_samples_total{source=\"remote_write\"}",
            )?;
            let scraped = value(&metrics, "omen_detector_samples_total{source=\"scrape\"}")?;
            (written > 0.0 && scraped > 0.0).then_some(())
        },
        || {
            format!(
                "{}\n{}",
                log_tail(&prometheus.log, 20),
                log_tail(&detector_log, 20)
            )
        },
    );
    // The refused clients above were counted as what they were.
    let (_, metrics) = https_get(agent_addr, "/metrics", &pki, false, Some(AUTH)).expect("metrics");
    let handshakes = "omen_agent_http_connections_closed_total{reason=\"tls_handshake\"}";
    assert!(value(&metrics, handshakes) >= Some(1.0), "{metrics}");
}

#[test]
fn a_web_config_that_cannot_work_is_refused_before_serving() {
    let dir = tempfile::tempdir().expect("a directory");
    let web = dir.path().join("web.yml");
    std::fs::write(&web, "basic_auth_users:\n  prometheus: not-a-hash\n").unwrap();
    let config = dir.path().join("detect.yaml");
    std::fs::write(&config, "web_config_file: web.yml\n").unwrap();
    let output = omen()
        .args(["check", "detect", "--config"])
        .arg(&config)
        .output()
        .expect("omen check");
    assert_eq!(output.status.code(), Some(1));
    let said = common::stderr(&output) + &String::from_utf8_lossy(&output.stdout);
    assert!(said.contains("basic_auth_users.prometheus"), "{said}");
    let output = omen()
        .args(["agent", "--rules"])
        .arg(common::repo_root().join("examples/agent/inventory.yaml"))
        .arg("--stdin")
        .arg("--web.config.file")
        .arg(&web)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .expect("omen agent");
    assert_eq!(output.status.code(), Some(2), "{}", common::stderr(&output));
    assert!(common::stderr(&output).contains("basic_auth_users.prometheus"));
}

/// A process whose readiness answers over TLS with the password.
fn start_tls(
    command: &mut std::process::Command,
    addr: SocketAddr,
    pki: &TestPki,
    log: &Path,
) -> ChildGuard {
    let process = ChildGuard::spawn_logged(command, log);
    wait_ready(addr, "/-/ready", pki, log);
    process
}

/// A noisy calm level, then twenty times it for a while, every 15 s over `from..to`.
fn history(from_ms: i64, to_ms: i64, spike: (i64, i64)) -> Vec<omen_detector::wire::Sample> {
    let mut samples = Vec::new();
    let mut t = from_ms;
    while t <= to_ms {
        for (service, level) in [("api", 20.0), ("worker", 35.0)] {
            let noise = ((t / 15_000) * 7919 % 11) as f64 / 10.0;
            let value = if (spike.0..spike.1).contains(&t) {
                level * 20.0
            } else {
                level + noise
            };
            samples.push(omen_detector::wire::Sample {
                name: "queue_depth".to_owned(),
                labels: vec![("service".to_owned(), service.to_owned())],
                value,
                timestamp_ms: Some(t),
                kind: omen_detector::wire::ValueKind::Gauge,
            });
        }
        t += 15_000;
    }
    samples.sort_by_key(|s| (s.labels.clone(), s.timestamp_ms));
    samples
}

#[test]
fn the_detector_reads_prometheus_and_alerts_alertmanager_over_tls_with_basic_auth() {
    if !common::component_available("prometheus", "prometheus")
        || !common::component_available("prometheus-alertmanager", "prometheus-alertmanager")
    {
        return;
    }
    let dir = tempfile::tempdir().expect("a directory");
    let pki = test_pki(dir.path());
    let web = web_config(dir.path(), &pki);

    let prometheus_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let prometheus_log = dir.path().join("prometheus.log");
    std::fs::write(
        dir.path().join("prometheus.yml"),
        "global: { scrape_interval: 1m }\n",
    )
    .unwrap();
    let _prometheus = start_tls(
        std::process::Command::new("prometheus")
            .arg(format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address={prometheus_addr}"))
            .arg(format!("--web.config.file={}", web.display()))
            .arg("--web.enable-remote-write-receiver"),
        prometheus_addr,
        &pki,
        &prometheus_log,
    );
    let alertmanager_addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let alertmanager_log = dir.path().join("alertmanager.log");
    let am_config = dir.path().join("alertmanager.yml");
    std::fs::write(
        &am_config,
        "route: { receiver: nobody }\nreceivers: [{ name: nobody }]\n",
    )
    .unwrap();
    let _alertmanager = start_tls(
        std::process::Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", am_config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("am-data").display()
            ))
            .arg(format!("--web.listen-address={alertmanager_addr}"))
            .arg(format!("--web.config.file={}", web.display()))
            .arg("--cluster.listen-address="),
        alertmanager_addr,
        &pki,
        &alertmanager_log,
    );

    // Three hours of history, remote-written over TLS with the password.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let end = now - now % 15_000 - 5 * 60_000;
    let start = end - 3 * 3_600_000;
    let replay_from = start + 2 * 3_600_000;
    let spike = (replay_from + 20 * 60_000, replay_from + 30 * 60_000);
    let body = omen_detector::wire::remote_write::encode(&history(start, end, spike));
    let headers = [
        ("Content-Type", "application/x-protobuf"),
        ("Content-Encoding", "snappy"),
        ("X-Prometheus-Remote-Write-Version", "0.1.0"),
    ];
    let written = omen_common::pki::https_request(
        prometheus_addr,
        "POST",
        "/api/v1/write",
        &pki,
        false,
        Some(AUTH),
        &headers,
        &body,
    )
    .expect("remote_write to Prometheus");
    assert_eq!(written.0, 204, "{}", written.1);

    let http_config = format!(
        "{{ basic_auth: {{ username: prometheus, password: s3cret }}, tls_config: {{ ca_file: {} }} }}",
        pki.ca.display()
    );
    let config = dir.path().join("detect.yaml");
    std::fs::write(
        &config,
        format!(
            "listen: 127.0.0.1:{port}
detector: {{ transform: none, warmup_points: 30, likelihood: {{ min_history: 30 }} }}
prometheus:
  - url: https://{prometheus_addr}
    queries: [{{ name: queue_depth, expr: queue_depth }}]
    interval: 15s
    warmup: 2h
    http_config: {http_config}
alerting:
  alertmanager: ['https://{alertmanager_addr}']
  http_config: {http_config}
",
            port = free_port()
        ),
    )
    .unwrap();
    let range = format!(
        "{}..{}",
        omen_detector::series::format_rfc3339(replay_from),
        omen_detector::series::format_rfc3339(end)
    );
    let output = omen()
        .args(["detect", "--config"])
        .arg(&config)
        .args(["--replay", &range, "--replay-pace", "20ms"])
        .env("OMEN_LOG", "info")
        .output()
        .expect("omen detect --replay");
    let log = common::stderr(&output);
    assert!(
        output.status.success(),
        "omen detect --replay failed:\n{log}"
    );
    assert!(
        log.contains("replay done") && log.contains("alerts posted to alertmanager"),
        "{log}"
    );
    // Alertmanager took them: firing alerts received over TLS with the password.
    let (_, metrics) =
        https_get(alertmanager_addr, "/metrics", &pki, false, Some(AUTH)).expect("metrics");
    let received = metrics
        .lines()
        .filter(|line| {
            line.starts_with("alertmanager_alerts_received_total") && line.contains("firing")
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>();
    assert!(received >= 1.0, "{metrics}\n{log}");
    eprintln!("Alertmanager received {received} firing alerts over TLS");
    // A detector without the password is refused and says so.
    let refused = config.with_file_name("refused.yaml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("s3cret", "guess");
    std::fs::write(&refused, text).unwrap();
    let output = omen()
        .args(["detect", "--config"])
        .arg(&refused)
        .args(["--replay", &range])
        .output()
        .expect("omen detect --replay");
    assert!(!output.status.success());
    assert!(
        common::stderr(&output).contains("401"),
        "{}",
        common::stderr(&output)
    );
}
