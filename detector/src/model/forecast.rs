//! Early warning: a short-horizon forecast from the baseline's season, level and trend
//! that says when a series will leave its band or cross a configured limit.

use serde::{Deserialize, Serialize};

use super::baseline::SeasonalBaseline;

/// Forecast settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastConfig {
    /// How many points ahead to look.
    pub horizon: usize,
    /// Warn when the forecast will cross these limits (value units).
    pub upper_limit: Option<f64>,
    pub lower_limit: Option<f64>,
    /// Consecutive points the forecast must say "trouble ahead" before a warning is
    /// raised: one point's drift is noise.
    pub persistence: u32,
    /// How far past the band's edge the forecast must go, as a share of the band's half
    /// width: grazing the edge is no trouble.
    pub margin: f64,
    /// How sure the trend must be: the one-sided normal probability that the residual's
    /// slope has the sign it shows, given the slope's own noise.
    pub min_confidence: f64,
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            horizon: 48,
            upper_limit: None,
            lower_limit: None,
            persistence: 3,
            margin: 1.0,
            min_confidence: 0.95,
        }
    }
}

/// Why a warning was raised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// The trend will carry the series out of its band.
    LeavesBand,
    /// The forecast will cross a configured limit.
    CrossesLimit,
}

/// An early warning: the series is expected to be in trouble `steps_ahead` points from now.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Warning {
    pub kind: WarningKind,
    pub steps_ahead: usize,
    pub at_ms: i64,
    /// How sure the trend behind it is, in [0.5, 1] (1 for a limit the forecast crosses).
    #[serde(default = "certain")]
    pub confidence: f64,
}

fn certain() -> f64 {
    1.0
}

/// Where the residual (value minus expected) is heading: Holt's smoothing of the
/// residuals, a level and a per-point slope, with the slope's noise (the variance of
/// its per-point innovations) to say how sure the slope is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ResidualDrift {
    level: f64,
    slope: f64,
    started: bool,
    /// Missing from snapshots taken before it existed: 0 then, a slope known exactly,
    /// until the next points teach it.
    #[serde(default)]
    slope_variance: f64,
}

impl ResidualDrift {
    const LEVEL_RATE: f64 = 0.2;
    const SLOPE_RATE: f64 = 0.05;

    pub fn update(&mut self, residual: f64) {
        if !residual.is_finite() {
            return;
        }
        if !self.started {
            self.level = residual;
            self.started = true;
            return;
        }
        let predicted = self.level + self.slope;
        let level = predicted + Self::LEVEL_RATE * (residual - predicted);
        let innovation = (level - self.level) - self.slope;
        self.slope += Self::SLOPE_RATE * innovation;
        self.slope_variance += Self::SLOPE_RATE * (innovation * innovation - self.slope_variance);
        self.level = level;
    }

    /// The one-sided normal probability that the slope has the sign it shows: its size
    /// over its standard error (an exponential average of innovations with rate `a` has
    /// `a / (2 - a)` of their variance).
    pub fn confidence(&self) -> f64 {
        let error = (self.slope_variance * Self::SLOPE_RATE / (2.0 - Self::SLOPE_RATE)).sqrt();
        if error <= 0.0 {
            return 1.0;
        }
        normal_cdf(self.slope.abs() / error)
    }

    /// The residual expected `steps` points ahead.
    pub fn at(&self, steps: f64) -> f64 {
        self.level + self.slope * steps
    }
}

/// Looks ahead from `now_ms`: the forecast is the baseline's expectation plus the drifting
/// residual. Leaving the band is reported while the smoothed residual is between half the
/// band and its edge and moving out; limits are in the series' own units (`invert` undoes the transform the
/// baseline works in).
pub fn early_warning(
    baseline: &SeasonalBaseline,
    drift: &ResidualDrift,
    config: &ForecastConfig,
    now_ms: i64,
    band_half_width: f64,
    invert: impl Fn(f64) -> f64,
) -> Option<Warning> {
    let interval_ms = baseline.interval_ms();
    if config.horizon == 0 || interval_ms <= 0.0 || !drift.started {
        return None;
    }
    let at = |steps: usize| now_ms + (steps as f64 * interval_ms) as i64;
    if config.upper_limit.is_some() || config.lower_limit.is_some() {
        for steps in 1..=config.horizon {
            let Some(expected) = baseline.expected_at(at(steps), steps as f64) else {
                break;
            };
            let forecast = invert(expected + drift.at(steps as f64));
            let above = config.upper_limit.is_some_and(|limit| forecast >= limit);
            let below = config.lower_limit.is_some_and(|limit| forecast <= limit);
            if above || below {
                return Some(Warning {
                    kind: WarningKind::CrossesLimit,
                    steps_ahead: steps,
                    at_ms: at(steps),
                    confidence: 1.0,
                });
            }
        }
    }
    // Only a residual already past half the band and heading out is worth a warning:
    // noise near the expectation drifts both ways all the time. The trend must be sure,
    // and must carry the residual past the band by the margin within the horizon.
    let now = drift.at(0.0);
    let heading_out = now * drift.slope > 0.0;
    let confidence = drift.confidence();
    if band_half_width > 0.0
        && heading_out
        && confidence >= config.min_confidence
        && (0.5 * band_half_width..=band_half_width).contains(&now.abs())
    {
        let edge = band_half_width.copysign(drift.slope);
        let beyond = (edge * (1.0 + config.margin) - now) / drift.slope;
        if beyond <= config.horizon as f64 {
            let steps = ((edge - now) / drift.slope).ceil().max(1.0) as usize;
            return Some(Warning {
                kind: WarningKind::LeavesBand,
                steps_ahead: steps,
                at_ms: at(steps),
                confidence,
            });
        }
    }
    None
}

/// The standard normal distribution function (Abramowitz and Stegun 7.1.26 for erf,
/// within 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::baseline::BaselineConfig;
    use crate::model::channel::{Channel, ChannelConfig};

    fn baseline_with(points: &[(i64, f64)]) -> SeasonalBaseline {
        let mut baseline = BaselineConfig::default().build().unwrap();
        for &(t, v) in points {
            baseline.update((t, v));
        }
        baseline
    }

    #[test]
    fn the_normal_distribution_function_matches_known_values() {
        for (x, p) in [
            (0.0, 0.5),
            (1.644_854, 0.95),
            (-1.959_964, 0.025),
            (3.0, 0.998_65),
        ] {
            assert!((normal_cdf(x) - p).abs() < 1e-5, "{x}: {}", normal_cdf(x));
        }
    }

    #[test]
    fn a_steady_slope_is_sure_and_a_wandering_one_is_not() {
        let mut steady = ResidualDrift::default();
        let mut wandering = ResidualDrift::default();
        let mut walk = 0.0f64;
        for i in 0..500 {
            steady.update(0.05 * i as f64 + 0.1 * ((i * 7919) % 13) as f64 / 13.0);
            // A bounded random walk: drifts one way, then the other.
            walk += if (i * 7919) % 17 < 8 { 0.3 } else { -0.3 };
            wandering.update(walk.clamp(-3.0, 3.0));
        }
        assert!(steady.confidence() > 0.99, "{}", steady.confidence());
        assert!(wandering.confidence() < 0.95, "{}", wandering.confidence());
    }

    #[test]
    fn a_warning_needs_the_forecast_past_the_band_by_the_margin() {
        let calm: Vec<(i64, f64)> = (0..300)
            .map(|i| (i * 60_000, 10.0 + (i % 3) as f64 * 0.1))
            .collect();
        let baseline = baseline_with(&calm);
        let band = 4.0 * baseline.scale();
        let mut drift = ResidualDrift::default();
        // Three quarters of the way to the edge, heading out by a hundredth of the band a
        // point: the edge is 25 points away, twice the band 125.
        for i in 0..400 {
            drift.update(0.75 * band - 0.01 * band * (399 - i) as f64);
        }
        let warn = |margin: f64| {
            let config = ForecastConfig {
                margin,
                ..ForecastConfig::default()
            };
            early_warning(&baseline, &drift, &config, 300 * 60_000, band, |v| v)
        };
        assert!(warn(0.0).is_some());
        assert!(warn(1.0).is_none(), "twice the band is beyond the horizon");
    }

    #[test]
    fn a_steady_climb_warns_before_it_leaves_the_band() {
        let calm: Vec<(i64, f64)> = (0..300)
            .map(|i| (i * 60_000, 10.0 + (i % 3) as f64 * 0.1))
            .collect();
        let baseline = baseline_with(&calm);
        let mut drift = ResidualDrift::default();
        let band = 4.0 * baseline.scale();
        // Across the band from its lower edge, three hundredths of it a point: three
        // quarters of the way to the upper edge, twice the band is 42 points away.
        for step in 0..59 {
            drift.update(band * (0.03 * f64::from(step) - 1.0));
        }
        let warning = early_warning(
            &baseline,
            &drift,
            &ForecastConfig::default(),
            300 * 60_000,
            band,
            |v| v,
        )
        .expect("a warning");
        assert_eq!(warning.kind, WarningKind::LeavesBand);
        assert!(warning.steps_ahead >= 1);
    }

    #[test]
    fn a_limit_ahead_is_reported() {
        let calm: Vec<(i64, f64)> = (0..300).map(|i| (i * 60_000, 10.0)).collect();
        let baseline = baseline_with(&calm);
        let mut drift = ResidualDrift::default();
        drift.update(0.0);
        let config = ForecastConfig {
            upper_limit: Some(9.0),
            ..ForecastConfig::default()
        };
        let warning = early_warning(&baseline, &drift, &config, 300 * 60_000, 1.0, |v| v).unwrap();
        assert_eq!(
            (warning.kind, warning.steps_ahead),
            (WarningKind::CrossesLimit, 1)
        );
        let flat = early_warning(&baseline, &drift, &ForecastConfig::default(), 0, 1.0, |v| v);
        assert!(flat.is_none());
    }
}
