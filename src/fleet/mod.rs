//! `omen fleet`: a production-like fleet of about 200 series (see [`sim`]) with weeks of
//! normal history and a live week of injected incidents and planned events, written to a
//! Prometheus by remote_write, as a Prometheus would forward it. Its truth (every window,
//! its kind, the service it starts in, whether it grows slowly) is written as JSON, for a
//! test or a bench to judge what `omen detect --replay` pages against.

pub mod sim;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context};
use omen_detector::series::format_rfc3339;
use omen_detector::wire::{remote_write, Sample, ValueKind};
use serde::Serialize;

use self::sim::{Fleet, Window, DAY_MS, HOUR_MS};

/// What `omen fleet` was asked for.
pub struct FleetOptions {
    /// Prometheus' remote_write receiver (`.../api/v1/write`); none: only the truth.
    pub remote_write: Option<String>,
    pub truth: Option<PathBuf>,
    /// Where to write an `omen detect` configuration for the fleet (PromQL on the
    /// Prometheus written to, the calendar, the services' calls; alerts to stdout).
    pub detect_config: Option<PathBuf>,
    pub seed: u64,
    pub history_days: i64,
    /// The first day (a Monday midnight, UTC); default: the latest one that lets the live
    /// week end before now.
    pub start_ms: Option<i64>,
    pub now_ms: i64,
}

/// The truth a judge reads.
#[derive(Debug, Serialize)]
struct Truth<'a> {
    start: String,
    live_start: String,
    end: String,
    start_ms: i64,
    live_start_ms: i64,
    end_ms: i64,
    series: usize,
    samples: u64,
    windows: &'a [Window],
}

/// The latest Monday midnight from which `days` end by `now_ms`. (1970-01-01 was a
/// Thursday, so Mondays are 4 days after a multiple of 7 days.)
fn latest_monday(now_ms: i64, days: i64) -> i64 {
    let latest_start = now_ms - days * DAY_MS;
    let week = 7 * DAY_MS;
    let first_monday = 4 * DAY_MS;
    first_monday + (latest_start - first_monday).div_euclid(week) * week
}

/// Every sample of the fleet, an hour at a time, as remote_write bodies.
fn bodies(
    fleet: &Fleet,
    seed: u64,
    mut send: impl FnMut(Vec<u8>) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut batch: Vec<Sample> = Vec::new();
    let mut batch_hour = fleet.start_ms.div_euclid(HOUR_MS);
    let mut count = 0u64;
    let mut failure = None;
    fleet.generate(seed, |t, index, value| {
        if failure.is_some() {
            return;
        }
        if t.div_euclid(HOUR_MS) != batch_hour && !batch.is_empty() {
            if let Err(e) = send(remote_write::encode(&batch)) {
                failure = Some(e);
            }
            batch.clear();
            batch_hour = t.div_euclid(HOUR_MS);
        }
        let series = &fleet.series[index];
        let mut labels: Vec<(String, String)> = series
            .labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect();
        labels.push(("job".to_owned(), "fleet".to_owned()));
        labels.sort();
        batch.push(Sample {
            name: series.name.to_owned(),
            labels,
            value,
            timestamp_ms: Some(t),
            kind: ValueKind::Gauge,
        });
        count += 1;
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if !batch.is_empty() {
        send(remote_write::encode(&batch))?;
    }
    Ok(count)
}

/// Writes the fleet and its truth.
pub fn run(options: &FleetOptions) -> anyhow::Result<()> {
    let days = options.history_days + 7;
    let start_ms = options
        .start_ms
        .unwrap_or_else(|| latest_monday(options.now_ms, days));
    let fleet = Fleet::new(start_ms, options.history_days);
    if fleet.end_ms() > options.now_ms {
        bail!("the fleet would end in the future: start it at least {days} days ago");
    }
    let started = Instant::now();
    let samples = match &options.remote_write {
        Some(url) => write(&fleet, options.seed, url)?,
        None => bodies(&fleet, options.seed, |_| Ok(()))?,
    };
    eprintln!(
        "fleet: {} series, {samples} samples, {} to {} ({:.1} s)",
        fleet.series.len(),
        format_rfc3339(fleet.start_ms),
        format_rfc3339(fleet.end_ms()),
        started.elapsed().as_secs_f64()
    );
    let truth = Truth {
        start: format_rfc3339(fleet.start_ms),
        live_start: format_rfc3339(fleet.live_start_ms()),
        end: format_rfc3339(fleet.end_ms()),
        start_ms: fleet.start_ms,
        live_start_ms: fleet.live_start_ms(),
        end_ms: fleet.end_ms(),
        series: fleet.series.len(),
        samples,
        windows: &fleet.windows,
    };
    if let (Some(path), Some(url)) = (&options.detect_config, &options.remote_write) {
        let base = url.trim_end_matches('/').trim_end_matches("/api/v1/write");
        std::fs::write(path, detect_config(&fleet, base))
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let json = serde_json::to_string_pretty(&truth)?;
    match &options.truth {
        Some(path) => std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => println!("{json}"),
    }
    Ok(())
}

/// An `omen detect` configuration for the fleet: one PromQL query per metric family over
/// the Prometheus at `prometheus`, the week's calendar, the services' calls.
fn detect_config(fleet: &Fleet, prometheus: &str) -> String {
    let mut families: Vec<&str> = fleet.series.iter().map(|s| s.name).collect();
    families.dedup();
    families.sort_unstable();
    families.dedup();
    let queries: Vec<String> = families
        .iter()
        .map(|f| format!("      - {{ name: {f}, expr: '{f}{{job=\"fleet\"}}' }}"))
        .collect();
    let calendar: Vec<String> = fleet
        .windows
        .iter()
        .filter_map(|w| {
            let entry = w.calendar.as_ref()?;
            Some(format!(
                "  - {{ name: {}, start: '{}', end: '{}', match: {}, effect: {} }}",
                serde_json::to_string(w.name).ok()?,
                format_rfc3339(w.start_ms),
                format_rfc3339(w.end_ms),
                serde_json::to_string(entry.select).ok()?,
                serde_json::to_string(&entry.effect).ok()?,
            ))
        })
        .collect();
    let calls: Vec<String> = sim::CALLS
        .iter()
        .map(|(caller, callees)| format!("{caller}: [{}]", callees.join(", ")))
        .collect();
    format!(
        "# omen detect for `omen fleet`: run with --replay over the live week (see the truth).
remote_write: {{ enabled: false }}
prometheus:
  - url: {prometheus}
    interval: 1m
    step: 1m
    warmup: 14d
    queries:
{}
store: {{ snapshot_path: null }}
correlation:
  dependencies: {{ {} }}
alerting: {{ stdout: true }}
calendar:
{}
",
        queries.join("\n"),
        calls.join(", "),
        calendar.join("\n")
    )
}

/// Posts the fleet to a remote_write receiver, in time order.
fn write(fleet: &Fleet, seed: u64, url: &str) -> anyhow::Result<u64> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let client = reqwest::Client::new();
    bodies(fleet, seed, |body| {
        runtime.block_on(async {
            let response = client
                .post(url)
                .header("Content-Type", "application/x-protobuf")
                .header("Content-Encoding", "snappy")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body)
                .send()
                .await
                .with_context(|| format!("cannot post to {url}"))?;
            let status = response.status();
            if !status.is_success() {
                let reply = response.text().await.unwrap_or_default();
                bail!("{url} answered {status}: {}", reply.trim());
            }
            Ok(())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fleet_starts_on_a_monday_and_ends_before_now() {
        let now = 1_796_000_000_000; // 2026-11-30, a Monday, 00:53 UTC
        let start = latest_monday(now, 21);
        assert_eq!(format_rfc3339(start), "2026-11-09T00:00:00.000Z");
        assert!(start + 21 * DAY_MS <= now);
    }

    #[test]
    fn the_fleet_is_about_two_hundred_series_and_deterministic() {
        let fleet = Fleet::new(latest_monday(1_796_000_000_000, 8), 1);
        assert!((180..=220).contains(&fleet.series.len()));
        let collect = |seed| {
            let mut sum = 0.0;
            fleet.generate(seed, |_, _, v| sum += v);
            sum
        };
        assert_eq!(collect(3), collect(3));
        assert_ne!(collect(3), collect(4));
    }
}
