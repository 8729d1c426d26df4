//! The backtest's report: NAB profile scores from our scorer, event-level precision,
//! recall and F1 at the standard profile's threshold, and detection lead times, against a
//! static-threshold rule on the same data. Written as JSON and printed as a table.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::crossval::{self, scored_windows, CrossValidated};
use super::error::BacktestError;
use super::nab::{self, probationary_length, ScoredRow, PROFILES};
use super::replay::SeriesRun;
use crate::model::Driver;
use crate::series::format_timestamp;

/// One NAB profile's outcome at its optimised threshold.
#[derive(Debug, Clone, Serialize)]
pub struct ProfileScore {
    pub profile: &'static str,
    pub threshold: f64,
    pub raw_score: f64,
    pub normalised: f64,
    pub tp_rows: usize,
    pub fp_rows: usize,
}

/// Window-level outcome of an alarm rule: a window is detected by any alarm inside it; a
/// false alarm is an alarm episode (consecutive alarming rows) starting outside windows.
#[derive(Debug, Clone, Serialize)]
pub struct EventMetrics {
    pub rule: String,
    pub windows: usize,
    pub detected: usize,
    pub false_alarms: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// From a window's start to its first alarm, over detected windows.
    pub mean_lead_minutes: Option<f64>,
    pub median_lead_minutes: Option<f64>,
}

/// How the forecast's early warnings relate to detections.
#[derive(Debug, Clone, Serialize)]
pub struct EarlyWarningMetrics {
    /// Detected windows where a warning inside the window foretold its first alarm (the
    /// alarm came within twice the warning's announced lead).
    pub warned_before_alarm: usize,
    pub detected: usize,
    /// Over those windows: minutes from the first warning to the first alarm.
    pub mean_minutes_gained: Option<f64>,
    pub median_minutes_gained: Option<f64>,
    /// Share of scored rows outside windows that carry a warning.
    pub warned_share_outside_windows: f64,
    /// Warning episodes (runs of consecutive warned rows) that start outside windows, per
    /// 10,000 scored rows outside windows: the early warnings' false-alarm rate, counted
    /// as a person sees them.
    pub episodes_outside_windows_per_10k_rows: f64,
}

/// One alarm (the onset of a run of alarming rows) at the standard profile's threshold,
/// and why it fired.
#[derive(Debug, Clone, Serialize)]
pub struct AlarmNote {
    /// The row's time, as NAB writes timestamps (`YYYY-MM-DD HH:MM:SS`).
    pub timestamp: String,
    pub score: f64,
    /// The channel or rule that drove it.
    pub driver: Option<Driver>,
    /// Inside a labelled window.
    pub in_window: bool,
}

/// What one driver's alarms did, at the standard profile's threshold.
#[derive(Debug, Clone, Serialize)]
pub struct DriverCount {
    pub driver: Option<Driver>,
    pub alarms: usize,
    /// Alarms that were the first in their window: detections.
    pub first_in_window: usize,
    /// Alarms outside every window.
    pub outside_windows: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct SeriesSummary {
    pub name: String,
    pub rows: usize,
    pub windows: usize,
    pub detected: usize,
    pub false_alarms: usize,
    pub state_bytes: usize,
    pub snapshot_bytes: usize,
    pub season_s: Option<i64>,
    pub alarms: Vec<AlarmNote>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub name: String,
    pub series: usize,
    pub points: usize,
    pub windows: usize,
    pub detect_seconds: f64,
    pub points_per_second: f64,
    pub max_state_bytes: usize,
    pub max_snapshot_bytes: usize,
    pub profiles: Vec<ProfileScore>,
    pub events: Option<EventMetrics>,
    pub static_rule: Option<EventMetrics>,
    pub early_warning: Option<EarlyWarningMetrics>,
    /// Alarms by what drove them, most alarms first.
    pub drivers: Vec<DriverCount>,
    /// Leave-one-category-out (with two categories or more).
    pub cross_validated: Option<Vec<CrossValidated>>,
    pub per_series: Vec<SeriesSummary>,
}

/// Alarm rows (after the probationary period) of one series under a rule.
struct Outcome {
    detected: usize,
    false_alarms: usize,
    leads_minutes: Vec<f64>,
}

fn judge(run: &SeriesRun, alarm: &[bool]) -> Outcome {
    let probation = probationary_length(alarm.len());
    let in_window = |i: usize| run.windows.iter().any(|&(a, b)| (a..=b).contains(&i));
    let mut outcome = Outcome {
        detected: 0,
        false_alarms: 0,
        leads_minutes: Vec::new(),
    };
    for &(first, last) in &run.windows {
        let start = first.max(probation);
        if let Some(hit) = (start..=last).find(|&i| alarm[i]) {
            outcome.detected += 1;
            let ms = run.series.timestamps_ms[hit] - run.series.timestamps_ms[first];
            outcome.leads_minutes.push(ms as f64 / 60_000.0);
        }
    }
    outcome.false_alarms = onsets(alarm).filter(|&i| !in_window(i)).count();
    outcome
}

fn metrics(rule: String, runs: &[SeriesRun], outcomes: &[Outcome]) -> EventMetrics {
    let windows: usize = runs.iter().map(scored_windows).sum();
    let detected: usize = outcomes.iter().map(|o| o.detected).sum();
    let false_alarms: usize = outcomes.iter().map(|o| o.false_alarms).sum();
    let precision = if detected + false_alarms == 0 {
        0.0
    } else {
        detected as f64 / (detected + false_alarms) as f64
    };
    let recall = if windows == 0 {
        0.0
    } else {
        detected as f64 / windows as f64
    };
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    let mut leads: Vec<f64> = outcomes
        .iter()
        .flat_map(|o| o.leads_minutes.clone())
        .collect();
    leads.sort_by(f64::total_cmp);
    EventMetrics {
        rule,
        windows,
        detected,
        false_alarms,
        precision,
        recall,
        f1,
        mean_lead_minutes: (!leads.is_empty())
            .then(|| leads.iter().sum::<f64>() / leads.len() as f64),
        median_lead_minutes: median(&leads),
    }
}

/// Where runs of alarming rows start, after the probationary period: the alarms a person
/// sees.
fn onsets(alarm: &[bool]) -> impl Iterator<Item = usize> + '_ {
    let probation = probationary_length(alarm.len());
    (probation..alarm.len()).filter(move |&i| alarm[i] && (i == probation || !alarm[i - 1]))
}

/// The alarms of one series (`alarm`, row by row), with what drove each; tallied into
/// `counts` by driver.
fn explain(run: &SeriesRun, alarm: &[bool], counts: &mut Vec<DriverCount>) -> Vec<AlarmNote> {
    let window_of = |i: usize| run.windows.iter().position(|&(a, b)| (a..=b).contains(&i));
    let mut found = vec![false; run.windows.len()];
    let mut notes = Vec::new();
    for i in onsets(alarm) {
        let driver = run.drivers.get(i).copied().flatten();
        let window = window_of(i);
        let first = window.is_some_and(|w| !std::mem::replace(&mut found[w], true));
        let count = match counts.iter_mut().find(|c| c.driver == driver) {
            Some(count) => count,
            None => {
                counts.push(DriverCount {
                    driver,
                    alarms: 0,
                    first_in_window: 0,
                    outside_windows: 0,
                });
                counts.last_mut().expect("just pushed")
            }
        };
        count.alarms += 1;
        count.first_in_window += usize::from(first);
        count.outside_windows += usize::from(window.is_none());
        notes.push(AlarmNote {
            timestamp: run
                .series
                .timestamps_ms
                .get(i)
                .map_or_else(String::new, |&t| format_timestamp(t)),
            score: run.scores[i],
            driver,
            in_window: window.is_some(),
        });
    }
    notes
}

/// The median of sorted values: the middle one, or the mean of the two middle ones.
fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some(0.5 * (sorted[n / 2 - 1] + sorted[n / 2])),
    }
}

/// A static rule for comparison: alarm outside mean ± 3 standard deviations of the
/// probationary rows (what a hand-set threshold learnt from the same history would do).
fn static_rule_alarms(run: &SeriesRun) -> Vec<bool> {
    let values = &run.series.values;
    let probation = probationary_length(values.len()).max(2).min(values.len());
    let head = &values[..probation];
    let mean = head.iter().sum::<f64>() / head.len().max(1) as f64;
    let deviation =
        (head.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / head.len().max(1) as f64).sqrt();
    values
        .iter()
        .map(|v| (v - mean).abs() > 3.0 * deviation.max(f64::EPSILON))
        .collect()
}

fn early_warning_metrics(runs: &[SeriesRun], threshold: f64) -> EarlyWarningMetrics {
    let mut warned_before_alarm = 0;
    let mut detected = 0;
    let mut gained = Vec::new();
    let (mut outside, mut warned_outside, mut episodes) = (0usize, 0usize, 0usize);
    for run in runs {
        let probation = probationary_length(run.scores.len());
        let mut in_window = vec![false; run.scores.len()];
        for &(first, last) in &run.windows {
            in_window[first..=last].iter_mut().for_each(|w| *w = true);
        }
        let mut warned_before = false;
        for (inside, warning) in in_window.iter().zip(&run.warnings).skip(probation) {
            if !inside {
                outside += 1;
                warned_outside += usize::from(warning.is_some());
                episodes += usize::from(warning.is_some() && !warned_before);
            }
            warned_before = warning.is_some();
        }
        for &(first, last) in &run.windows {
            let start = first.max(probation);
            let Some(hit) = (start..=last).find(|&i| run.scores[i] >= threshold) else {
                continue;
            };
            detected += 1;
            // A warning counts if the alarm came about when it said (within twice its
            // announced lead), not merely somewhere later in a long window.
            let foretold =
                |i: usize| run.warnings[i].is_some_and(|steps| hit <= i + 2 * steps as usize);
            if let Some(warned) = (start..hit).find(|&i| foretold(i)) {
                warned_before_alarm += 1;
                let ms = run.series.timestamps_ms[hit] - run.series.timestamps_ms[warned];
                gained.push(ms as f64 / 60_000.0);
            }
        }
    }
    gained.sort_by(f64::total_cmp);
    EarlyWarningMetrics {
        warned_before_alarm,
        detected,
        mean_minutes_gained: (!gained.is_empty())
            .then(|| gained.iter().sum::<f64>() / gained.len() as f64),
        median_minutes_gained: (!gained.is_empty()).then(|| {
            let n = gained.len();
            (gained[(n - 1) / 2] + gained[n / 2]) / 2.0
        }),
        warned_share_outside_windows: warned_outside as f64 / outside.max(1) as f64,
        episodes_outside_windows_per_10k_rows: 10_000.0 * episodes as f64 / outside.max(1) as f64,
    }
}

impl Report {
    /// Scores the runs. Without labels only throughput and state sizes are reported.
    pub fn build(name: &str, runs: &[SeriesRun], labelled: bool) -> Self {
        let points: usize = runs.iter().map(|r| r.scores.len()).sum();
        let detect_seconds: f64 = runs.iter().map(|r| r.detect_time.as_secs_f64()).sum();
        // Normalised by the windows the scorer sees: one wholly inside a probationary
        // period is neither found nor missed (else a detector that never alarms would
        // score above 0).
        let windows: usize = runs.iter().map(scored_windows).sum();
        let mut report = Self {
            name: name.to_owned(),
            series: runs.len(),
            points,
            windows,
            detect_seconds,
            points_per_second: if detect_seconds > 0.0 {
                points as f64 / detect_seconds
            } else {
                0.0
            },
            max_state_bytes: runs.iter().map(|r| r.state_bytes).max().unwrap_or(0),
            max_snapshot_bytes: runs.iter().map(|r| r.snapshot_bytes).max().unwrap_or(0),
            profiles: Vec::new(),
            events: None,
            static_rule: None,
            early_warning: None,
            drivers: Vec::new(),
            cross_validated: None,
            per_series: Vec::new(),
        };
        if !labelled {
            return report;
        }
        // Rows are weighed once for every profile, and one sweep down their scores finds
        // each profile's best threshold.
        let mut rows: Vec<ScoredRow> = Vec::with_capacity(points);
        let mut first_window = 0;
        for run in runs {
            nab::weigh_rows_into(&mut rows, &run.scores, &run.windows, first_window);
            first_window += run.windows.len() as u32;
        }
        let best = nab::optimise_thresholds(&mut rows, &PROFILES);
        report.cross_validated = crossval::cross_validate(runs, &rows);
        drop(rows);
        for (profile, best) in PROFILES.iter().zip(best) {
            report.profiles.push(ProfileScore {
                profile: profile.name,
                threshold: best.threshold,
                raw_score: best.score,
                normalised: nab::normalised_score(best.score, windows, profile),
                tp_rows: best.tp,
                fp_rows: best.fp,
            });
        }
        let threshold = report.profiles[0].threshold;
        let alarms: Vec<Vec<bool>> = runs
            .iter()
            .map(|run| run.scores.iter().map(|&s| s >= threshold).collect())
            .collect();
        let ours: Vec<Outcome> = runs
            .iter()
            .zip(&alarms)
            .map(|(run, alarm)| judge(run, alarm))
            .collect();
        let static_outcomes: Vec<Outcome> = runs
            .iter()
            .map(|run| judge(run, &static_rule_alarms(run)))
            .collect();
        let mut counts: Vec<DriverCount> = Vec::new();
        report.per_series = runs
            .iter()
            .zip(&ours)
            .zip(&alarms)
            .map(|((run, outcome), alarm)| SeriesSummary {
                name: run.series.name.clone(),
                rows: run.scores.len(),
                windows: scored_windows(run),
                detected: outcome.detected,
                false_alarms: outcome.false_alarms,
                state_bytes: run.state_bytes,
                snapshot_bytes: run.snapshot_bytes,
                season_s: run.season_s,
                alarms: explain(run, alarm, &mut counts),
            })
            .collect();
        counts.sort_by(|a, b| b.alarms.cmp(&a.alarms).then(a.driver.cmp(&b.driver)));
        report.drivers = counts;
        report.events = Some(metrics(
            format!("anomaly_score >= {threshold}"),
            runs,
            &ours,
        ));
        report.static_rule = Some(metrics(
            "value outside mean ± 3σ of the probationary rows".to_owned(),
            runs,
            &static_outcomes,
        ));
        report.early_warning = Some(early_warning_metrics(runs, threshold));
        report
    }

    pub fn write(&self, path: &Path) -> Result<(), BacktestError> {
        let write_error = |source| BacktestError::Write {
            path: path.to_owned(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write_error)?;
        }
        let json = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(path, json).map_err(write_error)
    }

    /// The summary table printed at the end of a run.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} series, {} points, {} windows; detection {:.3} s, {:.0} points/s, state ≤ {} B (snapshot ≤ {} B)",
            self.name,
            self.series,
            self.points,
            self.windows,
            self.detect_seconds,
            self.points_per_second,
            self.max_state_bytes,
            self.max_snapshot_bytes
        );
        if !self.profiles.is_empty() {
            let _ = writeln!(
                out,
                "{:<20} {:>10} {:>10} {:>10}",
                "profile", "threshold", "raw", "normalised"
            );
            for p in &self.profiles {
                let _ = writeln!(
                    out,
                    "{:<20} {:>10.6} {:>10.3} {:>10.1}",
                    p.profile, p.threshold, p.raw_score, p.normalised
                );
            }
        }
        if let Some(cross_validated) = &self.cross_validated {
            let _ = writeln!(
                out,
                "cross-validated (each category at the threshold best on the others):"
            );
            let _ = writeln!(
                out,
                "{:<20} {:>10} {:>10} {:>10}",
                "profile", "normalised", "mean fold", "worst fold"
            );
            let figure = |f: Option<f64>| f.map_or("-".to_owned(), |f| format!("{f:.1}"));
            for c in cross_validated {
                let _ = writeln!(
                    out,
                    "{:<20} {:>10.1} {:>10} {:>10}",
                    c.profile,
                    c.normalised,
                    figure(c.mean_fold),
                    figure(c.worst_fold)
                );
            }
            let _ = writeln!(out, "standard profile by held-out category:");
            for f in &cross_validated[0].folds {
                let _ = writeln!(
                    out,
                    "  {:<44} {:>3} series {:>4} windows  threshold {:.6}  raw {:>9.3}  normalised {:>6}",
                    f.category,
                    f.series,
                    f.windows,
                    f.threshold,
                    f.raw_score,
                    figure(f.normalised)
                );
            }
        }
        if !self.drivers.is_empty() {
            let _ = write!(out, "alarms by driver:");
            for (k, c) in self.drivers.iter().enumerate() {
                let _ = write!(
                    out,
                    "{} {} {} ({} first in a window, {} outside)",
                    if k == 0 { "" } else { ";" },
                    c.driver.map_or("none", Driver::as_str),
                    c.alarms,
                    c.first_in_window,
                    c.outside_windows
                );
            }
            let _ = writeln!(out);
        }
        for m in self.events.iter().chain(&self.static_rule) {
            let _ = writeln!(
                out,
                "{}: detected {}/{} windows, {} false alarms, precision {:.2} recall {:.2} F1 {:.2}, median lead {} min",
                m.rule,
                m.detected,
                m.windows,
                m.false_alarms,
                m.precision,
                m.recall,
                m.f1,
                m.median_lead_minutes.map_or("-".to_owned(), |l| format!("{l:.0}"))
            );
        }
        if let Some(w) = &self.early_warning {
            let _ = writeln!(
                out,
                "early warning: raised before the first alarm in {}/{} detected windows, median {} min ahead (mean {}); outside windows {:.1} episodes per 10,000 rows, on {:.1}% of rows",
                w.warned_before_alarm,
                w.detected,
                w.median_minutes_gained.map_or("-".to_owned(), |l| format!("{l:.0}")),
                w.mean_minutes_gained.map_or("-".to_owned(), |l| format!("{l:.0}")),
                w.episodes_outside_windows_per_10k_rows,
                100.0 * w.warned_share_outside_windows
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[5.0]), Some(5.0));
        assert_eq!(median(&[1.0, 2.0, 10.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 4.0, 10.0]), Some(3.0));
    }
}
