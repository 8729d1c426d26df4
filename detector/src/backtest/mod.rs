//! `omen backtest`: replays history through the live detection path and scores it.

pub mod nab;
