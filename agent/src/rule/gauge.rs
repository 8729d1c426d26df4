//! Gauge rule: set the series to a field's value, or add the value to it.
//!
//! A missing or non-numeric value is counted (`missing_value`, `bad_value`) and leaves
//! the series as it was.

use super::matcher::Matcher;
use super::parts::{ApplyError, DefinedFamily, Labels, ValueSource};
use crate::config::GaugeOp;
use crate::parse::Record;
use crate::registry::Registry;

#[derive(Debug, Clone)]
pub struct GaugeRule {
    pub(super) matcher: Matcher,
    pub(super) metric: DefinedFamily,
    pub(super) labels: Labels,
    pub(super) value: ValueSource,
    pub(super) op: GaugeOp,
}

impl GaugeRule {
    pub fn apply(
        &self,
        record: Record<'_>,
        mask: Option<u128>,
        registry: &mut Registry,
    ) -> Result<bool, ApplyError> {
        let Some(event) = self.matcher.matches_with(record, mask) else {
            return Ok(false);
        };
        let value = self.value.read(&event)?;
        self.labels.with_values(&event, |labels| match self.op {
            GaugeOp::Set => registry.set(self.metric.id, labels, value),
            GaugeOp::Add => registry.inc(self.metric.id, labels, value),
        });
        Ok(true)
    }
}
