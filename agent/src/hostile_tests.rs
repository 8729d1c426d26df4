//! Hostile rules, records and checkpoints: valid ones with a few values changed to hostile
//! ones (`omen_common::mutate`) are refused with an error or run; none panics. Each case
//! is named by its seed; `OMEN_FUZZ_CASES` sets how many run (300 by default).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use omen_common::mutate::{for_each_seed, mutate};

use crate::clock::ManualClock;
use crate::config::RulesConfig;
use crate::pipeline::{Pipeline, PipelineSnapshot};
use crate::registry::Format;

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).expect("a file of the repository")
}

fn pipeline_on(rules: &RulesConfig, path: &Path) -> Option<Pipeline> {
    Pipeline::new(rules, path, Arc::new(ManualClock::new(0))).ok()
}

/// Every line of `log` through `pipeline`, then its exposition in both formats.
fn exercise(pipeline: &mut Pipeline, log: &str) {
    pipeline.begin_batch();
    for line in log.lines() {
        pipeline.process(line);
    }
    pipeline.end_batch();
    let _ = crate::export::prometheus::render(&pipeline.registry, Format::Prometheus);
    let _ = crate::export::prometheus::render(&pipeline.registry, Format::OpenMetrics);
    let _ = pipeline.snapshot();
}

/// The example rules files, each with a log it reads.
const EXAMPLES: [(&str, &str); 3] = [
    (
        "examples/agent/inventory.yaml",
        "examples/agent/inventory.log",
    ),
    (
        "examples/agent/patterns.yaml",
        "examples/agent/inventory.log",
    ),
    (
        "examples/agent/cdc.yaml",
        "tests/golden/cdc_deletes/input.log",
    ),
];

#[test]
fn hostile_rules_are_refused_or_run() {
    for (rules, log) in EXAMPLES {
        let path = repo_file(rules);
        let document: serde_json::Value = serde_yaml::from_str(&read(rules)).expect("yaml");
        let log = read(log);
        for_each_seed(rules, |seed| {
            let mutated = mutate(&document, seed, 1 + (seed % 3) as usize);
            let yaml = serde_yaml::to_string(&mutated).expect("yaml");
            let Ok(config) = RulesConfig::from_yaml(&yaml, &path) else {
                return false;
            };
            let Some(mut pipeline) = pipeline_on(&config, &path) else {
                return false;
            };
            exercise(&mut pipeline, &log);
            true
        });
    }
}

#[test]
fn hostile_change_events_are_counted_never_fatal() {
    let rules = "examples/agent/cdc.yaml";
    let path = repo_file(rules);
    let config = RulesConfig::from_yaml(&read(rules), &path).expect("valid");
    let events: Vec<serde_json::Value> = read("tests/golden/cdc_deletes/input.log")
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    assert!(!events.is_empty());
    let mut pipeline = pipeline_on(&config, &path).expect("valid");
    let deletes = |pipeline: &Pipeline| -> f64 {
        let text = crate::export::prometheus::render(&pipeline.registry, Format::Prometheus);
        crate::oneshot::parse_exposition(&text)
            .iter()
            .filter(|(key, _)| key.starts_with("hard_deletes_total"))
            .map(|(_, value)| value)
            .sum()
    };
    for_each_seed("a mutated change event", |seed| {
        let event = &events[(seed % events.len() as u64) as usize];
        let line = serde_json::to_string(&mutate(event, seed, 1 + (seed % 3) as usize));
        let before = deletes(&pipeline);
        exercise(&mut pipeline, &line.expect("json"));
        // Counted as a delete, or not (and then as an error or not a delete at all).
        deletes(&pipeline) > before
    });
}

#[test]
fn hostile_pipeline_checkpoints_are_refused_or_restored() {
    for (rules, log) in EXAMPLES {
        let path = repo_file(rules);
        let config = RulesConfig::from_yaml(&read(rules), &path).expect("valid");
        let log = read(log);
        let mut pipeline = pipeline_on(&config, &path).expect("valid");
        exercise(&mut pipeline, &log);
        let document = serde_json::to_value(pipeline.snapshot()).expect("json");
        for_each_seed(rules, |seed| {
            let mutated = mutate(&document, seed, 1 + (seed % 4) as usize);
            let Ok(snapshot) = serde_json::from_value::<PipelineSnapshot>(mutated) else {
                return false;
            };
            let mut restored = pipeline_on(&config, &path).expect("valid");
            restored.restore(snapshot);
            exercise(&mut restored, &log);
            true
        });
    }
}
