//! What the detector's tasks share: the engine behind one lock, the alert sinks, the
//! readiness flag and an observer of notifications. Scrapes, polls, the server and the
//! Kafka threads all go through [`LiveState`]; alerts leave through its sinks.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::correlate::{Change, Evidence};
use crate::engine::select::{admit, Selector, Skip};
use crate::engine::{Engine, Mode, Notification, Origin};
use crate::metrics;
use crate::sinks::{counts_by_kind, Sink};
use crate::traces::Traces;
use omen_common::exposition::Format;
use omen_common::http::ServerStats;
use omen_detector::wire::Sample;

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Called with every notification.
type Observer = Box<dyn Fn(&Notification) + Send + Sync>;

/// What the server, the sources and the sinks share.
pub struct LiveState {
    engine: Mutex<Engine>,
    sinks: Vec<Arc<Sink>>,
    ready: AtomicBool,
    /// Called with every notification (the demo prints them).
    observer: Option<Observer>,
    /// The OTLP trace receivers' end, when traces are enabled.
    traces: Option<Arc<Traces>>,
    /// What the HTTP listeners did (connections, timeouts).
    http: Arc<ServerStats>,
}

impl LiveState {
    pub fn new(engine: Engine, sinks: Vec<Arc<Sink>>) -> Self {
        Self {
            engine: Mutex::new(engine),
            sinks,
            ready: AtomicBool::new(false),
            observer: None,
            traces: None,
            http: Arc::default(),
        }
    }

    /// The counts every HTTP listener of this detector adds to.
    pub fn http_stats(&self) -> &Arc<ServerStats> {
        &self.http
    }

    /// Serves OTLP traces into `traces`.
    pub fn with_traces(mut self, traces: Arc<Traces>) -> Self {
        self.traces = Some(traces);
        self
    }

    pub fn traces(&self) -> Option<&Arc<Traces>> {
        self.traces.as_ref()
    }

    /// Calls `observe` with every notification, before the sinks get its alerts.
    pub fn with_observer(
        mut self,
        observe: impl Fn(&Notification) + Send + Sync + 'static,
    ) -> Self {
        self.observer = Some(Box::new(observe));
        self
    }

    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn sinks(&self) -> &[Arc<Sink>] {
        &self.sinks
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::SeqCst);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }

    pub fn count_error(&self, source: Origin, reason: &'static str) {
        self.engine().count_error(source, reason);
    }

    /// The samples a source's own `include`/`exclude` admit; the others are counted.
    pub fn select(
        &self,
        source: Origin,
        (include, exclude): (&[Selector], &[Selector]),
        samples: impl IntoIterator<Item = Sample>,
    ) -> Vec<Sample> {
        let mut skipped = [0u64; 3];
        let kept = samples
            .into_iter()
            .filter(|s| match admit(include, exclude, s) {
                Ok(()) => true,
                Err(skip) => {
                    skipped[skip as usize] += 1;
                    false
                }
            })
            .collect();
        for skip in [Skip::Excluded, Skip::NotIncluded] {
            if skipped[skip as usize] > 0 {
                self.engine()
                    .count_skipped(source, skip, skipped[skip as usize]);
            }
        }
        kept
    }

    /// Counts `count` failures of one kind at once.
    pub fn count_errors(&self, source: Origin, reason: &'static str, count: u64) {
        self.engine().count_errors(source, reason, count);
    }

    /// Scores samples and sends what changed.
    pub fn ingest(&self, source: Origin, samples: Vec<Sample>, now_ms: i64, mode: Mode) {
        if let Some(traces) = &self.traces {
            traces.pipeline().observe_pattern_counts(&samples, now_ms);
        }
        let notifications = {
            let mut engine = self.engine();
            engine.ingest(source, samples, now_ms, mode);
            engine.take_notifications()
        };
        self.dispatch(notifications, now_ms);
    }

    /// Correlates the group's evidence (this detector is its correlator) and sends what
    /// changed.
    pub fn correlate(&self, evidence: &[Evidence], now_ms: i64) {
        let notifications = {
            let mut engine = self.engine();
            engine.correlate(evidence);
            engine.take_notifications()
        };
        self.dispatch(notifications, now_ms);
    }

    /// Resolves what went quiet and sends what changed; gives open incidents what spans
    /// say of them once spans say something (an SDK batches its spans for seconds, so an
    /// incident can open before the spans of its start have arrived).
    pub fn tick(&self, now_ms: i64) {
        let notifications = {
            let mut engine = self.engine();
            engine.tick(now_ms);
            engine.take_notifications()
        };
        self.dispatch(notifications, now_ms);
        self.fill_trace_context(now_ms);
    }

    /// What spans say of an incident (started at `started_ms`, with `members`), if it has
    /// a member in a service they know and they point somewhere.
    fn trace_context(
        &self,
        members: &[crate::engine::correlate::Member],
        started_ms: i64,
        now_ms: i64,
    ) -> Option<crate::engine::correlate::TraceContext> {
        let traces = self.traces.as_ref()?;
        let pipeline = traces.pipeline();
        let traced = members.iter().any(|m| {
            m.labels
                .get("service")
                .is_some_and(|s| pipeline.evidence().knows(s))
        });
        traced
            .then(|| pipeline.context(started_ms, now_ms))
            .flatten()
    }

    /// Attaches trace context to open incidents that have none yet.
    fn fill_trace_context(&self, now_ms: i64) {
        if self.traces.is_none() {
            return;
        }
        let waiting: Vec<_> = self
            .engine()
            .correlator()
            .open()
            .iter()
            .filter(|incident| incident.traces.is_none())
            .map(|incident| {
                (
                    incident.id.clone(),
                    incident.members.clone(),
                    incident.started_ms,
                )
            })
            .collect();
        for (id, members, started_ms) in waiting {
            if let Some(context) = self.trace_context(&members, started_ms, now_ms) {
                self.engine().annotate_incident(&id, context);
            }
        }
    }

    fn dispatch(&self, mut notifications: Vec<Notification>, now_ms: i64) {
        if notifications.is_empty() {
            return;
        }
        self.add_trace_context(&mut notifications, now_ms);
        let (dashboard_url, runbooks) = {
            let engine = self.engine();
            let alerting = &engine.config().alerting;
            (alerting.dashboard_url.clone(), alerting.runbook_url.clone())
        };
        for notification in notifications {
            if let Some(observe) = &self.observer {
                observe(&notification);
            }
            for mut alert in notification.alerts(&dashboard_url, now_ms) {
                alert.link_runbook(&runbooks);
                for sink in &self.sinks {
                    sink.push(alert.clone());
                }
            }
        }
    }

    /// Attaches what spans say to each incident opened or joined, in the notification (so
    /// its alert carries it) and in the engine (so the API does).
    fn add_trace_context(&self, notifications: &mut [Notification], now_ms: i64) {
        if self.traces.is_none() {
            return;
        }
        for notification in notifications {
            let Notification::Incident(event) = notification else {
                continue;
            };
            if event.change == Change::Resolved {
                continue;
            }
            // Spans and logs speak only of incidents with a member in a service they know.
            let context =
                self.trace_context(&event.incident.members, event.incident.started_ms, now_ms);
            if let Some(context) = context {
                self.engine()
                    .annotate_incident(&event.incident.id, context.clone());
                event.incident.traces = Some(context);
            }
        }
    }

    /// Waits until every sink has delivered what is queued, or `limit` has passed.
    pub async fn delivered(&self, limit: std::time::Duration) {
        let deadline = tokio::time::Instant::now() + limit;
        while !self.sinks.iter().all(|s| s.is_idle()) && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// `/metrics`.
    pub fn render(&self) -> String {
        let counts = counts_by_kind(&self.sinks);
        let mut out = metrics::render(&self.engine(), &counts);
        if let Some(traces) = &self.traces {
            crate::traces::render::render(&mut out, traces);
        }
        self.http
            .render(&mut out, "omen_detector", Format::Prometheus);
        omen_common::process::render(&mut out, "detector", Format::Prometheus);
        out
    }
}
