//! What reader threads run on records before the pipeline sees them: decode, parse and
//! compute which matchers match, for one rule set (its parser and match plan).
//!
//! A [`Preparer`] is a copy of the rules' parser and plan taken when a poll starts, so
//! reader threads never touch the pipeline; the pipeline applies the prepared records in
//! stream order, and gets the same result as preparing them itself.

use crate::parse::{ParsedBatch, Parser, Scratch};
use crate::rule::MatchPlan;

/// What reader threads need to prepare records for a rule set off the pipeline thread:
/// its parser and its matchers.
#[derive(Debug, Clone)]
pub struct Preparer {
    pub parser: Parser,
    pub plan: MatchPlan,
}

impl Preparer {
    /// Decodes, parses and matches one record into a batch.
    pub fn push(
        &self,
        batch: &mut ParsedBatch,
        scratch: &mut Scratch,
        bytes: &[u8],
        truncated: bool,
    ) {
        batch.push(&self.parser, scratch, bytes, truncated, |record| {
            self.plan.mask(record)
        });
    }
}
