//! `omen rca`: replays fault cases, writes `predictions.json` (the format `score_rca.py`
//! reads) and `report.json`, and prints AC@k where the cases carry their answers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use omen_agent::pattern::{MinerConfig, TemplateMiner};
use omen_detector::traces::case::{self, CaseRanking};
use omen_detector::traces::RcaParams;

/// Candidates per case whose evidence the report spells out.
const REPORTED: usize = 5;

pub fn run(cases: &Path, out: &Path, logs: bool) -> anyhow::Result<()> {
    let dirs = case::find_cases(cases)?;
    let rankings = replay_all(&dirs, logs)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let predictions: serde_json::Map<String, serde_json::Value> = rankings
        .iter()
        .map(|r| {
            let services = r.ranking.iter().map(|c| c.service.clone().into()).collect();
            (r.case_id.clone(), serde_json::Value::Array(services))
        })
        .collect();
    write_json(&out.join("predictions.json"), &predictions)?;
    let report: Vec<_> = rankings
        .iter()
        .map(|r| {
            serde_json::json!({
                "case_id": r.case_id,
                "alarm_time_unix": r.alarm_time_unix,
                "spans": r.spans,
                "traces": r.traces,
                "reference_spans": r.reference_spans,
                "logs": r.logs,
                "logs_skipped": r.logs_skipped,
                "ranking": r.ranking.iter().map(|c| &c.service).collect::<Vec<_>>(),
                "evidence": &r.ranking[..r.ranking.len().min(REPORTED)],
            })
        })
        .collect();
    write_json(&out.join("report.json"), &report)?;
    println!(
        "{} cases: predictions in {}",
        rankings.len(),
        out.join("predictions.json").display()
    );
    print_scores(&dirs, &rankings)
}

/// Replays one case; with `logs`, its log messages are mined into templates by the
/// agent's miner (one per case, fresh) and count towards the ranking.
fn replay(dir: &Path, logs: bool) -> anyhow::Result<CaseRanking> {
    if !logs {
        return Ok(case::replay_case(dir, RcaParams::default(), None)?);
    }
    let mut miner = TemplateMiner::new(MinerConfig::default())?;
    let mut templates = |message: &str| u64::from(miner.add(message).id.0);
    Ok(case::replay_case(
        dir,
        RcaParams::default(),
        Some(&mut templates),
    )?)
}

/// Replays the cases on every core, in the order given.
fn replay_all(dirs: &[PathBuf], logs: bool) -> anyhow::Result<Vec<CaseRanking>> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = dirs.len().div_ceil(workers).max(1);
    std::thread::scope(|scope| {
        let handles: Vec<_> = dirs
            .chunks(chunk)
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .map(|dir| replay(dir, logs))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(dirs.len());
        for handle in handles {
            all.extend(handle.join().expect("a replay thread panicked")?);
        }
        Ok(all)
    })
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

fn print_scores(dirs: &[PathBuf], rankings: &[CaseRanking]) -> anyhow::Result<()> {
    let mut truths = Vec::new();
    for (dir, ranking) in dirs.iter().zip(rankings) {
        if let Some(truth) = case::read_ground_truth(dir)? {
            truths.push((ranking.case_id.clone(), truth));
        }
    }
    if truths.is_empty() {
        return Ok(());
    }
    let by_case: HashMap<String, Vec<String>> = rankings
        .iter()
        .map(|r| {
            let services = r.ranking.iter().map(|c| c.service.clone()).collect();
            (r.case_id.clone(), services)
        })
        .collect();
    let scores = case::score(&by_case, &truths);
    println!(
        "{} cases with answers: AC@1 {:.3}  AC@3 {:.3}  AC@5 {:.3}  Avg@5 {:.3}",
        scores.cases,
        scores.ac[0],
        scores.ac[2],
        scores.ac[4],
        scores.avg5()
    );
    for (fault, (n, ac)) in &scores.by_fault_type {
        println!(
            "  {fault:<16} {n:>3} cases: AC@1 {:.3}  AC@3 {:.3}",
            ac[0], ac[2]
        );
    }
    Ok(())
}
