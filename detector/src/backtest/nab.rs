//! NAB's scorer: probationary period, sigmoid-weighted windows, three cost profiles,
//! threshold optimisation over all files pooled, and normalisation between the null and
//! the perfect detector. Rules as in `shared/nab/README.md`; tests reproduce the
//! official scorer's per-file figures for two published detectors.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use thiserror::Error;

use crate::series::{format_timestamp, parse_timestamp};

/// Errors from reading NAB label files.
#[derive(Debug, Error)]
pub enum LabelsError {
    #[error("cannot read labels {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("labels {path}: {reason}")]
    Format { path: String, reason: String },
}

/// One of NAB's cost profiles.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CostProfile {
    pub name: &'static str,
    pub tp_weight: f64,
    pub fp_weight: f64,
    pub fn_weight: f64,
}

/// NAB's three profiles (`profiles.json`), in its order.
pub const PROFILES: [CostProfile; 3] = [
    CostProfile {
        name: "standard",
        tp_weight: 1.0,
        fp_weight: 0.11,
        fn_weight: 1.0,
    },
    CostProfile {
        name: "reward_low_FP_rate",
        tp_weight: 1.0,
        fp_weight: 0.22,
        fn_weight: 1.0,
    },
    CostProfile {
        name: "reward_low_FN_rate",
        tp_weight: 1.0,
        fp_weight: 0.11,
        fn_weight: 2.0,
    },
];

/// Anomaly windows per file, keyed as in `combined_windows.json`
/// (`<category>/<file>.csv`), each `(start_ms, end_ms)` inclusive.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Windows(pub BTreeMap<String, Vec<(i64, i64)>>);

impl Windows {
    /// Parses NAB's `combined_windows.json`.
    pub fn parse(text: &str, path: &str) -> Result<Self, LabelsError> {
        let format = |reason: String| LabelsError::Format {
            path: path.to_owned(),
            reason,
        };
        let Entries(raw) = serde_json::from_str(text).map_err(|e| format(e.to_string()))?;
        let mut windows = BTreeMap::new();
        for (file, pairs) in raw {
            if windows.contains_key(&file) {
                // JSON readers keep one of the two silently; which windows were meant?
                return Err(format(format!("{file} appears twice")));
            }
            let mut parsed = Vec::with_capacity(pairs.len());
            for (start, end) in pairs {
                let start = parse_timestamp(&start).map_err(|e| format(format!("{file}: {e}")))?;
                let end = parse_timestamp(&end).map_err(|e| format(format!("{file}: {e}")))?;
                if end < start {
                    return Err(format(format!(
                        "{file}: window [{}, {}] ends before it starts",
                        format_timestamp(start),
                        format_timestamp(end)
                    )));
                }
                parsed.push((start, end));
            }
            parsed.sort_unstable();
            // NAB's scorer refuses them too: a window opening inside another is never
            // entered, and every later window of the file with it.
            if let Some(pair) = parsed.windows(2).find(|pair| pair[1].0 <= pair[0].1) {
                let show = |(start, end): (i64, i64)| {
                    format!("[{}, {}]", format_timestamp(start), format_timestamp(end))
                };
                return Err(format(format!(
                    "{file}: windows {} and {} overlap",
                    show(pair[0]),
                    show(pair[1])
                )));
            }
            windows.insert(file, parsed);
        }
        Ok(Self(windows))
    }

    pub fn read(path: &Path) -> Result<Self, LabelsError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LabelsError::Io {
            path: display.clone(),
            source,
        })?;
        Self::parse(&text, &display)
    }

    /// Whether a key names the series of a file named `name` (as [`HistoryFiles`] names
    /// them): the file's own series (with or without `.csv`), or one of those a
    /// `query_range` or exposition file holds (`<name>/<selector>`).
    ///
    /// [`HistoryFiles`]: crate::ingest::HistoryFiles
    pub fn names_file(&self, name: &str) -> bool {
        let within = format!("{name}/");
        self.0.contains_key(name)
            || self.0.contains_key(&format!("{name}.csv"))
            || self
                .0
                .range(within.clone()..)
                .next()
                .is_some_and(|(key, _)| key.starts_with(&within))
    }

    /// The windows of a series named `<category>/<file>` (with or without `.csv`).
    pub fn for_series(&self, name: &str) -> &[(i64, i64)] {
        self.0
            .get(name)
            .or_else(|| self.0.get(&format!("{name}.csv")))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }
}

/// A labels file's entries in file order, repeated keys included.
struct Entries(Vec<(String, Vec<(String, String)>)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> Visitor<'de> for Visit {
            type Value = Entries;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of file names to lists of [start, end] pairs")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

/// Rows at the start of a file that are not scored: `min(floor(0.15 n), 750)`.
pub fn probationary_length(rows: usize) -> usize {
    (rows * 15 / 100).min(750)
}

/// Maps time windows (sorted, apart) onto row ranges `[first, last]`, walking the rows in
/// file order as NAB's scorer does: a window opens at the first row whose timestamp lies
/// in it and closes at the first row after that past its end; windows are met in time
/// order, and one that has closed, or that a later row has passed, does not open again.
/// Real files are not always in time order (NAB's machine_temperature repeats an hour):
/// a row that goes back in time stays in the window that is open, and opens none that is
/// behind. Windows holding no row are dropped.
pub fn window_rows(timestamps_ms: &[i64], windows: &[(i64, i64)]) -> Vec<(usize, usize)> {
    let mut rows = Vec::with_capacity(windows.len());
    let mut next = 0; // the next window that may open
    let mut open: Option<usize> = None; // the first row of the window `next - 1`
    for (row, &t) in timestamps_ms.iter().enumerate() {
        if let Some(first) = open {
            if t <= windows[next - 1].1 {
                continue;
            }
            rows.push((first, row - 1));
            open = None;
        }
        while next < windows.len() && windows[next].1 < t {
            next += 1; // passed before any of its rows came
        }
        if next < windows.len() && windows[next].0 <= t {
            open = Some(row);
            next += 1;
        }
    }
    if let Some(first) = open {
        rows.push((first, timestamps_ms.len() - 1));
    }
    rows
}

/// `2 sigmoid(-5 x) - 1`, and `-1` from `x >= 3` on (far past a window).
fn scaled_sigmoid(relative_position: f64) -> f64 {
    if relative_position >= 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * relative_position).exp()) - 1.0
    }
}

/// A scored row (after the probationary period): its anomaly score, where it lies, and
/// the window it lies in (a global id when files are pooled). Rows are weighed once for
/// every profile: a profile's weights only scale [`position`](Self::position).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoredRow {
    pub anomaly_score: f64,
    /// The scaled sigmoid of the row's position: in a window, relative to its end (the
    /// earliest row is worth the most); outside, relative to the end of the previous
    /// window (negative, `-1` far from any).
    pub position: f64,
    /// The window's id, [`NO_WINDOW`] outside any (see [`window`](Self::window)). 32 bits,
    /// with `order` beside it, keep a row at 24 bytes; more windows than that would take a
    /// labels file of hundreds of gigabytes.
    window: u32,
    /// Where the row stood before [`optimise_thresholds`] sorted it, so that equal scores
    /// keep their order.
    order: u32,
}

/// [`ScoredRow`]'s window id for a row outside every window.
const NO_WINDOW: u32 = u32::MAX;

impl ScoredRow {
    /// The window the row lies in, if any.
    pub fn window(&self) -> Option<u32> {
        (self.window != NO_WINDOW).then_some(self.window)
    }

    /// Where the row stood in the rows given to [`optimise_thresholds`], once it has
    /// sorted them (0 before).
    pub fn pooled_index(&self) -> usize {
        self.order as usize
    }
}

const _: () = assert!(std::mem::size_of::<ScoredRow>() == 24);

/// Weighs every scored row of one file. `windows` are row ranges in time order; the
/// window ids given to rows are `first_window_id + k`.
pub fn weigh_rows(
    anomaly_scores: &[f64],
    windows: &[(usize, usize)],
    first_window_id: u32,
) -> Vec<ScoredRow> {
    let mut rows = Vec::new();
    weigh_rows_into(&mut rows, anomaly_scores, windows, first_window_id);
    rows
}

/// [`weigh_rows`], appending to `rows` (one vector can then hold every file's rows).
pub fn weigh_rows_into(
    rows: &mut Vec<ScoredRow>,
    anomaly_scores: &[f64],
    windows: &[(usize, usize)],
    first_window_id: u32,
) {
    let probation = probationary_length(anomaly_scores.len());
    rows.reserve(anomaly_scores.len().saturating_sub(probation));
    let mut next_window = 0;
    let mut current: Option<(u32, usize, usize)> = None; // (id, first, last)
    let mut previous: Option<(usize, usize)> = None; // (last row, width)
    for (i, &anomaly_score) in anomaly_scores.iter().enumerate() {
        if current.is_none() {
            if let Some(&(first, last)) = windows.get(next_window) {
                if first == i {
                    current = Some((first_window_id + next_window as u32, first, last));
                    next_window += 1;
                }
            }
        }
        if i >= probation {
            let (position, window) = match current {
                Some((id, first, last)) => {
                    let width = (last - first + 1) as f64;
                    (-((last as f64) - (i as f64) + 1.0) / width, Some(id))
                }
                None => {
                    let position = match previous {
                        None => 3.0,
                        Some((_, width)) if width <= 1 => 3.0,
                        Some((last, width)) => (i - last) as f64 / (width - 1) as f64,
                    };
                    (position, None)
                }
            };
            rows.push(ScoredRow {
                anomaly_score,
                position: scaled_sigmoid(position),
                window: window.unwrap_or(NO_WINDOW),
                order: 0,
            });
        }
        if let Some((_, first, last)) = current {
            if i == last {
                previous = Some((last, last - first + 1));
                current = None;
            }
        }
    }
}

/// The outcome at one threshold: raw score and row counts (rows in a window are
/// positives; alarms are rows scoring at or above the threshold).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThresholdScore {
    pub threshold: f64,
    pub score: f64,
    pub tp: usize,
    pub tn: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
}

/// Sums, for one profile, the outcome of every window (its earliest alarm, else
/// `-fn_weight`) and of every alarm outside windows.
pub(super) struct Tally {
    profile: CostProfile,
    /// The earliest row of a window's position, which is worth `tp_weight`.
    max_tp: f64,
    /// By window id: the best alarm value so far (`-fn_weight` while missed).
    window_best: Vec<f64>,
    window_sum: f64,
    false_alarm_sum: f64,
}

impl Tally {
    /// Before any alarm: every window of `windows` (present, by id) missed.
    pub(super) fn new(windows: &[bool], profile: &CostProfile) -> Self {
        let count = windows.iter().filter(|&&present| present).count();
        Self {
            profile: *profile,
            max_tp: scaled_sigmoid(-1.0),
            window_sum: -profile.fn_weight * count as f64,
            window_best: vec![-profile.fn_weight; windows.len()],
            false_alarm_sum: 0.0,
        }
    }

    pub(super) fn alarm(&mut self, row: &ScoredRow) {
        match row.window() {
            Some(id) => {
                let value = row.position * self.profile.tp_weight / self.max_tp;
                let best = &mut self.window_best[id as usize];
                if value > *best {
                    self.window_sum += value - *best;
                    *best = value;
                }
            }
            None => self.false_alarm_sum += row.position * self.profile.fp_weight,
        }
    }

    pub(super) fn score(&self) -> f64 {
        self.window_sum + self.false_alarm_sum
    }
}

/// Which window ids have a scored row (windows in a probationary period have none).
pub(super) fn windows_present(rows: &[ScoredRow]) -> Vec<bool> {
    let ids = rows
        .iter()
        .filter_map(ScoredRow::window)
        .max()
        .map_or(0, |id| id as usize + 1);
    let mut present = vec![false; ids];
    for id in rows.iter().filter_map(ScoredRow::window) {
        present[id as usize] = true;
    }
    present
}

/// Scores rows at a fixed threshold (alarm when `anomaly_score >= threshold`).
pub fn score_at_threshold(
    rows: &[ScoredRow],
    threshold: f64,
    profile: &CostProfile,
) -> ThresholdScore {
    let mut tally = Tally::new(&windows_present(rows), profile);
    let (mut tp, mut tn, mut fp, mut fn_) = (0, 0, 0, 0);
    for row in rows {
        let alarm = row.anomaly_score >= threshold;
        match (alarm, row.window().is_some()) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, true) => fn_ += 1,
            (false, false) => tn += 1,
        }
        if alarm {
            tally.alarm(row);
        }
    }
    ThresholdScore {
        threshold,
        score: tally.score(),
        tp,
        tn,
        fp,
        fn_,
    }
}

/// Tries every distinct anomaly score as the threshold (and 1.1, no alarm at all) and
/// returns the best outcome; ties go to the highest threshold.
pub fn optimise_threshold(rows: &[ScoredRow], profile: &CostProfile) -> ThresholdScore {
    optimise_thresholds(&mut rows.to_vec(), std::slice::from_ref(profile))[0]
}

/// [`optimise_threshold`] for several profiles in one sweep: `rows` are sorted by
/// decreasing anomaly score in place (no copy of a pooled run's rows is made), then each
/// threshold's alarms are added to every profile's tally at once.
pub fn optimise_thresholds(
    rows: &mut [ScoredRow],
    profiles: &[CostProfile],
) -> Vec<ThresholdScore> {
    let present = windows_present(rows);
    let positives = rows.iter().filter(|r| r.window().is_some()).count();
    let total = rows.len();
    let outcome = |threshold: f64, score: f64, tp: usize, fp: usize| ThresholdScore {
        threshold,
        score,
        tp,
        tn: total - positives - fp,
        fp,
        fn_: positives - tp,
    };
    // Equal scores keep the order they were given in, as in NAB's stable sort: they are
    // summed in pooled file order, so sums (and ties between thresholds) round as the
    // official scorer's do. An unstable sort on (score, order) is that order, without a
    // stable sort's buffer.
    for (order, row) in rows.iter_mut().enumerate() {
        row.order = u32::try_from(order).unwrap_or(u32::MAX);
    }
    rows.sort_unstable_by(|a, b| {
        b.anomaly_score
            .total_cmp(&a.anomaly_score)
            .then(a.order.cmp(&b.order))
    });
    let mut tallies: Vec<Tally> = profiles.iter().map(|p| Tally::new(&present, p)).collect();
    let mut best: Vec<ThresholdScore> = tallies
        .iter()
        .map(|tally| outcome(1.1, tally.score(), 0, 0))
        .collect();
    let (mut tp, mut fp) = (0, 0);
    for group in rows.chunk_by(|a, b| a.anomaly_score == b.anomaly_score) {
        for row in group {
            if row.window().is_some() {
                tp += 1;
            } else {
                fp += 1;
            }
            for tally in &mut tallies {
                tally.alarm(row);
            }
        }
        let threshold = group[0].anomaly_score;
        for (tally, best) in tallies.iter().zip(&mut best) {
            let score = tally.score();
            if score > best.score {
                *best = outcome(threshold, score, tp, fp);
            }
        }
    }
    best
}

/// `100 (S - S_null) / (S_perfect - S_null)` for `windows` labelled windows.
pub fn normalised_score(raw: f64, windows: usize, profile: &CostProfile) -> f64 {
    let null = -profile.fn_weight * windows as f64;
    let perfect = profile.tp_weight * windows as f64;
    if perfect == null {
        return 0.0;
    }
    100.0 * (raw - null) / (perfect - null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STANDARD: CostProfile = PROFILES[0];

    #[test]
    fn overlapping_windows_are_refused() {
        let text = r#"{"a/b.csv": [["2014-01-01 00:00:00", "2014-01-01 02:00:00"],
                                   ["2014-01-01 01:00:00", "2014-01-01 03:00:00"]]}"#;
        let error = Windows::parse(text, "labels.json").unwrap_err().to_string();
        assert!(error.contains("a/b.csv: windows [2014-01-01 00:00:00, 2014-01-01 02:00:00] and [2014-01-01 01:00:00, 2014-01-01 03:00:00] overlap"), "{error}");
        let apart = r#"{"a/b.csv": [["2014-01-01 00:00:00", "2014-01-01 01:00:00"],
                                    ["2014-01-01 02:00:00", "2014-01-01 03:00:00"]]}"#;
        assert!(Windows::parse(apart, "labels.json").is_ok());
    }

    #[test]
    fn a_file_named_twice_is_refused() {
        let text =
            r#"{"a/b.csv": [["2014-01-01 00:00:00", "2014-01-01 01:00:00"]], "a/b.csv": []}"#;
        let error = Windows::parse(text, "labels.json").unwrap_err().to_string();
        assert_eq!(error, "labels labels.json: a/b.csv appears twice");
        let error = Windows::parse("[]", "labels.json").unwrap_err().to_string();
        assert!(error.contains("an object of file names"), "{error}");
    }

    #[test]
    fn a_window_that_ends_before_it_starts_is_refused() {
        let text = r#"{"a/b.csv": [["2014-01-01 02:00:00", "2014-01-01 01:00:00"]]}"#;
        let error = Windows::parse(text, "labels.json").unwrap_err().to_string();
        assert_eq!(
            error,
            "labels labels.json: a/b.csv: window [2014-01-01 02:00:00, 2014-01-01 01:00:00] ends before it starts"
        );
        // One instant is a window.
        let instant = r#"{"a/b.csv": [["2014-01-01 01:00:00", "2014-01-01 01:00:00"]]}"#;
        assert!(Windows::parse(instant, "labels.json").is_ok());
    }

    #[test]
    fn a_key_names_a_file_by_its_series_or_their_prefix() {
        let text = r#"{"cat/a.csv": [], "cat/b": [], "q/up{job=\"x\"}": []}"#;
        let windows = Windows::parse(text, "labels.json").unwrap();
        assert!(windows.names_file("cat/a"));
        assert!(windows.names_file("cat/b"));
        assert!(windows.names_file("q"));
        // Only whole path components.
        assert!(!windows.names_file("ca"));
        assert!(!windows.names_file("cat/a.c"));
        assert!(!windows.names_file("cat/a.csv/x"));
        assert!(!windows.names_file("other/a"));
    }

    #[test]
    fn windows_map_to_the_rows_inside_them_in_file_order() {
        let windows = [(10, 20), (40, 50), (70, 80)];
        // Sorted: the first row at or after each start, the last at or before each end.
        assert_eq!(
            window_rows(&[0, 10, 15, 20, 30, 40, 45, 60], &windows),
            [(1, 3), (5, 6)]
        );
        // Time goes back inside a window: those rows stay in it.
        assert_eq!(
            window_rows(&[5, 6, 7, 10, 12, 6, 7, 15, 21, 45], &windows),
            [(3, 7), (9, 9)]
        );
        // A late row with an old timestamp reopens nothing.
        let mut late: Vec<i64> = (0..100).collect();
        late.push(15);
        assert_eq!(window_rows(&late, &windows), [(10, 20), (40, 50), (70, 80)]);
        // A window passed before any of its rows came is dropped.
        assert_eq!(
            window_rows(&[0, 15, 60, 45, 75], &windows),
            [(1, 1), (4, 4)]
        );
    }

    #[test]
    fn probation_is_fifteen_percent_capped_at_750() {
        assert_eq!(probationary_length(100), 15);
        assert_eq!(probationary_length(4032), 604);
        assert_eq!(probationary_length(22_695), 750);
    }

    #[test]
    fn earliest_alarm_in_a_window_is_worth_the_tp_weight() {
        let mut scores = vec![0.0; 200];
        scores[100] = 1.0;
        let rows = weigh_rows(&scores, &[(100, 119)], 0);
        let outcome = score_at_threshold(&rows, 0.5, &STANDARD);
        // Left edge: position -1 scaled to exactly tp_weight... within rounding.
        let expected = scaled_sigmoid(-1.0) / scaled_sigmoid(-1.0);
        assert!((outcome.score - expected).abs() < 1e-12);
        assert_eq!((outcome.tp, outcome.fp, outcome.fn_), (1, 0, 19));
    }

    #[test]
    fn missed_window_and_early_false_alarm_cost() {
        let mut scores = vec![0.0; 200];
        scores[50] = 1.0;
        let rows = weigh_rows(&scores, &[(100, 119)], 0);
        let outcome = score_at_threshold(&rows, 0.5, &STANDARD);
        assert!((outcome.score - (-1.0 - 0.11)).abs() < 1e-12);
    }

    #[test]
    fn window_in_probation_is_not_counted() {
        let scores = vec![0.0; 200];
        let rows = weigh_rows(&scores, &[(2, 5)], 0);
        assert_eq!(score_at_threshold(&rows, 0.5, &STANDARD).score, 0.0);
    }

    proptest! {
        #[test]
        fn optimum_matches_the_best_fixed_threshold(
            scores in proptest::collection::vec(0u8..6, 40..120),
            start in 20usize..30,
            width in 1usize..10,
        ) {
            let scores: Vec<f64> = scores.into_iter().map(|s| f64::from(s) / 5.0).collect();
            let rows = weigh_rows(&scores, &[(start, start + width)], 0);
            let best = optimise_threshold(&rows, &STANDARD);
            let mut candidates: Vec<f64> = scores.clone();
            candidates.push(1.1);
            for threshold in candidates {
                let fixed = score_at_threshold(&rows, threshold, &STANDARD);
                prop_assert!(fixed.score <= best.score + 1e-12);
            }
            let again = score_at_threshold(&rows, best.threshold, &STANDARD);
            prop_assert!((again.score - best.score).abs() < 1e-9);
            prop_assert_eq!((again.tp, again.fp, again.tn, again.fn_), (best.tp, best.fp, best.tn, best.fn_));
        }
    }
}
