//! Exporters: Prometheus exposition for `/metrics` (pulled), and OTLP push.
//!
//! Both read the same registries (the rules' and the probes') through the agent's shared
//! state; neither changes a value, so a failed export never loses anything.

pub mod otlp;
pub mod prometheus;
