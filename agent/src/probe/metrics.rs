//! The probes' own registry: every probe defines its gauges here and writes its
//! measurements into it; `/metrics` and the OTLP push read it after the rules' metrics.
//!
//! It is apart from the pipeline's registry so a slow probe never holds the pipeline
//! lock, and a rules reload never drops a probe's series.

use std::sync::{Mutex, MutexGuard};

use crate::registry::{FamilyDesc, FamilyId, MetricKind, Registry};

/// Series a probe family may hold (partitions × groups).
const MAX_SERIES: usize = 10_000;

/// The probes' metrics, shared by the probe threads and the HTTP server.
#[derive(Default)]
pub struct ProbeMetrics {
    registry: Mutex<Registry>,
}

impl ProbeMetrics {
    pub fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Defines a family in the probes' registry.
    pub fn define(&self, name: &str, help: &str, kind: MetricKind, labels: &[&str]) -> FamilyId {
        let desc = FamilyDesc::new(name, help, kind).labels(labels.iter().copied());
        self.registry().define(desc, MAX_SERIES)
    }
}
