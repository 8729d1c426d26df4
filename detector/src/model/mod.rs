//! Streaming per-series models. Each is causal (a point's score uses points up to it
//! only) and serialisable, so the live detector can snapshot and restore it.

pub mod baseline;
pub mod channel;
pub mod cold;
pub mod detector;
pub mod envelope;
pub mod forecast;
pub mod forest;
pub mod iforest;
pub mod likelihood;
pub mod shape;
pub mod tail;
pub mod transform;

pub use channel::{Channel, ChannelConfig};
pub use detector::{Driver, Models, Score, SeriesDetector, SeriesDetectorConfig};
