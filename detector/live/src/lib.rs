//! `omen detect`: the detector on live data, around the I/O-free core of `omen-detector`.
//!
//! The data flow, one module a stage:
//! - [`ingest`]: samples arrive by scrape, PromQL polling, or a Kafka topic shared by a
//!   group of detectors; remote_write arrives through the [`server`].
//! - [`engine`], free of I/O: one model per series (the core's `SeriesDetector`),
//!   anomalies correlated into incidents with a probable root cause ([`engine::correlate`]),
//!   alert decisions ([`engine::alert`]).
//! - [`sinks`]: Alertmanager, webhooks and stdout, each with a bounded queue.
//!
//! Beside them: [`state`] is what the tasks share, [`metrics`] writes the engine's scores
//! and self-metrics as Prometheus text, [`snapshot`] keeps model state across restarts,
//! [`kafka`] hands model state and the correlator's role between detectors of a group,
//! and [`runtime`] only wires these together.

pub mod config;
pub mod engine;
pub mod ingest;
pub mod kafka;
pub mod metrics;
pub mod runtime;
pub mod server;
pub mod sinks;
pub mod snapshot;
pub mod state;
