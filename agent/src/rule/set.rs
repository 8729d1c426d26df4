//! The compiled rules of one rules file ([`RuleSet`]): validated without touching any
//! registry, then installed into one (defining their families), then applied record by
//! record. Counter, gauge and histogram rules are applied here; pair rules by the
//! pipeline, which owns event time.
//!
//! Matchers get one bit each in rule order (a pair's end before its start) so reader
//! threads can compute which rules match ahead of the pipeline ([`MatchPlan`]).

use std::collections::HashSet;
use std::path::Path;

use super::build::RuleBuilder;
use super::counter::CounterRule;
use super::gauge::GaugeRule;
use super::histogram::HistogramRule;
use super::matcher::{MatchPlan, Matcher};
use super::pair::PairRule;
use super::parts::{ApplyError, DefinedFamily, Labels};
use super::patterns::PatternsRule;
use crate::config::{ConfigError, ParserFormat, RuleConfig, RulesConfig};
use crate::parse::{Parser, Record};
use crate::registry::{FamilyDesc, FamilyId, Registry};

#[derive(Debug, Clone)]
pub enum Rule {
    Counter(CounterRule),
    Gauge(GaugeRule),
    Histogram(HistogramRule),
    Pair(Box<PairRule>),
    Patterns(Box<PatternsRule>),
}

/// Compiled rules plus the parser they were written for.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub parser: Parser,
    pub rules: Vec<Rule>,
    pub names: Vec<String>,
    /// Every family the rules define (to drop the state of removed rules).
    pub family_names: HashSet<String>,
    pub max_series_per_metric: usize,
    /// The rules' matchers for reader threads (empty past `MatchPlan::MAX` matchers).
    pub plan: MatchPlan,
}

impl RuleSet {
    /// Validates the rules of a rules file without touching any registry (its framing,
    /// the `parser.multiline` and `limits.max_line_bytes` fields, is checked by
    /// `source::Framing`; `Pipeline::validate` checks both).
    pub fn validate(config: &RulesConfig, path: &Path) -> Result<(), ConfigError> {
        Self::family_names(config, path).map(|_| ())
    }

    /// Validates, and gives the families the rules would define.
    pub fn family_names(config: &RulesConfig, path: &Path) -> Result<HashSet<String>, ConfigError> {
        let mut next = 0;
        Self::build(config, path, &mut |_desc| {
            next += 1;
            FamilyId::placeholder(next - 1)
        })
        .map(|rules| rules.family_names)
    }

    /// Validates, then defines the rules' families in `registry` (keeping the series of
    /// unchanged ones). Dropping the families of removed rules is the caller's part: the
    /// registry holds other rules files' families too.
    pub fn install(
        config: &RulesConfig,
        path: &Path,
        registry: &mut Registry,
    ) -> Result<Self, ConfigError> {
        Self::validate(config, path)?;
        let max_series = config.limits.max_series_per_metric;
        let rules = Self::build(config, path, &mut |desc| registry.define(desc, max_series))?;
        rules.initialise_static_series(registry);
        Ok(rules)
    }

    /// Label-less series start at zero, so dashboards show 0 rather than no data.
    fn initialise_static_series(&self, registry: &mut Registry) {
        for rule in &self.rules {
            let (labels, families): (&Labels, Vec<&DefinedFamily>) = match rule {
                Rule::Counter(r) => (&r.labels, vec![&r.metric]),
                Rule::Histogram(r) => (&r.labels, vec![&r.metric]),
                Rule::Gauge(_) | Rule::Patterns(_) => continue,
                Rule::Pair(r) => (
                    &r.labels,
                    vec![
                        &r.metrics.matched,
                        &r.metrics.unmatched,
                        &r.metrics.orphan,
                        &r.metrics.pending,
                        &r.metrics.latency,
                    ],
                ),
            };
            if labels.is_static() {
                for family in families {
                    registry.series(family.id, &labels.static_values());
                }
            }
        }
    }

    /// Carries pair and patterns state over from the rules this set replaces.
    pub fn adopt_state(&mut self, previous: &mut RuleSet, registry: &mut Registry) {
        for rule in &mut self.rules {
            match rule {
                Rule::Pair(pair) => {
                    let old = previous.rules.iter_mut().find_map(|r| match r {
                        Rule::Pair(p) if p.name() == pair.name() => Some(p),
                        _ => None,
                    });
                    match old {
                        Some(old) => pair.adopt(old, registry),
                        None => pair.resync_pending(registry),
                    }
                }
                Rule::Patterns(patterns) => {
                    let old = previous.rules.iter_mut().find_map(|r| match r {
                        Rule::Patterns(p) if p.name() == patterns.name() => Some(p),
                        _ => None,
                    });
                    if let Some(old) = old {
                        patterns.adopt(old);
                    }
                }
                _ => {}
            }
        }
    }

    pub fn has_patterns(&self) -> bool {
        self.rules.iter().any(|r| matches!(r, Rule::Patterns(_)))
    }

    pub fn patterns_mut(&mut self) -> impl Iterator<Item = (usize, &mut PatternsRule)> {
        self.rules
            .iter_mut()
            .enumerate()
            .filter_map(|(index, r)| match r {
                Rule::Patterns(p) => Some((index, p.as_mut())),
                _ => None,
            })
    }

    pub fn patterns(&self) -> impl Iterator<Item = &PatternsRule> {
        self.rules.iter().filter_map(|r| match r {
            Rule::Patterns(p) => Some(p.as_ref()),
            _ => None,
        })
    }

    pub fn has_pairs(&self) -> bool {
        self.rules.iter().any(|r| matches!(r, Rule::Pair(_)))
    }

    pub fn pairs_mut(&mut self) -> impl Iterator<Item = &mut PairRule> {
        self.rules.iter_mut().filter_map(|r| match r {
            Rule::Pair(p) => Some(p.as_mut()),
            _ => None,
        })
    }

    pub fn pairs(&self) -> impl Iterator<Item = &PairRule> {
        self.rules.iter().filter_map(|r| match r {
            Rule::Pair(p) => Some(p.as_ref()),
            _ => None,
        })
    }

    /// Builds every rule in file order, defining each family with `define`; errors name
    /// the file, the rule and the field, every one of them at once.
    fn build(
        config: &RulesConfig,
        path: &Path,
        define: &mut dyn FnMut(FamilyDesc) -> FamilyId,
    ) -> Result<Self, ConfigError> {
        let invalid = |rule: &str, field: &str, message: String| ConfigError::Invalid {
            path: path.to_owned(),
            rule: rule.to_owned(),
            field: field.to_owned(),
            message,
        };
        let mut errors = Vec::new();
        if config.limits.max_series_per_metric == 0 {
            errors.push(invalid(
                "(limits)",
                "limits.max_series_per_metric",
                "must be at least 1".into(),
            ));
        }
        let mut builder = RuleBuilder::new(define);
        let mut names: Vec<String> = Vec::new();
        let mut rules = Vec::new();
        for rule_config in &config.rules {
            let name = rule_config.name();
            if names.iter().any(|n| n == name) {
                errors.push(invalid(name, "name", "another rule has this name".into()));
                continue;
            }
            names.push(name.to_owned());
            let rule = match rule_config {
                RuleConfig::Counter(c) => builder.counter(c).map(Rule::Counter),
                RuleConfig::Gauge(c) => builder.gauge(c).map(Rule::Gauge),
                RuleConfig::Histogram(c) => builder.histogram(c).map(Rule::Histogram),
                RuleConfig::Pair(c) => builder.pair(c).map(|p| Rule::Pair(Box::new(p))),
                RuleConfig::CdcDeletes(_) if config.parser.format != ParserFormat::Json => {
                    let message = "cdc_deletes reads change events: set `parser.format: json`";
                    Err(("type".to_owned(), message.to_owned()))
                }
                RuleConfig::CdcDeletes(c) => builder.counter(&c.counter()).map(Rule::Counter),
                RuleConfig::Patterns(c) => builder.patterns(c).map(|p| Rule::Patterns(Box::new(p))),
            };
            match rule {
                Ok(rule) => rules.push(rule),
                Err((field, message)) => errors.push(invalid(name, &field, message)),
            }
        }
        let parser = Parser::build(&config.parser, builder.fields)
            .map_err(|e| invalid("(parser)", "parser", e.to_string()));
        let parser = match (parser, errors.len()) {
            (Ok(parser), 0) => parser,
            (parser, _) => {
                errors.extend(parser.err());
                return Err(all_at_once(path, errors));
            }
        };
        let plan = assign_match_bits(&mut rules);
        Ok(Self {
            plan,
            parser,
            rules,
            names,
            family_names: builder.family_names,
            max_series_per_metric: config.limits.max_series_per_metric,
        })
    }

    /// Applies one record to every stateless rule; pair and patterns rules are applied by
    /// the pipeline, which owns event time and the rules' state. Calls `on_result(rule_index, result)` for each rule applied:
    /// `Ok(true)` when it matched and updated its metric, `Ok(false)` when it did not
    /// match, `Err` when it matched but could not update.
    pub fn apply_simple(
        &self,
        record: Record<'_>,
        mask: Option<u128>,
        registry: &mut Registry,
        mut on_result: impl FnMut(usize, Result<bool, ApplyError>),
    ) {
        for (index, rule) in self.rules.iter().enumerate() {
            let result = match rule {
                Rule::Counter(r) => r.apply(record, mask, registry),
                Rule::Gauge(r) => r.apply(record, mask, registry),
                Rule::Histogram(r) => r.apply(record, mask, registry),
                Rule::Pair(_) | Rule::Patterns(_) => continue,
            };
            on_result(index, result);
        }
    }
}

/// One error as it is, several as one that lists each (without repeating the file).
fn all_at_once(path: &Path, mut errors: Vec<ConfigError>) -> ConfigError {
    if errors.len() == 1 {
        return errors.remove(0);
    }
    let listed = errors
        .into_iter()
        .map(|error| match error {
            ConfigError::Invalid {
                rule,
                field,
                message,
                ..
            } => format!("rule `{rule}`: field `{field}`: {message}"),
            other => other.to_string(),
        })
        .collect();
    ConfigError::Rules {
        path: path.to_owned(),
        errors: listed,
    }
}

/// Gives every matcher its bit (in rule order; a pair's end before its start) and
/// returns the plan that computes the masks, or an empty plan when they do not fit.
fn assign_match_bits(rules: &mut [Rule]) -> MatchPlan {
    let mut matchers: Vec<&mut Matcher> = Vec::new();
    for rule in rules.iter_mut() {
        match rule {
            Rule::Counter(r) => matchers.push(&mut r.matcher),
            Rule::Gauge(r) => matchers.push(&mut r.matcher),
            Rule::Histogram(r) => matchers.push(&mut r.matcher),
            Rule::Patterns(r) => matchers.push(&mut r.matcher),
            Rule::Pair(r) => {
                let pair = r.as_mut();
                matchers.push(&mut pair.end);
                matchers.push(&mut pair.start);
            }
        }
    }
    if matchers.len() > MatchPlan::MAX {
        return MatchPlan::default();
    }
    for (bit, matcher) in matchers.iter_mut().enumerate() {
        matcher.bit = Some(bit as u32);
    }
    MatchPlan::new(matchers.into_iter().map(|m| m.clone()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::{ParsedBatch, Scratch};

    /// Whether reader threads computed the mask or not, every rule sees the same events
    /// (with the same captures) and the registry ends up the same.
    #[test]
    fn matching_by_mask_agrees_with_matching_directly() {
        let yaml = r#"
rules:
  - { name: a_total, type: counter, match: { msg: a } }
  - { name: b_total, type: counter, pattern: 'took (?P<ms>\d+)', value: ms, labels: { k: k } }
  - { name: g, type: gauge, match: { msg: { regex: "^[ab]" } }, value: v }
  - name: p
    type: pair
    key: id
    timeout: 1m
    start: { match: { msg: a } }
    end: { pattern: 'done (?P<id>\w+)' }
"#;
        let config = RulesConfig::from_yaml(yaml, Path::new("r.yaml")).unwrap();
        let lines = [
            "msg=a k=x v=1 id=q",
            "msg=b k=y v=2 took 15",
            "msg=c took 7 k=x",
            "done q msg=z",
            "msg=a id=r v=3 took 1",
            "done nothing",
        ];
        let run = |with_mask: bool| {
            let mut registry = Registry::new();
            let mut rules = RuleSet::install(&config, Path::new("r.yaml"), &mut registry).unwrap();
            // What reader threads do (`source::Preparer`): parse, and mask by the plan.
            let mut batch = ParsedBatch::default();
            let mut scratch = Scratch::default();
            for line in lines {
                let bytes = line.as_bytes();
                batch.push(&rules.parser, &mut scratch, bytes, false, |record| {
                    rules.plan.mask(record)
                });
            }
            for (time, record) in batch.records().enumerate() {
                let (fields, _) = record.parsed.unwrap();
                let mask = if with_mask { record.mask } else { None };
                assert_eq!(with_mask, mask.is_some());
                rules.apply_simple(fields, mask, &mut registry, |_, r| assert!(r.is_ok()));
                for pair in rules.pairs_mut() {
                    pair.apply(fields, mask, time as i64, &mut registry);
                }
            }
            registry.render(crate::registry::Format::Prometheus, |_| true)
        };
        let direct = run(false);
        assert!(direct.contains("b_total{k=\"y\"} 15"), "{direct}");
        assert!(direct.contains("p_matched_total 1"), "{direct}");
        assert!(direct.contains("p_orphan_total 1"), "{direct}");
        assert_eq!(run(true), direct);
    }

    #[test]
    fn a_counter_with_a_negative_scale_is_refused() {
        let rules = "rules: [{ name: c_total, type: counter, value: v, scale: -1 }]";
        let config = RulesConfig::from_yaml(rules, Path::new("r.yaml")).unwrap();
        let message = RuleSet::validate(&config, Path::new("r.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("field `scale`: must be positive: a counter only goes up"),
            "{message}"
        );
    }

    #[test]
    fn metrics_that_would_share_a_name_in_the_exposition_are_refused() {
        let refused = |rules: &str| {
            let config = RulesConfig::from_yaml(rules, Path::new("r.yaml")).unwrap();
            RuleSet::validate(&config, Path::new("r.yaml"))
                .unwrap_err()
                .to_string()
        };
        let message = refused(
            "rules: [{ name: a, type: histogram, value: ms, buckets: [1] }, { name: a_count, type: counter }]",
        );
        assert!(
            message.contains(
                "metric `a_count` and metric `a` would both write `a_count` in the exposition"
            ),
            "{message}"
        );
        // In OpenMetrics a counter `b_total` is the family `b`.
        let message = refused(
            "rules: [{ name: b_total, type: counter }, { name: b, type: gauge, value: v }]",
        );
        assert!(
            message.contains("metric `b` and metric `b_total` would both write `b`"),
            "{message}"
        );
        // The OpenMetrics family of a counter `a_total` is `a`, the histogram's too.
        let message = refused(
            "rules: [{ name: a, type: histogram, value: ms, buckets: [1] }, { name: a_total, type: counter }]",
        );
        assert!(message.contains("would both write `a`"), "{message}");
        let apart = "rules: [{ name: a, type: histogram, value: ms, buckets: [1] }, { name: a_max, type: gauge, value: ms }]";
        let config = RulesConfig::from_yaml(apart, Path::new("r.yaml")).unwrap();
        assert!(RuleSet::validate(&config, Path::new("r.yaml")).is_ok());
    }
}
