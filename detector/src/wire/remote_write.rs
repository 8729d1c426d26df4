//! Prometheus remote_write 1.0, as a receiver decodes it: a snappy block (not the framed
//! format) holding a protobuf `prometheus.WriteRequest`.
//!
//! Headers are checked before the body: the content type must be
//! `application/x-protobuf` (a `proto` parameter, if any, must name 1.0's
//! `prometheus.WriteRequest`) and the content encoding `snappy`; both are required. The
//! decoded size is read from the snappy header and checked against the caller's limit
//! before anything is allocated for it. The decoded request is then walked on the wire
//! before any of it is decoded ([`Limits`]): too many series refuse the request, and a
//! series over a label limit is skipped unread, so a hostile body costs no more memory
//! than its own size. Each [`RemoteWriteError`] knows the HTTP status that the receiver
//! answers with.
//!
//! A series that is not valid (no `__name__`, a name that is not a metric or label name, a
//! label twice, text that is not UTF-8) is skipped and counted, and the rest of the
//! request is taken, as Prometheus' own receiver does: one bad series must not cost its
//! batch, which a sender drops on a 400.
//!
//! Kinds come from the request's own `metadata` as in [`super::exposition`]; without
//! metadata every sample is [`ValueKind::Unknown`]. Prometheus itself sends metadata in
//! requests of their own, not beside the samples. Native histograms are counted and
//! skipped; exemplars are not decoded. Stale markers stay the NaN they are sent as.

use std::collections::{HashMap, HashSet};

use prost::Message as _;
use thiserror::Error;

use super::{is_label_name, is_metric_name, FamilyType, Sample, ValueKind, SAMPLE_SUFFIXES};

/// The protobuf messages of `prometheus/prompb`, reduced to the fields read here.
pub mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
        #[prost(message, repeated, tag = "3")]
        pub metadata: Vec<MetricMetadata>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
        /// Native histograms, only counted: their fields are skipped unread.
        #[prost(message, repeated, tag = "4")]
        pub histograms: Vec<Histogram>,
    }

    /// Bytes rather than `string`, so that invalid UTF-8 gets an error of its own.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(bytes = "vec", tag = "1")]
        pub name: Vec<u8>,
        #[prost(bytes = "vec", tag = "2")]
        pub value: Vec<u8>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        /// Milliseconds since the Unix epoch.
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Histogram {}

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricMetadata {
        #[prost(enumeration = "MetricType", tag = "1")]
        pub r#type: i32,
        #[prost(string, tag = "2")]
        pub metric_family_name: String,
        #[prost(string, tag = "4")]
        pub help: String,
        #[prost(string, tag = "5")]
        pub unit: String,
    }

    /// `MetricMetadata.MetricType`, numbered as in prompb's `types.proto`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
    #[repr(i32)]
    pub enum MetricType {
        Unknown = 0,
        Counter = 1,
        Gauge = 2,
        Histogram = 3,
        GaugeHistogram = 4,
        Summary = 5,
        Info = 6,
        StateSet = 7,
    }
}

/// What one remote_write request held.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteRequest {
    pub samples: Vec<Sample>,
    /// Native histogram samples, which are not decoded.
    pub skipped_histograms: usize,
    /// Series skipped as not valid, and why the first was.
    pub invalid_series: usize,
    pub first_invalid: Option<String>,
    /// Series skipped as over a label limit, and which limit the first was over.
    pub over_limits: usize,
    pub first_over_limits: Option<String>,
}

/// Why a request was refused; [`RemoteWriteError::status`] is the HTTP answer.
#[derive(Debug, Error)]
pub enum RemoteWriteError {
    #[error("missing content type, expected application/x-protobuf")]
    MissingContentType,
    #[error("unsupported content type {content_type:?}, expected application/x-protobuf")]
    UnsupportedContentType { content_type: String },
    #[error("unsupported message {proto:?}, only remote write 1.0 (prometheus.WriteRequest)")]
    UnsupportedProto { proto: String },
    #[error("missing content encoding, expected snappy")]
    MissingContentEncoding,
    #[error("unsupported content encoding {content_encoding:?}, expected snappy")]
    UnsupportedContentEncoding { content_encoding: String },
    #[error("body decodes to {decoded_bytes} bytes, over the limit of {max_decoded_bytes}")]
    TooLarge {
        decoded_bytes: usize,
        max_decoded_bytes: usize,
    },
    #[error("invalid snappy block: {0}")]
    Snappy(snap::Error),
    #[error("invalid protobuf: {0}")]
    Protobuf(prost::DecodeError),
    #[error("a series has no __name__ label")]
    MissingMetricName,
    #[error("a label name or value is not valid UTF-8")]
    InvalidUtf8,
    #[error("a series has the label {name:?} twice")]
    DuplicateLabel { name: String },
    #[error("invalid metric name {name:?}")]
    InvalidMetricName { name: String },
    #[error("invalid label name {name:?}")]
    InvalidLabelName { name: String },
    /// Each sample carries its series' name and labels: a long label on many samples
    /// would take far more memory and work than the body it came in.
    #[error("samples would copy {bytes} bytes of names and labels, over the limit of {max_bytes}")]
    TooManyLabelBytes { bytes: usize, max_bytes: usize },
    #[error("more than {limit} series in one request")]
    TooManySeries { limit: usize },
    #[error("invalid protobuf: a field runs past the end of its message")]
    Truncated,
    #[error("invalid protobuf: groups are not part of a WriteRequest")]
    Groups,
}

impl RemoteWriteError {
    /// The HTTP status to answer with: 415 for headers, 413 for size, 400 for the body.
    pub fn status(&self) -> u16 {
        match self {
            Self::MissingContentType
            | Self::UnsupportedContentType { .. }
            | Self::UnsupportedProto { .. }
            | Self::MissingContentEncoding
            | Self::UnsupportedContentEncoding { .. } => 415,
            Self::TooLarge { .. } | Self::TooManyLabelBytes { .. } | Self::TooManySeries { .. } => {
                413
            }
            Self::Snappy(_)
            | Self::Protobuf(_)
            | Self::Truncated
            | Self::Groups
            | Self::MissingMetricName
            | Self::InvalidUtf8
            | Self::DuplicateLabel { .. }
            | Self::InvalidMetricName { .. }
            | Self::InvalidLabelName { .. } => 400,
        }
    }
}

const PROTOBUF_CONTENT_TYPE: &str = "application/x-protobuf";
const WRITE_REQUEST_V1: &str = "prometheus.WriteRequest";

/// What one request may hold, checked on the wire before anything of it is decoded: a
/// request over `max_decoded_bytes` or `series_limit` is refused (413), and a series over
/// a label limit is skipped and counted while the rest of the request is taken. The label
/// limits carry the names of Prometheus' own per-scrape limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub max_decoded_bytes: usize,
    /// Series per request.
    pub series_limit: usize,
    /// Labels per series, `__name__` included.
    pub label_limit: usize,
    /// Bytes per label name.
    pub label_name_length_limit: usize,
    /// Bytes per label value.
    pub label_value_length_limit: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_decoded_bytes: 8 << 20,
            series_limit: 20_000,
            label_limit: 64,
            label_name_length_limit: 1024,
            label_value_length_limit: 2048,
        }
    }
}

/// Decodes one request body, given its `Content-Type` and `Content-Encoding` headers,
/// within `limits`; [`EXPANSION`]` * max_decoded_bytes` bounds the samples it is decoded
/// into.
pub fn decode(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    body: &[u8],
    limits: &Limits,
) -> Result<WriteRequest, RemoteWriteError> {
    check_content_type(content_type)?;
    check_content_encoding(content_encoding)?;
    let max_decoded_bytes = limits.max_decoded_bytes;
    let decoded_bytes = snap::raw::decompress_len(body).map_err(RemoteWriteError::Snappy)?;
    if decoded_bytes > max_decoded_bytes {
        return Err(RemoteWriteError::TooLarge {
            decoded_bytes,
            max_decoded_bytes,
        });
    }
    let decoded = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(RemoteWriteError::Snappy)?;
    let scanned = scan(&decoded, limits)?;
    into_samples(scanned)
}

/// How many times its decoded size a request's samples may copy in names and labels (each
/// sample carries its series'): a sample takes at least 11 bytes of the body, so a series
/// with up to 176 bytes of them fits with any number of samples, and a long label repeated
/// over millions of samples does not.
pub const EXPANSION: usize = 16;

/// A request's parts as found on the wire: the series within the limits and the metadata,
/// each still encoded.
struct Scanned<'a> {
    series: Vec<&'a [u8]>,
    /// Samples in those series.
    samples: usize,
    metadata: Vec<&'a [u8]>,
    over_limits: usize,
    first_over_limits: Option<String>,
}

/// Walks a `WriteRequest` without decoding it, so that what the limits refuse is never
/// allocated: prost would build every label of every series first.
fn scan<'a>(mut request: &'a [u8], limits: &Limits) -> Result<Scanned<'a>, RemoteWriteError> {
    let mut scanned = Scanned {
        series: Vec::new(),
        samples: 0,
        metadata: Vec::new(),
        over_limits: 0,
        first_over_limits: None,
    };
    let (mut series_count, mut copied_bytes) = (0usize, 0usize);
    let max_copied_bytes = limits.max_decoded_bytes.saturating_mul(EXPANSION);
    while !request.is_empty() {
        match next_field(&mut request)? {
            (1, Some(series)) => {
                series_count += 1;
                if series_count > limits.series_limit {
                    return Err(RemoteWriteError::TooManySeries {
                        limit: limits.series_limit,
                    });
                }
                let shape = SeriesShape::of(series)?;
                if let Some(over) = shape.over(limits) {
                    scanned.over_limits += 1;
                    scanned.first_over_limits.get_or_insert(over);
                    continue;
                }
                copied_bytes =
                    copied_bytes.saturating_add(shape.label_bytes.saturating_mul(shape.samples));
                if copied_bytes > max_copied_bytes {
                    return Err(RemoteWriteError::TooManyLabelBytes {
                        bytes: copied_bytes,
                        max_bytes: max_copied_bytes,
                    });
                }
                scanned.samples += shape.samples;
                scanned.series.push(series);
            }
            (3, Some(metadata)) => scanned.metadata.push(metadata),
            _ => {}
        }
    }
    Ok(scanned)
}

/// What one encoded series holds, in counts and sizes.
#[derive(Debug, Default)]
struct SeriesShape {
    labels: usize,
    label_bytes: usize,
    longest_name: usize,
    longest_value: usize,
    samples: usize,
}

impl SeriesShape {
    fn of(mut series: &[u8]) -> Result<Self, RemoteWriteError> {
        let mut shape = SeriesShape::default();
        while !series.is_empty() {
            match next_field(&mut series)? {
                (1, Some(mut label)) => {
                    shape.labels += 1;
                    while !label.is_empty() {
                        match next_field(&mut label)? {
                            (1, Some(name)) => {
                                shape.longest_name = shape.longest_name.max(name.len());
                                shape.label_bytes += name.len();
                            }
                            (2, Some(value)) => {
                                shape.longest_value = shape.longest_value.max(value.len());
                                shape.label_bytes += value.len();
                            }
                            _ => {}
                        }
                    }
                }
                (2, Some(_)) => shape.samples += 1,
                _ => {}
            }
        }
        Ok(shape)
    }

    /// Which label limit the series is over, said for the log.
    fn over(&self, limits: &Limits) -> Option<String> {
        if self.labels > limits.label_limit {
            Some(format!(
                "{} labels, over label_limit {}",
                self.labels, limits.label_limit
            ))
        } else if self.longest_name > limits.label_name_length_limit {
            Some(format!(
                "a label name of {} bytes, over label_name_length_limit {}",
                self.longest_name, limits.label_name_length_limit
            ))
        } else if self.longest_value > limits.label_value_length_limit {
            Some(format!(
                "a label value of {} bytes, over label_value_length_limit {}",
                self.longest_value, limits.label_value_length_limit
            ))
        } else {
            None
        }
    }
}

/// Takes the next field off an encoded message: its number and, when it is
/// length-delimited, its bytes.
fn next_field<'a>(message: &mut &'a [u8]) -> Result<(u32, Option<&'a [u8]>), RemoteWriteError> {
    use prost::encoding::{decode_key, decode_varint, WireType};
    let (tag, wire_type) = decode_key(message).map_err(RemoteWriteError::Protobuf)?;
    let skip = |message: &mut &'a [u8], len: usize| -> Result<&'a [u8], RemoteWriteError> {
        if message.len() < len {
            return Err(RemoteWriteError::Truncated);
        }
        let (field, rest) = message.split_at(len);
        *message = rest;
        Ok(field)
    };
    match wire_type {
        WireType::Varint => {
            decode_varint(message).map_err(RemoteWriteError::Protobuf)?;
        }
        WireType::SixtyFourBit => {
            skip(message, 8)?;
        }
        WireType::ThirtyTwoBit => {
            skip(message, 4)?;
        }
        WireType::LengthDelimited => {
            let len = decode_varint(message).map_err(RemoteWriteError::Protobuf)?;
            let len = usize::try_from(len).map_err(|_| RemoteWriteError::Truncated)?;
            return Ok((tag, Some(skip(message, len)?)));
        }
        WireType::StartGroup | WireType::EndGroup => {
            return Err(RemoteWriteError::Groups);
        }
    }
    Ok((tag, None))
}

/// What an error quotes of a name.
fn quoted(name: &str) -> String {
    crate::abbreviate(name, crate::QUOTED_CHARS)
}

fn check_content_type(content_type: Option<&str>) -> Result<(), RemoteWriteError> {
    let content_type = content_type.map(str::trim).unwrap_or("");
    if content_type.is_empty() {
        return Err(RemoteWriteError::MissingContentType);
    }
    let mut parts = content_type.split(';');
    let media_type = parts.next().unwrap_or("").trim();
    if !media_type.eq_ignore_ascii_case(PROTOBUF_CONTENT_TYPE) {
        return Err(RemoteWriteError::UnsupportedContentType {
            content_type: content_type.to_owned(),
        });
    }
    for parameter in parts {
        let Some((key, value)) = parameter.split_once('=') else {
            continue;
        };
        let value = value.trim().trim_matches('"');
        if key.trim().eq_ignore_ascii_case("proto") && value != WRITE_REQUEST_V1 {
            return Err(RemoteWriteError::UnsupportedProto {
                proto: value.to_owned(),
            });
        }
    }
    Ok(())
}

fn check_content_encoding(content_encoding: Option<&str>) -> Result<(), RemoteWriteError> {
    match content_encoding.map(str::trim) {
        None | Some("") => Err(RemoteWriteError::MissingContentEncoding),
        Some(encoding) if encoding.eq_ignore_ascii_case("snappy") => Ok(()),
        Some(encoding) => Err(RemoteWriteError::UnsupportedContentEncoding {
            content_encoding: encoding.to_owned(),
        }),
    }
}

fn family_type(metric_type: i32) -> FamilyType {
    use proto::MetricType;
    match MetricType::try_from(metric_type) {
        Ok(MetricType::Counter) => FamilyType::Counter,
        Ok(MetricType::Gauge) => FamilyType::Gauge,
        Ok(MetricType::Histogram) => FamilyType::Histogram,
        Ok(MetricType::GaugeHistogram) => FamilyType::GaugeHistogram,
        Ok(MetricType::Summary) => FamilyType::Summary,
        Ok(MetricType::Info) => FamilyType::Info,
        Ok(MetricType::StateSet) => FamilyType::StateSet,
        Ok(MetricType::Unknown) | Err(_) => FamilyType::Unknown,
    }
}

/// The kind of a series named `name`, from the family metadata: the family is the name
/// itself or the name less one of the sample suffixes. `None` drops the series.
fn kind_of(family_types: &HashMap<&str, FamilyType>, name: &str) -> Option<ValueKind> {
    if let Some(family_type) = family_types.get(name) {
        return family_type.kind_of(name, name);
    }
    for suffix in SAMPLE_SUFFIXES {
        if let Some(family) = name.strip_suffix(suffix) {
            if let Some(family_type) = family_types.get(family) {
                return family_type.kind_of(family, name);
            }
        }
    }
    Some(ValueKind::Unknown)
}

fn into_samples(scanned: Scanned<'_>) -> Result<WriteRequest, RemoteWriteError> {
    let decode_error = RemoteWriteError::Protobuf;
    let metadata = scanned
        .metadata
        .iter()
        .map(|bytes| proto::MetricMetadata::decode(*bytes).map_err(decode_error))
        .collect::<Result<Vec<_>, _>>()?;
    let family_types: HashMap<&str, FamilyType> = metadata
        .iter()
        .map(|m| (m.metric_family_name.as_str(), family_type(m.r#type)))
        .collect();
    let mut result = WriteRequest {
        samples: Vec::with_capacity(scanned.samples),
        over_limits: scanned.over_limits,
        first_over_limits: scanned.first_over_limits,
        ..WriteRequest::default()
    };
    for bytes in scanned.series {
        let series = proto::TimeSeries::decode(bytes).map_err(decode_error)?;
        result.skipped_histograms += series.histograms.len();
        let (name, labels) = match series_labels(series.labels) {
            Ok(named) => named,
            Err(error) => {
                result.invalid_series += 1;
                result
                    .first_invalid
                    .get_or_insert_with(|| error.to_string());
                continue;
            }
        };
        let Some(kind) = kind_of(&family_types, &name) else {
            continue;
        };
        let sample = |name: String, labels: Vec<(String, String)>, s: &proto::Sample| Sample {
            name,
            labels,
            value: s.value,
            timestamp_ms: Some(s.timestamp),
            kind,
        };
        if let Some((last, others)) = series.samples.split_last() {
            for s in others {
                result.samples.push(sample(name.clone(), labels.clone(), s));
            }
            result.samples.push(sample(name, labels, last));
        }
    }
    Ok(result)
}

/// The series' name and its other labels, sorted, without empty values.
fn series_labels(
    labels: Vec<proto::Label>,
) -> Result<(String, Vec<(String, String)>), RemoteWriteError> {
    let mut name = None;
    let mut others = Vec::with_capacity(labels.len().saturating_sub(1));
    for label in labels {
        let label_name =
            String::from_utf8(label.name).map_err(|_| RemoteWriteError::InvalidUtf8)?;
        let value = String::from_utf8(label.value).map_err(|_| RemoteWriteError::InvalidUtf8)?;
        if label_name != "__name__" && !is_label_name(&label_name) {
            return Err(RemoteWriteError::InvalidLabelName {
                name: quoted(&label_name),
            });
        }
        if label_name == "__name__" {
            if name.is_some() {
                return Err(RemoteWriteError::DuplicateLabel { name: label_name });
            }
            name = Some(value);
        } else if !value.is_empty() {
            others.push((label_name, value));
        }
    }
    let name = name
        .filter(|name| !name.is_empty())
        .ok_or(RemoteWriteError::MissingMetricName)?;
    if !is_metric_name(&name) {
        return Err(RemoteWriteError::InvalidMetricName {
            name: quoted(&name),
        });
    }
    others.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(pair) = others.windows(2).find(|pair| pair[0].0 == pair[1].0) {
        return Err(RemoteWriteError::DuplicateLabel {
            name: pair[0].0.clone(),
        });
    }
    Ok((name, others))
}

/// Encodes samples as a remote_write 1.0 body (snappy-compressed protobuf), one series
/// per distinct name and labels in order of first appearance; for tests and benchmarks.
///
/// A sample without a timestamp is sent at 0. When any sample has a known kind, the
/// request carries metadata naming each metric (the first kind seen for a name wins), so
/// that [`decode`] gives the kinds back.
///
/// # Panics
/// If the protobuf is over snappy's block limit of about 4 GiB.
pub fn encode(samples: &[Sample]) -> Vec<u8> {
    let mut request = proto::WriteRequest::default();
    // A series is its name and labels; the value is its place in the request.
    let mut series_index: HashMap<SeriesKey<'_>, usize> = HashMap::new();
    let mut described: HashSet<&str> = HashSet::new();
    let any_kind_known = samples.iter().any(|s| s.kind != ValueKind::Unknown);
    for sample in samples {
        let index = *series_index
            .entry((sample.name.as_str(), sample.labels.as_slice()))
            .or_insert_with(|| {
                request.timeseries.push(proto::TimeSeries {
                    labels: proto_labels(sample),
                    ..Default::default()
                });
                request.timeseries.len() - 1
            });
        request.timeseries[index].samples.push(proto::Sample {
            value: sample.value,
            timestamp: sample.timestamp_ms.unwrap_or(0),
        });
        if any_kind_known && described.insert(&sample.name) {
            let metric_type = match sample.kind {
                ValueKind::Counter => proto::MetricType::Counter,
                ValueKind::Gauge => proto::MetricType::Gauge,
                ValueKind::Unknown => proto::MetricType::Unknown,
            };
            request.metadata.push(proto::MetricMetadata {
                r#type: metric_type.into(),
                metric_family_name: sample.name.clone(),
                ..Default::default()
            });
        }
    }
    snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("a remote write body under snappy's 4 GiB block limit")
}

type SeriesKey<'a> = (&'a str, &'a [(String, String)]);

/// `__name__` and the labels, sorted by name as Prometheus sends them.
fn proto_labels(sample: &Sample) -> Vec<proto::Label> {
    let mut labels: Vec<proto::Label> = std::iter::once(("__name__", sample.name.as_str()))
        .chain(sample.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .map(|(name, value)| proto::Label {
            name: name.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        })
        .collect();
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    labels
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const LIMIT: usize = 1 << 20;

    fn limits(max_decoded_bytes: usize) -> Limits {
        Limits {
            max_decoded_bytes,
            ..Limits::default()
        }
    }
    const PROTOBUF: Option<&str> = Some("application/x-protobuf");
    const SNAPPY: Option<&str> = Some("snappy");

    fn sample(name: &str, labels: &[(&str, &str)], value: f64, ts: i64, kind: ValueKind) -> Sample {
        Sample {
            name: name.to_owned(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            value,
            timestamp_ms: Some(ts),
            kind,
        }
    }

    fn label(name: &str, value: &str) -> proto::Label {
        proto::Label {
            name: name.as_bytes().to_vec(),
            value: value.as_bytes().to_vec(),
        }
    }

    fn series(labels: &[(&str, &str)], samples: &[(f64, i64)]) -> proto::TimeSeries {
        proto::TimeSeries {
            labels: labels.iter().map(|(k, v)| label(k, v)).collect(),
            samples: samples
                .iter()
                .map(|&(value, timestamp)| proto::Sample { value, timestamp })
                .collect(),
            histograms: Vec::new(),
        }
    }

    fn metadata(family: &str, metric_type: proto::MetricType) -> proto::MetricMetadata {
        proto::MetricMetadata {
            r#type: metric_type.into(),
            metric_family_name: family.to_owned(),
            help: "help".to_owned(),
            unit: String::new(),
        }
    }

    fn body(request: &proto::WriteRequest) -> Vec<u8> {
        snap::raw::Encoder::new()
            .compress_vec(&request.encode_to_vec())
            .unwrap()
    }

    fn status(result: Result<WriteRequest, RemoteWriteError>) -> u16 {
        result.expect_err("an error").status()
    }

    #[test]
    fn round_trip_encode_decode() {
        let samples = [
            sample(
                "up",
                &[("instance", "a:1"), ("job", "x")],
                1.0,
                1_000,
                ValueKind::Gauge,
            ),
            sample(
                "reqs_total",
                &[("code", "200")],
                7.0,
                1_000,
                ValueKind::Counter,
            ),
            sample(
                "up",
                &[("instance", "a:1"), ("job", "x")],
                0.0,
                2_000,
                ValueKind::Gauge,
            ),
            sample(
                "odd",
                &[("A", "upper sorts before __name__")],
                -1.5,
                -3,
                ValueKind::Unknown,
            ),
            sample(
                "reqs_total",
                &[("code", "500")],
                f64::INFINITY,
                1_000,
                ValueKind::Counter,
            ),
        ];
        let decoded = decode(PROTOBUF, SNAPPY, &encode(&samples), &limits(LIMIT)).unwrap();
        assert_eq!(decoded.skipped_histograms, 0);
        // Grouped by series in order of first appearance.
        let order = [0, 2, 1, 3, 4];
        let expected: Vec<_> = order.iter().map(|&i| samples[i].clone()).collect();
        assert_eq!(decoded.samples, expected);
    }

    #[test]
    fn without_metadata_kinds_are_unknown() {
        let samples = [sample("a", &[], 1.0, 5, ValueKind::Unknown)];
        let body = encode(&samples);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        assert!(proto::WriteRequest::decode(raw.as_slice())
            .unwrap()
            .metadata
            .is_empty());
        assert_eq!(
            decode(PROTOBUF, SNAPPY, &body, &limits(LIMIT))
                .unwrap()
                .samples,
            samples
        );
    }

    #[test]
    fn request_built_by_hand() {
        let mut first = series(
            &[
                ("job", "api"),
                ("__name__", "cpu"),
                ("empty", ""),
                ("az", "b"),
            ],
            &[(0.5, 10), (0.75, 20)],
        );
        first.histograms.push(proto::Histogram {});
        let request = proto::WriteRequest {
            timeseries: vec![first, series(&[("__name__", "mem")], &[(f64::NAN, 30)])],
            metadata: Vec::new(),
        };
        let decoded = decode(PROTOBUF, SNAPPY, &body(&request), &limits(LIMIT)).unwrap();
        assert_eq!(decoded.skipped_histograms, 1);
        let labels = [("az", "b"), ("job", "api")];
        assert_eq!(
            decoded.samples[..2],
            [
                sample("cpu", &labels, 0.5, 10, ValueKind::Unknown),
                sample("cpu", &labels, 0.75, 20, ValueKind::Unknown),
            ]
        );
        assert_eq!(decoded.samples[2].name, "mem");
        assert!(decoded.samples[2].value.is_nan());
        assert_eq!(decoded.samples.len(), 3);
    }

    #[test]
    fn metadata_types_applied() {
        let one = [(1.0, 1)];
        let request = proto::WriteRequest {
            timeseries: vec![
                series(&[("__name__", "http_requests_total")], &one),
                series(&[("__name__", "http_requests_created")], &one),
                series(&[("__name__", "rpc_seconds"), ("quantile", "0.5")], &one),
                series(&[("__name__", "rpc_seconds_sum")], &one),
                series(&[("__name__", "rpc_seconds_count")], &one),
                series(&[("__name__", "latency_bucket"), ("le", "1")], &one),
                series(&[("__name__", "latency_created")], &one),
                series(&[("__name__", "temperature")], &one),
                series(&[("__name__", "temperature_total")], &one),
                series(&[("__name__", "legacy_total")], &one),
                series(&[("__name__", "queue_gsum")], &one),
                series(&[("__name__", "not_described")], &one),
            ],
            metadata: vec![
                metadata("http_requests", proto::MetricType::Counter),
                metadata("rpc_seconds", proto::MetricType::Summary),
                metadata("latency", proto::MetricType::Histogram),
                metadata("temperature", proto::MetricType::Gauge),
                metadata("legacy_total", proto::MetricType::Counter),
                metadata("queue", proto::MetricType::GaugeHistogram),
            ],
        };
        let decoded = decode(PROTOBUF, SNAPPY, &body(&request), &limits(LIMIT)).unwrap();
        let kinds: Vec<_> = decoded
            .samples
            .iter()
            .map(|s| (s.name.as_str(), s.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                ("http_requests_total", ValueKind::Counter),
                ("rpc_seconds", ValueKind::Gauge),
                ("rpc_seconds_sum", ValueKind::Counter),
                ("rpc_seconds_count", ValueKind::Counter),
                ("latency_bucket", ValueKind::Counter),
                ("temperature", ValueKind::Gauge),
                ("temperature_total", ValueKind::Unknown),
                ("legacy_total", ValueKind::Counter),
                ("queue_gsum", ValueKind::Gauge),
                ("not_described", ValueKind::Unknown),
            ]
        );
    }

    #[test]
    fn oversized_is_413() {
        let samples: Vec<_> = (0..1_000)
            .map(|i| sample("m", &[], f64::from(i), i64::from(i), ValueKind::Gauge))
            .collect();
        let body = encode(&samples);
        let decoded_len = snap::raw::decompress_len(&body).unwrap();
        assert!(decode(PROTOBUF, SNAPPY, &body, &limits(decoded_len)).is_ok());
        let error = decode(PROTOBUF, SNAPPY, &body, &limits(decoded_len - 1)).unwrap_err();
        assert_eq!(error.status(), 413);
        assert_eq!(
            error.to_string(),
            format!(
                "body decodes to {decoded_len} bytes, over the limit of {}",
                decoded_len - 1
            )
        );
    }

    #[test]
    fn content_type_is_checked() {
        let body = encode(&[sample("m", &[], 1.0, 1, ValueKind::Unknown)]);
        for accepted in [
            "application/x-protobuf",
            "Application/X-Protobuf ; charset=binary",
            "application/x-protobuf;proto=prometheus.WriteRequest",
            "application/x-protobuf; proto=\"prometheus.WriteRequest\"",
        ] {
            assert!(
                decode(Some(accepted), SNAPPY, &body, &limits(LIMIT)).is_ok(),
                "{accepted}"
            );
        }
        for refused in [
            None,
            Some(""),
            Some("application/json"),
            Some("text/plain; version=0.0.4"),
            Some("application/x-protobuf;proto=io.prometheus.write.v2.Request"),
        ] {
            assert_eq!(
                status(decode(refused, SNAPPY, &body, &limits(LIMIT))),
                415,
                "{refused:?}"
            );
        }
    }

    #[test]
    fn content_encoding_is_checked() {
        let body = encode(&[sample("m", &[], 1.0, 1, ValueKind::Unknown)]);
        assert!(decode(PROTOBUF, Some("SNAPPY"), &body, &limits(LIMIT)).is_ok());
        for refused in [None, Some(""), Some("gzip"), Some("zstd")] {
            assert_eq!(
                status(decode(PROTOBUF, refused, &body, &limits(LIMIT))),
                415,
                "{refused:?}"
            );
        }
        assert!(matches!(
            decode(PROTOBUF, None, &body, &limits(LIMIT)),
            Err(RemoteWriteError::MissingContentEncoding)
        ));
    }

    #[test]
    fn bad_bodies_are_400_and_bad_series_are_counted() {
        let bad_snappy = b"\xff\xff\xff\xff\xff\xff";
        assert!(matches!(
            decode(PROTOBUF, SNAPPY, bad_snappy, &limits(LIMIT)),
            Err(RemoteWriteError::Snappy(_))
        ));
        let bad_protobuf = snap::raw::Encoder::new()
            .compress_vec(b"\xff\xff\xff")
            .unwrap();
        assert!(matches!(
            decode(PROTOBUF, SNAPPY, &bad_protobuf, &limits(LIMIT)),
            Err(RemoteWriteError::Protobuf(_))
        ));
        let request = |labels: Vec<proto::Label>| proto::WriteRequest {
            timeseries: vec![proto::TimeSeries {
                labels,
                samples: vec![proto::Sample::default()],
                histograms: Vec::new(),
            }],
            metadata: Vec::new(),
        };
        let cases = [
            (
                request(vec![label("job", "x")]),
                "a series has no __name__ label",
            ),
            (
                request(vec![label("__name__", "")]),
                "a series has no __name__ label",
            ),
            (
                request(vec![
                    label("__name__", "m"),
                    proto::Label {
                        name: b"job".to_vec(),
                        value: b"\xc3\x28".to_vec(),
                    },
                ]),
                "a label name or value is not valid UTF-8",
            ),
            (
                request(vec![
                    label("__name__", "m"),
                    label("a", "1"),
                    label("a", "2"),
                ]),
                "a series has the label \"a\" twice",
            ),
            (
                request(vec![label("__name__", "m"), label("__name__", "n")]),
                "a series has the label \"__name__\" twice",
            ),
            // Names that would break the exposition the detector writes them back into.
            (
                request(vec![label("__name__", "m"), label("l\n\"", "1")]),
                "invalid label name \"l\\n\\\"\"",
            ),
            (
                request(vec![label("__name__", "m"), label("1a", "1")]),
                "invalid label name \"1a\"",
            ),
            (
                request(vec![label("__name__", "m-x")]),
                "invalid metric name \"m-x\"",
            ),
        ];
        for (request, message) in cases {
            let decoded = decode(PROTOBUF, SNAPPY, &body(&request), &limits(LIMIT)).unwrap();
            assert!(decoded.samples.is_empty());
            assert_eq!(decoded.invalid_series, 1, "{message}");
            assert_eq!(decoded.first_invalid.as_deref(), Some(message));
        }
    }

    #[test]
    fn an_invalid_series_is_skipped_and_the_rest_of_the_request_taken() {
        let request = proto::WriteRequest {
            timeseries: vec![
                series(&[("job", "x")], &[(1.0, 1)]),
                series(&[("__name__", "up"), ("job", "x")], &[(1.0, 1), (0.0, 2)]),
                series(&[("__name__", "up"), ("1a", "x")], &[(1.0, 1)]),
            ],
            metadata: Vec::new(),
        };
        let decoded = decode(PROTOBUF, SNAPPY, &body(&request), &limits(LIMIT)).unwrap();
        assert_eq!(decoded.samples.len(), 2);
        assert!(decoded.samples.iter().all(|s| s.name == "up"));
        assert_eq!(decoded.invalid_series, 2);
        assert_eq!(
            decoded.first_invalid.as_deref(),
            Some("a series has no __name__ label")
        );
    }

    #[test]
    fn a_long_name_is_quoted_in_part() {
        // Valid characters, but a colon-free metric name cannot start with a digit.
        let name = format!("0{}", "n".repeat(1_000));
        let request = proto::WriteRequest {
            timeseries: vec![series(&[("__name__", &name)], &[(1.0, 1)])],
            metadata: Vec::new(),
        };
        let decoded = decode(PROTOBUF, SNAPPY, &body(&request), &limits(LIMIT)).unwrap();
        assert_eq!(
            decoded.first_invalid,
            Some(format!("invalid metric name \"0{}…\"", "n".repeat(63)))
        );
    }

    #[test]
    fn a_label_repeated_over_many_samples_is_413_before_it_is_copied() {
        // Half a megabyte of label on 2,000 samples: a small body, a gigabyte of samples.
        let long = "v".repeat(500_000);
        let samples: Vec<(f64, i64)> = (0..2_000).map(|i| (1.0, i)).collect();
        let request = proto::WriteRequest {
            timeseries: vec![series(&[("__name__", "m"), ("big", &long)], &samples)],
            metadata: Vec::new(),
        };
        let body = body(&request);
        let decoded = snap::raw::decompress_len(&body).unwrap();
        // Long values allowed, so that the copies are what refuses it.
        let long_values = |max_decoded_bytes| Limits {
            label_value_length_limit: usize::MAX,
            ..limits(max_decoded_bytes)
        };
        let error = decode(PROTOBUF, SNAPPY, &body, &long_values(decoded)).unwrap_err();
        assert_eq!(error.status(), 413);
        assert!(
            error
                .to_string()
                .contains(&format!("over the limit of {}", decoded * EXPANSION)),
            "{error}"
        );
        // The same label on a few samples is an ordinary request.
        let request = proto::WriteRequest {
            timeseries: vec![series(&[("__name__", "m"), ("big", &long)], &samples[..4])],
            metadata: Vec::new(),
        };
        let body = super::tests::body(&request);
        let decoded = snap::raw::decompress_len(&body).unwrap();
        assert_eq!(
            decode(PROTOBUF, SNAPPY, &body, &long_values(decoded))
                .unwrap()
                .samples
                .len(),
            4
        );
    }

    #[test]
    fn a_series_over_a_label_limit_is_skipped_unread_and_the_rest_taken() {
        let many: Vec<(String, String)> = (0..20_000)
            .map(|i| (format!("l{i}"), "v".to_owned()))
            .collect();
        let mut many_labels: Vec<(&str, &str)> = vec![("__name__", "wide")];
        many_labels.extend(many.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let long_name = "n".repeat(2_000);
        let long_value = "v".repeat(3_000);
        let samples: Vec<(f64, i64)> = (0..400).map(|i| (1.0, i)).collect();
        let request = proto::WriteRequest {
            timeseries: vec![
                series(&many_labels, &samples),
                series(&[("__name__", "named"), (&long_name, "x")], &[(1.0, 1)]),
                series(&[("__name__", "valued"), ("k", &long_value)], &[(1.0, 1)]),
                series(&[("__name__", "up"), ("job", "a")], &[(1.0, 1), (0.0, 2)]),
            ],
            metadata: Vec::new(),
        };
        let decoded = decode(PROTOBUF, SNAPPY, &body(&request), &limits(LIMIT)).unwrap();
        assert_eq!(decoded.over_limits, 3);
        assert_eq!(
            decoded.first_over_limits.as_deref(),
            Some("20001 labels, over label_limit 64")
        );
        assert_eq!(decoded.samples.len(), 2);
        assert!(decoded.samples.iter().all(|s| s.name == "up"));
        // Each limit names itself.
        let names = decode(
            PROTOBUF,
            SNAPPY,
            &body(&proto::WriteRequest {
                timeseries: request.timeseries[1..].to_vec(),
                metadata: Vec::new(),
            }),
            &limits(LIMIT),
        )
        .unwrap();
        let first = names.first_over_limits.unwrap();
        assert!(first.contains("label_name_length_limit 1024"), "{first}");
        let values = decode(
            PROTOBUF,
            SNAPPY,
            &body(&proto::WriteRequest {
                timeseries: request.timeseries[2..].to_vec(),
                metadata: Vec::new(),
            }),
            &limits(LIMIT),
        )
        .unwrap();
        let first = values.first_over_limits.unwrap();
        assert!(first.contains("label_value_length_limit 2048"), "{first}");
    }

    #[test]
    fn a_request_over_the_series_limit_is_413() {
        let timeseries: Vec<_> = (0..11)
            .map(|i| series(&[("__name__", "m"), ("i", &i.to_string())], &[(1.0, 1)]))
            .collect();
        let body = body(&proto::WriteRequest {
            timeseries,
            metadata: Vec::new(),
        });
        let ten = Limits {
            series_limit: 10,
            ..limits(LIMIT)
        };
        let error = decode(PROTOBUF, SNAPPY, &body, &ten).unwrap_err();
        assert_eq!(error.status(), 413);
        assert_eq!(error.to_string(), "more than 10 series in one request");
        let eleven = Limits {
            series_limit: 11,
            ..ten
        };
        assert_eq!(
            decode(PROTOBUF, SNAPPY, &body, &eleven)
                .unwrap()
                .samples
                .len(),
            11
        );
    }

    #[test]
    fn a_field_running_past_its_message_is_400() {
        // Field 1, length-delimited, claiming 100 bytes where 2 follow.
        let payload = [0x0a, 100, 1, 2];
        let body = snap::raw::Encoder::new().compress_vec(&payload).unwrap();
        let error = decode(PROTOBUF, SNAPPY, &body, &limits(LIMIT)).unwrap_err();
        assert_eq!(error.status(), 400);
        assert!(error.to_string().contains("runs past the end"), "{error}");
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            // A random snappy header may claim more than the limit (413), and a few
            // bodies are valid by chance (`[0]` is an empty request).
            match decode(PROTOBUF, SNAPPY, &bytes, &limits(1 << 16)) {
                Ok(_) => {}
                Err(error) => prop_assert!(
                    matches!(error.status(), 400 | 413), "{}", error
                ),
            }
        }

        #[test]
        fn any_bytes_as_a_request_give_samples_or_an_error(
            bytes in proptest::collection::vec(any::<u8>(), 0..1024)
        ) {
            let body = snap::raw::Encoder::new().compress_vec(&bytes).unwrap();
            if let Err(error) = decode(PROTOBUF, SNAPPY, &body, &limits(LIMIT)) {
                prop_assert!(matches!(error.status(), 400 | 413), "{}", error);
            }
        }

        #[test]
        fn random_protobuf_in_valid_snappy_is_400(
            bytes in proptest::collection::vec(any::<u8>(), 1..512)
        ) {
            // Field number 0 is invalid, so no such body is a request.
            let mut payload = vec![0u8];
            payload.extend(bytes);
            let body = snap::raw::Encoder::new().compress_vec(&payload).unwrap();
            let error = decode(PROTOBUF, SNAPPY, &body, &limits(LIMIT)).unwrap_err();
            prop_assert_eq!(error.status(), 400);
        }

        #[test]
        fn random_messages_round_trip(
            values in proptest::collection::vec((any::<f64>(), any::<i64>(), 0..3usize), 0..32)
        ) {
            let names = ["a_total", "b", "c_bucket"];
            let kinds = [ValueKind::Counter, ValueKind::Gauge, ValueKind::Unknown];
            let samples: Vec<_> = values
                .iter()
                .map(|&(value, ts, which)| {
                    sample(names[which], &[("k", "v")], value, ts, kinds[which])
                })
                .collect();
            let decoded = decode(PROTOBUF, SNAPPY, &encode(&samples), &limits(LIMIT)).unwrap();
            prop_assert_eq!(decoded.samples.len(), samples.len());
            for name in names {
                let written: Vec<_> = samples.iter().filter(|s| s.name == name).collect();
                let read: Vec<_> = decoded.samples.iter().filter(|s| s.name == name).collect();
                prop_assert_eq!(written.len(), read.len());
                for (w, r) in written.iter().zip(&read) {
                    // Bits, for NaN payloads (stale markers); but prost, as proto3 asks,
                    // does not write a zero field, so -0.0 comes back as 0.0.
                    let bits = |v: f64| if v == 0.0 { 0 } else { v.to_bits() };
                    prop_assert_eq!(bits(w.value), bits(r.value));
                    prop_assert_eq!((w.timestamp_ms, w.kind), (r.timestamp_ms, r.kind));
                }
            }
        }
    }
}
