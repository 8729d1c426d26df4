//! Hostile configurations and snapshots: valid ones with a few values changed to hostile
//! ones (`omen_common::mutate`) are refused with an error or run; none panics. Each case
//! is named by its seed; `OMEN_FUZZ_CASES` sets how many run (300 by default).

use std::path::Path;

use omen_common::fuzz::fuzz;
use omen_common::mutate::{for_each_seed, mutate};

use super::tests::{feed_with, quick_config};
use super::*;
use crate::metrics::render;

/// An engine on `config` fed two minutes of three series, ticked, rendered, snapshotted.
fn exercise(mut engine: Engine) {
    feed_with(&mut engine, 0..120, |_, s| if s > 100 { 20.0 } else { 1.0 });
    let _ = engine.take_notifications();
    let _ = render(&engine, &[]);
    let _ = engine.series_states();
    let snapshot = engine.snapshot(120_000);
    let mut restored = Engine::new(engine.config().clone());
    restored.restore(snapshot, 120_000);
}

/// Whether `yaml` is taken as a configuration, and then runs.
fn run_configuration(yaml: &str) -> bool {
    match DetectConfig::parse(yaml, Path::new("hostile.yaml")) {
        Ok(config) => {
            exercise(Engine::new(config));
            true
        }
        Err(_) => false,
    }
}

#[test]
fn hostile_configurations_are_refused_or_run() {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/detector/detect.yaml"),
    )
    .expect("the example configuration");
    let document: serde_json::Value = serde_yaml::from_str(&text).expect("yaml");
    for_each_seed("a mutated example configuration", |seed| {
        let mutated = mutate(&document, seed, 1 + (seed % 3) as usize);
        let yaml = serde_yaml::to_string(&mutated).expect("yaml");
        run_configuration(&yaml)
    });
}

/// Whether `snapshot` was read, and then restores and runs.
fn restore_snapshot(snapshot: Option<Snapshot>) -> bool {
    let Some(snapshot) = snapshot else {
        return false;
    };
    let mut restored = Engine::new(quick_config(""));
    restored.restore(snapshot, 90_000);
    exercise(restored);
    true
}

#[test]
fn hostile_snapshots_are_refused_or_restored() {
    let mut engine = Engine::new(quick_config(""));
    feed_with(&mut engine, 0..90, |_, _| 1.0);
    let document = serde_json::to_value(engine.snapshot(90_000)).expect("json");
    for_each_seed("a mutated snapshot", |seed| {
        let mutated = mutate(&document, seed, 1 + (seed % 4) as usize);
        restore_snapshot(serde_json::from_value::<Snapshot>(mutated).ok())
    });
}

/// The example configuration, byte-edited (`omen_common::fuzz`): refused or run.
#[test]
fn fuzz_configuration_files() {
    let text = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/detector/detect.yaml"),
    )
    .expect("the example configuration");
    let short = b"scrape:\n  - url: http://127.0.0.1:9100/metrics\n    interval: 15s\nalerting:\n  resend: 1m\n";
    fuzz(
        "a configuration file",
        vec![text, short.to_vec()],
        |bytes| run_configuration(&String::from_utf8_lossy(bytes)),
    );
}

/// A snapshot file, byte-edited: refused or restored.
#[test]
fn fuzz_snapshot_files() {
    let mut engine = Engine::new(quick_config(""));
    feed_with(&mut engine, 0..90, |_, s| if s == 1 { 3.0 } else { 1.0 });
    let bytes = serde_json::to_vec(&engine.snapshot(90_000)).expect("json");
    fuzz("a snapshot file", vec![bytes], |bytes| {
        restore_snapshot(serde_json::from_slice::<Snapshot>(bytes).ok())
    });
}
