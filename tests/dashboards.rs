//! Every PromQL expression of every dashboard in `dashboards/` returns data from a real
//! Prometheus (Debian's `prometheus`) that scrapes a real `omen agent` tailing a log being
//! written. Grafana cannot run here, so its variables are substituted the way it would
//! (`$__rate_interval`, `$job`, `$instance` as "All"). Outside CI the test skips with a
//! message when Prometheus is not installed; `.ci/setup` installs it.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{http_get, wait_for, ChildGuard, LiveAgent};

/// Every `expr` in a dashboard's panels (rows included), with Grafana's variables
/// substituted.
fn expressions(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut panels: Vec<&serde_json::Value> = dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    while let Some(panel) = panels.pop() {
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                let title = panel["title"].as_str().unwrap_or("").to_owned();
                let expr = expr
                    .replace("$__rate_interval", "1m")
                    .replace("$job", ".*")
                    .replace("$instance", ".*");
                out.push((title, expr));
            }
        }
    }
    out
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The number of series an instant query returns (None while Prometheus has no answer).
fn query(prometheus: SocketAddr, expr: &str) -> Option<usize> {
    let (status, body) = http_get(
        prometheus,
        &format!("/api/v1/query?query={}", percent_encode(expr)),
    )?;
    assert_eq!(status, 200, "query `{expr}` failed: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).ok()?;
    json["data"]["result"].as_array().map(Vec::len)
}

/// A few seconds of inventory log per call, in the logs' own time running 10 s per line
/// step so pair timeouts (30 s) pass: matched, late and lost events, hard deletes, HTTP
/// traffic and one unusable value.
fn inventory_chunk(step: usize) -> String {
    let mut text = String::new();
    for i in 0..20 {
        let n = step * 20 + i;
        let t = |offset_ms: usize| {
            let ms = n * 10_000 + offset_ms;
            format!(
                "2025-07-14T{:02}:{:02}:{:02}.{:03}Z",
                ms / 3_600_000 % 24,
                ms / 60_000 % 60,
                ms / 1000 % 60,
                ms % 1000
            )
        };
        text += &format!(
            "{} level=warn msg=\"hard-delete\" table=t{} id={n}\n",
            t(0),
            n % 3
        );
        text += &format!(
            "{} level=info msg=\"stock decremented\" order_id=o{n} sku=s1 qty=1\n",
            t(1)
        );
        if n % 4 != 0 {
            text += &format!(
                "{} level=info msg=\"event published\" order_id=o{n} topic=orders\n",
                t(300)
            );
        }
        let latency = if n % 7 == 0 {
            "oops".to_owned()
        } else {
            (n * 37 % 900).to_string()
        };
        text += &format!(
            "{} level=info method=GET path=/x status={} latency_ms={latency}\n",
            t(400),
            [200, 500][n % 2]
        );
    }
    text
}

#[test]
fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    if !common::component_available("prometheus", "prometheus") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("inventory.log");
    fs::write(&log, inventory_chunk(0)).expect("log");
    let rules = common::repo_root().join("examples/agent/inventory.yaml");
    let checkpoint = dir.path().join("agent.checkpoint");
    let agent = LiveAgent::start(
        &rules,
        &log.display().to_string(),
        Some(&checkpoint),
        common::free_port(),
    );

    let prometheus_port = common::free_port();
    let config = dir.path().join("prometheus.yml");
    fs::write(
        &config,
        format!(
            "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}\nscrape_configs:\n  - job_name: omen-agent\n    static_configs:\n      - targets: ['{}']\n",
            agent.addr
        ),
    )
    .expect("prometheus config");
    let prometheus_addr: SocketAddr = ([127, 0, 0, 1], prometheus_port).into();
    let _prometheus = ChildGuard::spawn(
        Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prometheus_addr}")),
    );
    wait_for(common::LIMIT, "Prometheus to be ready", || {
        http_get(prometheus_addr, "/-/ready").filter(|(status, _)| *status == 200)
    });

    // The log keeps growing while Prometheus scrapes, so rates have something to show.
    for step in 1..=8 {
        let mut file = OpenOptions::new()
            .append(true)
            .open(&log)
            .expect("open log");
        file.write_all(inventory_chunk(step).as_bytes())
            .expect("append");
        std::thread::sleep(Duration::from_millis(700));
    }

    let mut checked = 0;
    for entry in fs::read_dir(common::repo_root().join("dashboards")).expect("dashboards") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let dashboard: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(&path).expect("read"))
                .expect("dashboard JSON");
        assert_eq!(
            dashboard["__inputs"][0]["name"],
            "DS_PROMETHEUS",
            "{}",
            path.display()
        );
        for (title, expr) in expressions(&dashboard) {
            wait_for(
                common::LIMIT,
                &format!("data for panel `{title}`: {expr}"),
                || query(prometheus_addr, &expr).filter(|&series| series > 0),
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "only {checked} expressions checked");
}
