//! Building rules from their config, one function per rule kind over shared helpers for
//! what every kind has (matcher, labels, value, the families it defines).
//!
//! A [`RuleBuilder`] carries what the rules of one file share: the field names the
//! parser must extract and the names every defined family takes in the exposition, so
//! two rules can never write the same series name. Errors name the field, relative to the
//! rule (`scale`, `labels.x`, `start.match.y`); the caller adds the file and rule name.

use std::collections::{BTreeMap, HashMap, HashSet};

use super::counter::CounterRule;
use super::gauge::GaugeRule;
use super::histogram::HistogramRule;
use super::matcher::{FieldRef, Matcher};
use super::pair::{PairMetrics, PairRule};
use super::parts::{DefinedFamily, LabelSource, Labels, ValueSource};
use super::patterns::{PatternsMetrics, PatternsRule};
use crate::config::{
    ConditionConfig, CounterConfig, GaugeConfig, HistogramConfig, PairConfig, PairSideConfig,
    PatternsConfig,
};
use crate::parse::FieldNames;
use crate::pattern::TemplateMiner;
use crate::registry::{exposed_names, FamilyDesc, FamilyId, MetricKind};

/// Prefix reserved for the agent's own metrics.
pub const SELF_METRIC_PREFIX: &str = "omen_agent_";

/// A problem with one field of a rule: (field, message).
pub(super) type FieldError = (String, String);

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    (field.to_owned(), message.into())
}

/// What counter, gauge and histogram rules share: which records, and their labels.
struct Selection {
    matcher: Matcher,
    labels: Labels,
    label_names: Vec<String>,
}

/// Builds the rules of one file, in order.
pub(super) struct RuleBuilder<'d> {
    /// The fields the rules read, for the parser to extract.
    pub(super) fields: FieldNames,
    /// Every family the rules define.
    pub(super) family_names: HashSet<String>,
    /// Every name taken in the exposition, by the metric that takes it.
    exposed: HashMap<String, String>,
    define: &'d mut dyn FnMut(FamilyDesc) -> FamilyId,
}

impl<'d> RuleBuilder<'d> {
    /// A builder that defines each family with `define` (in a registry, or nowhere when
    /// only validating).
    pub(super) fn new(define: &'d mut dyn FnMut(FamilyDesc) -> FamilyId) -> Self {
        Self {
            fields: FieldNames::default(),
            family_names: HashSet::new(),
            exposed: HashMap::new(),
            define,
        }
    }

    pub(super) fn counter(&mut self, c: &CounterConfig) -> Result<CounterRule, FieldError> {
        let selection = self.selection(
            (&c.conditions, c.pattern.as_deref()),
            (&c.labels, &c.static_labels),
            false,
        )?;
        if c.scale < 0.0 {
            // Every increment would be negative, and refused at run time.
            return Err(field_error(
                "scale",
                "must be positive: a counter only goes up",
            ));
        }
        let value = c
            .value
            .as_deref()
            .map(|field| self.value(&selection.matcher, field, c.scale))
            .transpose()?;
        let desc =
            FamilyDesc::new(&c.name, &c.help, MetricKind::Counter).labels(selection.label_names);
        Ok(CounterRule {
            matcher: selection.matcher,
            metric: self.family(desc)?,
            labels: selection.labels,
            value,
        })
    }

    pub(super) fn gauge(&mut self, c: &GaugeConfig) -> Result<GaugeRule, FieldError> {
        let selection = self.selection(
            (&c.conditions, c.pattern.as_deref()),
            (&c.labels, &c.static_labels),
            false,
        )?;
        let value = self.value(&selection.matcher, &c.value, c.scale)?;
        let desc =
            FamilyDesc::new(&c.name, &c.help, MetricKind::Gauge).labels(selection.label_names);
        Ok(GaugeRule {
            matcher: selection.matcher,
            metric: self.family(desc)?,
            labels: selection.labels,
            value,
            op: c.op,
        })
    }

    pub(super) fn histogram(&mut self, c: &HistogramConfig) -> Result<HistogramRule, FieldError> {
        let selection = self.selection(
            (&c.conditions, c.pattern.as_deref()),
            (&c.labels, &c.static_labels),
            true,
        )?;
        let value = self.value(&selection.matcher, &c.value, c.scale)?;
        check_buckets(&c.buckets).map_err(|m| field_error("buckets", m))?;
        let desc = FamilyDesc::new(&c.name, &c.help, MetricKind::Histogram)
            .labels(selection.label_names)
            .buckets(c.buckets.clone());
        Ok(HistogramRule {
            matcher: selection.matcher,
            metric: self.family(desc)?,
            labels: selection.labels,
            value,
        })
    }

    pub(super) fn pair(&mut self, c: &PairConfig) -> Result<PairRule, FieldError> {
        let start = self.side(&c.start, "start.")?;
        let end = self.side(&c.end, "end.")?;
        let start_key = c.start.key.as_ref().or(c.key.as_ref());
        let end_key = c.end.key.as_ref().or(c.key.as_ref());
        let (Some(start_key), Some(end_key)) = (start_key, end_key) else {
            return Err(field_error(
                "key",
                "a pair rule needs `key` (or `start.key` and `end.key`)",
            ));
        };
        let timeout_ns = i64::try_from(c.timeout.0.as_nanos()).unwrap_or(i64::MAX);
        if timeout_ns <= 0 {
            return Err(field_error("timeout", "must be positive"));
        }
        if c.max_open == 0 {
            return Err(field_error("max_open", "must be at least 1"));
        }
        check_buckets(&c.buckets).map_err(|m| field_error("buckets", m))?;
        let (labels, label_names) =
            build_labels(&c.labels, &c.static_labels, true, &start, &mut self.fields)?;
        // Orphans take the same labels from the end event.
        let (end_labels, _) =
            build_labels(&c.labels, &c.static_labels, true, &end, &mut self.fields)?;
        let start_key = start.field(start_key, &mut self.fields);
        let end_key = end.field(end_key, &mut self.fields);
        let metrics = self.pair_metrics(c, &label_names)?;
        Ok(PairRule {
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
        })
    }

    pub(super) fn patterns(&mut self, c: &PatternsConfig) -> Result<PatternsRule, FieldError> {
        let selection = self.selection(
            (&c.conditions, c.pattern.as_deref()),
            (&c.labels, &c.static_labels),
            false,
        )?;
        for reserved in ["level", "pattern"] {
            if selection.label_names.iter().any(|name| name == reserved) {
                let message = format!("`{reserved}` is set by the rule itself");
                return Err(field_error(&format!("labels.{reserved}"), message));
            }
        }
        let miner = TemplateMiner::new(c.miner.clone())
            .map_err(|error| field_error("miner", error.to_string()))?;
        let message = c
            .field
            .as_deref()
            .map(|f| selection.matcher.field(f, &mut self.fields));
        let level = c
            .level
            .as_deref()
            .map(|f| selection.matcher.field(f, &mut self.fields));
        let help = |what: &str| match c.help.is_empty() {
            true => what.to_owned(),
            false => format!("{} ({what})", c.help),
        };
        let mut line_labels = selection.label_names.clone();
        line_labels.extend(["level".to_owned(), "pattern".to_owned()]);
        let lines = FamilyDesc::new(
            format!("{}_lines_total", c.name),
            help("lines by log template; the templates are on /api/v1/patterns"),
            MetricKind::Counter,
        )
        .labels(line_labels);
        let new = FamilyDesc::new(
            format!("{}_new_total", c.name),
            help("log templates seen for the first time"),
            MetricKind::Counter,
        )
        .labels(selection.label_names);
        Ok(PatternsRule {
            name: c.name.clone(),
            metrics: PatternsMetrics {
                lines: self.family(lines)?,
                new: self.family(new)?,
            },
            matcher: selection.matcher,
            message,
            level,
            labels: selection.labels,
            miner,
        })
    }

    /// The five families of a pair rule, named after it.
    fn pair_metrics(
        &mut self,
        c: &PairConfig,
        label_names: &[String],
    ) -> Result<PairMetrics, FieldError> {
        let desc = |suffix: &str, what: &str, kind: MetricKind| {
            let help = if c.help.is_empty() {
                what.to_owned()
            } else {
                format!("{} ({what})", c.help)
            };
            FamilyDesc::new(format!("{}{suffix}", c.name), help, kind).labels(label_names.to_vec())
        };
        use MetricKind::{Counter, Gauge, Histogram};
        Ok(PairMetrics {
            matched: self.family(desc(
                "_matched_total",
                "starts matched by an end within the timeout",
                Counter,
            ))?,
            unmatched: self.family(desc(
                "_unmatched_total",
                "starts with no end within the timeout",
                Counter,
            ))?,
            orphan: self.family(desc(
                "_orphan_total",
                "ends that found no open start",
                Counter,
            ))?,
            pending: self.family(desc("_pending", "open starts waiting for their end", Gauge))?,
            latency: self.family(
                desc(
                    "_latency_seconds",
                    "seconds from start to end, in event time",
                    Histogram,
                )
                .buckets(c.buckets.clone()),
            )?,
        })
    }

    /// The matcher and labels of a counter, gauge or histogram; `histogram` reserves the
    /// `le` label.
    fn selection(
        &mut self,
        (conditions, pattern): (&BTreeMap<String, ConditionConfig>, Option<&str>),
        (labels, statics): (&BTreeMap<String, String>, &BTreeMap<String, String>),
        histogram: bool,
    ) -> Result<Selection, FieldError> {
        let matcher = Matcher::build(conditions, pattern, "", &mut self.fields)?;
        let (labels, label_names) =
            build_labels(labels, statics, histogram, &matcher, &mut self.fields)?;
        Ok(Selection {
            matcher,
            labels,
            label_names,
        })
    }

    /// One side of a pair rule: its matcher, with errors under `prefix` (`start.`).
    fn side(&mut self, side: &PairSideConfig, prefix: &str) -> Result<Matcher, FieldError> {
        Matcher::build(
            &side.conditions,
            side.pattern.as_deref(),
            prefix,
            &mut self.fields,
        )
    }

    /// The number a rule reads from `field`, times `scale`.
    fn value(
        &mut self,
        matcher: &Matcher,
        field: &str,
        scale: f64,
    ) -> Result<ValueSource, FieldError> {
        let field: FieldRef = matcher.field(field, &mut self.fields);
        if !scale.is_finite() || scale == 0.0 {
            return Err(field_error("scale", "must be a finite, non-zero number"));
        }
        Ok(ValueSource { field, scale })
    }

    /// Defines a family, refusing a name that is invalid, reserved, or that another
    /// family already writes in the exposition.
    fn family(&mut self, desc: FamilyDesc) -> Result<DefinedFamily, FieldError> {
        check_metric_name(&desc.name).map_err(|m| field_error("name", m))?;
        if !self.family_names.insert(desc.name.clone()) {
            let message = format!("metric `{}` is defined twice", desc.name);
            return Err(field_error("name", message));
        }
        for taken in exposed_names(&desc) {
            if let Some(other) = self.exposed.get(&taken) {
                let message = format!(
                    "metric `{}` and metric `{other}` would both write `{taken}` in the exposition",
                    desc.name
                );
                return Err(field_error("name", message));
            }
            self.exposed.insert(taken, desc.name.clone());
        }
        let desc_fingerprint = desc.fingerprint();
        Ok(DefinedFamily {
            id: (self.define)(desc),
            desc_fingerprint,
        })
    }
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
) -> Result<(Labels, Vec<String>), FieldError> {
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
