//! Log templates learnt with no rules written: [`token`] cuts a message and masks its
//! variables, [`miner`] groups messages into templates online, [`format`] reads Loghub's
//! header formats to find the message in a line.

pub mod format;
pub mod mine;
pub mod miner;
pub mod token;

pub use format::{FormatError, LineFormat};
pub use miner::{Assignment, MinerConfig, MinerConfigError, PatternId, Template, TemplateMiner};
