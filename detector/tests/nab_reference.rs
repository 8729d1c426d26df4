//! Reproduces the official NAB scorer's per-file figures (`shared/nab/reference`) for the
//! published detectors' outputs. Skips, with a message, when `../shared` is absent.

use std::path::{Path, PathBuf};

use omen_detector::backtest::nab::{
    normalised_score, optimise_threshold, optimise_thresholds, score_at_threshold, weigh_rows,
    window_rows, Windows, PROFILES,
};
use omen_detector::series::parse_timestamp;

fn nab_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/nab");
    dir.is_dir().then_some(dir)
}

fn read_results(path: &Path) -> (Vec<i64>, Vec<f64>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let score_column = header.iter().position(|h| *h == "anomaly_score").unwrap();
    let (mut timestamps, mut scores) = (Vec::new(), Vec::new());
    for line in lines.filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').collect();
        timestamps.push(parse_timestamp(fields[0]).unwrap());
        scores.push(fields[score_column].parse().unwrap());
    }
    (timestamps, scores)
}

/// A reference detector's scores for `file` (`<category>/<name>.csv`) and its windows as
/// row ranges.
fn reference_scores(
    dir: &Path,
    detector: &str,
    file: &str,
    windows: &Windows,
) -> (Vec<f64>, Vec<(usize, usize)>) {
    let (category, name) = file.split_once('/').unwrap();
    let (timestamps, scores) = read_results(&dir.join(category).join(format!("{detector}_{name}")));
    let rows_windows = window_rows(&timestamps, windows.for_series(file));
    (scores, rows_windows)
}

#[test]
fn reproduces_every_reference_row() {
    let Some(nab) = nab_dir() else {
        println!("skipped: ../shared/nab not found beside the repository");
        return;
    };
    let windows = Windows::read(&nab.join("labels/combined_windows.json")).unwrap();
    let mut checked = 0;
    for detector in ["numenta", "windowedGaussian"] {
        let dir = nab.join("reference").join(detector);
        for profile in &PROFILES {
            let table = std::fs::read_to_string(
                dir.join(format!("{detector}_{}_scores.csv", profile.name)),
            )
            .unwrap();
            for line in table.lines().skip(1).filter(|l| !l.is_empty()) {
                let f: Vec<&str> = line.split(',').collect();
                let file = f[2];
                if !file.ends_with(".csv") {
                    continue; // totals
                }
                let (scores, rows_windows) = reference_scores(&dir, detector, file, &windows);
                let rows = weigh_rows(&scores, &rows_windows, 0);
                let threshold: f64 = f[3].parse().unwrap();
                let outcome = score_at_threshold(&rows, threshold, profile);
                let expected: f64 = f[4].parse().unwrap();
                assert!(
                    (outcome.score - expected).abs() < 1e-6,
                    "{detector} {} {file}: score {} expected {expected}",
                    profile.name,
                    outcome.score
                );
                let counts: Vec<usize> = f[5..9].iter().map(|c| c.parse().unwrap()).collect();
                assert_eq!(
                    [outcome.tp, outcome.tn, outcome.fp, outcome.fn_],
                    counts[..],
                    "{detector} {} {file}",
                    profile.name
                );
                checked += 1;
            }
        }
    }
    assert_eq!(checked, 2 * 3 * 42);
    println!("{checked} reference rows reproduced");
}

/// Pooling every file and optimising the threshold gives the published development-split
/// table (`shared/nab/README.md`), to its one decimal.
#[test]
fn reproduces_the_published_normalised_scores() {
    let Some(nab) = nab_dir() else {
        println!("skipped: ../shared/nab not found beside the repository");
        return;
    };
    let windows = Windows::read(&nab.join("labels/combined_windows.json")).unwrap();
    let published = [
        ("numenta", [71.7, 65.5, 75.7]),
        ("windowedGaussian", [36.2, 18.1, 44.0]),
    ];
    for (detector, expected) in published {
        let dir = nab.join("reference").join(detector);
        let mut rows = Vec::new();
        let mut window_count = 0;
        for file in windows.0.keys() {
            let (scores, rows_windows) = reference_scores(&dir, detector, file, &windows);
            rows.extend(weigh_rows(&scores, &rows_windows, window_count as u32));
            window_count += rows_windows.len();
        }
        assert_eq!(window_count, 79);
        // One sweep for the three profiles, as `omen backtest` scores; each agrees with a
        // profile's own optimisation.
        let pooled = optimise_thresholds(&mut rows.clone(), &PROFILES);
        for ((profile, expected), best) in PROFILES.iter().zip(expected).zip(pooled) {
            assert_eq!(
                best,
                optimise_threshold(&rows, profile),
                "{detector} {}",
                profile.name
            );
            let normalised = normalised_score(best.score, window_count, profile);
            assert!(
                (normalised - expected).abs() < 0.051,
                "{detector} {}: {normalised} expected {expected}",
                profile.name
            );
        }
    }
}
