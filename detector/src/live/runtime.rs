//! Runs `omen detect`: restores model state, starts the sources, the HTTP server and the
//! alert sinks, ticks the engine every second, snapshots periodically and at shutdown.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use thiserror::Error;
use tokio::net::TcpListener;
use tracing::{error, info, warn};

use super::config::DetectConfig;
use super::correlate::Evidence;
use super::engine::{Engine, Mode, Notification, Snapshot, Source};
use super::sink::{counts_by_kind, Sink, Target};
use super::source::{prometheus_loop, scrape_loop};
use crate::wire::Sample;

/// Errors that stop `omen detect` from starting or stopping cleanly.
#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot write snapshot {path}: {source}")]
    Snapshot {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    #[error("kafka: {0}")]
    Kafka(String),
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Called with every notification.
type Observer = Box<dyn Fn(&Notification) + Send + Sync>;

/// What the server, the sources and the sinks share.
pub struct Shared {
    engine: Mutex<Engine>,
    sinks: Vec<Arc<Sink>>,
    ready: AtomicBool,
    /// Called with every notification (the demo prints them).
    observer: Option<Observer>,
}

impl Shared {
    pub fn new(engine: Engine, sinks: Vec<Arc<Sink>>) -> Self {
        Self {
            engine: Mutex::new(engine),
            sinks,
            ready: AtomicBool::new(false),
            observer: None,
        }
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

    pub fn count_error(&self, source: Source, reason: &'static str) {
        self.engine().count_error(source, reason);
    }

    /// Counts `count` failures of one kind at once.
    pub fn count_errors(&self, source: Source, reason: &'static str, count: u64) {
        self.engine().count_errors(source, reason, count);
    }

    /// Scores samples and sends what changed.
    pub fn ingest(&self, source: Source, samples: Vec<Sample>, now_ms: i64, mode: Mode) {
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

    /// Resolves what went quiet and sends what changed.
    pub fn tick(&self, now_ms: i64) {
        let notifications = {
            let mut engine = self.engine();
            engine.tick(now_ms);
            engine.take_notifications()
        };
        self.dispatch(notifications, now_ms);
    }

    fn dispatch(&self, notifications: Vec<Notification>, now_ms: i64) {
        if notifications.is_empty() {
            return;
        }
        let dashboard_url = self.engine().config().alerting.dashboard_url.clone();
        for notification in notifications {
            if let Some(observe) = &self.observer {
                observe(&notification);
            }
            for alert in notification.alerts(&dashboard_url, now_ms) {
                for sink in &self.sinks {
                    sink.push(alert.clone());
                }
            }
        }
    }

    /// `/metrics`.
    pub fn render(&self) -> String {
        let counts = counts_by_kind(&self.sinks);
        self.engine().render(&counts)
    }

    /// Writes the model state to `path` atomically (temporary file, fsync, rename).
    pub fn save_snapshot(&self, path: &Path) -> Result<(), RunError> {
        let now = now_ms();
        let json = {
            let engine = self.engine();
            serde_json::to_vec(&engine.snapshot(now)).map_err(|e| RunError::Snapshot {
                path: path.to_owned(),
                source: e.into(),
            })?
        };
        write_atomically(path, &json).map_err(|source| RunError::Snapshot {
            path: path.to_owned(),
            source,
        })?;
        self.engine().set_last_snapshot(now as f64 / 1000.0);
        Ok(())
    }

    /// Restores model state saved at `path`, if any; a missing file is a first start, an
    /// unreadable one is logged and set aside.
    pub fn load_snapshot(&self, path: &Path) {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot read snapshot, starting afresh");
                return;
            }
        };
        match serde_json::from_slice::<Snapshot>(&bytes) {
            Ok(snapshot) => {
                let restored = self.engine().restore(snapshot, now_ms());
                info!(path = %path.display(), series = restored, "model state restored");
            }
            Err(e) => {
                let aside = path.with_extension("corrupt");
                warn!(path = %path.display(), error = %e, aside = %aside.display(), "snapshot unreadable, starting afresh");
                let _ = std::fs::rename(path, aside);
            }
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    let temporary = path.with_extension("tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temporary, path)
}

/// Builds the sinks the configuration names.
pub fn sinks(config: &DetectConfig) -> Vec<Arc<Sink>> {
    let alerting = &config.alerting;
    let targets = alerting
        .alertmanager
        .iter()
        .map(|url| Target::Alertmanager(url.clone()))
        .chain(
            alerting
                .webhook
                .iter()
                .map(|url| Target::Webhook(url.clone())),
        )
        .chain(alerting.stdout.then_some(Target::Stdout));
    targets.map(|t| Sink::new(t, alerting.queue)).collect()
}

/// Starts the sink tasks on the current runtime.
pub fn spawn_sinks(shared: &Arc<Shared>) -> Result<(), RunError> {
    let config = shared.engine().config().alerting.clone();
    let client = reqwest::Client::builder().timeout(config.timeout).build()?;
    for sink in shared.sinks() {
        tokio::spawn(
            sink.clone()
                .run(client.clone(), config.resend, config.dashboard_url.clone()),
        );
    }
    Ok(())
}

/// Runs until SIGINT or SIGTERM, then saves the model state.
pub fn run(config: DetectConfig) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(serve(config, shutdown_signal()))
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(signal) => signal,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}

/// Serves until `shutdown` completes.
pub async fn serve(
    config: DetectConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| RunError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener.local_addr().unwrap_or(config.listen);
    let snapshot_path = config.store.snapshot_path.clone();
    let snapshot_interval = config.store.snapshot_interval;
    let client = reqwest::Client::builder().build()?;
    let sinks = sinks(&config);
    let (scrapes, polls) = (config.scrape.clone(), config.prometheus.clone());
    let kafka = config.kafka.clone();
    let shared = Arc::new(Shared::new(Engine::new(config), sinks));
    if let Some(path) = &snapshot_path {
        shared.load_snapshot(path);
    }
    spawn_sinks(&shared)?;
    for scrape in scrapes {
        tokio::spawn(scrape_loop(scrape, shared.clone(), client.clone()));
    }
    for poll in polls {
        tokio::spawn(prometheus_loop(poll, shared.clone(), client.clone()));
    }
    let stop_kafka = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let kafka = match kafka {
        Some(kafka) => super::kafka::spawn(kafka, shared.clone(), stop_kafka.clone())
            .map_err(|e| RunError::Kafka(e.to_string()))?,
        None => Vec::new(),
    };
    let ticker = {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(Duration::from_secs(1));
            loop {
                interval.tick().await;
                shared.tick(now_ms());
            }
        })
    };
    let snapshots = snapshot_path.clone().map(|path| {
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut interval = tokio::time::interval(snapshot_interval);
            interval.tick().await;
            loop {
                interval.tick().await;
                let (shared, path) = (shared.clone(), path.clone());
                let saved = tokio::task::spawn_blocking(move || shared.save_snapshot(&path)).await;
                if let Ok(Err(e)) = saved {
                    error!(error = %e, "snapshot failed");
                }
            }
        })
    });
    shared.set_ready();
    info!(%addr, "omen detect listening");
    let app = super::server::app(shared.clone());
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    ticker.abort();
    if let Some(task) = snapshots {
        task.abort();
    }
    if let Err(e) = served {
        error!(error = %e, "server stopped");
    }
    // Hands this detector's series (and incidents) over to the group before the
    // snapshot below.
    stop_kafka.store(true, std::sync::atomic::Ordering::Release);
    for thread in kafka {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    if let Some(path) = snapshot_path {
        shared.save_snapshot(&path)?;
        info!(path = %path.display(), "model state saved");
    }
    Ok(())
}
