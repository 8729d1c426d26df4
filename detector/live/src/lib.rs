#![doc = include_str!("../README.md")]

pub mod client;
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
pub mod traces;

#[cfg(test)]
mod fuzz_tests;
