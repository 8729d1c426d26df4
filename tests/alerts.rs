//! Every file in `alerts/` is a Prometheus rule file (so `rule_files: [alerts/*.yml]`
//! loads the folder) that passes `promtool check rules`, their unit tests pass (`promtool
//! test rules`), and the Alertmanager configuration (`alertmanager/`) passes `amtool
//! check-config`. Every alert links its section of `docs/runbooks.md`. The tools come from Debian's `prometheus` and `prometheus-alertmanager`
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

/// The address the rules link the runbooks at: the detector's default `/runbooks`, and
/// its default `alerting.runbook_url`, so one `sed` moves both kinds of link.
const RUNBOOKS: &str = "http://127.0.0.1:9751/runbooks";

#[test]
fn every_alert_links_its_own_runbook_section() {
    use omen_common::runbooks::{anchor, anchors, MARKDOWN};
    let sections = anchors(MARKDOWN);
    let mut alerts = Vec::new();
    for file in files("alerts", ".rules.yml") {
        let text = std::fs::read_to_string(&file).expect("read");
        let rules: serde_yaml::Value = serde_yaml::from_str(&text).expect("yaml");
        let groups = rules["groups"].as_sequence().expect("groups");
        for rule in groups
            .iter()
            .flat_map(|g| g["rules"].as_sequence().unwrap())
        {
            let Some(name) = rule["alert"].as_str() else {
                continue;
            };
            let link = rule["annotations"]["runbook_url"].as_str();
            assert_eq!(
                link,
                Some(format!("{RUNBOOKS}#{}", anchor(name)).as_str()),
                "{name} in {}",
                file.display()
            );
            alerts.push(name.to_owned());
        }
    }
    assert!(alerts.len() >= 15, "{alerts:?}");
    // What the detector sends itself has a section too, linked by `link_runbook`.
    alerts.extend(["OmenIncident".to_owned(), "OmenEarlyWarning".to_owned()]);
    for name in &alerts {
        assert!(
            sections.contains(&anchor(name)),
            "no runbook section for {name}"
        );
    }
    let default = omen_detector_live::config::AlertingConfig::default();
    assert_eq!(default.runbook_url, RUNBOOKS);
}
