//! Which records a rule applies to: conditions on fields, plus an optional regex on the
//! raw record whose named captures become extra fields for that rule only.
//!
//! Fields are resolved when the rule is built: a name becomes a parser slot, or a capture
//! group of the rule's own pattern (which wins over a parsed field of the same name).

use regex::{Captures, Regex};

use crate::config::{ConditionConfig, ConditionSpec};
use crate::parse::{FieldNames, Record, Slot};

#[derive(Debug, Clone)]
enum Test {
    Equals(String),
    NotEquals(String),
    OneOf(Vec<String>),
    Regex(Regex),
    Exists(bool),
}

/// A field as one rule reads it.
#[derive(Debug, Clone)]
pub struct FieldRef {
    pub name: String,
    slot: Slot,
    /// Capture group of the rule's pattern with this name.
    capture: Option<usize>,
}

#[derive(Debug, Clone)]
struct Condition {
    field: FieldRef,
    test: Test,
}

impl Condition {
    fn holds(&self, value: Option<&str>) -> bool {
        match (&self.test, value) {
            (Test::Exists(want), value) => value.is_some() == *want,
            (Test::NotEquals(other), value) => value != Some(other.as_str()),
            (_, None) => false,
            (Test::Equals(expected), Some(value)) => value == expected,
            (Test::OneOf(options), Some(value)) => options.iter().any(|o| o == value),
            (Test::Regex(regex), Some(value)) => regex.is_match(value),
        }
    }
}

/// A record seen by one rule: its fields, and the rule's own captures.
pub struct Event<'a> {
    pub record: Record<'a>,
    captures: Option<Captures<'a>>,
}

impl<'a> Event<'a> {
    pub fn get(&self, field: &FieldRef) -> Option<&'a str> {
        if let (Some(group), Some(captures)) = (field.capture, &self.captures) {
            if let Some(m) = captures.get(group) {
                return Some(&self.record.raw[m.range()]);
            }
        }
        self.record.get(field.slot)
    }
}

#[derive(Debug, Clone)]
pub struct Matcher {
    conditions: Vec<Condition>,
    pattern: Option<Regex>,
    /// This matcher's bit in a [`MatchPlan`] mask, when it has one.
    pub(super) bit: Option<u32>,
}

/// Every matcher of a rule set in bit order, so reader threads can evaluate them ahead of
/// the pipeline thread: bit `i` of a record's mask says whether matcher `i` matched.
#[derive(Debug, Clone, Default)]
pub struct MatchPlan {
    matchers: Vec<Matcher>,
}

impl MatchPlan {
    /// At most 128 matchers fit a mask; a larger rule set is matched on the pipeline
    /// thread only.
    pub const MAX: usize = 128;

    pub(super) fn new(matchers: Vec<Matcher>) -> Self {
        Self { matchers }
    }

    pub fn mask(&self, record: Record<'_>) -> Option<u128> {
        if self.matchers.is_empty() {
            return None;
        }
        let mut mask = 0u128;
        for (bit, matcher) in self.matchers.iter().enumerate() {
            if matcher.matches(record).is_some() {
                mask |= 1 << bit;
            }
        }
        Some(mask)
    }
}

impl Matcher {
    /// Builds a matcher; errors name the offending field (`match.<field>` or `pattern`).
    pub fn build(
        conditions: &std::collections::BTreeMap<String, ConditionConfig>,
        pattern: Option<&str>,
        prefix: &str,
        fields: &mut FieldNames,
    ) -> Result<Self, (String, String)> {
        let pattern = pattern
            .map(Regex::new)
            .transpose()
            .map_err(|e| (format!("{prefix}pattern"), e.to_string()))?;
        let mut matcher = Self {
            conditions: Vec::new(),
            pattern,
            bit: None,
        };
        for (field, config) in conditions {
            let place = format!("{prefix}match.{field}");
            let test = match config {
                ConditionConfig::Equals(value) => Test::Equals(value.clone()),
                ConditionConfig::Spec(spec) => build_test(spec).map_err(|m| (place, m))?,
            };
            let field = matcher.field(field, fields);
            matcher.conditions.push(Condition { field, test });
        }
        // Conditions on parsed fields are checked before the pattern runs.
        matcher
            .conditions
            .sort_by_key(|c| c.field.capture.is_some());
        Ok(matcher)
    }

    /// Resolves a field name for this rule.
    pub fn field(&self, name: &str, fields: &mut FieldNames) -> FieldRef {
        let capture = self
            .pattern
            .as_ref()
            .and_then(|p| p.capture_names().position(|group| group == Some(name)));
        let slot = match capture {
            Some(_) => fields.capture_slot(name),
            None => fields.slot(name),
        };
        FieldRef {
            name: name.to_owned(),
            slot,
            capture,
        }
    }

    /// Like [`matches`](Self::matches), with the record's mask from a [`MatchPlan`] when
    /// reader threads computed one: a clear bit is a miss without any work, a set bit
    /// needs work only to capture the pattern's groups.
    pub fn matches_with<'a>(&self, record: Record<'a>, mask: Option<u128>) -> Option<Event<'a>> {
        match (mask, self.bit) {
            (Some(mask), Some(bit)) if mask & (1 << bit) == 0 => None,
            (Some(_), Some(_)) if self.pattern.is_none() => Some(Event {
                record,
                captures: None,
            }),
            _ => self.matches(record),
        }
    }

    /// The event when the record matches this rule.
    pub fn matches<'a>(&self, record: Record<'a>) -> Option<Event<'a>> {
        let mut event = Event {
            record,
            captures: None,
        };
        let mut captured = false;
        for condition in &self.conditions {
            if condition.field.capture.is_some() && !captured {
                event.captures = Some(self.pattern.as_ref()?.captures(record.raw)?);
                captured = true;
            }
            if !condition.holds(event.get(&condition.field)) {
                return None;
            }
        }
        if !captured {
            if let Some(pattern) = &self.pattern {
                event.captures = Some(pattern.captures(record.raw)?);
            }
        }
        Some(event)
    }
}

fn build_test(spec: &ConditionSpec) -> Result<Test, String> {
    let mut tests = Vec::new();
    if let Some(v) = &spec.equals {
        tests.push(Test::Equals(v.0.clone()));
    }
    if let Some(v) = &spec.not_equals {
        tests.push(Test::NotEquals(v.0.clone()));
    }
    if let Some(v) = &spec.one_of {
        tests.push(Test::OneOf(v.iter().map(|s| s.0.clone()).collect()));
    }
    if let Some(v) = &spec.regex {
        tests.push(Test::Regex(Regex::new(v).map_err(|e| e.to_string())?));
    }
    if let Some(v) = spec.exists {
        tests.push(Test::Exists(v));
    }
    match (tests.pop(), tests.is_empty()) {
        (Some(test), true) => Ok(test),
        _ => Err(
            "a condition needs exactly one of equals, not_equals, one_of, regex, exists".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ParserConfig, Scalar};
    use crate::parse::{Parser, Scratch};
    use std::collections::BTreeMap;

    #[test]
    fn conditions_and_pattern() {
        let mut conditions = BTreeMap::new();
        conditions.insert("msg".to_owned(), ConditionConfig::Equals("x".into()));
        conditions.insert(
            "status".to_owned(),
            ConditionConfig::Spec(ConditionSpec {
                one_of: Some(vec![Scalar("500".into()), Scalar("503".into())]),
                ..Default::default()
            }),
        );
        conditions.insert(
            "gone".to_owned(),
            ConditionConfig::Spec(ConditionSpec {
                exists: Some(false),
                ..Default::default()
            }),
        );
        conditions.insert("num".to_owned(), ConditionConfig::Equals("42".into()));
        let mut fields = FieldNames::default();
        let matcher =
            Matcher::build(&conditions, Some(r"id=(?P<num>\d+)"), "", &mut fields).unwrap();
        let num = matcher.field("num", &mut fields);
        let status = matcher.field("status", &mut fields);
        let parser = Parser::build(&ParserConfig::default(), fields).unwrap();
        let mut scratch = Scratch::default();
        let mut check = |line: &str| -> Option<(String, String)> {
            parser.parse(line, &mut scratch).unwrap();
            let event = matcher.matches(Record::new(line, &scratch))?;
            Some((event.get(&num)?.to_owned(), event.get(&status)?.to_owned()))
        };
        assert_eq!(
            check("msg=x status=503 id=42"),
            Some(("42".into(), "503".into()))
        );
        assert_eq!(check("msg=x status=503 id=41"), None);
        assert_eq!(check("msg=x status=200 id=42"), None);
        assert_eq!(check("msg=x status=500 id=42 gone=1"), None);
        assert_eq!(check("msg=x status=500"), None);
    }

    #[test]
    fn a_condition_needs_exactly_one_test() {
        let mut conditions = BTreeMap::new();
        conditions.insert(
            "a".to_owned(),
            ConditionConfig::Spec(ConditionSpec {
                equals: Some(Scalar("1".into())),
                regex: Some("2".into()),
                ..Default::default()
            }),
        );
        let (field, _) =
            Matcher::build(&conditions, None, "start.", &mut FieldNames::default()).unwrap_err();
        assert_eq!(field, "start.match.a");
    }
}
