//! Probes: measurements the agent takes of other systems on a timer rather than from logs
//! (Kafka consumer lag). Each probe runs on its own thread and writes gauges into the
//! probes' registry, which `/metrics` serves after the rules' metrics; a failed
//! measurement is logged and counted in `omen_agent_probe_errors_total{probe,reason}`,
//! and the probe carries on.

mod kafka_lag;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;

pub use kafka_lag::{KafkaLagConfig, KafkaLagProbe};

use crate::registry::{FamilyDesc, FamilyId, MetricKind, Registry};

/// Series a probe family may hold (partitions × groups).
const MAX_SERIES: usize = 10_000;

/// The `probes` section of the agent's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbesConfig {
    #[serde(default)]
    pub kafka_lag: Vec<KafkaLagConfig>,
}

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

/// Running probe threads; stopped (and joined) when dropped.
pub struct Probes {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Probes {
    /// Starts every configured probe.
    pub fn start(config: &ProbesConfig, metrics: Arc<ProbeMetrics>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let errors = metrics.define(
            "omen_agent_probe_errors_total",
            "Probe measurements that failed, by probe and reason.",
            MetricKind::Counter,
            &["probe", "reason"],
        );
        let mut threads = Vec::new();
        for (index, lag) in config.kafka_lag.iter().enumerate() {
            let probe = KafkaLagProbe::new(lag.clone(), metrics.clone(), errors);
            let stop = stop.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("omen-probe-lag{index}"))
                .spawn(move || run_every(probe.interval(), &stop, || probe.measure()));
            match spawned {
                Ok(thread) => threads.push(thread),
                Err(error) => tracing::error!(%error, "cannot start the kafka lag probe"),
            }
        }
        Self { stop, threads }
    }
}

impl Drop for Probes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Calls `measure` every `interval` until `stop` is set, waking often enough to stop
/// within a fraction of a second.
fn run_every(interval: Duration, stop: &AtomicBool, mut measure: impl FnMut()) {
    let tick = Duration::from_millis(100);
    while !stop.load(Ordering::Acquire) {
        measure();
        let mut waited = Duration::ZERO;
        while waited < interval && !stop.load(Ordering::Acquire) {
            std::thread::sleep(tick.min(interval - waited));
            waited += tick;
        }
    }
}
