//! Exporters: Prometheus exposition for `/metrics`, and OTLP push.

pub mod otlp;
pub mod prometheus;
