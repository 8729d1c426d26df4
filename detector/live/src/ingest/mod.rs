//! Where samples come from: scraping targets ([`scrape`]), polling Prometheus with PromQL
//! ([`promql`]), Prometheus remote_write ([`remote_write`], routed by `crate::server`), a
//! Kafka topic shared by a group of detectors ([`kafka`]). Every path hands the engine the
//! same `Sample`s, decoded by the core's `omen_detector::wire`.

pub mod body;
pub mod kafka;
pub mod promql;
pub mod remote_write;
pub mod scrape;
