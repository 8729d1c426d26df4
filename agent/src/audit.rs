//! What `omen agent test` tells besides the metrics: every way a rules file can be wrong
//! without an error. A misspelt field gives an empty label or a `match` that never holds;
//! a text field used as a value counts nothing; a line the parser cannot read is only a
//! self-metric. Each would exit 0 and look fine. The audit watches a finished input go
//! through the pipeline and reports:
//! - fields the rules read from records that no record has (with the nearest key the input
//!   does have: "did you mean");
//! - records that did not parse, and records no rule matched (counts and the first few);
//! - rules that matched nothing, and values that were missing or not numbers, per rule.
//!
//! Only an audited pipeline (`Pipeline::audit`) pays for it; the live agent does not.

use std::collections::{BTreeMap, BTreeSet};

use crate::parse::{Parser, Record, Slot};

/// Records kept as examples of each kind of finding.
const EXAMPLES: usize = 3;
/// Distinct input keys kept for did-you-mean.
const MAX_KEYS: usize = 1000;
/// Characters of an example record shown.
const EXAMPLE_CHARS: usize = 160;

/// Records of one kind: how many, and the first few (record number, text, why).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Examples {
    pub count: u64,
    pub first: Vec<(u64, String, &'static str)>,
}

impl Examples {
    fn add(&mut self, record: u64, text: &str, why: &'static str) {
        self.count += 1;
        if self.first.len() < EXAMPLES {
            let shown: String = text.chars().take(EXAMPLE_CHARS).collect();
            self.first.push((record, shown, why));
        }
    }

    fn describe(&self) -> String {
        self.first
            .iter()
            .map(|(n, text, why)| {
                if why.is_empty() {
                    format!("\n    record {n}: {text}")
                } else {
                    format!("\n    record {n} ({why}): {text}")
                }
            })
            .collect()
    }
}

/// One finding: a mistake (`--strict` fails on it) or a note.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub mistake: bool,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Audit {
    /// Fields rules read from records, by slot, and whether any record had it.
    record_fields: Vec<(Slot, String, bool)>,
    /// Keys seen in the input, for did-you-mean (bounded).
    keys_seen: BTreeSet<String>,
    pub records: u64,
    pub unparsed: Examples,
    pub unmatched: Examples,
    /// Per rule: records it matched.
    matched: Vec<u64>,
    /// Per rule and reason (`missing_value`, `bad_value`, …): records it could not use.
    rule_errors: BTreeMap<(usize, &'static str), u64>,
}

impl Audit {
    pub fn new(parser: &Parser, rules: usize) -> Self {
        Self {
            record_fields: parser
                .fields()
                .record_fields()
                .map(|(slot, name)| (slot, name.to_owned(), false))
                .collect(),
            keys_seen: BTreeSet::new(),
            records: 0,
            unparsed: Examples::default(),
            unmatched: Examples::default(),
            matched: vec![0; rules],
            rule_errors: BTreeMap::new(),
        }
    }

    pub(crate) fn unparsed(&mut self, text: &str, why: &'static str) {
        self.records += 1;
        self.unparsed.add(self.records, text, why);
    }

    /// A record that parsed; `matched` holds, per rule, whether it matched this record.
    pub(crate) fn parsed(
        &mut self,
        parser: &Parser,
        record: &Record<'_>,
        matched: impl Iterator<Item = bool>,
    ) {
        self.records += 1;
        for (slot, _, seen) in &mut self.record_fields {
            *seen |= record.get(*slot).is_some();
        }
        if self.record_fields.iter().any(|(_, _, seen)| !seen) && self.keys_seen.len() < MAX_KEYS {
            self.keys_seen.extend(parser.keys_of(record.raw));
        }
        let mut any = false;
        for (count, hit) in self.matched.iter_mut().zip(matched) {
            *count += u64::from(hit);
            any |= hit;
        }
        if !any {
            self.unmatched.add(self.records, record.raw, "");
        }
    }

    pub(crate) fn rule_error(&mut self, rule: usize, reason: &'static str) {
        *self.rule_errors.entry((rule, reason)).or_default() += 1;
    }

    /// Records that did not parse plus values a rule could not use: a case's `errors`.
    pub fn errors(&self) -> u64 {
        self.unparsed.count + self.rule_errors.values().sum::<u64>()
    }

    /// What the input showed of the rules, mistakes first; `rules` names them in order.
    pub fn findings(&self, rules: &[String]) -> Vec<Finding> {
        let mut findings = Vec::new();
        let mut mistake = |text: String| {
            findings.push(Finding {
                mistake: true,
                text,
            })
        };
        if rules.is_empty() {
            mistake("the rules file has no rules: nothing is counted".to_owned());
        }
        for (_, name, seen) in &self.record_fields {
            if !seen && self.records > self.unparsed.count {
                let hint = did_you_mean(name, &self.keys_seen)
                    .map(|key| format!("; did you mean `{key}`?"))
                    .unwrap_or_default();
                mistake(format!(
                    "field `{name}` is read by the rules but no record has it{hint}"
                ));
            }
        }
        if self.unparsed.count > 0 {
            mistake(format!(
                "{} of {} records did not parse:{}",
                self.unparsed.count,
                self.records,
                self.unparsed.describe()
            ));
        }
        for ((rule, reason), count) in &self.rule_errors {
            let name = rules.get(*rule).map_or("?", String::as_str);
            let what = match *reason {
                "missing_value" => "had no value field",
                "bad_value" => "had a value that is not a number",
                "negative_increment" => "had a negative counter increment",
                other => other,
            };
            mistake(format!("rule `{name}`: {count} matching records {what}"));
        }
        for (rule, count) in self.matched.iter().enumerate() {
            if *count == 0 && self.records > 0 {
                let name = rules.get(rule).map_or("?", String::as_str);
                mistake(format!("rule `{name}` matched no record"));
            }
        }
        if self.unmatched.count > 0 {
            findings.push(Finding {
                mistake: false,
                text: format!(
                    "{} of {} records matched no rule:{}",
                    self.unmatched.count,
                    self.records,
                    self.unmatched.describe()
                ),
            });
        }
        findings
    }
}

/// The key of the input nearest `name` by edit distance (a swap of two neighbours is one edit), if near enough to be a slip
/// (at most a third of its length, and at most 3 edits).
fn did_you_mean<'a>(name: &str, keys: &'a BTreeSet<String>) -> Option<&'a str> {
    let limit = (name.chars().count() / 3).clamp(1, 3);
    keys.iter()
        .map(|key| (strsim::osa_distance(name, key), key))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, key)| key.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slip_is_suggested_and_an_unrelated_name_is_not() {
        let keys: BTreeSet<String> = ["provider", "status", "duration_ms"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(did_you_mean("provder", &keys), Some("provider"));
        assert_eq!(did_you_mean("duraton_ms", &keys), Some("duration_ms"));
        assert_eq!(did_you_mean("tenant", &keys), None);
    }
}
