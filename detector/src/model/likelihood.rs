//! Anomaly likelihood: normalises a raw score against the series' own recent history.
//!
//! The short-window mean of raw scores is compared with the distribution (mean and
//! standard deviation) of that same short mean over a long window; the Gaussian tail
//! probability says how unusual it is. A slow reference (exponentially weighted mean and
//! variance of the short mean over thousands of points) is consulted too and the smaller
//! likelihood wins, so what recurs beyond the long window's reach (a daily job) is learnt
//! as normal. A burst no bigger than one the series had lately (the record of the short
//! mean, which forgets over `record_horizon` points) is held below the alarm: a series
//! that bursts now and then (tweets, a batch job) alarms on a burst it has not had, not on
//! every one. The result is log-scaled into [0, 1] so that very
//! unlikely values spread out near 1 and one threshold works across very different series.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::channel::{Channel, ChannelConfig};

/// Errors from checking a likelihood configuration.
#[derive(Debug, Error, PartialEq)]
pub enum LikelihoodError {
    #[error("likelihood.min_deviation must be a positive number, got {0}")]
    MinDeviation(f64),
    #[error("likelihood.min_history ({min_history}) must not exceed likelihood.long_window ({long_window}): the likelihood would never score")]
    HistoryBeyondWindow {
        min_history: usize,
        long_window: usize,
    },
}

/// Likelihood hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LikelihoodConfig {
    /// Points in the short mean of raw scores.
    pub short_window: usize,
    /// Points in the long window whose distribution the short mean is compared with.
    pub long_window: usize,
    /// No likelihood (score 0) before this many points.
    pub min_history: usize,
    /// Floor of the long window's (and the slow reference's) standard deviation, in raw
    /// surprise: on a quiet stretch a burst must rise this far per deviation, so a small
    /// wobble of a calm series does not read as many deviations. 0.04 is about half a
    /// scale of baseline residual (on NAB it cut false alarms most in realTweets; 0.01 to
    /// 0.05 are measured in docs/experiments.md).
    pub min_deviation: f64,
    /// Horizon, in points, of a slow reference: the exponentially weighted mean and
    /// variance of the short mean over many more points than the long window holds. The
    /// likelihood is the smaller of the two, so what recurs now and then (a daily batch
    /// job, a burst of tweets) stops alarming once the slow reference has seen it a few
    /// times, at no memory cost. 0: off.
    pub slow_horizon: usize,
    /// Horizon, in points, of the record: the largest short mean lately, which decays
    /// towards the current one with this time constant. While the short mean is at or
    /// below the record, the deviation is capped at [`RECORD_CAP`] (a likelihood below
    /// the default alarm level): a burst no bigger than a recent one is not news. The
    /// default is three days at a point a minute (15 at five); on NAB it cut false alarms
    /// in realTweets from 47 to 36, and horizons from 6,000 points began to hide a second
    /// incident (docs/experiments.md has the sweep). 0: off.
    pub record_horizon: usize,
}

/// Deviations allowed at or below the record: a likelihood of 0.45 (the default alarm
/// level, 0.5, is 4.26 deviations).
pub const RECORD_CAP: f64 = 4.0;

impl Default for LikelihoodConfig {
    fn default() -> Self {
        Self {
            short_window: 10,
            long_window: 500,
            min_history: 200,
            min_deviation: 0.04,
            slow_horizon: 8640,
            record_horizon: 4320,
        }
    }
}

/// Complementary error function (Numerical Recipes' Chebyshev fit, |error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let polynomial = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let value = t * polynomial.exp();
    if x >= 0.0 {
        value
    } else {
        2.0 - value
    }
}

/// Probability that a standard normal exceeds `x`.
pub fn normal_tail(x: f64) -> f64 {
    0.5 * erfc(x / std::f64::consts::SQRT_2)
}

/// Maps a likelihood in [0, 1] to [0, 1] on a log scale (1 - 1e-10 and above → 1).
pub fn log_scale(likelihood: f64) -> f64 {
    ((1.000_000_000_1 - likelihood).ln() / (1e-10f64).ln()).clamp(0.0, 1.0)
}

/// The log-scaled likelihood of a mean `deviations` standard deviations above its
/// reference.
pub fn likelihood_of_deviation(deviations: f64) -> f64 {
    log_scale(1.0 - normal_tail(deviations))
}

/// The running likelihood of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyLikelihood {
    config: LikelihoodConfig,
    short: VecDeque<f32>,
    short_sum: f64,
    long: VecDeque<f32>,
    long_sum: f64,
    long_sum_squares: f64,
    updates_since_resum: usize,
    /// The slow reference: exponentially weighted mean and variance of the short mean,
    /// and how many short means it has seen.
    #[serde(default)]
    slow_mean: f64,
    #[serde(default)]
    slow_variance: f64,
    #[serde(default)]
    slow_seen: u64,
    /// The largest short mean lately (see [`LikelihoodConfig::record_horizon`]).
    #[serde(default)]
    record: f64,
}

impl Default for AnomalyLikelihood {
    fn default() -> Self {
        Self::from_checked(LikelihoodConfig::default())
    }
}

impl AnomalyLikelihood {
    /// Takes `config` (checked) in place of the settings it was restored with.
    pub fn set_config(&mut self, config: LikelihoodConfig) {
        self.config = config;
    }

    /// A fresh likelihood on settings already checked.
    pub fn from_checked(config: LikelihoodConfig) -> Self {
        Self {
            config,
            short: VecDeque::new(),
            short_sum: 0.0,
            long: VecDeque::new(),
            long_sum: 0.0,
            long_sum_squares: 0.0,
            updates_since_resum: 0,
            slow_mean: 0.0,
            slow_variance: 0.0,
            slow_seen: 0,
            record: 0.0,
        }
    }

    /// Adds a raw score and returns the log-scaled likelihood that the recent raw scores
    /// are unusual, in [0, 1]. Raw scores are clamped to [0, 1]; non-finite ones count as 0.
    pub fn update_likelihood(&mut self, raw: f64) -> f64 {
        self.update(raw).map_or(0.0, likelihood_of_deviation)
    }
}

impl ChannelConfig for LikelihoodConfig {
    type Channel = AnomalyLikelihood;
    type Error = LikelihoodError;

    /// Validates without I/O. A deviation floor of 0 would divide a flat series' mean by
    /// a deviation of 0; a history longer than the window it is kept in never fills.
    fn check(&self) -> Result<(), LikelihoodError> {
        if !(self.min_deviation > 0.0 && self.min_deviation.is_finite()) {
            return Err(LikelihoodError::MinDeviation(self.min_deviation));
        }
        if self.min_history > self.long_window.max(2) {
            return Err(LikelihoodError::HistoryBeyondWindow {
                min_history: self.min_history,
                long_window: self.long_window,
            });
        }
        Ok(())
    }

    fn build(&self) -> Result<AnomalyLikelihood, LikelihoodError> {
        self.check()?;
        Ok(AnomalyLikelihood::from_checked(self.clone()))
    }
}

impl Channel for AnomalyLikelihood {
    /// A raw surprise; clamped to [0, 1], and 0 when not a number.
    type Input<'a> = f64;
    /// Deviations above the reference; `None` before `min_history`.
    type Output = Option<f64>;

    /// Adds a raw score (as [`update_likelihood`](AnomalyLikelihood::update_likelihood) does) and returns how many deviations the recent raw
    /// scores stand above their reference (`None` before `min_history`): the likelihood
    /// grows with it, so the larger of two series' deviations gives the larger of their
    /// likelihoods, at the cost of one tail probability instead of two.
    fn update(&mut self, raw: f64) -> Option<f64> {
        let raw = if raw.is_finite() {
            raw.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.short.push_back(raw as f32);
        self.short_sum += raw;
        if self.short.len() > self.config.short_window.max(1) {
            self.short_sum -= f64::from(self.short.pop_front().unwrap_or(0.0));
        }
        let average = self.short_sum / self.short.len() as f64;

        let result = if self.long.len() >= self.config.min_history.max(2) {
            let n = self.long.len() as f64;
            let mean = self.long_sum / n;
            let variance = (self.long_sum_squares / n - mean * mean).max(0.0);
            let deviation = variance.sqrt().max(self.config.min_deviation);
            let recent = (average - mean) / deviation;
            Some(if self.config.slow_horizon > 0 {
                let deviation = self.slow_variance.sqrt().max(self.config.min_deviation);
                recent.min((average - self.slow_mean) / deviation)
            } else {
                recent
            })
        } else {
            None
        };
        let result = match (result, self.config.record_horizon) {
            (None, _) | (_, 0) => result,
            (Some(deviation), horizon) => {
                let capped = if average <= self.record {
                    deviation.min(RECORD_CAP)
                } else {
                    deviation
                };
                // The record starts with the likelihood, so the first points (a rough
                // baseline's) do not set it.
                self.record = if average > self.record {
                    average
                } else {
                    self.record - (self.record - average) / horizon as f64
                };
                Some(capped)
            }
        };
        if self.config.slow_horizon > 0 {
            // Plain averages while young, exponential weights once the horizon is reached.
            self.slow_seen = self.slow_seen.saturating_add(1);
            let rate = (1.0 / self.slow_seen as f64).max(1.0 / self.config.slow_horizon as f64);
            let delta = average - self.slow_mean;
            self.slow_mean += rate * delta;
            self.slow_variance = (1.0 - rate) * (self.slow_variance + rate * delta * delta);
        }
        let stored = f64::from(average as f32);
        self.long.push_back(stored as f32);
        self.long_sum += stored;
        self.long_sum_squares += stored * stored;
        if self.long.len() > self.config.long_window.max(2) {
            let old = f64::from(self.long.pop_front().unwrap_or(0.0));
            self.long_sum -= old;
            self.long_sum_squares -= old * old;
        }
        // Running sums drift with rounding; recompute them now and then.
        self.updates_since_resum = self.updates_since_resum.saturating_add(1);
        if self.updates_since_resum >= self.config.long_window.max(1024) {
            self.updates_since_resum = 0;
            self.long_sum = self.long.iter().map(|&v| f64::from(v)).sum();
            self.long_sum_squares = self.long.iter().map(|&v| f64::from(v).powi(2)).sum();
            self.short_sum = self.short.iter().map(|&v| f64::from(v)).sum();
        }
        result
    }

    /// Bytes held on the heap.
    fn heap_bytes(&self) -> usize {
        (self.short.capacity() + self.long.capacity()) * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn tail_matches_known_values() {
        assert!((normal_tail(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_tail(1.959_963_985) - 0.025).abs() < 1e-7);
        assert!((normal_tail(-3.0) - 0.998_650_1).abs() < 1e-6);
    }

    #[test]
    fn a_burst_after_calm_is_likely_anomalous() {
        let mut likelihood = AnomalyLikelihood::from_checked(LikelihoodConfig::default());
        for i in 0..1000 {
            let calm = likelihood.update_likelihood(0.1 + 0.01 * f64::from(i % 7));
            assert!(calm < 0.5, "{i}: {calm}");
        }
        let burst: Vec<f64> = (0..10).map(|_| likelihood.update_likelihood(0.9)).collect();
        assert!(burst.iter().any(|&s| s > 0.9), "{burst:?}");
    }

    #[test]
    fn a_wobble_after_a_flat_stretch_stays_below_the_floor_while_a_burst_alarms() {
        let run = |level: f64| {
            let mut likelihood = AnomalyLikelihood::from_checked(LikelihoodConfig::default());
            for _ in 0..1000 {
                likelihood.update_likelihood(0.1);
            }
            (0..10)
                .map(|_| likelihood.update_likelihood(level))
                .fold(0.0f64, f64::max)
        };
        let wobble = run(0.15);
        let burst = run(0.9);
        assert!(wobble < 0.1, "{wobble}");
        assert!(burst > 0.9, "{burst}");
    }

    /// The peak likelihood of each burst of `bursts` (level, points of calm before it).
    fn burst_peaks(config: LikelihoodConfig, bursts: &[(f64, usize)]) -> Vec<f64> {
        let mut likelihood = AnomalyLikelihood::from_checked(config);
        let mut i = 0u32;
        let mut calm = |likelihood: &mut AnomalyLikelihood, points: usize| {
            for _ in 0..points {
                likelihood.update_likelihood(0.1 + 0.01 * f64::from(i % 7));
                i += 1;
            }
        };
        bursts
            .iter()
            .map(|&(level, before)| {
                calm(&mut likelihood, before);
                (0..10)
                    .map(|_| likelihood.update_likelihood(level))
                    .fold(0.0f64, f64::max)
            })
            .collect()
    }

    #[test]
    fn a_burst_no_bigger_than_a_recent_one_stays_below_the_alarm_and_a_bigger_one_alarms() {
        let bursts = [(0.6, 1000), (0.5, 300), (0.9, 300)];
        let with_record = burst_peaks(LikelihoodConfig::default(), &bursts);
        let without = burst_peaks(
            LikelihoodConfig {
                record_horizon: 0,
                ..LikelihoodConfig::default()
            },
            &bursts,
        );
        assert!(with_record[0] > 0.5, "{with_record:?}");
        assert!(with_record[1] < 0.5, "{with_record:?}");
        assert!(with_record[2] > 0.5, "{with_record:?}");
        assert!(without[1] > 0.5, "{without:?}");
    }

    #[test]
    fn the_record_forgets_so_the_same_burst_alarms_again_long_after() {
        let horizon = LikelihoodConfig::default().record_horizon;
        let peaks = burst_peaks(
            LikelihoodConfig::default(),
            &[(0.6, 1000), (0.6, 8 * horizon)],
        );
        assert!(peaks.iter().all(|&p| p > 0.5), "{peaks:?}");
    }

    #[test]
    fn a_spike_that_recurs_beyond_the_long_window_counts_less_with_the_slow_reference() {
        // One spike every 288 points (a daily job at 5-minute resolution): the 500-point
        // window holds one or two, the slow reference all of them. The calm between spikes
        // wobbles less than the default deviation floor, so the floor is lowered to let the
        // spike stand out without the slow reference.
        let peak_of_last_spike = |slow_horizon| {
            let mut likelihood = AnomalyLikelihood::from_checked(LikelihoodConfig {
                slow_horizon,
                min_deviation: 0.01,
                ..LikelihoodConfig::default()
            });
            let mut peak = 0.0f64;
            for i in 0..6000 {
                let raw = if i % 288 == 0 {
                    1.0
                } else {
                    0.1 + 0.01 * f64::from(i % 7)
                };
                let s = likelihood.update_likelihood(raw);
                if i >= 6000 - 288 {
                    peak = peak.max(s);
                }
            }
            peak
        };
        let without = peak_of_last_spike(0);
        let with = peak_of_last_spike(8640);
        assert!(without > 0.9, "{without}");
        assert!(with < without - 0.3, "{with} vs {without}");
    }

    #[test]
    fn settings_that_cannot_score_are_refused() {
        assert_eq!(LikelihoodConfig::default().check(), Ok(()));
        for min_deviation in [0.0, -0.1, f64::NAN, f64::INFINITY] {
            let config = LikelihoodConfig {
                min_deviation,
                ..LikelihoodConfig::default()
            };
            assert!(
                matches!(config.check(), Err(LikelihoodError::MinDeviation(_))),
                "{min_deviation}"
            );
        }
        let config = LikelihoodConfig {
            min_history: 600,
            long_window: 500,
            ..LikelihoodConfig::default()
        };
        let error = config.check().unwrap_err();
        assert!(
            error.to_string().contains("likelihood.min_history (600)"),
            "{error}"
        );
    }

    proptest! {
        #[test]
        fn scores_stay_in_unit_interval(raw in proptest::collection::vec(proptest::num::f64::ANY, 1..400)) {
            let mut likelihood = AnomalyLikelihood::from_checked(LikelihoodConfig { min_history: 10, ..LikelihoodConfig::default() });
            for r in raw {
                let s = likelihood.update_likelihood(r);
                prop_assert!(s.is_finite() && (0.0..=1.0).contains(&s));
            }
        }
    }
}
