use std::path::Path;

use super::*;
use crate::engine::correlate::{Change, Incident};
use crate::metrics::render;
use crate::sinks::SinkCounts;
use omen_detector::model::Driver;

/// A detector that learns from a few dozen one-second points, as the live tests use.
pub(super) fn quick_config(extra: &str) -> DetectConfig {
    quick_config_with("", extra)
}

/// [`quick_config`] with more `detector` settings.
fn quick_config_with(detector: &str, extra: &str) -> DetectConfig {
    let text = format!(
        "detector: {{ transform: none, warmup_points: 30, likelihood: {{ min_history: 30 }} {detector} }}
correlation: {{ window: 1m, quiet: 20s, onset_tolerance: 5s, labels: [], dependencies: {{ checkout: [inventory], inventory: [redis] }} }}
{extra}"
    );
    DetectConfig::parse(&text, Path::new("test.yaml")).unwrap()
}

fn gauge(name: &str, service: &str, value: f64, timestamp_ms: i64) -> Sample {
    Sample {
        name: name.to_owned(),
        labels: vec![("service".to_owned(), service.to_owned())],
        value,
        timestamp_ms: Some(timestamp_ms),
        kind: ValueKind::Gauge,
    }
}

/// Small deterministic wiggle around `level`.
fn calm(level: f64, i: i64) -> f64 {
    level * (1.0 + 0.02 * ((i * 7919 % 13) as f64 / 13.0 - 0.5))
}

const SERIES: [(&str, &str, f64); 3] = [
    ("redis_latency_seconds", "redis", 0.002),
    ("inventory_queue_depth", "inventory", 40.0),
    ("checkout_latency_seconds", "checkout", 0.2),
];

/// Feeds the three related series at one point a second; from `anomaly.0` to `anomaly.1`
/// redis is 50 times slower, and the others follow 3 s later.
fn feed(engine: &mut Engine, seconds: std::ops::Range<i64>, anomaly: (i64, i64)) {
    feed_with(engine, seconds, |k, s| {
        let lag = if k == 0 { 0 } else { 3 };
        if (anomaly.0 + lag..anomaly.1).contains(&s) {
            50.0
        } else {
            1.0
        }
    });
}

/// Feeds the three related series at one point a second, the `k`th multiplied by
/// `factor(k, s)` at second `s`.
pub(super) fn feed_with(
    engine: &mut Engine,
    seconds: std::ops::Range<i64>,
    factor: impl Fn(usize, i64) -> f64,
) {
    for s in seconds {
        let t = s * 1000;
        let samples = SERIES
            .iter()
            .enumerate()
            .map(|(k, (name, service, level))| {
                gauge(name, service, calm(*level, s + k as i64) * factor(k, s), t)
            })
            .collect();
        engine.ingest(Origin::RemoteWrite, samples, t, Mode::Live);
        engine.tick(t);
    }
}

#[test]
fn a_cascade_is_one_incident_with_its_root_cause_and_it_resolves() {
    let mut engine = Engine::new(quick_config(""));
    feed(&mut engine, 0..200, (150, 170));
    let notes = engine.take_notifications();
    let incidents: Vec<&IncidentEvent> = notes
        .iter()
        .filter_map(|n| match n {
            Notification::Incident(e) => Some(e),
            Notification::Warning(_) => None,
        })
        .collect();
    let changes: Vec<Change> = incidents.iter().map(|e| e.change).collect();
    assert_eq!(
        changes,
        [
            Change::Opened,
            Change::Joined,
            Change::Joined,
            Change::Resolved
        ],
        "{incidents:#?}"
    );
    let resolved = &incidents[3].incident;
    assert_eq!(
        resolved.root_cause().series,
        "redis_latency_seconds{service=\"redis\"}"
    );
    assert_eq!(resolved.started_ms, 150_000);
    // Resolved once the last member was quiet for 20 s after the anomaly ended.
    let resolved_at = resolved.resolved_ms.unwrap();
    assert!((189_000..=200_000).contains(&resolved_at), "{resolved_at}");
    assert!(incidents.iter().all(|e| e.incident.id == resolved.id));
    // Each member says what drove its alarm: here a value far beyond the calm range.
    for member in &resolved.members {
        assert_eq!(member.driver, Some(Driver::BeyondRange), "{member:?}");
    }
    let alerts: Vec<Alert> = notes.iter().flat_map(|n| n.alerts("http://g", 0)).collect();
    assert!(alerts[0].annotations["members"].contains(", by beyond_range)"));
    let firing_roots: Vec<&str> = alerts
        .iter()
        .filter(|a| !a.is_resolved() && a.labels["alertname"] == "OmenIncident")
        .map(|a| a.labels["root_cause"].as_str())
        .collect();
    assert_eq!(
        firing_roots.last(),
        Some(&"redis_latency_seconds{service=\"redis\"}")
    );
}

#[test]
fn a_series_whose_alarms_are_suppressed_after_a_blip_still_joins_the_cascade() {
    let mut engine = Engine::new(quick_config(""));
    // checkout blips at 100 s: an unconfirmed incident, dropped 20 s later, while its
    // alarms stay suppressed for 100 points; the cascade starts at 150 s.
    feed_with(&mut engine, 0..200, |k, s| match (k, s) {
        (2, 100) => 50.0,
        (0, 150..170) | (1 | 2, 153..170) => 50.0,
        _ => 1.0,
    });
    let events = incident_events(&engine.take_notifications());
    let (change, resolved) = events.last().expect("incident events");
    assert_eq!(*change, Change::Resolved, "{events:#?}");
    let members: Vec<&str> = resolved.members.iter().map(|m| m.series.as_str()).collect();
    assert_eq!(
        members,
        [
            "redis_latency_seconds{service=\"redis\"}",
            "inventory_queue_depth{service=\"inventory\"}",
            "checkout_latency_seconds{service=\"checkout\"}",
        ],
        "{events:#?}"
    );
    assert!(
        events.iter().all(|(_, i)| i.id == resolved.id),
        "{events:#?}"
    );
}

/// The incident changes among `notifications`, with their incidents.
fn incident_events(notifications: &[Notification]) -> Vec<(Change, Incident)> {
    notifications
        .iter()
        .filter_map(|n| match n {
            Notification::Incident(e) => Some((e.change, e.incident.clone())),
            Notification::Warning(_) => None,
        })
        .collect()
}

#[test]
fn scored_on_two_detectors_and_correlated_on_a_third_the_cascade_is_the_same_incident() {
    let mut alone = Engine::new(quick_config(""));
    feed(&mut alone, 0..200, (150, 170));
    let expected = incident_events(&alone.take_notifications());
    // redis is scored on one detector, the services calling it on another; their
    // evidence goes to a third, the correlator.
    let mut scorers = [Engine::new(quick_config("")), Engine::new(quick_config(""))];
    let mut correlator = Engine::new(quick_config(""));
    for engine in scorers.iter_mut().chain([&mut correlator]) {
        engine.correlate_elsewhere();
    }
    correlator.set_correlating(Some(Correlator::default()));
    for s in 0..200 {
        let t = s * 1000;
        for (k, (name, service, level)) in SERIES.iter().enumerate() {
            let lag = if k == 0 { 0 } else { 3 };
            let factor = if (150 + lag..170).contains(&s) {
                50.0
            } else {
                1.0
            };
            let sample = gauge(name, service, calm(*level, s + k as i64) * factor, t);
            scorers[usize::from(k > 0)].ingest(Origin::Kafka, vec![sample], t, Mode::Live);
        }
        for scorer in &mut scorers {
            correlator.correlate(&scorer.take_evidence());
            scorer.tick(t);
        }
        correlator.tick(t);
    }
    let events = incident_events(&correlator.take_notifications());
    assert_eq!(events, expected);
    assert_eq!(events.len(), 4, "{events:#?}");
    for scorer in &mut scorers {
        assert!(incident_events(&scorer.take_notifications()).is_empty());
        assert!(render(scorer, &[]).contains("omen_detector_correlating 0\n"));
    }
    let text = render(&correlator, &[]);
    assert!(text.contains("omen_detector_correlating 1\n"), "{text}");
    let published: u64 = scorers.iter().map(|s| s.stats.evidence_published).sum();
    assert_eq!(published, 0, "counted by the Kafka thread as it sends");
    assert!(correlator.stats.evidence_correlated > 0);
}

#[test]
fn history_loaded_at_start_is_learnt_but_never_alerted_on() {
    let mut engine = Engine::new(quick_config(""));
    for s in 0..200 {
        let value = if (150..170).contains(&s) {
            100.0
        } else {
            calm(1.0, s)
        };
        engine.ingest(
            Origin::Prometheus,
            vec![gauge("g", "x", value, s * 1000)],
            s * 1000,
            Mode::Warmup,
        );
        engine.tick(s * 1000);
    }
    assert!(engine.take_notifications().is_empty());
    assert_eq!(engine.correlator().open().len(), 0);
    let text = render(&engine, &[]);
    assert!(text.contains("omen_detector_points_total 200\n"), "{text}");
}

#[test]
fn counters_become_rates_across_resets() {
    let mut engine = Engine::new(quick_config(""));
    let counter = |value: f64, t: i64| Sample {
        name: "requests_total".to_owned(),
        labels: vec![],
        value,
        timestamp_ms: Some(t),
        kind: ValueKind::Unknown,
    };
    engine.ingest(Origin::Scrape, vec![counter(100.0, 0)], 0, Mode::Live);
    assert!(!render(&engine, &[]).contains("omen_series_value{"));
    engine.ingest(
        Origin::Scrape,
        vec![counter(110.0, 2_000)],
        2_000,
        Mode::Live,
    );
    assert!(render(&engine, &[]).contains("omen_series_value{metric=\"requests_total\"} 5\n"));
    // A reset: the counter restarted and counted 4 since.
    engine.ingest(Origin::Scrape, vec![counter(4.0, 4_000)], 4_000, Mode::Live);
    assert!(render(&engine, &[]).contains("omen_series_value{metric=\"requests_total\"} 2\n"));
    // A repeated timestamp is skipped and counted.
    engine.ingest(Origin::Scrape, vec![counter(9.0, 4_000)], 4_000, Mode::Live);
    assert!(render(&engine, &[]).contains("omen_detector_out_of_order_total 1\n"));
}

#[test]
fn a_sample_stamped_far_ahead_is_skipped_and_its_series_carries_on() {
    let mut engine = Engine::new(quick_config(""));
    let now = 1_700_000_000_000;
    engine.ingest(
        Origin::RemoteWrite,
        vec![gauge("queue", "a", 1.0, now + 1_000_000_000_000)],
        now,
        Mode::Live,
    );
    let metrics = render(&engine, &[]);
    assert!(
        metrics.contains("omen_detector_future_samples_total 1\n"),
        "{metrics}"
    );
    assert!(!metrics.contains("omen_series_value{"), "{metrics}");
    // Within the allowance a sample counts, and the next one is in order.
    for (value, clock) in [(2.0, now), (3.0, now + 1_000)] {
        let sample = gauge("queue", "a", value, clock + MAX_AHEAD_MS);
        engine.ingest(Origin::RemoteWrite, vec![sample], clock, Mode::Live);
    }
    let metrics = render(&engine, &[]);
    assert!(
        metrics.contains("omen_detector_future_samples_total 1\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("omen_detector_out_of_order_total 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("omen_series_value{metric=\"queue\",service=\"a\"} 3\n"),
        "{metrics}"
    );
}

#[test]
fn own_series_buckets_and_stale_markers_are_not_modelled() {
    let mut engine = Engine::new(quick_config(""));
    let samples = [
        "omen_anomaly_score",
        "omen_detector_points_total",
        "omen_series_value",
        "x_bucket",
        "x_created",
        "stale",
    ]
    .iter()
    .map(|name| Sample {
        name: (*name).to_owned(),
        labels: vec![],
        value: if *name == "stale" { f64::NAN } else { 1.0 },
        timestamp_ms: None,
        kind: ValueKind::Gauge,
    })
    .collect();
    engine.ingest(Origin::RemoteWrite, samples, 0, Mode::Live);
    assert_eq!(engine.series_count(), 0);
}

#[test]
fn what_nobody_models_is_skipped_by_default_and_selection_is_counted_by_reason() {
    let names = [
        "up",
        "scrape_samples_scraped",
        "ALERTS",
        "omen_agent_lines_total",
        "go_info",
        "queue_depth",
    ];
    let samples = |service: &str| -> Vec<Sample> {
        names
            .iter()
            .map(|name| gauge(name, service, 1.0, 1_000))
            .collect()
    };
    let mut engine = Engine::new(quick_config(""));
    engine.ingest(Origin::RemoteWrite, samples("api"), 1_000, Mode::Live);
    assert_eq!(engine.series_count(), 1, "only queue_depth is modelled");
    let text = render(&engine, &[]);
    assert!(
        text.contains("omen_detector_samples_skipped_total{source=\"remote_write\",reason=\"default_exclude\"} 5\n"),
        "{text}"
    );
    // The global include and exclude narrow every source; `defaults: false` models all.
    let mut engine = Engine::new(quick_config(
        "select: { defaults: false, include: ['{service=\"api\"}'], exclude: [go_info] }",
    ));
    engine.ingest(Origin::Scrape, samples("api"), 1_000, Mode::Live);
    engine.ingest(Origin::Scrape, samples("web"), 1_000, Mode::Live);
    assert_eq!(engine.series_count(), 5);
    let text = render(&engine, &[]);
    for (reason, count) in [("exclude", 2), ("not_included", 5)] {
        let line = format!("omen_detector_samples_skipped_total{{source=\"scrape\",reason=\"{reason}\"}} {count}\n");
        assert!(text.contains(&line), "{line}{text}");
    }
}

#[test]
fn a_jump_on_a_series_with_minutes_of_history_pages_within_two_scrape_intervals() {
    // The default settings, scraped every 15 s: 10 points (2.5 minutes) of a queue at
    // about 25, then 221.
    let mut engine = Engine::new(DetectConfig::default());
    let mut opened_at = None;
    for i in 0..16i64 {
        let t = i * 15_000;
        let value = if i < 10 { 25.0 + (i % 3) as f64 } else { 221.0 };
        engine.ingest(
            Origin::Scrape,
            vec![gauge("queue_depth", "orders", value, t)],
            t,
            Mode::Live,
        );
        engine.tick(t);
        let opened = incident_events(&engine.take_notifications())
            .iter()
            .any(|(change, _)| *change == Change::Opened);
        if opened && opened_at.is_none() {
            opened_at = Some(i);
        }
    }
    assert_eq!(
        opened_at,
        Some(12),
        "paged on the third point of the new level"
    );
    let text = render(&engine, &[]);
    assert!(
        text.contains("omen_series_learning{metric=\"queue_depth\",service=\"orders\"} 1\n"),
        "{text}"
    );
    let states = engine.series_states();
    assert_eq!(
        (states.len(), states[0].points, states[0].learning),
        (1, 16, true)
    );
}

#[test]
fn series_that_share_only_job_and_instance_are_separate_incidents() {
    let mut engine = Engine::new(DetectConfig::default());
    let sample = |name: &str, service: &str, value: f64, t: i64| Sample {
        name: name.to_owned(),
        labels: vec![
            ("instance".to_owned(), "host:9100".to_owned()),
            ("job".to_owned(), "node".to_owned()),
            ("service".to_owned(), service.to_owned()),
        ],
        value,
        timestamp_ms: Some(t),
        kind: ValueKind::Gauge,
    };
    let mut opened = Vec::new();
    for i in 0..16i64 {
        let t = i * 15_000;
        let (a, b) = if i < 10 {
            (25.0 + (i % 3) as f64, 3.0 + (i % 2) as f64)
        } else {
            (221.0, 40.0)
        };
        let samples = vec![
            sample("queue_depth", "orders", a, t),
            sample("open_files", "billing", b, t),
        ];
        engine.ingest(Origin::Scrape, samples, t, Mode::Live);
        engine.tick(t);
        opened.extend(
            incident_events(&engine.take_notifications())
                .into_iter()
                .filter(|(change, _)| *change == Change::Opened)
                .map(|(_, incident)| incident.members.len()),
        );
    }
    assert_eq!(opened, [1, 1], "two incidents of one member each");
}

#[test]
fn the_store_is_bounded_and_forgets_vanished_series() {
    let mut engine = Engine::new(quick_config("store: { max_series: 2, ttl: 10s }"));
    for (i, name) in ["a", "b", "c"].iter().enumerate() {
        engine.ingest(
            Origin::Scrape,
            vec![gauge(name, "x", 1.0, i as i64)],
            i as i64 * 1000,
            Mode::Live,
        );
    }
    assert_eq!(engine.series_count(), 2);
    engine.ingest(
        Origin::Scrape,
        vec![gauge("a", "x", 1.0, 8_000)],
        8_000,
        Mode::Live,
    );
    engine.tick(11_000);
    assert_eq!(engine.series_count(), 1, "b expired, a kept");
    let text = render(&engine, &[]);
    assert!(text.contains("omen_detector_series_dropped_total 1\n"));
    assert!(text.contains("omen_detector_series_expired_total 1\n"));
}

#[test]
fn a_restored_snapshot_continues_where_it_left_off() {
    let mut original = Engine::new(quick_config(""));
    feed(&mut original, 0..120, (1000, 1000));
    let json = serde_json::to_string(&original.snapshot(120_000)).unwrap();
    let mut restored = Engine::new(quick_config(""));
    let snapshot: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(restored.restore(snapshot, 120_000).series, 3);
    feed(&mut original, 120..200, (150, 170));
    feed(&mut restored, 120..200, (150, 170));
    let count = |e: &mut Engine| e.take_notifications().len();
    assert!(count(&mut original) > 0);
    let (a, b) = (render(&original, &[]), render(&restored, &[]));
    let scores = |t: &str| {
        t.lines()
            .filter(|l| l.starts_with("omen_anomaly_score{"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(scores(&a), scores(&b));
    // Restoring respects the store bound.
    let mut other = Engine::new(quick_config("store: { max_series: 1 }"));
    let snapshot: Snapshot = serde_json::from_str(&json).unwrap();
    let report = other.restore(snapshot, 0);
    assert_eq!(
        (report.series, report.beyond_capacity),
        (1, 2),
        "bounded by max_series"
    );
}

#[test]
fn a_snapshot_from_before_a_change_of_alarm_level_keeps_its_models() {
    let mut original = Engine::new(quick_config(""));
    feed(&mut original, 0..120, (1000, 1000));
    let json = serde_json::to_string(&original.snapshot(120_000)).unwrap();
    // Judging settings changed: every model goes on, under the new settings.
    let mut judged = Engine::new(quick_config_with(
        ", alarm_level: 0.6, suppress_s: 1200",
        "",
    ));
    let report = judged.restore(serde_json::from_str(&json).unwrap(), 120_000);
    assert_eq!((report.series, report.not_restored), (3, 0));
    // A model that learns differently now starts afresh, and the report says so.
    let mut relearnt = Engine::new(quick_config_with(", forest: { window: 64 }", ""));
    let report = relearnt.restore(serde_json::from_str(&json).unwrap(), 120_000);
    assert_eq!((report.series, report.other_settings), (0, 3));
    // Another version restores nothing, and says which.
    let mut snapshot: Snapshot = serde_json::from_str(&json).unwrap();
    snapshot.version = 99;
    let report = Engine::new(quick_config("")).restore(snapshot, 0);
    assert_eq!((report.other_version, report.not_restored), (Some(99), 3));
}

#[test]
fn exposition_escapes_labels_and_renames_a_metric_label() {
    let mut engine = Engine::new(quick_config(""));
    let sample = Sample {
        name: "g".to_owned(),
        labels: vec![
            ("metric".to_owned(), "x".to_owned()),
            ("path".to_owned(), "a\"b\\c\nd".to_owned()),
        ],
        value: 1.5,
        timestamp_ms: Some(1),
        kind: ValueKind::Gauge,
    };
    engine.ingest(Origin::Scrape, vec![sample], 1, Mode::Live);
    let text = render(
        &engine,
        &[(
            "webhook".to_owned(),
            SinkCounts {
                sent: 2,
                ..SinkCounts::default()
            },
        )],
    );
    assert!(
        text.contains(
            "omen_series_value{metric=\"g\",exported_metric=\"x\",path=\"a\\\"b\\\\c\\nd\"} 1.5\n"
        ),
        "{text}"
    );
    assert!(text.contains("omen_detector_alerts_sent_total{sink=\"webhook\"} 2\n"));
    assert!(text.contains("omen_detector_scoring_seconds_count 1\n"));
}

#[test]
fn a_series_drifting_towards_its_limit_is_warned_about_before_it_is_an_incident() {
    let mut engine = Engine::new(quick_config(
        "limits: [{ metric: queue_depth, upper: 100 }]",
    ));
    // A noisy queue at 20 for 200 s, then growing by 0.2 a second: it reaches the limit
    // at 600 s.
    let value = |s: i64| 20.0 + 0.2 * (s - 200).max(0) as f64 + 4.0 * (calm(1.0, s) - 1.0) / 0.01;
    let mut warned = None;
    let mut incident = None;
    for s in 0..700 {
        let t = s * 1000;
        engine.ingest(
            Origin::Scrape,
            vec![gauge("queue_depth", "inventory", value(s), t)],
            t,
            Mode::Live,
        );
        engine.tick(t);
        for note in engine.take_notifications() {
            match &note {
                Notification::Warning(warning) if warned.is_none() => {
                    assert!(warning.at_ms > t, "the trouble is ahead: {warning:?}");
                    let alerts = note.alerts("http://g", 0);
                    assert_eq!(alerts[0].labels["alertname"], "OmenEarlyWarning");
                    assert_eq!(alerts[0].labels["severity"], "warning");
                    assert_eq!(alerts[0].labels["service"], "inventory");
                    warned = Some((s, warning.kind));
                }
                Notification::Incident(_) if incident.is_none() => incident = Some(s),
                _ => {}
            }
        }
    }
    let (warned_at, kind) = warned.expect("an early warning");
    assert!(warned_at > 200, "no warning while calm: {warned_at} s");
    assert_eq!(kind, WarningKind::CrossesLimit);
    assert!(value(warned_at) < 100.0, "warned at {warned_at} s");
    if let Some(incident) = incident {
        assert!(
            warned_at < incident,
            "warned at {warned_at} s, incident at {incident} s"
        );
    }
}
