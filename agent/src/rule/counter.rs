//! Counter rule: +1 per matching record, or + the value of a field (times `scale`).
//!
//! A counter only goes up: a negative increment is refused and counted
//! (`negative_increment`), and a negative `scale` is refused when the rule is built.

use super::matcher::Matcher;
use super::parts::{ApplyError, DefinedFamily, Labels, ValueSource};
use crate::parse::Record;
use crate::registry::Registry;

#[derive(Debug, Clone)]
pub struct CounterRule {
    pub(super) matcher: Matcher,
    pub(super) metric: DefinedFamily,
    pub(super) labels: Labels,
    pub(super) value: Option<ValueSource>,
}

impl CounterRule {
    pub fn apply(
        &self,
        record: Record<'_>,
        mask: Option<u128>,
        registry: &mut Registry,
    ) -> Result<bool, ApplyError> {
        let Some(event) = self.matcher.matches_with(record, mask) else {
            return Ok(false);
        };
        let by = match &self.value {
            Some(source) => source.read(&event)?,
            None => 1.0,
        };
        if by < 0.0 {
            return Err(ApplyError::NegativeCounterIncrement);
        }
        self.labels
            .with_values(&event, |labels| registry.inc(self.metric.id, labels, by));
        Ok(true)
    }
}
