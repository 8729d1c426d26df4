//! `omen`: the command line. Parses arguments and calls the agent and detector libraries.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "omen", version, about = "AIOps agent and anomaly detector")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay history through the detector and score it (NAB rules)
    Backtest(BacktestArgs),
}

/// Which models feed the anomaly score.
#[derive(Clone, Copy, ValueEnum)]
enum ModelsArg {
    Combined,
    Baseline,
    Forest,
}

#[derive(clap::Args)]
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
    /// Detector configuration (JSON, fields of DetectorConfig); defaults otherwise
    #[arg(long)]
    config: Option<PathBuf>,
    /// Models feeding the score (for ablation)
    #[arg(long, value_enum, default_value = "combined")]
    models: ModelsArg,
    /// Skip the per-series plots
    #[arg(long)]
    no_plots: bool,
}

fn backtest(args: BacktestArgs) -> anyhow::Result<()> {
    use omen_detector::model::{DetectorConfig, Models};
    let mut config: DetectorConfig = match &args.config {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path)?)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
        None => DetectorConfig::default(),
    };
    config.models = match args.models {
        ModelsArg::Combined => Models::Combined,
        ModelsArg::Baseline => Models::BaselineOnly,
        ModelsArg::Forest => Models::ForestOnly,
    };
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Backtest(args) => backtest(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
