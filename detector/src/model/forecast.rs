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
}

impl Default for ForecastConfig {
    fn default() -> Self {
        Self {
            horizon: 48,
            upper_limit: None,
            lower_limit: None,
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

/// Looks ahead from `now_ms`. Leaving the band is judged from the trend alone (the
/// season is what the band follows); limits are checked point by point on the forecast.
pub fn early_warning(
    baseline: &SeasonalBaseline,
    config: &ForecastConfig,
    now_ms: i64,
    band_half_width: f64,
    trend: f64,
) -> Option<Warning> {
    let interval_ms = baseline.interval_ms();
    if config.horizon == 0 || interval_ms <= 0.0 {
        return None;
    }
    let at = |steps: usize| now_ms + (steps as f64 * interval_ms) as i64;
    if config.upper_limit.is_some() || config.lower_limit.is_some() {
        for steps in 1..=config.horizon {
            let Some(forecast) = baseline.expected_at(at(steps), steps as f64) else {
                break;
            };
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
    if trend != 0.0 && band_half_width > 0.0 {
        let steps = (band_half_width / trend.abs()).ceil();
        if steps >= 1.0 && steps <= config.horizon as f64 {
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
