//! Wire formats the live detector ingests, decoded into [`Sample`]s: Prometheus text
//! exposition and OpenMetrics text ([`exposition`]), and Prometheus remote_write 1.0
//! ([`remote_write`]).
//!
//! Pure decoding: no sockets, no clocks. Both decoders give every sample the same shape
//! (name apart from the labels, labels sorted by name) and the same [`ValueKind`], derived
//! from the metric family's type by one rule (`FamilyType::kind_of`), so the live path
//! does not care which format a sample came in. Labels with an empty value are dropped: in
//! Prometheus an empty label is the same as no label, so keeping them would split a series.

pub mod exposition;
pub mod remote_write;

/// How a sample's value evolves: counters become rates downstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Counter,
    Gauge,
    Unknown,
}

/// One received sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Metric name (`__name__`).
    pub name: String,
    /// Other labels, sorted by name, without `__name__` and without empty values.
    pub labels: Vec<(String, String)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
    pub kind: ValueKind,
}

/// Length of the metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`) at the start of `bytes`.
pub(crate) fn metric_name_len(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' || *b == b':' => {}
        _ => return 0,
    }
    1 + bytes[1..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_' || **b == b':')
        .count()
}

/// Length of the label name (`[a-zA-Z_][a-zA-Z0-9_]*`) at the start of `bytes`.
pub fn label_name_len(bytes: &[u8]) -> usize {
    match bytes.first() {
        Some(b) if b.is_ascii_alphabetic() || *b == b'_' => {}
        _ => return 0,
    }
    1 + bytes[1..]
        .iter()
        .take_while(|b| b.is_ascii_alphanumeric() || **b == b'_')
        .count()
}

/// Whether all of `name` is a metric name.
pub fn is_metric_name(name: &str) -> bool {
    !name.is_empty() && metric_name_len(name.as_bytes()) == name.len()
}

/// Whether all of `name` is a label name.
pub(crate) fn is_label_name(name: &str) -> bool {
    !name.is_empty() && label_name_len(name.as_bytes()) == name.len()
}

/// A metric family's declared type, as in a `# TYPE` line or remote_write metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FamilyType {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl FamilyType {
    /// The kind of a sample named `sample_name` in the family `family_name` of this type;
    /// `None` for a `_created` sample, which holds a creation time and not a value.
    ///
    /// A name that is not one of the family's own (say `x_total` in a gauge family `x`) is
    /// [`ValueKind::Unknown`]: the input is inconsistent and guessing would be worse.
    pub(crate) fn kind_of(self, family_name: &str, sample_name: &str) -> Option<ValueKind> {
        let Some(suffix) = sample_name.strip_prefix(family_name) else {
            return Some(ValueKind::Unknown);
        };
        let kind = match (self, suffix) {
            // The family name itself: a counter in text format 0.0.4 (where TYPE names
            // `x_total`), a summary's quantiles, a gauge, a state set's states.
            (Self::Counter, "" | "_total") => ValueKind::Counter,
            (Self::Counter | Self::Histogram | Self::Summary, "_created") => return None,
            (Self::Histogram, "_bucket" | "_count" | "_sum") => ValueKind::Counter,
            (Self::Summary, "_count" | "_sum") => ValueKind::Counter,
            (Self::Summary | Self::Gauge | Self::StateSet, "") => ValueKind::Gauge,
            (Self::GaugeHistogram, "_bucket" | "_gcount" | "_gsum") => ValueKind::Gauge,
            (Self::Info, "_info") => ValueKind::Gauge,
            _ => ValueKind::Unknown,
        };
        Some(kind)
    }
}

/// Suffixes a sample name may add to its family's name; remote_write metadata is keyed
/// by family, so a series name is looked up without them.
pub(crate) const SAMPLE_SUFFIXES: [&str; 8] = [
    "_total", "_created", "_bucket", "_count", "_sum", "_gcount", "_gsum", "_info",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_follow_the_family_type() {
        let cases = [
            (
                FamilyType::Counter,
                "x",
                "x_total",
                Some(ValueKind::Counter),
            ),
            (
                FamilyType::Counter,
                "x_total",
                "x_total",
                Some(ValueKind::Counter),
            ),
            (FamilyType::Counter, "x", "x_created", None),
            (
                FamilyType::Counter,
                "x_created",
                "x_created",
                Some(ValueKind::Counter),
            ),
            (
                FamilyType::Histogram,
                "h",
                "h_bucket",
                Some(ValueKind::Counter),
            ),
            (
                FamilyType::Histogram,
                "h",
                "h_count",
                Some(ValueKind::Counter),
            ),
            (
                FamilyType::Histogram,
                "h",
                "h_sum",
                Some(ValueKind::Counter),
            ),
            (FamilyType::Histogram, "h", "h_created", None),
            (FamilyType::Histogram, "h", "h", Some(ValueKind::Unknown)),
            (FamilyType::Summary, "s", "s", Some(ValueKind::Gauge)),
            (FamilyType::Summary, "s", "s_sum", Some(ValueKind::Counter)),
            (FamilyType::Summary, "s", "s_created", None),
            (FamilyType::Gauge, "g", "g", Some(ValueKind::Gauge)),
            (FamilyType::Gauge, "g", "g_total", Some(ValueKind::Unknown)),
            (
                FamilyType::Gauge,
                "g",
                "g_created",
                Some(ValueKind::Unknown),
            ),
            (
                FamilyType::GaugeHistogram,
                "gh",
                "gh_gsum",
                Some(ValueKind::Gauge),
            ),
            (FamilyType::Info, "i", "i_info", Some(ValueKind::Gauge)),
            (FamilyType::StateSet, "st", "st", Some(ValueKind::Gauge)),
            (FamilyType::Unknown, "u", "u", Some(ValueKind::Unknown)),
            (
                FamilyType::Counter,
                "x",
                "y_total",
                Some(ValueKind::Unknown),
            ),
        ];
        for (family_type, family, sample, expected) in cases {
            assert_eq!(
                family_type.kind_of(family, sample),
                expected,
                "{family_type:?} {family} {sample}"
            );
        }
    }
}
