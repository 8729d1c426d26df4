//! `omen agent patterns` on the Loghub development systems (`../shared/logpatterns`): one
//! generic setting for every system, each system's lines fed once in order, the
//! assignments scored by the benchmark's own scorer. Fails if the mean grouping accuracy
//! or group F1 falls under its floor. Skips, with a message, when `../shared` is absent.

mod common;

use std::path::Path;
use std::process::Command;

/// Floors under today's means (GA 0.919, FGA 0.897): the miner is deterministic, so a
/// drop is a change of behaviour, not noise.
const GA_FLOOR: f64 = 0.915;
const FGA_FLOOR: f64 = 0.890;

#[test]
fn templates_of_every_development_system_score_above_the_floor() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/logpatterns");
    let systems = shared.join("systems");
    if !systems.is_dir() {
        println!("skipped: ../shared/logpatterns not found beside the repository");
        return;
    }
    let predictions = tempfile::tempdir().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(&systems)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("format.txt").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 11, "{names:?}");
    for name in &names {
        let dir = systems.join(name);
        let format = std::fs::read_to_string(dir.join("format.txt")).unwrap();
        let out = predictions.path().join(format!("{name}.pred.csv"));
        let run = common::omen()
            .args(["agent", "patterns", "--input"])
            .arg(dir.join(format!("{name}.log")))
            .args(["--format", format.trim(), "--assignments"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(stderr.starts_with("2000 lines"), "{name}: {stderr}");
        assert!(!stderr.contains("without the format"), "{name}: {stderr}");
    }
    let scores = predictions.path().join("scores.json");
    let scored = Command::new("python3")
        .arg(shared.join("score_templates.py"))
        .arg(&systems)
        .arg(predictions.path())
        .arg("--json")
        .arg(&scores)
        .output()
        .expect("python3 runs the benchmark's scorer");
    let table = String::from_utf8_lossy(&scored.stdout);
    assert!(
        scored.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&scored.stderr)
    );
    println!("{table}");
    let scores: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&scores).unwrap()).unwrap();
    let mean = |metric: &str| scores["mean"][metric].as_f64().unwrap();
    assert!(
        mean("GA") >= GA_FLOOR,
        "mean GA {} under {GA_FLOOR}\n{table}",
        mean("GA")
    );
    assert!(
        mean("FGA") >= FGA_FLOOR,
        "mean FGA {} under {FGA_FLOOR}\n{table}",
        mean("FGA")
    );
}

#[test]
fn a_missing_input_or_a_format_without_content_is_a_clear_error() {
    let missing = common::omen()
        .args(["agent", "patterns", "--input", "/nonexistent/omen.log"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read /nonexistent/omen.log"));
    let log = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(log.path(), "2024-01-01 a line\n").unwrap();
    let no_content = common::omen()
        .args(["agent", "patterns", "--format", "<Date> <Rest>", "--input"])
        .arg(log.path())
        .output()
        .unwrap();
    assert_eq!(no_content.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&no_content.stderr).contains("no <Content> field"));
}
