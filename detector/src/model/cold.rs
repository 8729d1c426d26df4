//! Cold start: while a series is too young for the full model (its first `warmup_points`),
//! an obvious change still alarms. A value is an obvious change when it lies farther from
//! the median of the values seen so far than `deviations` scaled median absolute
//! deviations, and than `relative` times the median's own size: robust to the few odd
//! points a young series has, and conservative, so a series that merely wobbles while
//! learning stays quiet. A queue that jumps from about 25 to 221, or an error ratio from
//! 0.01 to 0.44, is one. Once the full model is warm, the channel forgets its values.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::channel::{Channel, ChannelConfig};

/// Cold-start settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColdStartConfig {
    /// Values needed before the rule may fire (0: the rule is off).
    pub min_points: usize,
    /// Scaled median absolute deviations a value must lie from the median.
    pub deviations: f64,
    /// ... and at least this multiple of the median's size.
    pub relative: f64,
}

impl Default for ColdStartConfig {
    fn default() -> Self {
        Self {
            min_points: 8,
            deviations: 10.0,
            relative: 1.0,
        }
    }
}

/// A cold-start setting out of its range.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ColdStartError {
    #[error("cold_start.{field} must be a number at least 0, got {value}")]
    Negative { field: &'static str, value: f64 },
}

impl ChannelConfig for ColdStartConfig {
    type Channel = ColdStart;
    type Error = ColdStartError;

    fn check(&self) -> Result<(), ColdStartError> {
        for (field, value) in [("deviations", self.deviations), ("relative", self.relative)] {
            if !(value >= 0.0 && value.is_finite()) {
                return Err(ColdStartError::Negative { field, value });
            }
        }
        Ok(())
    }

    fn build(&self) -> Result<ColdStart, ColdStartError> {
        self.check()?;
        Ok(ColdStart::default())
    }
}

/// The values of a young series, kept in order of size: the median is the middle one,
/// and the median absolute deviation is found by walking out from it, with no sort or
/// allocation per point.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ColdStart {
    values: Vec<f64>,
    /// Whether `values` are in order of size: snapshots of earlier versions kept them in
    /// arrival order, and are sorted once on the first point after a restore.
    #[serde(default)]
    sorted: bool,
}

/// What the cold-start rule says of a point.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ColdVerdict {
    /// The value is an obvious change.
    pub obvious: bool,
    /// The median of the values before it, and how far from it a value is obvious: the
    /// band of a series too young for the full model (`None` before `min_points`).
    pub band: Option<(f64, f64)>,
}

/// What the cold-start rule reads of a point, with its settings.
#[derive(Debug, Clone, Copy)]
pub struct ColdPoint<'a> {
    pub config: &'a ColdStartConfig,
    pub value: f64,
}

/// The median of sorted, non-empty `values`.
fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n % 2 {
        1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// The median of `|v - center|` over sorted, non-empty `values`, `center` their median:
/// the distances grow both ways out from the middle, so the smallest ones are met first
/// by merging the two walks, and the middle of them is the median.
fn median_distance(sorted: &[f64], center: f64) -> f64 {
    let n = sorted.len();
    // `left` walks down from the last value below the middle, `right` up from the middle.
    let (mut left, mut right) = (sorted.partition_point(|&v| v < center), 0);
    right += left;
    let mut next = || {
        let below = left.checked_sub(1).map(|i| center - sorted[i]);
        let above = sorted.get(right).map(|&v| v - center);
        match (below, above) {
            (Some(b), Some(a)) if b <= a => {
                left -= 1;
                b
            }
            (_, Some(a)) => {
                right += 1;
                a
            }
            (Some(b), None) => {
                left -= 1;
                b
            }
            (None, None) => 0.0,
        }
    };
    // The distances in increasing order; the median is the middle one (or two).
    let mut previous = 0.0;
    for _ in 0..n / 2 {
        previous = next();
    }
    let middle = next();
    match n % 2 {
        1 => middle,
        _ => (previous + middle) / 2.0,
    }
}

impl ColdStart {
    /// Forgets the values: the full model has taken over.
    pub fn retire(&mut self) {
        if self.values.capacity() > 0 {
            self.values = Vec::new();
        }
        self.sorted = true;
    }
}

impl Channel for ColdStart {
    type Input<'a> = ColdPoint<'a>;
    type Output = ColdVerdict;

    fn update(&mut self, point: ColdPoint<'_>) -> ColdVerdict {
        let ColdPoint { config, value } = point;
        if config.min_points == 0 || !value.is_finite() {
            return ColdVerdict::default();
        }
        if !self.sorted {
            self.values.sort_by(f64::total_cmp);
            self.sorted = true;
        }
        let band = (self.values.len() >= config.min_points).then(|| {
            let sorted = &self.values;
            let center = median(sorted);
            // 1.4826 makes the median absolute deviation a standard deviation for normal
            // data. When more than half the values are equal (a sparse series, mostly 0)
            // it is 0, and every other value would be an obvious change: the mean absolute
            // deviation stands in then (times 1.2533, its normal-data factor; Iglewicz and
            // Hoaglin's rule for robust z-scores).
            let mad = median_distance(sorted, center);
            let scale = if mad > 0.0 {
                1.4826 * mad
            } else {
                let total: f64 = sorted.iter().map(|v| (v - center).abs()).sum();
                1.2533 * total / sorted.len() as f64
            };
            let reach = (config.deviations * scale)
                .max(config.relative * center.abs())
                .max(f64::EPSILON * center.abs().max(1.0));
            (center, reach)
        });
        let at = self.values.partition_point(|&v| v < value);
        self.values.insert(at, value);
        ColdVerdict {
            obvious: band.is_some_and(|(center, reach)| (value - center).abs() > reach),
            band,
        }
    }

    fn heap_bytes(&self) -> usize {
        self.values.capacity() * std::mem::size_of::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(values: &[f64]) -> Vec<bool> {
        let config = ColdStartConfig::default();
        let mut cold = config.build().unwrap();
        values
            .iter()
            .map(|&value| {
                cold.update(ColdPoint {
                    config: &config,
                    value,
                })
                .obvious
            })
            .collect()
    }

    #[test]
    fn an_obvious_jump_alarms_after_a_few_points_and_a_wobble_does_not() {
        let queue = [25.0, 24.0, 26.0, 25.0, 27.0, 23.0, 25.0, 26.0, 221.0];
        assert_eq!(feed(&queue).iter().filter(|&&a| a).count(), 1);
        assert!(feed(&queue)[8]);
        let errors = [0.01, 0.012, 0.009, 0.01, 0.011, 0.01, 0.008, 0.01, 0.44];
        assert!(feed(&errors)[8]);
        let wobble = [25.0, 24.0, 26.0, 25.0, 27.0, 23.0, 25.0, 26.0, 31.0, 20.0];
        assert!(feed(&wobble).iter().all(|&a| !a));
        // Too few points to judge.
        assert!(feed(&[25.0, 26.0, 221.0]).iter().all(|&a| !a));
    }

    #[test]
    fn a_flat_series_needs_a_change_of_its_own_size_to_alarm() {
        let mut flat = vec![10.0; 20];
        flat.push(10.5);
        flat.push(25.0);
        let alarms = feed(&flat);
        assert!(!alarms[20], "a 5% move on a flat series is not obvious");
        assert!(alarms[21]);
        let zeros = [0.0; 12];
        assert!(feed(&zeros).iter().all(|&a| !a));
    }

    #[test]
    fn a_sparse_series_mostly_zero_alarms_on_a_burst_not_on_its_usual_blips() {
        // Zero for most hours, with blips of a few hundredths: the median and its absolute
        // deviation are 0, so the mean absolute deviation judges.
        let mut sparse: Vec<f64> = (0..60)
            .map(|i| {
                if i % 3 == 0 {
                    0.02 + 0.01 * (i % 4) as f64
                } else {
                    0.0
                }
            })
            .collect();
        sparse.extend([0.1, 0.0, 2.5]);
        let alarms = feed(&sparse);
        assert!(alarms[..61].iter().all(|&a| !a), "{alarms:?}");
        assert!(alarms[62], "a burst 100 times the blips");
    }

    proptest::proptest! {
        #[test]
        fn the_median_distance_is_the_median_of_the_distances(
            mut values in proptest::collection::vec(-1e6f64..1e6, 1..60),
            ties in 0usize..20,
        ) {
            values.extend(std::iter::repeat_n(values[0], ties));
            values.sort_by(f64::total_cmp);
            let center = median(&values);
            let mut distances: Vec<f64> = values.iter().map(|v| (v - center).abs()).collect();
            distances.sort_by(f64::total_cmp);
            proptest::prop_assert_eq!(median_distance(&values, center), median(&distances));
        }
    }

    #[test]
    fn missing_values_are_skipped_and_settings_checked() {
        assert!(feed(&[f64::NAN; 20]).iter().all(|&a| !a));
        let bad = ColdStartConfig {
            deviations: -1.0,
            ..ColdStartConfig::default()
        };
        assert!(bad
            .check()
            .unwrap_err()
            .to_string()
            .contains("cold_start.deviations"));
        let off = ColdStartConfig {
            min_points: 0,
            ..ColdStartConfig::default()
        };
        let mut cold = off.build().unwrap();
        for value in [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1000.0] {
            assert!(
                !cold
                    .update(ColdPoint {
                        config: &off,
                        value
                    })
                    .obvious
            );
        }
        cold.retire();
        assert_eq!(cold.heap_bytes(), 0);
    }
}
