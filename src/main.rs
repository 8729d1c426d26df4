//! `omen`: the command line. Parses arguments and calls the agent and detector libraries.

mod demo;
mod fleet;
mod rca;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand, ValueEnum};
use omen_agent::clock::SystemClock;
use omen_agent::config::DurationConfig;
use omen_agent::runtime::{AgentConfig, CheckpointConfig, SourceConfig};
use omen_agent::source::StartAt;

#[derive(Parser)]
#[command(name = "omen", version, about = "AIOps agent and anomaly detector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Turn logs into metrics: tail files or stdin, serve /metrics.
    Agent(AgentArgs),
    /// Detect anomalies live: ingest by scrape, remote_write or PromQL; alert on incidents.
    Detect(DetectArgs),
    /// Replay history through the detector and score it (NAB rules).
    Backtest(BacktestArgs),
    /// Agent and detector on a simulated inventory service with injected incidents.
    Demo(DemoArgs),
    /// Replay recorded fault cases (spans) and rank each one's root-cause services.
    Rca(RcaArgs),
    /// Write a simulated production fleet (about 200 series, weeks of history and a live
    /// week of incidents and planned events) to a Prometheus by remote_write.
    #[command(
        after_help = "Example:\n  omen fleet --remote-write http://127.0.0.1:9090/api/v1/write --truth truth.json\n  omen detect --config fleet.yaml --replay 2026-11-23T00:00:00Z..2026-11-30T00:00:00Z"
    )]
    Fleet(FleetArgs),
}

#[derive(Args)]
struct FleetArgs {
    /// Prometheus' remote_write receiver (run Prometheus with
    /// --web.enable-remote-write-receiver); without it, only the truth is written.
    #[arg(long, value_name = "URL")]
    remote_write: Option<String>,
    /// Where to write the truth (JSON: the live week's windows); default: standard output.
    #[arg(long)]
    truth: Option<PathBuf>,
    /// Also write an `omen detect` configuration for the fleet: PromQL on that Prometheus,
    /// the calendar, the services' calls, alerts to stdout.
    #[arg(long, value_name = "FILE", requires = "remote_write")]
    detect_config: Option<PathBuf>,
    /// Days of normal history before the live week.
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(i64).range(1..=56))]
    history_days: i64,
    /// First day (RFC 3339, a Monday midnight UTC); default: the latest Monday from which
    /// history and the live week end before now.
    #[arg(long)]
    start: Option<String>,
    /// Seed of the simulated noise.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

#[derive(Args)]
struct RcaArgs {
    /// One case directory (with case.json and spans.csv.gz), or a directory of them
    cases: PathBuf,
    /// Output directory: predictions.json (case id → services, best first) and report.json
    #[arg(long)]
    out: PathBuf,
    /// Rank from spans alone, without the cases' logs
    #[arg(long)]
    no_logs: bool,
}

#[derive(Args)]
struct DemoArgs {
    /// Exit 1 unless every injected incident is detected and no other incident opens.
    #[arg(long)]
    check: bool,
    /// Wall-clock milliseconds per simulated minute of the live day (0: full speed).
    #[arg(long, default_value_t = 40)]
    pace_ms: u64,
    /// Days of history learnt before the live day.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i64).range(1..=28))]
    history_days: i64,
    /// Seed of the simulated traffic.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Address of the agent's /metrics.
    #[arg(long, default_value = "127.0.0.1:9750")]
    agent_listen: SocketAddr,
    /// Address of the detector's /metrics and /api/v1/incidents.
    #[arg(long, default_value = "127.0.0.1:9751")]
    detector_listen: SocketAddr,
    /// Run the inventory scenario against this Kafka broker instead (with --redis): an
    /// inventory service that dies between Redis and Kafka, watched by the agent.
    #[arg(long, requires = "redis")]
    kafka: Option<SocketAddr>,
    /// The Redis server of the Kafka scenario.
    #[arg(long, requires = "kafka")]
    redis: Option<SocketAddr>,
    /// Orders the Kafka scenario's service takes.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    orders: u64,
    /// Orders whose event the Kafka scenario's service loses (0: a healthy run).
    #[arg(long, default_value_t = 7)]
    lost: u64,
}

#[derive(Args)]
struct DetectArgs {
    /// Detector configuration (YAML); without it, the defaults: remote_write and /metrics
    /// on 127.0.0.1:9751.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Address for /metrics, /api/v1/write, /api/v1/incidents (overrides the config).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Replay this stretch of the `prometheus` sources' history (`FROM..TO`, RFC 3339)
    /// through the live path in the series' own time, alerting as it goes, then exit.
    /// Each source's `warmup` before FROM is learnt first.
    #[arg(long, value_name = "FROM..TO")]
    replay: Option<String>,
    /// With --replay: wall time per step while an incident is open, so that Alertmanager
    /// (which notifies after its group_wait) sees each one firing; with any pace, every
    /// alert update is delivered before the next step.
    #[arg(long, default_value = "0s", value_parser = parse_duration, requires = "replay")]
    replay_pace: DurationConfig,
}

/// Which models feed the anomaly score.
#[derive(Clone, Copy, ValueEnum)]
enum ModelsArg {
    Combined,
    Baseline,
    Forest,
    Shape,
}

#[derive(Args)]
struct BacktestArgs {
    /// A directory searched for CSV / Prometheus files, or one file
    data: PathBuf,
    /// NAB `combined_windows.json` with the anomaly windows
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Output directory: results go to OUT/NAME/
    #[arg(long)]
    out: PathBuf,
    /// Detector name ([A-Za-z0-9-]+)
    #[arg(long, default_value = "omen")]
    name: String,
    /// Detector configuration (JSON, fields of SeriesDetectorConfig); defaults otherwise
    #[arg(long)]
    config: Option<PathBuf>,
    /// Models feeding the score (for ablation); overrides the configuration's `models`
    /// [default: combined]
    #[arg(long, value_enum)]
    models: Option<ModelsArg>,
    /// Skip the per-series plots
    #[arg(long)]
    no_plots: bool,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
struct AgentArgs {
    #[command(subcommand)]
    command: Option<AgentCommand>,
    #[command(flatten)]
    run: AgentRunArgs,
}

#[derive(Subcommand)]
enum AgentCommand {
    /// Run rules over a finished input and print the exposition, or check rule test cases.
    Test(AgentTestArgs),
    /// Learn the log templates of a finished input with no rules written, and print them
    /// with their counts, largest first.
    Patterns(AgentPatternsArgs),
}

#[derive(Args)]
struct AgentPatternsArgs {
    /// Input log file (`-` for stdin).
    #[arg(long)]
    input: PathBuf,
    /// Header format of each line, in Loghub's syntax (e.g. `<Date> <Time> <Level>
    /// <Component>: <Content>`); the `<Content>` field is mined. Default: the whole line.
    #[arg(long)]
    format: Option<String>,
    /// Also write `line,id,template` for every line (1-based; the id given when the line
    /// arrived, the template as it stands at the end) to this CSV file.
    #[arg(long, value_name = "OUT.csv")]
    assignments: Option<PathBuf>,
}

#[derive(Args)]
struct AgentRunArgs {
    /// Agent configuration file (sources, server, checkpoint); flags below override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Rules file.
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Files to tail (glob patterns; repeatable).
    #[arg(long = "tail", value_name = "GLOB")]
    tail: Vec<String>,
    /// Where to start in files found at startup.
    #[arg(long, value_enum, default_value = "beginning")]
    start_at: StartAtArg,
    /// Read records from standard input.
    #[arg(long)]
    stdin: bool,
    /// Address for /metrics, /healthz and /ready.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Checkpoint file (offsets and metric state), written every --checkpoint-interval.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    checkpoint_interval: DurationConfig,
    /// Push metrics over OTLP/HTTP (protobuf) to this URL, e.g.
    /// http://127.0.0.1:4318/v1/metrics; other `otlp` settings come from the config file.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Threads reading and parsing files in parallel (default: the machine's cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Read the sources to their current end, print the rules' metrics and exit (no server).
    #[arg(long)]
    oneshot: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StartAtArg {
    Beginning,
    End,
}

#[derive(Args)]
struct AgentTestArgs {
    #[arg(long)]
    rules: PathBuf,
    /// Input log file (`-` for stdin); prints the final exposition.
    #[arg(long, conflicts_with = "cases", required_unless_present = "cases")]
    input: Option<PathBuf>,
    /// Rule test cases (YAML); exits 1 with a diff when one fails.
    #[arg(long)]
    cases: Option<PathBuf>,
}

fn parse_duration(text: &str) -> Result<DurationConfig, String> {
    omen_agent::config::parse_duration(text).map(DurationConfig)
}

/// Exit codes: 0 success, 1 a check failed, 2 bad configuration or usage.
const EXIT_FAILED: u8 = 1;
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match cli.command {
        Command::Agent(args) => match args.command {
            Some(AgentCommand::Test(test)) => agent_test(test),
            Some(AgentCommand::Patterns(patterns)) => agent_patterns(patterns),
            None => agent_run(args.run),
        },
        Command::Detect(args) => detect(args),
        Command::Demo(args) => demo(&args),
        Command::Fleet(args) => fleet(&args),
        Command::Rca(args) => match rca::run(&args.cases, &args.out, !args.no_logs) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {}", error_line(&error));
                ExitCode::FAILURE
            }
        },
        Command::Backtest(args) => match backtest(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {}", error_line(&error));
                ExitCode::FAILURE
            }
        },
    }
}

fn detect(args: DetectArgs) -> ExitCode {
    use omen_detector_live::config::DetectConfig;
    let config = match &args.config {
        Some(path) => DetectConfig::load(path),
        None => Ok(DetectConfig::default()),
    };
    let mut config = match config {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let replay = match args.replay.as_deref().map(parse_range).transpose() {
        Ok(range) => range.map(|(from_ms, to_ms)| omen_detector_live::runtime::Replay {
            from_ms,
            to_ms,
            pace: args.replay_pace.0,
        }),
        Err(error) => {
            eprintln!("error: --replay: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    match omen_detector_live::runtime::run(config, replay) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error @ omen_detector_live::runtime::RunError::Listen { .. }) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// `FROM..TO`, two RFC 3339 times, FROM before TO.
fn parse_range(text: &str) -> Result<(i64, i64), String> {
    use omen_detector::series::parse_timestamp;
    let (from, to) = text
        .split_once("..")
        .ok_or("expected FROM..TO, e.g. 2026-11-23T00:00:00Z..2026-11-30T00:00:00Z")?;
    let time = |t: &str| parse_timestamp(t.trim()).map_err(|e| format!("`{t}`: {e}"));
    let (from, to) = (time(from)?, time(to)?);
    if from >= to {
        return Err("FROM must come before TO".to_owned());
    }
    Ok((from, to))
}

fn fleet(args: &FleetArgs) -> ExitCode {
    let start_ms = match args
        .start
        .as_deref()
        .map(omen_detector::series::parse_timestamp)
    {
        None => None,
        Some(Ok(ms)) => Some(ms),
        Some(Err(error)) => {
            eprintln!("error: --start: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let options = fleet::FleetOptions {
        remote_write: args.remote_write.clone(),
        truth: args.truth.clone(),
        detect_config: args.detect_config.clone(),
        seed: args.seed,
        history_days: args.history_days,
        start_ms,
        now_ms: omen_detector_live::state::now_ms(),
    };
    match fleet::run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", error_line(&error));
            ExitCode::FAILURE
        }
    }
}

fn demo(args: &DemoArgs) -> ExitCode {
    if let (Some(kafka), Some(redis)) = (args.kafka, args.redis) {
        let options = demo::kafka::KafkaDemoOptions {
            kafka,
            redis,
            orders: args.orders,
            lost: args.lost,
            check: args.check,
        };
        return match demo::kafka::run(&options) {
            Ok(true) => ExitCode::SUCCESS,
            Ok(false) => ExitCode::from(EXIT_FAILED),
            Err(error) => {
                eprintln!("error: {}", error_line(&error));
                ExitCode::FAILURE
            }
        };
    }
    let options = demo::DemoOptions {
        check: args.check,
        pace: std::time::Duration::from_millis(args.pace_ms),
        history_days: args.history_days,
        seed: args.seed,
        agent_listen: args.agent_listen,
        detector_listen: args.detector_listen,
    };
    match demo::run(&options) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(EXIT_FAILED),
        Err(error) => {
            eprintln!("error: {}", error_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each cause said once: our own errors already end
/// their message with their cause (`cannot read x.csv: permission denied`), and a context
/// added by anyhow (`connect to redis`) does not, so the chain alone would say some twice
/// and the message alone would leave some out.
fn error_line(error: &anyhow::Error) -> String {
    let mut line = error.to_string();
    for cause in error.chain().skip(1) {
        let cause = cause.to_string();
        if !line.ends_with(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

fn backtest(args: BacktestArgs) -> anyhow::Result<()> {
    use omen_detector::model::{Models, SeriesDetectorConfig};
    let mut config: SeriesDetectorConfig = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
            serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
        }
        None => SeriesDetectorConfig::default(),
    };
    // Given on the command line, the models win over the configuration's.
    if let Some(models) = args.models {
        config.models = match models {
            ModelsArg::Combined => Models::Combined,
            ModelsArg::Baseline => Models::BaselineOnly,
            ModelsArg::Forest => Models::ForestOnly,
            ModelsArg::Shape => Models::ShapeOnly,
        };
    }
    let report = omen_detector::backtest::run(&omen_detector::backtest::BacktestOptions {
        data: args.data,
        labels: args.labels,
        out: args.out,
        name: args.name,
        config,
        plots: !args.no_plots,
        progress: true,
    })?;
    print!("{}", report.summary());
    Ok(())
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("OMEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn agent_test(args: AgentTestArgs) -> ExitCode {
    let clock = Arc::new(SystemClock);
    if let Some(cases) = &args.cases {
        return match omen_agent::oneshot::run_cases(&args.rules, cases, clock) {
            Ok(report) if report.failures.is_empty() => {
                println!("ok: {} cases passed", report.cases);
                ExitCode::SUCCESS
            }
            Ok(report) => {
                for failure in &report.failures {
                    println!("{failure}\n");
                }
                println!(
                    "FAILED: {} expectation(s) failed in {} cases",
                    report.failures.len(),
                    report.cases
                );
                ExitCode::from(EXIT_FAILED)
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(EXIT_CONFIG)
            }
        };
    }
    let input = args.input.unwrap_or_else(|| PathBuf::from("-"));
    print_exposition(omen_agent::oneshot::run_input(&args.rules, &input, clock))
}

fn agent_patterns(args: AgentPatternsArgs) -> ExitCode {
    match mine_patterns(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn mine_patterns(args: &AgentPatternsArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    use omen_agent::pattern::{mine, LineFormat, MinerConfig, TemplateMiner};
    use std::io::{BufReader, Write};
    let format = args
        .format
        .as_deref()
        .map(LineFormat::parse)
        .transpose()
        .context("--format")?;
    let miner = TemplateMiner::new(MinerConfig::default())?;
    let record = args.assignments.is_some();
    let mined = if args.input.as_os_str() == "-" {
        mine::mine(std::io::stdin().lock(), format.as_ref(), miner, record)
    } else {
        let file = std::fs::File::open(&args.input)
            .with_context(|| format!("cannot read {}", args.input.display()))?;
        let input = BufReader::with_capacity(1 << 20, file);
        mine::mine(input, format.as_ref(), miner, record)
    }
    .with_context(|| format!("reading {}", args.input.display()))?;
    if let Some(path) = &args.assignments {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        let mut out = std::io::BufWriter::new(file);
        mine::write_assignments(&mined, &mut out)
            .and_then(|()| out.flush())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut stdout = std::io::BufWriter::new(std::io::stdout().lock());
    let written = mine::write_templates(&mined, &mut stdout).and_then(|()| stdout.flush());
    match written {
        // A reader that stopped early (`| head`) is not an error.
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        written => written?,
    }
    let templates = mined.miner.templates().count();
    let held = mined.miner.heap_bytes();
    eprintln!(
        "{} lines, {templates} templates ({} evicted), {held} B held, {} B per template{}{}",
        mined.lines,
        mined.miner.evicted(),
        held / templates.max(1),
        match mined.unformatted {
            0 => String::new(),
            n => format!(", {n} lines without the format mined whole"),
        },
        match mined.not_utf8 {
            0 => String::new(),
            n => format!(", {n} lines not UTF-8"),
        },
    );
    Ok(())
}

/// Prints a one-shot run's exposition, or its error with the configuration exit code.
fn print_exposition(result: Result<String, impl std::fmt::Display>) -> ExitCode {
    match result {
        Ok(exposition) => {
            print!("{exposition}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

fn agent_run(args: AgentRunArgs) -> ExitCode {
    let oneshot = args.oneshot;
    let config = match agent_config(args) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    if oneshot {
        return print_exposition(omen_agent::runtime::run_oneshot(
            &config,
            Arc::new(SystemClock),
        ));
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(omen_agent::runtime::run(config, Arc::new(SystemClock))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(
            error @ (omen_agent::runtime::AgentError::Config(_)
            | omen_agent::runtime::AgentError::Otlp(_)
            | omen_agent::runtime::AgentError::DuplicateSource(_)),
        ) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

fn agent_config(args: AgentRunArgs) -> anyhow::Result<AgentConfig> {
    let mut config = match (&args.config, &args.rules) {
        (Some(path), _) => AgentConfig::load(path)?,
        (None, Some(rules)) => AgentConfig::with_rules(rules.clone()),
        (None, None) => anyhow::bail!("give --config FILE or --rules FILE"),
    };
    if let Some(rules) = args.rules {
        config.rules = rules;
    }
    if !args.tail.is_empty() {
        config.sources.push(SourceConfig::File {
            name: Some("tail".into()),
            paths: args.tail,
            start_at: match args.start_at {
                StartAtArg::Beginning => StartAt::Beginning,
                StartAtArg::End => StartAt::End,
            },
        });
    }
    if args.stdin {
        config.sources.push(SourceConfig::Stdin);
    }
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(path) = args.checkpoint {
        config.checkpoint = Some(CheckpointConfig {
            path,
            interval: args.checkpoint_interval,
        });
    }
    if let Some(endpoint) = args.otlp_endpoint {
        config.otlp.get_or_insert_with(Default::default).endpoint = endpoint;
    }
    if let Some(threads) = args.threads {
        config.threads = threads.max(1);
    }
    if config.sources.is_empty() && config.probes.is_empty() {
        anyhow::bail!(
            "nothing to read or measure: give --tail GLOB, --stdin, or `sources` or `probes` in the config file"
        );
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::error_line;

    /// Says its cause in its message, as the crates' errors do.
    #[derive(Debug)]
    struct CannotRead(std::io::Error);

    impl std::fmt::Display for CannotRead {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "cannot read x.csv: {}", self.0)
        }
    }

    impl std::error::Error for CannotRead {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn an_error_line_says_each_cause_once() {
        let denied = || std::io::Error::other("permission denied");
        let own = anyhow::Error::new(CannotRead(denied()));
        assert_eq!(error_line(&own), "cannot read x.csv: permission denied");
        let context = anyhow::Error::new(denied()).context("connect to redis");
        assert_eq!(error_line(&context), "connect to redis: permission denied");
        let both = anyhow::Error::new(CannotRead(denied())).context("demo");
        assert_eq!(
            error_line(&both),
            "demo: cannot read x.csv: permission denied"
        );
    }
}
