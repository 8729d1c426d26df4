//! `omen demo`: agent and detector in one process on a simulated inventory service.
//! Days of history are learnt at full speed, then one live day (paced, so the two
//! `/metrics` endpoints can be watched) with injected incidents. Every minute of simulated
//! time the agent's exposition is scraped into the detector through the same parser, store,
//! models and correlation as `omen detect`. The summary says, per injected incident,
//! whether an incident opened for it and how soon; `--check` fails on a miss or on an
//! incident nothing explains.

pub mod kafka;
mod sim;
mod spans;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use omen_agent::clock::ManualClock;
use omen_agent::config::RulesConfig;
use omen_agent::pipeline::Pipeline;
use omen_agent::state::AgentState;
use omen_detector::series::parse_timestamp;
use omen_detector::wire::exposition;
use omen_detector_live::config::{DetectConfig, TracesConfig};
use omen_detector_live::engine::correlate::{Change, Incident};
use omen_detector_live::engine::{Engine, Mode, Notification, Origin};
use omen_detector_live::ingest::scrape::target_labels;
use omen_detector_live::state::LiveState;
use omen_detector_live::traces::{task, Traces};

use self::sim::{Generator, Injected, Scenario, Trouble, DAY_MS, MINUTE_MS};
use self::spans::SpanGenerator;

/// The demo's rules: the example inventory rules, built in so the demo needs no files.
const RULES: &str = include_str!("../../examples/agent/inventory.yaml");
const RULES_PATH: &str = "examples/agent/inventory.yaml";
/// The simulation starts on a Monday at midnight (UTC).
const START: &str = "2026-11-16 00:00:00";
/// An incident counts for an injected one when it opens within this much of its window.
const MATCH_BEFORE_MS: i64 = 5 * MINUTE_MS;
const MATCH_AFTER_MS: i64 = 15 * MINUTE_MS;
/// How long before an injected incident an early warning still foretells it: the
/// forecast looks 48 points (minutes, here) ahead.
const WARNING_LEAD_MS: i64 = 60 * MINUTE_MS;

/// What `omen demo` was asked for.
pub struct DemoOptions {
    pub check: bool,
    /// Wall time per simulated minute of the live day (zero: as fast as possible).
    pub pace: Duration,
    pub history_days: i64,
    pub seed: u64,
    pub agent_listen: SocketAddr,
    pub detector_listen: SocketAddr,
}

/// `day N HH:MM` of simulated time.
fn sim_time(scenario: &Scenario, ms: i64) -> String {
    let since = ms - scenario.start_ms;
    let minute_of_day = since.rem_euclid(DAY_MS) / MINUTE_MS;
    format!(
        "day {} {:02}:{:02}",
        since.div_euclid(DAY_MS) + 1,
        minute_of_day / 60,
        minute_of_day % 60
    )
}

fn describe(scenario: &Scenario, notification: &Notification) -> String {
    match notification {
        Notification::Incident(event) => {
            let incident = &event.incident;
            let root = &incident.root_cause().series;
            match event.change {
                Change::Opened => format!(
                    "[{}] INCIDENT {} opened: {root}",
                    sim_time(scenario, incident.started_ms),
                    incident.id
                ),
                Change::Joined => {
                    let newest = event.joined.as_deref().unwrap_or_default();
                    format!(
                        "[{}] incident {} grew to {} series (+ {newest}); probable root cause {root}",
                        sim_time(scenario, incident.last_active_ms),
                        incident.id,
                        incident.members.len()
                    )
                }
                Change::Resolved => format!(
                    "[{}] incident {} resolved: {} series, root cause {root}",
                    sim_time(
                        scenario,
                        incident.resolved_ms.unwrap_or(incident.last_active_ms)
                    ),
                    incident.id,
                    incident.members.len()
                ),
            }
        }
        Notification::Warning(warning) => match warning.resolved_ms {
            None => format!(
                "[{}] early warning: {} heading out of its band by {}",
                sim_time(scenario, warning.since_ms),
                warning.series,
                sim_time(scenario, warning.at_ms)
            ),
            Some(at) => format!(
                "[{}] early warning cleared: {}",
                sim_time(scenario, at),
                warning.series
            ),
        },
    }
}

/// Serves `app` on `addr` in the background; a busy port is reported, not fatal.
fn serve(
    runtime: &tokio::runtime::Runtime,
    addr: SocketAddr,
    app: axum::Router,
    what: &str,
) -> Option<SocketAddr> {
    match runtime.block_on(tokio::net::TcpListener::bind(addr)) {
        Ok(listener) => {
            let local = listener.local_addr().ok()?;
            runtime.spawn(async move { axum::serve(listener, app).await });
            Some(local)
        }
        Err(error) => {
            eprintln!("note: {what} /metrics not served: cannot listen on {addr}: {error}");
            None
        }
    }
}

/// What the detector raised: incidents as they stand, early warnings when raised.
#[derive(Default)]
struct Recorded {
    incidents: Vec<Incident>,
    /// (raised at, series).
    warnings: Vec<(i64, String)>,
}

/// The outcome for one injected incident.
struct Outcome {
    injected: Injected,
    incident: Option<Incident>,
}

/// Runs the demo; returns whether every injected incident was found and nothing else.
pub fn run(options: &DemoOptions) -> anyhow::Result<bool> {
    let start_ms = parse_timestamp(START).context("demo start time")?;
    let scenario = Scenario::new(start_ms, options.history_days);
    let mut generator = Generator::new(scenario.clone(), options.seed);

    let rules = RulesConfig::from_yaml(RULES, Path::new(RULES_PATH))?;
    let clock = Arc::new(ManualClock::new(start_ms * 1_000_000));
    let pipeline = Pipeline::new(&rules, Path::new(RULES_PATH), clock.clone())?;
    let agent = Arc::new(AgentState::new(pipeline, clock.clone()));
    agent.set_ready();
    let recorded: Arc<Mutex<Recorded>> = Arc::default();
    let detector = Arc::new(recording_detector(&scenario, recorded.clone()));
    detector.set_ready();

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let agent_addr = serve(
        &runtime,
        options.agent_listen,
        omen_agent::server::app(agent.clone()),
        "agent",
    );
    let detector_addr = serve(
        &runtime,
        options.detector_listen,
        omen_detector_live::server::app(detector.clone()),
        "detector",
    );
    announce(options, &scenario, agent_addr.zip(detector_addr));
    let lines = simulate(
        options,
        &scenario,
        &mut generator,
        &clock,
        &agent,
        &detector,
    );
    let recorded = std::mem::take(&mut *recorded.lock().unwrap_or_else(|e| e.into_inner()));
    let passed = summarize(
        &scenario,
        &recorded,
        lines,
        detector.engine().series_count(),
    );
    runtime.shutdown_background();
    Ok(passed || !options.check)
}

/// A detector that prints every notification and keeps the incidents opened in `opened`,
/// up to date as members join and the incident resolves.
fn recording_detector(scenario: &Scenario, recorded: Arc<Mutex<Recorded>>) -> LiveState {
    let scenario = scenario.clone();
    // Spans are handed to the pipeline directly, as log lines are to the agent: no queue.
    let (traces, _queue) = Traces::new(TracesConfig {
        otlp_grpc: None,
        otlp_http: None,
        interval: Duration::from_secs(60),
        wait: Duration::from_secs(5),
        ..TracesConfig::default()
    });
    LiveState::new(Engine::new(DetectConfig::default()), Vec::new())
        .with_traces(traces)
        .with_observer(move |notification| {
            println!("{}", describe(&scenario, notification));
            let mut recorded = recorded.lock().unwrap_or_else(|e| e.into_inner());
            if let Notification::Warning(warning) = notification {
                if warning.resolved_ms.is_none() {
                    recorded
                        .warnings
                        .push((warning.since_ms, warning.series.clone()));
                }
            }
            if let Notification::Incident(event) = notification {
                let opened = &mut recorded.incidents;
                match event.change {
                    Change::Opened => opened.push(event.incident.clone()),
                    Change::Joined | Change::Resolved => {
                        if let Some(kept) = opened.iter_mut().find(|i| i.id == event.incident.id) {
                            *kept = event.incident.clone();
                        }
                    }
                }
            }
        })
}

/// What the demo will do, and where its metrics are served.
fn announce(options: &DemoOptions, scenario: &Scenario, addrs: Option<(SocketAddr, SocketAddr)>) {
    println!(
        "omen demo: an inventory service, {} days of history learnt, then one live day (simulated time)",
        options.history_days
    );
    if let Some((agent, detector)) = addrs {
        println!("  agent metrics:    http://{agent}/metrics\n  detector metrics: http://{detector}/metrics  (incidents: /api/v1/incidents)");
    }
    for injected in &scenario.injected {
        println!(
            "  injected on the live day: {} – {}  {}",
            sim_time(scenario, injected.start_ms),
            sim_time(scenario, injected.end_ms),
            injected.trouble.describe()
        );
    }
}

/// Runs the scenario minute by minute: the service's log lines through the agent, a scrape
/// of the agent into the detector at the end of each minute. Returns the lines logged.
fn simulate(
    options: &DemoOptions,
    scenario: &Scenario,
    generator: &mut Generator,
    clock: &ManualClock,
    agent: &AgentState,
    detector: &LiveState,
) -> usize {
    let mut lines = 0usize;
    let mut spans = SpanGenerator::new(scenario.clone(), options.seed);
    let traces = detector
        .traces()
        .expect("the demo's detector reads spans")
        .clone();
    let mut minute = scenario.start_ms;
    while minute < scenario.end_ms() {
        let minute_end = minute + MINUTE_MS;
        let live = minute >= scenario.live_start_ms();
        let text = generator.minute(minute);
        lines += text.len();
        clock.set(minute_end * 1_000_000);
        let exposition = {
            let mut pipeline = agent.pipeline();
            pipeline.begin_batch();
            for line in &text {
                pipeline.process(line);
            }
            pipeline.end_batch();
            pipeline.render_rules()
        };
        // What a scrape of the agent at the end of the minute would give, with the
        // `service` label a scrape config's relabelling would add.
        let samples = exposition::parse(&exposition)
            .samples
            .into_iter()
            .map(|mut sample| {
                target_labels(&mut sample, "inventory", "demo:9750");
                let at = sample
                    .labels
                    .partition_point(|(k, _)| k.as_str() < "service");
                sample
                    .labels
                    .insert(at, ("service".to_owned(), "inventory".to_owned()));
                sample
            })
            .collect();
        let mode = if live { Mode::Live } else { Mode::Warmup };
        detector.ingest(Origin::Scrape, samples, minute_end, mode);
        traces.pipeline().push(spans.minute(minute));
        task::step(&traces, detector, minute_end, mode);
        detector.tick(minute_end);
        minute = minute_end;
        if minute % (6 * 3_600_000) == 0 {
            let series = detector.engine().series_count();
            println!(
                "[{}] {} log lines so far, {series} series modelled{}",
                sim_time(scenario, minute),
                lines,
                if live { "" } else { " (learning history)" }
            );
        }
        if live && !options.pace.is_zero() {
            std::thread::sleep(options.pace);
        }
    }
    lines
}

/// The service an injected trouble's incident must name as its root cause, where the demo
/// knows it (the slow downstream service, found through the call graph learnt from spans).
fn expected_root_service(trouble: Trouble) -> Option<&'static str> {
    match trouble {
        Trouble::SlowPayments => Some("payments"),
        _ => None,
    }
}

/// Matches the incidents opened to the injected ones and prints the summary; returns
/// whether every injected incident was found, no other opened, and every early warning
/// came before (by at most [`WARNING_LEAD_MS`]) or during an injected incident.
fn summarize(scenario: &Scenario, recorded: &Recorded, lines: usize, series: usize) -> bool {
    let opened = &recorded.incidents;
    let outcomes: Vec<Outcome> = scenario
        .injected
        .iter()
        .map(|injected| Outcome {
            injected: *injected,
            incident: opened
                .iter()
                .find(|i| {
                    (injected.start_ms - MATCH_BEFORE_MS..=injected.end_ms + MATCH_AFTER_MS)
                        .contains(&i.started_ms)
                })
                .cloned(),
        })
        .collect();
    let unexplained: Vec<&Incident> = opened
        .iter()
        .filter(|i| {
            !outcomes
                .iter()
                .any(|o| o.incident.as_ref().is_some_and(|m| m.id == i.id))
        })
        .collect();

    println!("\nsummary ({lines} log lines, {series} series):");
    let mut wrong_root = 0;
    for outcome in &outcomes {
        let what = outcome.injected.trouble.describe();
        match &outcome.incident {
            Some(incident) => {
                let spans = incident
                    .traces
                    .as_ref()
                    .and_then(|t| t.ranking.first())
                    .map(|(service, _)| format!("; spans point at {service}"))
                    .unwrap_or_default();
                println!(
                    "  detected  {what}: incident {} opened {} min after it began, root cause {}{spans}",
                    incident.id,
                    (incident.started_ms - outcome.injected.start_ms) / MINUTE_MS,
                    incident.root_cause().series
                );
                if let Some(expected) = expected_root_service(outcome.injected.trouble) {
                    if incident
                        .root_cause()
                        .labels
                        .get("service")
                        .map(String::as_str)
                        != Some(expected)
                    {
                        println!("  WRONG     root cause of {what}: expected service {expected}");
                        wrong_root += 1;
                    }
                }
            }
            None => println!("  MISSED    {what}"),
        }
    }
    for incident in &unexplained {
        println!(
            "  FALSE     incident {} at {} ({})",
            incident.id,
            sim_time(scenario, incident.started_ms),
            incident.root_cause().series
        );
    }
    let false_warnings: Vec<&(i64, String)> = recorded
        .warnings
        .iter()
        .filter(|(at, _)| {
            !scenario.injected.iter().any(|injected| {
                (injected.start_ms - WARNING_LEAD_MS..=injected.end_ms + MATCH_AFTER_MS)
                    .contains(at)
            })
        })
        .collect();
    for (at, series) in &false_warnings {
        println!(
            "  FALSE     early warning at {} ({series}): no injected incident followed",
            sim_time(scenario, *at)
        );
    }
    println!(
        "  {} of {} injected incidents detected, {} false incidents; {} early warnings, {} not followed by an injected incident",
        outcomes.iter().filter(|o| o.incident.is_some()).count(),
        outcomes.len(),
        unexplained.len(),
        recorded.warnings.len(),
        false_warnings.len()
    );
    outcomes.iter().all(|o| o.incident.is_some())
        && wrong_root == 0
        && unexplained.is_empty()
        && false_warnings.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use omen_detector_live::engine::correlate::Member;

    #[test]
    fn an_early_warning_that_foretells_no_injected_incident_fails_the_check() {
        let scenario = Scenario::new(parse_timestamp(START).unwrap(), 1);
        let first = scenario.injected[0];
        let before = (first.start_ms - 10 * MINUTE_MS, "a".to_owned());
        let mut recorded = Recorded::default();
        recorded.warnings.push(before);
        // No incident was opened, so the check fails anyway; with the injected ones
        // matched, only the warnings decide.
        for (i, injected) in scenario.injected.iter().enumerate() {
            let service = expected_root_service(injected.trouble).unwrap_or("inventory");
            let member = Member {
                series: "x".to_owned(),
                labels: [("service".to_owned(), service.to_owned())].into(),
                onset_ms: injected.start_ms,
                last_active_ms: injected.start_ms,
                peak: 1.0,
                off_band_points: 3,
                driver: None,
            };
            recorded.incidents.push(Incident {
                id: format!("inc-{i}"),
                started_ms: injected.start_ms,
                last_active_ms: injected.start_ms,
                members: vec![member],
                resolved_ms: None,
                confirmed: true,
                raised_ms: Some(injected.start_ms),
                traces: None,
            });
        }
        assert!(summarize(&scenario, &recorded, 0, 0));
        let far = (first.start_ms - 3 * WARNING_LEAD_MS, "b".to_owned());
        recorded.warnings.push(far);
        assert!(!summarize(&scenario, &recorded, 0, 0));
        // A found incident rooted at the wrong service fails the check too.
        recorded.warnings.pop();
        let slow = scenario
            .injected
            .iter()
            .position(|i| i.trouble == Trouble::SlowPayments)
            .unwrap();
        recorded.incidents[slow].members[0]
            .labels
            .insert("service".to_owned(), "checkout".to_owned());
        assert!(!summarize(&scenario, &recorded, 0, 0));
    }
}
