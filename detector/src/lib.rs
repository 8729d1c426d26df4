#![doc = include_str!("../README.md")]

pub mod backtest;
pub mod ingest;
pub mod live;
pub mod model;
pub mod series;
pub mod wire;
