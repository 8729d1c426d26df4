//! Where samples come from: scraping targets ([`scrape`]), polling Prometheus with PromQL
//! ([`promql`]), a Kafka topic shared by a group of detectors ([`kafka`]); remote_write
//! arrives through the server (`crate::server`) and is decoded by the core's
//! `omen_detector::wire`. Every path hands the engine the same `Sample`s.

pub mod body;
pub mod kafka;
pub mod promql;
pub mod scrape;
