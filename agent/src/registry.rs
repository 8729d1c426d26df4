//! The metric store: families (name, kind, label names, buckets) holding series keyed by
//! label values, with a cardinality budget per family.
//!
//! Why our own store rather than the `prometheus` crate: the checkpoint must save and
//! restore every value exactly, counters keep their start (`_created`) time across
//! restarts, a family past its budget folds new label sets into one overflow series, and
//! the per-line update must not allocate. Invariants: a `FamilyId` stays valid for the
//! life of the registry (families are deactivated, never removed); series of a family all
//! have exactly `label_names.len()` values.

use std::collections::HashMap;

use omen_common::exposition::{self, MetricType};
use serde::{Deserialize, Serialize};

pub use omen_common::exposition::{format_value, Format};

/// The label value given to every label of a family's overflow series.
pub const OVERFLOW_LABEL_VALUE: &str = "__overflow__";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

impl MetricKind {
    fn exposition_type(self) -> MetricType {
        match self {
            MetricKind::Counter => MetricType::Counter,
            MetricKind::Gauge => MetricType::Gauge,
            MetricKind::Histogram => MetricType::Histogram,
        }
    }
}

/// What a family is; two descriptions with the same fingerprint can share state.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyDesc {
    pub name: String,
    pub help: String,
    pub kind: MetricKind,
    pub label_names: Vec<String>,
    /// Upper bounds (inclusive), sorted, without +Inf. Histograms only.
    pub buckets: Vec<f64>,
}

impl FamilyDesc {
    pub fn new(name: impl Into<String>, help: impl Into<String>, kind: MetricKind) -> Self {
        Self {
            name: name.into(),
            help: help.into(),
            kind,
            label_names: Vec::new(),
            buckets: Vec::new(),
        }
    }

    pub fn labels<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        self.label_names = names.into_iter().map(Into::into).collect();
        self
    }

    pub fn buckets(mut self, buckets: Vec<f64>) -> Self {
        self.buckets = buckets;
        self
    }

    /// Everything but the help text: state survives a reload only when this is unchanged.
    pub fn fingerprint(&self) -> String {
        format!(
            "{:?}|{}|{}",
            self.kind,
            self.label_names.join(","),
            self.buckets
                .iter()
                .map(|b| b.to_string())
                .collect::<Vec<_>>()
                .join(",")
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FamilyId(usize);

impl FamilyId {
    /// An id that refers to no family, for building rules only to validate them.
    pub(crate) fn placeholder(index: usize) -> Self {
        Self(index)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Per bucket (not cumulative), the last one being +Inf.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Scalar(f64),
    Histogram(Histogram),
}

#[derive(Debug, Clone)]
pub struct Series {
    labels: Box<[String]>,
    pub value: Value,
    /// Unix seconds when the series was first created (OpenMetrics `_created`).
    created: f64,
}

impl Series {
    /// Label values, in the order of the family's `label_names`.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Unix seconds when the series was first created (kept across restarts).
    pub fn created(&self) -> f64 {
        self.created
    }
}

#[derive(Debug)]
struct Family {
    desc: FamilyDesc,
    active: bool,
    max_series: usize,
    index: HashMap<Box<[u8]>, usize, foldhash::fast::RandomState>,
    series: Vec<Series>,
    overflow: Option<usize>,
    /// Updates that landed in the overflow series (new label sets past the budget).
    dropped: u64,
}

impl Family {
    fn new(desc: FamilyDesc, max_series: usize) -> Self {
        Self {
            desc,
            active: true,
            max_series: max_series.max(1),
            index: HashMap::default(),
            series: Vec::new(),
            overflow: None,
            dropped: 0,
        }
    }

    fn clear(&mut self) {
        self.index.clear();
        self.series.clear();
        self.overflow = None;
        self.dropped = 0;
    }

    fn zero_value(&self) -> Value {
        match self.desc.kind {
            MetricKind::Histogram => Value::Histogram(Histogram {
                counts: vec![0; self.desc.buckets.len() + 1],
                sum: 0.0,
                count: 0,
            }),
            _ => Value::Scalar(0.0),
        }
    }

    fn push_series(&mut self, key: Box<[u8]>, labels: Box<[String]>, created: f64) -> usize {
        let value = self.zero_value();
        self.series.push(Series {
            labels,
            value,
            created,
        });
        let slot = self.series.len() - 1;
        self.index.insert(key, slot);
        slot
    }
}

/// Encodes label values into one lookup key; 0xFF never occurs in UTF-8, so it separates.
fn encode_key<S: AsRef<str>>(buffer: &mut Vec<u8>, values: &[S]) {
    buffer.clear();
    for value in values {
        buffer.extend_from_slice(value.as_ref().as_bytes());
        buffer.push(0xFF);
    }
}

/// Serialised state of one family, for the checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilySnapshot {
    pub name: String,
    pub fingerprint: String,
    pub dropped: u64,
    pub series: Vec<SeriesSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesSnapshot {
    pub labels: Vec<String>,
    pub created: f64,
    pub value: Value,
}

#[derive(Debug)]
pub struct Registry {
    families: Vec<Family>,
    by_name: HashMap<String, usize>,
    key_buffer: Vec<u8>,
    non_finite: u64,
    /// Unix seconds stamped on series created from now on (set by the pipeline per batch).
    now: f64,
}

impl Default for Registry {
    fn default() -> Self {
        Self::new()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self {
            families: Vec::new(),
            by_name: HashMap::new(),
            key_buffer: Vec::with_capacity(256),
            non_finite: 0,
            now: 0.0,
        }
    }

    pub fn set_now(&mut self, unix_seconds: f64) {
        self.now = unix_seconds;
    }

    /// Defines (or re-defines) a family. An active family of the same name and
    /// fingerprint keeps its series; a changed definition starts empty.
    pub fn define(&mut self, desc: FamilyDesc, max_series: usize) -> FamilyId {
        if let Some(&index) = self.by_name.get(&desc.name) {
            let family = &mut self.families[index];
            if !family.active || family.desc.fingerprint() != desc.fingerprint() {
                family.clear();
            }
            family.desc = desc;
            family.active = true;
            family.max_series = max_series.max(1);
            return FamilyId(index);
        }
        self.by_name.insert(desc.name.clone(), self.families.len());
        self.families.push(Family::new(desc, max_series));
        FamilyId(self.families.len() - 1)
    }

    /// Drops the state of every family not in `keep` (rules that a reload removed).
    pub fn retain(&mut self, keep: impl Fn(&FamilyDesc) -> bool) {
        for family in &mut self.families {
            if family.active && !keep(&family.desc) {
                family.active = false;
                family.clear();
            }
        }
    }

    pub fn desc(&self, id: FamilyId) -> &FamilyDesc {
        &self.families[id.0].desc
    }

    /// The series for these label values, created if new; past the family's budget a new
    /// label set lands in the overflow series and is counted as dropped.
    pub fn series<S: AsRef<str>>(&mut self, id: FamilyId, label_values: &[S]) -> &mut Series {
        encode_key(&mut self.key_buffer, label_values);
        let family = &mut self.families[id.0];
        let slot = match family.index.get(self.key_buffer.as_slice()) {
            Some(&slot) => slot,
            None if family.series.len() - usize::from(family.overflow.is_some())
                < family.max_series =>
            {
                let labels = label_values.iter().map(|v| v.as_ref().to_owned()).collect();
                family.push_series(self.key_buffer.as_slice().into(), labels, self.now)
            }
            None => {
                family.dropped = family.dropped.saturating_add(1);
                match family.overflow {
                    Some(slot) => slot,
                    None => {
                        let labels: Box<[String]> = family
                            .desc
                            .label_names
                            .iter()
                            .map(|_| OVERFLOW_LABEL_VALUE.to_owned())
                            .collect();
                        encode_key(&mut self.key_buffer, &labels);
                        // A log may itself carry the overflow value: share that series.
                        let slot = match family.index.get(self.key_buffer.as_slice()) {
                            Some(&slot) => slot,
                            None => {
                                let key = self.key_buffer.as_slice().into();
                                family.push_series(key, labels, self.now)
                            }
                        };
                        family.overflow = Some(slot);
                        slot
                    }
                }
            }
        };
        &mut family.series[slot]
    }

    /// Visits every series of a family (to reset or recompute values in place).
    pub fn for_each_series(&mut self, id: FamilyId, mut visit: impl FnMut(&[String], &mut Value)) {
        for series in &mut self.families[id.0].series {
            visit(&series.labels, &mut series.value);
        }
    }

    /// Adds to a counter or gauge. An update whose result would not be finite is
    /// refused and counted (`non_finite`): a value must always be checkpointable.
    pub fn inc<S: AsRef<str>>(&mut self, id: FamilyId, labels: &[S], by: f64) {
        let refused = match &mut self.series(id, labels).value {
            Value::Scalar(v) if (*v + by).is_finite() => {
                *v += by;
                false
            }
            _ => true,
        };
        self.non_finite += u64::from(refused);
    }

    pub fn set<S: AsRef<str>>(&mut self, id: FamilyId, labels: &[S], to: f64) {
        if !to.is_finite() {
            self.non_finite += 1;
            return;
        }
        if let Value::Scalar(v) = &mut self.series(id, labels).value {
            *v = to;
        }
    }

    /// Updates refused because their result would not be finite, since the last call.
    pub fn take_non_finite(&mut self) -> u64 {
        std::mem::take(&mut self.non_finite)
    }

    pub fn observe<S: AsRef<str>>(&mut self, id: FamilyId, labels: &[S], value: f64) {
        let bucket = self.families[id.0]
            .desc
            .buckets
            .partition_point(|&bound| bound < value);
        let refused = match &mut self.series(id, labels).value {
            Value::Histogram(h) if (h.sum + value).is_finite() => {
                // Saturating: a restored checkpoint may hold any count.
                h.counts[bucket] = h.counts[bucket].saturating_add(1);
                h.sum += value;
                h.count = h.count.saturating_add(1);
                false
            }
            _ => true,
        };
        self.non_finite += u64::from(refused);
    }

    /// The scalar value of a series, if it exists (tests and rule cases).
    pub fn get<S: AsRef<str>>(&self, name: &str, labels: &[(S, S)]) -> Option<&Value> {
        let family = &self.families[*self.by_name.get(name)?];
        if !family.active {
            return None;
        }
        let values: Vec<&str> = family
            .desc
            .label_names
            .iter()
            .map(|n| {
                labels
                    .iter()
                    .find(|(k, _)| k.as_ref() == n)
                    .map_or("", |(_, v)| v.as_ref())
            })
            .collect();
        let mut key = Vec::new();
        encode_key(&mut key, &values);
        family
            .index
            .get(key.as_slice())
            .map(|&slot| &family.series[slot].value)
    }

    /// Updates folded into overflow, per family name (for the self-metric).
    pub fn dropped(&self) -> impl Iterator<Item = (&str, u64)> {
        self.families
            .iter()
            .filter(|f| f.active && f.dropped > 0)
            .map(|f| (f.desc.name.as_str(), f.dropped))
    }

    /// Every active family with its series, in definition order (for push exporters).
    pub fn families(&self) -> impl Iterator<Item = (&FamilyDesc, &[Series])> {
        self.families
            .iter()
            .filter(|f| f.active)
            .map(|f| (&f.desc, f.series.as_slice()))
    }

    pub fn snapshot(&self) -> Vec<FamilySnapshot> {
        self.families
            .iter()
            .filter(|f| f.active)
            .map(|f| FamilySnapshot {
                name: f.desc.name.clone(),
                fingerprint: f.desc.fingerprint(),
                dropped: f.dropped,
                series: f
                    .series
                    .iter()
                    .map(|s| SeriesSnapshot {
                        labels: s.labels.to_vec(),
                        created: s.created,
                        value: s.value.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Restores the families that are defined now with the same fingerprint; returns the
    /// names of snapshots that were skipped because their definition changed or vanished.
    pub fn restore(&mut self, snapshots: Vec<FamilySnapshot>) -> Vec<String> {
        let mut skipped = Vec::new();
        for snapshot in snapshots {
            let Some(&index) = self.by_name.get(&snapshot.name) else {
                skipped.push(snapshot.name);
                continue;
            };
            let family = &mut self.families[index];
            if !family.active || family.desc.fingerprint() != snapshot.fingerprint {
                skipped.push(snapshot.name);
                continue;
            }
            family.clear();
            family.dropped = snapshot.dropped;
            let overflow_labels: Vec<&str> = family
                .desc
                .label_names
                .iter()
                .map(|_| OVERFLOW_LABEL_VALUE)
                .collect();
            for series in snapshot.series {
                if series.labels.len() != family.desc.label_names.len()
                    || !value_fits(&series.value, &family.desc)
                {
                    continue;
                }
                let mut key = Vec::new();
                encode_key(&mut key, &series.labels);
                let is_overflow = !overflow_labels.is_empty() && series.labels == overflow_labels;
                let slot = family.push_series(key.into(), series.labels.into(), series.created);
                family.series[slot].value = series.value;
                if is_overflow {
                    family.overflow = Some(slot);
                }
            }
        }
        skipped
    }

    /// Renders active families whose description passes `filter`, sorted by name and
    /// label values, in the given format.
    pub fn render(&self, format: Format, filter: impl Fn(&FamilyDesc) -> bool) -> String {
        let mut out = String::with_capacity(4096);
        let mut order: Vec<&Family> = self
            .families
            .iter()
            .filter(|f| f.active && filter(&f.desc))
            .collect();
        order.sort_by(|a, b| a.desc.name.cmp(&b.desc.name));
        for family in order {
            render_family(&mut out, family, format);
        }
        if format == Format::OpenMetrics {
            out.push_str(exposition::OPENMETRICS_EOF);
        }
        out
    }
}

fn value_fits(value: &Value, desc: &FamilyDesc) -> bool {
    match (value, desc.kind) {
        (Value::Histogram(h), MetricKind::Histogram) => h.counts.len() == desc.buckets.len() + 1,
        (Value::Scalar(_), MetricKind::Counter | MetricKind::Gauge) => true,
        _ => false,
    }
}

/// Every name a family takes in an exposition, in either format: its family names (an
/// OpenMetrics counter's drops `_total`) and its sample names. Two families that share one
/// make an exposition that does not parse.
pub fn exposed_names(desc: &FamilyDesc) -> Vec<String> {
    let name = desc.name.as_str();
    match desc.kind {
        MetricKind::Gauge => vec![name.to_owned()],
        MetricKind::Counter => {
            let family = name.strip_suffix("_total").unwrap_or(name);
            let mut names = vec![
                name.to_owned(),
                family.to_owned(),
                format!("{family}_total"),
                format!("{family}_created"),
            ];
            names.sort_unstable();
            names.dedup();
            names
        }
        MetricKind::Histogram => ["", "_bucket", "_sum", "_count", "_created"]
            .iter()
            .map(|suffix| format!("{name}{suffix}"))
            .collect(),
    }
}

fn render_family(out: &mut String, family: &Family, format: Format) {
    let desc = &family.desc;
    let open_metrics = format == Format::OpenMetrics;
    // OpenMetrics names a counter family without its `_total` suffix.
    let family_name = match (desc.kind, open_metrics) {
        (MetricKind::Counter, true) => desc.name.strip_suffix("_total").unwrap_or(&desc.name),
        _ => desc.name.as_str(),
    };
    exposition::write_header(out, family_name, &desc.help, desc.kind.exposition_type());
    let mut series: Vec<&Series> = family.series.iter().collect();
    series.sort_by(|a, b| a.labels.cmp(&b.labels));
    // A series' value always has its family's kind (`Family::zero_value`, `value_fits`).
    match desc.kind {
        MetricKind::Counter | MetricKind::Gauge => {
            render_scalars(out, desc, family_name, &series, open_metrics);
        }
        MetricKind::Histogram => render_histograms(out, desc, &series, open_metrics),
    }
}

/// The label pairs of a series, in the family's label order.
fn label_pairs<'a>(
    names: &'a [String],
    values: &'a [String],
) -> impl Iterator<Item = (&'a str, &'a str)> {
    names
        .iter()
        .map(String::as_str)
        .zip(values.iter().map(String::as_str))
}

fn render_scalars(
    out: &mut String,
    desc: &FamilyDesc,
    family_name: &str,
    series: &[&Series],
    open_metrics: bool,
) {
    let counter = desc.kind == MetricKind::Counter;
    let sample = match (counter, open_metrics) {
        (true, true) => format!("{family_name}_total"),
        _ => desc.name.clone(),
    };
    let created = format!("{family_name}_created");
    let names = &desc.label_names;
    for s in series {
        let Value::Scalar(v) = &s.value else { continue };
        exposition::write_sample(out, &sample, label_pairs(names, &s.labels), *v);
        if open_metrics && counter {
            exposition::write_sample(out, &created, label_pairs(names, &s.labels), s.created);
        }
    }
}

fn render_histograms(out: &mut String, desc: &FamilyDesc, series: &[&Series], open_metrics: bool) {
    let bucket_name = format!("{}_bucket", desc.name);
    let sum_name = format!("{}_sum", desc.name);
    let count_name = format!("{}_count", desc.name);
    let created_name = format!("{}_created", desc.name);
    // `le` of every bucket, the last one `+Inf`: formatted once per family, not per series.
    let bounds: Vec<String> = desc
        .buckets
        .iter()
        .chain([&f64::INFINITY])
        .map(|bound| exposition::format_value(*bound))
        .collect();
    let names = &desc.label_names;
    for s in series {
        let Value::Histogram(h) = &s.value else {
            continue;
        };
        let mut cumulative = 0u64;
        for (count, le) in h.counts.iter().zip(&bounds) {
            cumulative = cumulative.saturating_add(*count);
            let labels = label_pairs(names, &s.labels).chain([("le", le.as_str())]);
            exposition::write_sample(out, &bucket_name, labels, cumulative as f64);
        }
        exposition::write_sample(out, &sum_name, label_pairs(names, &s.labels), h.sum);
        let count = h.count as f64;
        exposition::write_sample(out, &count_name, label_pairs(names, &s.labels), count);
        if open_metrics {
            let labels = label_pairs(names, &s.labels);
            exposition::write_sample(out, &created_name, labels, s.created);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(registry: &mut Registry, max_series: usize) -> FamilyId {
        registry.define(
            FamilyDesc::new("deletes_total", "Hard deletes.", MetricKind::Counter)
                .labels(["table"]),
            max_series,
        )
    }

    #[test]
    fn renders_prometheus_text_sorted() {
        let mut registry = Registry::new();
        let deletes = counter(&mut registry, 10);
        let latency = registry.define(
            FamilyDesc::new("latency_seconds", "", MetricKind::Histogram).buckets(vec![0.1, 1.0]),
            10,
        );
        registry.inc(deletes, &["users"], 1.0);
        registry.inc(deletes, &["orders"], 2.0);
        registry.inc(deletes, &["we\"ird\n"], 1.0);
        for v in [0.1, 0.5, 3.0] {
            registry.observe(latency, &[] as &[&str], v);
        }
        let text = registry.render(Format::Prometheus, |_| true);
        assert_eq!(
            text,
            "# HELP deletes_total Hard deletes.\n\
             # TYPE deletes_total counter\n\
             deletes_total{table=\"orders\"} 2\n\
             deletes_total{table=\"users\"} 1\n\
             deletes_total{table=\"we\\\"ird\\n\"} 1\n\
             # TYPE latency_seconds histogram\n\
             latency_seconds_bucket{le=\"0.1\"} 1\n\
             latency_seconds_bucket{le=\"1\"} 2\n\
             latency_seconds_bucket{le=\"+Inf\"} 3\n\
             latency_seconds_sum 3.6\n\
             latency_seconds_count 3\n"
        );
    }

    #[test]
    fn renders_openmetrics_with_created() {
        let mut registry = Registry::new();
        registry.set_now(1000.5);
        let deletes = counter(&mut registry, 10);
        registry.inc(deletes, &["orders"], 1.0);
        let text = registry.render(Format::OpenMetrics, |_| true);
        assert!(text.contains("# TYPE deletes counter\n"), "{text}");
        assert!(
            text.contains("deletes_total{table=\"orders\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("deletes_created{table=\"orders\"} 1000.5\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn budget_folds_new_label_sets_into_overflow() {
        let mut registry = Registry::new();
        let deletes = counter(&mut registry, 2);
        for table in ["a", "b", "c", "d", "a"] {
            registry.inc(deletes, &[table], 1.0);
        }
        assert_eq!(
            registry.get("deletes_total", &[("table", "a")]),
            Some(&Value::Scalar(2.0))
        );
        assert_eq!(
            registry.get("deletes_total", &[("table", OVERFLOW_LABEL_VALUE)]),
            Some(&Value::Scalar(2.0))
        );
        assert_eq!(
            registry.dropped().collect::<Vec<_>>(),
            vec![("deletes_total", 2)]
        );
    }

    #[test]
    fn snapshot_restores_exactly_and_skips_changed_definitions() {
        let mut registry = Registry::new();
        registry.set_now(42.0);
        let deletes = counter(&mut registry, 1);
        registry.inc(deletes, &["a"], 3.0);
        registry.inc(deletes, &["b"], 1.0);
        let snapshot = registry.snapshot();

        let mut restored = Registry::new();
        counter(&mut restored, 1);
        assert!(restored.restore(snapshot.clone()).is_empty());
        assert_eq!(restored.snapshot(), snapshot);
        restored.inc(deletes, &["c"], 1.0);
        assert_eq!(
            restored.get("deletes_total", &[("table", OVERFLOW_LABEL_VALUE)]),
            Some(&Value::Scalar(2.0))
        );

        let mut changed = Registry::new();
        changed.define(
            FamilyDesc::new("deletes_total", "", MetricKind::Counter).labels(["db"]),
            10,
        );
        assert_eq!(changed.restore(snapshot), vec!["deletes_total".to_owned()]);
    }

    #[test]
    fn families_lists_active_series_with_labels_and_created() {
        let mut registry = Registry::new();
        registry.set_now(7.25);
        let deletes = counter(&mut registry, 10);
        registry.inc(deletes, &["users"], 3.0);
        let gone = registry.define(FamilyDesc::new("gone", "", MetricKind::Gauge), 10);
        registry.set(gone, &[] as &[&str], 1.0);
        registry.retain(|desc| desc.name == "deletes_total");

        let listed: Vec<String> = registry
            .families()
            .flat_map(|(desc, series)| {
                series.iter().map(|s| {
                    format!(
                        "{} {:?} {:?} {}",
                        desc.name,
                        s.labels(),
                        s.value,
                        s.created()
                    )
                })
            })
            .collect();
        assert_eq!(listed, ["deletes_total [\"users\"] Scalar(3.0) 7.25"]);
    }

    #[test]
    fn redefinition_keeps_state_only_when_unchanged() {
        let mut registry = Registry::new();
        let deletes = counter(&mut registry, 10);
        registry.inc(deletes, &["a"], 1.0);
        let again = counter(&mut registry, 10);
        assert_eq!(again, deletes);
        assert_eq!(
            registry.get("deletes_total", &[("table", "a")]),
            Some(&Value::Scalar(1.0))
        );
        registry.define(
            FamilyDesc::new("deletes_total", "", MetricKind::Gauge).labels(["table"]),
            10,
        );
        assert_eq!(registry.get("deletes_total", &[("table", "a")]), None);
    }
}
