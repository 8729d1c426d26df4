//! `omen check agent|detect --config F`: validate a configuration without running it and
//! print it resolved (sources, rules, sinks, paths), or every error found in it. Nothing is
//! created: no checkpoint or snapshot folder, no port taken.

use std::process::ExitCode;

use crate::cli::{CheckArgs, CheckWhat, EXIT_FAILED};

pub fn run(args: &CheckArgs) -> ExitCode {
    let path = args.config.display();
    let (lines, warnings, errors) = match args.what {
        CheckWhat::Agent => match omen_agent::runtime::AgentConfig::load(&args.config) {
            Ok(config) => {
                let report = omen_agent::check::check(&config);
                (report.lines, report.warnings, report.errors)
            }
            Err(error) => (Vec::new(), Vec::new(), vec![error.to_string()]),
        },
        CheckWhat::Detect => {
            match omen_detector_live::config::DetectConfig::load_all(&args.config) {
                Ok(config) => (config.describe(), Vec::new(), Vec::new()),
                Err(errors) => (
                    Vec::new(),
                    Vec::new(),
                    errors.iter().map(ToString::to_string).collect(),
                ),
            }
        }
    };
    for line in &lines {
        println!("{line}");
    }
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    if errors.is_empty() {
        println!("{path}: ok");
        return ExitCode::SUCCESS;
    }
    for error in &errors {
        eprintln!("error: {error}");
    }
    eprintln!("{path}: {} error(s)", errors.len());
    ExitCode::from(EXIT_FAILED)
}
