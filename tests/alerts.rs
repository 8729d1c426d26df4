//! Every file in `alerts/` is a Prometheus rule file (so `rule_files: [alerts/*.yml]`
//! loads the folder) that passes `promtool check rules`, their unit tests pass (`promtool
//! test rules`), and the Alertmanager configuration (`alertmanager/`) passes `amtool
//! check-config`. The tools come from Debian's `prometheus` and `prometheus-alertmanager`
//! packages, which `.ci/setup` installs; outside CI the tests skip when they are missing.

mod common;

use std::path::PathBuf;
use std::process::Command;

fn files(dir: &str, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(common::repo_root().join(dir))
        .expect("read dir")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    found.sort();
    found
}

#[test]
fn alert_rules_are_valid_and_their_unit_tests_pass() {
    if !common::component_available("promtool", "prometheus") {
        return;
    }
    // The folder as Prometheus would load it with a glob: every `.yml` in it.
    let rules = files("alerts", ".yml");
    assert!(rules
        .iter()
        .all(|r| r.to_string_lossy().ends_with(".rules.yml")));
    let tests = files("alerts/tests", ".test.yml");
    assert!(!rules.is_empty() && !tests.is_empty());
    for (verb, files) in [("check", &rules), ("test", &tests)] {
        let output = Command::new("promtool")
            .args([verb, "rules"])
            .args(files)
            .current_dir(common::repo_root())
            .output()
            .expect("run promtool");
        assert!(
            output.status.success(),
            "promtool {verb} rules failed:\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            common::stderr(&output)
        );
    }
}

#[test]
fn the_alertmanager_config_is_valid() {
    if !common::component_available("amtool", "prometheus-alertmanager") {
        return;
    }
    let output = Command::new("amtool")
        .args(["check-config", "alertmanager/alertmanager.yml"])
        .current_dir(common::repo_root())
        .output()
        .expect("run amtool");
    assert!(
        output.status.success(),
        "amtool check-config failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        common::stderr(&output)
    );
}
