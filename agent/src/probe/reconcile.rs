//! Reconciliation: the Redis → Kafka gap measured at the source of truth. A consumer
//! folds a topic's events per key (each event adds its `delta` field, or counts 1) into
//! the value each Redis key should hold, and every interval the probe compares them with
//! Redis (keys matching a pattern, the fields of a hash, or one counter key). A key whose
//! values disagree for longer than `grace` (events still in flight) is drifting: the probe
//! exports how many keys drift, their total absolute drift and the age of the oldest
//! disagreement, and logs the first few drifting keys when the set changes. Comparisons
//! are made only with the consumer at the end of every partition; a Redis or broker that
//! is away is counted in `omen_agent_probe_errors_total` and the check carries on.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use redis::Commands;
use serde::Deserialize;
use tracing::{info, warn};

use super::metrics::ProbeMetrics;
use super::watermark::fetched_high_watermark;
use crate::config::DurationConfig;
use crate::registry::{FamilyId, MetricKind};

/// Drifting keys named in the log when the drifting set changes.
const LOGGED_KEYS: usize = 5;

/// One `probes.reconcile` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReconcileConfig {
    /// Names the check in its metrics' `check` label.
    pub name: String,
    pub redis: RedisSide,
    pub kafka: KafkaSide,
    #[serde(default = "default_interval")]
    pub interval: DurationConfig,
    /// How long a key may disagree before it counts as drifting (events in flight).
    #[serde(default = "default_grace")]
    pub grace: DurationConfig,
    /// How long one check may wait for Redis or for the consumer to catch up.
    #[serde(default = "default_timeout")]
    pub timeout: DurationConfig,
}

/// Where the values live in Redis: exactly one of `keys`, `hash`, `counter`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSide {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Keys matching this pattern (`SCAN MATCH`), each holding a number.
    pub keys: Option<String>,
    /// The fields of this hash, each holding a number.
    pub hash: Option<String>,
    /// One key holding a count, compared with the topic's number of events.
    pub counter: Option<String>,
}

/// What the events imply.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSide {
    pub brokers: String,
    pub topic: String,
    /// Event field (dotted path) naming the key; the Redis key is `key_prefix` + it (the
    /// hash field, with `hash`). Not used with `counter`.
    pub key: Option<String>,
    #[serde(default)]
    pub key_prefix: String,
    /// Event field (dotted path) added to the key's value; without it each event adds 1.
    pub delta: Option<String>,
    /// Multiplies each delta (e.g. -1 when events carry the quantity taken).
    #[serde(default = "one")]
    pub scale: f64,
    /// Further librdkafka client properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn one() -> f64 {
    1.0
}

fn default_interval() -> DurationConfig {
    DurationConfig(Duration::from_secs(30))
}

fn default_grace() -> DurationConfig {
    DurationConfig(Duration::from_secs(10))
}

fn default_timeout() -> DurationConfig {
    DurationConfig(Duration::from_secs(5))
}

#[derive(Debug, Clone, PartialEq)]
enum RedisValues {
    Pattern(String),
    Hash(String),
    Counter(String),
}

impl ReconcileConfig {
    /// Checks the settings that serde cannot: one Redis form, a key field when needed.
    pub fn validate(&self) -> Result<(), String> {
        self.redis_values().map(|_| ())
    }

    fn redis_values(&self) -> Result<RedisValues, String> {
        let redis = &self.redis;
        let values = match (&redis.keys, &redis.hash, &redis.counter) {
            (Some(pattern), None, None) => RedisValues::Pattern(pattern.clone()),
            (None, Some(hash), None) => RedisValues::Hash(hash.clone()),
            (None, None, Some(key)) => RedisValues::Counter(key.clone()),
            _ => {
                return Err(format!(
                    "reconcile `{}`: give exactly one of redis.keys, redis.hash, redis.counter",
                    self.name
                ))
            }
        };
        if !matches!(values, RedisValues::Counter(_)) && self.kafka.key.is_none() {
            return Err(format!(
                "reconcile `{}`: kafka.key names the event field that says which key changed",
                self.name
            ));
        }
        Ok(values)
    }
}

struct Families {
    keys: FamilyId,
    drifting: FamilyId,
    drift: FamilyId,
    oldest: FamilyId,
    events: FamilyId,
    errors: FamilyId,
}

/// The probe's state between checks.
pub struct ReconcileProbe {
    config: ReconcileConfig,
    values: RedisValues,
    metrics: Arc<ProbeMetrics>,
    families: Families,
    consumer: Option<BaseConsumer>,
    /// What the events imply, per Redis key (or hash field).
    expected: HashMap<String, f64>,
    /// When each currently disagreeing key was first seen disagreeing.
    disagreeing_since: HashMap<String, Instant>,
    logged: Vec<String>,
    redis: Option<redis::Connection>,
    /// Next offset to fold per partition (a new consumer resumes there).
    positions: HashMap<i32, i64>,
    /// The topic's partitions, as assigned.
    partitions: Vec<i32>,
    /// Partitions whose end the consumer reached since their last record (librdkafka
    /// says so once per end).
    at_end: HashSet<i32>,
}

impl ReconcileProbe {
    /// # Errors
    /// A configuration that [`ReconcileConfig::validate`] refuses.
    pub fn new(
        config: ReconcileConfig,
        metrics: Arc<ProbeMetrics>,
        errors: FamilyId,
    ) -> Result<Self, String> {
        let values = config.redis_values()?;
        let gauge =
            |name: &str, help: &str| metrics.define(name, help, MetricKind::Gauge, &["check"]);
        let families = Families {
            keys: gauge("omen_reconcile_keys", "Keys compared between Redis and the events."),
            drifting: gauge(
                "omen_reconcile_keys_drifting",
                "Keys whose Redis value has disagreed with the events for longer than the grace period.",
            ),
            drift: gauge(
                "omen_reconcile_drift",
                "Total absolute difference between Redis and the events over the drifting keys.",
            ),
            oldest: gauge(
                "omen_reconcile_oldest_drift_seconds",
                "How long the longest-drifting key has disagreed (0: none).",
            ),
            events: metrics.define(
                "omen_reconcile_events_total",
                "Events folded by the reconciliation consumer.",
                MetricKind::Counter,
                &["check"],
            ),
            errors,
        };
        Ok(Self {
            config,
            values,
            metrics,
            families,
            consumer: None,
            expected: HashMap::new(),
            disagreeing_since: HashMap::new(),
            logged: Vec::new(),
            redis: None,
            positions: HashMap::new(),
            partitions: Vec::new(),
            at_end: HashSet::new(),
        })
    }

    pub fn interval(&self) -> Duration {
        self.config.interval.0
    }

    fn error(&self, reason: &str, error: impl std::fmt::Display) {
        warn!(check = %self.config.name, reason, %error, "reconciliation check failed");
        self.metrics
            .registry()
            .inc(self.families.errors, &["reconcile", reason], 1.0);
    }

    /// Folds the new events, then compares with Redis if the consumer is caught up.
    pub fn check(&mut self) {
        match self.fold_to_end() {
            Ok(true) => {}
            Ok(false) => return self.error("behind", "the consumer did not reach the end in time"),
            Err(error) => {
                // A new consumer next time; the fold so far is kept (it resumes at its end).
                self.consumer = None;
                return self.error("kafka", error);
            }
        }
        match self.read_redis() {
            Ok(actual) => self.compare(&actual),
            Err(error) => {
                self.redis = None;
                self.error("redis", error);
            }
        }
    }

    /// A consumer assigned to every partition of the topic, at the fold's positions.
    fn connect_consumer(&mut self) -> Result<BaseConsumer, KafkaError> {
        let kafka = &self.config.kafka;
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &kafka.brokers)
            .set("group.id", format!("omen-reconcile-{}", self.config.name))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        for (key, value) in &kafka.properties {
            client.set(key, value);
        }
        let consumer: BaseConsumer = client.create()?;
        let metadata = consumer.fetch_metadata(Some(&kafka.topic), self.config.timeout.0)?;
        let mut assignment = TopicPartitionList::new();
        for topic in metadata.topics() {
            for partition in topic.partitions() {
                let next = self.positions.get(&partition.id()).copied();
                assignment.add_partition_offset(
                    &kafka.topic,
                    partition.id(),
                    next.map_or(Offset::Beginning, Offset::Offset),
                )?;
            }
        }
        if assignment.count() == 0 {
            return Err(KafkaError::MetadataFetch(
                rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
            ));
        }
        consumer.assign(&assignment)?;
        self.partitions = assignment
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        Ok(consumer)
    }

    /// Reads events until every partition is at its end (the log end its last fetch
    /// reported, or librdkafka's end-of-partition event); false on timeout.
    fn fold_to_end(&mut self) -> Result<bool, KafkaError> {
        let consumer = match self.consumer.take() {
            Some(consumer) => consumer,
            None => self.connect_consumer()?,
        };
        let deadline = Instant::now() + self.config.timeout.0;
        let caught_up = |probe: &Self, consumer: &BaseConsumer| {
            probe.partitions.iter().all(|partition| {
                probe.at_end.contains(partition)
                    || fetched_high_watermark(consumer, &probe.config.kafka.topic, *partition)
                        .is_some_and(|high| {
                            probe.positions.get(partition).copied().unwrap_or(0) >= high
                        })
            })
        };
        let mut done = false;
        while !done && Instant::now() < deadline {
            match consumer.poll(Duration::from_millis(20)) {
                Some(Ok(message)) => {
                    self.at_end.remove(&message.partition());
                    self.positions
                        .insert(message.partition(), message.offset() + 1);
                    if let Some(payload) = message.payload() {
                        self.fold(payload);
                    }
                    continue;
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    self.at_end.insert(partition);
                }
                Some(Err(error)) => {
                    self.at_end.clear();
                    return Err(error);
                }
                None => {}
            }
            done = caught_up(self, &consumer);
        }
        self.consumer = Some(consumer);
        Ok(done)
    }

    /// Adds one event's delta to its key.
    fn fold(&mut self, payload: &[u8]) {
        if let RedisValues::Counter(key) = &self.values {
            // The counter form counts events, whatever they hold.
            let key = key.clone();
            return self.add(key, 1.0);
        }
        match self.config.kafka.change_of(payload) {
            Ok((key, delta)) => self.add(key, delta),
            Err(reason) => self.error("event", reason),
        }
    }

    fn add(&mut self, key: String, delta: f64) {
        *self.expected.entry(key).or_default() += delta * self.config.kafka.scale;
        self.metrics
            .registry()
            .inc(self.families.events, &[self.config.name.as_str()], 1.0);
    }

    fn read_redis(&mut self) -> Result<HashMap<String, f64>, redis::RedisError> {
        let mut connection = match self.redis.take() {
            Some(connection) => connection,
            None => {
                let client = redis::Client::open(self.config.redis.url.as_str())?;
                let connection = client.get_connection_with_timeout(self.config.timeout.0)?;
                connection.set_read_timeout(Some(self.config.timeout.0))?;
                connection.set_write_timeout(Some(self.config.timeout.0))?;
                connection
            }
        };
        let values = Self::values(&self.values, &mut connection)?;
        // Kept for the next check only when it worked: an error reconnects.
        self.redis = Some(connection);
        Ok(values)
    }

    fn values(
        form: &RedisValues,
        connection: &mut redis::Connection,
    ) -> Result<HashMap<String, f64>, redis::RedisError> {
        let mut values = HashMap::new();
        match form {
            RedisValues::Pattern(pattern) => {
                let keys = connection
                    .scan_match::<_, String>(pattern)?
                    .collect::<Result<Vec<String>, _>>()?;
                for chunk in keys.chunks(500) {
                    let read: Vec<Option<String>> =
                        redis::cmd("MGET").arg(chunk).query(connection)?;
                    for (key, value) in chunk.iter().zip(read) {
                        if let Some(number) = value.and_then(|v| v.trim().parse::<f64>().ok()) {
                            values.insert(key.clone(), number);
                        }
                    }
                }
            }
            RedisValues::Hash(hash) => {
                let fields: HashMap<String, String> =
                    redis::cmd("HGETALL").arg(hash).query(connection)?;
                for (field, value) in fields {
                    if let Ok(number) = value.trim().parse::<f64>() {
                        values.insert(field, number);
                    }
                }
            }
            RedisValues::Counter(key) => {
                let value: Option<String> = redis::cmd("GET").arg(key).query(connection)?;
                values.insert(
                    key.clone(),
                    value.and_then(|v| v.trim().parse().ok()).unwrap_or(0.0),
                );
            }
        }
        Ok(values)
    }

    fn compare(&mut self, actual: &HashMap<String, f64>) {
        let now = Instant::now();
        let grace = self.config.grace.0;
        let keys: HashSet<&String> = actual.keys().chain(self.expected.keys()).collect();
        let mut drifting: Vec<(String, f64, f64, Duration)> = Vec::new();
        let mut still = HashMap::new();
        for key in &keys {
            let redis = actual.get(*key).copied().unwrap_or(0.0);
            let events = self.expected.get(*key).copied().unwrap_or(0.0);
            if (redis - events).abs() <= 1e-9 * redis.abs().max(events.abs()).max(1.0) {
                continue;
            }
            let since = self.disagreeing_since.get(*key).copied().unwrap_or(now);
            still.insert((*key).clone(), since);
            let age = now - since;
            if age > grace {
                drifting.push(((*key).clone(), redis, events, age));
            }
        }
        self.disagreeing_since = still;
        drifting.sort_by(|a, b| b.3.cmp(&a.3).then_with(|| a.0.cmp(&b.0)));
        // A fold from +0: an empty float sum is -0, which reads oddly on a dashboard.
        let total = drifting
            .iter()
            .fold(0.0, |sum, (_, r, e, _)| sum + (r - e).abs());
        let oldest = drifting.first().map_or(0.0, |d| d.3.as_secs_f64());
        {
            let name = [self.config.name.as_str()];
            let mut registry = self.metrics.registry();
            registry.set(self.families.keys, &name, keys.len() as f64);
            registry.set(self.families.drifting, &name, drifting.len() as f64);
            registry.set(self.families.drift, &name, total);
            registry.set(self.families.oldest, &name, oldest);
        }
        let named: Vec<String> = drifting
            .iter()
            .take(LOGGED_KEYS)
            .map(|(key, redis, events, _)| format!("{key}: redis {redis}, events {events}"))
            .collect();
        if named != self.logged {
            if named.is_empty() {
                info!(check = %self.config.name, "redis agrees with the events again");
            } else {
                warn!(check = %self.config.name, keys = drifting.len(), drift = total, first = ?named, "redis and the events disagree");
            }
            self.logged = named;
        }
    }
}

impl KafkaSide {
    /// The Redis key one event changes and by how much (before `scale`), or why the
    /// event is refused. A delta that is not a finite number is refused: one `NaN` would
    /// leave the key's expected value `NaN` for good.
    fn change_of(&self, payload: &[u8]) -> Result<(String, f64), &'static str> {
        let event = serde_json::from_slice::<serde_json::Value>(payload)
            .map_err(|_| "an event is not JSON")?;
        let named = self.key.as_deref().and_then(|path| scalar_at(&event, path));
        let delta = match self.delta.as_deref() {
            Some(path) => scalar_at(&event, path).and_then(|d| d.parse::<f64>().ok()),
            None => Some(1.0),
        };
        match (named, delta) {
            (Some(named), Some(delta)) if delta.is_finite() => {
                Ok((format!("{}{named}", self.key_prefix), delta))
            }
            (Some(_), Some(_)) => Err("an event's delta is not a finite number"),
            _ => Err("an event lacks its key or delta field"),
        }
    }
}

/// A scalar at a dotted path of a JSON document, as text.
fn scalar_at(document: &serde_json::Value, path: &str) -> Option<String> {
    let leaf = path
        .split('.')
        .try_fold(document, |node, part| match node {
            serde_json::Value::Object(map) => map.get(part),
            _ => None,
        })?;
    match leaf {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(key: &str, delta: Option<&str>) -> KafkaSide {
        KafkaSide {
            brokers: "127.0.0.1:9092".to_owned(),
            topic: "t".to_owned(),
            key: Some(key.to_owned()),
            key_prefix: "stock:".to_owned(),
            delta: delta.map(str::to_owned),
            scale: 1.0,
            properties: BTreeMap::new(),
        }
    }

    #[test]
    fn an_event_gives_its_key_and_a_finite_delta_or_a_reason() {
        let kafka = side("after.sku", Some("after.qty"));
        let event = br#"{"after":{"sku":"A-1","qty":"-3"}}"#;
        assert_eq!(kafka.change_of(event), Ok(("stock:A-1".to_owned(), -3.0)));
        let event = br#"{"after":{"sku":7,"qty":2.5}}"#;
        assert_eq!(kafka.change_of(event), Ok(("stock:7".to_owned(), 2.5)));
        for (event, reason) in [
            (
                &br#"{"after":{"sku":"A-1","qty":"NaN"}}"#[..],
                "not a finite number",
            ),
            (
                br#"{"after":{"sku":"A-1","qty":"inf"}}"#,
                "not a finite number",
            ),
            (br#"{"after":{"sku":"A-1"}}"#, "lacks its key or delta"),
            (br#"{"after":{"qty":1}}"#, "lacks its key or delta"),
            (b"{", "not JSON"),
        ] {
            let refused = kafka.change_of(event).unwrap_err();
            assert!(refused.contains(reason), "{refused}");
        }
        assert_eq!(
            side("id", None).change_of(br#"{"id":"x"}"#),
            Ok(("stock:x".to_owned(), 1.0))
        );
    }

    /// Change events, byte-edited (`omen_common::fuzz`): a change or a reason.
    #[test]
    fn fuzz_change_events() {
        let kafka = side("payload.after.sku", Some("payload.after.qty"));
        let events: [&[u8]; 2] = [
            br#"{"schema":{"type":"struct"},"payload":{"before":null,"after":{"sku":"A-1","qty":5},"op":"c","ts_ms":1700000000000}}"#,
            br#"{"payload":{"before":{"sku":"B-2","qty":1},"after":{"sku":"B-2","qty":"-1.5e2"},"op":"u"}}"#,
        ];
        omen_common::fuzz::fuzz(
            "a change event",
            events.iter().map(|e| e.to_vec()).collect(),
            |event| match kafka.change_of(event) {
                Ok((_, delta)) => {
                    assert!(delta.is_finite());
                    true
                }
                Err(_) => false,
            },
        );
    }
}
