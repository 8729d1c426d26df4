//! omen's own log lines, on standard error: which ones (`--log-level`, else `OMEN_LOG`,
//! else `RUST_LOG`, else `info`) and how they look (`--log-format text|json`). Text is
//! coloured only on a terminal, so a log file or journald never gets escape codes.

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log shippers.
    Json,
}

/// Installs the global subscriber; a filter that is not one is an error naming it.
pub fn init(level: Option<&str>, format: LogFormat) -> Result<(), String> {
    let (directives, from) = match level {
        Some(level) => (level.to_owned(), "--log-level"),
        None => ["OMEN_LOG", "RUST_LOG"]
            .into_iter()
            .find_map(|name| Some((std::env::var(name).ok()?, name)))
            .unwrap_or_else(|| ("info".to_owned(), "the default")),
    };
    let filter = filter(&directives).map_err(|e| format!("{from}: {e}"))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
            .init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
    Ok(())
}

/// Parses `info` or `warn,omen_agent=debug`. A bare word that is not a level is refused:
/// `EnvFilter` would take it for a module name and silently log nothing else.
fn filter(directives: &str) -> Result<EnvFilter, String> {
    for directive in directives.split(',').map(str::trim) {
        if !directive.is_empty() && !directive.contains('=') {
            directive.parse::<LevelFilter>().map_err(|_| {
                format!("`{directive}` is not a level (off, error, warn, info, debug, trace) nor `module=level`")
            })?;
        }
    }
    EnvFilter::try_new(directives).map_err(|e| format!("`{directives}`: {e}"))
}

#[cfg(test)]
mod tests {
    use super::filter;

    #[test]
    fn levels_and_module_directives_parse_and_a_stray_word_does_not() {
        for good in [
            "info",
            "DEBUG",
            "warn,omen_agent=debug",
            "omen_detector_live=trace",
        ] {
            assert!(filter(good).is_ok(), "{good}");
        }
        for bad in ["verbose", "info,loud", "omen_agent=shouty"] {
            assert!(filter(bad).is_err(), "{bad}");
        }
    }
}
