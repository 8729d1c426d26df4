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
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            horizon: 48,
            upper_limit: None,
            lower_limit: None,
            persistence: 3,
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
}

/// Where the residual (value minus expected) is heading: Holt's smoothing of the
/// residuals, a level and a per-point slope.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ResidualDrift {
    level: f64,
    slope: f64,
    started: bool,
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
        self.slope += Self::SLOPE_RATE * ((level - self.level) - self.slope);
        self.level = level;
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
                });
            }
        }
    }
    // Only a residual already past half the band and heading out is worth a warning:
    // noise near the expectation drifts both ways all the time.
    let now = drift.at(0.0);
    let heading_out = now * drift.slope > 0.0;
    if band_half_width > 0.0
        && heading_out
        && (0.5 * band_half_width..=band_half_width).contains(&now.abs())
    {
        let edge = band_half_width.copysign(drift.slope);
        let steps = ((edge - now) / drift.slope).ceil().max(1.0);
        if steps <= config.horizon as f64 {
            let steps = steps as usize;
            return Some(Warning {
                kind: WarningKind::LeavesBand,
                steps_ahead: steps,
                at_ms: at(steps),
            });
        }
    }
    None
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
    fn a_steady_climb_warns_before_it_leaves_the_band() {
        let calm: Vec<(i64, f64)> = (0..300)
            .map(|i| (i * 60_000, 10.0 + (i % 3) as f64 * 0.1))
            .collect();
        let baseline = baseline_with(&calm);
        let mut drift = ResidualDrift::default();
        let band = 4.0 * baseline.scale();
        for step in 0..20 {
            drift.update(band * 0.04 * f64::from(step));
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
