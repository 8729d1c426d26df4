//! Patterns rule: every matching record's message is given a log template by an online
//! miner (`crate::pattern`), and counted by template: `<name>_lines_total{labels…,
//! level, pattern}` and `<name>_new_total{labels…}` for templates first seen. The miner is
//! rule state: checkpointed with the metrics (so counts and ids are exact across a
//! `kill -9`, as a pair rule's open starts are) and carried over a reload that keeps the
//! rule's definition.

use serde::{Deserialize, Serialize};

use super::matcher::{FieldRef, Matcher};
use super::parts::{DefinedFamily, Labels};
use crate::parse::Record;
use crate::pattern::{Template, TemplateMiner};
use crate::registry::Registry;

/// The families of a patterns rule.
#[derive(Debug, Clone)]
pub struct PatternsMetrics {
    pub lines: DefinedFamily,
    pub new: DefinedFamily,
}

#[derive(Debug, Clone)]
pub struct PatternsRule {
    pub(super) name: String,
    pub(super) matcher: Matcher,
    /// The message field; `None` mines the whole record.
    pub(super) message: Option<FieldRef>,
    pub(super) level: Option<FieldRef>,
    pub(super) labels: Labels,
    pub(super) metrics: PatternsMetrics,
    pub(super) miner: TemplateMiner,
}

/// The serialised form of a patterns rule's state, for the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PatternsSnapshot {
    pub fingerprint: String,
    miner: TemplateMiner,
}

impl PatternsRule {
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Identity of the state's meaning: the miner is only carried over when this is
    /// unchanged (the message it reads, its settings, the families it counts in).
    pub fn fingerprint(&self) -> String {
        let field = |f: &Option<FieldRef>| f.as_ref().map_or("", |f| f.name.as_str()).to_owned();
        format!(
            "{}|{}|{}|{}|{}",
            field(&self.message),
            field(&self.level),
            self.labels.fingerprint(),
            serde_json::to_string(self.miner.config()).unwrap_or_default(),
            self.metrics.lines.desc_fingerprint
        )
    }

    /// Mines one record; true when it matched.
    pub fn apply(
        &mut self,
        record: Record<'_>,
        mask: Option<u128>,
        registry: &mut Registry,
    ) -> bool {
        let Some(event) = self.matcher.matches_with(record, mask) else {
            return false;
        };
        let message = match &self.message {
            Some(field) => event.get(field).unwrap_or(""),
            None => record.raw,
        };
        let assignment = self.miner.add(message);
        let pattern = assignment.id.hex();
        let level = self.level.as_ref().and_then(|f| event.get(f)).unwrap_or("");
        let (lines, new) = (self.metrics.lines.id, self.metrics.new.id);
        self.labels.with_values(&event, |values| {
            // The rule's labels, then `level` and `pattern`: on the stack for up to eight
            // labels, as `Labels::with_values` keeps them.
            const ON_STACK: usize = 10;
            let extra = [level, pattern.as_str()];
            if values.len() + extra.len() <= ON_STACK {
                let mut all = [""; ON_STACK];
                all[..values.len()].copy_from_slice(values);
                all[values.len()..values.len() + 2].copy_from_slice(&extra);
                registry.inc(lines, &all[..values.len() + 2], 1.0);
            } else {
                registry.inc(lines, &[values, &extra].concat(), 1.0);
            }
            if assignment.new {
                registry.inc(new, values, 1.0);
            }
        });
        true
    }

    /// The templates learnt, with their ids and counts.
    pub fn templates(&self) -> impl Iterator<Item = &Template> {
        self.miner.templates()
    }

    /// Templates evicted to stay within the miner's bound.
    pub fn evicted(&self) -> u64 {
        self.miner.evicted()
    }

    pub fn snapshot(&self) -> PatternsSnapshot {
        PatternsSnapshot {
            fingerprint: self.fingerprint(),
            miner: self.miner.clone(),
        }
    }

    /// Takes saved state if it was saved by a rule defined the same way.
    pub fn restore(&mut self, snapshot: PatternsSnapshot) -> bool {
        if snapshot.fingerprint != self.fingerprint() {
            return false;
        }
        self.miner = snapshot.miner.restored();
        true
    }

    /// Takes over the miner of the rule this one replaces, if defined the same way.
    pub fn adopt(&mut self, previous: &mut PatternsRule) {
        if previous.fingerprint() == self.fingerprint() {
            std::mem::swap(&mut self.miner, &mut previous.miner);
        }
    }
}
