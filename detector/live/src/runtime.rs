//! Runs `omen detect`: restores model state, starts the sources, the HTTP server and the
//! alert sinks, ticks the engine every second, snapshots periodically and at shutdown.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tracing::{error, info};

use crate::client::HttpClient;
use crate::config::{DetectConfig, PrometheusConfig, TracesConfig};
use crate::engine::Engine;
use crate::ingest::promql::prometheus_loop;
pub use crate::ingest::promql::Replay;
use crate::ingest::scrape::scrape_loop;
use crate::sinks::{Sink, Target};
use crate::snapshot::{self, SnapshotError};
use crate::state::{now_ms, LiveState};
use crate::traces::Traces;
use crate::{kafka, server};
use omen_common::http;
use omen_common::web::WebConfig;

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
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
    #[error("kafka: {0}")]
    Kafka(String),
    #[error("replay: {0}")]
    Replay(String),
    #[error(transparent)]
    WebConfig(#[from] omen_common::web::WebConfigError),
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
pub fn spawn_sinks(shared: &Arc<LiveState>) -> Result<(), RunError> {
    let config = shared.engine().config().alerting.clone();
    let client =
        HttpClient::new(&config.http_config, Some(config.timeout)).map_err(RunError::Client)?;
    for sink in shared.sinks() {
        tokio::spawn(
            sink.clone()
                .run(client.clone(), config.resend, config.dashboard_url.clone()),
        );
    }
    Ok(())
}

/// Runs until SIGINT or SIGTERM (or, with a `replay`, until it is done), then saves the
/// model state.
pub fn run(config: DetectConfig, replay: Option<Replay>) -> Result<(), RunError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    for line in config.describe() {
        info!("{line}");
    }
    runtime.block_on(serve(config, shutdown_signal(), replay))
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

/// Binds the OTLP receivers the configuration names and serves them until `stop` fires.
async fn spawn_trace_receivers<F>(
    config: &TracesConfig,
    shared: &Arc<LiveState>,
    web: Option<Arc<WebConfig>>,
    stop: &(impl Fn() -> F + Send + Sync),
) -> Result<Vec<tokio::task::JoinHandle<()>>, RunError>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let limits = shared.engine().config().http;
    let bind = |addr: SocketAddr| async move {
        http::bind(addr).map_err(|source| RunError::Listen { addr, source })
    };
    let mut tasks = Vec::new();
    if let Some(addr) = config.otlp_http {
        let listener = bind(addr).await?;
        let app = crate::traces::http::routes(config.max_body_bytes).with_state(shared.clone());
        let (stats, shutdown) = (shared.http_stats().clone(), stop());
        info!(%addr, "OTLP/HTTP trace receiver listening");
        tasks.push(tokio::spawn(http::serve(
            listener, app, limits, web, stats, shutdown,
        )));
    }
    if let Some(addr) = config.otlp_grpc {
        let listener = bind(addr).await?;
        let (shared, limit, shutdown) = (shared.clone(), config.max_body_bytes, stop());
        tasks.push(tokio::spawn(async move {
            if let Err(e) =
                crate::traces::grpc::serve(listener, addr, shared, limit, shutdown).await
            {
                error!(error = %e, "OTLP/gRPC receiver stopped");
            }
        }));
    }
    Ok(tasks)
}

/// Saves the model state to `path` every `interval`.
fn spawn_snapshots(
    shared: Arc<LiveState>,
    path: std::path::PathBuf,
    interval: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(interval);
        interval.tick().await;
        loop {
            interval.tick().await;
            let (shared, path) = (shared.clone(), path.clone());
            let saved = tokio::task::spawn_blocking(move || snapshot::save(&shared, &path)).await;
            if let Ok(Err(e)) = saved {
                error!(error = %e, "snapshot failed");
            }
        }
    })
}

/// Serves until `shutdown` completes, or a `replay` ends.
pub async fn serve(
    config: DetectConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    replay: Option<Replay>,
) -> Result<(), RunError> {
    let listener = http::bind(config.listen).map_err(|source| RunError::Listen {
        addr: config.listen,
        source,
    })?;
    let addr = listener.local_addr().unwrap_or(config.listen);
    let web = match &config.web_config_file {
        Some(path) => Some(Arc::new(WebConfig::load(path)?)),
        None => None,
    };
    let snapshot_path = config.store.snapshot_path.clone();
    let snapshot_interval = config.store.snapshot_interval;
    let sinks = sinks(&config);
    let (scrapes, polls) = (config.scrape.clone(), config.prometheus.clone());
    let kafka = config.kafka.clone();
    let traces_config = config.traces.clone();
    let mut state = LiveState::new(Engine::new(config), sinks);
    let mut trace_queue = None;
    if let Some(traces_config) = &traces_config {
        let (traces, queue) = Traces::new(traces_config.clone());
        state = state.with_traces(traces);
        trace_queue = Some(queue);
    }
    let shared = Arc::new(state);
    // Every server stops when `shutdown` completes.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let stop_signal = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let mut receivers = Vec::new();
    if let (Some(traces_config), Some(queue)) = (&traces_config, trace_queue) {
        let traces = shared.traces().expect("set above").clone();
        tokio::spawn(crate::traces::task::run(traces, queue, shared.clone()));
        receivers =
            spawn_trace_receivers(traces_config, &shared, web.clone(), &stop_signal).await?;
    }
    if let Some(path) = &snapshot_path {
        snapshot::load(&shared, path);
    }
    spawn_sinks(&shared)?;
    for scrape in scrapes {
        let client = HttpClient::new(&scrape.http_config, None).map_err(RunError::Client)?;
        tokio::spawn(scrape_loop(scrape, shared.clone(), client));
    }
    let polls = polls
        .into_iter()
        .map(|poll| {
            let client = HttpClient::new(&poll.http_config, None).map_err(RunError::Client)?;
            Ok((poll, client))
        })
        .collect::<Result<Vec<_>, RunError>>()?;
    let replay_task = start_polls(polls, &shared, replay);
    let replay_failure = replay_task.as_ref().map(|t| t.failure.clone());
    let shutdown = async move {
        match replay_task {
            Some(task) => tokio::select! {
                () = shutdown => {}
                _ = task.done => {}
            },
            None => shutdown.await,
        }
    };
    let stop_kafka = Arc::new(AtomicBool::new(false));
    let kafka = match kafka {
        Some(kafka) => kafka::spawn(kafka, shared.clone(), stop_kafka.clone())
            .map_err(|e| RunError::Kafka(e.to_string()))?,
        None => Vec::new(),
    };
    // A replay ticks the engine in the series' own time.
    let ticker = replay.is_none().then(|| spawn_ticker(shared.clone()));
    let snapshots = snapshot_path
        .clone()
        .map(|path| spawn_snapshots(shared.clone(), path, snapshot_interval));
    shared.set_ready();
    info!(%addr, "omen detect listening");
    let app = server::app(shared.clone());
    let limits = shared.engine().config().http;
    http::serve(
        listener,
        app,
        limits,
        web,
        shared.http_stats().clone(),
        async move {
            shutdown.await;
            let _ = stop.send(true);
        },
    )
    .await;
    for receiver in receivers {
        let _ = receiver.await;
    }
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some(task) = snapshots {
        task.abort();
    }
    // Hands this detector's series (and incidents) over to the group before the
    // snapshot below.
    stop_kafka.store(true, Ordering::Release);
    for thread in kafka {
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    }
    if let Some(path) = snapshot_path {
        snapshot::save(&shared, &path)?;
        info!(path = %path.display(), "model state saved");
    }
    let failure = replay_failure.and_then(|f| f.lock().unwrap_or_else(|e| e.into_inner()).take());
    failure.map_or(Ok(()), |error| Err(RunError::Replay(error)))
}

/// A replay under way: `done` fires when it ends, `failure` then says why it stopped early.
struct ReplayTask {
    done: tokio::sync::oneshot::Receiver<()>,
    failure: Arc<std::sync::Mutex<Option<String>>>,
}

/// Polls the `prometheus` sources live, or replays their history.
fn start_polls(
    polls: Vec<(PrometheusConfig, HttpClient)>,
    shared: &Arc<LiveState>,
    replay: Option<Replay>,
) -> Option<ReplayTask> {
    let Some(replay) = replay else {
        for (poll, client) in polls {
            tokio::spawn(prometheus_loop(poll, shared.clone(), client));
        }
        return None;
    };
    let (done_tx, done) = tokio::sync::oneshot::channel();
    let failure = Arc::new(std::sync::Mutex::new(None));
    let (shared, slot) = (shared.clone(), failure.clone());
    tokio::spawn(async move {
        if let Err(error) = run_replay(&polls, &shared, replay).await {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
        }
        let _ = done_tx.send(());
    });
    Some(ReplayTask { done, failure })
}

/// Ticks the engine every second by the wall clock: resolves what went quiet.
fn spawn_ticker(shared: Arc<LiveState>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        loop {
            interval.tick().await;
            shared.tick(now_ms());
        }
    })
}

/// Replays history from the `prometheus` sources and logs what it did.
async fn run_replay(
    polls: &[(PrometheusConfig, HttpClient)],
    shared: &Arc<LiveState>,
    replay: Replay,
) -> Result<(), String> {
    if polls.is_empty() {
        return Err("it needs a `prometheus` source in the configuration".to_owned());
    }
    info!(
        from = %omen_detector::series::format_rfc3339(replay.from_ms),
        to = %omen_detector::series::format_rfc3339(replay.to_ms),
        "replay started"
    );
    let report = crate::ingest::promql::replay(polls, shared, replay).await?;
    info!(
        warmup_samples = report.warmup_samples,
        samples = report.samples,
        steps = report.steps,
        incidents = shared.engine().stats().incidents,
        "replay done"
    );
    Ok(())
}
