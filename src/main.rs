//! `omen`: the command line. Parses arguments and calls the agent and detector libraries.

mod check;
mod cli;
mod demo;
mod fleet;
mod logging;
mod rca;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use cli::{
    AgentCommand, AgentPatternsArgs, AgentRunArgs, AgentTestArgs, BacktestArgs, Cli, Command,
    DemoArgs, DetectArgs, FleetArgs, ModelsArg, StartAtArg, EXIT_CONFIG, EXIT_FAILED, EXIT_RUNTIME,
};
use omen_agent::clock::SystemClock;
use omen_agent::runtime::{AgentConfig, CheckpointConfig, SourceConfig};
use omen_agent::source::StartAt;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(error) = logging::init(cli.log_level.as_deref(), cli.log_format) {
        eprintln!("error: {error}");
        return ExitCode::from(EXIT_CONFIG);
    }
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Completions(args) => {
            write_stdout(&cli::completions(args.shell));
            ExitCode::SUCCESS
        }
        Command::Man(args) => match cli::man_pages(&args.out) {
            Ok(pages) => {
                let listed: Vec<String> = pages.iter().map(|p| p.display().to_string()).collect();
                write_stdout(&(listed.join("\n") + "\n"));
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: cannot write to {}: {error}", args.out.display());
                ExitCode::from(EXIT_RUNTIME)
            }
        },
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
                ExitCode::from(EXIT_RUNTIME)
            }
        },
        Command::Backtest(args) => match backtest(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("error: {}", error_line(&error));
                ExitCode::from(EXIT_RUNTIME)
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
    if let Some(path) = args.web_config_file {
        config.web_config_file = Some(path);
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
        Err(
            error @ (omen_detector_live::runtime::RunError::Listen { .. }
            | omen_detector_live::runtime::RunError::WebConfig(_)),
        ) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_RUNTIME)
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
            ExitCode::from(EXIT_RUNTIME)
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
                ExitCode::from(EXIT_RUNTIME)
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
            ExitCode::from(EXIT_RUNTIME)
        }
    }
}

/// Writes `text` to standard output; a reader that stopped early (`| head`) is not an
/// error, and other write errors are said once, not a panic as `print!` would make them.
fn write_stdout(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => {
            eprintln!("error: cannot write to standard output: {error}");
        }
        _ => {}
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
    // The `detector:` section of a detect configuration: one format for both commands.
    let mut config: SeriesDetectorConfig = match &args.config {
        Some(path) => omen_detector_live::config::DetectConfig::load(path)?.detector,
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
    let run = match omen_agent::oneshot::run_input(&args.rules, &input, clock) {
        Ok(run) => run,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    write_stdout(&run.exposition);
    // What the rules made of the input, after the metrics and apart from them.
    let mistakes = run.findings.iter().filter(|f| f.mistake).count();
    for finding in &run.findings {
        let kind = if finding.mistake { "warning" } else { "note" };
        eprintln!("{kind}: {}", finding.text);
    }
    eprintln!("{} records, {mistakes} warning(s)", run.records);
    if args.strict && mistakes > 0 {
        return ExitCode::from(EXIT_FAILED);
    }
    ExitCode::SUCCESS
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
    let (oneshot, strict) = (args.oneshot, args.strict);
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
    // What the agent will read, make and write, as `omen check agent` prints it.
    let summary = omen_agent::check::describe(&config);
    for line in &summary.lines {
        tracing::info!("{line}");
    }
    for warning in summary.warnings.iter().chain(&summary.errors) {
        tracing::warn!("{warning}");
    }
    if strict && !(summary.warnings.is_empty() && summary.errors.is_empty()) {
        eprintln!("error: --strict: the configuration has warnings (above)");
        return ExitCode::from(EXIT_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    match runtime.block_on(omen_agent::runtime::run(config, Arc::new(SystemClock))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(
            error @ (omen_agent::runtime::AgentError::Config(_)
            | omen_agent::runtime::AgentError::Otlp(_)
            | omen_agent::runtime::AgentError::DuplicateSource(_)
            | omen_agent::runtime::AgentError::Bind { .. }
            | omen_agent::runtime::AgentError::Server { .. }
            | omen_agent::runtime::AgentError::WebConfig(_)
            | omen_agent::runtime::AgentError::Probe(_)),
        ) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_CONFIG)
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(EXIT_RUNTIME)
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
        config.rules = Some(rules);
    }
    if !args.tail.is_empty() {
        config.sources.push(SourceConfig::File {
            name: Some("tail".into()),
            paths: args.tail,
            start_at: match args.start_at {
                StartAtArg::Beginning => StartAt::Beginning,
                StartAtArg::End => StartAt::End,
            },
            rules: None,
            rotated: Vec::new(),
        });
    }
    if args.stdin {
        config.sources.push(SourceConfig::Stdin { rules: None });
    }
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(path) = args.web_config_file {
        config.server.web_config_file = Some(path);
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
