//! TLS and basic auth end to end, with certificates made in the test: a real Prometheus
//! scrapes the agent over HTTPS with basic auth and remote-writes to the detector the same
//! way, each omen server taking the web config file Prometheus' exporters take
//! (`--web.config.file`). Clients without the password, or without TLS, are refused.

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
        format!("listen: {detector_addr}\nweb_config_file: web.yml\n"),
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
    // And remote-written to the detector over TLS with the password.
    wait_for_or(
        LIMIT,
        "remote_write to reach the detector over TLS",
        || {
            let (_, metrics) =
                https_get(detector_addr, "/metrics", &pki, false, Some(AUTH)).ok()?;
            let samples = value(
                &metrics,
                "omen_detector_samples_total{source=\"remote_write\"}",
            )?;
            (samples > 0.0).then_some(())
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
