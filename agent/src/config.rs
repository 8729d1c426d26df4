//! The rules file as serde reads it (`*Config` types), and its validation into the
//! checked, compiled form the pipeline runs (`RuleSet`, built in `rule/`).
//!
//! Parsing and validation do no I/O beyond reading the file itself. Every error names the
//! file, the rule and the field so an operator can fix it without guessing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{self, Deserializer};
use serde::Deserialize;

/// A rules file: how to parse lines, and which metrics to derive from them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    #[serde(default)]
    pub parser: ParserConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    pub rules: Vec<RuleConfig>,
}

/// How a record (a line, or a line plus its continuation lines) becomes fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParserConfig {
    #[serde(default)]
    pub format: ParserFormat,
    /// For `format: regex`: a regex whose named captures become fields.
    pub pattern: Option<String>,
    /// Where the event time comes from; the read time when absent or unparsable.
    pub timestamp: Option<TimestampConfig>,
    /// Multi-line records: lines matching `continuation` belong to the record before them.
    pub multiline: Option<MultilineConfig>,
}

impl Default for ParserConfig {
    fn default() -> Self {
        Self {
            format: ParserFormat::Logfmt,
            pattern: None,
            timestamp: None,
            multiline: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParserFormat {
    #[default]
    Logfmt,
    Json,
    Regex,
    /// No fields: rules match the raw line with their own `pattern`.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampConfig {
    /// The field holding the time (a dotted path for JSON).
    pub field: Option<String>,
    /// The N-th whitespace-separated token of the line (0 = first), for logs that start
    /// with a bare timestamp.
    pub token: Option<usize>,
    /// `rfc3339`, `unix`, `unix_ms`, `unix_us`, `unix_ns`, or a chrono strftime format
    /// (e.g. `%Y-%m-%d %H:%M:%S%.f`, read as UTC unless it has `%z`).
    #[serde(default = "default_time_format")]
    pub format: String,
}

fn default_time_format() -> String {
    "rfc3339".to_owned()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// A line matching this regex continues the previous record (e.g. `^\s` for indented
    /// stack traces).
    pub continuation: String,
    /// A record longer than this many lines is cut (the rest starts new records).
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
}

fn default_max_lines() -> usize {
    500
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Longer lines are truncated to this many bytes and counted.
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// Per metric: past this many label sets, new ones go to one overflow series.
    #[serde(default = "default_max_series")]
    pub max_series_per_metric: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_line_bytes: default_max_line_bytes(),
            max_series_per_metric: default_max_series(),
        }
    }
}

fn default_max_line_bytes() -> usize {
    64 * 1024
}

fn default_max_series() -> usize {
    10_000
}

/// One rule: a metric derived from matching records.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RuleConfig {
    Counter(CounterConfig),
    Gauge(GaugeConfig),
    Histogram(HistogramConfig),
    Pair(PairConfig),
    CdcDeletes(CdcDeletesConfig),
    Patterns(PatternsConfig),
}

impl RuleConfig {
    pub fn name(&self) -> &str {
        match self {
            RuleConfig::Counter(c) => &c.name,
            RuleConfig::Gauge(c) => &c.name,
            RuleConfig::Histogram(c) => &c.name,
            RuleConfig::Pair(c) => &c.name,
            RuleConfig::CdcDeletes(c) => &c.name,
            RuleConfig::Patterns(c) => &c.name,
        }
    }
}

/// Log templates learnt with no rules written (`crate::pattern`): every matching record's
/// message is given a template, counted in `<name>_lines_total{labels…, level, pattern}`
/// (`pattern` the template's id); templates first seen are counted in `<name>_new_total`.
/// The template texts are served on `/api/v1/patterns`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternsConfig {
    pub name: String,
    #[serde(default)]
    pub help: String,
    #[serde(default, rename = "match")]
    pub conditions: BTreeMap<String, ConditionConfig>,
    pub pattern: Option<String>,
    /// The field holding the message; without it, the whole record is the message.
    pub field: Option<String>,
    /// The field holding the level, for the `level` label (empty without it).
    pub level: Option<String>,
    /// Label name → field name (e.g. `source: service`).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub static_labels: BTreeMap<String, String>,
    /// The miner's settings; one set for every log by default.
    #[serde(default)]
    pub miner: crate::pattern::MinerConfig,
}

/// Hard deletes counted from Debezium-style change events (`op: d`), by table: the
/// database keeps no trace of the row, the change stream does. Needs `parser.format:
/// json`; the JSON converter's `{schema, payload}` envelope is looked through.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CdcDeletesConfig {
    pub name: String,
    #[serde(default)]
    pub help: String,
    /// Only deletes from these tables (`source.table`); all tables when empty.
    #[serde(default)]
    pub tables: Vec<String>,
    /// Labels from the deleted row: label name → column of `before`.
    #[serde(default)]
    pub before: BTreeMap<String, String>,
    #[serde(default)]
    pub static_labels: BTreeMap<String, String>,
}

impl CdcDeletesConfig {
    /// The counter it stands for: `op == d`, labelled by `source.table` and the chosen
    /// columns of `before`.
    pub fn counter(&self) -> CounterConfig {
        let mut conditions =
            BTreeMap::from([("op".to_owned(), ConditionConfig::Equals("d".into()))]);
        if !self.tables.is_empty() {
            conditions.insert(
                "source.table".to_owned(),
                ConditionConfig::Spec(ConditionSpec {
                    one_of: Some(self.tables.iter().cloned().map(Scalar).collect()),
                    ..ConditionSpec::default()
                }),
            );
        }
        let mut labels = BTreeMap::from([("table".to_owned(), "source.table".to_owned())]);
        for (label, column) in &self.before {
            labels.insert(label.clone(), format!("before.{column}"));
        }
        CounterConfig {
            name: self.name.clone(),
            help: if self.help.is_empty() {
                "Rows hard-deleted, by table (change events with op d).".to_owned()
            } else {
                self.help.clone()
            },
            conditions,
            pattern: None,
            labels,
            static_labels: self.static_labels.clone(),
            value: None,
            scale: 1.0,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CounterConfig {
    pub name: String,
    #[serde(default)]
    pub help: String,
    #[serde(default, rename = "match")]
    pub conditions: BTreeMap<String, ConditionConfig>,
    pub pattern: Option<String>,
    /// Label name → field name.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub static_labels: BTreeMap<String, String>,
    /// Add this field's value instead of 1.
    pub value: Option<String>,
    #[serde(default = "one")]
    pub scale: f64,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GaugeOp {
    #[default]
    Set,
    Add,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GaugeConfig {
    pub name: String,
    #[serde(default)]
    pub help: String,
    #[serde(default, rename = "match")]
    pub conditions: BTreeMap<String, ConditionConfig>,
    pub pattern: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub static_labels: BTreeMap<String, String>,
    pub value: String,
    #[serde(default)]
    pub op: GaugeOp,
    #[serde(default = "one")]
    pub scale: f64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistogramConfig {
    pub name: String,
    #[serde(default)]
    pub help: String,
    #[serde(default, rename = "match")]
    pub conditions: BTreeMap<String, ConditionConfig>,
    pub pattern: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub static_labels: BTreeMap<String, String>,
    pub value: String,
    #[serde(default = "one")]
    pub scale: f64,
    pub buckets: Vec<f64>,
}

/// Pairs a start event with an end event of the same key, in the logs' own time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairConfig {
    pub name: String,
    #[serde(default)]
    pub help: String,
    /// The field holding the key in both events (each side may override it).
    pub key: Option<String>,
    pub start: PairSideConfig,
    pub end: PairSideConfig,
    pub timeout: DurationConfig,
    /// Label name → field name, taken from the start event (the end event for orphans).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub static_labels: BTreeMap<String, String>,
    #[serde(default = "default_latency_buckets")]
    pub buckets: Vec<f64>,
    /// At most this many open starts are held; further starts are dropped and counted.
    #[serde(default = "default_max_open")]
    pub max_open: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairSideConfig {
    #[serde(default, rename = "match")]
    pub conditions: BTreeMap<String, ConditionConfig>,
    pub pattern: Option<String>,
    pub key: Option<String>,
}

fn default_latency_buckets() -> Vec<f64> {
    vec![0.1, 0.5, 1.0, 5.0, 10.0, 30.0]
}

fn default_max_open() -> usize {
    100_000
}

fn one() -> f64 {
    1.0
}

/// A condition on one field: a bare scalar means equality.
#[derive(Debug, Clone)]
pub enum ConditionConfig {
    Equals(String),
    Spec(ConditionSpec),
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConditionSpec {
    pub equals: Option<Scalar>,
    pub not_equals: Option<Scalar>,
    pub one_of: Option<Vec<Scalar>>,
    pub regex: Option<String>,
    pub exists: Option<bool>,
}

impl<'de> Deserialize<'de> for ConditionConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_yaml::Value::deserialize(deserializer)?;
        match value {
            serde_yaml::Value::Mapping(_) => ConditionSpec::deserialize(value)
                .map(ConditionConfig::Spec)
                .map_err(de::Error::custom),
            other => scalar_to_string(&other)
                .map(ConditionConfig::Equals)
                .ok_or_else(|| de::Error::custom("a condition is a scalar or a mapping")),
        }
    }
}

/// A YAML scalar read as text (`200`, `true` and `"200"` all compare as strings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scalar(pub String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_yaml::Value::deserialize(deserializer)?;
        scalar_to_string(&value)
            .map(Scalar)
            .ok_or_else(|| de::Error::custom("expected a scalar"))
    }
}

fn scalar_to_string(value: &serde_yaml::Value) -> Option<String> {
    match value {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A duration written Prometheus-style: `250ms`, `30s`, `5m`, `1h`, `1d` (or a plain
/// number of seconds); the syntax is [`omen_common::duration`]'s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationConfig(pub Duration);

impl<'de> Deserialize<'de> for DurationConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        omen_common::duration::deserialize(deserializer).map(DurationConfig)
    }
}

/// Parses `1h30m`, `30s`, `250ms`, `2d` (see [`omen_common::duration::parse`]).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    omen_common::duration::parse(text).map_err(|error| error.to_string())
}

/// A configuration error, pointing at the file, the rule and the field.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("{path}: rule `{rule}`: field `{field}`: {message}")]
    Invalid {
        path: PathBuf,
        rule: String,
        field: String,
        message: String,
    },
    /// Rules that do not parse, every one named by its place and name.
    #[error("{path}: {}", .errors.join("; "))]
    Rules { path: PathBuf, errors: Vec<String> },
}

impl RulesConfig {
    /// Reads and parses a rules file (validation happens when it is built).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses a rules file. When rules do not parse, each is named (`rules[2] (latency)`)
    /// with its error, all at once: serde stops at the first, and for a rule (a tagged
    /// enum) says only `rules` and where the list starts.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        serde_yaml::from_str(text).map_err(|source| {
            rule_errors(text, path).unwrap_or(ConfigError::Parse {
                path: path.to_owned(),
                source,
            })
        })
    }
}

/// Why one rule does not parse, with the path of the field at fault (`buckets[1]: ...`)
/// when its type is known: the rule is read as that type's fields, which keeps the path
/// serde loses inside a tagged enum.
fn rule_error(rule: serde_yaml::Value) -> Option<String> {
    fn fields<T: serde::de::DeserializeOwned>(rule: serde_yaml::Value) -> Option<String> {
        let error = serde_path_to_error::deserialize::<_, T>(rule).err()?;
        let path = error.path().to_string();
        Some(if path == "." {
            error.into_inner().to_string()
        } else {
            format!("field `{path}`: {}", error.into_inner())
        })
    }
    let whole = serde_yaml::from_value::<RuleConfig>(rule.clone()).err()?;
    let mut body = rule;
    let kind = body
        .as_mapping_mut()
        .and_then(|map| map.remove("type"))
        .and_then(|kind| kind.as_str().map(str::to_owned));
    let detailed = match kind.as_deref() {
        Some("counter") => fields::<CounterConfig>(body),
        Some("gauge") => fields::<GaugeConfig>(body),
        Some("histogram") => fields::<HistogramConfig>(body),
        Some("pair") => fields::<PairConfig>(body),
        Some("cdc_deletes") => fields::<CdcDeletesConfig>(body),
        Some("patterns") => fields::<PatternsConfig>(body),
        _ => None,
    };
    Some(detailed.unwrap_or_else(|| whole.to_string()))
}

/// Every rule of `text` that does not parse on its own, or `None` when they all do (the
/// error is elsewhere) or the file is not even a map with a list of rules.
fn rule_errors(text: &str, path: &Path) -> Option<ConfigError> {
    #[derive(Deserialize)]
    struct Loose {
        #[serde(default)]
        rules: Vec<serde_yaml::Value>,
    }
    let loose: Loose = serde_yaml::from_str(text).ok()?;
    let errors: Vec<String> = loose
        .rules
        .into_iter()
        .enumerate()
        .filter_map(|(index, rule)| {
            let name = rule
                .get("name")
                .and_then(serde_yaml::Value::as_str)
                .map(|name| format!(" (`{name}`)"))
                .unwrap_or_default();
            let error = rule_error(rule)?;
            Some(format!("rules[{index}]{name}: {error}"))
        })
        .collect();
    (!errors.is_empty()).then(|| ConfigError::Rules {
        path: path.to_owned(),
        errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The syntax itself is tested in `omen_common::duration`; this checks the agent's
    /// wrappers keep its messages and accept plain seconds.
    #[test]
    fn durations_parse_like_prometheus() {
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(
            parse_duration("5y").unwrap_err(),
            "unknown unit `y` in duration `5y`"
        );
        let read = |yaml: &str| serde_yaml::from_str::<DurationConfig>(yaml).map(|d| d.0);
        assert_eq!(read("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(read("15").unwrap(), Duration::from_secs(15));
        assert_eq!(read("1.5").unwrap(), Duration::from_millis(1500));
        assert!(read("-1").is_err());
    }

    #[test]
    fn unknown_fields_are_rejected_with_their_place() {
        let text = "rules:\n  - name: a_total\n    type: counter\n    colour: red\n";
        let error = RulesConfig::from_yaml(text, Path::new("r.yaml")).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("r.yaml"), "{message}");
        assert!(message.contains("colour"), "{message}");
    }

    #[test]
    fn conditions_accept_scalars_and_specs() {
        let text = r#"
rules:
  - name: a_total
    type: counter
    match:
      status: 200
      msg: { regex: "^x" }
"#;
        let config = RulesConfig::from_yaml(text, Path::new("r.yaml")).unwrap();
        let RuleConfig::Counter(counter) = &config.rules[0] else {
            panic!("expected a counter")
        };
        assert!(matches!(&counter.conditions["status"], ConditionConfig::Equals(s) if s == "200"));
        assert!(
            matches!(&counter.conditions["msg"], ConditionConfig::Spec(s) if s.regex.is_some())
        );
    }
}
