//! Gauge rule: set the series to a field's value, or add the value to it.

use super::{ApplyError, Bound, Labels, Matcher, ValueSource};
use crate::config::GaugeOp;
use crate::parse::Record;
use crate::registry::Registry;

#[derive(Debug, Clone)]
pub struct GaugeRule {
    pub(super) matcher: Matcher,
    pub(super) metric: Bound,
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
