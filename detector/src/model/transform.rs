//! Variance-stabilising transforms: counts have noise that grows with their level, so the
//! baseline sees `sqrt` (or `ln(1 + x)`) of them, and its band is mapped back.

use serde::{Deserialize, Serialize};

/// A variance-stabilising transform applied to values before the baseline sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    #[default]
    None,
    /// `sign(x) sqrt(|x|)`: counts (Poisson-like noise) get a steady scale.
    Sqrt,
    /// `sign(x) ln(1 + |x|)`.
    Log,
    /// [`Sqrt`](Self::Sqrt) for counts (non-negative integers with a median up to
    /// [`SMALL_COUNT_MEDIAN`]), where Poisson-like noise grows with the level;
    /// [`None`](Self::None) otherwise. Decided on the first points of the series.
    Auto,
}

/// Counts with a median above this are large enough for their noise to look Gaussian.
pub const SMALL_COUNT_MEDIAN: f64 = 1000.0;

impl Transform {
    /// The transform to use for a series that started with `values`.
    pub fn choose(self, values: &[f64]) -> Self {
        if self != Self::Auto {
            return self;
        }
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let counts = !finite.is_empty() && finite.iter().all(|&v| v >= 0.0 && v.fract() == 0.0);
        if !counts {
            return Self::None;
        }
        let mut sorted = finite;
        sorted.sort_by(f64::total_cmp);
        if sorted[sorted.len() / 2] <= SMALL_COUNT_MEDIAN {
            Self::Sqrt
        } else {
            Self::None
        }
    }

    pub fn apply(self, x: f64) -> f64 {
        match self {
            Self::None | Self::Auto => x,
            Self::Sqrt => x.signum() * x.abs().sqrt(),
            Self::Log => x.signum() * x.abs().ln_1p(),
        }
    }

    pub fn invert(self, y: f64) -> f64 {
        match self {
            Self::None | Self::Auto => y,
            Self::Sqrt => y.signum() * y * y,
            Self::Log => y.signum() * y.abs().exp_m1(),
        }
    }
}
