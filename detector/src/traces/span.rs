//! One span as the trace pipeline sees it: what OTLP and the replayed case files both map
//! onto. Service and span names are shared `Arc<str>`s from a [`Names`] interner, so the
//! spans of one request (or one replayed file) share one allocation per distinct name.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// A trace's 16-byte id.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct TraceId(pub [u8; 16]);

/// A span's 8-byte id, unique within its trace.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct SpanId(pub [u8; 8]);

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

/// Decodes hex into `N` bytes, right-aligned: ids shorter than the field (some tracers
/// write 64-bit trace ids) are zero-padded on the left, as W3C trace context does.
pub(crate) fn parse_hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let text = text.trim();
    if text.is_empty() || text.len() > 2 * N || text.len() % 2 != 0 {
        return None;
    }
    let mut out = [0u8; N];
    let offset = N - text.len() / 2;
    for (i, pair) in text.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[offset + i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

impl TraceId {
    /// Parses 1 to 32 hex digits (an even count).
    pub fn from_hex(text: &str) -> Option<Self> {
        parse_hex(text).map(Self)
    }
}

impl SpanId {
    /// Parses 1 to 16 hex digits (an even count).
    pub fn from_hex(text: &str) -> Option<Self> {
        parse_hex(text).map(Self)
    }
}

/// OTLP's span kinds. `Unspecified` is common (the replayed cases have no kinds at all),
/// so nothing downstream requires a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// The name Tempo's span metrics use in their `span_kind` label.
    pub fn label(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "SPAN_KIND_UNSPECIFIED",
            SpanKind::Internal => "SPAN_KIND_INTERNAL",
            SpanKind::Server => "SPAN_KIND_SERVER",
            SpanKind::Client => "SPAN_KIND_CLIENT",
            SpanKind::Producer => "SPAN_KIND_PRODUCER",
            SpanKind::Consumer => "SPAN_KIND_CONSUMER",
        }
    }

    /// From OTLP's enum value; unknown values are `Unspecified`.
    pub fn from_otlp(value: i32) -> Self {
        match value {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
}

/// A finished span.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    /// `None` for a root span.
    pub parent_id: Option<SpanId>,
    /// `service.name` of the span's resource.
    pub service: Arc<str>,
    /// The span name (Tempo's `span_name`, the operation).
    pub name: Arc<str>,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub duration_nano: u64,
    pub status: StatusCode,
}

/// OTLP's span status codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum StatusCode {
    #[default]
    Unset,
    Ok,
    Error,
}

impl StatusCode {
    /// The name Tempo's span metrics use in their `status_code` label.
    pub fn label(self) -> &'static str {
        match self {
            StatusCode::Unset => "STATUS_CODE_UNSET",
            StatusCode::Ok => "STATUS_CODE_OK",
            StatusCode::Error => "STATUS_CODE_ERROR",
        }
    }

    /// From OTLP's enum value; unknown values are `Unset`.
    pub fn from_otlp(value: i32) -> Self {
        match value {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }
}

impl Span {
    pub fn is_error(&self) -> bool {
        self.status == StatusCode::Error
    }

    pub fn end_unix_nano(&self) -> u64 {
        self.start_unix_nano.saturating_add(self.duration_nano)
    }
}

/// Interns service and span names: every span of a service shares one allocation. Bounded
/// by `capacity` distinct names; past it a name is still returned (allocated on its own)
/// but not kept, so hostile input cannot grow it without limit.
#[derive(Debug)]
pub struct Names {
    names: HashMap<Box<str>, Arc<str>>,
    capacity: usize,
}

impl Default for Names {
    fn default() -> Self {
        Self::with_capacity(100_000)
    }
}

impl Names {
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            names: HashMap::new(),
            capacity,
        }
    }

    pub fn get(&mut self, name: &str) -> Arc<str> {
        if let Some(shared) = self.names.get(name) {
            return shared.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        if self.names.len() < self.capacity {
            self.names.insert(Box::from(name), shared.clone());
        }
        shared
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_through_hex() {
        let id = TraceId::from_hex("77de626012a7b8a18a7f73f6b97ea61b").unwrap();
        assert_eq!(id.to_string(), "77de626012a7b8a18a7f73f6b97ea61b");
        let span = SpanId::from_hex("f7407f064898b855").unwrap();
        assert_eq!(span.to_string(), "f7407f064898b855");
        // A 64-bit trace id is the low half of the 128-bit one.
        assert_eq!(
            TraceId::from_hex("8a7f73f6b97ea61b").unwrap().to_string(),
            "00000000000000008a7f73f6b97ea61b"
        );
    }

    #[test]
    fn bad_hex_is_refused() {
        for bad in ["", "abc", "zz", "0123456789abcdef0", " "] {
            assert_eq!(SpanId::from_hex(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_share_one_allocation_and_stay_bounded() {
        let mut names = Names::with_capacity(1);
        let a = names.get("frontend");
        let b = names.get("frontend");
        assert!(Arc::ptr_eq(&a, &b));
        let c = names.get("cart");
        assert_eq!(&*c, "cart");
        assert_eq!(names.len(), 1);
    }
}
