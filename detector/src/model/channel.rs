//! The shape every channel of a series' detector shares, so that
//! [`SeriesDetector`](super::SeriesDetector) composes them one way.
//!
//! Settings are checked before a channel is built, the way linfa's `ParamGuard` checks
//! hyperparameters before `fit`: [`ChannelConfig::check`] returns only the setting errors
//! it can find, and [`ChannelConfig::build`] checks, then builds. After that nothing can
//! fail: a channel's [`update`](Channel::update) judges one point against what came
//! before, then learns it, whatever the input (a missing or absurd value included). A
//! channel's state is its snapshot (`serde`), and [`Channel::heap_bytes`] is what it holds
//! beyond its own size, for the per-series state budget.
//!
//! | channel | reads per point | says |
//! |---|---|---|
//! | [`SeasonalBaseline`](super::baseline::SeasonalBaseline) | timestamp, value | expectation, band, residual `z` |
//! | [`OnlineForest`](super::forest::OnlineForest) | residual `z`, value | how easily the recent features isolate |
//! | [`ShapeNovelty`](super::shape::ShapeNovelty) | value | distance of the latest stretch to the nearest earlier one |
//! | [`Envelope`](super::envelope::Envelope) | timestamp, value | whether a level never held before is held |
//! | [`AnomalyLikelihood`](super::likelihood::AnomalyLikelihood) | a raw surprise | how many deviations it stands out |
//! | [`ColdStart`](super::cold::ColdStart) | value, while the rest warm up | whether it is an obvious change |

use serde::de::DeserializeOwned;
use serde::Serialize;

/// A channel's settings: checked apart from building, built only once checked.
pub trait ChannelConfig {
    /// What the channel builds into.
    type Channel: Channel;
    /// What is wrong with a setting; each names the setting.
    type Error: std::error::Error + 'static;

    /// Whether every setting is in its range, without building anything.
    fn check(&self) -> Result<(), Self::Error>;

    /// A fresh channel, once the settings are checked.
    fn build(&self) -> Result<Self::Channel, Self::Error>;
}

/// One channel, driven point by point in time order.
pub trait Channel: Serialize + DeserializeOwned {
    /// What the channel reads of a point (and, for a channel that keeps no settings of
    /// its own, the settings it is judged by, so a restored state follows the current
    /// configuration).
    type Input<'a>;
    /// What it says about the point.
    type Output;

    /// Judges the point against what came before, then learns it.
    fn update(&mut self, input: Self::Input<'_>) -> Self::Output;

    /// Bytes held on the heap.
    fn heap_bytes(&self) -> usize;
}
