//! What a configuration amounts to, said before anything runs: `omen check agent` prints
//! it, and the agent logs the same lines when it starts.
//!
//! [`check`] tries every part that stands on its own (the server's limits, the OTLP push,
//! the rules file, each source, the probes) and gathers every error rather than stopping
//! at the first, so one run shows all that must be fixed. With no error it gives the
//! configuration resolved: absolute paths, defaults filled in, what each glob matches now.

use std::path::Path;
use std::sync::Arc;

use crate::clock::SystemClock;
use crate::config::{ParserFormat, RuleConfig, RulesConfig};
use crate::pipeline::Pipeline;
use crate::runtime::{build_sources, load_rules, AgentConfig, SourceConfig};

/// The outcome of a check: the resolved configuration (one line per part), what deserves
/// a look without being wrong (a glob matching no file yet), and every error.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Report {
    pub lines: Vec<String>,
    pub warnings: Vec<String>,
    pub errors: Vec<String>,
}

/// Checks every part of `config` (already loaded, paths resolved) without starting it.
pub fn check(config: &AgentConfig) -> Report {
    let mut report = describe(config);
    if let Err((field, reason)) = config.server.http.check() {
        report.errors.push(format!("server.http.{field}: {reason}"));
    }
    if let Some(otlp) = &config.otlp {
        if let Err(error) = otlp.clone().build() {
            report.errors.push(error.to_string());
        }
    }
    if let Err(error) = config.probes.validate() {
        report.errors.push(format!("probes: {error}"));
    }
    check_sources(config, &mut report);
    if config.sources.is_empty() && config.probes.is_empty() {
        report
            .errors
            .push("nothing to read or measure: no `sources` and no `probes`".to_owned());
    }
    report
}

/// The configuration resolved, one line per part, with the warnings found on the way (and
/// the rules file's errors): what the agent logs when it starts.
pub fn describe(config: &AgentConfig) -> Report {
    let mut report = Report::default();
    for path in config.rules_files() {
        let rules = rules_line(&path, &mut report);
        report.lines.push(rules);
    }
    for (index, source) in config.sources.iter().enumerate() {
        let mut line = source_line(index, source, &mut report.warnings);
        if let Some(rules) = source.own_rules() {
            line.push_str(&format!(" with rules {}", rules.display()));
        }
        report.lines.push(line);
    }
    let limits = config.server.http;
    let web = config
        .server
        .web_config_file
        .as_deref()
        .map(omen_common::web::WebSecurity::load);
    let scheme = match &web {
        Some(Ok(web)) if web.tls().is_some() => "https",
        _ => "http",
    };
    report.lines.push(format!(
        "listen: {scheme}://{}/metrics (at most {} connections)",
        config.server.listen, limits.max_connections
    ));
    match (web, &config.server.web_config_file) {
        (Some(Ok(_)), Some(path)) => report.lines.push(format!("web config: {}", path.display())),
        (Some(Err(error)), _) => report.errors.push(error.to_string()),
        _ => {}
    }
    report.lines.push(match &config.checkpoint {
        Some(cp) => format!(
            "checkpoint: {} every {}",
            cp.path.display(),
            omen_common::duration::format(cp.interval.0)
        ),
        None => {
            "checkpoint: none (a restart reads the sources again from where they start)".to_owned()
        }
    });
    if let Some(otlp) = &config.otlp {
        report.lines.push(format!(
            "otlp: push to {} every {}",
            otlp.endpoint,
            omen_common::duration::format(otlp.interval.0)
        ));
    }
    for lag in &config.probes.kafka_lag {
        report.lines.push(format!(
            "probe kafka_lag: groups {} on {} every {}",
            lag.groups.join(", "),
            lag.brokers,
            omen_common::duration::format(lag.interval.0)
        ));
    }
    for reconcile in &config.probes.reconcile {
        report
            .lines
            .push(format!("probe reconcile: {}", reconcile.name));
    }
    report
}

/// `rules: FILE (parser; N rules: name type, …)`, with the file's errors added to `report`.
fn rules_line(path: &Path, report: &mut Report) -> String {
    let rules = match RulesConfig::load(path) {
        Ok(rules) => rules,
        Err(error) => {
            report.errors.push(error.to_string());
            return format!("rules: {} (not loaded)", path.display());
        }
    };
    if let Err(error) = Pipeline::new(&rules, path, Arc::new(SystemClock)) {
        report.errors.push(error.to_string());
    }
    if rules.rules.is_empty() {
        report.errors.push(format!(
            "{}: `rules` is empty: the agent would make no metric",
            path.display()
        ));
    }
    let parser = match rules.parser.format {
        ParserFormat::Logfmt => "logfmt",
        ParserFormat::Json => "json",
        ParserFormat::Regex => "regex",
        ParserFormat::None => "none",
    };
    let listed: Vec<String> = rules
        .rules
        .iter()
        .map(|rule| format!("{} ({})", rule.name(), kind(rule)))
        .collect();
    format!(
        "rules: {} (parser {parser}; {} rules: {})",
        path.display(),
        listed.len(),
        listed.join(", ")
    )
}

fn kind(rule: &RuleConfig) -> &'static str {
    match rule {
        RuleConfig::Counter(_) => "counter",
        RuleConfig::Gauge(_) => "gauge",
        RuleConfig::Histogram(_) => "histogram",
        RuleConfig::Pair(_) => "pair",
        RuleConfig::CdcDeletes(_) => "cdc_deletes",
        RuleConfig::Patterns(_) => "patterns",
    }
}

/// One source, with the files its globs match now; a glob matching nothing is a warning.
fn source_line(index: usize, source: &SourceConfig, warnings: &mut Vec<String>) -> String {
    let name = source.name(index);
    match source {
        SourceConfig::File {
            paths,
            start_at,
            rotated,
            ..
        } => {
            let matched: usize = paths
                .iter()
                .map(|pattern| {
                    let found = glob::glob(pattern)
                        .map(|paths| paths.filter_map(Result::ok).filter(|p| p.is_file()).count())
                        .unwrap_or(0);
                    if found == 0 {
                        warnings.push(format!(
                            "source {name}: `{pattern}` matches no file yet (the agent waits for one)"
                        ));
                    }
                    found
                })
                .sum();
            let mut line = format!(
                "source {name}: file {} ({matched} files now, start at {})",
                paths.join(", "),
                match start_at {
                    crate::source::StartAt::Beginning => "beginning",
                    crate::source::StartAt::End => "end",
                }
            );
            if !rotated.is_empty() {
                line.push_str(&format!(", rotated files also in {}", rotated.join(", ")));
            }
            line
        }
        SourceConfig::Stdin { .. } => "source stdin".to_owned(),
        SourceConfig::Kafka(kafka) => format!(
            "source {name}: kafka topics {} of {} (group {})",
            kafka.topics.join(", "),
            kafka.brokers,
            kafka.group
        ),
    }
}

/// Whether the rules files load together (each source has one, no metric is defined in
/// two), and the sources build (a Kafka consumer's properties, say) and have names of
/// their own: errors are added to `report`, each once.
fn check_sources(config: &AgentConfig, report: &mut Report) {
    let mut add = |error: String| {
        if !report.errors.contains(&error) {
            report.errors.push(error);
        }
    };
    for index in 0..config.sources.len() {
        if let Err(error) = config.source_rules(index) {
            add(error.to_string());
        }
    }
    let loaded = match load_rules(config, Arc::new(SystemClock)) {
        Ok(loaded) => loaded,
        Err(error) => return add(error.to_string()),
    };
    match build_sources(config, &loaded.pipeline, &loaded.groups) {
        Ok(sources) => {
            let mut names = std::collections::HashSet::new();
            for source in &sources {
                if !names.insert(source.name().to_owned()) {
                    report.errors.push(format!(
                        "two sources are named `{}`: give each source its own `name`",
                        source.name()
                    ));
                }
            }
        }
        Err(error) => report.errors.push(error.to_string()),
    }
}
