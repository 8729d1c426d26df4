//! `omen demo --check`: agent and detector in one process find every injected incident of
//! the simulated inventory service and raise no other, while both `/metrics` endpoints
//! serve.

mod common;

use std::io::Read;
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{free_port, http_get, omen, wait_for};

/// The demo must finish within 3 minutes; a debug build paced at 5 ms a live minute is
/// well inside that.
const DEMO_LIMIT: Duration = Duration::from_secs(180);

#[test]
fn the_demo_detects_every_injected_incident_and_nothing_else() {
    let agent = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let detector = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let started = Instant::now();
    let mut child = omen()
        .args(["demo", "--check", "--pace-ms", "5"])
        .arg("--agent-listen")
        .arg(agent.to_string())
        .arg("--detector-listen")
        .arg(detector.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn omen demo");

    // Both servers answer while the live day runs.
    let agent_metrics = wait_for(DEMO_LIMIT, "the agent's /metrics", || {
        http_get(agent, "/metrics")
            .filter(|(status, body)| *status == 200 && body.contains("stock_event_matched_total"))
    });
    assert!(agent_metrics
        .1
        .contains("hard_deletes_total{table=\"orders\"}"));
    let detector_metrics = wait_for(DEMO_LIMIT, "the detector's /metrics", || {
        http_get(detector, "/metrics")
            .filter(|(status, body)| *status == 200 && body.contains("omen_anomaly_score{"))
    });
    assert!(detector_metrics
        .1
        .contains("omen_baseline_upper{metric=\"stock_event_matched_total\""));

    let status = wait_for(DEMO_LIMIT, "the demo to finish", || {
        child.try_wait().ok().flatten()
    });
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .expect("piped")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("piped")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    assert!(
        status.success(),
        "omen demo --check failed:\n{stdout}\n{stderr}"
    );
    assert!(started.elapsed() < DEMO_LIMIT);
    assert!(
        stdout.contains("4 of 4 injected incidents detected, 0 false incidents"),
        "{stdout}"
    );
    assert!(
        stdout.contains(" 0 not followed by an injected incident"),
        "{stdout}"
    );
    for trouble in ["crash window", "sale peak", "hard-delete burst", "payments"] {
        let line = stdout
            .lines()
            .find(|l| l.contains(trouble) && l.trim_start().starts_with("detected"))
            .unwrap_or_else(|| panic!("no summary line for {trouble}:\n{stdout}"));
        assert!(line.contains("min after it began"), "{line}");
    }
    // The slow payments service is found through spans alone, rooted where it is slow.
    let payments = stdout
        .lines()
        .find(|l| l.contains("payments") && l.trim_start().starts_with("detected"))
        .expect("a summary line for the payments fault");
    assert!(payments.contains("{service=\"payments\"}"), "{payments}");
    assert!(payments.contains("spans point at payments"), "{payments}");
    assert!(!stdout.contains("WRONG"), "{stdout}");
    // The hard-delete burst's root cause is the table that was deleted from.
    assert!(stdout.contains("root cause hard_deletes_total{instance=\"demo:9750\",job=\"inventory\",service=\"inventory\",table=\"orders\"}"), "{stdout}");
}
