//! `omen agent test` with the example rules gives exactly the true values on a generated
//! inventory log whose truth is known: publishes in time, exactly at the timeout, too
//! late, never (lost events), and orphan publishes, among hard deletes and HTTP traffic.
//! The truth is computed here from the generator's own schedule, not by omen's code.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// xorshift64*: a small deterministic generator, so the test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const TIMEOUT_MS: i64 = 30_000;
const LATENCY_BUCKETS: [f64; 6] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0];
const HTTP_BUCKETS: [f64; 7] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0];

fn timestamp(ms: i64) -> String {
    // 2025-07-14T00:00:00Z plus `ms`; the test stays within one day.
    let base_hour = 0;
    let total_seconds = ms / 1000;
    format!(
        "2025-07-14T{:02}:{:02}:{:02}.{:03}Z",
        base_hour + total_seconds / 3600,
        (total_seconds / 60) % 60,
        total_seconds % 60,
        ms % 1000
    )
}

#[derive(Default)]
struct Truth {
    samples: BTreeMap<String, f64>,
}

impl Truth {
    fn add(&mut self, key: String, by: f64) {
        *self.samples.entry(key).or_default() += by;
    }
    fn histogram(&mut self, name: &str, labels: &str, buckets: &[f64], value: f64) {
        for bound in buckets {
            let le = omen_agent::registry::format_value(*bound);
            let key = format!("{name}_bucket{{{labels}le=\"{le}\"}}");
            self.add(key, if value <= *bound { 1.0 } else { 0.0 });
        }
        self.add(format!("{name}_bucket{{{labels}le=\"+Inf\"}}"), 1.0);
        let plain = labels.trim_end_matches(',');
        let suffix = if plain.is_empty() {
            String::new()
        } else {
            format!("{{{plain}}}")
        };
        self.add(format!("{name}_sum{suffix}"), value);
        self.add(format!("{name}_count{suffix}"), 1.0);
    }
}

#[test]
fn example_rules_give_the_true_values_on_a_generated_log() {
    let mut rng = Rng(0x5eed_1234_abcd_0042);
    let mut events: Vec<(i64, u64, String)> = Vec::new();
    let mut truth = Truth::default();
    for name in [
        "matched_total",
        "unmatched_total",
        "orphan_total",
        "pending",
    ] {
        truth.add(format!("stock_event_{name}"), 0.0);
    }
    let mut starts: Vec<(i64, Option<i64>)> = Vec::new();
    let mut now: i64 = 0;
    let mut seq = 0u64;
    let mut push = |time: i64, line: String, events: &mut Vec<(i64, u64, String)>| {
        seq += 1;
        events.push((time, seq, line));
    };
    for i in 0..40_000u64 {
        now += rng.below(40) as i64;
        match rng.below(100) {
            0..=4 => {
                let table = ["orders", "users", "carts", "sessions"][rng.below(4) as usize];
                push(
                    now,
                    format!(
                        "{} level=warn msg=\"hard-delete\" table={table} id={i} actor=admin",
                        timestamp(now)
                    ),
                    &mut events,
                );
                truth.add(format!("hard_deletes_total{{table=\"{table}\"}}"), 1.0);
            }
            5..=24 => {
                let order = format!("o{i}");
                push(now, format!("{} level=info msg=\"stock decremented\" order_id={order} sku=s{} qty=1 backend=redis", timestamp(now), rng.below(50)), &mut events);
                let delay = match rng.below(100) {
                    0..=79 => Some(rng.below(2_000) as i64), // in time
                    80..=84 => Some(TIMEOUT_MS),             // exactly at the timeout
                    85..=89 => Some(TIMEOUT_MS + 1 + rng.below(20_000) as i64), // too late
                    _ => None,                               // lost: the process died
                };
                if let Some(delay) = delay {
                    push(now + delay, format!("{} level=info msg=\"event published\" order_id={order} topic=orders backend=kafka", timestamp(now + delay)), &mut events);
                }
                starts.push((now, delay));
            }
            25..=26 => {
                push(now, format!("{} level=info msg=\"event published\" order_id=ghost{i} topic=orders backend=kafka", timestamp(now)), &mut events);
                truth.add("stock_event_orphan_total".into(), 1.0);
            }
            _ => {
                let method = ["GET", "GET", "GET", "POST", "DELETE"][rng.below(5) as usize];
                let status = ["200", "200", "200", "201", "404", "500"][rng.below(6) as usize];
                let latency_ms = rng.below(3_000);
                push(now, format!("{} level=info method={method} path=/api/v1/items/{i} status={status} latency_ms={latency_ms}", timestamp(now)), &mut events);
                truth.add(
                    format!("http_requests_total{{method=\"{method}\",status=\"{status}\"}}"),
                    1.0,
                );
                truth.histogram(
                    "http_request_duration_seconds",
                    "",
                    &HTTP_BUCKETS,
                    latency_ms as f64 / 1000.0,
                );
            }
        }
    }
    // The log ends with decrements whose events are still inside their timeout: pending.
    let last = events.iter().map(|(t, _, _)| *t).max().unwrap_or(0);
    for k in 1..=3 {
        let time = last + k;
        let line = format!(
            "{} level=info msg=\"stock decremented\" order_id=tail{k} sku=s1 qty=1 backend=redis",
            timestamp(time)
        );
        push(time, line, &mut events);
        starts.push((time, None));
    }
    events.sort_by_key(|(time, seq, _)| (*time, *seq));
    let newest = events.last().map(|(t, _, _)| *t).unwrap_or(0);
    for (t0, delay) in &starts {
        match delay {
            Some(d) if *d <= TIMEOUT_MS => {
                truth.add("stock_event_matched_total".into(), 1.0);
                truth.histogram(
                    "stock_event_latency_seconds",
                    "",
                    &LATENCY_BUCKETS,
                    *d as f64 / 1000.0,
                );
            }
            Some(_) => {
                truth.add("stock_event_unmatched_total".into(), 1.0);
                truth.add("stock_event_orphan_total".into(), 1.0);
            }
            None if newest > t0 + TIMEOUT_MS => {
                truth.add("stock_event_unmatched_total".into(), 1.0)
            }
            None => truth.add("stock_event_pending".into(), 1.0),
        }
    }
    assert!(
        truth.samples["stock_event_pending"] > 0.0,
        "the log should end with pending starts"
    );
    if truth
        .samples
        .keys()
        .all(|k| !k.starts_with("stock_event_latency"))
    {
        truth.histogram("stock_event_latency_seconds", "", &LATENCY_BUCKETS, 0.0);
    }

    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("inventory.log");
    let mut text = String::new();
    for (_, _, line) in &events {
        let _ = writeln!(text, "{line}");
    }
    std::fs::write(&log, text).expect("write log");
    let rules = common::repo_root().join("examples/agent/inventory.yaml");
    let got = common::rule_samples(&common::agent_oneshot(&rules, &log));

    let mut mismatches = Vec::new();
    for (key, want) in &truth.samples {
        match got.get(key) {
            Some(value) if (value - want).abs() <= 1e-6 * want.abs().max(1.0) => {}
            other => mismatches.push(format!("{key}: want {want}, got {other:?}")),
        }
    }
    for key in got.keys() {
        if !truth.samples.contains_key(key) {
            mismatches.push(format!("{key}: not expected, got {}", got[key]));
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}
