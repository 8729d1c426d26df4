//! `omen detect` scaled out on Kafka, against a real Kafka-protocol broker (`tansu`,
//! started on 127.0.0.1 in memory): detectors in one consumer group score each series
//! once and hand series over with their model state; their anomalies reach one correlator,
//! which raises one incident and hands it over in turn; a broker that stops answering for
//! 30 s loses no sample and no anomaly. Outside CI the tests skip when `tansu` is not
//! installed; `.ci/setup` installs it.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{free_port, log_tail, Broker, LiveDetector, Producer, WebhookReceiver};

const METRICS: &str = "omen-metrics";
const STATE: &str = "omen-detector-state";
const ANOMALIES: &str = "omen-anomalies";
const QUEUES: u64 = 8;
const ACT_LIMIT: Duration = Duration::from_secs(60);

fn broker_in(dir: &Path) -> Option<Broker> {
    if !common::component_available("tansu", "tansu (cargo install tansu)") {
        return None;
    }
    let broker = Broker::start(&dir.join("broker.log"));
    broker.create_topic(METRICS, 4);
    broker.create_topic(STATE, 1);
    broker.create_topic(ANOMALIES, 1);
    Some(broker)
}

/// The record of queue `q`'s depth at `at_ms`, keyed by series, in prometheus-kafka-adapter's
/// JSON. All queues are one service's, so their anomalies belong to one incident.
fn depth_record(q: u64, value: u64, at_ms: i64) -> (String, String) {
    (
        format!("queue_depth{{queue=\"q{q}\"}}"),
        format!(
            r#"{{"name":"queue_depth","labels":{{"__name__":"queue_depth","job":"queues","queue":"q{q}","service":"queues"}},"value":"{value}","timestamp":{at_ms}}}"#
        ),
    )
}

/// A calm depth, or ten times that during a surge.
fn depth(n: u64, q: u64, surge: bool) -> u64 {
    let calm = 40 + (n * 7 + q) % 5;
    if surge {
        calm * 10
    } else {
        calm
    }
}

/// Every queue's depth, one sample each every 100 ms, until dropped; `surge` multiplies
/// them by ten.
struct Feeder {
    stop: Arc<AtomicBool>,
    surge: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Feeder {
    fn start(broker: &Broker) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let surge = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, surge, addr) = (stop.clone(), surge.clone(), broker.addr);
            std::thread::spawn(move || {
                let producer = Producer::new(addr);
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    let now = chrono::Utc::now().timestamp_millis();
                    let surge = surge.load(Ordering::SeqCst);
                    let samples: Vec<(String, String)> = (0..QUEUES)
                        .map(|q| depth_record(q, depth(n, q, surge), now))
                        .collect();
                    producer.send_all(METRICS, &samples);
                    n += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        Self {
            stop,
            surge,
            thread: Some(thread),
        }
    }

    fn surge(&self) {
        self.surge.store(true, Ordering::SeqCst);
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Feeder {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An `omen detect` of group `omen-detectors` on `broker`; `extra` is more of its `kafka:`
/// section, `rest` more of its configuration.
fn detector(dir: &Path, name: &str, broker: &Broker, extra: &str, rest: &str) -> LiveDetector {
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = format!(
        "listen: {addr}
kafka:
  brokers: '{}'
  group: omen-detectors
  topic: {METRICS}
  state_topic: {STATE}
  handoff_interval: 1s
{extra}
detector: {{ transform: none, warmup_points: 30, likelihood: {{ min_history: 30 }} }}
correlation: {{ window: 1m, quiet: 20s, onset_tolerance: 1500ms }}
{rest}
",
        broker.addr
    );
    LiveDetector::start(&config, addr, &dir.join(format!("{name}.log")))
}

/// Waits for `check` up to [`ACT_LIMIT`]; on timeout, says what the detectors logged and
/// counted.
fn wait<T>(what: &str, detectors: &[&LiveDetector], check: impl FnMut() -> Option<T>) -> T {
    common::wait_for_or(ACT_LIMIT, what, check, || {
        detectors
            .iter()
            .map(|d| {
                let counts: Vec<String> = d
                    .samples()
                    .into_iter()
                    .filter(|(k, _)| {
                        [
                            "evidence",
                            "samples_total",
                            "correlating",
                            "errors",
                            "points",
                            "incidents",
                        ]
                        .iter()
                        .any(|part| k.contains(part))
                    })
                    .map(|(k, v)| format!("{k} {v}"))
                    .collect();
                format!("{}\n{}", counts.join("\n"), log_tail(&d.log, 25))
            })
            .collect::<Vec<_>>()
            .join("\n---\n")
    })
}

fn value(detector: &LiveDetector, key: &str) -> f64 {
    detector.samples().get(key).copied().unwrap_or(0.0)
}

/// The queues whose series a detector models now (from its `omen_anomaly_score`).
fn scored_queues(detector: &LiveDetector) -> BTreeSet<String> {
    detector
        .samples()
        .keys()
        .filter(|k| k.starts_with("omen_anomaly_score{"))
        .filter_map(|k| k.split("queue=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

/// Waits until both detectors score and every queue is scored by exactly one of them;
/// returns which queues each scores.
fn wait_shared(a: &LiveDetector, b: &LiveDetector) -> (BTreeSet<String>, BTreeSet<String>) {
    let logs = || format!("{}\n---\n{}", log_tail(&a.log, 15), log_tail(&b.log, 15));
    let (on_a, on_b) = wait("both detectors to score", &[a, b], || {
        let (on_a, on_b) = (scored_queues(a), scored_queues(b));
        (on_a.len() + on_b.len() == QUEUES as usize && !on_a.is_empty() && !on_b.is_empty())
            .then_some((on_a, on_b))
    });
    assert!(on_a.is_disjoint(&on_b), "{on_a:?} {on_b:?}\n{}", logs());
    (on_a, on_b)
}

#[test]
fn detectors_in_a_group_score_each_series_once_and_a_stopped_ones_series_move_with_their_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(broker) = broker_in(dir.path()) else {
        return;
    };
    let mut feeder = Feeder::start(&broker);
    let properties = "  properties: { session.timeout.ms: '6000', heartbeat.interval.ms: '500' }";
    let a = detector(dir.path(), "a", &broker, properties, "");
    let b = detector(dir.path(), "b", &broker, properties, "");
    let (_, on_b) = wait_shared(&a, &b);
    std::thread::sleep(Duration::from_millis(2500));
    let handed_in = "omen_detector_series_handed_in_total";
    let before = value(&a, handed_in);
    // A detector stopped (SIGTERM) leaves the group; the survivor takes its partitions
    // and, with them, the model state it published for its series. (A kill -9 is not
    // tested: tansu 0.6 never moves a dead member's partitions, see the closing note.)
    b.process.signal(15);
    let start = Instant::now();
    while scored_queues(&a).len() != QUEUES as usize {
        assert!(
            start.elapsed() < ACT_LIMIT,
            "the survivor scores {:?}\n{}",
            scored_queues(&a),
            log_tail(&a.log, 30)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let taken = value(&a, handed_in) - before;
    assert!(
        taken >= on_b.len() as f64,
        "took over {taken} series, the stopped detector had {}\n{}",
        on_b.len(),
        log_tail(&a.log, 30)
    );
    feeder.stop();
}

/// The incident ids of the OmenIncident alerts received with `status`.
fn incident_ids(webhook: &WebhookReceiver, status: &str) -> BTreeSet<String> {
    webhook
        .alerts()
        .iter()
        .filter(|a| a["labels"]["alertname"] == "OmenIncident" && a["status"] == status)
        .filter_map(|a| a["labels"]["incident"].as_str().map(str::to_owned))
        .collect()
}

/// The series of the incidents a detector holds open.
fn open_members(detector: &LiveDetector) -> Vec<(String, BTreeSet<String>)> {
    detector.incidents()["open"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|incident| {
            let id = incident["id"].as_str().unwrap_or("").to_owned();
            let members = incident["members"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m["labels"]["queue"].as_str().map(str::to_owned))
                .collect();
            (id, members)
        })
        .collect()
}

#[test]
fn one_correlator_raises_one_incident_from_both_detectors_anomalies_and_hands_it_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(broker) = broker_in(dir.path()) else {
        return;
    };
    let webhook = WebhookReceiver::start();
    let kafka = format!("  anomalies_topic: {ANOMALIES}");
    let alerting = format!(
        "alerting: {{ webhook: ['http://{}/'], resend: 2s, timeout: 2s }}",
        webhook.addr
    );
    let a = detector(dir.path(), "a", &broker, &kafka, &alerting);
    let b = detector(dir.path(), "b", &broker, &kafka, &alerting);
    let logs = || format!("{}\n---\n{}", log_tail(&a.log, 25), log_tail(&b.log, 25));
    let both = [&a, &b];
    let total = |key: &str| value(&a, key) + value(&b, key);
    // A new group's first correlator reads the anomalies topic from its end, so evidence
    // sent before one holds the partition is never correlated: samples flow once it does.
    wait("a correlator", &both, || {
        (total("omen_detector_correlating") == 1.0).then_some(())
    });
    let mut feeder = Feeder::start(&broker);
    let (on_a, on_b) = wait_shared(&a, &b);
    // Both have learnt their series (30 points to warm up, 30 of likelihood history).
    wait("the detectors to learn", &both, || {
        (total("omen_detector_points_total") >= 70.0 * QUEUES as f64).then_some(())
    });
    feeder.surge();
    let fired = wait("an OmenIncident at the webhook", &both, || {
        let ids = incident_ids(&webhook, "firing");
        (!ids.is_empty()).then_some(ids)
    });
    // Every queue joins the one incident, those scored by either detector.
    let members = wait("every queue in the incident", &both, || {
        both.iter()
            .flat_map(|d| open_members(d))
            .find(|(_, queues)| queues.len() == QUEUES as usize)
    });
    feeder.stop();
    // Everything the detectors sent was correlated (the role may have moved while the
    // group formed), and there was only that incident, held by the one correlator.
    let published = "omen_detector_evidence_published_total";
    let correlated = "omen_detector_evidence_correlated_total";
    wait("the evidence to be correlated", &both, || {
        std::thread::sleep(Duration::from_millis(500));
        let sent = total(published);
        (sent > 0.0 && total(correlated) == sent).then_some(())
    });
    assert!(
        value(&a, published) > 0.0 && value(&b, published) > 0.0,
        "{}",
        logs()
    );
    let correlating = "omen_detector_correlating";
    let (correlator, other) = match (value(&a, correlating), value(&b, correlating)) {
        (1.0, 0.0) => (&a, &b),
        (0.0, 1.0) => (&b, &a),
        both => panic!("correlating: {both:?}\n{}", logs()),
    };
    assert_eq!(
        open_members(correlator),
        vec![members.clone()],
        "{}",
        logs()
    );
    assert!(open_members(other).is_empty(), "{}", logs());
    assert_eq!(total("omen_incidents_total"), 1.0, "{}", logs());
    assert_eq!(fired, BTreeSet::from([members.0.clone()]), "{}", logs());
    assert_eq!(incident_ids(&webhook, "firing"), fired, "{}", logs());
    let all: BTreeSet<String> = on_a.union(&on_b).cloned().collect();
    assert_eq!(members.1, all);
    // The correlator stopped, the other detector becomes the correlator with the open
    // incident.
    correlator.process.signal(15);
    wait("the other detector to correlate", &[&a, &b], || {
        (value(other, correlating) == 1.0).then_some(())
    });
    let open = open_members(other);
    assert!(
        open.is_empty() || open == vec![members.clone()],
        "{open:?}\n{}",
        logs()
    );
    // It resolves the incident once the queues have been quiet for 20 s, and says so.
    let resolved = wait("the incident resolved", &[other], || {
        let resolved = other.incidents()["resolved"].as_array().cloned()?;
        (!resolved.is_empty()).then_some(resolved)
    });
    assert_eq!(resolved.len(), 1, "{resolved:?}");
    assert_eq!(resolved[0]["id"], members.0.as_str());
    let root = resolved[0]["members"][0]["series"].clone();
    wait("the resolution at the webhook", &[other], || {
        webhook
            .alerts()
            .iter()
            .any(|a| {
                a["status"] == "resolved"
                    && a["labels"]["incident"] == members.0.as_str()
                    && a["labels"]["root_cause"] == root
            })
            .then_some(())
    });
    assert_eq!(incident_ids(&webhook, "firing"), fired, "{}", logs());
}

#[test]
fn a_detector_whose_broker_stops_answering_for_30_s_scores_every_sample_once_it_is_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(broker) = broker_in(dir.path()) else {
        return;
    };
    // librdkafka's default session (45 s) outlasts the outage, so the detector keeps its
    // partitions.
    let kafka = format!("  anomalies_topic: {ANOMALIES}");
    let a = detector(dir.path(), "a", &broker, &kafka, "");
    wait("the detector to correlate", &[&a], || {
        (value(&a, "omen_detector_correlating") == 1.0).then_some(())
    });
    let producer = Producer::new(broker.addr);
    // 40 calm samples per queue, one second apart and ending now; after the outage 40
    // more, half a second apart and ending then, the last 20 surging.
    let sent = AtomicU64::new(0);
    let produce = |points: std::ops::Range<u64>, step_ms: i64| {
        let start_ms = chrono::Utc::now().timestamp_millis() - 40 * step_ms;
        for (i, n) in points.enumerate() {
            let at_ms = start_ms + i as i64 * step_ms;
            let records: Vec<(String, String)> = (0..QUEUES)
                .map(|q| depth_record(q, depth(n, q, n >= 60), at_ms))
                .collect();
            producer.send_all(METRICS, &records);
            sent.fetch_add(QUEUES, Ordering::SeqCst);
        }
    };
    let kafka_samples = "omen_detector_samples_total{source=\"kafka\"}";
    // The detector starts at the end of the topic once it has found where that is: ping
    // until it reads, then count from there.
    wait("the detector to read", &[&a], || {
        let now = chrono::Utc::now().timestamp_millis();
        producer.send_all(METRICS, &[depth_record(QUEUES, 1, now)]);
        std::thread::sleep(Duration::from_millis(300));
        (value(&a, kafka_samples) > 0.0).then_some(())
    });
    std::thread::sleep(Duration::from_secs(1));
    let pings = value(&a, kafka_samples);
    produce(0..40, 1000);
    wait("the calm samples scored", &[&a], || {
        (value(&a, kafka_samples) == pings + sent.load(Ordering::SeqCst) as f64).then_some(())
    });
    broker.pause();
    let frozen = Instant::now();
    while frozen.elapsed() < Duration::from_secs(30) {
        // The detector keeps serving while the broker is away.
        assert!(
            common::http_get(a.addr, "/metrics").is_some_and(|(status, _)| status == 200),
            "{}",
            log_tail(&a.log, 20)
        );
        std::thread::sleep(Duration::from_secs(3));
    }
    broker.resume();
    produce(40..80, 500);
    let total = sent.load(Ordering::SeqCst) as f64;
    wait("every sample scored", &[&a], || {
        (value(&a, kafka_samples) == pings + total).then_some(())
    });
    assert_eq!(total, 80.0 * QUEUES as f64);
    // The surge's anomalies went out to the anomalies topic and came back to be
    // correlated, all of them.
    let anomalies = wait("the evidence correlated", &[&a], || {
        std::thread::sleep(Duration::from_millis(500));
        let published = value(&a, "omen_detector_evidence_published_total");
        (published > 0.0 && value(&a, "omen_detector_evidence_correlated_total") == published)
            .then_some(published)
    });
    assert!(anomalies >= QUEUES as f64, "{}", log_tail(&a.log, 20));
    assert_eq!(
        value(&a, "omen_incidents_total"),
        1.0,
        "{}",
        log_tail(&a.log, 20)
    );
}
