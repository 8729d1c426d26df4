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
/// categories (nothing to hold out). `sorted` are the runs' rows, pooled in run order and
/// sorted by [`nab::optimise_thresholds`] (the whole-set sweep): one sweep down them finds
/// every fold's threshold and another scores every held-out category, with no rows
/// weighed or sorted again.
pub fn cross_validate(runs: &[SeriesRun], sorted: &[ScoredRow]) -> Option<Vec<CrossValidated>> {
    let mut categories: Vec<&str> = runs.iter().map(|r| category(&r.series.name)).collect();
    categories.sort_unstable();
    categories.dedup();
    if categories.len() < 2 {
        return None;
    }
    // Each run's category index, and where its rows start in the pooled order.
    let mut starts = Vec::with_capacity(runs.len());
    let mut run_categories = Vec::with_capacity(runs.len());
    let mut start = 0;
    for run in runs {
        starts.push(start);
        start += run.scores.len() - probationary_length(run.scores.len());
        let name = category(&run.series.name);
        run_categories.push(categories.binary_search(&name).unwrap_or_default());
    }
    let category_of = |row: &ScoredRow| {
        let run = starts.partition_point(|&s| s <= row.pooled_index()) - 1;
        run_categories[run]
    };
    let row_categories: Vec<u16> = sorted.iter().map(|r| category_of(r) as u16).collect();
    let windows = Windows::of(sorted, &row_categories);
    let thresholds = fold_thresholds(sorted, &row_categories, &windows, categories.len());
    let held_out = held_out_scores(sorted, &row_categories, &windows, &thresholds);
    let mut folds: Vec<Vec<Fold>> = vec![Vec::new(); PROFILES.len()];
    for (k, &name) in categories.iter().enumerate() {
        let held_runs = runs.iter().filter(|r| category(&r.series.name) == name);
        let held_windows: usize = held_runs.clone().map(scored_windows).sum();
        for (p, (profile, folds)) in PROFILES.iter().zip(&mut folds).enumerate() {
            let raw_score = held_out[k][p];
            folds.push(Fold {
                category: name.to_owned(),
                series: held_runs.clone().count(),
                windows: held_windows,
                threshold: thresholds[k][p],
                raw_score,
                normalised: (held_windows > 0)
                    .then(|| nab::normalised_score(raw_score, held_windows, profile)),
            });
        }
    }
    let windows: usize = runs.iter().map(scored_windows).sum();
    Some(
        PROFILES
            .iter()
            .zip(folds)
            .map(|(profile, folds)| summarise(profile, folds, windows))
            .collect(),
    )
}

/// The windows the rows hold (by id: whether a scored row lies in it) and the category of
/// each.
struct Windows {
    present: Vec<bool>,
    category: Vec<u16>,
}

impl Windows {
    fn of(sorted: &[ScoredRow], row_categories: &[u16]) -> Self {
        let present = nab::windows_present(sorted);
        let mut category = vec![0u16; present.len()];
        for (row, &c) in sorted.iter().zip(row_categories) {
            if let Some(id) = row.window() {
                category[id as usize] = c;
            }
        }
        Self { present, category }
    }

    /// Per fold and profile, a tally over the windows of the categories `keep` selects
    /// for that fold.
    fn tallies(&self, folds: usize, keep: impl Fn(usize, usize) -> bool) -> Vec<Vec<nab::Tally>> {
        (0..folds)
            .map(|k| {
                let windows: Vec<bool> = self
                    .present
                    .iter()
                    .zip(&self.category)
                    .map(|(&present, &c)| present && keep(k, usize::from(c)))
                    .collect();
                PROFILES
                    .iter()
                    .map(|profile| nab::Tally::new(&windows, profile))
                    .collect()
            })
            .collect()
    }
}

/// For each held-out category and profile, the threshold that is best on the other
/// categories, as [`nab::optimise_thresholds`] would find it on them alone: down the
/// sorted rows, a row adds to the tally of every fold it trains, and each fold keeps its
/// best threshold (ties to the higher). A group of equal scores with no row of a fold's
/// training set leaves its score as it was, so it changes nothing.
fn fold_thresholds(
    sorted: &[ScoredRow],
    row_categories: &[u16],
    windows: &Windows,
    folds: usize,
) -> Vec<Vec<f64>> {
    let mut tallies = windows.tallies(folds, |k, c| c != k);
    let mut best: Vec<Vec<(f64, f64)>> = tallies
        .iter()
        .map(|fold| fold.iter().map(|tally| (1.1, tally.score())).collect())
        .collect();
    let mut at = 0;
    for group in sorted.chunk_by(|a, b| a.anomaly_score == b.anomaly_score) {
        for (row, &c) in group.iter().zip(&row_categories[at..]) {
            for (k, fold) in tallies.iter_mut().enumerate() {
                if k != usize::from(c) {
                    fold.iter_mut().for_each(|tally| tally.alarm(row));
                }
            }
        }
        at += group.len();
        let threshold = group[0].anomaly_score;
        for (fold, best) in tallies.iter().zip(&mut best) {
            for (tally, best) in fold.iter().zip(best.iter_mut()) {
                let score = tally.score();
                if score > best.1 {
                    *best = (threshold, score);
                }
            }
        }
    }
    best.into_iter()
        .map(|fold| fold.into_iter().map(|(threshold, _)| threshold).collect())
        .collect()
}

/// Each held-out category's raw score at its fold's thresholds: its rows at or above the
/// threshold alarm.
fn held_out_scores(
    sorted: &[ScoredRow],
    row_categories: &[u16],
    windows: &Windows,
    thresholds: &[Vec<f64>],
) -> Vec<Vec<f64>> {
    let mut tallies = windows.tallies(thresholds.len(), |k, c| c == k);
    for (row, &c) in sorted.iter().zip(row_categories) {
        let k = usize::from(c);
        for (tally, &threshold) in tallies[k].iter_mut().zip(&thresholds[k]) {
            if row.anomaly_score >= threshold {
                tally.alarm(row);
            }
        }
    }
    tallies
        .iter()
        .map(|fold| fold.iter().map(nab::Tally::score).collect())
        .collect()
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
    use crate::backtest::Report;
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

    /// Cross-validation as a report makes it.
    fn validate(runs: &[SeriesRun]) -> Option<Vec<CrossValidated>> {
        Report::build("test", runs, true).cross_validated
    }

    #[test]
    fn the_category_is_the_first_name_component() {
        assert_eq!(category("realTraffic/speed_6005"), "realTraffic");
        assert_eq!(category("alone"), "alone");
    }

    #[test]
    fn one_category_has_nothing_to_hold_out() {
        assert!(validate(&[file("a/1", 0.9, 0.2), file("a/2", 0.9, 0.2)]).is_none());
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
        let standard = &validate(&runs).expect("three categories")[0];
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
