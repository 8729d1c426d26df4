//! Traces: spans in, what they say about services out. Spans (from OTLP or a replayed case)
//! are grouped into traces by the [`assemble::TraceAssembler`]; each completed trace yields
//! self times, origin errors and the calls between services ([`assemble::TraceFacts`]);
//! [`rca::Evidence`] keeps a bounded sample of those over time and ranks the services that
//! may have caused an incident; [`case`] replays recorded fault cases through the same path.

pub mod anomalous;
pub mod assemble;
pub mod case;
pub mod logs;
pub mod otlp;
pub mod rca;
pub mod red;
pub mod series;
pub mod span;

pub use assemble::{EdgeFacts, SpanFacts, TraceAssembler, TraceFacts};
pub use rca::{Candidate, Evidence, RcaParams};
pub use span::{Names, Span, SpanId, SpanKind, StatusCode, TraceId};
