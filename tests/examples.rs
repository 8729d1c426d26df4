//! Every example configuration in the repository parses and validates, and the example
//! rule test cases pass. Kinds by file name: `*cases.yaml` rule cases, `agent*.yaml`
//! agent configurations, any other YAML a rules file.

mod common;

use std::path::{Path, PathBuf};

use omen_agent::config::RulesConfig;
use omen_agent::pipeline::Pipeline;
use omen_agent::runtime::AgentConfig;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

#[test]
fn every_agent_example_parses_and_validates() {
    let mut files = Vec::new();
    yaml_files(&common::repo_root().join("examples/agent"), &mut files);
    yaml_files(&common::repo_root().join("tests/golden"), &mut files);
    let mut rules_files = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read");
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.ends_with("cases.yaml") {
            let _: omen_agent::oneshot::CasesFile =
                serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        } else if !name.starts_with("agent") {
            let config = RulesConfig::load(file).unwrap_or_else(|e| panic!("{e}"));
            Pipeline::validate(&config, file).unwrap_or_else(|e| panic!("{e}"));
            rules_files += 1;
        } else {
            let config = AgentConfig::load(file).unwrap_or_else(|e| panic!("{e}"));
            let used = config.rules_files();
            assert!(!used.is_empty(), "{}: no rules file", file.display());
            for path in used {
                let rules = RulesConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
                Pipeline::validate(&rules, &path).unwrap_or_else(|e| panic!("{e}"));
            }
        }
    }
    assert!(
        rules_files >= 4,
        "found only {rules_files} rules files in {files:?}"
    );
}

#[test]
fn example_rule_cases_pass() {
    let root = common::repo_root();
    let output = common::omen()
        .args(["agent", "test", "--rules"])
        .arg(root.join("examples/agent/inventory.yaml"))
        .arg("--cases")
        .arg(root.join("examples/agent/inventory_cases.yaml"))
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn a_failing_case_exits_1_with_a_readable_diff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = dir.path().join("cases.yaml");
    std::fs::write(
        &cases,
        "cases:\n  - name: wrong on purpose\n    input: |\n      2025-07-14T09:00:00.003Z level=warn msg=\"hard-delete\" table=orders id=1\n    expect:\n      - { metric: hard_deletes_total, labels: { table: orders }, value: 5 }\n",
    )
    .expect("write");
    let output = common::omen()
        .args(["agent", "test", "--rules"])
        .arg(common::repo_root().join("examples/agent/inventory.yaml"))
        .arg("--cases")
        .arg(&cases)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(1));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("wrong on purpose"), "{text}");
    assert!(text.contains("expected 5"), "{text}");
    assert!(text.contains("got      1"), "{text}");
}

#[test]
fn a_bad_config_names_file_rule_and_field_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("bad.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - name: latency\n    type: histogram\n    value: ms\n    buckets: [1, 0.5]\n",
    )
    .expect("write");
    let output = common::omen()
        .args(["agent", "test", "--rules"])
        .arg(&rules)
        .args(["--input", "/dev/null"])
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let message = common::stderr(&output);
    assert!(message.contains("bad.yaml"), "{message}");
    assert!(message.contains("rule `latency`"), "{message}");
    assert!(message.contains("field `buckets`"), "{message}");
    assert!(message.contains("strictly increasing"), "{message}");
}

#[test]
fn the_live_agent_rejects_bad_configuration_with_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        "rules: rules.yaml\nsources:\n  - type: file\n    paths: [\"*.log\"]\n    follow: true\n",
    )
    .expect("write");
    let output = common::omen()
        .args(["agent", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let message = common::stderr(&output);
    assert!(
        message.contains("agent.yaml") && message.contains("follow"),
        "{message}"
    );

    std::fs::write(&config, "rules: missing.yaml\nsources:\n  - type: stdin\n").expect("write");
    let output = common::omen()
        .args(["agent", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    assert!(
        common::stderr(&output).contains("missing.yaml"),
        "{}",
        common::stderr(&output)
    );

    std::fs::write(dir.path().join("rules.yaml"), "rules: []\n").expect("write");
    std::fs::write(
        &config,
        "rules: rules.yaml\nsources:\n  - { type: file, name: a, paths: [x.log] }\n  - { type: file, name: a, paths: [y.log] }\n",
    )
    .expect("write");
    let output = common::omen()
        .args(["agent", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(2));
    let message = common::stderr(&output);
    assert!(message.contains("two sources are named `a`"), "{message}");

    let output = common::omen().args(["agent"]).output().expect("run");
    assert_eq!(output.status.code(), Some(2));
}
