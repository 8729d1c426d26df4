//! OTLP traces in: an `ExportTraceServiceRequest` (protobuf or OTLP/JSON) becomes
//! [`Span`]s. A span the pipeline cannot use (trace id not 16 bytes or all zero, span id
//! not 8 bytes, a parent id of the wrong size, an end before its start) is rejected and
//! counted, and the rest of the request is taken: the receiver answers with OTLP's
//! partial success. Decoding never panics; its allocations are bounded by the body,
//! whose size the receiver limits, and nesting by prost's and serde_json's depth limits.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span as OtlpSpan;
use prost::Message;
use thiserror::Error;

use super::span::{Names, Span, SpanId, SpanKind, StatusCode, TraceId};

/// The service of a resource without `service.name`, as the OpenTelemetry SDKs name it.
pub const UNKNOWN_SERVICE: &str = "unknown_service";

#[derive(Debug, Error)]
pub enum OtlpError {
    #[error("not an OTLP protobuf ExportTraceServiceRequest: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("not an OTLP/JSON ExportTraceServiceRequest: {0}")]
    Json(#[from] serde_json::Error),
}

/// The usable spans of a request, and how many were rejected.
#[derive(Debug, Default)]
pub struct Decoded {
    pub spans: Vec<Span>,
    pub rejected: u64,
    /// Why the first rejected span was rejected.
    pub first_rejection: Option<String>,
}

pub fn decode_protobuf(body: &[u8], names: &mut Names) -> Result<Decoded, OtlpError> {
    let request = ExportTraceServiceRequest::decode(body)?;
    Ok(from_request(request, names))
}

pub fn decode_json(body: &[u8], names: &mut Names) -> Result<Decoded, OtlpError> {
    let request: ExportTraceServiceRequest = serde_json::from_slice(body)?;
    Ok(from_request(request, names))
}

/// The spans of a decoded request.
pub fn from_request(request: ExportTraceServiceRequest, names: &mut Names) -> Decoded {
    let mut decoded = Decoded::default();
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .as_ref()
            .and_then(|r| r.attributes.iter().find(|kv| kv.key == "service.name"))
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) if !s.is_empty() => Some(s.as_str()),
                _ => None,
            })
            .unwrap_or(UNKNOWN_SERVICE);
        let service = names.get(service);
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                match convert(&span, &service, names) {
                    Ok(span) => decoded.spans.push(span),
                    Err(reason) => {
                        decoded.rejected += 1;
                        decoded
                            .first_rejection
                            .get_or_insert_with(|| reason.to_owned());
                    }
                }
            }
        }
    }
    decoded
}

fn convert(
    span: &OtlpSpan,
    service: &std::sync::Arc<str>,
    names: &mut Names,
) -> Result<Span, &'static str> {
    let trace_id = <[u8; 16]>::try_from(span.trace_id.as_slice())
        .ok()
        .filter(|id| id.iter().any(|b| *b != 0))
        .ok_or("trace_id must be 16 bytes, not all zero")?;
    let span_id = <[u8; 8]>::try_from(span.span_id.as_slice())
        .ok()
        .filter(|id| id.iter().any(|b| *b != 0))
        .ok_or("span_id must be 8 bytes, not all zero")?;
    let parent_id = match span.parent_span_id.len() {
        0 => None,
        _ => Some(
            <[u8; 8]>::try_from(span.parent_span_id.as_slice())
                .map_err(|_| "parent_span_id must be empty or 8 bytes")?,
        ),
    };
    if span.end_time_unix_nano < span.start_time_unix_nano {
        return Err("end_time_unix_nano is before start_time_unix_nano");
    }
    Ok(Span {
        trace_id: TraceId(trace_id),
        span_id: SpanId(span_id),
        parent_id: parent_id.filter(|p| p.iter().any(|b| *b != 0)).map(SpanId),
        service: service.clone(),
        name: names.get(&span.name),
        kind: SpanKind::from_otlp(span.kind),
        start_unix_nano: span.start_time_unix_nano,
        duration_nano: span.end_time_unix_nano - span.start_time_unix_nano,
        status: span
            .status
            .as_ref()
            .map_or(StatusCode::Unset, |s| StatusCode::from_otlp(s.code)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    fn request(spans: Vec<OtlpSpan>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(Value::StringValue("checkout".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn otlp_span(trace: u8, id: u8, parent: Option<u8>) -> OtlpSpan {
        OtlpSpan {
            trace_id: vec![trace; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: "GET /cart".into(),
            kind: 2,
            start_time_unix_nano: 1_000,
            end_time_unix_nano: 3_000,
            status: Some(Status {
                code: 2,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn protobuf_spans_map_onto_spans() {
        let body = request(vec![otlp_span(1, 2, Some(3))]).encode_to_vec();
        let decoded = decode_protobuf(&body, &mut Names::default()).unwrap();
        assert_eq!(decoded.rejected, 0);
        let span = &decoded.spans[0];
        assert_eq!(&*span.service, "checkout");
        assert_eq!(&*span.name, "GET /cart");
        assert_eq!(span.kind, SpanKind::Server);
        assert_eq!(span.duration_nano, 2_000);
        assert_eq!(span.parent_id, Some(SpanId([3; 8])));
        assert!(span.is_error());
    }

    #[test]
    fn bad_spans_are_rejected_and_the_rest_taken() {
        let mut short_trace = otlp_span(1, 2, None);
        short_trace.trace_id.truncate(3);
        let mut backwards = otlp_span(1, 3, None);
        backwards.end_time_unix_nano = 0;
        let body = request(vec![short_trace, otlp_span(1, 4, None), backwards]).encode_to_vec();
        let decoded = decode_protobuf(&body, &mut Names::default()).unwrap();
        assert_eq!(decoded.spans.len(), 1);
        assert_eq!(decoded.rejected, 2);
        assert!(decoded.first_rejection.unwrap().contains("trace_id"));
    }

    #[test]
    fn otlp_json_uses_hex_ids() {
        let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"cart"}}]},
          "scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
          "parentSpanId":"","name":"GetCart","kind":2,"startTimeUnixNano":"1544712660000000000",
          "endTimeUnixNano":"1544712661000000000","status":{}}]}]}]}"#;
        let decoded = decode_json(json.as_bytes(), &mut Names::default()).unwrap();
        assert_eq!(decoded.spans.len(), 1, "{decoded:?}");
        assert_eq!(
            decoded.spans[0].trace_id.to_string(),
            "5b8efff798038103d269b633813fc60c"
        );
        assert_eq!(decoded.spans[0].duration_nano, 1_000_000_000);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let mut names = Names::default();
        for body in [&b"\xff\xff\xff\xff"[..], b"{", b"\x0a\x05\x0a\x03"] {
            assert!(
                decode_protobuf(body, &mut names).is_err()
                    || decode_json(body, &mut names).is_err()
            );
        }
        assert!(decode_json(b"[1,2]", &mut names).is_err());
    }
}
