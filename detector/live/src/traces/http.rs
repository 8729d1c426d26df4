//! OTLP/HTTP: `POST /v1/traces` with a protobuf (`application/x-protobuf`) or OTLP/JSON
//! (`application/json`) `ExportTraceServiceRequest`, optionally gzip-encoded. Answers as
//! the OTLP spec says: 200 with an `ExportTraceServiceResponse` in the request's encoding
//! (its partial success naming the spans rejected), 400 for a body that does not decode,
//! 413 past the size limits, 415 for another content type or encoding, 503 (retryable)
//! when the queue is full. Every refusal is counted in
//! `omen_detector_ingest_errors_total{source="traces", reason}`. A refusal's body is a
//! `google.rpc.Status` in the request's encoding (plain text when the content type is not
//! one OTLP has).

use std::io::Read;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use omen_detector::traces::otlp::{self, Decoded};
use omen_detector::traces::Names;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;

use super::{Protocol, Refused};
use crate::engine::Origin;
use crate::ingest::remote_write::accept_body;
use crate::state::LiveState;

/// The OTLP/HTTP routes, for the detector's listener or a listener of their own.
pub fn routes(max_body_bytes: usize) -> Router<Arc<LiveState>> {
    Router::new().route(
        "/v1/traces",
        post(receive).layer(DefaultBodyLimit::max(max_body_bytes)),
    )
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

/// `google.rpc.Status`, the body OTLP/HTTP gives a refusal in the request's encoding.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub(super) code: i32,
    #[prost(string, tag = "2")]
    pub(super) message: String,
}

/// The refusal's body: a `google.rpc.Status` in the request's encoding when it is known,
/// plain text when it is not.
fn refusal(status: StatusCode, message: String, encoding: Option<Encoding>) -> Response {
    // gRPC codes: INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE, else UNKNOWN.
    let code = match status {
        StatusCode::BAD_REQUEST => 3,
        StatusCode::PAYLOAD_TOO_LARGE => 8,
        StatusCode::SERVICE_UNAVAILABLE => 14,
        _ => 2,
    };
    match encoding {
        Some(Encoding::Protobuf) => (
            status,
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            RpcStatus { code, message }.encode_to_vec(),
        )
            .into_response(),
        Some(Encoding::Json) => (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::json!({ "code": code, "message": message }).to_string(),
        )
            .into_response(),
        None => (status, message + "\n").into_response(),
    }
}

fn refuse(
    state: &LiveState,
    status: StatusCode,
    reason: &'static str,
    message: String,
    encoding: Option<Encoding>,
) -> Response {
    state.count_error(Origin::Traces, reason);
    refusal(status, message, encoding)
}

/// The body, gunzipped when it says so, within `limit` bytes.
fn decompress(
    headers: &HeaderMap,
    body: &Bytes,
    limit: usize,
) -> Result<Bytes, (StatusCode, &'static str, String)> {
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => {
            if body.len() > limit {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("body over {limit} bytes"),
                ));
            }
            // The same buffer, shared: no copy of a body up to the limit.
            Ok(body.clone())
        }
        "gzip" => {
            let mut out = Vec::new();
            let mut reader = flate2::read::GzDecoder::new(&body[..]).take(limit as u64 + 1);
            reader
                .read_to_end(&mut out)
                .map_err(|e| (StatusCode::BAD_REQUEST, "malformed", format!("gzip: {e}")))?;
            if out.len() > limit {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("decompressed body over {limit} bytes"),
                ));
            }
            Ok(Bytes::from(out))
        }
        other => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content-encoding {other:?}: gzip or none"),
        )),
    }
}

async fn receive(
    State(state): State<Arc<LiveState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(traces) = state.traces() else {
        return refuse(
            &state,
            StatusCode::NOT_FOUND,
            "disabled",
            "traces are not enabled".into(),
            None,
        );
    };
    let body = match accept_body(&state, Origin::Traces, body) {
        Ok(body) => body,
        Err(refusal) => return refusal.into_response(),
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let encoding = match content_type.split(';').next().unwrap_or("").trim() {
        "application/x-protobuf" | "application/protobuf" => Encoding::Protobuf,
        "application/json" => Encoding::Json,
        other => {
            return refuse(
                &state,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("content-type {other:?}: application/x-protobuf or application/json"),
                None,
            )
        }
    };
    let bytes = match decompress(&headers, &body, traces.config.max_decoded_bytes) {
        Ok(bytes) => bytes,
        Err((status, reason, message)) => {
            return refuse(&state, status, reason, message, Some(encoding))
        }
    };
    let mut names = Names::default();
    let decoded = match encoding {
        Encoding::Protobuf => otlp::decode_protobuf(&bytes, &mut names),
        Encoding::Json => otlp::decode_json(&bytes, &mut names),
    };
    let Decoded {
        spans,
        rejected,
        first_rejection,
    } = match decoded {
        Ok(decoded) => decoded,
        Err(error) => {
            return refuse(
                &state,
                StatusCode::BAD_REQUEST,
                "malformed",
                error.to_string(),
                Some(encoding),
            )
        }
    };
    if rejected > 0 {
        state.count_errors(Origin::Traces, "invalid_span", rejected);
    }
    match traces.offer(Protocol::Http, spans, rejected) {
        Ok(()) => {}
        Err(Refused::QueueFull) => {
            state.count_error(Origin::Traces, "queue_full");
            let mut response = refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "span queue full, retry".into(),
                Some(encoding),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return response;
        }
        Err(Refused::Closed) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down".into(),
                Some(encoding),
            );
        }
    }
    let response = ExportTraceServiceResponse {
        partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: rejected as i64,
            error_message: first_rejection.unwrap_or_default(),
        }),
    };
    match encoding {
        Encoding::Protobuf => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            response.encode_to_vec(),
        )
            .into_response(),
        Encoding::Json => {
            let body = match &response.partial_success {
                Some(p) => serde_json::json!({"partialSuccess": {
                    "rejectedSpans": p.rejected_spans.to_string(),
                    "errorMessage": p.error_message,
                }}),
                None => serde_json::json!({}),
            };
            (
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}
