//! Golden tests: for each `tests/golden/<case>/`, `rules.yaml` over `input.log` must give
//! exactly `expected.prom`. Regenerate one after a deliberate change with
//! `omen agent test --rules rules.yaml --input input.log > expected.prom`, and review it.

mod common;

use std::fs;

#[test]
fn every_golden_case_matches_exactly() {
    let dir = common::repo_root().join("tests/golden");
    let mut cases = 0;
    for entry in fs::read_dir(&dir).expect("golden dir") {
        let case = entry.expect("entry").path();
        if !case.is_dir() {
            continue;
        }
        cases += 1;
        let got = common::agent_oneshot(&case.join("rules.yaml"), &case.join("input.log"));
        let expected = fs::read_to_string(case.join("expected.prom")).expect("expected.prom");
        if got != expected {
            let diff: Vec<String> = diff_lines(&expected, &got);
            panic!(
                "golden case {} differs:\n{}",
                case.display(),
                diff.join("\n")
            );
        }
    }
    assert!(cases >= 3, "expected the golden cases, found {cases}");
}

fn diff_lines(expected: &str, got: &str) -> Vec<String> {
    let expected: Vec<&str> = expected.lines().collect();
    let got: Vec<&str> = got.lines().collect();
    let mut out = Vec::new();
    for line in &expected {
        if !got.contains(line) {
            out.push(format!("- {line}"));
        }
    }
    for line in &got {
        if !expected.contains(line) {
            out.push(format!("+ {line}"));
        }
    }
    out
}
