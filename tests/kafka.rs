//! The agent's Kafka source against a real Kafka-protocol broker (`tansu`, started on
//! 127.0.0.1 in memory): every record counted exactly once across `kill -9`, across
//! consumer-group rebalances between agents, and across a broker that stops answering for
//! 30 s; the probes and the Kafka demo against it and a real Redis. (The detector on Kafka
//! is in `detector_kafka.rs`.) Outside CI the tests skip when `tansu` is not installed;
//! `.ci/setup` installs it.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{free_port, log_tail, wait_for, Broker, LiveAgent, Producer};

const TOPIC: &str = "logs";
const SHOPS: u64 = 3;

const RULES: &str = "parser: { format: logfmt }
rules:
  - name: orders_total
    type: counter
    help: Orders, by shop.
    match: { msg: order }
    labels: { shop: shop }
  - name: order_items_total
    type: counter
    help: Items ordered, by shop.
    match: { msg: order }
    labels: { shop: shop }
    value: qty
";

/// Record `i`: an order of `i % 5 + 1` items in shop `i % SHOPS`, keyed by order so the
/// records spread over the partitions.
fn record(i: u64) -> (String, String) {
    (
        format!("o{i}"),
        format!("msg=order shop=s{} qty={} id=o{i}", i % SHOPS, i % 5 + 1),
    )
}

fn produce(producer: &Producer, range: std::ops::Range<u64>) {
    let records: Vec<(String, String)> = range.map(record).collect();
    producer.send_all(TOPIC, &records);
}

/// What the rules must count for records `0..n`: orders and items per shop.
fn expected(n: u64) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for shop in 0..SHOPS {
        let orders = (0..n).filter(|i| i % SHOPS == shop);
        let items: u64 = orders.clone().map(|i| i % 5 + 1).sum();
        out.push((
            format!("orders_total{{shop=\"s{shop}\"}}"),
            orders.count() as f64,
        ));
        out.push((
            format!("order_items_total{{shop=\"s{shop}\"}}"),
            items as f64,
        ));
    }
    out
}

/// One agent of the `omen-agents` group, with its own checkpoint in `dir`.
struct GroupAgent {
    config: PathBuf,
    log: PathBuf,
    addr: SocketAddr,
    agent: Option<LiveAgent>,
}

/// librdkafka settings that let a killed member's partitions move on within seconds.
const FAST_GROUP: &str = "{ session.timeout.ms: '6000', heartbeat.interval.ms: '500' }";

impl GroupAgent {
    fn new(dir: &Path, name: &str, broker: &Broker) -> Self {
        Self::with_properties(dir, name, broker, FAST_GROUP)
    }

    /// An agent whose Kafka source has these librdkafka `properties` (a YAML mapping).
    fn with_properties(dir: &Path, name: &str, broker: &Broker, properties: &str) -> Self {
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let rules = dir.join("rules.yaml");
        std::fs::write(&rules, RULES).expect("rules");
        let config = dir.join(format!("{name}.yaml"));
        std::fs::write(
            &config,
            format!(
                "rules: {rules}
sources:
  - type: kafka
    name: logs
    brokers: {broker}
    topics: [{TOPIC}]
    group: omen-agents
    properties: {properties}
server: {{ listen: '{addr}' }}
checkpoint: {{ path: {checkpoint}, interval: 1s }}
poll_interval: 50ms
",
                rules = rules.display(),
                broker = broker.addr,
                checkpoint = dir.join(format!("{name}.checkpoint")).display(),
            ),
        )
        .expect("agent config");
        Self {
            config,
            log: dir.join(format!("{name}.log")),
            addr,
            agent: None,
        }
    }

    fn start(&mut self) {
        self.agent = Some(LiveAgent::start_config(&self.config, self.addr, &self.log));
    }

    fn kill(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            agent.process.kill();
        }
    }

    fn value(&self, key: &str) -> f64 {
        self.agent
            .as_ref()
            .and_then(|a| a.samples().get(key).copied())
            .unwrap_or(0.0)
    }
}

/// Waits until the agents together count exactly what records `0..n` hold, then checks
/// that nothing more arrives (no record counted twice).
fn assert_counted_once(agents: &[&GroupAgent], n: u64) {
    let total = |key: &str| agents.iter().map(|a| a.value(key)).sum::<f64>();
    let want = expected(n);
    let all_counted = || want.iter().all(|(key, value)| total(key) == *value);
    let logs = || {
        agents
            .iter()
            .map(|a| log_tail(&a.log, 15))
            .collect::<Vec<_>>()
            .join("\n---\n")
    };
    let start = std::time::Instant::now();
    while !all_counted() {
        let seen: Vec<(String, f64)> = want.iter().map(|(k, _)| (k.clone(), total(k))).collect();
        assert!(
            want.iter().all(|(key, value)| total(key) <= *value),
            "counted twice: {seen:?}, want {want:?}\n{}",
            logs()
        );
        assert!(
            start.elapsed() < Duration::from_secs(90),
            "not all counted: {seen:?}, want {want:?}\n{}",
            logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_secs(2));
    for (key, value) in &want {
        assert_eq!(total(key), *value, "{key} after settling\n{}", logs());
    }
}

fn broker_in(dir: &Path) -> Option<Broker> {
    if !common::component_available("tansu", "tansu (cargo install tansu)") {
        return None;
    }
    let broker = Broker::start(&dir.join("broker.log"));
    broker.create_topic(TOPIC, 3);
    Some(broker)
}

#[test]
fn every_record_counts_once_across_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(broker) = broker_in(dir.path()) else {
        return;
    };
    let producer = Producer::new(broker.addr);
    let mut agent = GroupAgent::new(dir.path(), "a", &broker);
    agent.start();
    // Records keep arriving while the agent is killed and restarted three times.
    for round in 0..4 {
        produce(&producer, round * 5_000..(round + 1) * 5_000);
        wait_for(common::LIMIT, "the agent to count some records", || {
            (agent.value(&format!("orders_total{{shop=\"s{}\"}}", round % SHOPS)) > 0.0)
                .then_some(())
        });
        if round < 3 {
            agent.kill();
            agent.start();
        }
    }
    assert_counted_once(&[&agent], 20_000);
}

#[test]
fn agents_joining_the_group_share_the_partitions_and_count_each_record_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(broker) = broker_in(dir.path()) else {
        return;
    };
    let producer = Producer::new(broker.addr);
    let mut a = GroupAgent::new(dir.path(), "a", &broker);
    let mut b = GroupAgent::new(dir.path(), "b", &broker);
    let mut c = GroupAgent::new(dir.path(), "c", &broker);
    a.start();
    produce(&producer, 0..6_000);
    wait_for(common::LIMIT, "the first agent to count", || {
        (a.value("orders_total{shop=\"s0\"}") > 0.0).then_some(())
    });
    // Each join rebalances the group while records are in flight.
    b.start();
    produce(&producer, 6_000..12_000);
    c.start();
    produce(&producer, 12_000..18_000);
    assert_counted_once(&[&a, &b, &c], 18_000);
    // The partitions were shared: more than one agent counted.
    let busy = [&a, &b, &c]
        .iter()
        .filter(|g| g.value("orders_total{shop=\"s0\"}") > 0.0)
        .count();
    assert!(busy >= 2, "only {busy} agent(s) got partitions");
}

#[test]
fn a_broker_that_stops_answering_for_30_s_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(broker) = broker_in(dir.path()) else {
        return;
    };
    let producer = Producer::new(broker.addr);
    // librdkafka's default session timeout (45 s) outlasts the outage, so the agent keeps
    // its partitions. (With a session shorter than the outage, tansu 0.6 left the
    // member's JoinGroup unanswered after the outage: see the closing note.)
    let mut agent = GroupAgent::with_properties(dir.path(), "a", &broker, "{}");
    agent.start();
    produce(&producer, 0..3_000);
    assert_counted_once(&[&agent], 3_000);
    broker.pause();
    std::thread::sleep(Duration::from_secs(30));
    // The agent kept serving its metrics while the broker was away.
    assert_eq!(agent.value("orders_total{shop=\"s0\"}"), 1_000.0);
    broker.resume();
    produce(&producer, 3_000..6_000);
    assert_counted_once(&[&agent], 6_000);
}

/// Consumes `count` records of `topic` as group `group` and commits what it consumed.
fn consume_and_commit(broker: &Broker, group: &str, topic: &str, count: usize) {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", broker.addr.to_string())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut positions = rdkafka::TopicPartitionList::new();
    let mut consumed = 0;
    let start = std::time::Instant::now();
    while consumed < count {
        assert!(start.elapsed() < common::LIMIT, "consumed only {consumed}");
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consume");
            use rdkafka::Message as _;
            positions
                .add_partition_offset(
                    message.topic(),
                    message.partition(),
                    rdkafka::Offset::Offset(message.offset() + 1),
                )
                .expect("position");
            consumed += 1;
        }
    }
    consumer
        .commit(&positions, CommitMode::Sync)
        .expect("commit");
}

#[test]
fn consumer_lag_is_what_was_produced_minus_what_was_consumed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(broker) = broker_in(dir.path()) else {
        return;
    };
    broker.create_topic("orders", 3);
    // The group stops mid-way through what was produced: see `one_record_per_batch`.
    let producer = Producer::one_record_per_batch(broker.addr);
    let records: Vec<(String, String)> = (0..90).map(record).collect();
    producer.send_all("orders", &records);
    consume_and_commit(&broker, "billing", "orders", 60);

    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES).expect("rules");
    let config = dir.path().join("probe.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: {}
server: {{ listen: '{addr}' }}
probes:
  kafka_lag:
    - {{ brokers: '{}', groups: [billing, nobody], topics: [orders], interval: 300ms }}
",
            rules.display(),
            broker.addr
        ),
    )
    .expect("config");
    let agent = LiveAgent::start_config(&config, addr, &dir.path().join("agent.log"));
    let group_lag = |group: &str| {
        agent
            .samples()
            .get(&format!(
                "omen_kafka_consumer_group_lag{{group=\"{group}\",topic=\"orders\"}}"
            ))
            .copied()
    };
    let log = dir.path().join("agent.log");
    let start = std::time::Instant::now();
    while group_lag("billing") != Some(30.0) {
        assert!(
            start.elapsed() < common::LIMIT,
            "no lag of 30 for billing: {:#?}\n{}",
            agent
                .samples()
                .iter()
                .filter(|(k, _)| k.contains("kafka"))
                .collect::<Vec<_>>(),
            log_tail(&log, 20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A group that consumed nothing lags by everything.
    wait_for(
        common::LIMIT,
        "a lag of 90 for a group that consumed nothing",
        || (group_lag("nobody") == Some(90.0)).then_some(()),
    );
    let samples = agent.samples();
    let partitions: Vec<(&String, &f64)> = samples
        .iter()
        .filter(|(k, _)| k.starts_with("omen_kafka_consumer_lag{group=\"billing\""))
        .collect();
    assert_eq!(partitions.len(), 3, "{samples:#?}");
    assert_eq!(partitions.iter().map(|(_, v)| **v).sum::<f64>(), 30.0);
    for (key, lag) in &partitions {
        let age = samples[&key.replace(
            "omen_kafka_consumer_lag{",
            "omen_kafka_consumer_lag_seconds{",
        )];
        // Records waiting have an age; a caught-up partition has none.
        assert_eq!(age > 0.0, **lag > 0.0, "{key}: lag {lag}, age {age}");
        assert!(age < 120.0, "{key}: age {age}");
    }

    consume_and_commit(&broker, "billing", "orders", 30);
    wait_for(common::LIMIT, "billing caught up", || {
        (group_lag("billing") == Some(0.0)).then_some(())
    });
}

#[test]
fn cdc_delete_counts_equal_the_delete_events_produced() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some(broker) = broker_in(dir.path()) else {
        return;
    };
    broker.create_topic("shop.changes", 3);
    // Debezium events for two tables, half of them in Kafka Connect's schema envelope,
    // each delete followed by its tombstone (a record without a value).
    let producer = Producer::new(broker.addr);
    let mut deletes = [0u64; 2];
    let mut order_deletes_by_status = std::collections::BTreeMap::new();
    let mut events = Vec::new();
    for i in 0..3_000u64 {
        let table = ["orders", "stock"][(i % 2) as usize];
        let op = ["c", "u", "d", "r"][(i % 4) as usize];
        let op = if i % 7 == 0 { "d" } else { op };
        let before = if op == "c" || op == "r" {
            "null".to_owned()
        } else {
            format!(r#"{{"id":{i},"status":"s{}"}}"#, i % 3)
        };
        let change = format!(
            r#"{{"op":"{op}","ts_ms":{},"before":{before},"after":null,"source":{{"db":"shop","table":"{table}"}}}}"#,
            1_752_483_600_000 + i
        );
        let value = if i % 2 == 0 {
            format!(r#"{{"schema":{{"type":"struct"}},"payload":{change}}}"#)
        } else {
            change
        };
        if op == "d" {
            deletes[(i % 2) as usize] += 1;
            if table == "orders" {
                *order_deletes_by_status
                    .entry(format!("s{}", i % 3))
                    .or_insert(0u64) += 1;
            }
        }
        events.push((format!("{table}-{i}"), value));
    }
    producer.send_all("shop.changes", &events);
    let tombstones = Producer::new(broker.addr);
    tombstones.send_tombstones(
        "shop.changes",
        events.iter().step_by(7).map(|(k, _)| k.as_str()),
    );

    let rules = dir.path().join("cdc.yaml");
    std::fs::copy(common::repo_root().join("examples/agent/cdc.yaml"), &rules).expect("rules");
    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let config = dir.path().join("cdc-agent.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: {}
sources:
  - {{ type: kafka, brokers: '{}', topics: [shop.changes], group: cdc-agents }}
server: {{ listen: '{addr}' }}
",
            rules.display(),
            broker.addr
        ),
    )
    .expect("config");
    let agent = LiveAgent::start_config(&config, addr, &dir.path().join("agent.log"));
    for (table, want) in ["orders", "stock"].iter().zip(deletes) {
        agent.wait_value(
            &format!("hard_deletes_total{{table=\"{table}\"}}"),
            want as f64,
        );
    }
    // The orders' deletes, by the status the deleted row had.
    for (status, want) in order_deletes_by_status {
        agent.wait_value(
            &format!("order_deletes_total{{status=\"{status}\",table=\"orders\"}}"),
            want as f64,
        );
    }
    // Tombstones are read past, and every change event parsed.
    let samples = agent.samples();
    let unusable: f64 = samples
        .iter()
        .filter(|(k, _)| k.starts_with("omen_agent_errors_total"))
        .map(|(_, v)| v)
        .sum();
    assert_eq!(unusable, 0.0, "{samples:#?}");
}

/// The reconciliation probe's gauges for `check`: (keys drifting, total drift).
fn drift(agent: &LiveAgent, check: &str) -> (Option<f64>, Option<f64>) {
    let samples = agent.samples();
    let get = |name: &str| {
        samples
            .get(&format!("{name}{{check=\"{check}\"}}"))
            .copied()
    };
    (
        get("omen_reconcile_keys_drifting"),
        get("omen_reconcile_drift"),
    )
}

#[test]
fn reconciliation_reports_exactly_the_injected_drift_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    if !common::component_available("redis-server", "redis-server") {
        return;
    }
    let Some(broker) = broker_in(dir.path()) else {
        return;
    };
    let mut redis = common::Redis::start(dir.path());
    broker.create_topic("stock-events", 3);
    broker.create_topic("orders", 3);
    let producer = Producer::new(broker.addr);
    let mut db = redis.connection();

    // Ten SKUs stocked with 100 each, then 400 sales: DECRBY in Redis, then the event. The
    // service "dies" between the two for 7 of them, on SKUs 1, 2 and 3.
    let mut events = Vec::new();
    for sku in 0..10 {
        let _: () = redis::cmd("SET")
            .arg(format!("stock:s{sku}"))
            .arg(100)
            .query(&mut db)
            .expect("SET");
        events.push((
            format!("s{sku}"),
            format!(r#"{{"sku":"s{sku}","delta":100}}"#),
        ));
    }
    let lost: Vec<u64> = vec![11, 21, 31, 41, 12, 22, 13];
    for n in 0..400u64 {
        let sku = n % 10;
        let _: i64 = redis::cmd("DECRBY")
            .arg(format!("stock:s{sku}"))
            .arg(1)
            .query(&mut db)
            .expect("DECRBY");
        if !lost.contains(&n) {
            events.push((
                format!("s{sku}"),
                format!(r#"{{"sku":"s{sku}","delta":-1}}"#),
            ));
        }
        // Orders published, counted in Redis as they go out: nothing lost there.
        let _: i64 = redis::cmd("INCR")
            .arg("orders:published")
            .query(&mut db)
            .expect("INCR");
    }
    producer.send_all("stock-events", &events);
    let orders: Vec<(String, String)> = (0..400).map(record).collect();
    producer.send_all("orders", &orders);

    let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, RULES).expect("rules");
    let config = dir.path().join("reconcile.yaml");
    std::fs::write(
        &config,
        format!(
            "rules: {rules}
server: {{ listen: '{addr}' }}
probes:
  reconcile:
    - name: stock
      interval: 300ms
      grace: 1s
      timeout: 2s
      redis: {{ url: '{redis}', keys: 'stock:*' }}
      kafka: {{ brokers: '{broker}', topic: stock-events, key: sku, key_prefix: 'stock:', delta: delta }}
    - name: orders
      interval: 300ms
      grace: 1s
      timeout: 2s
      redis: {{ url: '{redis}', counter: orders:published }}
      kafka: {{ brokers: '{broker}', topic: orders }}
",
            rules = rules.display(),
            redis = redis.url(),
            broker = broker.addr,
        ),
    )
    .expect("config");
    let log = dir.path().join("agent.log");
    let agent = LiveAgent::start_config(&config, addr, &log);
    let settled = |what: &str, stock: (f64, f64)| {
        let start = std::time::Instant::now();
        while drift(&agent, "stock") != (Some(stock.0), Some(stock.1))
            || drift(&agent, "orders") != (Some(0.0), Some(0.0))
        {
            assert!(
                start.elapsed() < common::LIMIT,
                "not {what}: stock {:?}, orders {:?}\n{}",
                drift(&agent, "stock"),
                drift(&agent, "orders"),
                log_tail(&log, 10)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    settled(
        "3 SKUs drifting by 7 in all, and the orders counter agreeing",
        (3.0, 7.0),
    );
    let oldest = agent.samples()["omen_reconcile_oldest_drift_seconds{check=\"stock\"}"];
    assert!(
        oldest >= 1.0,
        "drifting for longer than the grace: {oldest}"
    );
    assert!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("stock:s1: redis 60, events 64"),
        "the first drifting keys are logged:\n{}",
        log_tail(&log, 10)
    );

    // Redis stops answering, then restarts: the failed reads are counted and the checks
    // carry on with the same answer.
    let redis_errors = || {
        agent
            .samples()
            .get("omen_agent_probe_errors_total{probe=\"reconcile\",reason=\"redis\"}")
            .copied()
            .unwrap_or(0.0)
    };
    redis.process.signal(19);
    wait_for(common::LIMIT, "a failed Redis read", || {
        (redis_errors() > 0.0).then_some(())
    });
    redis.process.signal(18);
    redis.restart();
    settled("the same drift after Redis restarted", (3.0, 7.0));

    // The broker stops answering for a while: the checks keep their answer, and once it
    // is back a new crash between DECRBY and the event (on SKU 4) is found, while a sale
    // whose event went out (SKU 5) is not.
    broker.pause();
    std::thread::sleep(Duration::from_secs(3));
    settled("the same drift while the broker is away", (3.0, 7.0));
    broker.resume();
    let mut db = redis.connection();
    for sku in [4, 5] {
        let _: i64 = redis::cmd("DECRBY")
            .arg(format!("stock:s{sku}"))
            .arg(1)
            .query(&mut db)
            .expect("DECRBY");
    }
    producer.send_all("stock-events", &[("s5", r#"{"sku":"s5","delta":-1}"#)]);
    settled("a fourth SKU drifting once the broker is back", (4.0, 8.0));
}

#[test]
fn the_kafka_demo_counts_exactly_the_lost_events_and_none_when_healthy() {
    let dir = tempfile::tempdir().expect("tempdir");
    if !common::component_available("redis-server", "redis-server") {
        return;
    }
    let Some(broker) = broker_in(dir.path()) else {
        return;
    };
    let redis = common::Redis::start(dir.path());
    for lost in [7, 0] {
        let started = std::time::Instant::now();
        let output = common::omen()
            .args(["demo", "--check", "--orders", "1500"])
            .args(["--lost", &lost.to_string()])
            .args(["--kafka", &broker.addr.to_string()])
            .args(["--redis", &redis.addr.to_string()])
            .output()
            .expect("run omen demo --kafka");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "omen demo --kafka --check failed with {lost} lost:\n{stdout}\n{}",
            common::stderr(&output)
        );
        assert!(
            stdout.contains(&format!(
                "the pair rule counted {lost} decrements without their event"
            )),
            "{stdout}"
        );
        assert!(
            stdout.contains(&format!("drifting by {lost} units")),
            "{stdout}"
        );
        // The issue's bound for the scenario.
        assert!(started.elapsed() < Duration::from_secs(180));
    }
}
