//! The command line's definition: every command, flag, default and example `--help`
//! shows, and what completions and man pages are generated from.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use omen_agent::config::DurationConfig;

use crate::logging::LogFormat;

/// Exit codes (see `exit_codes!`): 1 a check failed, 2 bad configuration or usage, 3 a
/// failure while running.
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_CONFIG: u8 = 2;
pub const EXIT_RUNTIME: u8 = 3;

fn parse_duration(text: &str) -> Result<DurationConfig, String> {
    omen_agent::config::parse_duration(text).map(DurationConfig)
}

/// The examples of `omen --help`.
macro_rules! examples {
    () => {
        "Examples:
  omen demo                                 agent and detector on a simulated service
  omen agent --config agent.yaml            tail logs, serve /metrics on 127.0.0.1:9750
  omen detect --config detect.yaml          detect live, serve on 127.0.0.1:9751
  omen check detect --config detect.yaml    validate a configuration, print it resolved"
    };
}

/// What each exit code means, for every command.
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0  success
  1  a check failed: a rule test case, `omen check`, `omen demo --check`
  2  bad configuration or usage, including an address that cannot be listened on
  3  a failure while running (an input that cannot be read, a server that went away)"
    };
}

#[derive(Parser)]
#[command(
    name = "omen",
    version,
    about = "AIOps agent and anomaly detector",
    long_about = "AIOps agent and anomaly detector.\n\n`omen agent` turns logs into Prometheus metrics; `omen detect` learns every series' normal behaviour and raises incidents with their root cause to Alertmanager; `omen backtest` and `omen rca` replay history through the same code and score it.",
    after_help = concat!(examples!(), "\n\n", exit_codes!())
)]
pub struct Cli {
    /// Which log lines to write: a level (error, warn, info, debug, trace) or directives
    /// such as `warn,omen_agent=debug`. Default: $OMEN_LOG, else $RUST_LOG, else info.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log_level: Option<String>,
    /// How log lines look on standard error (text is coloured only on a terminal).
    #[arg(long, global = true, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Turn logs into metrics: tail files or stdin, serve /metrics.
    #[command(after_help = "Examples:
  omen agent --config examples/agent/agent.yaml
  omen agent --rules examples/agent/inventory.yaml --tail '/var/log/app/*.log' --checkpoint /var/lib/omen/agent.ckpt
  tail -F app.log | omen agent --rules rules.yaml --stdin --listen 127.0.0.1:9100
  omen agent test --rules examples/agent/inventory.yaml --cases examples/agent/inventory_cases.yaml")]
    Agent(AgentArgs),
    /// Detect anomalies live: ingest by scrape, remote_write or PromQL; alert on incidents.
    #[command(after_help = "Examples:
  omen detect                                   remote_write and /metrics on 127.0.0.1:9751
  omen detect --config examples/detector/detect.yaml
  omen detect --config detect.yaml --replay 2026-11-23T00:00:00Z..2026-11-30T00:00:00Z")]
    Detect(DetectArgs),
    /// Validate a configuration and print it resolved (sources, rules, sinks, paths).
    #[command(after_help = "Examples:
  omen check agent --config examples/agent/agent.yaml
  omen check detect --config examples/detector/detect.yaml

Exit codes: 0 valid, 1 not (every error is listed).")]
    Check(CheckArgs),
    /// Replay history through the detector and score it (NAB rules).
    #[command(after_help = "Examples:
  omen backtest ../nab/data --labels ../nab/labels/combined_windows.json --out results
  omen backtest metrics.csv --out results --config detector.yaml --no-plots")]
    Backtest(BacktestArgs),
    /// Agent and detector on a simulated inventory service with injected incidents.
    #[command(after_help = "Examples:
  omen demo                                     a live day at 40 ms per simulated minute
  omen demo --pace-ms 0 --check                 as fast as possible; exit 1 on a miss
  omen demo --kafka 127.0.0.1:9092 --redis 127.0.0.1:6379")]
    Demo(DemoArgs),
    /// Replay recorded fault cases (spans) and rank each one's root-cause services.
    #[command(after_help = "Example:
  omen rca ../traces/cases --out rca-results")]
    Rca(RcaArgs),
    /// Write a simulated production fleet (about 200 series, weeks of history and a live
    /// week of incidents and planned events) to a Prometheus by remote_write.
    #[command(
        after_help = "Example:\n  omen fleet --remote-write http://127.0.0.1:9090/api/v1/write --truth truth.json\n  omen detect --config fleet.yaml --replay 2026-11-23T00:00:00Z..2026-11-30T00:00:00Z"
    )]
    Fleet(FleetArgs),
    /// Print a shell completion script.
    #[command(after_help = "Examples:
  omen completions bash > /etc/bash_completion.d/omen
  omen completions zsh > \"${fpath[1]}/_omen\"")]
    Completions(CompletionsArgs),
    /// Write man pages (omen.1 and one per command) generated from this command line.
    #[command(after_help = "Example:
  omen man --out /usr/local/share/man/man1 && man omen-agent")]
    Man(ManArgs),
}

#[derive(Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

#[derive(Args)]
pub struct ManArgs {
    /// Directory to write the pages to (created if missing).
    #[arg(long, default_value = ".")]
    pub out: PathBuf,
}

#[derive(Args)]
pub struct CheckArgs {
    /// Which configuration to check.
    #[arg(value_enum)]
    pub what: CheckWhat,
    /// The configuration file (YAML).
    #[arg(long)]
    pub config: PathBuf,
}

/// The two kinds of configuration.
#[derive(Clone, Copy, ValueEnum)]
pub enum CheckWhat {
    /// An `omen agent --config` file, with its rules files.
    Agent,
    /// An `omen detect --config` file.
    Detect,
}

#[derive(Args)]
pub struct FleetArgs {
    /// Prometheus' remote_write receiver (run Prometheus with
    /// --web.enable-remote-write-receiver); without it, only the truth is written.
    #[arg(long, value_name = "URL")]
    pub remote_write: Option<String>,
    /// Where to write the truth (JSON: the live week's windows); default: standard output.
    #[arg(long)]
    pub truth: Option<PathBuf>,
    /// Also write an `omen detect` configuration for the fleet: PromQL on that Prometheus,
    /// the calendar, the services' calls, alerts to stdout.
    #[arg(long, value_name = "FILE", requires = "remote_write")]
    pub detect_config: Option<PathBuf>,
    /// Days of normal history before the live week.
    #[arg(long, default_value_t = 14, value_parser = clap::value_parser!(i64).range(1..=56))]
    pub history_days: i64,
    /// First day (RFC 3339, a Monday midnight UTC); default: the latest Monday from which
    /// history and the live week end before now.
    #[arg(long)]
    pub start: Option<String>,
    /// Seed of the simulated noise.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

#[derive(Args)]
pub struct RcaArgs {
    /// One case directory (with case.json and spans.csv.gz), or a directory of them
    pub cases: PathBuf,
    /// Output directory: predictions.json (case id → services, best first) and report.json
    #[arg(long)]
    pub out: PathBuf,
    /// Rank from spans alone, without the cases' logs
    #[arg(long)]
    pub no_logs: bool,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Exit 1 unless every injected incident is detected and no other incident opens.
    #[arg(long)]
    pub check: bool,
    /// Wall-clock milliseconds per simulated minute of the live day (0: full speed).
    #[arg(long, default_value_t = 40)]
    pub pace_ms: u64,
    /// Days of history learnt before the live day.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i64).range(1..=28))]
    pub history_days: i64,
    /// Seed of the simulated traffic.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Address of the agent's /metrics.
    #[arg(long, default_value = "127.0.0.1:9750")]
    pub agent_listen: SocketAddr,
    /// Address of the detector's /metrics and /api/v1/incidents.
    #[arg(long, default_value = "127.0.0.1:9751")]
    pub detector_listen: SocketAddr,
    /// Run the inventory scenario against this Kafka broker instead (with --redis): an
    /// inventory service that dies between Redis and Kafka, watched by the agent.
    #[arg(long, requires = "redis")]
    pub kafka: Option<SocketAddr>,
    /// The Redis server of the Kafka scenario.
    #[arg(long, requires = "kafka")]
    pub redis: Option<SocketAddr>,
    /// Orders the Kafka scenario's service takes.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    pub orders: u64,
    /// Orders whose event the Kafka scenario's service loses (0: a healthy run).
    #[arg(long, default_value_t = 7)]
    pub lost: u64,
}

#[derive(Args)]
pub struct DetectArgs {
    /// Detector configuration (YAML); without it, the defaults: remote_write and /metrics
    /// on 127.0.0.1:9751.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Address for /metrics, /api/v1/write, /api/v1/incidents (overrides the config).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// TLS and basic auth for every listener: a web config file as Prometheus and its
    /// exporters take (`tls_server_config`, `basic_auth_users`; overrides the config).
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// Replay this stretch of the `prometheus` sources' history (`FROM..TO`, RFC 3339)
    /// through the live path in the series' own time, alerting as it goes, then exit.
    /// Each source's `warmup` before FROM is learnt first.
    #[arg(long, value_name = "FROM..TO")]
    pub replay: Option<String>,
    /// With --replay: wall time per step while an incident is open, so that Alertmanager
    /// (which notifies after its group_wait) sees each one firing; with any pace, every
    /// alert update is delivered before the next step.
    #[arg(long, default_value = "0s", value_parser = parse_duration, requires = "replay")]
    pub replay_pace: DurationConfig,
}

/// Which models feed the anomaly score.
#[derive(Clone, Copy, ValueEnum)]
pub enum ModelsArg {
    /// Every model: seasonal baseline, isolation forest and shape.
    Combined,
    /// The seasonal baseline alone.
    Baseline,
    /// The isolation forest alone.
    Forest,
    /// The shape model alone.
    Shape,
}

#[derive(Args)]
pub struct BacktestArgs {
    /// A directory searched for CSV / Prometheus files, or one file
    pub data: PathBuf,
    /// NAB `combined_windows.json` with the anomaly windows
    #[arg(long)]
    pub labels: Option<PathBuf>,
    /// Output directory: results go to OUT/NAME/
    #[arg(long)]
    pub out: PathBuf,
    /// Detector name ([A-Za-z0-9-]+)
    #[arg(long, default_value = "omen")]
    pub name: String,
    /// Detector configuration: the `detector:` section of an `omen detect` configuration
    /// (YAML; JSON is YAML too); the defaults otherwise
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Models feeding the score (for ablation); overrides the configuration's `models`
    /// [default: combined]
    #[arg(long, value_enum)]
    pub models: Option<ModelsArg>,
    /// Skip the per-series plots
    #[arg(long)]
    pub no_plots: bool,
}

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
    #[command(flatten)]
    pub run: AgentRunArgs,
}

#[derive(Subcommand)]
pub enum AgentCommand {
    /// Run rules over a finished input and print the exposition, or check rule test cases.
    #[command(after_help = "Examples:
  omen agent test --rules examples/agent/inventory.yaml --input examples/agent/inventory.log
  omen agent test --strict --rules rules.yaml --input sample.log   exit 1 on a warning
  omen agent test --rules examples/agent/inventory.yaml --cases examples/agent/inventory_cases.yaml")]
    Test(AgentTestArgs),
    /// Learn the log templates of a finished input with no rules written, and print them
    /// with their counts, largest first.
    #[command(after_help = "Examples:
  omen agent patterns --input app.log | head
  omen agent patterns --input hdfs.log --format '<Date> <Time> <Pid> <Level> <Component>: <Content>'")]
    Patterns(AgentPatternsArgs),
}

#[derive(Args)]
pub struct AgentPatternsArgs {
    /// Input log file (`-` for stdin).
    #[arg(long)]
    pub input: PathBuf,
    /// Header format of each line, in Loghub's syntax (e.g. `<Date> <Time> <Level>
    /// <Component>: <Content>`); the `<Content>` field is mined. Default: the whole line.
    #[arg(long)]
    pub format: Option<String>,
    /// Also write `line,id,template` for every line (1-based; the id given when the line
    /// arrived, the template as it stands at the end) to this CSV file.
    #[arg(long, value_name = "OUT.csv")]
    pub assignments: Option<PathBuf>,
}

#[derive(Args)]
pub struct AgentRunArgs {
    /// Agent configuration file (sources, server, checkpoint); flags below override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Rules file (replaces the configuration's agent-wide `rules`; sources naming their own keep theirs).
    #[arg(long)]
    pub rules: Option<PathBuf>,
    /// Files to tail (glob patterns; repeatable).
    #[arg(long = "tail", value_name = "GLOB")]
    pub tail: Vec<String>,
    /// Where to start in files found at startup.
    #[arg(long, value_enum, default_value = "beginning")]
    pub start_at: StartAtArg,
    /// Read records from standard input.
    #[arg(long)]
    pub stdin: bool,
    /// Address for /metrics, /healthz and /ready [default: the configuration's
    /// `server.listen`, else 127.0.0.1:9750]
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// TLS and basic auth for /metrics and every page: a web config file as Prometheus and
    /// its exporters take (`tls_server_config`, `basic_auth_users`); overrides the
    /// configuration's `server.web_config_file`.
    #[arg(long = "web.config.file", value_name = "FILE")]
    pub web_config_file: Option<PathBuf>,
    /// Checkpoint file (offsets and metric state), written every --checkpoint-interval;
    /// overrides the configuration's `checkpoint`.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// How often --checkpoint is written (`500ms`, `5s`, `1m`).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub checkpoint_interval: DurationConfig,
    /// Push metrics over OTLP/HTTP (protobuf) to this URL, e.g.
    /// http://127.0.0.1:4318/v1/metrics; other `otlp` settings come from the config file.
    #[arg(long, value_name = "URL")]
    pub otlp_endpoint: Option<String>,
    /// Threads reading and parsing files in parallel (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Read the sources to their current end, print the rules' metrics and exit (no server).
    #[arg(long)]
    pub oneshot: bool,
    /// Refuse to start (exit 2) on what `omen check agent` warns of: a glob that matches
    /// no file, a rules file with no rules.
    #[arg(long)]
    pub strict: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum StartAtArg {
    /// Read files found at startup from their first byte.
    Beginning,
    /// Read only what is written after startup.
    End,
}

#[derive(Args)]
pub struct AgentTestArgs {
    /// Rules file to run.
    #[arg(long)]
    pub rules: PathBuf,
    /// Input log file (`-` for stdin); prints the final exposition.
    #[arg(long, conflicts_with = "cases", required_unless_present = "cases")]
    pub input: Option<PathBuf>,
    /// Rule test cases (YAML); exits 1 with a diff when one fails. A case may also
    /// expect `errors: 0` (records that did not parse, values a rule could not use) and
    /// `unmatched: 0` (records no rule matched).
    #[arg(long)]
    pub cases: Option<PathBuf>,
    /// With --input: exit 1 when the rules look wrong on it (a field no record has, a
    /// record that does not parse, a value that is not a number, a rule that matched
    /// nothing). Without it those are warnings on standard error.
    #[arg(long, conflicts_with = "cases")]
    pub strict: bool,
}

/// `omen completions SHELL`: the completion script.
pub fn completions(shell: clap_complete::Shell) -> String {
    use clap::CommandFactory;
    let mut command = Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "omen", &mut script);
    String::from_utf8_lossy(&script).into_owned()
}

/// `omen man --out DIR`: `omen.1` and `omen-<command>.1` for every command and
/// subcommand; the paths written.
pub fn man_pages(out: &std::path::Path) -> std::io::Result<Vec<PathBuf>> {
    use clap::CommandFactory;
    std::fs::create_dir_all(out)?;
    let mut written = Vec::new();
    let mut pending = vec![(
        String::from("omen"),
        Cli::command().version(env!("CARGO_PKG_VERSION")),
    )];
    while let Some((name, command)) = pending.pop() {
        for sub in command.get_subcommands().filter(|s| s.get_name() != "help") {
            let sub_name = format!("{name}-{}", sub.get_name());
            pending.push((sub_name.clone(), sub.clone().name(sub_name)));
        }
        let path = out.join(format!("{name}.1"));
        let mut page = Vec::new();
        clap_mangen::Man::new(command).render(&mut page)?;
        std::fs::write(&path, page)?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}
