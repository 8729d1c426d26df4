//! Seasonal baseline: learns a series' normal shape and says how far each point is from it.
//!
//! The period is found from the data: once enough history is buffered, the
//! autocorrelation at each candidate season (a day, a week, in points of the observed
//! sampling interval) is measured and the strongest one above a floor is kept. A robust
//! per-slot profile (location and mean absolute deviation, updated with clipped residuals
//! so a spike does not bend it) plus a level that adapts to shifts gives the expected
//! value and a band. Planned events scale or offset the expectation while they last and
//! are not learnt from, so a planned peak is not anomalous and a missing one is.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::tail::ZTail;
use thiserror::Error;

use super::channel::{Channel, ChannelConfig};
use super::transform::Transform;

/// Errors from checking a baseline configuration.
#[derive(Debug, Error, PartialEq)]
pub enum BaselineError {
    #[error("baseline.{field} must be in {range}, got {value}")]
    OutOfRange {
        field: &'static str,
        range: &'static str,
        value: f64,
    },
    #[error("baseline.events[{index}] ends before it starts")]
    EmptyEvent { index: usize },
}

/// What a planned event does to the expected value while it lasts, in the series' own
/// units (whatever transform the baseline learns in).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum EventEffect {
    /// Expected value times `factor` (a sale doubling traffic: 2.0).
    Scale { factor: f64 },
    /// Expected value plus `offset`.
    Offset { offset: f64 },
    /// A change that may move the level for good (a deploy, a migration): nothing is
    /// expected of it, no alarm is raised while it lasts, and the models learn what it
    /// brings.
    Shift,
}

impl EventEffect {
    /// The value with the event's effect: what is expected of `value`'s usual level.
    pub fn apply(self, value: f64) -> f64 {
        match self {
            Self::Scale { factor } => value * factor,
            Self::Offset { offset } => value + offset,
            Self::Shift => value,
        }
    }

    /// Whether the models learn from values under this event: only from a shift's, which
    /// may be the new normal.
    pub fn is_learnt(self) -> bool {
        matches!(self, Self::Shift)
    }

    /// The value without the event's effect: what it would have been unplanned (a value
    /// under a factor of 0 says nothing of that, and is kept).
    pub fn remove(self, value: f64) -> f64 {
        match self {
            Self::Scale { factor } if factor != 0.0 => value / factor,
            Self::Scale { .. } => value,
            Self::Offset { offset } => value - offset,
            Self::Shift => value,
        }
    }
}

/// A planned event: from `start_ms` (inclusive) to `end_ms` (exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlannedEvent {
    pub start_ms: i64,
    pub end_ms: i64,
    pub effect: EventEffect,
}

/// Baseline hyperparameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaselineConfig {
    /// Candidate seasons in seconds, tried in order (default: a day, a week).
    pub seasons_s: Vec<i64>,
    /// A season is used only if the autocorrelation at its lag reaches this.
    pub min_autocorrelation: f64,
    /// At most this many slots per season (coarser slots for long seasons).
    pub max_slots: usize,
    /// Points buffered for finding the season: a season is found once two of its periods
    /// are buffered (3072 points: a day at 1-minute, a week at 1-hour resolution).
    pub history: usize,
    /// Weight of a new observation in its slot's profile.
    pub profile_rate: f64,
    /// Weight of a new observation in the level.
    pub level_rate: f64,
    /// Weight of a new residual in the scale.
    pub scale_rate: f64,
    /// Updates clip residuals at this many scales (robustness to spikes).
    pub clip: f64,
    /// Band half-width in scales.
    pub band: f64,
    pub events: Vec<PlannedEvent>,
}

impl Default for BaselineConfig {
    fn default() -> Self {
        Self {
            seasons_s: vec![86_400, 7 * 86_400],
            min_autocorrelation: 0.5,
            max_slots: 1440,
            history: 3072,
            profile_rate: 0.25,
            level_rate: 0.01,
            scale_rate: 0.0075,
            clip: 4.0,
            band: 4.0,
            events: Vec::new(),
        }
    }
}

/// The scale never falls below this fraction of the spread, the unclipped typical
/// residual. Updates clip residuals at `clip` scales so that a spike bends nothing much,
/// but a scale that has shrunk to its floor (a series that starts with hundreds of zeros)
/// then clips every later residual to a few times that floor and cannot grow back: each
/// nonzero value of a series of mostly zeros read as a million scales. The spread is not
/// clipped, so it grows with the residuals; for residuals of one size, with the odd spike,
/// it stays well below the scale and changes nothing. On NAB neutral (75.8 / 71.9 / 79.2
/// over the seeds against 75.8 / 71.8 / 79.1; 0.25 and 0.5 scored 75.6 and 75.7) while the
/// 99th percentile of |z| after the first 1,000 points fell from 1,000,000 to 238 on
/// ec2_disk_write_bytes_1ef3de and from 22,244 to 17 on Twitter_volume_CVS.
pub const SPREAD_FLOOR: f64 = 0.1;
/// The spread learns at this fraction of the scale's rate: slowly, so one spike lifts the
/// floor little (at the scale's own rate NAB scored 75.4).
const SPREAD_RATE: f64 = 0.25;

/// A season in use: slot `s` covers `[s * slot_ms, (s + 1) * slot_ms)` of each period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Season {
    period_ms: i64,
    slot_ms: i64,
    /// Per slot: location, mean absolute deviation; NaN until seen.
    location: Vec<f32>,
    deviation: Vec<f32>,
}

impl Season {
    fn slot(&self, timestamp_ms: i64) -> usize {
        (timestamp_ms.rem_euclid(self.period_ms) / self.slot_ms) as usize
    }

    /// Location at a slot, smoothed with its neighbours (slots are noisy one by one).
    fn location_at(&self, slot: usize) -> Option<f64> {
        let n = self.location.len();
        let mut sum = 0.0;
        let mut weight = 0.0;
        for (offset, w) in [(n - 1, 1.0), (0, 2.0), (1, 1.0)] {
            let v = self.location[(slot + offset) % n];
            if v.is_finite() {
                sum += w * f64::from(v);
                weight += w;
            }
        }
        (weight > 0.0).then(|| sum / weight)
    }
}

/// What the baseline says about one point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct BaselinePoint {
    pub expected: f64,
    /// Typical absolute residual (mean absolute deviation), always > 0.
    pub scale: f64,
    /// `(value - expected) / scale`.
    pub z: f64,
    pub lower: f64,
    pub upper: f64,
    /// The planned event that shaped the expectation, if any.
    pub event: Option<EventEffect>,
}

/// The running baseline of one series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeasonalBaseline {
    config: BaselineConfig,
    /// (seconds after `history_origin_ms`, value) until the season is settled.
    history: VecDeque<(i32, f32)>,
    history_origin_ms: i64,
    season: Option<Season>,
    /// Deseasonalised level and its per-point trend.
    level: Option<f64>,
    trend: f64,
    scale: f64,
    previous_ms: Option<i64>,
    interval_ms: f64,
    seen: u64,
    next_season_check: u64,
    /// The transform of the values it learns, so that a planned event's effect applies in
    /// the series' own units ([`set_transform`](Self::set_transform)).
    #[serde(default)]
    transform: Transform,
    /// The typical absolute residual, unclipped and slow: a floor under the scale (see
    /// [`SPREAD_FLOOR`]). Old snapshots restore it at 0, and it grows from there.
    #[serde(default)]
    spread: f64,
    /// Residuals in scales, for the band's width (see [`super::tail`]). Old snapshots
    /// restore it empty: the configured band until it has learnt enough.
    #[serde(default)]
    tail: ZTail,
}

impl SeasonalBaseline {
    /// A fresh baseline on settings already checked.
    fn from_checked(config: BaselineConfig) -> Self {
        // Allocated once: growing by doubling would overshoot the state budget.
        let history = VecDeque::with_capacity(config.history);
        Self {
            config,
            history,
            history_origin_ms: 0,
            season: None,
            level: None,
            trend: 0.0,
            scale: 0.0,
            previous_ms: None,
            interval_ms: 0.0,
            seen: 0,
            next_season_check: 64,
            transform: Transform::None,
            spread: 0.0,
            tail: ZTail::default(),
        }
    }

    /// The season in use, in milliseconds, if any.
    pub fn period_ms(&self) -> Option<i64> {
        self.season.as_ref().map(|s| s.period_ms)
    }

    /// Points learnt so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Per-point trend of the level.
    pub fn trend(&self) -> f64 {
        self.trend
    }

    /// Typical spacing of points, in milliseconds (0 before the second point).
    pub fn interval_ms(&self) -> f64 {
        self.interval_ms
    }

    fn event_at(&self, timestamp_ms: i64) -> Option<EventEffect> {
        self.config
            .events
            .iter()
            .find(|e| (e.start_ms..e.end_ms).contains(&timestamp_ms))
            .map(|e| e.effect)
    }

    /// Takes `config` in place of the settings it was built or restored with: those of a
    /// restored snapshot are whatever the file held, and `config` (checked, and keeping
    /// this state, see `SeriesDetectorConfig::keeps_state_of`) is what it must run on.
    /// Planned events come with it.
    pub fn set_config(&mut self, config: BaselineConfig) {
        self.config = config;
    }

    /// Says that the values it is given are `transform`ed (the detector's choice for the
    /// series), so that planned events apply to the series' own units: a sale that doubles
    /// a counter's rate doubles the rate, not its square root.
    pub fn set_transform(&mut self, transform: Transform) {
        self.transform = transform;
    }

    /// Expected value at a time, `steps` points after the last update (trend included),
    /// with the planned event then in force; `None` before the first point.
    pub fn expected_at(&self, timestamp_ms: i64, steps: f64) -> Option<f64> {
        let expected = self.expected_unplanned(timestamp_ms, steps)?;
        Some(match self.event_at(timestamp_ms) {
            Some(effect) => self.planned(effect, expected),
            None => expected,
        })
    }

    /// `value` (in the transformed units) with an event's effect, which is given in the
    /// series' own units.
    fn planned(&self, effect: EventEffect, value: f64) -> f64 {
        let transform = self.transform;
        transform.apply(effect.apply(transform.invert(value)))
    }

    /// The expectation `steps` points after the last update as if no event were planned.
    fn expected_unplanned(&self, timestamp_ms: i64, steps: f64) -> Option<f64> {
        let level = self.level? + self.trend * steps;
        let seasonal = self
            .season
            .as_ref()
            .and_then(|s| s.location_at(s.slot(timestamp_ms)))
            .unwrap_or(0.0);
        Some(level + seasonal)
    }

    /// Scale floor: a flat series must not make every wiggle infinitely surprising.
    fn scale_floor(&self) -> f64 {
        let level = self.level.unwrap_or(0.0).abs();
        (level * 1e-3).max(1e-6).max(SPREAD_FLOOR * self.spread)
    }

    /// Typical absolute residual now: the series-wide one, blended with the slot's own
    /// when a season is in use.
    fn scale_at(&self, timestamp_ms: i64) -> f64 {
        let slot_deviation = self
            .season
            .as_ref()
            .map(|s| s.deviation[s.slot(timestamp_ms)]);
        let scale = match slot_deviation {
            Some(d) if d.is_finite() && d > 0.0 => 0.5 * (self.scale + f64::from(d)),
            _ => self.scale,
        };
        scale.max(self.scale_floor())
    }

    /// The series-wide typical absolute residual.
    pub fn scale(&self) -> f64 {
        self.scale.max(self.scale_floor())
    }

    fn learn(&mut self, timestamp_ms: i64, value: f64, z: f64, scale: f64) {
        if let Some(previous) = self.previous_ms {
            let gap = timestamp_ms.saturating_sub(previous).max(0) as f64;
            // Unknown until a first gap (or nonsense restored from a corrupt snapshot).
            let known = self.interval_ms > 0.0 && self.interval_ms.is_finite();
            self.interval_ms = if !known {
                gap
            } else {
                // Steps towards each gap by a bounded amount: robust to a few long gaps.
                let step = (gap - self.interval_ms).clamp(-self.interval_ms, self.interval_ms);
                self.interval_ms + 0.05 * step
            };
        }
        self.previous_ms = Some(timestamp_ms);
        self.seen = self.seen.saturating_add(1);
        // Holt-Winters with the residual clipped, so one spike bends nothing much.
        let residual = z.clamp(-self.config.clip, self.config.clip) * scale;
        let Some(level) = self.level else {
            self.level = Some(value);
            self.push_history(timestamp_ms, value);
            return;
        };
        let level_rate = self.config.level_rate;
        let new_level = level + self.trend + level_rate * residual;
        self.trend += 0.1 * level_rate * ((new_level - level) - self.trend);
        self.level = Some(new_level);
        if let Some(season) = self.season.as_mut() {
            let slot = season.slot(timestamp_ms);
            let rate = self.config.profile_rate as f32;
            let location = &mut season.location[slot];
            if location.is_finite() {
                *location += rate * ((1.0 - level_rate) * residual) as f32;
                let deviation = &mut season.deviation[slot];
                *deviation += rate * (residual.abs() as f32 - *deviation);
            } else {
                *location = (value - new_level) as f32;
                season.deviation[slot] = self.scale as f32;
            }
        }
        let rate = self.config.scale_rate.max(1.0 / self.seen as f64);
        self.scale += rate * (residual.abs() - self.scale);
        self.spread += SPREAD_RATE * rate * ((z * scale).abs() - self.spread);
        self.push_history(timestamp_ms, value);
    }

    fn push_history(&mut self, timestamp_ms: i64, value: f64) {
        if self.season.is_some() || self.config.history == 0 {
            return;
        }
        if self.history.is_empty() {
            self.history_origin_ms = timestamp_ms;
        }
        let Ok(offset_s) = i32::try_from((timestamp_ms - self.history_origin_ms) / 1000) else {
            self.history.clear(); // decades of history: start again
            return;
        };
        if self.history.len() == self.config.history {
            self.history.pop_front();
        }
        self.history.push_back((offset_s, value as f32));
        if self.seen >= self.next_season_check {
            self.next_season_check = self.seen.saturating_add((self.seen / 4).max(64));
            self.try_settle_season();
        }
    }

    /// Looks for a season in the buffered history; on success, seeds its profile.
    fn try_settle_season(&mut self) {
        if self.interval_ms <= 0.0 {
            return;
        }
        let values: Vec<f64> = self.history.iter().map(|&(_, v)| f64::from(v)).collect();
        let n = values.len();
        let mean = values.iter().sum::<f64>() / n as f64;
        // Deviations from the least-squares line: a trend alone correlates at every lag.
        let centre = (n as f64 - 1.0) / 2.0;
        let spread: f64 = (0..n).map(|i| (i as f64 - centre).powi(2)).sum();
        let slope = if spread > 0.0 {
            values
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64 - centre) * (v - mean))
                .sum::<f64>()
                / spread
        } else {
            0.0
        };
        let deviations: Vec<f64> = values
            .iter()
            .enumerate()
            .map(|(i, v)| v - mean - slope * (i as f64 - centre))
            .collect();
        let variance = deviations.iter().map(|d| d * d).sum::<f64>();
        if variance <= 0.0 {
            return;
        }
        let mut best: Option<(i64, f64)> = None;
        for &season_s in &self.config.seasons_s {
            let lag = (season_s as f64 * 1000.0 / self.interval_ms).round() as usize;
            if lag >= 4 && 2 * lag > n && 2 * lag <= self.config.history {
                // A longer season the buffer will be able to judge: wait for it rather
                // than settle on a shorter one (a week of taxi rides is not seven days).
                return;
            }
            if lag < 4 || 2 * lag > n {
                continue;
            }
            let covariance: f64 = (lag..n).map(|i| deviations[i] * deviations[i - lag]).sum();
            // Per overlapping pair, as the variance is per point: the plain sum would
            // favour shorter lags, which have more pairs.
            let autocorrelation = (covariance / (n - lag) as f64) / (variance / n as f64);
            if autocorrelation >= self.config.min_autocorrelation
                && best.is_none_or(|(_, r)| autocorrelation > r)
            {
                best = Some((season_s, autocorrelation));
            }
        }
        let Some((season_s, _)) = best else {
            return;
        };
        let period_ms = season_s * 1000;
        let slots = ((period_ms as f64 / self.interval_ms).round() as usize)
            .clamp(1, self.config.max_slots.max(1));
        let slot_ms = (period_ms / slots as i64).max(1);
        let slots = (period_ms / slot_ms) as usize + usize::from(period_ms % slot_ms != 0);
        let mut season = Season {
            period_ms,
            slot_ms,
            location: vec![f32::NAN; slots],
            deviation: vec![0.0; slots],
        };
        // Seed each slot with its mean deviation from the fitted line, the deviations the
        // season was judged on: a trend in the history must not be baked into the profile
        // as a ramp across the slots (nor into the scale), it is the trend's.
        let origin_ms = self.history_origin_ms;
        let at = |offset_s: i32| origin_ms + i64::from(offset_s) * 1000;
        let mut sums = vec![(0.0f64, 0u32); slots];
        for (&(t, _), &deviation) in self.history.iter().zip(&deviations) {
            let slot = season.slot(at(t));
            sums[slot].0 += deviation;
            sums[slot].1 += 1;
        }
        for (slot, (sum, count)) in sums.into_iter().enumerate() {
            if count > 0 {
                season.location[slot] = (sum / f64::from(count)) as f32;
            }
        }
        // Rebase the level and the scale on the deseasonalised history. The trend starts
        // at 0 and is learnt: a slope fitted over two periods is as often a level shift
        // inside them as a trend (carrying it on scored 75.4 on NAB, against 75.8).
        let mut absolute_sum = 0.0;
        for (&(t, _), &deviation) in self.history.iter().zip(&deviations) {
            let seasonal = season.location_at(season.slot(at(t))).unwrap_or(0.0);
            absolute_sum += (deviation - seasonal).abs();
        }
        let recent_level = self
            .history
            .iter()
            .rev()
            .take(16)
            .map(|&(t, v)| f64::from(v) - season.location_at(season.slot(at(t))).unwrap_or(0.0))
            .sum::<f64>()
            / self.history.len().min(16) as f64;
        let scale = absolute_sum / n as f64;
        for deviation in &mut season.deviation {
            *deviation = scale as f32;
        }
        self.level = Some(recent_level);
        self.trend = 0.0;
        self.scale = scale;
        self.season = Some(season);
        self.history = VecDeque::new();
    }
}

impl ChannelConfig for BaselineConfig {
    type Channel = SeasonalBaseline;
    type Error = BaselineError;

    fn check(&self) -> Result<(), BaselineError> {
        let rate = |field, value: f64| {
            if value > 0.0 && value <= 1.0 {
                Ok(())
            } else {
                Err(BaselineError::OutOfRange {
                    field,
                    range: "(0, 1]",
                    value,
                })
            }
        };
        rate("profile_rate", self.profile_rate)?;
        rate("level_rate", self.level_rate)?;
        rate("scale_rate", self.scale_rate)?;
        for (field, value) in [("clip", self.clip), ("band", self.band)] {
            if !(value > 0.0 && value.is_finite()) {
                return Err(BaselineError::OutOfRange {
                    field,
                    range: "(0, inf)",
                    value,
                });
            }
        }
        if let Some(index) = self.events.iter().position(|e| e.end_ms <= e.start_ms) {
            return Err(BaselineError::EmptyEvent { index });
        }
        Ok(())
    }

    fn build(&self) -> Result<SeasonalBaseline, BaselineError> {
        self.check()?;
        Ok(SeasonalBaseline::from_checked(self.clone()))
    }
}

impl Channel for SeasonalBaseline {
    /// The point's timestamp (ms) and value.
    type Input<'a> = (i64, f64);
    type Output = BaselinePoint;

    /// Scores `value` at `timestamp_ms` against what was learnt so far, then learns it.
    /// Non-finite values are scored as unsurprising and not learnt.
    fn update(&mut self, (timestamp_ms, value): (i64, f64)) -> BaselinePoint {
        let event = self.event_at(timestamp_ms);
        let expected = self.expected_at(timestamp_ms, 1.0).unwrap_or(value);
        let mut scale = self.scale_at(timestamp_ms);
        if let (Some(effect), Some(unplanned)) = (event, self.expected_unplanned(timestamp_ms, 1.0))
        {
            // A planned event scales the noise with the level: a campaign that doubles
            // traffic doubles its wiggles too.
            let widened = (self.planned(effect, unplanned + scale) - expected).abs();
            if widened.is_finite() && widened > 0.0 {
                scale = widened;
            }
        }
        let band = self.tail.band(self.config.band) * scale;
        let expected = if expected.is_finite() { expected } else { 0.0 };
        let z = if value.is_finite() {
            ((value - expected) / scale).clamp(-1e6, 1e6)
        } else {
            0.0
        };
        let point = BaselinePoint {
            expected,
            scale,
            z,
            lower: expected - band,
            upper: expected + band,
            event,
        };
        if value.is_finite() && event.is_none_or(EventEffect::is_learnt) {
            if self.level.is_some() {
                self.tail.learn(z);
            }
            self.learn(timestamp_ms, value, z, scale);
        }
        point
    }

    /// Bytes held on the heap by this baseline.
    fn heap_bytes(&self) -> usize {
        self.history.capacity() * std::mem::size_of::<(i32, f32)>()
            + self
                .season
                .as_ref()
                .map_or(0, |s| (s.location.capacity() + s.deviation.capacity()) * 4)
            + self.config.events.capacity() * std::mem::size_of::<PlannedEvent>()
            + self.tail.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEP_MS: i64 = 5 * 60_000;
    const PER_DAY: i64 = 288;

    /// A daily peak around noon on a base of 100, with small deterministic noise.
    fn normal_value(i: i64) -> f64 {
        let minute_of_day = (i % PER_DAY) * 5;
        let hours_from_noon = (minute_of_day as f64 - 720.0) / 60.0;
        let peak = 60.0 * (-hours_from_noon * hours_from_noon / 2.0).exp();
        let noise = ((i * 7919 % 1000) as f64 / 1000.0 - 0.5) * 4.0;
        100.0 + peak + noise
    }

    fn at(day: i64, hour: i64) -> i64 {
        day * PER_DAY + hour * 12
    }

    #[test]
    fn a_series_that_starts_flat_learns_the_size_of_its_later_values() {
        // 500 zeros, then a value of 50 to 150 at every tenth point (a disk that writes
        // now and then): the nonzero values are this series' ordinary business.
        let mut baseline = BaselineConfig::default().build().unwrap();
        let value = |i: i64| {
            if i >= 500 && i % 10 == 0 {
                50.0 + (i * 7919 % 100) as f64
            } else {
                0.0
            }
        };
        let mut largest_late_z = 0.0f64;
        for i in 0..4000 {
            let point = baseline.update((i * STEP_MS, value(i)));
            if i >= 2000 {
                largest_late_z = largest_late_z.max(point.z.abs());
            }
        }
        // Without the spread under the scale, each of them read as a million scales: the
        // scale stayed at its floor of 1e-6. Now it is about a tenth of the spread (the
        // mean absolute residual, about 10 here).
        assert!(largest_late_z < 1000.0, "{largest_late_z}");
        assert!(baseline.scale() > 0.5, "{}", baseline.scale());
    }

    #[test]
    fn a_trend_in_the_history_is_not_seeded_into_the_season_or_the_scale() {
        // The daily peak on a base growing by 10 a day; the noise's mean absolute
        // deviation is 1.
        let growth = 10.0 / PER_DAY as f64;
        let mut baseline = BaselineConfig::default().build().unwrap();
        let mut i = 0;
        while baseline.period_ms().is_none() {
            baseline.update((i * STEP_MS, normal_value(i) + growth * i as f64));
            i += 1;
        }
        // Seeded from the values less their mean, the slots held the growth as a ramp
        // of 10 across the day, and the scale was about 3 (the ramp's spread); seeded from
        // the deviations from the fitted line, about the noise's.
        assert!(baseline.scale() < 1.6, "{}", baseline.scale());
        let season = baseline.season.as_ref().unwrap();
        let first = season.location_at(0).unwrap();
        let last = season.location_at(season.location.len() - 1).unwrap();
        assert!((last - first).abs() < 2.0, "{first} .. {last}");
    }

    #[test]
    fn flags_shift_spike_and_missing_peak_but_not_a_planned_event() {
        let spike = at(5, 3);
        let missing_peak = at(6, 10)..at(6, 14);
        let planned = at(7, 18)..at(7, 20);
        let shift_from = at(8, 6);
        let config = BaselineConfig {
            events: vec![PlannedEvent {
                start_ms: planned.start * STEP_MS,
                end_ms: planned.end * STEP_MS,
                effect: EventEffect::Offset { offset: 80.0 },
            }],
            ..BaselineConfig::default()
        };
        let band = config.band;
        let mut baseline = config.build().unwrap();
        let mut flagged = Vec::new();
        for i in 0..at(9, 0) {
            let mut value = normal_value(i);
            if i == spike {
                value += 60.0;
            }
            if missing_peak.contains(&i) {
                value = 100.0;
            }
            if planned.contains(&i) {
                value += 80.0;
            }
            if i >= shift_from {
                value += 40.0;
            }
            let point = baseline.update((i * STEP_MS, value));
            if point.z.abs() > band {
                flagged.push(i);
            }
        }
        assert_eq!(baseline.period_ms(), Some(86_400_000), "daily season found");
        assert!(flagged.contains(&spike), "spike flagged");
        assert!(
            flagged.iter().any(|i| missing_peak.contains(i)),
            "missing peak flagged"
        );
        assert!(
            flagged
                .iter()
                .any(|&i| (shift_from..shift_from + 12).contains(&i)),
            "level shift flagged within the hour"
        );
        assert!(
            !flagged.iter().any(|i| planned.contains(i)),
            "planned event not flagged"
        );
        let calm = flagged
            .iter()
            .filter(|&&i| (at(3, 0)..at(5, 0)).contains(&i))
            .count();
        assert!(calm <= 2, "{calm} flags on two calm days");
    }

    #[test]
    fn checks_configuration() {
        let bad = BaselineConfig {
            level_rate: 0.0,
            ..BaselineConfig::default()
        };
        assert!(bad.build().is_err());
        let empty_event = BaselineConfig {
            events: vec![PlannedEvent {
                start_ms: 10,
                end_ms: 10,
                effect: EventEffect::Scale { factor: 2.0 },
            }],
            ..BaselineConfig::default()
        };
        assert_eq!(
            empty_event.build().unwrap_err(),
            BaselineError::EmptyEvent { index: 0 }
        );
    }

    #[test]
    fn snapshot_restores_the_same_state() {
        let mut baseline = BaselineConfig::default().build().unwrap();
        for i in 0..1000 {
            baseline.update((i * STEP_MS, normal_value(i)));
        }
        let json = serde_json::to_string(&baseline).unwrap();
        let mut restored: SeasonalBaseline = serde_json::from_str(&json).unwrap();
        for i in 1000..1100 {
            let a = baseline.update((i * STEP_MS, normal_value(i)));
            let b = restored.update((i * STEP_MS, normal_value(i)));
            assert!((a.z - b.z).abs() < 1e-9);
        }
    }

    #[test]
    fn non_finite_values_are_not_learnt() {
        let mut baseline = BaselineConfig::default().build().unwrap();
        for i in 0..100 {
            let value = if i % 10 == 0 { f64::NAN } else { 5.0 };
            let point = baseline.update((i * STEP_MS, value));
            assert!(point.z.is_finite() && point.expected.is_finite());
        }
    }
}
