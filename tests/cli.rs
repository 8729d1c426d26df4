//! The command line as an operator meets it: `omen check` on every example configuration
//! and on broken ones (every error listed), examples and a description for every command
//! and flag, completions and man pages generated from the definition, log levels and JSON
//! logs, no colour into files, one exit code per kind of failure.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Output;

fn omen(args: &[&str]) -> Output {
    common::omen().args(args).output().expect("run omen")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn check(what: &str, config: &Path) -> Output {
    common::omen()
        .args(["check", what, "--config"])
        .arg(config)
        .output()
        .expect("run omen check")
}

#[test]
fn every_example_configuration_checks_and_prints_what_it_resolves_to() {
    let examples = common::repo_root().join("examples");
    let agents: Vec<PathBuf> = std::fs::read_dir(examples.join("agent"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("agent") && n.ends_with(".yaml"))
        })
        .collect();
    assert!(agents.len() >= 2, "{agents:?}");
    for config in &agents {
        let output = check("agent", config);
        let text = stdout(&output);
        assert!(
            output.status.success(),
            "{}\n{text}\n{}",
            config.display(),
            common::stderr(&output)
        );
        // Paths resolved against the file's folder, every rule listed with its type.
        let rules_dir = examples.join("agent");
        assert!(
            text.lines()
                .any(|l| l.starts_with(&format!("rules: {}", rules_dir.display()))),
            "{text}"
        );
        assert!(
            text.contains("listen: http://127.0.0.1:9750/metrics"),
            "{text}"
        );
        assert!(text.contains(": ok"), "{text}");
    }
    let detect = examples.join("detector/detect.yaml");
    let state_dir_existed = Path::new("/var/lib/omen").exists();
    let output = check("detect", &detect);
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "{text}\n{}",
        common::stderr(&output)
    );
    for part in ["listen: http://127.0.0.1:9751/", "snapshot: ", "alerts: "] {
        assert!(text.contains(part), "{part} in {text}");
    }
    // Checking creates nothing: not the folder of the example's snapshot.
    assert_eq!(Path::new("/var/lib/omen").exists(), state_dir_existed);
}

#[test]
fn a_broken_configuration_fails_the_check_with_every_error_listed() {
    let dir = tempfile::tempdir().unwrap();
    // An agent: a rules file with no rules, an OTLP endpoint that is not http, and two
    // sources of the same name; the glob that matches nothing is a warning only.
    std::fs::write(dir.path().join("rules.yaml"), "rules: []\n").unwrap();
    let agent = dir.path().join("agent.yaml");
    std::fs::write(
        &agent,
        "rules: rules.yaml
sources:
  - { type: file, name: app, paths: [nothing-here/*.log] }
  - { type: file, name: app, paths: [other/*.log] }
otlp: { endpoint: 'ftp://collector:4318/v1/metrics' }
server: { http: { max_connections: 0 } }
",
    )
    .unwrap();
    let output = check("agent", &agent);
    assert_eq!(output.status.code(), Some(1));
    let errors = common::stderr(&output);
    for wanted in [
        "`rules` is empty",
        "two sources are named `app`",
        "ftp://",
        "server.http.max_connections",
        "4 error(s)",
        "warning: source app: `",
    ] {
        assert!(errors.contains(wanted), "{wanted} in {errors}");
    }

    // A detector: three problems in three sections, all reported.
    let detect = dir.path().join("detect.yaml");
    std::fs::write(
        &detect,
        "alerting: { alertmanager: ['ftp://am:9093'], queue: 0 }
store: { ttl: 0s }
",
    )
    .unwrap();
    let output = check("detect", &detect);
    assert_eq!(output.status.code(), Some(1));
    let errors = common::stderr(&output);
    for wanted in [
        "alerting.alertmanager[0]",
        "alerting.queue",
        "store.ttl",
        "3 error(s)",
    ] {
        assert!(errors.contains(wanted), "{wanted} in {errors}");
    }
    // An unknown key is named, and a file that is not there is an error too.
    std::fs::write(&detect, "alerting: { alertmanagers: [] }\n").unwrap();
    let errors = common::stderr(&check("detect", &detect));
    assert!(errors.contains("alertmanagers"), "{errors}");
    let output = check("detect", &dir.path().join("missing.yaml"));
    assert_eq!(output.status.code(), Some(1));
    assert!(common::stderr(&output).contains("missing.yaml"));
}

#[test]
fn rules_files_of_several_sources_are_checked_together() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
    write(
        "app.yaml",
        "parser: { format: json }\nrules: [{ name: requests_total, type: counter }]\n",
    );
    write(
        "access.yaml",
        "parser: { format: logfmt }\nrules: [{ name: requests_total, type: counter }]\n",
    );
    // No agent-wide `rules`: the stdin source has none, and both files define one metric.
    write(
        "agent.yaml",
        "sources:
  - { type: file, name: app, paths: [app.log], rules: app.yaml }
  - { type: file, name: access, paths: [access.log], rules: access.yaml }
  - { type: stdin }
",
    );
    let output = check("agent", &dir.path().join("agent.yaml"));
    assert_eq!(output.status.code(), Some(1));
    let errors = common::stderr(&output);
    for wanted in [
        "source `stdin` has no rules",
        "the metric `requests_total` is defined in",
        "2 error(s)",
    ] {
        assert!(errors.contains(wanted), "{wanted} in {errors}");
    }
    assert!(
        errors.contains("app.yaml") && errors.contains("access.yaml"),
        "{errors}"
    );

    // Renamed apart, with the stdin source given its own: each file listed, each source
    // with the rules it reads by.
    write(
        "access.yaml",
        "parser: { format: logfmt }\nrules: [{ name: access_total, type: counter }]\n",
    );
    write(
        "agent.yaml",
        "sources:
  - { type: file, name: app, paths: [app.log], rules: app.yaml }
  - { type: file, name: access, paths: [access.log], rules: access.yaml }
  - { type: stdin, rules: access.yaml }
",
    );
    let output = check("agent", &dir.path().join("agent.yaml"));
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", common::stderr(&output));
    for wanted in [
        "(parser json; 1 rules: requests_total (counter))",
        "(parser logfmt; 1 rules: access_total (counter))",
        "access.log (0 files now, start at beginning) with rules ",
    ] {
        assert!(text.contains(wanted), "{wanted} in {text}");
    }
    assert_eq!(
        text.lines().filter(|l| l.starts_with("rules: ")).count(),
        2,
        "{text}"
    );
}

#[test]
fn every_command_has_examples_and_every_flag_a_description() {
    let mut pending = vec![Vec::<String>::new()];
    let mut seen = 0;
    while let Some(path) = pending.pop() {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let output = omen(&args);
        assert!(output.status.success(), "{args:?}");
        let help = stdout(&output);
        seen += 1;
        assert!(
            help.contains("Example"),
            "no example in `omen {}`:\n{help}",
            path.join(" ")
        );
        // Every option line is followed by a description on the same or the next line.
        let lines: Vec<&str> = help.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let option = line.trim_start();
            let short = option
                .as_bytes()
                .get(1)
                .is_some_and(u8::is_ascii_alphanumeric);
            if option.starts_with("--") || (option.starts_with('-') && short) {
                let described = option.split("  ").filter(|p| !p.trim().is_empty()).count() > 1
                    || lines
                        .get(i + 1)
                        .is_some_and(|next| next.starts_with("          "));
                assert!(
                    described,
                    "`omen {}`: `{option}` has no description",
                    path.join(" ")
                );
            }
        }
        // Subcommands listed under "Commands:" are visited too.
        let mut in_commands = false;
        for line in &lines {
            if line.starts_with("Commands:") {
                in_commands = true;
                continue;
            }
            if in_commands {
                match line
                    .strip_prefix("  ")
                    .and_then(|l| l.split_whitespace().next())
                {
                    Some("help") => {}
                    Some(name) if !line.starts_with("   ") => {
                        let mut next = path.clone();
                        next.push(name.to_owned());
                        pending.push(next);
                    }
                    _ if line.is_empty() => in_commands = false,
                    _ => {}
                }
            }
        }
    }
    assert!(seen >= 12, "visited {seen} commands");
    let help = stdout(&omen(&["--help"]));
    assert!(help.contains("Exit codes:"), "{help}");
    let agent = stdout(&omen(&["agent", "--help"]));
    assert!(
        agent.contains("127.0.0.1:9750"),
        "the agent's --listen default: {agent}"
    );
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_definition() {
    for shell in ["bash", "zsh", "fish"] {
        let output = omen(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        let script = stdout(&output);
        // fish names a long option without its dashes (`-l log-format`).
        for word in ["omen", "agent", "detect", "backtest", "log-format"] {
            assert!(script.contains(word), "{shell}: {word}");
        }
    }
    if common::component_available("bash", "bash") {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("omen.bash");
        std::fs::write(&script, stdout(&omen(&["completions", "bash"]))).unwrap();
        let syntax = std::process::Command::new("bash")
            .arg("-n")
            .arg(&script)
            .output()
            .unwrap();
        assert!(syntax.status.success(), "{}", common::stderr(&syntax));
    }

    let dir = tempfile::tempdir().unwrap();
    let output = common::omen()
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", common::stderr(&output));
    for page in [
        "omen.1",
        "omen-agent.1",
        "omen-agent-test.1",
        "omen-detect.1",
        "omen-check.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(
            text.starts_with(".ie") || text.contains(".TH"),
            "{page}: {text}"
        );
    }
    let agent = std::fs::read_to_string(dir.path().join("omen-agent.1")).unwrap();
    assert!(agent.contains("checkpoint"), "{agent}");
}

/// `omen detect` on a port already taken, with `flags` and `env`: it logs the configuration
/// it resolved, then fails. Its exit and standard error.
fn detect_log(flags: &[&str], env: &[(&str, &str)]) -> (Output, String) {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut command = common::omen();
    command
        .args(flags)
        .args([
            "detect",
            "--listen",
            &taken.local_addr().unwrap().to_string(),
        ])
        .env_remove("OMEN_LOG")
        .env_remove("RUST_LOG");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    let stderr = common::stderr(&output);
    (output, stderr)
}

#[test]
fn log_level_and_format_are_chosen_on_the_command_line_or_by_rust_log() {
    // Not a terminal: no colour escapes; the resolved configuration is logged at start.
    let (_, text) = detect_log(&[], &[]);
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("remote_write: receives on"), "{text}");
    // JSON: every log line one object with a level (the final error is not a log line).
    let (_, json) = detect_log(&["--log-format", "json", "--log-level", "debug"], &[]);
    let lines: Vec<&str> = json.lines().filter(|l| l.starts_with('{')).collect();
    assert!(lines.len() >= 3, "{json}");
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string(), "{line}");
    }
    assert_eq!(
        json.lines().filter(|l| !l.starts_with('{')).count(),
        1,
        "only the error is plain: {json}"
    );
    // RUST_LOG is honoured when neither --log-level nor OMEN_LOG is given.
    let (_, quiet) = detect_log(&[], &[("RUST_LOG", "error")]);
    assert!(!quiet.contains("remote_write: receives on"), "{quiet}");
    // A level that is not one is refused, with exit 2.
    let (output, error) = detect_log(&["--log-level", "verbose"], &[]);
    assert_eq!(output.status.code(), Some(2), "{error}");
    assert!(error.contains("verbose"), "{error}");
}

#[test]
fn a_busy_port_is_exit_2_from_agent_and_detector_alike() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let rules = common::repo_root().join("examples/agent/inventory.yaml");
    let agent = common::omen()
        .args(["agent", "--stdin", "--listen", &addr, "--rules"])
        .arg(&rules)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert_eq!(agent.status.code(), Some(2), "{}", common::stderr(&agent));
    let detect = omen(&["detect", "--listen", &addr]);
    assert_eq!(detect.status.code(), Some(2), "{}", common::stderr(&detect));
    for output in [&agent, &detect] {
        assert!(
            common::stderr(output).contains(&addr),
            "{}",
            common::stderr(output)
        );
    }
}

#[test]
fn an_empty_glob_is_a_warning_at_start_and_a_metric_until_a_file_comes() {
    let dir = tempfile::tempdir().unwrap();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], common::free_port()).into();
    let config = dir.path().join("agent.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: {}
sources:
  - {{ type: file, name: app, paths: ['{}/*.log'] }}
server: {{ listen: {addr} }}
",
            common::repo_root()
                .join("examples/agent/inventory.yaml")
                .display(),
            dir.path().display()
        ),
    )
    .unwrap();
    let log = dir.path().join("agent.out");
    let agent = common::LiveAgent::start_config(&config, addr, &log);
    let said = std::fs::read_to_string(&log).unwrap();
    assert!(
        said.contains("WARN") && said.contains("matches no file yet"),
        "{said}"
    );
    assert!(
        said.contains("source app: file "),
        "the resolved configuration: {said}"
    );
    agent.wait_value("omen_agent_source_files{source=\"app\"}", 0.0);
    std::fs::write(
        dir.path().join("app.log"),
        "2025-07-14T09:00:00.003Z level=warn msg=\"hard-delete\" table=orders id=1\n",
    )
    .unwrap();
    agent.wait_value("omen_agent_source_files{source=\"app\"}", 1.0);
}

#[test]
fn a_strict_agent_refuses_a_glob_that_matches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let rules = common::repo_root().join("examples/agent/inventory.yaml");
    let glob = format!("{}/*.log", dir.path().display());
    let output = common::omen()
        .args(["agent", "--strict", "--rules"])
        .arg(&rules)
        .args(["--tail", &glob, "--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", common::stderr(&output));
    let said = common::stderr(&output);
    assert!(
        said.contains("matches no file yet") && said.contains("--strict"),
        "{said}"
    );
}

#[test]
fn a_rotated_glob_is_checked_and_shown() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rules.yaml"),
        "rules: [{ name: lines_total, type: counter }]\n",
    )
    .unwrap();
    let config = dir.path().join("agent.yaml");
    let write = |rotated: &str| {
        let text = format!(
            "rules: rules.yaml\nsources:\n  - {{ type: file, paths: [app.log], rotated: ['{rotated}'] }}\n"
        );
        std::fs::write(&config, text).unwrap();
    };
    write("old/app.log.*");
    let output = check("agent", &config);
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", common::stderr(&output));
    let olddir = dir.path().join("old/app.log.*");
    assert!(
        text.contains(&format!("rotated files also in {}", olddir.display())),
        "{text}"
    );
    write("old/app.log.[");
    let output = check("agent", &config);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        common::stderr(&output).contains("is not a glob"),
        "{}",
        common::stderr(&output)
    );
}
