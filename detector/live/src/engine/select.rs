//! Which series are modelled: Prometheus series selectors (`up`, `http_requests_total{job="api"}`,
//! `{__name__=~"scrape_.+"}`), in `include` and `exclude` lists, globally and per source.
//! A sample is kept when it matches an `include` selector (or there are none) and no
//! `exclude` selector. By default the series nobody wants modelled are excluded too
//! ([`DEFAULT_EXCLUDE`]): target health, Prometheus' scrape bookkeeping, alert states,
//! omen's own metrics, info and creation-time series. Every skipped sample is counted by
//! reason.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

use omen_detector::wire::Sample;

/// Excluded unless `defaults: false`: what Prometheus adds to every target, alert state
/// series, omen's own self-metrics, info series and creation times.
pub const DEFAULT_EXCLUDE: [&str; 6] = [
    "up",
    r#"{__name__=~"scrape_.+"}"#,
    r#"{__name__=~"ALERTS(_FOR_STATE)?"}"#,
    r#"{__name__=~"omen_.+"}"#,
    r#"{__name__=~".+_info"}"#,
    r#"{__name__=~".+_created"}"#,
];

/// Why a sample was not modelled (the `reason` label of the skipped-samples counter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    // The discriminants index per-reason counts.
    /// Matched one of [`DEFAULT_EXCLUDE`].
    Default = 0,
    /// Matched an `exclude` selector.
    Excluded = 1,
    /// Matched no `include` selector.
    NotIncluded = 2,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Default => "default_exclude",
            Self::Excluded => "exclude",
            Self::NotIncluded => "not_included",
        }
    }
}

/// A label matcher's operator.
#[derive(Debug, Clone)]
enum Op {
    Equal(String),
    NotEqual(String),
    Matches(Regex),
    NotMatches(Regex),
}

/// One `label op "value"` of a selector (`__name__` for the metric name).
#[derive(Debug, Clone)]
struct LabelMatcher {
    label: String,
    op: Op,
}

impl LabelMatcher {
    fn matches(&self, value: &str) -> bool {
        match &self.op {
            Op::Equal(v) => value == v,
            Op::NotEqual(v) => value != v,
            Op::Matches(re) => re.is_match(value),
            Op::NotMatches(re) => !re.is_match(value),
        }
    }
}

/// A Prometheus series selector.
#[derive(Debug, Clone)]
pub struct Selector {
    text: String,
    matchers: Vec<LabelMatcher>,
}

/// Why a selector did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("selector `{selector}`: {reason}")]
pub struct SelectorError {
    pub selector: String,
    pub reason: String,
}

impl Selector {
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let error = |reason: &str| SelectorError {
            selector: text.to_owned(),
            reason: reason.to_owned(),
        };
        let trimmed = text.trim();
        let (name, rest) = match trimmed.find('{') {
            Some(at) => (trimmed[..at].trim(), &trimmed[at..]),
            None => (trimmed, ""),
        };
        let mut matchers = Vec::new();
        if !name.is_empty() {
            if !omen_detector::wire::is_metric_name(name) {
                return Err(error("not a metric name"));
            }
            matchers.push(LabelMatcher {
                label: "__name__".to_owned(),
                op: Op::Equal(name.to_owned()),
            });
        }
        if !rest.is_empty() {
            let inner = rest
                .strip_prefix('{')
                .and_then(|r| r.strip_suffix('}'))
                .ok_or_else(|| error("braces do not close"))?;
            parse_matchers(inner, &mut matchers).map_err(|reason| error(&reason))?;
        }
        if matchers.is_empty() {
            return Err(error(
                "selects nothing: give a metric name or a label matcher",
            ));
        }
        Ok(Self {
            text: trimmed.to_owned(),
            matchers,
        })
    }

    pub fn matches(&self, sample: &Sample) -> bool {
        self.matches_by(&sample.name, |label| {
            sample
                .labels
                .iter()
                .find(|(k, _)| k == label)
                .map(|(_, v)| v.as_str())
        })
    }

    /// Whether a series of this name and labels is selected.
    pub fn matches_series(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.matches_by(name, |label| labels.get(label).map(String::as_str))
    }

    fn matches_by<'a>(&self, name: &'a str, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.matchers.iter().all(|m| {
            let value = match m.label.as_str() {
                "__name__" => name,
                other => label(other).unwrap_or(""),
            };
            m.matches(value)
        })
    }

    pub fn text(&self) -> &str {
        &self.text
    }
}

/// Parses `a="x", b=~"y.*"` (a trailing comma allowed).
fn parse_matchers(mut text: &str, out: &mut Vec<LabelMatcher>) -> Result<(), String> {
    loop {
        text = text.trim_start();
        if text.is_empty() {
            return Ok(());
        }
        let label_len = omen_detector::wire::label_name_len(text.as_bytes());
        if label_len == 0 {
            return Err(format!("expected a label name at `{text}`"));
        }
        let label = text[..label_len].to_owned();
        text = text[label_len..].trim_start();
        let (op, after) = ["=~", "!~", "!=", "="]
            .into_iter()
            .find_map(|op| text.strip_prefix(op).map(|rest| (op, rest)))
            .ok_or_else(|| format!("expected =, !=, =~ or !~ after `{label}`"))?;
        let (value, after) = quoted(after.trim_start())?;
        let anchored = |value: &str| {
            Regex::new(&format!("^(?:{value})$")).map_err(|e| format!("{label}: {e}"))
        };
        let op = match op {
            "=" => Op::Equal(value),
            "!=" => Op::NotEqual(value),
            "=~" => Op::Matches(anchored(&value)?),
            _ => Op::NotMatches(anchored(&value)?),
        };
        out.push(LabelMatcher { label, op });
        text = after.trim_start();
        match text.strip_prefix(',') {
            Some(rest) => text = rest,
            None if text.is_empty() => return Ok(()),
            None => return Err(format!("expected `,` at `{text}`")),
        }
    }
}

/// A double-quoted string with `\"`, `\\` and `\n` escapes, and what follows it.
fn quoted(text: &str) -> Result<(String, &str), String> {
    let body = text
        .strip_prefix('"')
        .ok_or_else(|| format!("expected a quoted value at `{text}`"))?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((at, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &body[at + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, other)) => value.push(other),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err("a quoted value does not end".to_owned())
}

impl<'de> Deserialize<'de> for Selector {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Whether `sample` passes `include` (when not empty) and `exclude`, or why not.
pub fn admit(include: &[Selector], exclude: &[Selector], sample: &Sample) -> Result<(), Skip> {
    if exclude.iter().any(|s| s.matches(sample)) {
        return Err(Skip::Excluded);
    }
    if !include.is_empty() && !include.iter().any(|s| s.matches(sample)) {
        return Err(Skip::NotIncluded);
    }
    Ok(())
}

/// The selection every source's samples pass: the global `include`/`exclude`, and the
/// default exclusions unless `defaults: false`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Selection {
    /// Only series matching one of these are modelled (all when empty).
    pub include: Vec<Selector>,
    /// Series matching one of these are not modelled.
    pub exclude: Vec<Selector>,
    /// Exclude [`DEFAULT_EXCLUDE`] too.
    pub defaults: bool,
    #[serde(skip, default = "default_exclude")]
    default_exclude: Vec<Selector>,
}

fn default_exclude() -> Vec<Selector> {
    DEFAULT_EXCLUDE
        .iter()
        .map(|s| Selector::parse(s).expect("the default selectors parse"))
        .collect()
}

impl Default for Selection {
    fn default() -> Self {
        Self {
            include: Vec::new(),
            exclude: Vec::new(),
            defaults: true,
            default_exclude: default_exclude(),
        }
    }
}

impl Selection {
    /// Whether `sample` is kept, or why not.
    pub fn admit(&self, sample: &Sample) -> Result<(), Skip> {
        if self.defaults && self.default_exclude.iter().any(|s| s.matches(sample)) {
            return Err(Skip::Default);
        }
        admit(&self.include, &self.exclude, sample)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use omen_detector::wire::ValueKind;

    fn sample(name: &str, labels: &[(&str, &str)]) -> Sample {
        Sample {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value: 1.0,
            timestamp_ms: None,
            kind: ValueKind::Gauge,
        }
    }

    #[test]
    fn selectors_match_names_and_labels_as_promql_does() {
        let s = |text| Selector::parse(text).unwrap();
        let api = sample("http_requests_total", &[("job", "api"), ("code", "500")]);
        assert!(s("http_requests_total").matches(&api));
        assert!(s(r#"http_requests_total{job="api"}"#).matches(&api));
        assert!(s(r#"{job="api", code=~"5.."}"#).matches(&api));
        assert!(s(r#"{__name__=~"http_.+", code!="200",}"#).matches(&api));
        assert!(!s(r#"{code!~"5.*"}"#).matches(&api));
        assert!(!s(r#"{job="ap"}"#).matches(&api));
        // A missing label is the empty value, as in PromQL.
        assert!(s(r#"{team=""}"#).matches(&api));
        assert!(s(r#"{path="a\"b"}"#).matches(&sample("x", &[("path", "a\"b")])));
    }

    #[test]
    fn bad_selectors_are_refused_with_the_reason() {
        for (text, reason) in [
            ("", "selects nothing"),
            ("{}", "selects nothing"),
            ("9x", "not a metric name"),
            ("x{job=\"a\"", "braces"),
            ("{job}", "expected ="),
            ("{job=a}", "quoted"),
            ("{job=~\"(\"}", "job:"),
            ("{job=\"a\" code=\"b\"}", "expected `,`"),
        ] {
            let error = Selector::parse(text).unwrap_err();
            assert!(error.reason.contains(reason), "{text}: {error}");
        }
    }

    #[test]
    fn the_defaults_skip_what_nobody_models_and_can_be_turned_off() {
        let global = Selection::default();
        for name in [
            "up",
            "scrape_duration_seconds",
            "ALERTS",
            "ALERTS_FOR_STATE",
            "omen_agent_lines_total",
            "go_info",
            "http_requests_created",
        ] {
            assert_eq!(
                global.admit(&sample(name, &[])),
                Err(Skip::Default),
                "{name}"
            );
        }
        for name in [
            "upstream_latency_seconds",
            "queue_depth",
            "information_total",
        ] {
            assert_eq!(global.admit(&sample(name, &[])), Ok(()), "{name}");
        }
        let off: Selection = serde_yaml::from_str("defaults: false").unwrap();
        assert_eq!(off.admit(&sample("up", &[])), Ok(()));
    }

    #[test]
    fn exclude_wins_over_include() {
        let global: Selection =
            serde_yaml::from_str("include: ['{job=\"api\"}']\nexclude: ['{code=\"200\"}']")
                .unwrap();
        let ok = sample("x", &[("job", "api"), ("code", "500")]);
        assert_eq!(global.admit(&ok), Ok(()));
        let excluded = sample("x", &[("job", "api"), ("code", "200")]);
        assert_eq!(global.admit(&excluded), Err(Skip::Excluded));
        assert_eq!(global.admit(&sample("x", &[])), Err(Skip::NotIncluded));
        let unknown = serde_yaml::from_str::<Selection>("inclde: [up]").unwrap_err();
        assert!(unknown.to_string().contains("unknown field"), "{unknown}");
    }
}
