//! `omen detect`: the detector on live data. Samples arrive by scrape, remote_write,
//! PromQL polling or a Kafka topic shared by a group of detectors; each series gets its own model ([`SeriesDetector`]); anomalies are
//! grouped into incidents with a probable root cause; alerts go to Alertmanager, webhooks
//! and stdout.
//!
//! [`SeriesDetector`]: crate::model::detector::SeriesDetector

pub mod alert;
pub mod config;
pub mod correlate;
pub mod engine;
pub mod kafka;
pub mod runtime;
pub mod server;
pub mod sink;
pub mod source;
