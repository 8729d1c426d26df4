//! Shape novelty: how unlike everything in the recent past the series' latest stretch of
//! points is. The latest `window` values are compared with every earlier stretch of the
//! same length that ends between `window` and `window + history - 1` points ago (so never
//! overlapping it); the distance to the nearest one is the novelty (a streaming discord,
//! in matrix-profile terms). A level and scale baseline sees a value off its band; this
//! sees a pattern not met lately (a flat stretch in a busy series, a missing wiggle, a
//! new rhythm) even while every value stays in range.
//!
//! Squared distances are updated incrementally (one term in, one out per earlier
//! stretch), so a point costs `history` multiply-adds, not `history * window`, in `f32`
//! lanes; they are recomputed from scratch (in `f64`) every [`REFRESH`] points, so the
//! rounding error stays below about `1e-4` of the largest squared distance the values
//! allow.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::channel::{Channel, ChannelConfig};

/// Errors from checking a shape configuration.
#[derive(Debug, Error, PartialEq)]
pub enum ShapeError {
    #[error("shape.{field} must be at least {min}, got {value}")]
    TooSmall {
        field: &'static str,
        min: usize,
        value: usize,
    },
    #[error("shape.{field} must be at most {max}, got {value}")]
    TooLarge {
        field: &'static str,
        max: usize,
        value: usize,
    },
    #[error("shape.dead_zone must be in [0, 1), got {0}")]
    DeadZone(f64),
}

/// The largest window and history accepted: far beyond any use (a year of 5-minute
/// points), and small enough that no size computed from them overflows.
const MAX_POINTS: usize = 1 << 20;

/// Shape novelty settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShapeConfig {
    /// Points in a stretch.
    pub window: usize,
    /// Earlier stretches compared with the latest one. The default reaches back over a
    /// day at 5-minute resolution, so what recurs daily there is familiar.
    pub history: usize,
    /// Distance (Euclidean over the window, as a fraction of the range of values seen) at
    /// which the novelty reaches 1.
    pub saturation: f64,
    /// Departures from the baseline's expectation up to this fraction of the range of
    /// values seen are not shape: each value is pulled this far towards the expectation
    /// (and no further) before stretches are compared, so that two stretches of noise
    /// around the same level match and an excursion stands out. 0: the values as they
    /// are.
    pub dead_zone: f64,
}

impl Default for ShapeConfig {
    fn default() -> Self {
        Self {
            window: 16,
            history: 320,
            saturation: 0.5,
            dead_zone: 0.1,
        }
    }
}

/// Full recomputation of the distances this often, in points.
pub const REFRESH: u32 = 1024;
/// Values are clamped to +-this (a series beyond it has bigger problems than its shape).
const LARGEST: f64 = 1e15;
/// No novelty before this many earlier stretches (or `history`, if smaller) can be compared.
const MIN_STRETCHES: usize = 20;

/// The running shape novelty of one series. Restored state is checked for the sizes the
/// updates index by (a corrupt or hostile snapshot is refused, never indexed out of
/// bounds).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "ShapeNoveltyState")]
pub struct ShapeNovelty {
    window: usize,
    history: usize,
    /// The latest values, oldest first; `2 * window + history - 1` are needed, and up to
    /// twice that are kept so that dropping old ones is amortised.
    values: Vec<f32>,
    /// Squared distance from the latest stretch to each earlier one seen so far, the
    /// oldest (ending `window + len - 1` points before it) first.
    distances: Vec<f32>,
    since_refresh: u32,
}

/// [`ShapeNovelty`] as read, before its sizes are checked.
#[derive(Deserialize)]
struct ShapeNoveltyState {
    window: usize,
    history: usize,
    values: Vec<f32>,
    distances: Vec<f32>,
    since_refresh: u32,
}

impl TryFrom<ShapeNoveltyState> for ShapeNovelty {
    type Error = String;

    fn try_from(state: ShapeNoveltyState) -> Result<Self, String> {
        let ShapeNoveltyState {
            window,
            history,
            values,
            distances,
            since_refresh,
        } = state;
        if !(2..=MAX_POINTS).contains(&window) || !(1..=MAX_POINTS).contains(&history) {
            return Err(format!(
                "shape state with window {window} and history {history}"
            ));
        }
        // Each earlier stretch compared needs its window and the latest one's.
        let lags = distances.len();
        if lags > history || (lags > 0 && values.len() < 2 * window + lags - 1) {
            return Err(format!(
                "shape state with {lags} distances over {} values",
                values.len()
            ));
        }
        Ok(Self {
            window,
            history,
            values,
            distances,
            since_refresh,
        })
    }
}

impl Default for ShapeNovelty {
    /// The default configuration's (what a snapshot from before shape novelty restores to).
    fn default() -> Self {
        Self::from_checked(&ShapeConfig::default())
    }
}

impl ShapeNovelty {
    fn from_checked(config: &ShapeConfig) -> Self {
        let needed = 2 * config.window + config.history - 1;
        Self {
            window: config.window,
            history: config.history,
            values: Vec::with_capacity(2 * needed),
            distances: Vec::with_capacity(config.history),
            since_refresh: 0,
        }
    }

    fn needed(&self) -> usize {
        2 * self.window + self.history - 1
    }

    /// The value that would carry the pattern on: the one that followed the earlier
    /// stretch nearest the latest (`None` before any can be compared). A missing value
    /// taken as this keeps the stretches after it in step with those before, and is as
    /// familiar as a value can be.
    pub fn continuation(&self) -> Option<f64> {
        let lags = self.distances.len();
        let (m, _) = self
            .distances
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1))?;
        // `distances[m]` is the stretch ending `window + lags - 1 - m` points before the
        // latest value; the one after its end is that many points before the next.
        let lag = self.window + lags - 1 - m;
        self.values
            .len()
            .checked_sub(lag)
            .map(|at| f64::from(self.values[at]))
    }

    /// Squared distance from the latest stretch to the one ending `lag` points before it.
    fn distance_at(&self, lag: usize) -> f32 {
        let end = self.values.len();
        let latest = &self.values[end - self.window..];
        let earlier = &self.values[end - lag - self.window..end - lag];
        latest
            .iter()
            .zip(earlier)
            .map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2))
            .sum::<f64>() as f32
    }
}

/// Moves every stretch one point on: each distance gains `(x_new - g)^2` and loses
/// `(x_out - l)^2`. Returns the smallest distance after the move (infinity if none),
/// kept in independent lanes in the same pass so that the loop vectorises instead of
/// waiting on one running minimum.
fn slide(distances: &mut [f32], gained: &[f32], lost: &[f32], x_new: f32, x_out: f32) -> f32 {
    const LANES: usize = 8;
    let step = |d: &mut f32, g: f32, l: f32| {
        let a = x_new - g;
        let b = x_out - l;
        *d += a * a - b * b;
        *d
    };
    let mut lanes = [f32::INFINITY; LANES];
    let mut d_chunks = distances.chunks_exact_mut(LANES);
    let mut g_chunks = gained.chunks_exact(LANES);
    let mut l_chunks = lost.chunks_exact(LANES);
    for ((d, g), l) in (&mut d_chunks).zip(&mut g_chunks).zip(&mut l_chunks) {
        for i in 0..LANES {
            let v = step(&mut d[i], g[i], l[i]);
            lanes[i] = if v < lanes[i] { v } else { lanes[i] };
        }
    }
    let mut nearest = lanes
        .iter()
        .fold(f32::INFINITY, |m, &v| if v < m { v } else { m });
    let rest = d_chunks.into_remainder();
    for ((d, &g), &l) in rest
        .iter_mut()
        .zip(g_chunks.remainder())
        .zip(l_chunks.remainder())
    {
        nearest = nearest.min(step(d, g, l));
    }
    nearest
}

impl ChannelConfig for ShapeConfig {
    type Channel = ShapeNovelty;
    type Error = ShapeError;

    /// Validates without I/O.
    fn check(&self) -> Result<(), ShapeError> {
        for (field, min, value) in [("window", 2, self.window), ("history", 1, self.history)] {
            if value < min {
                return Err(ShapeError::TooSmall { field, min, value });
            }
            if value > MAX_POINTS {
                let max = MAX_POINTS;
                return Err(ShapeError::TooLarge { field, max, value });
            }
        }
        if !(0.0..1.0).contains(&self.dead_zone) {
            return Err(ShapeError::DeadZone(self.dead_zone));
        }
        Ok(())
    }

    fn build(&self) -> Result<ShapeNovelty, ShapeError> {
        self.check()?;
        Ok(ShapeNovelty::from_checked(self))
    }
}

impl Channel for ShapeNovelty {
    /// The value.
    type Input<'a> = f64;
    /// The distance to the nearest earlier stretch; `None` while too few exist.
    type Output = Option<f64>;

    /// Adds a value and returns the distance from the stretch it ends to the nearest
    /// earlier one, or `None` while too few earlier stretches exist. Non-finite values are
    /// skipped.
    fn update(&mut self, value: f64) -> Option<f64> {
        if !value.is_finite() {
            return None;
        }
        // Squares of differences must stay finite in f32, for any window a series can use.
        let value = value.clamp(-LARGEST, LARGEST) as f32;
        let w = self.window;
        let lags = self.distances.len();
        let mut nearest = f32::INFINITY;
        if lags > 0 {
            // Before the push, the newest value is at `len - 1`. The stretch at lag `k`
            // gains (x_new - x_{new - k})^2 and loses (x_{new - w} - x_{new - w - k})^2;
            // the distances run from the largest lag to the smallest, as do both partners.
            let len = self.values.len();
            let x_new = value;
            let x_out = self.values[len - w];
            let gained = &self.values[len + 1 - w - lags..=len - w];
            let lost = &self.values[len + 1 - 2 * w - lags..=len - 2 * w];
            nearest = slide(&mut self.distances, gained, lost, x_new, x_out);
        }
        self.values.push(value);
        if self.values.len() >= 2 * self.needed() {
            let drop = self.values.len() - self.needed();
            self.values.drain(..drop);
        }
        // While the first points arrive, one more earlier stretch (the oldest yet) becomes
        // comparable with each.
        if lags < self.history && self.values.len() >= 2 * w + lags {
            let d = self.distance_at(w + lags);
            nearest = nearest.min(d);
            self.distances.insert(0, d);
        }
        self.since_refresh = self.since_refresh.saturating_add(1);
        if self.since_refresh >= REFRESH {
            self.since_refresh = 0;
            nearest = f32::INFINITY;
            let lags = self.distances.len();
            for m in 0..lags {
                let d = self.distance_at(w + lags - 1 - m);
                self.distances[m] = d;
                nearest = nearest.min(d);
            }
        }
        if self.distances.len() < MIN_STRETCHES.min(self.history) || !nearest.is_finite() {
            return None;
        }
        Some(f64::from(nearest.max(0.0)).sqrt())
    }

    /// Bytes held on the heap.
    fn heap_bytes(&self) -> usize {
        self.values.capacity() * 4 + self.distances.capacity() * 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The definition, computed the slow way.
    fn brute_force(values: &[f64], window: usize, history: usize) -> Option<f64> {
        let n = values.len();
        let latest = &values[n.checked_sub(window)?..];
        let distances: Vec<f64> = (window..window + history)
            .filter(|&lag| lag + window <= n)
            .map(|lag| {
                let earlier = &values[n - lag - window..n - lag];
                latest
                    .iter()
                    .zip(earlier)
                    .map(|(a, b)| (a - b).powi(2))
                    .sum::<f64>()
            })
            .collect();
        (distances.len() >= MIN_STRETCHES.min(history)).then(|| {
            distances
                .iter()
                .copied()
                .fold(f64::INFINITY, f64::min)
                .sqrt()
        })
    }

    #[test]
    fn a_repeating_pattern_is_familiar_and_a_new_one_is_not() {
        let mut shape = ChannelConfig::build(&ShapeConfig::default()).unwrap();
        let wave = |i: usize| ((i % 24) as f64 / 24.0 * std::f64::consts::TAU).sin();
        let mut familiar = 0.0f64;
        for i in 0..10_000 {
            let d = shape.update(wave(i));
            if i > 400 {
                familiar = familiar.max(d.unwrap());
            }
        }
        assert!(familiar < 1e-6, "{familiar}");
        // The wave stops: a flat stretch at zero was never seen.
        let flat: Vec<f64> = (0..16).filter_map(|_| shape.update(0.0)).collect();
        assert!(flat[15] > 1.0, "{flat:?}");
    }

    #[test]
    fn bad_configs_are_refused() {
        let config = ShapeConfig {
            window: 1,
            ..ShapeConfig::default()
        };
        assert_eq!(
            ChannelConfig::build(&config).unwrap_err(),
            ShapeError::TooSmall {
                field: "window",
                min: 2,
                value: 1
            }
        );
        for dead_zone in [-0.1, 1.0, f64::NAN] {
            let config = ShapeConfig {
                dead_zone,
                ..ShapeConfig::default()
            };
            let error = ChannelConfig::build(&config).unwrap_err().to_string();
            assert!(
                error.starts_with("shape.dead_zone must be in [0, 1)"),
                "{error}"
            );
        }
    }

    proptest! {
        #[test]
        fn incremental_distances_match_the_definition(
            values in proptest::collection::vec(-1000.0f64..1000.0, 1..700),
            window in 2usize..12,
            history in 1usize..80,
        ) {
            let config = ShapeConfig { window, history, ..ShapeConfig::default() };
            let mut shape = ChannelConfig::build(&config).unwrap();
            let mut seen = Vec::new();
            for v in values {
                let v = f64::from(v as f32);
                seen.push(v);
                let got = shape.update(v);
                let want = brute_force(&seen, window, history);
                // f32 lanes: the error is bounded relative to the largest possible distance.
                let spread = seen.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                    - seen.iter().copied().fold(f64::INFINITY, f64::min);
                let tolerance = 1e-3 * window as f64 * spread * spread + 1e-9;
                match (got, want) {
                    (Some(g), Some(w)) => prop_assert!((g * g - w * w).abs() <= tolerance, "{g} vs {w}"),
                    (None, None) => {}
                    other => prop_assert!(false, "{other:?}"),
                }
            }
        }

        #[test]
        fn any_input_gives_a_finite_distance(values in proptest::collection::vec(proptest::num::f64::ANY, 1..400)) {
            let mut shape = ChannelConfig::build(&ShapeConfig::default()).unwrap();
            for v in values {
                if let Some(d) = shape.update(v) {
                    prop_assert!(d.is_finite() && d >= 0.0);
                }
            }
        }
    }
}
