#![doc = include_str!("../README.md")]

pub mod audit;
pub mod check;
pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod export;
pub mod log_backoff;
pub mod oneshot;
pub mod parse;
pub mod pattern;
pub mod pipeline;
pub mod probe;
pub mod registry;
pub mod rule;
pub mod runtime;
pub mod server;
pub mod source;
pub mod state;

#[cfg(test)]
mod hostile_tests;
