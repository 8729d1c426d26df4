//! One detector per series: the baseline, the isolation forest over recent feature
//! vectors, their combination, the shape novelty, a likelihood for each
//! of the three (the largest deviation wins) and the early warning, driven point by point.
//! The live detector and `omen backtest` both call [`SeriesDetector::update`]; that is
//! what makes a backtest replay the live path.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use super::baseline::{
    BaselineConfig, BaselineError, BaselinePoint, EventEffect, SeasonalBaseline,
};
use super::channel::{Channel, ChannelConfig};
use super::cold::{ColdPoint, ColdStart, ColdStartConfig, ColdStartError, ColdVerdict};
use super::envelope::{forget_towards, Envelope, EnvelopeConfig, EnvelopeError, EnvelopePoint};
use super::forecast::{early_warning, ForecastConfig, ResidualDrift, Warning};
pub use super::forest::OnlineForestConfig;
use super::forest::{ForestPoint, OnlineForest, OnlineForestError};
use super::likelihood::{
    likelihood_of_deviation, AnomalyLikelihood, LikelihoodConfig, LikelihoodError,
};
use super::shape::{ShapeConfig, ShapeError, ShapeNovelty};
pub use super::transform::Transform;

/// Errors from building a detector. Each says what is wrong once, naming the setting
/// (`baseline.clip`, `forest: trees …`), and has no source: shown alone or with its
/// chain, the message is the same.
#[derive(Debug, Error)]
pub enum DetectorError {
    #[error(transparent)]
    Baseline(#[from] BaselineError),
    #[error(transparent)]
    Forest(#[from] OnlineForestError),
    #[error(transparent)]
    Shape(#[from] ShapeError),
    #[error(transparent)]
    Likelihood(#[from] LikelihoodError),
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    #[error(transparent)]
    ColdStart(#[from] ColdStartError),
    #[error("{field} is no longer read: {instead}")]
    Retired {
        field: &'static str,
        instead: &'static str,
    },
    #[error("{field} must be in {range}, got {value}")]
    OutOfRange {
        field: &'static str,
        range: &'static str,
        value: f64,
    },
}

/// Which models feed the anomaly score (all of them by default; the others are for
/// ablation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Models {
    #[default]
    Combined,
    BaselineOnly,
    ForestOnly,
    ShapeOnly,
}

/// A setting earlier versions had: whatever its value, read (their snapshots hold it, so
/// their models carry on) and ignored; a configuration that sets it is refused (see
/// [`DetectorError::Retired`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retired;

impl<'de> Deserialize<'de> for Retired {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(deserializer).map(|_| Self)
    }
}

/// Everything a [`SeriesDetector`] needs: one set of defaults for every series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeriesDetectorConfig {
    pub models: Models,
    pub transform: Transform,
    pub baseline: BaselineConfig,
    pub forest: OnlineForestConfig,
    pub shape: ShapeConfig,
    pub likelihood: LikelihoodConfig,
    pub forecast: ForecastConfig,
    /// After an alarm (a likelihood at or above `alarm_level`), scores are capped below
    /// that level for this many seconds of the series' own time: one alarm when an
    /// incident starts, not a page per point. NAB, like a pager, counts only the first
    /// detection of an incident. An incident lasts a while, not a number of rows: the
    /// 120 points this was before meant 10 hours on 5-minute data but 5 days on hourly
    /// data, where it hid every burst after the first (`bench/crossval.sh`: 2 to 8 hours
    /// score alike on both corpora; from 12 hours a category of the service telemetry
    /// falls off a cliff).
    pub suppress_s: i64,
    /// The suppression in points of earlier versions, read from their snapshots so that
    /// their models carry on (and refused in a configuration, see `check_levels`).
    #[serde(default, rename = "suppress_points", skip_serializing)]
    pub retired_suppress_points: Option<Retired>,
    pub alarm_level: f64,
    /// Points the baseline learns before its surprise feeds the likelihood.
    pub warmup_points: usize,
    /// `|z|` at which the baseline's raw surprise reaches 1.
    pub z_saturation: f64,
    /// Weight of the forest in the combined raw surprise (the baseline has the rest).
    pub forest_weight: f64,
    /// A value beyond the range seen so far by more than this fraction of the range has
    /// likelihood 1 (the "spatial anomaly" of NAB's Numenta detector, whose 5% this is);
    /// 0: off.
    pub spatial_tolerance: f64,
    /// The range forgets its extremes with this time constant, in points, so that one
    /// early outlier does not hide every later one; 0: the range of all points seen. The
    /// default, 139 days at a point a minute, forgets slowly: a range that shrinks
    /// through quiet weeks makes ordinary swings look new (on NAB, shorter horizons
    /// raised false alarms).
    pub spatial_horizon: usize,
    /// A level held for a while that the series has never held before (its floor above
    /// every earlier floor, or its ceiling below every earlier ceiling) has likelihood 1,
    /// like a value beyond the range. Its ranges forget at `spatial_horizon` too.
    pub envelope: EnvelopeConfig,
    /// The spike channel of earlier versions, read from their snapshots and refused in a
    /// configuration: its gain was one window of one development file (see
    /// docs/experiments.md).
    #[serde(default, rename = "spike", skip_serializing)]
    pub retired_spike: Option<Retired>,
    /// While the full model warms up, an obvious change still alarms (see
    /// [`super::cold`]).
    pub cold_start: ColdStartConfig,
}

impl SeriesDetectorConfig {
    /// These settings with the ones that only judge what the models say (the alarm
    /// level, suppression, warm-up, the spatial tolerance, forecasts) at their defaults,
    /// and without planned events (a calendar, not model state).
    fn state_settings(&self) -> Self {
        let defaults = Self::default();
        Self {
            baseline: BaselineConfig {
                events: Vec::new(),
                ..self.baseline.clone()
            },
            suppress_s: defaults.suppress_s,
            retired_suppress_points: None,
            retired_spike: None,
            alarm_level: defaults.alarm_level,
            warmup_points: defaults.warmup_points,
            spatial_tolerance: defaults.spatial_tolerance,
            forecast: defaults.forecast,
            cold_start: defaults.cold_start,
            ..self.clone()
        }
    }

    /// Whether a model learnt under `other` goes on under these settings: they differ at
    /// most in how its scores are judged, not in what it learns or keeps.
    pub fn keeps_state_of(&self, other: &Self) -> bool {
        self.state_settings() == other.state_settings()
    }

    /// The levels and weights, each in the range where it means something: an alarm
    /// level of 2 or NaN would never alarm, one of -1 would alarm on every point.
    fn check_levels(&self) -> Result<(), DetectorError> {
        let check = |field, range, value: f64, valid: bool| match valid {
            true => Ok(()),
            false => Err(DetectorError::OutOfRange {
                field,
                range,
                value,
            }),
        };
        let retired = [
            (
                self.retired_suppress_points,
                "suppress_points",
                "set suppress_s, the seconds an alarm suppresses the next (e.g. 21600 for 6 hours)",
            ),
            (
                self.retired_spike,
                "spike",
                "the spike channel was removed; delete the section",
            ),
        ];
        if let Some(&(_, field, instead)) = retired.iter().find(|(set, ..)| set.is_some()) {
            return Err(DetectorError::Retired { field, instead });
        }
        let (alarm, z, weight) = (self.alarm_level, self.z_saturation, self.forest_weight);
        let tolerance = self.spatial_tolerance;
        let suppress = self.suppress_s as f64;
        check("suppress_s", "[0, inf)", suppress, suppress >= 0.0)?;
        check("alarm_level", "(0, 1]", alarm, alarm > 0.0 && alarm <= 1.0)?;
        check("z_saturation", "(0, inf)", z, z > 0.0 && z.is_finite())?;
        check(
            "forest_weight",
            "[0, 1]",
            weight,
            (0.0..=1.0).contains(&weight),
        )?;
        check(
            "spatial_tolerance",
            "[0, inf)",
            tolerance,
            tolerance >= 0.0 && tolerance.is_finite(),
        )
    }
}

impl Default for SeriesDetectorConfig {
    fn default() -> Self {
        Self {
            models: Models::Combined,
            transform: Transform::Auto,
            baseline: BaselineConfig::default(),
            forest: OnlineForestConfig::default(),
            shape: ShapeConfig::default(),
            likelihood: LikelihoodConfig::default(),
            forecast: ForecastConfig::default(),
            suppress_s: 6 * 3600,
            retired_suppress_points: None,
            alarm_level: 0.5,
            warmup_points: 100,
            z_saturation: 12.0,
            forest_weight: 0.25,
            spatial_tolerance: 0.05,
            spatial_horizon: 200_000,
            envelope: EnvelopeConfig::default(),
            retired_spike: None,
            cold_start: ColdStartConfig::default(),
        }
    }
}

/// What drove a point's likelihood: the channel or rule whose verdict it is, so that an
/// alarm can say why it fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Driver {
    /// The cold-start rule: an obvious change of a series too young for the full model.
    ColdStart,
    /// A value beyond the range seen so far (the spatial rule).
    BeyondRange,
    /// A level never held before (the envelope).
    NewLevel,
    /// The baseline's residual: far from the seasonal expectation, for a while.
    Baseline,
    /// The isolation forest: an unusual recent window of values and residuals.
    Forest,
    /// Shape novelty: a stretch unlike every earlier one.
    Shape,
}

impl Driver {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ColdStart => "cold_start",
            Self::BeyondRange => "beyond_range",
            Self::NewLevel => "new_level",
            Self::Baseline => "baseline",
            Self::Forest => "forest",
            Self::Shape => "shape",
        }
    }
}

/// What the detector says about one point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Score {
    /// The anomaly score to alert on, in [0, 1].
    pub score: f64,
    /// The likelihood before alarm suppression, in [0, 1].
    pub likelihood: f64,
    /// Raw surprise of the baseline and the forest (what their likelihood is fed), in
    /// [0, 1].
    pub raw: f64,
    pub expected: f64,
    pub lower: f64,
    pub upper: f64,
    /// Distance from the expectation in scales.
    pub z: f64,
    /// Isolation forest score in [0, 1] (0.5 before the first fit).
    pub forest: f64,
    /// Shape novelty in [0, 1]: the latest stretch's distance to the nearest earlier one,
    /// over [`ShapeConfig::saturation`] of the range.
    pub shape: f64,
    pub warning: Option<Warning>,
    /// What drove the likelihood (`None` while it is 0).
    pub driver: Option<Driver>,
}

impl Score {
    /// A point scored before the detector has learnt anything.
    fn quiet(value: f64) -> Self {
        Self {
            score: 0.0,
            likelihood: 0.0,
            raw: 0.0,
            expected: value,
            lower: value,
            upper: value,
            z: 0.0,
            forest: 0.5,
            shape: 0.0,
            warning: None,
            driver: None,
        }
    }
}

/// Points seen before the transform is chosen (and scored as quiet).
const TRANSFORM_DECISION_POINTS: usize = 64;
/// Suppressed scores stay below this fraction of the alarm level.
const SUPPRESSED: f64 = 0.99;
/// The running detector of one series: its channels (see [`super::channel`]) composed.
///
/// # Snapshots
/// A detector is its own snapshot (`serde`). Fields were added over time; a snapshot from
/// before one restores it as follows, and [`SeriesDetector::complete_restored`] is the one
/// place that finishes what a restore left open:
///
/// | state | missing from snapshots taken before | restored as |
/// |---|---|---|
/// | `previous_value` (forest) | the step feature | 0: one odd step feature |
/// | `range` | the spatial rule's range | the baseline's band, on the next point |
/// | `shape` | shape novelty | empty, with the default settings' sizes |
/// | `shape_likelihood` | shape novelty's own likelihood | made from the likelihood settings on the next point |
/// | `envelope` | the envelope rule | empty: it waits for its history again |
///
/// The forest itself is never stored: it is refitted from the stored feature window (same
/// seed, same forest) on the first point after a restore.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeriesDetector {
    config: SeriesDetectorConfig,
    baseline: SeasonalBaseline,
    likelihood: AnomalyLikelihood,
    #[serde(flatten)]
    forest: OnlineForest,
    /// When the last alarm was raised (the series' own time).
    #[serde(default)]
    last_alarm_ms: Option<i64>,
    /// The transform in use, once chosen; the points before that wait in `pending`.
    transform: Option<Transform>,
    pending: Vec<(i64, f64)>,
    drift: ResidualDrift,
    /// Smallest and largest value seen, forgetting at `spatial_horizon`.
    #[serde(default)]
    range: Option<(f64, f64)>,
    #[serde(default)]
    shape: ShapeNovelty,
    /// The likelihood of the shape novelty, kept apart from the other channels' so each is
    /// judged against its own history; `None` only when restored from before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shape_likelihood: Option<AnomalyLikelihood>,
    #[serde(default)]
    envelope: Envelope,
    /// The values of a young series, for the cold-start rule; empty once warm.
    #[serde(default)]
    cold: ColdStart,
    /// Points in a row the forecast has warned on.
    #[serde(default)]
    warning_streak: u32,
}

impl SeriesDetector {
    /// Builds a detector, checking every setting first.
    pub fn new(config: SeriesDetectorConfig) -> Result<Self, DetectorError> {
        config.check_levels()?;
        let detector = Self {
            baseline: config.baseline.build()?,
            likelihood: config.likelihood.build()?,
            forest: config.forest.build()?,
            shape: config.shape.build()?,
            shape_likelihood: Some(config.likelihood.build()?),
            envelope: config.envelope.build()?,
            cold: config.cold_start.build()?,
            warning_streak: 0,
            last_alarm_ms: None,
            // Only `Auto` needs the first points to decide.
            transform: (config.transform != Transform::Auto).then_some(config.transform),
            pending: Vec::new(),
            drift: ResidualDrift::default(),
            range: None,
            config,
        };
        Ok(detector)
    }

    pub fn config(&self) -> &SeriesDetectorConfig {
        &self.config
    }

    /// Points learnt so far (those waiting for the transform included).
    pub fn points_seen(&self) -> u64 {
        self.baseline.seen() + self.pending.len() as u64
    }

    /// Whether the full model is still warming up: until its baseline has learnt
    /// `warmup_points` and its likelihood then `likelihood.min_history` more, only an
    /// obvious change alarms (the cold-start rule).
    pub fn is_learning(&self) -> bool {
        let ready = self.config.warmup_points + self.config.likelihood.min_history;
        self.transform.is_none() || self.baseline.seen() < ready as u64
    }

    /// Goes on under `config` (checked by the caller) if it keeps this detector's state
    /// ([`SeriesDetectorConfig::keeps_state_of`]); returns whether it does.
    pub fn reconfigure(&mut self, config: &SeriesDetectorConfig) -> bool {
        if !config.keeps_state_of(&self.config) {
            return false;
        }
        self.config = config.clone();
        // The channels' own copies of their settings come from the checked configuration,
        // never from the snapshot, which could hold any value.
        self.baseline.set_config(config.baseline.clone());
        self.likelihood.set_config(config.likelihood.clone());
        if let Some(shape_likelihood) = &mut self.shape_likelihood {
            shape_likelihood.set_config(config.likelihood.clone());
        }
        true
    }

    pub fn baseline(&self) -> &SeasonalBaseline {
        &self.baseline
    }

    /// Bytes of online state: the detector itself and what it holds on the heap.
    pub fn state_bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.heap_bytes()
    }

    /// Scores the point at `timestamp_ms` from what came before, then learns it.
    pub fn update(&mut self, timestamp_ms: i64, value: f64) -> Score {
        let cold = self.cold_start(value);
        let obvious = cold.obvious;
        if self.transform.is_none() {
            self.pending.push((timestamp_ms, value));
            if self.pending.len() < TRANSFORM_DECISION_POINTS {
                let likelihood = if obvious { 1.0 } else { 0.0 };
                let (expected, reach) = cold.band.unwrap_or((value, 0.0));
                return Score {
                    score: self.suppress(likelihood, timestamp_ms),
                    likelihood,
                    driver: obvious.then_some(Driver::ColdStart),
                    expected,
                    lower: expected - reach,
                    upper: expected + reach,
                    ..Score::quiet(value)
                };
            }
            let values: Vec<f64> = self.pending.iter().map(|&(_, v)| v).collect();
            self.transform = Some(self.config.transform.choose(&values));
            // Replay the buffered points before this one; their scores were already given
            // (as quiet), so an alarm among them was never raised and must not suppress
            // the next ones. This point is scored below, like any other.
            let mut pending = std::mem::take(&mut self.pending);
            pending.pop();
            let last_alarm_ms = self.last_alarm_ms;
            for (t, v) in pending {
                self.learn_and_score(t, v, false);
            }
            self.last_alarm_ms = last_alarm_ms;
        }
        self.learn_and_score(timestamp_ms, value, obvious)
    }

    /// Whether `value` is an obvious change of a series too young for the full model
    /// (see [`super::cold`]); once the model is warm, the rule forgets its values.
    fn cold_start(&mut self, value: f64) -> ColdVerdict {
        if !self.is_learning() {
            self.cold.retire();
            return ColdVerdict::default();
        }
        self.cold.update(ColdPoint {
            config: &self.config.cold_start,
            value,
        })
    }

    /// Scores and learns one point; `obvious` when the cold-start rule judged it an
    /// obvious change (only while the full model warms up).
    fn learn_and_score(&mut self, timestamp_ms: i64, value: f64, obvious: bool) -> Score {
        let transform = self.transform.unwrap_or_default();
        // The detector's choice is the one source of truth (a snapshot from before the
        // baseline kept it restores the baseline's as `None`).
        self.baseline.set_transform(transform);
        // Asked before the baseline learns this point: a fresh detector has seen nothing.
        let restored = self.baseline.seen() > 0;
        let point = self.baseline.update((timestamp_ms, transform.apply(value)));
        if restored {
            self.complete_restored(&point);
        }
        // The baseline judges a planned event's values against the plan. The other models
        // judge what the value would have been without it: a planned peak is then an
        // ordinary value, and a planned peak that did not come a drop. They learn from it
        // too, so an event does not widen the range or teach a shape.
        let value = point.event.map_or(value, |event| event.remove(value));
        let forest_score = self.forest.update(ForestPoint {
            config: &self.config.forest,
            z: point.z,
            value: transform.apply(value),
            fit: matches!(self.config.models, Models::Combined | Models::ForestOnly),
        });
        let (raw, raw_driver) = self.raw_surprise(point.z, forest_score);
        let beyond = self.beyond_range(value);
        let new_level = self.envelope.update(EnvelopePoint {
            timestamp_ms,
            value,
            config: &self.config.envelope,
            forget: self.forget(),
        });
        let shape = match self.config.models {
            Models::Combined | Models::ShapeOnly => {
                // Compared with the expectation as the value is: without the event's effect.
                let expected = transform.invert(point.expected);
                let expected = point.event.map_or(expected, |event| event.remove(expected));
                self.shape_surprise(value, expected)
            }
            Models::BaselineOnly | Models::ForestOnly => 0.0,
        };
        // The baseline's first points are too rough to teach the likelihood what is normal.
        let warmed_up = self.baseline.seen() >= self.config.warmup_points as u64;
        // Until the likelihood has its history it says nothing, and the cold-start rule
        // speaks for the series (it gave way at the baseline's warm-up before, which left
        // a gap of `min_history` points where only the range could alarm: on hourly data,
        // the first eight days of a series).
        let (likelihood, driver) = if warmed_up {
            self.channel_likelihood(raw, raw_driver, shape)
        } else {
            (0.0, raw_driver)
        };
        let (likelihood, driver) = if obvious {
            (1.0, Driver::ColdStart)
        } else {
            (likelihood, driver)
        };
        // A value well beyond everything seen so far is anomalous whatever the models say:
        // they adapt to a slow climb towards it, and their surprise may be spent by then.
        // So is a level never held before: they adapt to it within its first hours.
        let (likelihood, driver) = match (beyond, new_level) {
            (true, _) if warmed_up => (1.0, Driver::BeyondRange),
            (false, true) if warmed_up => (1.0, Driver::NewLevel),
            _ => (likelihood, driver),
        };
        // A planned shift (a deploy) raises nothing while it lasts; the models learn it.
        let shifting = point.event == Some(EventEffect::Shift);
        let likelihood = if shifting {
            likelihood.min(SUPPRESSED * self.config.alarm_level)
        } else {
            likelihood
        };
        let score = self.suppress(likelihood, timestamp_ms);
        // A missing value is no residual (the baseline scores it as 0): it must not pull
        // the drift towards the expectation.
        if value.is_finite() {
            self.drift.update(point.z * point.scale);
        }
        // A band still being learnt says nothing about where the series is heading, and
        // a series recovering from an alarm (still unlikely since it) heads back: no
        // warning then.
        let recovering = self.suppressing(timestamp_ms) && likelihood >= self.config.alarm_level;
        let warning = if warmed_up && !recovering && !shifting {
            early_warning(
                &self.baseline,
                &self.drift,
                &self.config.forecast,
                timestamp_ms,
                point.upper - point.expected,
                |v| transform.invert(v),
            )
        } else {
            None
        };
        // Sustained: raised once the forecast has said so on `persistence` points in a row.
        self.warning_streak = match warning {
            Some(_) => self.warning_streak.saturating_add(1),
            None => 0,
        };
        let warning = warning.filter(|_| self.warning_streak >= self.config.forecast.persistence);
        Score {
            score: score.clamp(0.0, 1.0),
            likelihood,
            raw,
            expected: transform.invert(point.expected),
            lower: transform.invert(point.lower),
            upper: transform.invert(point.upper),
            z: point.z,
            forest: forest_score,
            shape,
            warning,
            driver: (likelihood > 0.0).then_some(driver),
        }
    }

    /// Finishes what a restore from an older snapshot left open (see the type's
    /// documentation), once the baseline has judged the first point after it.
    fn complete_restored(&mut self, point: &BaselinePoint) {
        if self.range.is_none() {
            // Started at one value, the next wiggle would read as beyond everything seen.
            // The band is what the baseline has learnt to call ordinary.
            let transform = self.transform.unwrap_or_default();
            self.range = Some((transform.invert(point.lower), transform.invert(point.upper)));
        }
        if self.shape_likelihood.is_none() {
            // From the detector's own likelihood settings: a default would ignore them.
            self.shape_likelihood = Some(AnomalyLikelihood::from_checked(
                self.config.likelihood.clone(),
            ));
        }
    }

    /// The raw surprise the likelihood is fed: the baseline's `|z|` against its saturation,
    /// and (combined) the forest's score above its floor, weighted; with the model whose
    /// share of it is the larger.
    fn raw_surprise(&self, z: f64, forest_score: f64) -> (f64, Driver) {
        let baseline_raw = (z.abs() / self.config.z_saturation).min(1.0);
        let floor = self.config.forest.score_floor.clamp(0.0, 0.99);
        let forest_raw = ((forest_score - floor) / (1.0 - floor)).clamp(0.0, 1.0);
        match self.config.models {
            Models::Combined => {
                let w = self.config.forest_weight.clamp(0.0, 1.0);
                let (baseline, forest) = ((1.0 - w) * baseline_raw, w * forest_raw);
                let driver = if forest > baseline {
                    Driver::Forest
                } else {
                    Driver::Baseline
                };
                (baseline + forest, driver)
            }
            Models::BaselineOnly | Models::ShapeOnly => (baseline_raw, Driver::Baseline),
            Models::ForestOnly => (forest_raw, Driver::Forest),
        }
    }

    /// The likelihood of the point from the channels the configuration combines: with
    /// both, the larger deviation of the two likelihoods (raw surprise, shape) decides,
    /// and drives it.
    fn channel_likelihood(&mut self, raw: f64, raw_driver: Driver, shape: f64) -> (f64, Driver) {
        let shape_likelihood = self
            .shape_likelihood
            .get_or_insert_with(|| AnomalyLikelihood::from_checked(self.config.likelihood.clone()));
        match self.config.models {
            Models::Combined => {
                let deviation = self.likelihood.update(raw);
                let shape_deviation = shape_likelihood.update(shape);
                // Ties go to the raw surprise.
                let (deviation, driver) = match (deviation, shape_deviation) {
                    (Some(raw), Some(shape)) if shape > raw || raw.is_nan() => {
                        (Some(shape), Driver::Shape)
                    }
                    (None, Some(shape)) => (Some(shape), Driver::Shape),
                    (raw, _) => (raw, raw_driver),
                };
                (deviation.map_or(0.0, likelihood_of_deviation), driver)
            }
            Models::BaselineOnly | Models::ForestOnly => {
                (self.likelihood.update_likelihood(raw), raw_driver)
            }
            Models::ShapeOnly => (shape_likelihood.update_likelihood(shape), Driver::Shape),
        }
    }

    /// The shape novelty of the stretch `value` ends, in [0, 1]: its distance to the nearest
    /// earlier stretch relative to the range of values seen (the same range the spatial
    /// rule keeps, so a series' own swings set the yardstick). Values enter pulled towards
    /// `expected` by the dead zone.
    fn shape_surprise(&mut self, value: f64, expected: f64) -> f64 {
        let span = self.range.map_or(0.0, |(low, high)| high - low);
        let value = if value.is_finite() {
            shrink_towards(value, expected, self.config.shape.dead_zone * span)
        } else {
            // A missing value carries the pattern on, so that the stretches after it stay
            // in step with those before: skipped, it would shift a rhythm by one point,
            // and at the expectation, break it; either would look new.
            self.shape.continuation().unwrap_or(expected)
        };
        let Some(distance) = self.shape.update(value) else {
            return 0.0;
        };
        if !(span > 0.0 && span.is_finite()) {
            return 0.0;
        }
        (distance / span / self.config.shape.saturation.max(f64::MIN_POSITIVE)).clamp(0.0, 1.0)
    }

    /// Whether `value` lies beyond the range seen so far by more than the tolerance (never,
    /// with the spatial rule off); then widens the range. The range is kept either way:
    /// shape novelty measures distances against it.
    fn beyond_range(&mut self, value: f64) -> bool {
        if !value.is_finite() {
            return false;
        }
        let Some((low, high)) = self.range else {
            self.range = Some((value, value));
            return false;
        };
        let tolerance = self.config.spatial_tolerance;
        let margin = (high - low) * tolerance;
        let beyond =
            tolerance > 0.0 && high > low && (value > high + margin || value < low - margin);
        self.range = Some(forget_towards(self.range, value, self.forget()));
        beyond
    }

    /// How far the range's extremes move towards each value (see `spatial_horizon`).
    fn forget(&self) -> f64 {
        match self.config.spatial_horizon {
            0 => 0.0,
            horizon => 1.0 / horizon as f64,
        }
    }

    /// An alarm is a likelihood at or above `alarm_level`; for `suppress_s` after one,
    /// scores are capped just below that level.
    fn suppress(&mut self, likelihood: f64, timestamp_ms: i64) -> f64 {
        if self.suppressing(timestamp_ms) {
            return likelihood.min(SUPPRESSED * self.config.alarm_level);
        }
        if likelihood >= self.config.alarm_level {
            self.last_alarm_ms = Some(timestamp_ms);
        }
        likelihood
    }

    /// Whether an alarm was raised less than `suppress_s` before `timestamp_ms`.
    fn suppressing(&self, timestamp_ms: i64) -> bool {
        self.last_alarm_ms.is_some_and(|at| {
            timestamp_ms.saturating_sub(at) < self.config.suppress_s.saturating_mul(1000)
        })
    }

    /// Bytes this detector holds on the heap, the fitted forest included.
    pub fn heap_bytes(&self) -> usize {
        self.baseline.heap_bytes()
            + self.likelihood.heap_bytes()
            + self.forest.heap_bytes()
            + self.shape.heap_bytes()
            + self
                .shape_likelihood
                .as_ref()
                .map_or(0, AnomalyLikelihood::heap_bytes)
            + self.envelope.heap_bytes()
            + self.cold.heap_bytes()
            + self.pending.capacity() * 16
    }
}

/// `value` moved `width` towards `expected`, and no further (a soft threshold of its
/// departure). A value, expectation or width that is not finite leaves the value as it is.
fn shrink_towards(value: f64, expected: f64, width: f64) -> f64 {
    if !(expected.is_finite() && width.is_finite() && width > 0.0) {
        return value;
    }
    let departure = value - expected;
    expected + departure.signum() * (departure.abs() - width).max(0.0)
}

#[cfg(test)]
mod tests {
    use std::ops::Range;

    use super::*;
    use crate::model::baseline::{EventEffect, PlannedEvent};
    use proptest::prelude::*;

    fn wave(i: i64) -> f64 {
        10.0 + (i as f64 / 20.0).sin() + 0.1 * ((i * 37 % 11) as f64)
    }

    #[test]
    fn a_level_never_held_before_alarms_though_it_comes_on_slowly() {
        // Noise with a spike every 500 points, then from 3000 a climb over 500 points to a
        // level far below the spikes: every model adapts to the climb, but the floor of the
        // series has never been that high.
        let value = |i: i64| {
            let spike = if i % 500 == 250 && i < 3000 {
                100.0
            } else {
                0.0
            };
            let climb = ((i - 3000).max(0) as f64 / 100.0).min(5.0);
            10.0 + ((i * 7919) % 101) as f64 / 100.0 + spike + climb
        };
        let first_alarm = |envelope| {
            let config = SeriesDetectorConfig {
                envelope,
                ..SeriesDetectorConfig::default()
            };
            let mut detector = SeriesDetector::new(config).unwrap();
            (0..4000)
                .map(|i| (i, detector.update(i * 300_000, value(i)).score))
                .find(|&(i, score)| i >= 2900 && score >= 0.5)
                .map(|(i, _)| i)
        };
        let off = EnvelopeConfig {
            window: 0,
            ..EnvelopeConfig::default()
        };
        assert_eq!(first_alarm(off), None);
        let alarm = first_alarm(EnvelopeConfig::default());
        assert!(
            alarm.is_some_and(|i| (3000..3500).contains(&i)),
            "{alarm:?}"
        );
    }

    #[test]
    fn a_restored_snapshot_scores_exactly_like_the_original() {
        let mut detector = SeriesDetector::new(SeriesDetectorConfig::default()).unwrap();
        for i in 0..1300 {
            detector.update(i * 60_000, wave(i));
        }
        let snapshot = serde_json::to_string(&detector).unwrap();
        let mut restored: SeriesDetector = serde_json::from_str(&snapshot).unwrap();
        for i in 1300..2000 {
            let value = if i == 1500 { 50.0 } else { wave(i) };
            let a = detector.update(i * 60_000, value);
            let b = restored.update(i * 60_000, value);
            assert_eq!(a.score.to_bits(), b.score.to_bits(), "point {i}");
            assert_eq!(a.forest.to_bits(), b.forest.to_bits(), "point {i}");
            assert_eq!(a.shape.to_bits(), b.shape.to_bits(), "point {i}");
        }
    }

    #[test]
    fn a_snapshot_from_before_shape_novelty_still_restores() {
        // With likelihood settings of its own, which the restored shape likelihood takes.
        let likelihood = LikelihoodConfig {
            short_window: 7,
            ..LikelihoodConfig::default()
        };
        let config = SeriesDetectorConfig {
            likelihood: likelihood.clone(),
            ..SeriesDetectorConfig::default()
        };
        let mut detector = SeriesDetector::new(config).unwrap();
        for i in 0..1300 {
            detector.update(i * 60_000, wave(i));
        }
        let mut snapshot = serde_json::to_value(&detector).unwrap();
        let fields = snapshot.as_object_mut().unwrap();
        assert!(fields.remove("shape").is_some());
        assert!(fields.remove("shape_likelihood").is_some());
        fields["config"].as_object_mut().unwrap().remove("shape");
        let mut restored: SeriesDetector = serde_json::from_value(snapshot).unwrap();
        // Snapshotted again before an update, it still has no `shape_likelihood` (not a
        // `null` that builds from before could not read).
        let again = serde_json::to_value(&restored).unwrap();
        assert!(
            again.get("shape_likelihood").is_none(),
            "{}",
            again["shape_likelihood"]
        );
        for i in 1300..2000 {
            let s = restored.update(i * 60_000, wave(i));
            assert!((0.0..=1.0).contains(&s.score), "{s:?}");
        }
        let shape_likelihood = serde_json::to_value(&restored).unwrap()["shape_likelihood"].clone();
        assert_eq!(
            shape_likelihood["config"],
            serde_json::to_value(&likelihood).unwrap()
        );
    }

    #[test]
    fn a_snapshot_with_the_retired_spike_channel_restores_without_it() {
        let mut detector = SeriesDetector::new(SeriesDetectorConfig::default()).unwrap();
        for i in 0..1300 {
            detector.update(i * 60_000, wave(i));
        }
        let mut snapshot = serde_json::to_value(&detector).unwrap();
        // As earlier versions wrote it: the channel's settings and its likelihood.
        snapshot["config"]["spike"] = serde_json::json!({"short_window": 2, "handicap": 3.0});
        snapshot["spike_likelihood"] = serde_json::json!({"short": [0.1, 0.2]});
        let mut restored: SeriesDetector = serde_json::from_value(snapshot).unwrap();
        assert!(restored.reconfigure(&SeriesDetectorConfig::default()));
        let again = serde_json::to_value(&restored).unwrap();
        assert!(again.get("spike_likelihood").is_none());
        assert!(again["config"].get("spike").is_none());
        for i in 1300..2000 {
            let s = restored.update(i * 60_000, wave(i));
            assert!(s.score < 0.5, "point {i}: {s:?}");
        }
        let config: SeriesDetectorConfig =
            serde_json::from_str(r#"{"spike": {"handicap": 3}}"#).unwrap();
        let error = SeriesDetector::new(config).unwrap_err().to_string();
        assert!(error.starts_with("spike is no longer read"), "{error}");
    }

    #[test]
    fn a_snapshot_from_before_the_range_was_kept_restores_without_false_alarms() {
        let mut detector = SeriesDetector::new(SeriesDetectorConfig::default()).unwrap();
        for i in 0..1300 {
            detector.update(i * 60_000, wave(i));
        }
        let mut snapshot = serde_json::to_value(&detector).unwrap();
        assert!(snapshot.as_object_mut().unwrap().remove("range").is_some());
        let mut restored: SeriesDetector = serde_json::from_value(snapshot).unwrap();
        let peak = (1300..1600)
            .map(|i| restored.update(i * 60_000, wave(i)).score)
            .fold(0.0, f64::max);
        assert!(peak < 0.5, "{peak}");
    }

    #[test]
    fn missing_values_leave_the_forecast_drift_where_it_was() {
        let mut detector = SeriesDetector::new(SeriesDetectorConfig::default()).unwrap();
        for i in 0..1500 {
            detector.update(i * 60_000, wave(i) + if i >= 1400 { 2.0 } else { 0.0 });
        }
        let drift = |d: &SeriesDetector| serde_json::to_value(d).unwrap()["drift"].clone();
        let before = drift(&detector);
        for i in 1500..1550 {
            detector.update(i * 60_000, f64::NAN);
        }
        assert_eq!(drift(&detector), before);
    }

    #[test]
    fn a_spike_after_a_calm_stretch_raises_an_alarm() {
        let mut detector = SeriesDetector::new(SeriesDetectorConfig::default()).unwrap();
        let mut calm_max: f64 = 0.0;
        for i in 0..1500 {
            let s = detector.update(i * 60_000, wave(i));
            if i > 800 {
                calm_max = calm_max.max(s.score);
            }
        }
        let spike = (1500..1510)
            .map(|i| detector.update(i * 60_000, wave(i) + 30.0).score)
            .fold(0.0, f64::max);
        assert!(spike >= detector.config().alarm_level, "{spike}");
        assert!(spike > calm_max, "{spike} vs {calm_max}");
    }

    #[test]
    fn a_rhythm_that_stops_inside_the_band_alarms_through_its_shape_only() {
        // A fast oscillation (period 7: no daily season) with a little noise, then the
        // series sticks at its middle, a value it passes all the time: never off its band
        // (closer to the expectation than ever), but a stretch like that was never seen.
        let value = |i: i64| {
            let stuck = (3000..3040).contains(&i);
            let phase = if stuck { 0 } else { i % 7 };
            10.0 + 3.0 * (phase as f64 / 7.0 * std::f64::consts::TAU).sin()
                + 0.05 * ((i * 37 % 11) as f64)
        };
        // The envelope sees it too (a floor above every earlier floor, a ceiling below every
        // earlier ceiling): off here, so that the shape is judged alone.
        let peak_in_stuck_stretch = |models| {
            let config = SeriesDetectorConfig {
                models,
                envelope: EnvelopeConfig {
                    window: 0,
                    ..EnvelopeConfig::default()
                },
                ..SeriesDetectorConfig::default()
            };
            let mut detector = SeriesDetector::new(config).unwrap();
            let mut peak = (0.0f64, 0.0f64, f64::INFINITY);
            for i in 0..3040 {
                let s = detector.update(i * 60_000, value(i));
                if i >= 3000 {
                    peak = (
                        peak.0.max(s.score),
                        peak.1.max(s.shape),
                        peak.2.min(s.upper),
                    );
                }
            }
            peak
        };
        let (baseline_score, _, upper) = peak_in_stuck_stretch(Models::BaselineOnly);
        assert!(baseline_score < 0.5, "{baseline_score}");
        assert!(upper > value(3000), "{upper}");
        let (combined_score, shape, _) = peak_in_stuck_stretch(Models::Combined);
        assert!(combined_score >= 0.5, "{combined_score}");
        assert!(shape > 0.5, "{shape}");
        let (shape_score, _, _) = peak_in_stuck_stretch(Models::ShapeOnly);
        assert!(shape_score >= 0.5, "{shape_score}");
    }

    #[test]
    fn a_new_extreme_beyond_the_tolerance_is_an_alarm_and_one_inside_is_not() {
        let mut detector = SeriesDetector::new(SeriesDetectorConfig::default()).unwrap();
        for i in 0..1500 {
            detector.update(i * 60_000, wave(i));
        }
        // The wave spans about 9..12: 12.1 is beyond its top, but within 5% of its range.
        assert!(!detector.beyond_range(12.1));
        assert!(!detector.beyond_range(8.9));
        assert!(detector.beyond_range(12.5));
        let beyond = detector.update(1500 * 60_000, 14.0);
        assert_eq!(beyond.likelihood, 1.0);
        assert!(beyond.score >= detector.config().alarm_level);
        let off = SeriesDetectorConfig {
            spatial_tolerance: 0.0,
            ..SeriesDetectorConfig::default()
        };
        assert!(!SeriesDetector::new(off).unwrap().beyond_range(1e9));
    }

    /// A detector with planned events (`factor` times the usual level) over `ranges` of
    /// points, one a minute.
    fn with_plans(transform: Transform, factor: f64, ranges: &[Range<i64>]) -> SeriesDetector {
        let events = ranges
            .iter()
            .map(|r| PlannedEvent {
                start_ms: r.start * 60_000,
                end_ms: r.end * 60_000,
                effect: EventEffect::Scale { factor },
            })
            .collect();
        let mut config = SeriesDetectorConfig {
            transform,
            ..SeriesDetectorConfig::default()
        };
        config.baseline.events = events;
        SeriesDetector::new(config).unwrap()
    }

    #[test]
    fn a_planned_peak_raises_no_alarm_and_a_planned_peak_that_does_not_come_does() {
        let (came, missing) = (1500..1520, 1800..1820);
        let mut detector = with_plans(Transform::None, 3.0, &[came.clone(), missing.clone()]);
        let (mut peak_came, mut peak_missing) = (0.0f64, 0.0f64);
        for i in 0..1900 {
            // Three times the wave (about 30, far beyond anything seen) while planned.
            let value = if came.contains(&i) {
                3.0 * wave(i)
            } else {
                wave(i)
            };
            let s = detector.update(i * 60_000, value);
            if (1500..1800).contains(&i) {
                peak_came = peak_came.max(s.score);
            }
            if missing.contains(&i) {
                peak_missing = peak_missing.max(s.score);
                assert!(s.upper > 25.0 && value < s.lower, "{i}: {s:?}");
            }
        }
        assert!(peak_came < 0.5, "{peak_came}");
        assert!(peak_missing >= 0.5, "{peak_missing}");
    }

    #[test]
    fn a_planned_doubling_doubles_the_band_with_the_noise() {
        // Noise in proportion to the level, as traffic's is: doubled, it stays unsurprising.
        let noisy = |i: i64| 100.0 * (1.0 + 0.05 * (((i * 7919) % 21 - 10) as f64 / 10.0));
        let sale = 1500..1530;
        let mut detector = with_plans(Transform::None, 2.0, std::slice::from_ref(&sale));
        for i in 0..1530 {
            let value = if sale.contains(&i) {
                2.0 * noisy(i)
            } else {
                noisy(i)
            };
            let s = detector.update(i * 60_000, value);
            if sale.contains(&i) {
                assert!((s.lower..=s.upper).contains(&value), "{i}: {s:?}");
                assert!(s.score < 0.5, "{i}: {s:?}");
            }
        }
    }

    #[test]
    fn a_planned_shift_raises_nothing_and_its_new_level_is_learnt() {
        let shift = 1500..1620;
        let mut config = SeriesDetectorConfig::default();
        config.baseline.events = vec![PlannedEvent {
            start_ms: shift.start * 60_000,
            end_ms: shift.end * 60_000,
            effect: EventEffect::Shift,
        }];
        let mut detector = SeriesDetector::new(config).unwrap();
        let mut after = Vec::new();
        for i in 0..1800 {
            // A deploy lifts the level by half for good.
            let value = if i >= shift.start {
                wave(i) + 15.0
            } else {
                wave(i)
            };
            let s = detector.update(i * 60_000, value);
            if shift.contains(&i) {
                assert!(s.score < 0.5 && s.warning.is_none(), "{i}: {s:?}");
            }
            if i >= shift.end {
                after.push(s.score);
            }
        }
        let worst = after.iter().copied().fold(0.0, f64::max);
        assert!(
            worst < 0.5,
            "the new level still alarms after the deploy: {worst}"
        );
    }

    #[test]
    fn a_planned_doubling_of_a_count_doubles_the_count_not_its_square_root() {
        // Counts around 100, modelled in square-root space; a sale doubles them.
        let count = |i: i64| 100.0 + ((i * 7919) % 21 - 10) as f64;
        let sale = 1500..1530;
        let mut detector = with_plans(Transform::Sqrt, 2.0, std::slice::from_ref(&sale));
        for i in 0..1530 {
            let value = if sale.contains(&i) {
                2.0 * count(i)
            } else {
                count(i)
            };
            let s = detector.update(i * 60_000, value);
            if sale.contains(&i) {
                assert!((s.expected - 200.0).abs() < 15.0, "{i}: {s:?}");
                assert!(s.z.abs() < 4.0 && s.score < 0.5, "{i}: {s:?}");
            }
        }
    }

    #[test]
    fn an_alarm_among_the_replayed_first_points_suppresses_nothing() {
        // The transform is chosen on the first 64 points, which are then replayed. With a
        // short warm-up a replayed point can alarm (100, beyond the wave's range); that
        // alarm was never reported, so it must not hold down the next one (1000, far
        // beyond even that) as a suppression would. (The cold-start rule, which would
        // report the first, is off here.)
        let config = SeriesDetectorConfig {
            warmup_points: 10,
            cold_start: ColdStartConfig {
                min_points: 0,
                ..ColdStartConfig::default()
            },
            ..SeriesDetectorConfig::default()
        };
        let mut detector = SeriesDetector::new(config).unwrap();
        let mut later = 0.0f64;
        for i in 0..100 {
            let value = match i {
                50 => 100.0,
                80 => 1000.0,
                _ => wave(i),
            };
            let s = detector.update(i * 60_000, value);
            if i < 63 {
                assert_eq!(s.score, 0.0, "{i}");
            } else if i == 80 {
                later = s.score;
            }
        }
        assert!(later >= 0.5, "{later}");
    }

    #[test]
    fn a_forest_window_under_32_rows_is_fitted() {
        let config = SeriesDetectorConfig {
            forest: OnlineForestConfig {
                window: 8,
                refit_every: 8,
                ..OnlineForestConfig::default()
            },
            ..SeriesDetectorConfig::default()
        };
        let mut detector = SeriesDetector::new(config).unwrap();
        let forest: Vec<f64> = (0..200)
            .map(|i| detector.update(i * 60_000, wave(i)).forest)
            .collect();
        assert!(forest[100..].iter().any(|&f| f != 0.5), "never fitted");
    }

    #[test]
    fn the_spatial_rule_off_leaves_shape_novelty_on() {
        // The rhythm that stops (as in the shape test above), with the spatial rule off:
        // shape novelty still sees the stuck stretch, against the range of values seen.
        let config = SeriesDetectorConfig {
            models: Models::ShapeOnly,
            spatial_tolerance: 0.0,
            ..SeriesDetectorConfig::default()
        };
        let mut detector = SeriesDetector::new(config).unwrap();
        let mut peak = 0.0f64;
        for i in 0..3040 {
            let phase = if i >= 3000 { 0 } else { i % 7 };
            let value = 10.0 + 3.0 * (phase as f64 / 7.0 * std::f64::consts::TAU).sin();
            let s = detector.update(i * 60_000, value + 0.05 * ((i * 37 % 11) as f64));
            if i >= 3000 {
                peak = peak.max(s.shape);
            }
        }
        assert!(peak > 0.5, "{peak}");
    }

    #[test]
    fn levels_and_weights_outside_their_range_are_refused() {
        let refused =
            |config: SeriesDetectorConfig| SeriesDetector::new(config).unwrap_err().to_string();
        let with = |change: fn(&mut SeriesDetectorConfig)| {
            let mut config = SeriesDetectorConfig::default();
            change(&mut config);
            config
        };
        assert_eq!(
            refused(with(|c| c.alarm_level = f64::NAN)),
            "alarm_level must be in (0, 1], got NaN"
        );
        assert_eq!(
            refused(with(|c| c.alarm_level = 2.0)),
            "alarm_level must be in (0, 1], got 2"
        );
        assert_eq!(
            refused(with(|c| c.alarm_level = -1.0)),
            "alarm_level must be in (0, 1], got -1"
        );
        assert_eq!(
            refused(with(|c| c.z_saturation = 0.0)),
            "z_saturation must be in (0, inf), got 0"
        );
        assert_eq!(
            refused(with(|c| c.forest_weight = 1.5)),
            "forest_weight must be in [0, 1], got 1.5"
        );
        assert_eq!(
            refused(with(|c| c.spatial_tolerance = f64::INFINITY)),
            "spatial_tolerance must be in [0, inf), got inf"
        );
        assert_eq!(
            refused(with(|c| c.forest.score_floor = 1.0)),
            "forest.score_floor must be in [0, 1), got 1"
        );
        assert_eq!(
            refused(with(|c| c.envelope.margin = -0.5)),
            "envelope.margin must be a number at least 0, got -0.5"
        );
        // The edges that mean something are taken.
        assert!(SeriesDetector::new(with(|c| {
            c.alarm_level = 1.0;
            c.forest_weight = 0.0;
            c.spatial_tolerance = 0.0;
            c.envelope.window = 0;
        }))
        .is_ok());
    }

    #[test]
    fn a_missing_value_in_a_rhythm_is_no_anomaly() {
        // A ramp 10..=16 repeating every 7 points; one value, NaN or infinite, is missing.
        for missing in [f64::NAN, f64::INFINITY] {
            let mut detector = SeriesDetector::new(SeriesDetectorConfig::default()).unwrap();
            let (mut score, mut shape) = (0.0f64, 0.0f64);
            for i in 0..600i64 {
                let value = if i == 300 {
                    missing
                } else {
                    10.0 + (i % 7) as f64
                };
                let s = detector.update(i * 300_000, value);
                if i >= 300 {
                    score = score.max(s.score);
                    shape = shape.max(s.shape);
                }
            }
            assert!(score < 0.1, "{missing}: {score}");
            assert!(shape < 0.05, "{missing}: {shape}");
        }
    }

    #[test]
    fn the_continuation_is_what_followed_the_nearest_earlier_stretch() {
        let mut shape = ChannelConfig::build(&ShapeConfig {
            window: 3,
            history: 10,
            ..ShapeConfig::default()
        })
        .unwrap();
        assert_eq!(shape.continuation(), None);
        for value in [1.0, 2.0, 3.0, 9.0, 1.0, 2.0, 3.0, 7.0, 1.0, 2.0] {
            shape.update(value);
        }
        // The latest stretch 7, 1, 2 is nearest 9, 1, 2 (lag 4), followed by 3.
        assert_eq!(shape.continuation(), Some(3.0));
    }

    #[test]
    fn shrinking_pulls_a_value_towards_the_expectation_and_no_further() {
        assert_eq!(shrink_towards(12.0, 10.0, 0.5), 11.5);
        assert_eq!(shrink_towards(8.0, 10.0, 0.5), 8.5);
        assert_eq!(shrink_towards(10.3, 10.0, 0.5), 10.0);
        assert_eq!(shrink_towards(9.8, 10.0, 0.5), 10.0);
        // Nothing to pull towards, or no width: the value as it is.
        assert_eq!(shrink_towards(12.0, f64::NAN, 0.5), 12.0);
        assert_eq!(shrink_towards(12.0, 10.0, 0.0), 12.0);
        assert_eq!(shrink_towards(12.0, 10.0, f64::INFINITY), 12.0);
        assert!(shrink_towards(f64::NAN, 10.0, 0.5).is_nan());
    }

    #[test]
    fn noise_inside_the_dead_zone_is_no_shape_and_an_excursion_is() {
        use rand::{Rng, SeedableRng};
        use rand_xoshiro::Xoshiro256PlusPlus;

        // A level of 10 with noise of +-0.3, after a swing to 15 that sets the range to
        // about 5: the noise is inside the dead zone (about 0.5), the final excursion to 12
        // is not.
        let run = |dead_zone: f64| {
            let mut config = SeriesDetectorConfig {
                models: Models::ShapeOnly,
                ..SeriesDetectorConfig::default()
            };
            config.shape.dead_zone = dead_zone;
            let mut detector = SeriesDetector::new(config).unwrap();
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(5);
            let (mut noise, mut excursion) = (0.0f64, 0.0f64);
            for i in 0..2_000i64 {
                let swing = if (100..110).contains(&i) { 5.0 } else { 0.0 };
                let burst = if i >= 1_990 { 2.0 } else { 0.0 };
                let wiggle = rng.gen_range(-0.3..0.3);
                let s = detector.update(i * 60_000, 10.0 + wiggle + swing + burst);
                if (1_000..1_990).contains(&i) {
                    noise = noise.max(s.shape);
                } else if i >= 1_990 {
                    excursion = excursion.max(s.shape);
                }
            }
            (noise, excursion)
        };
        let (noise, excursion) = run(ShapeConfig::default().dead_zone);
        // What is left is the expectation's own slow drift.
        // What is left is the expectation's own wander (0.02 here).
        assert!(noise < 0.05, "{noise}");
        assert!(excursion > 0.5, "{excursion}");
        // Without the dead zone, stretches of noise are further apart (0.28 here).
        let (plain_noise, _) = run(0.0);
        assert!(plain_noise > 5.0 * noise, "{plain_noise} against {noise}");
    }

    #[test]
    fn an_early_outlier_does_not_hide_a_later_extreme_for_ever() {
        // One outlier at 100, then the wave (about 9..12) for `points`.
        let forgetting = SeriesDetectorConfig {
            spatial_horizon: 20_000,
            ..SeriesDetectorConfig::default()
        };
        let after_outlier = |config: SeriesDetectorConfig, points: i64| {
            let mut detector = SeriesDetector::new(config).unwrap();
            detector.update(0, 100.0);
            for i in 1..=points {
                detector.update(i * 60_000, wave(i));
            }
            detector
        };
        // Right after the outlier, 30 is well inside the range seen.
        assert!(!after_outlier(forgetting.clone(), 200).beyond_range(30.0));
        // Three horizons later the outlier is forgotten: 30 is far above the wave.
        assert!(after_outlier(forgetting, 60_000).beyond_range(30.0));
        let all_time = SeriesDetectorConfig {
            spatial_horizon: 0,
            ..SeriesDetectorConfig::default()
        };
        assert!(!after_outlier(all_time, 60_000).beyond_range(30.0));
    }

    #[test]
    fn state_of_a_one_minute_daily_series_fits_in_64_kib() {
        let mut detector = SeriesDetector::new(SeriesDetectorConfig::default()).unwrap();
        let mut largest = 0;
        for i in 0..5 * 1440i64 {
            let minute_of_day = (i % 1440) as f64;
            let value = 100.0
                + 50.0 * (minute_of_day / 1440.0 * std::f64::consts::TAU).sin()
                + ((i * 7919) % 100) as f64 / 50.0;
            detector.update(i * 60_000, value);
            largest = largest.max(detector.state_bytes());
        }
        assert_eq!(detector.baseline().period_ms(), Some(86_400_000));
        assert!(largest <= 64 * 1024, "{largest} bytes");
        println!(
            "largest state {largest} bytes, final {}",
            detector.state_bytes()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn scores_are_finite_and_in_unit_interval(
            values in proptest::collection::vec(proptest::num::f64::ANY, 1..600),
            gaps in proptest::collection::vec(-5_000i64..600_000, 1..600),
        ) {
            let mut detector = SeriesDetector::new(SeriesDetectorConfig::default()).unwrap();
            let mut t = 0i64;
            for (i, v) in values.iter().enumerate() {
                t += gaps[i % gaps.len()];
                let s = detector.update(t, *v);
                prop_assert!(s.score.is_finite() && (0.0..=1.0).contains(&s.score));
                prop_assert!(s.likelihood.is_finite() && s.raw.is_finite());
            }
        }
    }

    #[test]
    fn a_model_goes_on_under_new_judging_settings_but_not_under_new_learning_ones() {
        let mut detector = SeriesDetector::new(SeriesDetectorConfig::default()).unwrap();
        for i in 0..500 {
            detector.update(i * 60_000, (i % 7) as f64);
        }
        let judging = SeriesDetectorConfig {
            alarm_level: 0.7,
            suppress_s: 600,
            warmup_points: 50,
            spatial_tolerance: 0.1,
            ..SeriesDetectorConfig::default()
        };
        let mut restored: SeriesDetector =
            serde_json::from_str(&serde_json::to_string(&detector).unwrap()).unwrap();
        assert!(restored.reconfigure(&judging));
        assert_eq!(restored.config().alarm_level, 0.7);
        let score = restored.update(500 * 60_000, 3.0);
        assert!((0.0..=1.0).contains(&score.score));
        let learning = SeriesDetectorConfig {
            forest: OnlineForestConfig {
                window: 128,
                ..OnlineForestConfig::default()
            },
            ..SeriesDetectorConfig::default()
        };
        assert!(!detector.reconfigure(&learning));
        assert_eq!(detector.config(), &SeriesDetectorConfig::default());
    }

    /// Scores of a flat, slightly noisy series with two spikes `apart` points apart (the
    /// second bigger), one point every `step_s` seconds.
    fn two_spikes(step_s: i64, apart: i64) -> (f64, f64) {
        let mut detector = SeriesDetector::new(SeriesDetectorConfig::default()).unwrap();
        let (first, second) = (600, 600 + apart);
        let mut scores = (0.0, 0.0);
        for i in 0..700 {
            let value = match i {
                _ if i == first => 100.0,
                _ if i == second => 300.0,
                _ => 10.0 + (i * 7 % 5) as f64,
            };
            let score = detector.update(i * step_s * 1000, value).score;
            if i == first {
                scores.0 = score;
            } else if i == second {
                scores.1 = score;
            }
        }
        scores
    }

    #[test]
    fn an_alarm_suppresses_the_next_for_a_time_not_a_number_of_points() {
        // Twelve points apart: 12 hours on hourly data, two incidents; 12 minutes on
        // minute data, one.
        let (first, second) = two_spikes(3600, 12);
        assert!(first >= 0.5 && second >= 0.5, "hourly: {first} {second}");
        let (first, second) = two_spikes(60, 12);
        assert!(first >= 0.5 && second < 0.5, "per minute: {first} {second}");
    }

    #[test]
    fn a_snapshot_counting_suppression_in_points_restores_but_a_config_is_refused() {
        let mut detector = SeriesDetector::new(SeriesDetectorConfig::default()).unwrap();
        for i in 0..300 {
            detector.update(i * 60_000, (i % 7) as f64);
        }
        let mut json: serde_json::Value = serde_json::to_value(&detector).unwrap();
        json["config"]["suppress_points"] = 120.into();
        json["since_alarm"] = 4.into();
        let mut restored: SeriesDetector = serde_json::from_value(json).unwrap();
        assert!(restored.reconfigure(&SeriesDetectorConfig::default()));
        assert_eq!(restored.config(), &SeriesDetectorConfig::default());
        let config: SeriesDetectorConfig =
            serde_json::from_str(r#"{"suppress_points": 120}"#).unwrap();
        let error = SeriesDetector::new(config).unwrap_err().to_string();
        assert!(error.contains("suppress_s"), "{error}");
    }

    #[test]
    fn a_young_series_pages_once_on_an_obvious_jump_and_the_rule_retires_when_warm() {
        let mut detector = SeriesDetector::new(SeriesDetectorConfig::default()).unwrap();
        let mut scores = Vec::new();
        for i in 0..12 {
            let value = if i < 10 { 25.0 + (i % 3) as f64 } else { 221.0 };
            scores.push(detector.update(i * 15_000, value).score);
        }
        assert!(scores[..10].iter().all(|&s| s == 0.0), "{scores:?}");
        assert!(scores[10] >= 0.5, "the jump pages: {scores:?}");
        assert!(scores[11] < 0.5, "once: {scores:?}");
        for i in 12..400 {
            detector.update(i * 15_000, 25.0 + (i % 3) as f64);
        }
        assert_eq!(detector.cold.heap_bytes(), 0, "retired once warm");
    }
}
