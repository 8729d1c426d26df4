//! Probes: measurements the agent takes of other systems on a timer rather than from logs
//! (Kafka consumer lag, Redis reconciled against the Kafka events). Each probe runs on
//! its own thread and writes gauges into the probes' registry, which `/metrics` serves
//! after the rules' metrics; a failed measurement is logged and counted in
//! `omen_agent_probe_errors_total{probe,reason}`, and the probe carries on.

mod kafka_lag;
mod metrics;
mod reconcile;
mod watermark;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Deserialize;

pub use kafka_lag::{KafkaLagConfig, KafkaLagProbe};
pub use metrics::ProbeMetrics;
pub use reconcile::{KafkaSide, ReconcileConfig, ReconcileProbe, RedisSide};

use crate::registry::MetricKind;

/// The `probes` section of the agent's configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbesConfig {
    #[serde(default)]
    pub kafka_lag: Vec<KafkaLagConfig>,
    #[serde(default)]
    pub reconcile: Vec<ReconcileConfig>,
}

impl ProbesConfig {
    pub fn is_empty(&self) -> bool {
        self.kafka_lag.is_empty() && self.reconcile.is_empty()
    }

    /// Checks what serde cannot, naming the probe.
    pub fn validate(&self) -> Result<(), String> {
        self.reconcile
            .iter()
            .try_for_each(ReconcileConfig::validate)
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
        let errors = metrics.define(
            "omen_agent_probe_errors_total",
            "Probe measurements that failed, by probe and reason.",
            MetricKind::Counter,
            &["probe", "reason"],
        );
        let mut probes = Self {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        };
        for (index, lag) in config.kafka_lag.iter().enumerate() {
            let probe = KafkaLagProbe::new(lag.clone(), metrics.clone(), errors);
            probes.spawn(
                format!("omen-probe-lag{index}"),
                probe.interval(),
                move || probe.measure(),
            );
        }
        for (index, check) in config.reconcile.iter().enumerate() {
            match ReconcileProbe::new(check.clone(), metrics.clone(), errors) {
                Ok(mut probe) => probes.spawn(
                    format!("omen-probe-reconcile{index}"),
                    probe.interval(),
                    move || probe.check(),
                ),
                Err(error) => tracing::error!(%error, "reconciliation probe not started"),
            }
        }
        probes
    }

    /// Runs `measure` every `interval` on a thread of its own until the probes stop.
    fn spawn(
        &mut self,
        name: String,
        interval: Duration,
        mut measure: impl FnMut() + Send + 'static,
    ) {
        let stop = self.stop.clone();
        let spawned = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || run_every(interval, &stop, &mut measure));
        match spawned {
            Ok(thread) => self.threads.push(thread),
            Err(error) => tracing::error!(%error, probe = %name, "cannot start a probe thread"),
        }
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
