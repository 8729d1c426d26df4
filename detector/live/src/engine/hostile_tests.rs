//! Hostile configurations and snapshots: valid ones with a few values changed to hostile
//! ones (`omen_common::mutate`) are refused with an error or run; none panics. Each case
//! is named by its seed; `OMEN_FUZZ_CASES` sets how many run (300 by default).

use std::path::Path;

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
        match DetectConfig::parse(&yaml, Path::new("mutated.yaml")) {
            Ok(config) => {
                exercise(Engine::new(config));
                true
            }
            Err(_) => false,
        }
    });
}

#[test]
fn hostile_snapshots_are_refused_or_restored() {
    let mut engine = Engine::new(quick_config(""));
    feed_with(&mut engine, 0..90, |_, _| 1.0);
    let document = serde_json::to_value(engine.snapshot(90_000)).expect("json");
    for_each_seed("a mutated snapshot", |seed| {
        let mutated = mutate(&document, seed, 1 + (seed % 4) as usize);
        match serde_json::from_value::<Snapshot>(mutated) {
            Ok(snapshot) => {
                let mut restored = Engine::new(quick_config(""));
                restored.restore(snapshot, 90_000);
                exercise(restored);
                true
            }
            Err(_) => false,
        }
    });
}
