//! OTLP/gRPC: the `TraceService/Export` method on tonic, gzip accepted, messages limited to
//! `max_body_bytes`. A request tonic cannot decode (or one past the limit) is answered with
//! its gRPC error by tonic; the [`CountRefusals`] layer counts every such answer in
//! `omen_detector_ingest_errors_total{source="traces", reason="grpc_<code>"}`. A full queue is
//! `UNAVAILABLE`, which OTLP exporters retry.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use omen_detector::traces::otlp;
use omen_detector::traces::Names;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::{Protocol, Refused};
use crate::engine::Origin;
use crate::state::LiveState;

struct Receiver {
    state: Arc<LiveState>,
}

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let Some(traces) = self.state.traces() else {
            return Err(Status::unimplemented("traces are not enabled"));
        };
        let decoded = otlp::from_request(request.into_inner(), &mut Names::default());
        if decoded.rejected > 0 {
            self.state
                .count_errors(Origin::Traces, "invalid_span", decoded.rejected);
        }
        match traces.offer(Protocol::Grpc, decoded.spans, decoded.rejected) {
            Ok(()) => {}
            Err(Refused::QueueFull) => {
                self.state.count_error(Origin::Traces, "queue_full");
                return Err(Status::unavailable("span queue full, retry"));
            }
            Err(Refused::Closed) => return Err(Status::unavailable("shutting down")),
        }
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: (decoded.rejected > 0).then(|| ExportTracePartialSuccess {
                rejected_spans: decoded.rejected as i64,
                error_message: decoded.first_rejection.unwrap_or_default(),
            }),
        }))
    }
}

/// Counts gRPC error answers made before the handler runs (undecodable, too large).
#[derive(Clone)]
struct CountRefusals {
    state: Arc<LiveState>,
}

impl<S> tower_layer::Layer<S> for CountRefusals {
    type Service = Counted<S>;

    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
struct Counted<S> {
    inner: S,
    state: Arc<LiveState>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, R> tower_service::Service<axum::http::Request<B>> for Counted<S>
where
    S: tower_service::Service<axum::http::Request<B>, Response = axum::http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        let state = self.state.clone();
        Box::pin(async move {
            let response = future.await?;
            // Errors raised before the handler come back trailers-only: the status is a
            // header. Those the handler raises itself are counted where they are raised.
            let code = response
                .headers()
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok());
            if let Some(code) = code.filter(|c| *c != 0) {
                let reason = match tonic::Code::from_i32(code) {
                    tonic::Code::InvalidArgument => "grpc_invalid_argument",
                    tonic::Code::Internal => "grpc_internal",
                    tonic::Code::ResourceExhausted | tonic::Code::OutOfRange => "grpc_too_large",
                    tonic::Code::Unimplemented => "grpc_unimplemented",
                    tonic::Code::Unavailable => "grpc_unavailable",
                    _ => "grpc_other",
                };
                if code != tonic::Code::Unavailable as i32 {
                    state.count_error(Origin::Traces, reason);
                }
            }
            Ok(response)
        })
    }
}

/// Serves OTLP/gRPC on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    state: Arc<LiveState>,
    max_message_bytes: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let service = TraceServiceServer::new(Receiver {
        state: state.clone(),
    })
    .max_decoding_message_size(max_message_bytes)
    .accept_compressed(CompressionEncoding::Gzip)
    .send_compressed(CompressionEncoding::Gzip);
    tracing::info!(%addr, "OTLP/gRPC trace receiver listening");
    tonic::transport::Server::builder()
        .layer(CountRefusals { state })
        .add_service(service)
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(listener),
            shutdown,
        )
        .await
}
