//! The spike channel: a brief excursion bigger than the series' recent ones.
//!
//! The baseline's raw surprise is averaged over the likelihood's short window (10 points),
//! which dilutes a spike of one or two points, and it saturates at `z_saturation`, so
//! every spike past that looks alike: in a series that spikes now and then, a spike ten
//! times the usual one scores as the usual one does. This channel scores the logarithm of
//! the baseline's `|z|` instead, `ln(1 + |z|) / ln(1 + saturation_z)`, which keeps
//! spikes of different sizes apart up to a far larger `|z|`, averages it over a short
//! window of its own (2 points), and judges that through a likelihood of its own (the
//! detector's likelihood settings otherwise, its record included: a spike no bigger than
//! a recent one is held below the alarm). Its deviation, less `handicap`, competes with
//! the other channels' deviations: a spike must stand `handicap` deviations further out
//! than a burst must, since over so few points a series' ordinary spikes stand out too.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::channel::{Channel, ChannelConfig};
use super::likelihood::{AnomalyLikelihood, LikelihoodConfig};

/// Errors from checking a spike configuration.
#[derive(Debug, Error, PartialEq)]
pub enum SpikeError {
    #[error("spike.saturation_z must be a positive number, got {0}")]
    Saturation(f64),
    #[error("spike.handicap must be a number at least 0, got {0}")]
    Handicap(f64),
}

/// Spike channel settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpikeConfig {
    /// Points in the channel's short mean. 0: the channel is off.
    pub short_window: usize,
    /// `|z|` at which the channel's surprise reaches 1.
    pub saturation_z: f64,
    /// Deviations taken off the channel's before it competes with the others.
    pub handicap: f64,
}

impl Default for SpikeConfig {
    fn default() -> Self {
        Self {
            short_window: 2,
            saturation_z: 10_000.0,
            handicap: 3.0,
        }
    }
}

impl SpikeConfig {
    /// The channel's surprise at a residual of `z` scales, in [0, 1] (0 for a `z` that is
    /// not a number).
    pub fn surprise(&self, z: f64) -> f64 {
        if z.is_nan() {
            return 0.0;
        }
        ((1.0 + z.abs()).ln() / (1.0 + self.saturation_z).ln()).min(1.0)
    }

    /// The channel's likelihood: the detector's settings, over the channel's short window.
    pub fn likelihood(&self, likelihood: &LikelihoodConfig) -> AnomalyLikelihood {
        AnomalyLikelihood::from_checked(LikelihoodConfig {
            short_window: self.short_window,
            ..likelihood.clone()
        })
    }
}

impl ChannelConfig for SpikeConfig {
    type Channel = SpikeChannel;
    type Error = SpikeError;

    /// Validates without I/O.
    fn check(&self) -> Result<(), SpikeError> {
        if !(self.saturation_z > 0.0 && self.saturation_z.is_finite()) {
            return Err(SpikeError::Saturation(self.saturation_z));
        }
        if !(self.handicap >= 0.0 && self.handicap.is_finite()) {
            return Err(SpikeError::Handicap(self.handicap));
        }
        Ok(())
    }

    fn build(&self) -> Result<SpikeChannel, SpikeError> {
        self.check()?;
        Ok(SpikeChannel::default())
    }
}

/// The running spike channel of one series: its own likelihood, made on the first point it
/// judges, so that a channel that is off keeps no state (and a snapshot from before the
/// channel restores it empty, to wait for its history).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SpikeChannel(Option<AnomalyLikelihood>);

impl SpikeChannel {
    /// Whether the channel has judged nothing yet (a snapshot then leaves it out).
    pub fn is_idle(&self) -> bool {
        self.0.is_none()
    }
}

/// What the spike channel reads of a point, with its settings and the detector's
/// likelihood settings it builds on.
#[derive(Debug, Clone, Copy)]
pub struct SpikePoint<'a> {
    pub config: &'a SpikeConfig,
    pub likelihood: &'a LikelihoodConfig,
    /// The baseline's residual, in scales.
    pub z: f64,
}

impl Channel for SpikeChannel {
    type Input<'a> = SpikePoint<'a>;
    /// The likelihood's deviation less the handicap; `None` with the channel off or while
    /// its likelihood has too little history.
    type Output = Option<f64>;

    fn update(&mut self, point: SpikePoint<'_>) -> Option<f64> {
        let SpikePoint {
            config,
            likelihood,
            z,
        } = point;
        if config.short_window == 0 {
            return None;
        }
        self.0
            .get_or_insert_with(|| config.likelihood(likelihood))
            .update(config.surprise(z))
            .map(|deviation| deviation - config.handicap)
    }

    fn heap_bytes(&self) -> usize {
        self.0.as_ref().map_or(0, AnomalyLikelihood::heap_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Deviations of the channel over `residuals`, after `calm` points of residual 1.
    fn deviations(config: &SpikeConfig, calm: usize, residuals: &[f64]) -> Vec<f64> {
        let likelihood = LikelihoodConfig::default();
        let mut channel = config.build().unwrap();
        let mut feed = |z| {
            channel.update(SpikePoint {
                config,
                likelihood: &likelihood,
                z,
            })
        };
        for i in 0..calm {
            feed(if i % 2 == 0 { 1.0 } else { -1.0 });
        }
        residuals.iter().map(|&z| feed(z).unwrap()).collect()
    }

    #[test]
    fn surprise_grows_with_the_log_of_z_and_saturates() {
        let config = SpikeConfig::default();
        assert_eq!(config.surprise(0.0), 0.0);
        assert_eq!(config.surprise(f64::NAN), 0.0);
        assert_eq!(config.surprise(10_000.0), 1.0);
        assert_eq!(config.surprise(f64::INFINITY), 1.0);
        assert_eq!(config.surprise(-99.0), config.surprise(99.0));
        // Equal ratios of 1 + |z|, equal steps.
        let step = config.surprise(99.0) - config.surprise(9.0);
        assert!((config.surprise(999.0) - config.surprise(99.0) - step).abs() < 1e-12);
    }

    #[test]
    fn a_two_point_spike_stands_out_where_a_ten_point_mean_would_dilute_it() {
        let config = SpikeConfig::default();
        let spike = deviations(&config, 1000, &[300.0, 300.0]);
        let diluted = deviations(
            &SpikeConfig {
                short_window: 10,
                ..config.clone()
            },
            1000,
            &[300.0, 300.0],
        );
        // 4.26 deviations is the default alarm level's.
        assert!(spike[1] > 4.26, "{spike:?}");
        assert!(diluted[1] < 4.26, "{diluted:?}");
    }

    #[test]
    fn a_spike_smaller_than_a_recent_one_is_held_and_a_bigger_one_is_not() {
        let config = SpikeConfig::default();
        let likelihood = LikelihoodConfig::default();
        let mut channel = config.build().unwrap();
        let mut feed = |z: f64| {
            channel.update(SpikePoint {
                config: &config,
                likelihood: &likelihood,
                z,
            })
        };
        for i in 0..1000 {
            feed(if i % 2 == 0 { 1.0 } else { -1.0 });
        }
        let first = [feed(300.0), feed(300.0)];
        for i in 0..300 {
            feed(if i % 2 == 0 { 1.0 } else { -1.0 });
        }
        let smaller = [feed(100.0), feed(100.0)];
        for i in 0..300 {
            feed(if i % 2 == 0 { 1.0 } else { -1.0 });
        }
        let bigger = [feed(3000.0), feed(3000.0)];
        let held = crate::model::likelihood::RECORD_CAP - config.handicap;
        assert!(first[1].unwrap() > 4.26, "{first:?}");
        assert!(smaller[1].unwrap() <= held + 1e-9, "{smaller:?}");
        assert!(bigger[1].unwrap() > 4.26, "{bigger:?}");
    }

    #[test]
    fn the_handicap_is_taken_off_the_deviation() {
        let plain = SpikeConfig {
            handicap: 0.0,
            ..SpikeConfig::default()
        };
        let handicapped = SpikeConfig::default();
        let residuals = [0.5, 40.0, 2.0];
        let a = deviations(&plain, 500, &residuals);
        let b = deviations(&handicapped, 500, &residuals);
        for (a, b) in a.iter().zip(&b) {
            assert!((a - b - handicapped.handicap).abs() < 1e-12, "{a} {b}");
        }
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        for saturation_z in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            let config = SpikeConfig {
                saturation_z,
                ..SpikeConfig::default()
            };
            let message = config.check().unwrap_err().to_string();
            assert!(message.starts_with("spike.saturation_z"), "{message}");
        }
        for handicap in [-0.5, f64::NAN, f64::INFINITY] {
            let config = SpikeConfig {
                handicap,
                ..SpikeConfig::default()
            };
            let message = config.check().unwrap_err().to_string();
            assert!(message.starts_with("spike.handicap"), "{message}");
        }
        assert_eq!(SpikeConfig::default().check(), Ok(()));
    }

    proptest! {
        #[test]
        fn surprise_is_in_the_unit_interval_and_grows_with_abs_z(
            a in -1e12f64..1e12,
            b in -1e12f64..1e12,
            saturation_z in 1e-3f64..1e9,
        ) {
            let config = SpikeConfig { saturation_z, ..SpikeConfig::default() };
            let (sa, sb) = (config.surprise(a), config.surprise(b));
            prop_assert!((0.0..=1.0).contains(&sa) && (0.0..=1.0).contains(&sb));
            if a.abs() <= b.abs() {
                prop_assert!(sa <= sb);
            }
        }
    }
}
