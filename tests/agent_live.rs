//! The live agent, as a user runs it: tailing files that grow, rotate and get truncated,
//! killed with SIGKILL at arbitrary moments, reloaded while running. Every test starts its
//! own `omen agent` on a free 127.0.0.1 port and is bounded in time.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{http_get, LiveAgent};

const LIMIT: Duration = common::LIMIT;

fn delete_line(table: &str, id: usize) -> String {
    format!("2025-07-14T09:00:00.003Z level=warn msg=\"hard-delete\" table={table} id={id} actor=admin\n")
}

fn append(path: &Path, text: &str) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open");
    file.write_all(text.as_bytes()).expect("append");
}

fn inventory_rules() -> PathBuf {
    common::repo_root().join("examples/agent/inventory.yaml")
}

#[test]
fn tails_globs_partial_lines_rotation_and_copytruncate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = dir.path().join("app.log");
    append(
        &app,
        &(0..3).map(|i| delete_line("orders", i)).collect::<String>(),
    );
    append(
        &app,
        "2025-07-14T09:00:01.000Z level=warn msg=\"hard-delete\" table=orders",
    );
    let glob = format!("{}/*.log", dir.path().display());
    let agent = LiveAgent::start(&inventory_rules(), &glob, None, common::free_port());
    let orders = "hard_deletes_total{table=\"orders\"}";
    agent.wait_value(orders, 3.0);

    // The partial line is held until its newline arrives.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(agent.samples().get(orders), Some(&3.0));
    append(&app, " id=3 actor=admin\n");
    agent.wait_value(orders, 4.0);

    // Rotation by rename + create: lines written to the old file after the rename are
    // still read, then the new file from its start.
    append(
        &app,
        &(4..6).map(|i| delete_line("orders", i)).collect::<String>(),
    );
    let rotated = dir.path().join("app.log.1");
    fs::rename(&app, &rotated).expect("rename");
    append(&rotated, &delete_line("orders", 6));
    append(
        &app,
        &(7..9).map(|i| delete_line("orders", i)).collect::<String>(),
    );
    agent.wait_value(orders, 9.0);

    // A file that appears later is picked up from its beginning.
    let other = dir.path().join("other.log");
    append(
        &other,
        &(0..2).map(|i| delete_line("users", i)).collect::<String>(),
    );
    let users = "hard_deletes_total{table=\"users\"}";
    agent.wait_value(users, 2.0);

    // Rotation by copytruncate: the copy is not tailed; the truncated file is read again
    // from its start.
    fs::copy(&other, dir.path().join("other.log.1")).expect("copy");
    fs::write(&other, "").expect("truncate");
    append(&other, &delete_line("users", 2));
    agent.wait_value(users, 3.0);
    assert_eq!(agent.samples().get(orders), Some(&9.0));
    let events = agent.samples();
    let rotated_events: f64 = events
        .iter()
        .filter(|(k, _)| k.starts_with("omen_agent_source_events_total") && k.contains("rotated"))
        .map(|(_, v)| v)
        .sum();
    let truncations: f64 = events
        .iter()
        .filter(|(k, _)| k.starts_with("omen_agent_source_events_total") && k.contains("truncated"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!((rotated_events, truncations), (1.0, 1.0));
}

/// A deterministic log of the inventory format: hard deletes, HTTP lines, and stock
/// decrement/publish pairs (some late, some lost).
fn inventory_log(lines: usize) -> Vec<String> {
    inventory_log_on(lines, "2025-07-14", "o")
}

/// The same, on another day and with other order ids, for a second file.
fn inventory_log_on(lines: usize, day: &str, order_prefix: &str) -> Vec<String> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut out = Vec::with_capacity(lines);
    let mut open: Vec<(usize, u64)> = Vec::new();
    for i in 0..lines {
        let ms = i as u64 * 50;
        let time = format!(
            "{day}T{:02}:{:02}:{:02}.{:03}Z",
            ms / 3_600_000,
            (ms / 60_000) % 60,
            (ms / 1000) % 60,
            ms % 1000
        );
        let line = match next() % 10 {
            0 => format!(
                "{time} level=warn msg=\"hard-delete\" table=t{} id={i}",
                next() % 3
            ),
            1 | 2 => {
                open.push((i, ms));
                format!("{time} level=info msg=\"stock decremented\" order_id={order_prefix}{i} sku=s1 qty=1")
            }
            3 | 4 if !open.is_empty() => {
                let (order, _) = open.remove((next() % open.len() as u64) as usize);
                format!("{time} level=info msg=\"event published\" order_id={order_prefix}{order} topic=orders")
            }
            _ => format!(
                "{time} level=info method=GET path=/x status={} latency_ms={}",
                [200, 500][(next() % 2) as usize],
                next() % 3000
            ),
        };
        out.push(line);
    }
    out
}

/// Runs `omen agent --oneshot` over a glob with the given threads.
fn agent_oneshot_glob(rules: &Path, glob: &str, threads: usize) -> String {
    let output = common::omen()
        .args(["agent", "--oneshot", "--rules"])
        .arg(rules)
        .args(["--tail", glob, "--threads", &threads.to_string()])
        .output()
        .expect("run omen");
    assert!(output.status.success(), "{}", common::stderr(&output));
    String::from_utf8(output.stdout).expect("utf-8")
}

/// Two logs for two files: the first with every kind of event, the second, a day older,
/// with no pair events. Pair results then do not depend on how the files interleave (the
/// pair clock is the newest event time of all files, and the older file never moves it).
fn two_logs(lines: usize) -> [Vec<String>; 2] {
    let second = inventory_log_on(lines, "2025-07-13", "p")
        .into_iter()
        .filter(|l| !l.contains("stock") && !l.contains("published"))
        .collect();
    [inventory_log(lines), second]
}

#[test]
fn one_or_several_reader_threads_give_the_same_metrics() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (index, lines) in two_logs(30_000)
        .iter()
        .chain(two_logs(7_000).iter())
        .enumerate()
    {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        fs::write(dir.path().join(format!("f{index}.log")), text).expect("write");
    }
    let glob = format!("{}/*.log", dir.path().display());
    let one = agent_oneshot_glob(&inventory_rules(), &glob, 1);
    let several = agent_oneshot_glob(&inventory_rules(), &glob, 3);
    assert!(one.contains("stock_event_matched_total"));
    assert_eq!(one, several);
}

#[test]
fn kill_9_at_any_moment_loses_nothing_and_counts_nothing_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let checkpoint = dir.path().join("agent.checkpoint");
    let logs = two_logs(20_000);
    let paths: Vec<PathBuf> = (0..2)
        .map(|i| dir.path().join(format!("part{i}.log")))
        .collect();
    for path in &paths {
        fs::write(path, "").expect("create log");
    }

    // Files found at startup are read from their end: without the checkpoint's positions
    // every restart would skip what was written while the agent was down. Two files, so
    // the parallel readers are in play.
    let glob = format!("{}/*.log", dir.path().display());
    let rules = inventory_rules();
    let start = |port| {
        LiveAgent::start_with(
            &rules,
            &glob,
            Some(&checkpoint),
            port,
            &["--start-at", "end", "--threads", "2"],
        )
    };
    let (agent, kills) = write_while_killing(&paths, &logs, start);
    assert!(kills >= 4, "only {kills} kills happened");
    for (path, lines) in paths.iter().zip(&logs) {
        let key = format!("omen_agent_lines_total{{stream=\"{}\"}}", path.display());
        agent.wait_value(&key, lines.len() as f64);
    }

    let uninterrupted = common::rule_samples(&agent_oneshot_glob(&rules, &glob, 1));
    let live = common::rule_samples(&http_get(agent.addr, "/metrics").expect("scrape").1);
    assert!(uninterrupted["stock_event_matched_total"] > 100.0);
    // Counts must be exact. Sums of floats may differ in the last bits: the two files
    // interleave differently in the live run and the clean run, and float addition is
    // not associative (within one file the order, and so every bit, is the same).
    assert_eq!(
        live.keys().collect::<Vec<_>>(),
        uninterrupted.keys().collect::<Vec<_>>()
    );
    for (key, clean) in &uninterrupted {
        let got = live[key];
        let same = if key.contains("_sum") {
            (got - clean).abs() <= 1e-12 * clean.abs().max(1.0)
        } else {
            got == *clean
        };
        assert!(
            same,
            "{key}: {got} after {kills} kills, {clean} in one clean run"
        );
    }
}

/// A rotation torture test: one log written in uneven chunks, rotated now by rename and
/// now by copytruncate (numbered names, as logrotate keeps them), while the agent is
/// killed with SIGKILL at arbitrary moments; every metric must equal one clean run over
/// the lines written.
/// `glob` after the log's path: `""` tails it alone, `"*"` its rotated names as well.
fn rotations_and_kill_9(seed: u64, glob: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let checkpoint = dir.path().join("agent.checkpoint");
    let app = dir.path().join("app.log");
    fs::write(&app, "").expect("create log");
    let lines = inventory_log(12_000);
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let rules = inventory_rules();
    let tail = app.to_string_lossy().into_owned();
    let pattern = format!("{tail}{glob}");
    let start = |port| LiveAgent::start_with(&rules, &pattern, Some(&checkpoint), port, &[]);
    let port = common::free_port();
    let mut agent = start(port);

    let writer_app = app.clone();
    let writer_text = text.clone();
    let writer = std::thread::spawn(move || {
        let mut random = Lcg(seed);
        let bytes = writer_text.as_bytes();
        let mut at = 0;
        let mut rotations = (0, 0);
        while at < bytes.len() {
            let mut end = (at + 1 + random.below(20_000) as usize).min(bytes.len());
            if random.below(2) == 0 {
                // Half the chunks end at a line's end.
                let to_newline = bytes[end - 1..].iter().position(|&b| b == b'\n');
                end = to_newline.map_or(bytes.len(), |i| end + i);
            }
            append_bytes(&writer_app, &bytes[at..end]);
            at = end;
            // A file is rotated between lines, never inside one: no tailer joins a line
            // split across two files.
            let between_lines = bytes[at - 1] == b'\n';
            match random.below(10) {
                _ if !between_lines => {}
                0 | 1 => {
                    shift_rotated(&writer_app);
                    fs::rename(&writer_app, numbered(&writer_app, 1)).expect("rotate");
                    rotations.0 += 1;
                }
                2 => {
                    // logrotate's copytruncate loses what is written between the copy and
                    // the truncation: the writer pauses around it.
                    std::thread::sleep(Duration::from_millis(30));
                    shift_rotated(&writer_app);
                    fs::copy(&writer_app, numbered(&writer_app, 1)).expect("copy");
                    OpenOptions::new()
                        .write(true)
                        .open(&writer_app)
                        .and_then(|f| f.set_len(0))
                        .expect("truncate");
                    std::thread::sleep(Duration::from_millis(30));
                    rotations.1 += 1;
                }
                _ => {}
            }
            std::thread::sleep(Duration::from_millis(random.below(40)));
        }
        rotations
    });
    let mut kills = 0;
    let started = Instant::now();
    let mut random = Lcg(seed ^ 0x5eed);
    while !writer.is_finished() && started.elapsed() < LIMIT {
        std::thread::sleep(Duration::from_millis(100 + random.below(400)));
        agent.process.kill();
        kills += 1;
        agent = start(port);
    }
    let (renamed, copied) = writer.join().expect("writer");
    agent.process.kill();
    let agent = start(port);
    let what = format!(
        "seed {seed}, glob {pattern}: {kills} kills, {renamed} renames, {copied} copytruncates"
    );
    assert!(kills >= 3 && renamed >= 3 && copied >= 2, "{what}");
    let key = format!("omen_agent_lines_total{{stream=\"{tail}\"}}");
    agent.wait_value(&key, lines.len() as f64);

    let clean_dir = tempfile::tempdir().expect("tempdir");
    let clean = clean_dir.path().join("app.log");
    fs::write(&clean, &text).expect("write");
    let uninterrupted =
        common::rule_samples(&agent_oneshot_glob(&rules, &clean.to_string_lossy(), 1));
    let live = common::rule_samples(&http_get(agent.addr, "/metrics").expect("scrape").1);
    assert!(uninterrupted["stock_event_matched_total"] > 100.0);
    assert_eq!(live, uninterrupted, "{what}");
    let lost = agent
        .samples()
        .into_keys()
        .filter(|k| k.contains("event=\"lost\""))
        .count();
    assert_eq!(lost, 0, "{what}: a truncation whose copy was not found");
}

#[test]
fn rotations_and_kill_9_lose_nothing_seed_1() {
    rotations_and_kill_9(1, "");
}

#[test]
fn rotations_and_kill_9_lose_nothing_seed_2() {
    rotations_and_kill_9(2, "");
}

#[test]
fn rotations_and_kill_9_lose_nothing_seed_3() {
    rotations_and_kill_9(3, "");
}

/// The glob matches the rotated files too (`app.log*`): they are read as rotations of
/// the log, in order and once, never as logs of their own.
#[test]
fn rotations_and_kill_9_lose_nothing_with_a_glob_matching_rotated_names() {
    rotations_and_kill_9(4, "*");
}

/// A small deterministic generator, so each seed replays the same writes.
struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

fn append_bytes(path: &Path, bytes: &[u8]) {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .and_then(|mut f| f.write_all(bytes))
        .expect("append");
}

fn numbered(app: &Path, n: usize) -> PathBuf {
    PathBuf::from(format!("{}.{n}", app.display()))
}

/// app.log.N → app.log.N+1, highest first, making room for a new app.log.1.
fn shift_rotated(app: &Path) {
    let mut highest = 0;
    while numbered(app, highest + 1).exists() {
        highest += 1;
    }
    for n in (1..=highest).rev() {
        fs::rename(numbered(app, n), numbered(app, n + 1)).expect("shift");
    }
}

/// Starts an agent with `start`, then appends `logs` to `paths` in uneven chunks that
/// often end mid-line (for ~3.5 s) while killing the agent with SIGKILL at arbitrary
/// moments and starting it again; one more kill after the last write. Returns the last
/// agent and the number of kills.
fn write_while_killing(
    paths: &[PathBuf],
    logs: &[Vec<String>],
    start: impl Fn(u16) -> LiveAgent,
) -> (LiveAgent, usize) {
    let port = common::free_port();
    let mut agent = start(port);
    // Only once the first agent is ready (and has saved its positions) does writing start.
    let writer_paths = paths.to_vec();
    let texts: Vec<String> = logs
        .iter()
        .map(|lines| lines.iter().map(|l| format!("{l}\n")).collect())
        .collect();
    let writer = std::thread::spawn(move || {
        let mut positions = vec![0usize; texts.len()];
        let mut step = 1usize;
        while positions.iter().zip(&texts).any(|(p, t)| *p < t.len()) {
            for (file, text) in texts.iter().enumerate() {
                step = (step * 7919 + 13) % 30_000 + 1;
                let bytes = text.as_bytes();
                let end = (positions[file] + step).min(bytes.len());
                let mut out = OpenOptions::new()
                    .append(true)
                    .open(&writer_paths[file])
                    .expect("open");
                out.write_all(&bytes[positions[file]..end]).expect("write");
                positions[file] = end;
            }
            std::thread::sleep(Duration::from_millis(40));
        }
    });
    let mut kills = 0;
    let started = Instant::now();
    let mut pause = 150u64;
    while !writer.is_finished() && started.elapsed() < LIMIT {
        pause = (pause * 31 + 17) % 500 + 100;
        std::thread::sleep(Duration::from_millis(pause));
        agent.process.kill();
        kills += 1;
        agent = start(port);
    }
    writer.join().expect("writer");
    agent.process.kill();
    kills += 1;
    (start(port), kills)
}

#[test]
fn log_templates_are_exact_across_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let checkpoint = dir.path().join("agent.checkpoint");
    let path = dir.path().join("app.log");
    fs::write(&path, "").expect("create log");
    let rules = common::repo_root().join("examples/agent/patterns.yaml");
    let glob = format!("{}/*.log", dir.path().display());
    let start = |port| {
        LiveAgent::start_with(
            &rules,
            &glob,
            Some(&checkpoint),
            port,
            &["--start-at", "end"],
        )
    };
    let logs = [inventory_log(20_000)];
    let (agent, kills) = write_while_killing(std::slice::from_ref(&path), &logs, start);
    assert!(kills >= 4, "only {kills} kills happened");
    let key = format!("omen_agent_lines_total{{stream=\"{}\"}}", path.display());
    agent.wait_value(&key, logs[0].len() as f64);
    let clean = common::rule_samples(&agent_oneshot_glob(&rules, &glob, 1));
    let live = common::rule_samples(&http_get(agent.addr, "/metrics").expect("scrape").1);
    let templates: f64 = clean
        .iter()
        .filter(|(k, _)| k.starts_with("log_pattern_lines_total"))
        .map(|(_, v)| *v)
        .sum();
    assert_eq!(templates, logs[0].len() as f64, "{clean:?}");
    // The same templates (ids are in the keys), the same counts, after every kill.
    assert_eq!(live, clean, "after {kills} kills");
    let patterns = http_get(agent.addr, "/api/v1/patterns")
        .expect("patterns")
        .1;
    assert!(patterns.contains("\"pattern\""), "{patterns}");
}

#[test]
fn reload_keeps_unchanged_metrics_and_rejects_a_bad_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yaml");
    let base = "parser: { format: logfmt }\nrules:\n  - name: hard_deletes_total\n    type: counter\n    match: { msg: hard-delete }\n    labels: { table: table }\n";
    fs::write(&rules, base).expect("rules");
    let log = dir.path().join("app.log");
    append(
        &log,
        &(0..5).map(|i| delete_line("orders", i)).collect::<String>(),
    );
    let agent = LiveAgent::start(
        &rules,
        &log.display().to_string(),
        None,
        common::free_port(),
    );
    let orders = "hard_deletes_total{table=\"orders\"}";
    agent.wait_value(orders, 5.0);

    // A changed file is picked up: the new rule appears, the unchanged metric keeps its value.
    let extended = format!("{base}  - name: deletes_by_actor_total\n    type: counter\n    match: {{ msg: hard-delete }}\n    labels: {{ actor: actor }}\n");
    fs::write(&rules, &extended).expect("rules");
    agent.wait_value("omen_agent_reloads_total{result=\"success\"}", 1.0);
    append(&log, &delete_line("orders", 5));
    agent.wait_value("deletes_by_actor_total{actor=\"admin\"}", 1.0);
    agent.wait_value(orders, 6.0);

    // An invalid file is rejected; the running rules keep counting.
    fs::write(
        &rules,
        format!("{extended}  - name: broken\n    type: histogram\n    value: x\n    buckets: []\n"),
    )
    .expect("rules");
    agent.wait_value("omen_agent_reloads_total{result=\"failure\"}", 1.0);
    append(&log, &delete_line("orders", 6));
    agent.wait_value(orders, 7.0);
    agent.wait_value("deletes_by_actor_total{actor=\"admin\"}", 2.0);
    // So is a file that is not a rules file at all, and it is counted the same way.
    fs::write(&rules, "rules: [\n").expect("rules");
    agent.wait_value("omen_agent_reloads_total{result=\"failure\"}", 2.0);

    // SIGHUP reloads on demand.
    fs::write(&rules, base).expect("rules");
    agent.wait_value("omen_agent_reloads_total{result=\"success\"}", 2.0);
    agent.process.signal(1);
    agent.wait_value("omen_agent_reloads_total{result=\"success\"}", 3.0);
    let samples = agent.samples();
    assert_eq!(samples.get(orders), Some(&7.0));
    assert!(!samples
        .keys()
        .any(|k| k.starts_with("deletes_by_actor_total")));
}

#[test]
fn sigterm_writes_a_final_checkpoint_and_a_restart_resumes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let checkpoint = dir.path().join("cp.json");
    append(
        &log,
        &(0..4).map(|i| delete_line("orders", i)).collect::<String>(),
    );
    let port = common::free_port();
    let glob = log.display().to_string();
    let mut agent = LiveAgent::start(&inventory_rules(), &glob, Some(&checkpoint), port);
    agent.wait_value("hard_deletes_total{table=\"orders\"}", 4.0);
    let created = |agent: &LiveAgent| {
        let accept = "application/openmetrics-text;version=1.0.0";
        let (_, body) = common::http_get_accepting(agent.addr, "/metrics", accept).expect("scrape");
        omen_agent::oneshot::parse_exposition(&body)
            .get("hard_deletes_created{table=\"orders\"}")
            .copied()
            .expect("a _created sample")
    };
    let created_before = created(&agent);
    agent.process.signal(15);
    let status = agent
        .process
        .wait_exit(LIMIT)
        .expect("agent exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    let saved = omen_agent::checkpoint::read(&checkpoint)
        .expect("read")
        .expect("checkpoint exists");
    assert_eq!(saved.sources.len(), 1);
    append(&log, &delete_line("orders", 4));
    let agent = LiveAgent::start(&inventory_rules(), &glob, Some(&checkpoint), port);
    agent.wait_value("hard_deletes_total{table=\"orders\"}", 5.0);
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        agent.samples().get("hard_deletes_total{table=\"orders\"}"),
        Some(&5.0)
    );
    // The counter's start time survives the restart.
    assert_eq!(created(&agent), created_before);
}

#[test]
fn one_agent_reads_each_log_by_its_own_rules_across_reload_and_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (app_log, access_log) = (dir.path().join("app.log"), dir.path().join("access.log"));
    let app_rules = dir.path().join("app.yaml");
    let app = "parser: { format: json }\nrules:\n  - { name: app_errors_total, type: counter, match: { level: error }, labels: { service: service } }\n";
    fs::write(&app_rules, app).expect("rules");
    let access_rules = common::repo_root().join("examples/agent/access.yaml");
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], common::free_port()).into();
    let config = dir.path().join("agent.yaml");
    fs::write(
        &config,
        format!(
            "sources:
  - {{ type: file, name: app, paths: [app.log], rules: app.yaml }}
  - {{ type: file, name: access, paths: [access.log], rules: {} }}
server: {{ listen: '{addr}' }}
checkpoint: {{ path: cp.json, interval: 100ms }}
",
            access_rules.display()
        ),
    )
    .expect("config");
    let app_line = |i: usize| {
        let level = if i % 3 == 0 { "error" } else { "info" };
        format!("{{\"level\": \"{level}\", \"service\": \"stock\", \"n\": {i}}}\n")
    };
    let access_line = |i: usize| {
        let status = if i % 4 == 0 { 503 } else { 200 };
        format!("192.0.2.1 - - [14/Jul/2025:09:00:{:02} +0000] \"GET /api/stock HTTP/1.1\" {status} 10 \"-\" \"probe\"\n", i % 60)
    };
    let write_both = |range: std::ops::Range<usize>| {
        append(&app_log, &range.clone().map(app_line).collect::<String>());
        append(&access_log, &range.map(access_line).collect::<String>());
    };
    let log = dir.path().join("agent.out");
    write_both(0..30);
    let mut agent = LiveAgent::start_config(&config, addr, &log);
    let errors = "app_errors_total{service=\"stock\"}";
    let served = "access_requests_total{method=\"GET\",status=\"200\"}";
    agent.wait_value(errors, 10.0);
    agent.wait_value(served, 22.0);
    agent.wait_value("access_server_errors_total{path=\"/api/stock\"}", 8.0);
    agent.wait_value("access_response_bytes_total", 300.0);
    // Each parser saw only its own log: nothing failed to parse.
    assert!(
        !agent
            .samples()
            .keys()
            .any(|k| k.starts_with("omen_agent_errors_total") && k.contains("stage=\"parse\"")),
        "{:?}",
        agent.samples()
    );

    // One file reloaded: its new rule counts, the other file's series go on untouched.
    fs::write(
        &app_rules,
        format!("{app}  - {{ name: app_lines_total, type: counter }}\n"),
    )
    .expect("rules");
    agent.wait_value("omen_agent_reloads_total{result=\"success\"}", 1.0);
    write_both(30..40);
    agent.wait_value("app_lines_total", 10.0);
    agent.wait_value(errors, 14.0);
    agent.wait_value(served, 30.0);

    // kill -9 while both grow, then a restart: every line of both counted once.
    write_both(40..70);
    agent.process.kill();
    write_both(70..100);
    let agent = LiveAgent::start_config(&config, addr, &log);
    agent.wait_value(errors, 34.0);
    agent.wait_value(served, 75.0);
    agent.wait_value("app_lines_total", 70.0);
    std::thread::sleep(Duration::from_millis(500));
    let samples = agent.samples();
    assert_eq!(samples.get(errors), Some(&34.0));
    assert_eq!(samples.get(served), Some(&75.0));
    assert_eq!(samples.get("access_response_bytes_total"), Some(&1000.0));
}
