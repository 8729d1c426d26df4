//! `omen demo --kafka HOST:PORT --redis HOST:PORT`: the inventory scenario on real servers.
//! A simulated inventory service takes orders: `DECRBY` of the SKU's stock in Redis, a log
//! line, then the "stock decremented" event produced to Kafka and a second log line. For a
//! set number of orders it "dies" between the two steps: Redis was decremented, no event
//! and no second line follow. A consumer applies the events to a database (a Redis hash),
//! committing as it goes. An agent in the same process watches it three ways: the pair
//! rule over the service's log (decrements without their event within 30 s of log time),
//! the consumer-lag probe on the database writer's group, and the reconciliation probe
//! comparing Redis with the events. `--check` fails unless the pair metrics and the
//! reconciliation both count exactly the injected losses (zero drift with none).

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use omen_agent::clock::SystemClock;
use omen_agent::config::DurationConfig;
use omen_agent::probe::{KafkaLagConfig, KafkaSide, ReconcileConfig, RedisSide};
use omen_agent::registry::Value;
use omen_agent::runtime::{Agent, AgentConfig, SourceConfig};
use omen_agent::source::StartAt;
use omen_agent::state::AgentState;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;

/// SKUs the service sells, each stocked with `STOCK` units.
const SKUS: u64 = 10;
const STOCK: i64 = 1_000_000;
/// Log time between two orders; the pair rule's 30 s timeout passes within 150 orders.
const ORDER_SPACING_MS: i64 = 200;
/// How long the demo waits for the watchers to agree.
const SETTLE: Duration = Duration::from_secs(120);

/// What `omen demo --kafka … --redis …` was asked for.
pub struct KafkaDemoOptions {
    pub kafka: SocketAddr,
    pub redis: SocketAddr,
    pub orders: u64,
    /// Orders whose event is lost (the service dies between Redis and Kafka).
    pub lost: u64,
    pub check: bool,
}

/// What the agent's three watchers say.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Watched {
    unmatched: f64,
    matched: f64,
    drifting_keys: f64,
    drift: f64,
    events_folded: f64,
    lag: f64,
}

/// Runs the scenario; Ok(false) when `--check` finds a disagreement.
pub fn run(options: &KafkaDemoOptions) -> anyhow::Result<bool> {
    let run_id = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let topic = format!("omen-demo-{run_id}-stock");
    let group = format!("omen-demo-{run_id}-db");
    let prefix = format!("omen-demo:{run_id}:stock:");
    let brokers = options.kafka.to_string();
    create_topic(&brokers, &topic)?;
    let lost: BTreeSet<u64> = (0..options.lost)
        .map(|k| (k * 2 + 1) * options.orders / (options.lost * 2).max(1))
        .collect();
    if lost.len() as u64 != options.lost || options.lost > options.orders {
        bail!("cannot lose {} of {} orders", options.lost, options.orders);
    }

    let dir = tempfile::tempdir().context("temporary directory")?;
    let log = dir.path().join("inventory.log");
    std::fs::write(&log, "").context("service log")?;
    let rules = dir.path().join("inventory.yaml");
    std::fs::write(&rules, super::RULES).context("rules")?;
    let agent = Agent::start(
        agent_config(options, rules, &log, &topic, &group, &prefix),
        Arc::new(SystemClock),
    )?;
    let state = agent.state();

    let redis_url = format!("redis://{}", options.redis);
    let mut redis = redis::Client::open(redis_url.as_str())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
        .context("connect to redis")?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("acks", "all")
        .create()
        .context("kafka producer")?;
    let stop_writer = Arc::new(AtomicBool::new(false));
    let writer = start_db_writer(&brokers, &topic, &group, &redis_url, stop_writer.clone())?;

    println!(
        "inventory service: {} orders over {SKUS} SKUs, losing the event of {} of them (topic {topic})",
        options.orders, options.lost
    );
    take_orders(options, &lost, &log, &prefix, &mut redis, &producer, &topic)?;
    println!(
        "orders taken; waiting for the agent's pair rule, lag probe and reconciliation to agree"
    );

    let (last, ok) = settle(options, &lost, &state, &group, &topic);
    stop_writer.store(true, Ordering::Release);
    let _ = writer.join();
    let _ = agent.stop();
    cleanup(&mut redis, &prefix, &brokers, &topic);

    println!(
        "summary: {} events lost by the service; the pair rule counted {} decrements without their event; \
         the reconciliation found {} SKUs drifting by {} units; the db writer's lag is {}",
        options.lost, last.unmatched, last.drifting_keys, last.drift, last.lag
    );
    println!(
        "{}",
        if ok {
            "both watchers count exactly the injected losses"
        } else {
            "MISMATCH: the watchers do not count the injected losses"
        }
    );
    Ok(ok || !options.check)
}

/// The service takes the orders: each decrements Redis, logs it, then publishes its event
/// and logs that, except for the `lost` ones, where it dies between the two.
fn take_orders(
    options: &KafkaDemoOptions,
    lost: &BTreeSet<u64>,
    log: &std::path::Path,
    prefix: &str,
    redis: &mut redis::Connection,
    producer: &BaseProducer,
    topic: &str,
) -> anyhow::Result<()> {
    let mut service = OpenOptions::new()
        .append(true)
        .open(log)
        .context("service log")?;
    let start_ms = chrono::Utc::now().timestamp_millis();
    for sku in 0..SKUS {
        let key = format!("{prefix}s{sku}");
        redis::cmd("SET")
            .arg(&key)
            .arg(STOCK)
            .query::<()>(redis)
            .context("SET")?;
        send(
            producer,
            topic,
            &format!("s{sku}"),
            &format!(r#"{{"sku":"s{sku}","delta":{STOCK}}}"#),
        )?;
    }
    for order in 0..options.orders {
        let sku = format!("s{}", order % SKUS);
        let at = start_ms + order as i64 * ORDER_SPACING_MS;
        redis::cmd("DECRBY")
            .arg(format!("{prefix}{sku}"))
            .arg(1)
            .query::<i64>(redis)
            .context("DECRBY")?;
        writeln!(
            service,
            "{} level=info msg=\"stock decremented\" order_id=o{order} sku={sku} qty=1 backend=redis",
            rfc3339(at)
        )?;
        if lost.contains(&order) {
            continue; // the service died here: no event, no second line
        }
        send(
            producer,
            topic,
            &sku,
            &format!(r#"{{"sku":"{sku}","delta":-1,"order_id":"o{order}"}}"#),
        )?;
        writeln!(
            service,
            "{} level=info msg=\"event published\" order_id=o{order} topic=stock backend=kafka",
            rfc3339(at + 40)
        )?;
    }
    // Log time moves on past the last decrement's timeout: two lines, as a jump longer
    // than a pair timeout moves the agent's clock only once a second line confirms it.
    let end = start_ms + options.orders as i64 * ORDER_SPACING_MS + 60_000;
    writeln!(service, "{} level=info msg=\"shift ended\"", rfc3339(end))?;
    writeln!(
        service,
        "{} level=info msg=\"service stopped\"",
        rfc3339(end + 1)
    )?;
    service.flush()?;
    producer
        .flush(Duration::from_secs(30))
        .context("the events were not all acknowledged")?;
    Ok(())
}

/// Polls the agent's watchers until they agree with the injected losses (and go on
/// agreeing past the reconciliation's grace period) or [`SETTLE`] passes; returns what
/// they said last, and whether that agrees.
fn settle(
    options: &KafkaDemoOptions,
    lost: &BTreeSet<u64>,
    state: &AgentState,
    group: &str,
    topic: &str,
) -> (Watched, bool) {
    let expected_events = (SKUS + options.orders - options.lost) as f64;
    let watched = |state: &AgentState| -> Watched {
        let scalar = |value: Option<&Value>| match value {
            Some(Value::Scalar(v)) => *v,
            _ => 0.0,
        };
        let none: [(&str, &str); 0] = [];
        let (unmatched, matched) = state.read_registry(|registry, _| {
            (
                scalar(registry.get("stock_event_unmatched_total", &none)),
                scalar(registry.get("stock_event_matched_total", &none)),
            )
        });
        let probes = state.probes();
        let registry = probes.registry();
        let check = [("check", "stock")];
        Watched {
            unmatched,
            matched,
            drifting_keys: scalar(registry.get("omen_reconcile_keys_drifting", &check)),
            drift: scalar(registry.get("omen_reconcile_drift", &check)),
            events_folded: scalar(registry.get("omen_reconcile_events_total", &check)),
            lag: scalar(registry.get(
                "omen_kafka_consumer_group_lag",
                &[("group", group), ("topic", topic)],
            )),
        }
    };
    let lost_skus = lost.iter().map(|o| o % SKUS).collect::<BTreeSet<_>>().len() as f64;
    let want = |w: &Watched| {
        w.unmatched == options.lost as f64
            && w.matched == (options.orders - options.lost) as f64
            && w.events_folded >= expected_events
            && w.drift == options.lost as f64
            && w.drifting_keys == lost_skus
            && w.lag == 0.0
    };
    let started = Instant::now();
    let mut last = Watched::default();
    let mut agreed_since: Option<Instant> = None;
    while started.elapsed() < SETTLE {
        let now = watched(state);
        if now != last {
            println!(
                "  pair rule: {} matched, {} unmatched | reconciliation: {} of {} events folded, {} SKUs drifting by {} | db writer lag {}",
                now.matched, now.unmatched, now.events_folded, expected_events, now.drifting_keys, now.drift, now.lag
            );
            last = now;
        }
        // Agreement must hold past the reconciliation's grace period, so no drift is
        // still hiding in it.
        match (want(&now), agreed_since) {
            (true, Some(since)) if since.elapsed() > Duration::from_secs(3) => break,
            (true, None) => agreed_since = Some(Instant::now()),
            (true, Some(_)) => {}
            (false, _) => agreed_since = None,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let agreed = want(&last);
    (last, agreed)
}

fn agent_config(
    options: &KafkaDemoOptions,
    rules: PathBuf,
    log: &std::path::Path,
    topic: &str,
    group: &str,
    prefix: &str,
) -> AgentConfig {
    let mut config = AgentConfig::with_rules(rules);
    config.poll_interval = DurationConfig(Duration::from_millis(50));
    config.sources.push(SourceConfig::File {
        name: Some("inventory".into()),
        paths: vec![log.display().to_string()],
        start_at: StartAt::Beginning,
        rules: None,
        rotated: Vec::new(),
    });
    let brokers = options.kafka.to_string();
    config.probes.kafka_lag.push(KafkaLagConfig {
        brokers: brokers.clone(),
        groups: vec![group.to_owned()],
        topics: vec![topic.to_owned()],
        interval: DurationConfig(Duration::from_millis(500)),
        timeout: DurationConfig(Duration::from_secs(5)),
        properties: Default::default(),
    });
    config.probes.reconcile.push(ReconcileConfig {
        name: "stock".into(),
        redis: RedisSide {
            url: format!("redis://{}", options.redis),
            keys: Some(format!("{prefix}*")),
            hash: None,
            counter: None,
        },
        kafka: KafkaSide {
            brokers,
            topic: topic.to_owned(),
            key: Some("sku".into()),
            key_prefix: prefix.to_owned(),
            delta: Some("delta".into()),
            scale: 1.0,
            properties: Default::default(),
        },
        interval: DurationConfig(Duration::from_millis(500)),
        grace: DurationConfig(Duration::from_secs(2)),
        timeout: DurationConfig(Duration::from_secs(5)),
    });
    config
}

fn create_topic(brokers: &str, topic: &str) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("kafka admin client")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let results = runtime
        .block_on(admin.create_topics(
            &[NewTopic::new(topic, 3, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))),
        ))
        .with_context(|| format!("create topic {topic} on {brokers}"))?;
    for result in results {
        result.map_err(|(name, code)| anyhow::anyhow!("create topic {name}: {code}"))?;
    }
    Ok(())
}

fn send(producer: &BaseProducer, topic: &str, key: &str, value: &str) -> anyhow::Result<()> {
    let mut record = BaseRecord::to(topic).key(key).payload(value);
    loop {
        match producer.send(record) {
            Ok(()) => break,
            Err((
                rdkafka::error::KafkaError::MessageProduction(
                    rdkafka::types::RDKafkaErrorCode::QueueFull,
                ),
                back,
            )) => {
                record = back;
                producer.poll(Duration::from_millis(10));
            }
            Err((error, _)) => return Err(error).context("produce"),
        }
    }
    producer.poll(Duration::ZERO);
    Ok(())
}

/// The database writer: applies each event to a Redis hash and commits what it applied.
fn start_db_writer(
    brokers: &str,
    topic: &str,
    group: &str,
    redis_url: &str,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .context("db writer consumer")?;
    consumer.subscribe(&[topic]).context("subscribe")?;
    let mut redis = redis::Client::open(redis_url)
        .and_then(|c| c.get_connection())
        .context("db writer redis")?;
    let table = format!("{topic}:db");
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::Acquire) {
            let Some(Ok(message)) = consumer.poll(Duration::from_millis(100)) else {
                continue;
            };
            let event: Option<serde_json::Value> = message
                .payload()
                .and_then(|p| serde_json::from_slice(p).ok());
            if let Some(event) = event {
                let sku = event["sku"].as_str().unwrap_or("");
                let delta = event["delta"].as_i64().unwrap_or(0);
                let _: Result<i64, _> = redis::cmd("HINCRBY")
                    .arg(&table)
                    .arg(sku)
                    .arg(delta)
                    .query(&mut redis);
            }
            let _ = consumer.commit_message(&message, CommitMode::Sync);
        }
        let _: Result<(), _> = redis::cmd("DEL").arg(&table).query(&mut redis);
    }))
}

/// Removes the demo's keys and topic.
fn cleanup(redis: &mut redis::Connection, prefix: &str, brokers: &str, topic: &str) {
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query(redis)
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL").arg(keys).query(redis);
    }
    let deleted = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create::<AdminClient<DefaultClientContext>>()
        .ok()
        .zip(
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .ok(),
        )
        .map(|(admin, runtime)| {
            runtime.block_on(admin.delete_topics(&[topic], &AdminOptions::new()))
        });
    if !matches!(deleted, Some(Ok(_))) {
        eprintln!("note: topic {topic} was left on the broker");
    }
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
