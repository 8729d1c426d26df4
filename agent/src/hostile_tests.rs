//! Hostile rules, records, logs, checkpoints and configurations: valid ones with a few
//! values changed to hostile ones (`omen_common::mutate`), or a few bytes edited
//! (`omen_common::fuzz`, the `fuzz_` tests), are refused with an error or run; none
//! panics. `OMEN_FUZZ_CASES` sets how many cases run (300 by default).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use omen_common::fuzz::fuzz;
use omen_common::mutate::{for_each_seed, mutate};

use crate::checkpoint::Checkpoint;
use crate::clock::ManualClock;
use crate::config::RulesConfig;
use crate::parse::TimeFormat;
use crate::pipeline::{GroupId, Pipeline, PipelineSnapshot};
use crate::registry::Format;
use crate::runtime::AgentConfig;
use crate::source::{FileSource, FileSourceConfig, Framer, RecordSink, Source};

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo_file(path)).expect("a file of the repository")
}

/// A log of the repository, which may hold bytes that are not UTF-8 on purpose.
fn read_log(path: &str) -> Vec<u8> {
    std::fs::read(repo_file(path)).expect("a file of the repository")
}

fn pipeline_on(rules: &RulesConfig, path: &Path) -> Option<Pipeline> {
    Pipeline::new(rules, path, Arc::new(ManualClock::new(0))).ok()
}

/// Every line of `log` through `pipeline`, then its exposition in both formats.
fn exercise(pipeline: &mut Pipeline, log: &str) {
    pipeline.begin_batch();
    for line in log.lines() {
        pipeline.process(line);
    }
    pipeline.end_batch();
    let _ = crate::export::prometheus::render(&pipeline.registry, Format::Prometheus);
    let _ = crate::export::prometheus::render(&pipeline.registry, Format::OpenMetrics);
    let _ = pipeline.snapshot();
}

/// The example rules files, each with a log it reads.
const EXAMPLES: [(&str, &str); 3] = [
    (
        "examples/agent/inventory.yaml",
        "examples/agent/inventory.log",
    ),
    (
        "examples/agent/patterns.yaml",
        "examples/agent/inventory.log",
    ),
    (
        "examples/agent/cdc.yaml",
        "tests/golden/cdc_deletes/input.log",
    ),
];

#[test]
fn hostile_rules_are_refused_or_run() {
    for (rules, log) in EXAMPLES {
        let path = repo_file(rules);
        let document: serde_json::Value = serde_yaml::from_str(&read(rules)).expect("yaml");
        let log = read(log);
        for_each_seed(rules, |seed| {
            let mutated = mutate(&document, seed, 1 + (seed % 3) as usize);
            let yaml = serde_yaml::to_string(&mutated).expect("yaml");
            let Ok(config) = RulesConfig::from_yaml(&yaml, &path) else {
                return false;
            };
            let Some(mut pipeline) = pipeline_on(&config, &path) else {
                return false;
            };
            exercise(&mut pipeline, &log);
            true
        });
    }
}

#[test]
fn hostile_change_events_are_counted_never_fatal() {
    let rules = "examples/agent/cdc.yaml";
    let path = repo_file(rules);
    let config = RulesConfig::from_yaml(&read(rules), &path).expect("valid");
    let events: Vec<serde_json::Value> = read("tests/golden/cdc_deletes/input.log")
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect();
    assert!(!events.is_empty());
    let mut pipeline = pipeline_on(&config, &path).expect("valid");
    let deletes = |pipeline: &Pipeline| -> f64 {
        let text = crate::export::prometheus::render(&pipeline.registry, Format::Prometheus);
        crate::oneshot::parse_exposition(&text)
            .iter()
            .filter(|(key, _)| key.starts_with("hard_deletes_total"))
            .map(|(_, value)| value)
            .sum()
    };
    for_each_seed("a mutated change event", |seed| {
        let event = &events[(seed % events.len() as u64) as usize];
        let line = serde_json::to_string(&mutate(event, seed, 1 + (seed % 3) as usize));
        let before = deletes(&pipeline);
        exercise(&mut pipeline, &line.expect("json"));
        // Counted as a delete, or not (and then as an error or not a delete at all).
        deletes(&pipeline) > before
    });
}

#[test]
fn hostile_pipeline_checkpoints_are_refused_or_restored() {
    for (rules, log) in EXAMPLES {
        let path = repo_file(rules);
        let config = RulesConfig::from_yaml(&read(rules), &path).expect("valid");
        let log = read(log);
        let mut pipeline = pipeline_on(&config, &path).expect("valid");
        exercise(&mut pipeline, &log);
        let document = serde_json::to_value(pipeline.snapshot()).expect("json");
        for_each_seed(rules, |seed| {
            let mutated = mutate(&document, seed, 1 + (seed % 4) as usize);
            let Ok(snapshot) = serde_json::from_value::<PipelineSnapshot>(mutated) else {
                return false;
            };
            let mut restored = pipeline_on(&config, &path).expect("valid");
            restored.restore(snapshot);
            exercise(&mut restored, &log);
            true
        });
    }
}

/// Rules files with a log each: the examples and the golden cases (JSON, logfmt, regex,
/// multiline framing, change events, pairs, histograms, learnt templates).
const RULES_WITH_LOGS: [(&str, &str); 7] = [
    (
        "examples/agent/inventory.yaml",
        "examples/agent/inventory.log",
    ),
    (
        "examples/agent/patterns.yaml",
        "examples/agent/inventory.log",
    ),
    ("examples/agent/access.yaml", "examples/agent/access.log"),
    (
        "examples/agent/cdc.yaml",
        "tests/golden/cdc_deletes/input.log",
    ),
    (
        "tests/golden/json_gauge/rules.yaml",
        "tests/golden/json_gauge/input.log",
    ),
    (
        "tests/golden/regex_multiline/rules.yaml",
        "tests/golden/regex_multiline/input.log",
    ),
    (
        "tests/golden/inventory/rules.yaml",
        "tests/golden/inventory/input.log",
    ),
];

/// Rules files, byte-edited (`omen_common::fuzz`): refused, or run over every example log.
#[test]
fn fuzz_rules_files() {
    let corpus = RULES_WITH_LOGS.map(|(rules, _)| read(rules).into_bytes());
    let logs: String = RULES_WITH_LOGS
        .iter()
        .map(|(_, log)| String::from_utf8_lossy(&read_log(log)).into_owned())
        .collect();
    let path = repo_file("examples/agent/inventory.yaml");
    fuzz("a rules file", corpus.to_vec(), |bytes| {
        let Ok(config) = RulesConfig::from_yaml(&String::from_utf8_lossy(bytes), &path) else {
            return false;
        };
        let Some(mut pipeline) = pipeline_on(&config, &path) else {
            return false;
        };
        exercise(&mut pipeline, &logs);
        true
    });
}

/// Logs, byte-edited, read as a file source reads them (framed, then each record decoded
/// and processed) by one pipeline per rules file that lives across inputs; an input is
/// taken when some metric of the rules moved.
#[test]
fn fuzz_log_bytes() {
    for (rules, log) in RULES_WITH_LOGS {
        let path = repo_file(rules);
        let config = RulesConfig::from_yaml(&read(rules), &path).expect("valid");
        let mut pipeline = pipeline_on(&config, &path).expect("valid");
        let framing = pipeline.framing_of(GroupId(0)).clone();
        let stream = pipeline.stream(log);
        let mut exposition = String::new();
        fuzz(
            &format!("{log} read by {rules}"),
            vec![read_log(log)],
            |bytes| {
                let mut framer = Framer::new(framing.clone(), 0);
                let mut records = Vec::new();
                framer.feed(bytes, &mut |record, truncated| {
                    records.push((record.to_vec(), truncated))
                });
                framer.flush(true, &mut |record, truncated| {
                    records.push((record.to_vec(), truncated))
                });
                pipeline.begin_batch();
                for (record, truncated) in &records {
                    pipeline.record(stream, record, *truncated);
                }
                pipeline.end_batch();
                // The rules' own metrics, not the agent's counts of lines and errors.
                let now: String =
                    crate::export::prometheus::render(&pipeline.registry, Format::OpenMetrics)
                        .lines()
                        .filter(|line| !line.starts_with("omen_") && !line.starts_with('#'))
                        .collect();
                let moved = now != exposition;
                exposition = now;
                moved
            },
        );
        let _ = pipeline.snapshot();
    }
}

/// Checkpoint files, byte-edited: refused, or restored into the pipeline and the file
/// source that wrote them, which then read on.
#[test]
fn fuzz_checkpoint_files() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let file = dir.path().join("agent.checkpoint");
    for (rules, log) in [RULES_WITH_LOGS[0], RULES_WITH_LOGS[1], RULES_WITH_LOGS[3]] {
        let path = repo_file(rules);
        let config = RulesConfig::from_yaml(&read(rules), &path).expect("valid");
        let log_path = dir.path().join("app.log");
        let log = String::from_utf8_lossy(&read_log(log)).into_owned();
        std::fs::write(&log_path, &log).expect("a temporary file");
        let mut pipeline = pipeline_on(&config, &path).expect("valid");
        let framing = pipeline.framing_of(GroupId(0)).clone();
        let source_config = FileSourceConfig::new("app", vec![log_path.display().to_string()]);
        let mut source = FileSource::new(source_config.clone(), framing.clone());
        let poll = |source: &mut FileSource, pipeline: &mut Pipeline| {
            pipeline.begin_batch();
            source.poll(pipeline);
            pipeline.end_batch();
        };
        poll(&mut source, &mut pipeline);
        let sources = [("app".to_owned(), source.checkpoint())]
            .into_iter()
            .collect();
        let written = Checkpoint::new(1.7e9, sources, pipeline.snapshot());
        crate::checkpoint::write(&file, &written).expect("written");
        let corpus = vec![std::fs::read(&file).expect("read back")];
        fuzz(&format!("a checkpoint of {rules}"), corpus, |bytes| {
            std::fs::write(&file, bytes).expect("a temporary file");
            let Ok(Some(mut checkpoint)) = crate::checkpoint::read(&file) else {
                return false;
            };
            let mut restored = pipeline_on(&config, &path).expect("valid");
            restored.restore(checkpoint.pipeline);
            let mut source = FileSource::new(source_config.clone(), framing.clone());
            if let Some(position) = checkpoint.sources.remove("app") {
                source.restore(position);
            }
            poll(&mut source, &mut restored);
            exercise(&mut restored, &log);
            true
        });
    }
}

/// Agent configuration files, byte-edited: refused, or checked as `omen check agent` does.
#[test]
fn fuzz_agent_configuration_files() {
    let corpus = [
        "examples/agent/agent.yaml",
        "examples/agent/agent-host.yaml",
        "examples/agent/agent-kafka.yaml",
    ]
    .map(|file| read(file).into_bytes());
    let path = repo_file("examples/agent/agent.yaml");
    fuzz(
        "an agent configuration",
        corpus.to_vec(),
        |bytes| match AgentConfig::from_yaml(&String::from_utf8_lossy(bytes), &path) {
            Ok(config) => {
                let _ = crate::check::check(&config);
                true
            }
            Err(_) => false,
        },
    );
}

/// Timestamps in every format, from byte-edited ones: a time or `None`.
#[test]
fn fuzz_timestamps() {
    let formats = [
        "rfc3339",
        "unix",
        "unix_ms",
        "unix_ns",
        "%d/%b/%Y:%H:%M:%S %z",
        "%Y-%m-%d %H:%M:%S%.f",
    ]
    .map(|name| TimeFormat::from_name(name).expect("a format"));
    let corpus: [&[u8]; 5] = [
        b"2026-12-07T23:50:36.123456789+01:00",
        b"2026-12-07T23:50:36Z",
        b"1700000000.25",
        b"07/Dec/2026:23:50:36 +0000",
        b"2026-12-07 23:50:36.5",
    ];
    fuzz(
        "a timestamp",
        corpus.map(<[u8]>::to_vec).to_vec(),
        |bytes| {
            let text = String::from_utf8_lossy(bytes);
            formats.iter().any(|format| format.parse(&text).is_some())
        },
    );
}
