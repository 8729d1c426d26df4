#![doc = include_str!("../README.md")]

pub mod checkpoint;
pub mod clock;
pub mod config;
pub mod oneshot;
pub mod parse;
pub mod pipeline;
pub mod registry;
pub mod rule;
pub mod source;
