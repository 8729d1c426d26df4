//! Envelope records: a level held for a while that the series has never held before.
//!
//! The spatial rule judges one value against the range of values seen. A series whose
//! spikes set that range can still settle at a level it has never held: tweets about a
//! company running hours above their usual floor while no single count tops an old spike,
//! a temperature whose ceiling sinks below anything seen. The envelope keeps the floor
//! (the lowest of the last `window` values) and the ceiling (the highest), and the range
//! each has taken so far. A floor above every earlier floor, or a ceiling below every
//! earlier ceiling, by more than `margin` of that range, is a new level: the detector
//! scores it as certain, as it does a value beyond the range. The rule waits until the
//! series has shown its usual levels: `min_history` values over at least `min_span_s`
//! (a week, so that a weekly rhythm's quiet days are not new the first time they come).

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::channel::{Channel, ChannelConfig};

/// Errors from checking an envelope configuration.
#[derive(Debug, Error, PartialEq)]
pub enum EnvelopeError {
    #[error("envelope.window must be at most {MAX_WINDOW}, got {0}")]
    Window(usize),
    #[error("envelope.margin must be a number at least 0, got {0}")]
    Margin(f64),
    #[error("envelope.min_span_s must be at least 0, got {0}")]
    Span(i64),
}

/// The longest window: its values are kept, and scanned on every point.
pub const MAX_WINDOW: usize = 1024;

/// Envelope record settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnvelopeConfig {
    /// Values the floor and the ceiling are taken over: how long a level must hold. 0: the
    /// rule is off.
    pub window: usize,
    /// How far beyond every earlier floor (or ceiling) a new one must lie, as a fraction of
    /// the range the floors (or ceilings) have taken.
    pub margin: f64,
    /// Finite values seen before the rule may fire: enough windows for the ranges to mean
    /// something.
    pub min_history: u64,
    /// Seconds from the first value before the rule may fire.
    pub min_span_s: i64,
}

impl Default for EnvelopeConfig {
    fn default() -> Self {
        Self {
            window: 10,
            margin: 0.2,
            min_history: 2000,
            min_span_s: 7 * 86_400,
        }
    }
}

/// The running envelope of one series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// The latest finite values, at most `window`.
    recent: VecDeque<f64>,
    /// Lowest and highest of `recent` (`None` while it is empty).
    #[serde(default)]
    extremes: Option<(f64, f64)>,
    /// Lowest and highest floor seen.
    floors: Option<(f64, f64)>,
    /// Lowest and highest ceiling seen.
    ceilings: Option<(f64, f64)>,
    /// Finite values seen.
    seen: u64,
    /// Timestamp of the first finite value.
    first_ms: Option<i64>,
}

/// The range `range` (lowest, highest) after seeing `value`: widened to take it in, and
/// otherwise each end moved the fraction `forget` of its distance towards it, so that
/// extremes fade with a time constant of `1 / forget` points. `None` starts at the value.
pub fn forget_towards(range: Option<(f64, f64)>, value: f64, forget: f64) -> (f64, f64) {
    let Some((low, high)) = range else {
        return (value, value);
    };
    let high = if value > high {
        value
    } else {
        high - forget * (high - value)
    };
    let low = if value < low {
        value
    } else {
        low + forget * (value - low)
    };
    (low, high)
}

impl ChannelConfig for EnvelopeConfig {
    type Channel = Envelope;
    type Error = EnvelopeError;

    /// Validates without I/O.
    fn check(&self) -> Result<(), EnvelopeError> {
        if self.window > MAX_WINDOW {
            return Err(EnvelopeError::Window(self.window));
        }
        if !(self.margin >= 0.0 && self.margin.is_finite()) {
            return Err(EnvelopeError::Margin(self.margin));
        }
        if self.min_span_s < 0 {
            return Err(EnvelopeError::Span(self.min_span_s));
        }
        Ok(())
    }

    fn build(&self) -> Result<Envelope, EnvelopeError> {
        self.check()?;
        Ok(Envelope::default())
    }
}

/// What the envelope reads of a point, with its settings (the state keeps none).
#[derive(Debug, Clone, Copy)]
pub struct EnvelopePoint<'a> {
    pub timestamp_ms: i64,
    pub value: f64,
    pub config: &'a EnvelopeConfig,
    /// How far both ranges move towards each new floor and ceiling (see [`forget_towards`]).
    pub forget: f64,
}

impl Channel for Envelope {
    type Input<'a> = EnvelopePoint<'a>;
    /// Whether the point completes a level never held before.
    type Output = bool;

    /// Adds the value at `timestamp_ms`; true when the floor or the ceiling it completes is
    /// a new level (see the module). Both ranges then take the new floor and ceiling in,
    /// and forget their extremes at the rate `forget` per point (see [`forget_towards`]).
    /// Non-finite values are skipped.
    fn update(&mut self, point: EnvelopePoint<'_>) -> bool {
        let EnvelopePoint {
            timestamp_ms,
            value,
            config,
            forget,
        } = point;
        if config.window == 0 || !value.is_finite() {
            return false;
        }
        self.seen += 1;
        let first_ms = *self.first_ms.get_or_insert(timestamp_ms);
        self.recent.push_back(value);
        let dropped = match self.recent.len() > config.window {
            true => self.recent.pop_front(),
            false => None,
        };
        // Only a window that lost its floor or ceiling is scanned again.
        let (floor, ceiling) = match (self.extremes, dropped) {
            (Some((low, high)), Some(old)) if old != low && old != high => {
                (low.min(value), high.max(value))
            }
            (Some((low, high)), None) => (low.min(value), high.max(value)),
            _ => self
                .recent
                .iter()
                .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &v| {
                    (low.min(v), high.max(v))
                }),
        };
        self.extremes = Some((floor, ceiling));
        if self.recent.len() < config.window {
            return false;
        }
        let span_s = timestamp_ms.saturating_sub(first_ms) / 1000;
        let ready = self.seen >= config.min_history && span_s >= config.min_span_s;
        let mut new_level = false;
        if let Some((low, high)) = self.floors {
            new_level |= ready && high > low && floor > high + config.margin * (high - low);
        }
        if let Some((low, high)) = self.ceilings {
            new_level |= ready && high > low && ceiling < low - config.margin * (high - low);
        }
        self.floors = Some(forget_towards(self.floors, floor, forget));
        self.ceilings = Some(forget_towards(self.ceilings, ceiling, forget));
        new_level
    }

    /// Bytes held on the heap.
    fn heap_bytes(&self) -> usize {
        self.recent.capacity() * std::mem::size_of::<f64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Five minutes, in milliseconds.
    const STEP_MS: i64 = 300_000;

    /// Feeds `values`, one every `step_ms`, and returns the indices where the envelope saw
    /// a new level.
    fn new_levels_every(
        step_ms: i64,
        values: impl IntoIterator<Item = f64>,
        config: &EnvelopeConfig,
    ) -> Vec<usize> {
        let mut envelope = Envelope::default();
        values
            .into_iter()
            .enumerate()
            .filter(|&(i, v)| {
                envelope.update(EnvelopePoint {
                    timestamp_ms: i as i64 * step_ms,
                    value: v,
                    config,
                    forget: 0.0,
                })
            })
            .map(|(i, _)| i)
            .collect()
    }

    /// [`new_levels_every`] five minutes.
    fn new_levels(values: impl IntoIterator<Item = f64>, config: &EnvelopeConfig) -> Vec<usize> {
        new_levels_every(STEP_MS, values, config)
    }

    /// Noise between 0 and 1 with a spike to 100 every 500 points.
    fn spiky(i: usize) -> f64 {
        if i % 500 == 250 {
            100.0
        } else {
            ((i * 7919) % 101) as f64 / 100.0
        }
    }

    /// The first new level of `values`, which must come from `from` to `from + 9`: the
    /// floor (or ceiling) of the window that ends at `from - 1` may already be new, if the
    /// last value before the shift was high (or low) in its noise.
    fn assert_first_new_level(
        values: impl IntoIterator<Item = f64>,
        config: &EnvelopeConfig,
        from: usize,
    ) {
        let levels = new_levels(values, config);
        let first = levels.first().copied();
        assert!(
            first.is_some_and(|i| (from - 1..from + 10).contains(&i)),
            "{levels:?}"
        );
    }

    #[test]
    fn a_floor_above_every_earlier_floor_is_a_new_level_though_no_value_tops_a_spike() {
        let config = EnvelopeConfig::default();
        // From 3000 the series holds 5 to 6: far below the spikes, far above its floors.
        let values = (0..4000).map(|i| spiky(i) + if i >= 3000 { 5.0 } else { 0.0 });
        assert_first_new_level(values, &config, 3000);
        // The same series without the shift: spikes never make a floor.
        assert_eq!(
            new_levels((0..4000).map(spiky), &config),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn a_ceiling_below_every_earlier_ceiling_is_a_new_level() {
        let config = EnvelopeConfig::default();
        // The mirror image: dips never make a ceiling.
        let values = (0..4000).map(|i| 50.0 - spiky(i) - if i >= 3000 { 5.0 } else { 0.0 });
        assert_first_new_level(values, &config, 3000);
        assert_eq!(
            new_levels((0..4000).map(|i| 50.0 - spiky(i)), &config),
            Vec::<usize>::new()
        );
    }

    #[test]
    fn the_rule_waits_for_its_history_and_can_be_turned_off() {
        let shift = |i: usize| spiky(i) + if i >= 1000 { 5.0 } else { 0.0 };
        let config = EnvelopeConfig::default();
        // The level is new from 1000, but a history takes 2000 values: by then the level
        // is no longer new.
        assert_eq!(
            new_levels((0..4000).map(shift), &config),
            Vec::<usize>::new()
        );
        let early = EnvelopeConfig {
            min_history: 500,
            min_span_s: 0,
            ..config.clone()
        };
        assert_first_new_level((0..4000).map(shift), &early, 1000);
        let off = EnvelopeConfig { window: 0, ..early };
        assert_eq!(new_levels((0..4000).map(shift), &off), Vec::<usize>::new());
    }

    #[test]
    fn a_week_must_pass_before_a_level_is_new() {
        // A point an hour: 2,000 values take 83 days, and the week passes first.
        let hourly = |i: usize| spiky(i) + if i >= 2500 { 5.0 } else { 0.0 };
        let config = EnvelopeConfig::default();
        let levels = new_levels_every(3_600_000, (0..3000).map(hourly), &config);
        assert!(levels.first().is_some_and(|&i| (2499..2510).contains(&i)));
        // A point a minute: 2,000 values take a day and a half. A shift on day 3 is not new
        // (the week has not passed), and by day 8 it is what the series does.
        let shift = |i: usize| spiky(i) + if i >= 4000 { 5.0 } else { 0.0 };
        let levels = new_levels_every(60_000, (0..12_000).map(shift), &config);
        assert_eq!(levels, Vec::<usize>::new());
        let no_span = EnvelopeConfig {
            min_span_s: 0,
            ..config
        };
        let levels = new_levels_every(60_000, (0..12_000).map(shift), &no_span);
        assert!(levels.first().is_some_and(|&i| (3999..4010).contains(&i)));
    }

    #[test]
    fn missing_values_are_skipped() {
        let config = EnvelopeConfig::default();
        let values = |i: usize| spiky(i) + if i >= 3000 { 5.0 } else { 0.0 };
        let mut with_gaps = Envelope::default();
        let mut without = Envelope::default();
        for i in 0..4000 {
            let gap = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][i % 3];
            let t = i as i64 * STEP_MS;
            assert!(!with_gaps.update(EnvelopePoint {
                timestamp_ms: t - STEP_MS / 2,
                value: gap,
                config: &config,
                forget: 1e-4
            }));
            assert_eq!(
                with_gaps.update(EnvelopePoint {
                    timestamp_ms: t,
                    value: values(i),
                    config: &config,
                    forget: 1e-4
                }),
                without.update(EnvelopePoint {
                    timestamp_ms: t,
                    value: values(i),
                    config: &config,
                    forget: 1e-4
                }),
                "{i}"
            );
        }
        assert_eq!(with_gaps, without);
    }

    #[test]
    fn a_restored_envelope_decides_as_the_original() {
        let config = EnvelopeConfig::default();
        let value = |i: usize| spiky(i) + if i >= 3000 { 5.0 } else { 0.0 };
        let mut original = Envelope::default();
        for i in 0..2995 {
            original.update(EnvelopePoint {
                timestamp_ms: i as i64 * STEP_MS,
                value: value(i),
                config: &config,
                forget: 1e-4,
            });
        }
        let snapshot = serde_json::to_string(&original).unwrap();
        let mut restored: Envelope = serde_json::from_str(&snapshot).unwrap();
        let mut levels = 0;
        for i in 2995..4000 {
            let t = i as i64 * STEP_MS;
            let level = original.update(EnvelopePoint {
                timestamp_ms: t,
                value: value(i),
                config: &config,
                forget: 1e-4,
            });
            assert_eq!(
                restored.update(EnvelopePoint {
                    timestamp_ms: t,
                    value: value(i),
                    config: &config,
                    forget: 1e-4
                }),
                level,
                "{i}"
            );
            levels += usize::from(level);
        }
        assert!(levels > 0);
        assert_eq!(restored, original);
    }

    #[test]
    fn extremes_fade_at_the_forgetting_rate() {
        assert_eq!(forget_towards(None, 3.0, 0.5), (3.0, 3.0));
        assert_eq!(forget_towards(Some((0.0, 10.0)), 12.0, 0.5), (6.0, 12.0));
        assert_eq!(forget_towards(Some((0.0, 10.0)), 4.0, 0.5), (2.0, 7.0));
        assert_eq!(forget_towards(Some((0.0, 10.0)), 4.0, 0.0), (0.0, 10.0));
    }

    #[test]
    fn settings_out_of_range_are_refused() {
        let bad = |config: EnvelopeConfig| config.check().unwrap_err().to_string();
        let window = EnvelopeConfig {
            window: MAX_WINDOW + 1,
            ..EnvelopeConfig::default()
        };
        assert_eq!(
            bad(window),
            "envelope.window must be at most 1024, got 1025"
        );
        for margin in [-0.1, f64::NAN, f64::INFINITY] {
            let config = EnvelopeConfig {
                margin,
                ..EnvelopeConfig::default()
            };
            assert!(bad(config).starts_with("envelope.margin must be"));
        }
        let span = EnvelopeConfig {
            min_span_s: -1,
            ..EnvelopeConfig::default()
        };
        assert_eq!(bad(span), "envelope.min_span_s must be at least 0, got -1");
        assert_eq!(EnvelopeConfig::default().check(), Ok(()));
    }

    /// The rule computed the slow way: every window scanned, every range from scratch.
    fn new_levels_by_rescanning(values: &[f64], config: &EnvelopeConfig) -> Vec<usize> {
        let window = config.window;
        let envelope = |i: usize| {
            let slice = &values[i + 1 - window..=i];
            let floor = slice.iter().copied().fold(f64::INFINITY, f64::min);
            (
                floor,
                slice.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            )
        };
        (window..values.len())
            .filter(|&i| i + 1 >= config.min_history as usize)
            .filter(|&i| {
                let earlier: Vec<(f64, f64)> = (window - 1..i).map(envelope).collect();
                let range = |pick: fn(&(f64, f64)) -> f64| {
                    let all = earlier.iter().map(pick);
                    let low = all.clone().fold(f64::INFINITY, f64::min);
                    (low, all.fold(f64::NEG_INFINITY, f64::max))
                };
                let (floor, ceiling) = envelope(i);
                let ((fl, fh), (cl, ch)) = (range(|e| e.0), range(|e| e.1));
                (fh > fl && floor > fh + config.margin * (fh - fl))
                    || (ch > cl && ceiling < cl - config.margin * (ch - cl))
            })
            .collect()
    }

    proptest! {
        #[test]
        fn the_running_envelope_agrees_with_rescanning_every_window(
            values in proptest::collection::vec(0u8..6, 1..120),
            window in 1usize..8,
            min_history in 0u64..40,
        ) {
            // Few distinct values: floors and ceilings tie and leave the window often.
            let values: Vec<f64> = values.into_iter().map(f64::from).collect();
            let config = EnvelopeConfig { window, margin: 0.2, min_history, min_span_s: 0 };
            prop_assert_eq!(
                new_levels(values.iter().copied(), &config),
                new_levels_by_rescanning(&values, &config)
            );
        }

        #[test]
        fn a_constant_series_never_has_a_new_level(
            level in -1e12f64..1e12,
            window in 1usize..40,
        ) {
            let config = EnvelopeConfig { window, min_history: 0, ..EnvelopeConfig::default() };
            prop_assert!(new_levels(std::iter::repeat_n(level, 500), &config).is_empty());
        }
    }
}
