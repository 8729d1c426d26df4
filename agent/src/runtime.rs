//! The live agent: a worker thread polls the sources into the pipeline, takes
//! checkpoints and reloads rules; the HTTP server reads the pipeline under the same lock.
//!
//! Ordering invariant: sources are polled only by the worker, and a checkpoint is taken
//! by the worker between polls, so the saved positions and metric values are one
//! consistent cut. A `kill -9` at any moment therefore resumes exactly: records after the
//! saved positions are read again, and their effects were not in the saved values.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use omen_common::http::ServerLimits;
use serde::Deserialize;
use tracing::{error, info, warn};

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::clock::Clock;
use crate::config::{ConfigError, DurationConfig, RulesConfig};
use crate::export::otlp::{OtlpConfig, OtlpConfigError};
use crate::log_backoff::LogBackoff;
use crate::pipeline::{GroupId, Pipeline};
use crate::probe::{Probes, ProbesConfig};
use crate::source::{
    FileSource, FileSourceConfig, KafkaSource, KafkaSourceConfig, KafkaSourceError, Source,
    StartAt, StdinSource,
};
use crate::state::AgentState;

/// The agent's configuration file (`omen agent --config FILE`). Relative paths are
/// relative to the file's directory.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// The rules file of every source that does not name its own (`sources[].rules`).
    pub rules: Option<PathBuf>,
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    #[serde(default)]
    pub server: ServerConfig,
    pub checkpoint: Option<CheckpointConfig>,
    /// How long the worker sleeps when no source had anything new.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: DurationConfig,
    /// Threads that read and parse files in parallel when several files are tailed
    /// (default: the machine's cores, at most 8); rules are applied on one thread.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// OTLP/HTTP metrics push, off unless given.
    pub otlp: Option<OtlpConfig>,
    /// Measurements of other systems on a timer (Kafka consumer lag, reconciliation).
    #[serde(default)]
    pub probes: ProbesConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    File {
        name: Option<String>,
        paths: Vec<String>,
        #[serde(default)]
        start_at: StartAt,
        /// The rules file (and so the parser) for these files; the agent's `rules` when
        /// absent.
        rules: Option<PathBuf>,
        /// Where rotated files go besides each log's folder (globs, e.g. logrotate's
        /// `olddir`: `/var/log/old/app.log.*`).
        #[serde(default)]
        rotated: Vec<String>,
    },
    Stdin {
        rules: Option<PathBuf>,
    },
    /// A consumer-group member of Kafka topics whose record values are log lines.
    Kafka(KafkaSourceConfig),
}

impl SourceConfig {
    /// The source's name: its own, else its kind and position (`file0`, `kafka1`); it
    /// keys the source's positions in the checkpoint.
    pub fn name(&self, index: usize) -> String {
        match self {
            SourceConfig::File { name, .. } => {
                name.clone().unwrap_or_else(|| format!("file{index}"))
            }
            SourceConfig::Stdin { .. } => "stdin".to_owned(),
            SourceConfig::Kafka(kafka) => kafka
                .name
                .clone()
                .unwrap_or_else(|| format!("kafka{index}")),
        }
    }

    /// The source's own rules file, if it names one.
    pub fn own_rules(&self) -> Option<&Path> {
        match self {
            SourceConfig::File { rules, .. } | SourceConfig::Stdin { rules } => rules.as_deref(),
            SourceConfig::Kafka(kafka) => kafka.rules.as_deref(),
        }
    }

    fn own_rules_mut(&mut self) -> Option<&mut PathBuf> {
        match self {
            SourceConfig::File { rules, .. } | SourceConfig::Stdin { rules } => rules.as_mut(),
            SourceConfig::Kafka(kafka) => kafka.rules.as_mut(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// TLS and basic auth: a web config file in the Prometheus exporter toolkit's format
    /// (`--web.config.file`).
    #[serde(default)]
    pub web_config_file: Option<PathBuf>,
    /// Connection cap and timeouts.
    #[serde(default)]
    pub http: ServerLimits,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            web_config_file: None,
            http: ServerLimits::default(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckpointConfig {
    pub path: PathBuf,
    #[serde(default = "default_checkpoint_interval")]
    pub interval: DurationConfig,
}

/// The agent's default listen address: loopback only.
pub fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9750))
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().min(8))
}

fn default_poll_interval() -> DurationConfig {
    DurationConfig(Duration::from_millis(250))
}

fn default_checkpoint_interval() -> DurationConfig {
    DurationConfig(Duration::from_secs(5))
}

impl AgentConfig {
    /// A config with the given rules and nothing else (the command line fills the rest).
    pub fn with_rules(rules: PathBuf) -> Self {
        Self {
            rules: Some(rules),
            sources: Vec::new(),
            server: ServerConfig::default(),
            checkpoint: None,
            poll_interval: default_poll_interval(),
            otlp: None,
            threads: default_threads(),
            probes: ProbesConfig::default(),
        }
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text, path)
    }

    /// Parses the configuration file at `path`, given its text; relative paths in it are
    /// taken from `path`'s directory.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let mut config: Self = serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve_paths(base);
        Ok(config)
    }

    /// The rules file source `index` reads with: its own, else the agent's.
    pub fn source_rules(&self, index: usize) -> Result<&Path, AgentError> {
        let source = &self.sources[index];
        source
            .own_rules()
            .or(self.rules.as_deref())
            .ok_or_else(|| AgentError::NoRules(source.name(index)))
    }

    /// Every rules file in use, each once: the agent's first, then the sources' own.
    pub fn rules_files(&self) -> Vec<PathBuf> {
        let own = self.sources.iter().filter_map(SourceConfig::own_rules);
        let mut files: Vec<PathBuf> = Vec::new();
        for path in self.rules.as_deref().into_iter().chain(own) {
            if !files.iter().any(|seen| seen == path) {
                files.push(path.to_owned());
            }
        }
        files
    }

    fn resolve_paths(&mut self, base: &Path) {
        let join = |p: &Path| {
            if p.is_absolute() {
                p.to_owned()
            } else {
                base.join(p)
            }
        };
        if let Some(rules) = &mut self.rules {
            *rules = join(rules);
        }
        if let Some(checkpoint) = &mut self.checkpoint {
            checkpoint.path = join(&checkpoint.path);
        }
        if let Some(web) = &mut self.server.web_config_file {
            *web = join(web);
        }
        if let Some(otlp) = &mut self.otlp {
            otlp.http_config.resolve(base);
        }
        for source in &mut self.sources {
            if let Some(rules) = source.own_rules_mut() {
                *rules = join(rules);
            }
            if let SourceConfig::File { paths, rotated, .. } = source {
                for path in paths.iter_mut().chain(rotated) {
                    *path = join(Path::new(path)).to_string_lossy().into_owned();
                }
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Otlp(#[from] OtlpConfigError),
    #[error("the agent's worker thread died")]
    Worker,
    #[error("two sources are named `{0}`: names key positions in the checkpoint, give each source its own `name`")]
    DuplicateSource(String),
    #[error("source `{0}` has no rules: give the agent's `rules` or the source's own `rules`")]
    NoRules(String),
    #[error("source `{name}`: `{pattern}` is not a glob: {reason}")]
    Glob {
        name: String,
        pattern: String,
        reason: &'static str,
    },
    #[error(transparent)]
    Kafka(#[from] KafkaSourceError),
    #[error("probes: {0}")]
    Probe(String),
    #[error("server.http.{field}: {reason}")]
    Server {
        field: &'static str,
        reason: &'static str,
    },
    #[error(transparent)]
    WebConfig(#[from] omen_common::web::WebConfigError),
}

enum Command {
    Reload,
    Stop,
}

#[derive(Clone)]
pub struct ReloadHandle(Sender<Command>);

impl ReloadHandle {
    pub fn reload(&self) {
        let _ = self.0.send(Command::Reload);
    }
}

/// A running agent (without its HTTP server).
pub struct Agent {
    state: Arc<AgentState>,
    commands: Sender<Command>,
    worker: Option<JoinHandle<()>>,
    _probes: Probes,
}

struct Worker {
    config: AgentConfig,
    sources: Vec<Box<dyn Source>>,
    /// The rules group of each source.
    groups: Vec<GroupId>,
    state: Arc<AgentState>,
    commands: Receiver<Command>,
    /// Every rules file, by group, as last read.
    rules: Vec<WatchedRules>,
}

/// A rules file the worker reloads when its text changes.
struct WatchedRules {
    path: PathBuf,
    text: Vec<u8>,
    /// The file could not be read at the last check (logged with backoff).
    unreadable: LogBackoff,
}

/// Every rules file of a configuration loaded into one pipeline.
pub(crate) struct Loaded {
    pub pipeline: Pipeline,
    /// The rules group of each source, in the order of `sources`.
    pub groups: Vec<GroupId>,
    rules: Vec<WatchedRules>,
}

/// Loads every rules file `config` uses into one pipeline (one group per file, in the
/// order of [`AgentConfig::rules_files`]) and binds each source to its file's group.
pub(crate) fn load_rules(
    config: &AgentConfig,
    clock: Arc<dyn Clock>,
) -> Result<Loaded, AgentError> {
    let mut pipeline = Pipeline::empty(clock);
    let mut rules = Vec::new();
    for path in config.rules_files() {
        let text = std::fs::read(&path).map_err(|source| ConfigError::Read {
            path: path.clone(),
            source,
        })?;
        let parsed = RulesConfig::from_yaml(&String::from_utf8_lossy(&text), &path)?;
        pipeline.add_rules(&parsed, &path)?;
        rules.push(WatchedRules {
            path,
            text,
            unreadable: LogBackoff::default(),
        });
    }
    let groups = (0..config.sources.len())
        .map(|index| {
            let path = config.source_rules(index)?;
            let group = rules.iter().position(|r| r.path == path);
            Ok(GroupId(group.expect("every source's rules file is loaded")))
        })
        .collect::<Result<_, AgentError>>()?;
    Ok(Loaded {
        pipeline,
        groups,
        rules,
    })
}

impl Agent {
    /// Loads the rules, restores the checkpoint and starts polling.
    pub fn start(config: AgentConfig, clock: Arc<dyn Clock>) -> Result<Self, AgentError> {
        let Loaded {
            mut pipeline,
            groups,
            rules,
        } = load_rules(&config, clock.clone())?;
        config.probes.validate().map_err(AgentError::Probe)?;
        let mut sources = build_sources(&config, &pipeline, &groups)?;
        let mut names = std::collections::HashSet::new();
        if let Some(source) = sources.iter().find(|s| !names.insert(s.name().to_owned())) {
            return Err(AgentError::DuplicateSource(source.name().to_owned()));
        }
        if let Some(cp) = &config.checkpoint {
            if let Some(saved) = checkpoint::read(&cp.path)? {
                info!(path = %cp.path.display(), "resuming from checkpoint");
                pipeline.restore(saved.pipeline);
                let mut positions = saved.sources;
                for source in &mut sources {
                    if let Some(position) = positions.remove(source.name()) {
                        source.restore(position);
                    }
                }
            }
        }
        let state = Arc::new(AgentState::new(pipeline, clock));
        let probes = Probes::start(&config.probes, state.probes());
        let (commands, receiver) = channel();
        let mut worker = Worker {
            config,
            sources,
            groups,
            state: state.clone(),
            commands: receiver,
            rules,
        };
        let handle = std::thread::Builder::new()
            .name("omen-agent".into())
            .spawn(move || worker.run())
            .map_err(|_| AgentError::Worker)?;
        Ok(Self {
            state,
            commands,
            worker: Some(handle),
            _probes: probes,
        })
    }

    /// The state the HTTP server and exporters read.
    pub fn state(&self) -> Arc<AgentState> {
        self.state.clone()
    }

    /// Asks for a rules reload (what SIGHUP does).
    pub fn reload(&self) {
        let _ = self.commands.send(Command::Reload);
    }

    /// A handle that asks for reloads from another thread or task.
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle(self.commands.clone())
    }

    /// Stops polling, writes a final checkpoint and waits for the worker.
    pub fn stop(mut self) -> Result<(), AgentError> {
        let _ = self.commands.send(Command::Stop);
        match self.worker.take().map(JoinHandle::join) {
            Some(Err(_)) => Err(AgentError::Worker),
            _ => Ok(()),
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Stop);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// The sources of `config`, each framing records as its rules group says.
pub(crate) fn build_sources(
    config: &AgentConfig,
    pipeline: &Pipeline,
    groups: &[GroupId],
) -> Result<Vec<Box<dyn Source>>, AgentError> {
    let mut sources: Vec<Box<dyn Source>> = Vec::new();
    for (index, (source, group)) in config.sources.iter().zip(groups).enumerate() {
        let name = source.name(index);
        let framing = pipeline.framing_of(*group).clone();
        match source {
            SourceConfig::File {
                paths,
                start_at,
                rotated,
                ..
            } => {
                if let Some((pattern, error)) = paths
                    .iter()
                    .chain(rotated)
                    .find_map(|p| glob::Pattern::new(p).err().map(|e| (p, e)))
                {
                    return Err(AgentError::Glob {
                        name,
                        pattern: pattern.clone(),
                        reason: error.msg,
                    });
                }
                let mut file_config = FileSourceConfig::new(name, paths.clone());
                file_config.start_at = *start_at;
                file_config.rotated = rotated.clone();
                sources.push(Box::new(FileSource::new(file_config, framing)));
            }
            SourceConfig::Stdin { .. } => {
                sources.push(Box::new(StdinSource::new(framing)));
            }
            SourceConfig::Kafka(kafka) => {
                sources.push(Box::new(KafkaSource::new(name, kafka)?));
            }
        }
    }
    Ok(sources)
}

impl Worker {
    fn run(&mut self) {
        // If this thread ever dies, health and readiness must stop saying otherwise.
        struct Alive(Arc<AgentState>);
        impl Drop for Alive {
            fn drop(&mut self) {
                self.0.set_stopped();
            }
        }
        let _alive = Alive(self.state.clone());
        let checkpoint_every = self.config.checkpoint.as_ref().map(|c| c.interval.0);
        if checkpoint_every.is_some() {
            self.state.expect_checkpoints();
        }
        let mut last_checkpoint: Option<Instant> = None;
        let mut last_rules_check = Instant::now();
        loop {
            let read = self.poll_once();
            // The first checkpoint is written right after the first poll, before the agent
            // says it is ready: positions chosen at startup (`start_at: end`) survive a
            // crash that comes before the first interval.
            let due = checkpoint_every
                .is_some_and(|every| last_checkpoint.is_none_or(|t| t.elapsed() >= every))
                || self.sources.iter().any(|s| s.needs_checkpoint());
            if due {
                self.checkpoint();
                last_checkpoint = Some(Instant::now());
            }
            self.state.set_ready();
            if last_rules_check.elapsed() >= Duration::from_secs(1) {
                last_rules_check = Instant::now();
                self.reload_if_changed();
            }
            let wait = if read > 0 {
                Duration::ZERO
            } else {
                self.config.poll_interval.0
            };
            match self.commands.recv_timeout(wait) {
                Ok(Command::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(Command::Reload) => self.reload(),
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
        self.checkpoint();
        info!("agent stopped");
    }

    fn poll_once(&mut self) -> u64 {
        for source in &mut self.sources {
            source.prefetch();
        }
        poll_sources(
            &mut self.state.pipeline(),
            &mut self.sources,
            &self.groups,
            self.config.threads,
        )
    }

    /// Saves positions and metric state as one cut, then tells each source its position
    /// is durable. Without a checkpoint file, sources are told their records are applied.
    fn checkpoint(&mut self) {
        let Some(config) = &self.config.checkpoint else {
            for source in &mut self.sources {
                let position = source.checkpoint();
                source.checkpoint_written(&position);
            }
            return;
        };
        let snapshot = self.state.pipeline().snapshot();
        let positions: BTreeMap<String, _> = self
            .sources
            .iter()
            .map(|s| (s.name().to_owned(), s.checkpoint()))
            .collect();
        let now_ns = self.state.now_ns();
        let saved = Checkpoint::new(now_ns as f64 / 1e9, positions, snapshot);
        let result = checkpoint::write(&config.path, &saved);
        if let Err(error) = &result {
            error!(%error, "checkpoint failed");
            self.state.set_checkpoint_failed();
        } else {
            self.state.set_last_checkpoint(now_ns);
            for source in &mut self.sources {
                if let Some(position) = saved.sources.get(source.name()) {
                    source.checkpoint_written(position);
                }
            }
        }
        self.state.pipeline().count_checkpoint_write(result.is_ok());
    }

    /// Reloads each rules file whose text changed since it was last read.
    fn reload_if_changed(&mut self) {
        for group in 0..self.rules.len() {
            let watched = &mut self.rules[group];
            match std::fs::read(&watched.path) {
                Ok(text) => {
                    if watched.unreadable.succeeded() {
                        info!(path = %watched.path.display(), "rules readable again");
                    }
                    if text != watched.text {
                        self.reload_from(GroupId(group), text);
                    }
                }
                Err(error) => {
                    // Checked every second: logged with backoff.
                    if let Some(unlogged) = watched.unreadable.failed(Instant::now()) {
                        let path = watched.path.display();
                        warn!(%path, %error, unlogged, "cannot read rules, keeping the running ones");
                    }
                }
            }
        }
    }

    /// Reloads every rules file (SIGHUP).
    fn reload(&mut self) {
        for group in 0..self.rules.len() {
            let path = &self.rules[group].path;
            match std::fs::read(path) {
                Ok(text) => self.reload_from(GroupId(group), text),
                Err(error) => {
                    error!(path = %path.display(), %error, "reload failed, keeping the running rules");
                    self.state.pipeline().count_failed_reload();
                }
            }
        }
    }

    fn reload_from(&mut self, group: GroupId, text: Vec<u8>) {
        let path = self.rules[group.0].path.clone();
        let parsed = RulesConfig::from_yaml(&String::from_utf8_lossy(&text), &path);
        if parsed.is_err() {
            // Not a rules file at all: the pipeline never sees it, so count it here.
            self.state.pipeline().count_failed_reload();
        }
        let result = parsed.and_then(|rules| {
            let mut pipeline = self.state.pipeline();
            pipeline.reload(group, &rules)?;
            let framing = pipeline.framing_of(group);
            for (source, _) in self
                .sources
                .iter_mut()
                .zip(&self.groups)
                .filter(|(_, g)| **g == group)
            {
                source.set_framing(framing);
            }
            Ok(())
        });
        // Remember what was tried, so a bad file is reported once, not every second.
        self.rules[group.0].text = text;
        match result {
            Ok(()) => info!(path = %path.display(), "rules reloaded"),
            Err(error) => error!(%error, "reload failed, keeping the running rules"),
        }
    }
}

/// Polls every source once into the pipeline, as one batch; returns the bytes read.
fn poll_sources(
    pipeline: &mut Pipeline,
    sources: &mut [Box<dyn Source>],
    groups: &[GroupId],
    threads: usize,
) -> u64 {
    pipeline.begin_batch();
    let mut read = 0;
    for (source, group) in sources.iter_mut().zip(groups) {
        pipeline.select(*group);
        let preparer = (threads > 1).then(|| pipeline.preparer());
        read += match &preparer {
            Some(preparer) => source.poll_parallel(pipeline, preparer, threads),
            None => source.poll(pipeline),
        };
        if let Some(files) = source.files() {
            pipeline.set_source_files(source.name(), files);
        }
    }
    pipeline.end_batch();
    read
}

/// Reads every source to its current end (stdin to its close), then returns the rules'
/// exposition: `omen agent --oneshot`, mtail's one-shot mode. No server, no checkpoint.
pub fn run_oneshot(config: &AgentConfig, clock: Arc<dyn Clock>) -> Result<String, AgentError> {
    let Loaded {
        mut pipeline,
        groups,
        ..
    } = load_rules(config, clock)?;
    let mut sources = build_sources(config, &pipeline, &groups)?;
    loop {
        let read = poll_sources(&mut pipeline, &mut sources, &groups, config.threads);
        let waiting = sources.iter().any(|s| s.is_stdin() && !s.finished());
        if read == 0 && !waiting {
            break;
        }
        if read == 0 {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    pipeline.begin_batch();
    for (source, group) in sources.iter_mut().zip(&groups) {
        pipeline.select(*group);
        source.flush(&mut pipeline, true);
    }
    pipeline.end_batch();
    Ok(pipeline.render_rules())
}

/// Runs the agent with its HTTP server until SIGINT or SIGTERM; SIGHUP reloads the rules.
pub async fn run(config: AgentConfig, clock: Arc<dyn Clock>) -> Result<(), AgentError> {
    let (listen, limits) = (config.server.listen, config.server.http);
    // Configuration errors come first, before any port is taken.
    limits
        .check()
        .map_err(|(field, reason)| AgentError::Server { field, reason })?;
    let otlp = config.otlp.clone().map(OtlpConfig::build).transpose()?;
    let web = match &config.server.web_config_file {
        Some(path) => Some(Arc::new(omen_common::web::WebConfig::load(path)?)),
        None => None,
    };
    let agent = Agent::start(config, clock)?;
    let listener = match omen_common::http::bind(listen) {
        Ok(listener) => listener,
        Err(source) => {
            tokio::task::spawn_blocking(move || agent.stop()).await.ok();
            return Err(AgentError::Bind {
                addr: listen,
                source,
            });
        }
    };
    let state = agent.state();
    info!(addr = %listener.local_addr().unwrap_or(listen), "serving /metrics");
    let pusher = otlp
        .clone()
        .map(|exporter| tokio::spawn(exporter.push_loop(state.clone())));
    let reloader = agent.reload_handle();
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut hup) = signal(SignalKind::hangup()) {
            while hup.recv().await.is_some() {
                info!("SIGHUP: reloading rules");
                reloader.reload();
            }
        }
    });
    let app = crate::server::app(state.clone());
    let stats = state.http_stats().clone();
    omen_common::http::serve(listener, app, limits, web, stats, shutdown_signal()).await;
    if let Some(pusher) = pusher {
        pusher.abort();
    }
    let stopped = tokio::task::spawn_blocking(move || agent.stop())
        .await
        .map_err(|_| AgentError::Worker)?;
    // The final values, after the worker's last batch; bounded by the push timeout.
    if let Some(exporter) = otlp {
        if let Err(error) = exporter.push(&state).await {
            warn!(%error, "final otlp push failed");
        }
    }
    stopped
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
    info!("shutting down");
}
