//! Histogram rule: observe a field's value (times `scale`) into fixed buckets; bounds are
//! inclusive (`le`), as in Prometheus.
//!
//! Buckets are checked when the rule is built (finite, strictly increasing); `+Inf` is
//! implicit, and `le` is reserved as a label name.

use super::matcher::Matcher;
use super::parts::{ApplyError, DefinedFamily, Labels, ValueSource};
use crate::parse::Record;
use crate::registry::Registry;

#[derive(Debug, Clone)]
pub struct HistogramRule {
    pub(super) matcher: Matcher,
    pub(super) metric: DefinedFamily,
    pub(super) labels: Labels,
    pub(super) value: ValueSource,
}

impl HistogramRule {
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
        self.labels.with_values(&event, |labels| {
            registry.observe(self.metric.id, labels, value)
        });
        Ok(true)
    }
}
