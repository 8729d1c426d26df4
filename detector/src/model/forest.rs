//! The isolation forest online: each point becomes a feature vector (its residual `z`, the
//! mean `z` of the last few points, the value and its step), scored by a forest fitted on
//! a sliding window of earlier vectors and refitted on a schedule. The forest itself is
//! not kept in a snapshot: it is refitted from the kept window (same seed, same rows, so
//! the very same forest) on the first point after a restore.

use std::collections::VecDeque;

use linfa::prelude::ParamGuard;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

use super::channel::{Channel, ChannelConfig};
use super::iforest::{IsolationForest, IsolationForestParams, IsolationForestParamsError};

/// Features per point.
const FEATURES: usize = 4;
/// The forest is first fitted once this many feature rows are kept (or the whole window,
/// if smaller).
const MIN_FIT_ROWS: usize = 32;
/// Points whose `z` the mean feature covers.
const RECENT: usize = 8;

/// Isolation forest settings for online use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OnlineForestConfig {
    pub trees: usize,
    pub subsample: usize,
    pub max_depth: usize,
    /// Recent feature vectors kept to refit on.
    pub window: usize,
    /// Refit every this many points.
    pub refit_every: usize,
    pub seed: u64,
    /// See [`IsolationForestParams::isolate_out_of_range`].
    pub isolate_out_of_range: bool,
    /// Forest scores up to this count as no surprise; the rest is rescaled to [0, 1].
    pub score_floor: f64,
}

impl Default for OnlineForestConfig {
    fn default() -> Self {
        Self {
            trees: 24,
            subsample: 64,
            max_depth: 6,
            window: 256,
            refit_every: 256,
            seed: 42,
            isolate_out_of_range: false,
            score_floor: 0.65,
        }
    }
}

impl OnlineForestConfig {
    /// The forest's hyperparameters, unchecked.
    fn params(&self) -> IsolationForestParams {
        IsolationForestParams::new()
            .trees(self.trees)
            .subsample(self.subsample)
            .max_depth(self.max_depth)
            .seed(self.seed)
            .isolate_out_of_range(self.isolate_out_of_range)
    }
}

/// A forest setting out of its range.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum OnlineForestError {
    /// The forest's own errors are the algorithm's (`trees must be at least 1`); this says
    /// which settings they are.
    #[error("forest: {0}")]
    Params(#[from] IsolationForestParamsError),
    #[error("forest.window must be at least 2")]
    Window(usize),
    #[error("forest.score_floor must be in [0, 1), got {0}")]
    ScoreFloor(f64),
}

impl ChannelConfig for OnlineForestConfig {
    type Channel = OnlineForest;
    type Error = OnlineForestError;

    fn check(&self) -> Result<(), OnlineForestError> {
        self.params().check()?;
        if self.window < 2 {
            return Err(OnlineForestError::Window(self.window));
        }
        if !(0.0..1.0).contains(&self.score_floor) {
            return Err(OnlineForestError::ScoreFloor(self.score_floor));
        }
        Ok(())
    }

    fn build(&self) -> Result<OnlineForest, OnlineForestError> {
        self.check()?;
        Ok(OnlineForest {
            recent_z: VecDeque::with_capacity(RECENT + 1),
            previous_value: 0.0,
            features: VecDeque::with_capacity(self.window + self.refit_every + 1),
            forest: None,
            since_fit: 0,
            fitted_once: false,
        })
    }
}

/// What the forest reads of a point, with its settings (the state keeps none).
#[derive(Debug, Clone, Copy)]
pub struct ForestPoint<'a> {
    pub config: &'a OnlineForestConfig,
    /// The baseline's residual, in scales.
    pub z: f64,
    /// The (transformed) value.
    pub value: f64,
    /// Whether the forest is fitted at all: in ablations without it, only its features are
    /// kept, so its cost is not counted either.
    pub fit: bool,
}

/// The running forest of one series.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct OnlineForest {
    recent_z: VecDeque<f32>,
    /// The last finite (transformed) value, for the step feature.
    #[serde(default)]
    previous_value: f32,
    features: VecDeque<[f32; FEATURES]>,
    #[serde(skip)]
    forest: Option<IsolationForest>,
    since_fit: usize,
    fitted_once: bool,
}

impl OnlineForest {
    /// Features of the point: its residual z and the mean z over the last [`RECENT`]
    /// points (what the baseline says), and the (transformed) value and its step from the
    /// previous one, so the forest also judges where in the recent range of values the
    /// point falls, which a level-and-scale baseline cannot see for a series that moves
    /// between a few states. All finite: a non-finite value repeats the previous one.
    fn feature_vector(&mut self, z: f64, value: f64) -> [f32; FEATURES] {
        const LIMIT: f64 = 1e30;
        let z = z.clamp(-50.0, 50.0) as f32;
        let first = self.recent_z.is_empty();
        self.recent_z.push_back(z);
        if self.recent_z.len() > RECENT {
            self.recent_z.pop_front();
        }
        let mean = self.recent_z.iter().sum::<f32>() / self.recent_z.len() as f32;
        let value = if value.is_finite() {
            value.clamp(-LIMIT, LIMIT)
        } else {
            f64::from(self.previous_value)
        };
        let previous = if first {
            value
        } else {
            f64::from(self.previous_value)
        };
        self.previous_value = value as f32;
        [z, mean, value as f32, (value - previous) as f32]
    }

    /// Fits the forest on the `window` feature rows that end `since_fit` rows before the
    /// newest: the rows of the last scheduled fit, so a restored snapshot rebuilds the
    /// very forest it was taken with.
    fn fit(&mut self, config: &OnlineForestConfig) {
        let end = self.features.len().saturating_sub(self.since_fit);
        let start = end.saturating_sub(config.window);
        let mut records = Array2::zeros((end - start, FEATURES));
        for (i, row) in self.features.range(start..end).enumerate() {
            for (j, &v) in row.iter().enumerate() {
                records[[i, j]] = f64::from(v);
            }
        }
        // Parameters were checked when the channel was built and features are finite
        // (clamped): a failure here can only be too few rows, and then there is no forest.
        self.forest = config
            .params()
            .check()
            .ok()
            .and_then(|p| p.fit_records(records.view()).ok());
        self.fitted_once = true;
    }
}

impl Channel for OnlineForest {
    type Input<'a> = ForestPoint<'a>;
    /// The isolation score in [0, 1]; 0.5 before the first fit.
    type Output = f64;

    fn update(&mut self, point: ForestPoint<'_>) -> f64 {
        let ForestPoint {
            config,
            z,
            value,
            fit,
        } = point;
        let features = self.feature_vector(z, value);
        if fit {
            // Not on fewer than 32 rows, unless the window itself is smaller.
            let rows = MIN_FIT_ROWS.min(config.window);
            if self.since_fit >= config.refit_every && self.features.len() >= rows {
                self.since_fit = 0;
                self.fit(config);
            } else if self.forest.is_none() && self.fitted_once {
                self.fit(config); // restored from a snapshot
            }
        }
        let score = match &self.forest {
            Some(forest) => {
                let row = features.map(f64::from);
                forest.score_slice(&row)
            }
            None => 0.5,
        };
        self.features.push_back(features);
        if self.features.len() > config.window + config.refit_every {
            self.features.pop_front();
        }
        self.since_fit = self.since_fit.saturating_add(1);
        score
    }

    fn heap_bytes(&self) -> usize {
        self.recent_z.capacity() * 4
            + self.features.capacity() * FEATURES * 4
            + self.forest.as_ref().map_or(0, IsolationForest::heap_bytes)
    }
}
