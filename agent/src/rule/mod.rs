//! Rules: from parsed records to metric updates. A rules file is validated without I/O
//! into a [`RuleSet`] (`RuleSet::validate`), and only then installed into a registry, so
//! an invalid file never disturbs the rules already running.
//!
//! Every rule's metrics are defined as families in the registry; a reload that keeps a
//! metric's definition (kind, labels, buckets) keeps its series, and a pair rule whose
//! key, timeout and labels are unchanged keeps its open starts.

mod counter;
mod gauge;
mod histogram;
mod matcher;
mod pair;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

pub use counter::CounterRule;
pub use gauge::GaugeRule;
pub use histogram::HistogramRule;
pub use matcher::{Event, FieldRef, MatchPlan, Matcher};
pub use pair::{PairOutcome, PairRule, PairSnapshot};

use crate::config::{ConditionConfig, ConfigError, ParserFormat, RuleConfig, RulesConfig};
use crate::parse::{FieldNames, ParsedBatch, Parser, Record, Scratch};
use crate::registry::{exposed_names, FamilyDesc, FamilyId, MetricKind, Registry};
use crate::source::Framing;

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

/// Prefix reserved for the agent's own metrics.
pub const SELF_METRIC_PREFIX: &str = "omen_agent_";

/// Why a matching record could not update its metric (counted, never fatal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("value field is missing")]
    MissingValue,
    #[error("value field is not a finite number")]
    BadValue,
    #[error("a counter cannot be increased by a negative value")]
    NegativeCounterIncrement,
}

impl ApplyError {
    pub fn reason(self) -> &'static str {
        match self {
            ApplyError::MissingValue => "missing_value",
            ApplyError::BadValue => "bad_value",
            ApplyError::NegativeCounterIncrement => "negative_increment",
        }
    }
}

/// A family defined for a rule.
#[derive(Debug, Clone)]
pub struct Bound {
    pub id: FamilyId,
    pub desc_fingerprint: String,
}

#[derive(Debug, Clone)]
enum LabelSource {
    Field(FieldRef),
    Static(String),
}

/// Label values in the family's label order, from fields or constants.
#[derive(Debug, Clone, Default)]
pub struct Labels {
    sources: Vec<LabelSource>,
}

impl Labels {
    /// Calls `with` on the label values of an event (a missing field gives ""), without
    /// allocating for up to eight labels.
    pub fn with_values<R>(&self, event: &Event<'_>, with: impl FnOnce(&[&str]) -> R) -> R {
        const ON_STACK: usize = 8;
        fn value<'x>(source: &'x LabelSource, event: &Event<'x>) -> &'x str {
            match source {
                LabelSource::Field(field) => event.get(field).unwrap_or(""),
                LabelSource::Static(value) => value.as_str(),
            }
        }
        if self.sources.len() <= ON_STACK {
            let mut values = [""; ON_STACK];
            for (slot, source) in values.iter_mut().zip(&self.sources) {
                *slot = value(source, event);
            }
            with(&values[..self.sources.len()])
        } else {
            let values: Vec<&str> = self.sources.iter().map(|s| value(s, event)).collect();
            with(&values)
        }
    }

    /// The label values of an event, owned (for state kept beyond the record).
    pub fn owned_values(&self, event: &Event<'_>) -> Vec<String> {
        self.with_values(event, |values| {
            values.iter().map(|v| (*v).to_owned()).collect()
        })
    }

    fn is_static(&self) -> bool {
        self.sources
            .iter()
            .all(|s| matches!(s, LabelSource::Static(_)))
    }

    fn static_values(&self) -> Vec<&str> {
        self.sources
            .iter()
            .map(|s| match s {
                LabelSource::Static(v) => v.as_str(),
                LabelSource::Field(_) => "",
            })
            .collect()
    }

    fn fingerprint(&self) -> String {
        self.sources
            .iter()
            .map(|s| match s {
                LabelSource::Field(field) => format!("f:{}", field.name),
                LabelSource::Static(v) => format!("s:{v}"),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Reads a number from a field, times a scale.
#[derive(Debug, Clone)]
pub struct ValueSource {
    field: FieldRef,
    scale: f64,
}

impl ValueSource {
    pub fn read(&self, event: &Event<'_>) -> Result<f64, ApplyError> {
        let text = event.get(&self.field).ok_or(ApplyError::MissingValue)?;
        let value: f64 = text.trim().parse().map_err(|_| ApplyError::BadValue)?;
        let value = value * self.scale;
        if value.is_finite() {
            Ok(value)
        } else {
            Err(ApplyError::BadValue)
        }
    }
}

#[derive(Debug, Clone)]
pub enum Rule {
    Counter(CounterRule),
    Gauge(GaugeRule),
    Histogram(HistogramRule),
    Pair(Box<PairRule>),
}

/// Compiled rules plus the parser and framing they were written for.
#[derive(Debug, Clone)]
pub struct RuleSet {
    pub parser: Parser,
    pub framing: Framing,
    pub rules: Vec<Rule>,
    pub names: Vec<String>,
    /// Every family the rules define (to drop the state of removed rules).
    pub family_names: HashSet<String>,
    pub max_series_per_metric: usize,
    /// The rules' matchers for reader threads (empty past `MatchPlan::MAX` matchers).
    pub plan: MatchPlan,
}

impl RuleSet {
    /// Validates a rules file without touching any registry.
    pub fn validate(config: &RulesConfig, path: &Path) -> Result<(), ConfigError> {
        let mut next = 0;
        Self::build(config, path, &mut |_desc| {
            next += 1;
            FamilyId::placeholder(next - 1)
        })
        .map(|_| ())
    }

    /// Validates, then defines the rules' families in `registry` (keeping the series of
    /// unchanged ones and dropping those of removed rules).
    pub fn install(
        config: &RulesConfig,
        path: &Path,
        registry: &mut Registry,
    ) -> Result<Self, ConfigError> {
        Self::validate(config, path)?;
        let max_series = config.limits.max_series_per_metric;
        let rules = Self::build(config, path, &mut |desc| registry.define(desc, max_series))?;
        registry.retain(|desc| {
            desc.name.starts_with(SELF_METRIC_PREFIX) || rules.family_names.contains(&desc.name)
        });
        rules.initialise_static_series(registry);
        Ok(rules)
    }

    /// Label-less series start at zero, so dashboards show 0 rather than no data.
    fn initialise_static_series(&self, registry: &mut Registry) {
        for rule in &self.rules {
            let (labels, families): (&Labels, Vec<&Bound>) = match rule {
                Rule::Counter(r) => (&r.labels, vec![&r.metric]),
                Rule::Histogram(r) => (&r.labels, vec![&r.metric]),
                Rule::Gauge(_) => continue,
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

    /// Carries pair state over from the rules this set replaces.
    pub fn adopt_state(&mut self, previous: &mut RuleSet, registry: &mut Registry) {
        for rule in &mut self.rules {
            let Rule::Pair(pair) = rule else { continue };
            let old = previous.rules.iter_mut().find_map(|r| match r {
                Rule::Pair(p) if p.name() == pair.name() => Some(p),
                _ => None,
            });
            match old {
                Some(old) => pair.adopt(old, registry),
                None => pair.resync_pending(registry),
            }
        }
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
        let mut fields = FieldNames::default();
        let framing = Framing::build(&config.parser, &config.limits)
            .map_err(|(field, message)| invalid("(parser)", &field, message))?;
        if config.limits.max_series_per_metric == 0 {
            return Err(invalid(
                "(limits)",
                "limits.max_series_per_metric",
                "must be at least 1".into(),
            ));
        }
        let mut family_names = HashSet::new();
        // Every name taken in the exposition, by the metric that takes it.
        let mut exposed: HashMap<String, String> = HashMap::new();
        let mut names = Vec::new();
        let mut rules = Vec::new();
        for rule_config in &config.rules {
            let name = rule_config.name();
            let err = |field: &str, message: String| invalid(name, field, message);
            if names.iter().any(|n| n == name) {
                return Err(err("name", "another rule has this name".into()));
            }
            names.push(name.to_owned());
            let mut family = |desc: FamilyDesc| -> Result<Bound, ConfigError> {
                check_metric_name(&desc.name).map_err(|m| err("name", m))?;
                if !family_names.insert(desc.name.clone()) {
                    return Err(err(
                        "name",
                        format!("metric `{}` is defined twice", desc.name),
                    ));
                }
                for taken in exposed_names(&desc) {
                    if let Some(other) = exposed.get(&taken) {
                        return Err(err(
                            "name",
                            format!(
                                "metric `{}` and metric `{other}` would both write `{taken}` in the exposition",
                                desc.name
                            ),
                        ));
                    }
                    exposed.insert(taken, desc.name.clone());
                }
                let desc_fingerprint = desc.fingerprint();
                Ok(Bound {
                    id: define(desc),
                    desc_fingerprint,
                })
            };
            if matches!(rule_config, RuleConfig::CdcDeletes(_))
                && config.parser.format != ParserFormat::Json
            {
                return Err(err(
                    "type",
                    "cdc_deletes reads change events: set `parser.format: json`".into(),
                ));
            }
            let expanded;
            let rule_config = match rule_config {
                RuleConfig::CdcDeletes(c) => {
                    expanded = RuleConfig::Counter(c.counter());
                    &expanded
                }
                other => other,
            };
            let rule = match rule_config {
                RuleConfig::Counter(c) => {
                    let (matcher, labels, label_names) = matcher_and_labels(
                        (&c.conditions, c.pattern.as_deref()),
                        (&c.labels, &c.static_labels),
                        false,
                        &mut fields,
                    )
                    .map_err(|(f, m)| err(&f, m))?;
                    if c.scale < 0.0 {
                        // Every increment would be negative, and refused at run time.
                        return Err(err(
                            "scale",
                            "must be positive: a counter only goes up".into(),
                        ));
                    }
                    let value = c
                        .value
                        .as_ref()
                        .map(|field| value_source(matcher.field(field, &mut fields), c.scale))
                        .transpose()
                        .map_err(|m| err("scale", m))?;
                    let desc =
                        FamilyDesc::new(&c.name, &c.help, MetricKind::Counter).labels(label_names);
                    Rule::Counter(CounterRule {
                        matcher,
                        metric: family(desc)?,
                        labels,
                        value,
                    })
                }
                RuleConfig::Gauge(c) => {
                    let (matcher, labels, label_names) = matcher_and_labels(
                        (&c.conditions, c.pattern.as_deref()),
                        (&c.labels, &c.static_labels),
                        false,
                        &mut fields,
                    )
                    .map_err(|(f, m)| err(&f, m))?;
                    let value = value_source(matcher.field(&c.value, &mut fields), c.scale)
                        .map_err(|m| err("scale", m))?;
                    let desc =
                        FamilyDesc::new(&c.name, &c.help, MetricKind::Gauge).labels(label_names);
                    Rule::Gauge(GaugeRule {
                        matcher,
                        metric: family(desc)?,
                        labels,
                        value,
                        op: c.op,
                    })
                }
                RuleConfig::Histogram(c) => {
                    let (matcher, labels, label_names) = matcher_and_labels(
                        (&c.conditions, c.pattern.as_deref()),
                        (&c.labels, &c.static_labels),
                        true,
                        &mut fields,
                    )
                    .map_err(|(f, m)| err(&f, m))?;
                    let value = value_source(matcher.field(&c.value, &mut fields), c.scale)
                        .map_err(|m| err("scale", m))?;
                    check_buckets(&c.buckets).map_err(|m| err("buckets", m))?;
                    let desc = FamilyDesc::new(&c.name, &c.help, MetricKind::Histogram)
                        .labels(label_names)
                        .buckets(c.buckets.clone());
                    Rule::Histogram(HistogramRule {
                        matcher,
                        metric: family(desc)?,
                        labels,
                        value,
                    })
                }
                RuleConfig::Pair(c) => {
                    let start = Matcher::build(
                        &c.start.conditions,
                        c.start.pattern.as_deref(),
                        "start.",
                        &mut fields,
                    )
                    .map_err(|(f, m)| err(&f, m))?;
                    let end = Matcher::build(
                        &c.end.conditions,
                        c.end.pattern.as_deref(),
                        "end.",
                        &mut fields,
                    )
                    .map_err(|(f, m)| err(&f, m))?;
                    let start_key = c.start.key.clone().or_else(|| c.key.clone());
                    let end_key = c.end.key.clone().or_else(|| c.key.clone());
                    let (Some(start_key), Some(end_key)) = (start_key, end_key) else {
                        return Err(err(
                            "key",
                            "a pair rule needs `key` (or `start.key` and `end.key`)".into(),
                        ));
                    };
                    let timeout_ns = i64::try_from(c.timeout.0.as_nanos()).unwrap_or(i64::MAX);
                    if timeout_ns <= 0 {
                        return Err(err("timeout", "must be positive".into()));
                    }
                    if c.max_open == 0 {
                        return Err(err("max_open", "must be at least 1".into()));
                    }
                    check_buckets(&c.buckets).map_err(|m| err("buckets", m))?;
                    let (labels, label_names) =
                        build_labels(&c.labels, &c.static_labels, true, &start, &mut fields)
                            .map_err(|(f, m)| err(&f, m))?;
                    // Orphans take the same labels from the end event.
                    let (end_labels, _) =
                        build_labels(&c.labels, &c.static_labels, true, &end, &mut fields)
                            .map_err(|(f, m)| err(&f, m))?;
                    let start_key = start.field(&start_key, &mut fields);
                    let end_key = end.field(&end_key, &mut fields);
                    let help = |what: &str| {
                        if c.help.is_empty() {
                            what.to_owned()
                        } else {
                            format!("{} ({what})", c.help)
                        }
                    };
                    let n = &c.name;
                    let desc = |suffix: &str, what: &str, kind: MetricKind| {
                        FamilyDesc::new(format!("{n}{suffix}"), help(what), kind)
                            .labels(label_names.clone())
                    };
                    let metrics = pair::PairMetrics {
                        matched: family(desc(
                            "_matched_total",
                            "starts matched by an end within the timeout",
                            MetricKind::Counter,
                        ))?,
                        unmatched: family(desc(
                            "_unmatched_total",
                            "starts with no end within the timeout",
                            MetricKind::Counter,
                        ))?,
                        orphan: family(desc(
                            "_orphan_total",
                            "ends that found no open start",
                            MetricKind::Counter,
                        ))?,
                        pending: family(desc(
                            "_pending",
                            "open starts waiting for their end",
                            MetricKind::Gauge,
                        ))?,
                        latency: family(
                            desc(
                                "_latency_seconds",
                                "seconds from start to end, in event time",
                                MetricKind::Histogram,
                            )
                            .buckets(c.buckets.clone()),
                        )?,
                    };
                    Rule::Pair(Box::new(PairRule {
                        name: c.name.clone(),
                        start,
                        end,
                        start_key,
                        end_key,
                        timeout_ns,
                        max_open: c.max_open,
                        labels,
                        end_labels,
                        metrics,
                        state: Default::default(),
                    }))
                }
                RuleConfig::CdcDeletes(_) => unreachable!("expanded into a counter above"),
            };
            rules.push(rule);
        }
        let parser = Parser::build(&config.parser, fields)
            .map_err(|e| invalid("(parser)", "parser", e.to_string()))?;
        let plan = assign_match_bits(&mut rules);
        Ok(Self {
            plan,
            parser,
            framing,
            rules,
            names,
            family_names,
            max_series_per_metric: config.limits.max_series_per_metric,
        })
    }

    /// Applies one record to every non-pair rule; pair rules are applied by the pipeline,
    /// which owns event time. Calls `on_match(rule_index)` and `on_error(reason)`.
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
                Rule::Pair(_) => continue,
            };
            on_result(index, result);
        }
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

/// The matcher and labels every metric rule has; `histogram` reserves the `le` label.
fn matcher_and_labels(
    (conditions, pattern): (&BTreeMap<String, ConditionConfig>, Option<&str>),
    (labels, statics): (&BTreeMap<String, String>, &BTreeMap<String, String>),
    histogram: bool,
    fields: &mut FieldNames,
) -> Result<(Matcher, Labels, Vec<String>), (String, String)> {
    let matcher = Matcher::build(conditions, pattern, "", fields)?;
    let (labels, label_names) = build_labels(labels, statics, histogram, &matcher, fields)?;
    Ok((matcher, labels, label_names))
}

fn value_source(field: FieldRef, scale: f64) -> Result<ValueSource, String> {
    if !scale.is_finite() || scale == 0.0 {
        return Err("must be a finite, non-zero number".into());
    }
    Ok(ValueSource { field, scale })
}

fn check_metric_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
    if !valid {
        return Err(format!("`{name}` is not a valid Prometheus metric name"));
    }
    if name.starts_with(SELF_METRIC_PREFIX) {
        return Err(format!(
            "the prefix `{SELF_METRIC_PREFIX}` is reserved for the agent's own metrics"
        ));
    }
    Ok(())
}

fn check_label_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && !name.starts_with("__")
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || (i > 0 && c.is_ascii_digit()));
    if valid {
        Ok(())
    } else {
        Err(format!("`{name}` is not a valid label name"))
    }
}

fn check_buckets(buckets: &[f64]) -> Result<(), String> {
    if buckets.is_empty() {
        return Err("needs at least one bucket".into());
    }
    if buckets.iter().any(|b| !b.is_finite()) {
        return Err("bounds must be finite (+Inf is implicit)".into());
    }
    if buckets.windows(2).any(|w| w[0] >= w[1]) {
        return Err("bounds must be strictly increasing".into());
    }
    Ok(())
}

/// Label names sorted, each from a field or a constant.
fn build_labels(
    labels: &BTreeMap<String, String>,
    statics: &BTreeMap<String, String>,
    histogram: bool,
    matcher: &Matcher,
    fields: &mut FieldNames,
) -> Result<(Labels, Vec<String>), (String, String)> {
    let mut all: BTreeMap<&str, LabelSource> = BTreeMap::new();
    for (label, field) in labels {
        check_label_name(label).map_err(|m| (format!("labels.{label}"), m))?;
        all.insert(label, LabelSource::Field(matcher.field(field, fields)));
    }
    for (label, value) in statics {
        check_label_name(label).map_err(|m| (format!("static_labels.{label}"), m))?;
        if all
            .insert(label, LabelSource::Static(value.clone()))
            .is_some()
        {
            return Err((
                format!("static_labels.{label}"),
                "also defined under `labels`".into(),
            ));
        }
    }
    if histogram && all.contains_key("le") {
        return Err((
            "labels.le".into(),
            "`le` is reserved for histogram buckets".into(),
        ));
    }
    let names = all.keys().map(|k| (*k).to_owned()).collect();
    Ok((
        Labels {
            sources: all.into_values().collect(),
        },
        names,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;

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
            let preparer = Preparer {
                parser: rules.parser.clone(),
                plan: rules.plan.clone(),
            };
            let mut batch = ParsedBatch::default();
            let mut scratch = Scratch::default();
            for line in lines {
                preparer.push(&mut batch, &mut scratch, line.as_bytes(), false);
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
