//! Leave-one-category-out cross-validation of the threshold, the development protocol's
//! yardstick: each category (a file's first path component, e.g. NAB's `realTraffic`) is
//! scored at the threshold that is best on all the other categories, never on itself.
//! The folds' raw scores are summed and normalised once over every window, so the
//! whole-set figure is one in which no file's threshold was fitted on that file; each
//! fold's own normalised score is kept beside it (its worst fold shows where a setting
//! does not carry over).

use serde::Serialize;

use super::nab::{self, probationary_length, CostProfile, ScoredRow, PROFILES};
use super::replay::SeriesRun;

/// One held-out category under one profile.
#[derive(Debug, Clone, Serialize)]
pub struct Fold {
    pub category: String,
    pub series: usize,
    pub windows: usize,
    /// Chosen on the other categories.
    pub threshold: f64,
    pub raw_score: f64,
    /// The fold's own normalisation (`null` when it has no window: every alarm there is
    /// a false one, and only the raw score says how many).
    pub normalised: Option<f64>,
}

/// One profile's cross-validated outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CrossValidated {
    pub profile: &'static str,
    /// The folds' raw scores summed and normalised once.
    pub normalised: f64,
    pub raw_score: f64,
    /// The lowest fold score among folds with windows.
    pub worst_fold: Option<f64>,
    pub mean_fold: Option<f64>,
    pub folds: Vec<Fold>,
}

/// The category of a series: the first component of its name (`realTraffic/speed_6005`
/// is in `realTraffic`); a name without one is its own category.
pub fn category(series_name: &str) -> &str {
    series_name.split('/').next().unwrap_or(series_name)
}

/// Every profile cross-validated over the runs' categories; `None` with fewer than two
/// categories (nothing to hold out).
pub fn cross_validate(runs: &[SeriesRun]) -> Option<Vec<CrossValidated>> {
    let mut categories: Vec<&str> = runs.iter().map(|r| category(&r.series.name)).collect();
    categories.sort_unstable();
    categories.dedup();
    if categories.len() < 2 {
        return None;
    }
    let windows: usize = runs.iter().map(scored_windows).sum();
    let weigh = |keep: &dyn Fn(&str) -> bool| {
        let mut rows: Vec<ScoredRow> = Vec::new();
        let mut first_window = 0;
        for run in runs.iter().filter(|r| keep(category(&r.series.name))) {
            nab::weigh_rows_into(&mut rows, &run.scores, &run.windows, first_window);
            first_window += run.windows.len() as u32;
        }
        rows
    };
    let mut folds: Vec<Vec<Fold>> = vec![Vec::new(); PROFILES.len()];
    for &held_out in &categories {
        let mut training = weigh(&|c| c != held_out);
        let thresholds = nab::optimise_thresholds(&mut training, &PROFILES);
        drop(training);
        let held = weigh(&|c| c == held_out);
        let held_runs = runs.iter().filter(|r| category(&r.series.name) == held_out);
        let held_windows: usize = held_runs.clone().map(scored_windows).sum();
        for ((profile, chosen), folds) in PROFILES.iter().zip(&thresholds).zip(&mut folds) {
            let outcome = nab::score_at_threshold(&held, chosen.threshold, profile);
            folds.push(Fold {
                category: held_out.to_owned(),
                series: held_runs.clone().count(),
                windows: held_windows,
                threshold: chosen.threshold,
                raw_score: outcome.score,
                normalised: (held_windows > 0)
                    .then(|| nab::normalised_score(outcome.score, held_windows, profile)),
            });
        }
    }
    Some(
        PROFILES
            .iter()
            .zip(folds)
            .map(|(profile, folds)| summarise(profile, folds, windows))
            .collect(),
    )
}

fn summarise(profile: &CostProfile, folds: Vec<Fold>, windows: usize) -> CrossValidated {
    let raw_score: f64 = folds.iter().map(|f| f.raw_score).sum();
    let scored: Vec<f64> = folds.iter().filter_map(|f| f.normalised).collect();
    CrossValidated {
        profile: profile.name,
        normalised: nab::normalised_score(raw_score, windows, profile),
        raw_score,
        worst_fold: scored.iter().copied().min_by(f64::total_cmp),
        mean_fold: (!scored.is_empty()).then(|| scored.iter().sum::<f64>() / scored.len() as f64),
        folds,
    }
}

/// Windows the scorer sees: one wholly inside a probationary period is neither found nor
/// missed.
pub fn scored_windows(run: &SeriesRun) -> usize {
    let probation = probationary_length(run.scores.len());
    run.windows
        .iter()
        .filter(|&&(_, last)| last >= probation)
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Series;
    use std::time::Duration;

    fn run(name: &str, scores: Vec<f64>, windows: Vec<(usize, usize)>) -> SeriesRun {
        let n = scores.len();
        let mut series = Series::new(name);
        for i in 0..n as i64 {
            series.push(i * 60_000, "", 0.0);
        }
        SeriesRun {
            series,
            windows,
            warnings: vec![None; n],
            drivers: vec![None; n],
            scores,
            lower: Vec::new(),
            upper: Vec::new(),
            detect_time: Duration::ZERO,
            state_bytes: 0,
            snapshot_bytes: 0,
            season_s: None,
        }
    }

    /// A file whose window (rows 500..=540 of 1,000) is found by a score of `hit` at row
    /// 505, with a false alarm scoring `noise` at row 800.
    fn file(name: &str, hit: f64, noise: f64) -> SeriesRun {
        let mut scores = vec![0.1; 1000];
        scores[505] = hit;
        scores[800] = noise;
        run(name, scores, vec![(500, 540)])
    }

    #[test]
    fn the_category_is_the_first_name_component() {
        assert_eq!(category("realTraffic/speed_6005"), "realTraffic");
        assert_eq!(category("alone"), "alone");
    }

    #[test]
    fn one_category_has_nothing_to_hold_out() {
        assert!(cross_validate(&[file("a/1", 0.9, 0.2), file("a/2", 0.9, 0.2)]).is_none());
    }

    #[test]
    fn a_held_out_category_is_scored_at_the_others_threshold() {
        // In `a` and `b` windows score 0.9 and false alarms 0.5, so their best threshold
        // lies above 0.5. Category `c`'s windows score only 0.6, under its own noise of
        // 0.7: at the others' threshold it finds nothing, although a threshold fitted on
        // the whole set (0.6) would have found its windows.
        let runs = [
            file("a/1", 0.9, 0.5),
            file("b/1", 0.9, 0.5),
            file("c/1", 0.6, 0.7),
            file("c/2", 0.6, 0.7),
        ];
        let standard = &cross_validate(&runs).expect("three categories")[0];
        let c = standard.folds.iter().find(|f| f.category == "c").unwrap();
        assert!(c.threshold > 0.7, "threshold {}", c.threshold);
        assert_eq!(c.raw_score, -2.0, "both windows missed, no alarm");
        assert_eq!(c.normalised, Some(0.0));
        let a = standard.folds.iter().find(|f| f.category == "a").unwrap();
        assert!(a.normalised.unwrap() > 90.0);
        assert_eq!(standard.worst_fold, Some(0.0));
        let sum: f64 = standard.folds.iter().map(|f| f.raw_score).sum();
        assert_eq!(standard.raw_score, sum);
        assert_eq!(
            standard.normalised,
            nab::normalised_score(sum, 4, &PROFILES[0])
        );
    }
}
