//! What the worker thread and the HTTP side (server, OTLP pusher) share: the pipeline
//! behind its lock, readiness and liveness flags, the last checkpoint time and the
//! probes' metrics.
//!
//! This file imports neither the runtime that starts the worker nor the server and
//! exporters that read the state, so they all depend on it and not on each other. A
//! panic while the lock is held must not take `/metrics` down: a poisoned lock is entered
//! anyway (the pipeline is consistent between batches, which is all readers see).

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::clock::Clock;
use crate::export::prometheus;
use crate::pipeline::Pipeline;
use crate::probe::ProbeMetrics;
use crate::registry::{Format, Registry};
use omen_common::http::ServerStats;

/// State shared by the worker and the HTTP server.
pub struct AgentState {
    pipeline: Mutex<Pipeline>,
    ready: AtomicBool,
    /// False once the worker thread has stopped (or died).
    alive: AtomicBool,
    /// Clock time (ns) of the last successful checkpoint, 0 before the first.
    last_checkpoint_ns: AtomicI64,
    /// Clock time (ns) the agent started: the checkpoint age counts from it until a
    /// checkpoint succeeds.
    started_ns: i64,
    /// A checkpoint file is configured: its age is exported.
    checkpointing: AtomicBool,
    /// The last checkpoint write failed: not ready.
    checkpoint_failing: AtomicBool,
    clock: Arc<dyn Clock>,
    /// What the probes measured, served after the pipeline's metrics.
    probes: Arc<ProbeMetrics>,
    /// What the HTTP server did (connections, timeouts), served with the rest.
    http: Arc<ServerStats>,
}

impl AgentState {
    /// Shared state around a pipeline, not yet ready (the worker marks it ready).
    pub fn new(pipeline: Pipeline, clock: Arc<dyn Clock>) -> Self {
        Self {
            pipeline: Mutex::new(pipeline),
            ready: AtomicBool::new(false),
            alive: AtomicBool::new(true),
            last_checkpoint_ns: AtomicI64::new(0),
            started_ns: clock.now_ns(),
            checkpointing: AtomicBool::new(false),
            checkpoint_failing: AtomicBool::new(false),
            clock,
            probes: Arc::default(),
            http: Arc::default(),
        }
    }

    /// The counts the HTTP server adds to.
    pub fn http_stats(&self) -> &Arc<ServerStats> {
        &self.http
    }

    /// The probes' metrics (for the probe threads).
    pub fn probes(&self) -> Arc<ProbeMetrics> {
        self.probes.clone()
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn pipeline(&self) -> MutexGuard<'_, Pipeline> {
        // A panic elsewhere must not take /metrics down with it.
        self.pipeline.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Whether the worker is still polling (false after it stopped or died).
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Acquire)
    }

    /// Marks the worker as gone (what the worker does when it stops).
    pub fn set_stopped(&self) {
        self.ready.store(false, Ordering::Release);
        self.alive.store(false, Ordering::Release);
    }

    /// The clock's time, in Unix nanoseconds.
    pub fn now_ns(&self) -> i64 {
        self.clock.now_ns()
    }

    /// A checkpoint file is configured: its age is exported from now on, counted from
    /// the start until a checkpoint succeeds.
    pub fn expect_checkpoints(&self) {
        self.checkpointing.store(true, Ordering::Release);
    }

    /// Records that a checkpoint taken at `now_ns` (clock time) is durable.
    pub fn set_last_checkpoint(&self, now_ns: i64) {
        self.last_checkpoint_ns.store(now_ns, Ordering::Release);
        self.checkpoint_failing.store(false, Ordering::Release);
    }

    /// Records that the last checkpoint could not be written.
    pub fn set_checkpoint_failed(&self) {
        self.checkpoint_failing.store(true, Ordering::Release);
    }

    /// Whether the last checkpoint write failed (a crash now would lose what was read
    /// since the last good one, or everything).
    pub fn is_checkpoint_failing(&self) -> bool {
        self.checkpoint_failing.load(Ordering::Acquire)
    }

    pub fn render(&self, format: Format) -> String {
        let mut text = self.read_registry(|registry, _| prometheus::render(registry, format));
        if format == Format::OpenMetrics && text.ends_with("# EOF\n") {
            text.truncate(text.len() - "# EOF\n".len());
        }
        self.http.render(&mut text, "omen_agent", format);
        omen_common::process::render(&mut text, "agent", format);
        let probes = self.probes.registry();
        prometheus::render_after(text, &probes, format)
    }

    /// Runs `read` under the pipeline lock with the checkpoint age refreshed; `read` also
    /// gets the clock's time (ns) at that moment.
    pub fn read_registry<R>(&self, read: impl FnOnce(&Registry, i64) -> R) -> R {
        let last = self.last_checkpoint_ns.load(Ordering::Acquire);
        let mut pipeline = self.pipeline();
        let now_ns = self.clock.now_ns();
        if self.checkpointing.load(Ordering::Acquire) {
            // Before any checkpoint succeeded, since the start: a checkpoint that fails
            // from the start ages too, and its alert can fire.
            let since = if last > 0 { last } else { self.started_ns };
            pipeline.set_checkpoint_age((now_ns - since).max(0) as f64 / 1e9);
        }
        read(&pipeline.registry, now_ns)
    }
}
