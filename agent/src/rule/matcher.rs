//! Which records a rule applies to: conditions on fields, plus an optional regex on the
//! raw record whose named captures become extra fields for that rule only.

use regex::{Captures, Regex};

use crate::config::{ConditionConfig, ConditionSpec};
use crate::parse::Record;

#[derive(Debug, Clone)]
enum Test {
    Equals(String),
    NotEquals(String),
    OneOf(Vec<String>),
    Regex(Regex),
    Exists(bool),
}

#[derive(Debug, Clone)]
struct Condition {
    field: String,
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

/// A record seen by one rule: its fields, then the rule's own captures.
pub struct Event<'r, 'a> {
    pub record: &'r Record<'a>,
    captures: Option<Captures<'r>>,
}

impl Event<'_, '_> {
    pub fn get(&self, name: &str) -> Option<&str> {
        if let Some(m) = self.captures.as_ref().and_then(|c| c.name(name)) {
            return Some(m.as_str());
        }
        self.record.get(name)
    }
}

#[derive(Debug, Clone)]
pub struct Matcher {
    conditions: Vec<Condition>,
    pattern: Option<Regex>,
}

impl Matcher {
    /// Builds a matcher; errors name the offending field (`match.<field>` or `pattern`).
    pub fn build(
        conditions: &std::collections::BTreeMap<String, ConditionConfig>,
        pattern: Option<&str>,
        prefix: &str,
    ) -> Result<Self, (String, String)> {
        let mut built = Vec::new();
        for (field, config) in conditions {
            let place = format!("{prefix}match.{field}");
            let test = match config {
                ConditionConfig::Equals(value) => Test::Equals(value.clone()),
                ConditionConfig::Spec(spec) => build_test(spec).map_err(|m| (place, m))?,
            };
            built.push(Condition {
                field: field.clone(),
                test,
            });
        }
        let pattern = pattern
            .map(Regex::new)
            .transpose()
            .map_err(|e| (format!("{prefix}pattern"), e.to_string()))?;
        Ok(Self {
            conditions: built,
            pattern,
        })
    }

    /// The event when the record matches this rule.
    pub fn matches<'r, 'a>(&'r self, record: &'r Record<'a>) -> Option<Event<'r, 'a>> {
        if !self
            .conditions
            .iter()
            .all(|c| c.holds(record.get(&c.field)))
        {
            return None;
        }
        let captures = match &self.pattern {
            Some(regex) => Some(regex.captures(record.raw)?),
            None => None,
        };
        Some(Event { record, captures })
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
    match tests.len() {
        1 => Ok(tests.pop().expect("one test")),
        _ => Err(
            "a condition needs exactly one of equals, not_equals, one_of, regex, exists".to_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Scalar;
    use std::collections::BTreeMap;

    fn record(line: &str) -> Record<'_> {
        let mut record = Record::new(line);
        for pair in line.split(' ') {
            if let Some((k, v)) = pair.split_once('=') {
                record.push(k, v);
            }
        }
        record
    }

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
        let matcher = Matcher::build(&conditions, Some(r"id=(?P<num>\d+)"), "").unwrap();
        let line = "msg=x status=503 id=42";
        let rec = record(line);
        let event = matcher.matches(&rec).expect("matches");
        assert_eq!(event.get("num"), Some("42"));
        assert_eq!(event.get("status"), Some("503"));
        assert!(matcher.matches(&record("msg=x status=200 id=1")).is_none());
        assert!(matcher
            .matches(&record("msg=x status=500 id=1 gone=1"))
            .is_none());
        assert!(matcher.matches(&record("msg=x status=500")).is_none());
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
        let (field, _) = Matcher::build(&conditions, None, "start.").unwrap_err();
        assert_eq!(field, "start.match.a");
    }
}
