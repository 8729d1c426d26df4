//! What omen's agent and detector both speak, written once.
//!
//! - [`exposition`]: the Prometheus text format (and the OpenMetrics bits the agent
//!   serves): escaping, value formatting, `# HELP`/`# TYPE` headers and sample lines.
//! - [`duration`]: one Prometheus-style duration syntax (`1h30m`, `500ms`, `2d`, `1w`),
//!   with serde helpers for `Duration` and `Option<Duration>` fields.
//! - `kafka` (feature `kafka`): applying a consumer-group rebalance in the group's
//!   protocol (eager or cooperative).
//! - `http` (feature `http`): serving an axum router with a connection cap and timeouts,
//!   and the landing page both servers answer on `/`.
//! - `process` (feature `http`): `process_*` self-metrics and `omen_build_info`.
//! - `tls` (feature `http`): the rustls provider of every server and client.
//! - `web` (feature `http`): TLS and basic auth for every listener, from a web config file
//!   in the Prometheus exporter toolkit's format.
//! - `pki` (feature `pki`, for tests): a CA, server and client certificates made in the test.
//! - `runbooks` (feature `http`): `docs/runbooks.md` as the page both servers answer on
//!   `/runbooks`.
//! - `mutate` (feature `mutate`, for tests): hostile variants of a valid JSON document.
//! - `fuzz` (feature `mutate`, for tests): byte-level fuzzing of parsers as `cargo test`
//!   tests, on proptest's runner.
//!
//! The crate stays small on purpose: no I/O, no runtime, and by default only `serde`,
//! `thiserror` and `itoa` as dependencies, so both halves use it without paying for the
//! other's.

pub mod duration;
pub mod exposition;
#[cfg(feature = "mutate")]
pub mod fuzz;
#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "mutate")]
pub mod mutate;
#[cfg(feature = "pki")]
pub mod pki;
#[cfg(feature = "http")]
pub mod process;
#[cfg(feature = "http")]
pub mod runbooks;
#[cfg(feature = "http")]
pub mod tls;
#[cfg(feature = "http")]
pub mod web;
