//! Consumer lag of Kafka consumer groups: per partition, the high watermark minus the
//! group's committed offset (from the log start when nothing is committed), their sum per
//! group and topic, and the time lag: how old the first record the group has not consumed
//! is (its timestamp against the wall clock), 0 when the group is caught up. The probe
//! reads committed offsets without joining the group, so it never causes a rebalance.
//! The high watermark is the one a fetch from the committed offset reports (the fetch
//! also brings the first record not consumed), not a ListOffsets answer: some
//! Kafka-protocol brokers (tansu 0.6) answer that one with the last batch's base offset.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::Deserialize;
use tracing::warn;

use super::metrics::ProbeMetrics;
use super::watermark::fetched_high_watermark;
use crate::config::DurationConfig;
use crate::registry::{FamilyId, MetricKind};

/// One `probes.kafka_lag` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaLagConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    /// The consumer groups to measure.
    pub groups: Vec<String>,
    /// The topics they consume.
    pub topics: Vec<String>,
    #[serde(default = "default_interval")]
    pub interval: DurationConfig,
    /// How long one broker request may take.
    #[serde(default = "default_timeout")]
    pub timeout: DurationConfig,
    /// Further librdkafka client properties.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_interval() -> DurationConfig {
    DurationConfig(Duration::from_secs(15))
}

fn default_timeout() -> DurationConfig {
    DurationConfig(Duration::from_secs(5))
}

struct Families {
    lag: FamilyId,
    group_lag: FamilyId,
    lag_seconds: FamilyId,
    errors: FamilyId,
}

/// Measures the configured groups' lag on each call of [`KafkaLagProbe::measure`].
pub struct KafkaLagProbe {
    config: KafkaLagConfig,
    metrics: Arc<ProbeMetrics>,
    families: Families,
}

/// One partition's measurement.
struct PartitionLag {
    topic: String,
    partition: i32,
    messages: i64,
    seconds: f64,
}

impl KafkaLagProbe {
    pub fn new(config: KafkaLagConfig, metrics: Arc<ProbeMetrics>, errors: FamilyId) -> Self {
        let families = Families {
            lag: metrics.define(
                "omen_kafka_consumer_lag",
                "Records not yet consumed by the group: high watermark minus committed offset.",
                MetricKind::Gauge,
                &["group", "topic", "partition"],
            ),
            group_lag: metrics.define(
                "omen_kafka_consumer_group_lag",
                "Records not yet consumed by the group, summed over the topic's partitions.",
                MetricKind::Gauge,
                &["group", "topic"],
            ),
            lag_seconds: metrics.define(
                "omen_kafka_consumer_lag_seconds",
                "Age of the oldest record the group has not consumed (0 when caught up).",
                MetricKind::Gauge,
                &["group", "topic", "partition"],
            ),
            errors,
        };
        Self {
            config,
            metrics,
            families,
        }
    }

    pub fn interval(&self) -> Duration {
        self.config.interval.0
    }

    fn client(&self, group: Option<&str>) -> Result<BaseConsumer, rdkafka::error::KafkaError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &self.config.brokers)
            .set("enable.auto.commit", "false")
            // One small fetch per partition is all a measurement reads.
            .set("max.partition.fetch.bytes", "65536")
            .set("fetch.max.bytes", "1048576")
            // Lag is measured to the log end (the high watermark), as kafka-consumer-groups does.
            .set("isolation.level", "read_uncommitted");
        // The reader needs a group to poll without errors; it only assigns, never joins.
        client.set("group.id", group.unwrap_or("omen-agent-lag-probe"));
        for (key, value) in &self.config.properties {
            client.set(key, value);
        }
        client.create()
    }

    fn error(&self, reason: &str, error: impl std::fmt::Display) {
        warn!(brokers = %self.config.brokers, reason, %error, "kafka lag probe failed");
        self.metrics
            .registry()
            .inc(self.families.errors, &["kafka_lag", reason], 1.0);
    }

    /// Measures every group once and publishes the gauges.
    pub fn measure(&self) {
        for group in &self.config.groups {
            match self.measure_group(group) {
                Ok(lags) => self.publish(group, &lags),
                Err((reason, error)) => self.error(reason, error),
            }
        }
    }

    fn measure_group(&self, group: &str) -> Result<Vec<PartitionLag>, (&'static str, String)> {
        let timeout = self.config.timeout.0;
        let consumer = self
            .client(Some(group))
            .map_err(|e| ("client", e.to_string()))?;
        let mut partitions = TopicPartitionList::new();
        for topic in &self.config.topics {
            let metadata = consumer
                .fetch_metadata(Some(topic), timeout)
                .map_err(|e| ("metadata", e.to_string()))?;
            for found in metadata.topics() {
                if let Some(error) = found.error() {
                    return Err(("metadata", format!("topic {topic}: {error:?}")));
                }
                for partition in found.partitions() {
                    partitions.add_partition(topic, partition.id());
                }
            }
        }
        let committed = consumer
            .committed_offsets(partitions.clone(), timeout)
            .map_err(|e| ("committed_offsets", e.to_string()))?;
        let mut starts = Vec::new();
        for element in partitions.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let (low, _) = consumer
                .fetch_watermarks(topic, partition, timeout)
                .map_err(|e| ("watermarks", e.to_string()))?;
            let next = committed
                .find_partition(topic, partition)
                .and_then(|e| e.offset().to_raw())
                .filter(|&offset| offset >= 0)
                .unwrap_or(low)
                .max(low);
            starts.push((topic.to_owned(), partition, next));
        }
        let reader = self.client(None).map_err(|e| ("client", e.to_string()))?;
        read_from(&reader, &starts, timeout)
    }

    fn publish(&self, group: &str, lags: &[PartitionLag]) {
        let mut registry = self.metrics.registry();
        let mut per_topic: BTreeMap<&str, i64> = BTreeMap::new();
        for lag in lags {
            let partition = lag.partition.to_string();
            let labels = [group, lag.topic.as_str(), partition.as_str()];
            registry.set(self.families.lag, &labels, lag.messages as f64);
            registry.set(self.families.lag_seconds, &labels, lag.seconds);
            *per_topic.entry(&lag.topic).or_default() += lag.messages;
        }
        for (topic, messages) in per_topic {
            registry.set(self.families.group_lag, &[group, topic], messages as f64);
        }
    }
}

/// Reads from each partition at the group's next offset: the fetch brings the partition's
/// high watermark (the log end) and the first record not consumed, whose timestamp gives
/// the time lag. A partition at its end has no such record, and no time lag.
fn read_from(
    reader: &BaseConsumer,
    starts: &[(String, i32, i64)],
    timeout: Duration,
) -> Result<Vec<PartitionLag>, (&'static str, String)> {
    let mut assignment = TopicPartitionList::new();
    for (topic, partition, next) in starts {
        assignment
            .add_partition_offset(topic, *partition, Offset::Offset(*next))
            .map_err(|e| ("assign", e.to_string()))?;
    }
    reader
        .assign(&assignment)
        .map_err(|e| ("assign", e.to_string()))?;
    let high = |topic: &str, partition: i32| fetched_high_watermark(reader, topic, partition);
    // Per partition: None while waiting, Some(first record's timestamp, if any).
    let mut first: Vec<Option<Option<i64>>> = vec![None; starts.len()];
    let deadline = std::time::Instant::now() + timeout;
    while first.iter().any(Option::is_none) && std::time::Instant::now() < deadline {
        if let Some(Ok(message)) = reader.poll(Duration::from_millis(50)) {
            if let Some(i) = starts
                .iter()
                .position(|(t, p, _)| t == message.topic() && *p == message.partition())
            {
                first[i].get_or_insert(message.timestamp().to_millis());
            }
        }
        for (i, (topic, partition, next)) in starts.iter().enumerate() {
            if first[i].is_none() && high(topic, *partition).is_some_and(|h| h <= *next) {
                first[i] = Some(None);
            }
        }
    }
    let _ = reader.unassign();
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let mut lags = Vec::new();
    for ((topic, partition, next), first) in starts.iter().zip(first) {
        let (Some(first), Some(high)) = (first, high(topic, *partition)) else {
            return Err((
                "timeout",
                format!("{topic}/{partition}: no fetch answered within {timeout:?}"),
            ));
        };
        lags.push(PartitionLag {
            topic: topic.clone(),
            partition: *partition,
            messages: (high - next).max(0),
            seconds: first.map_or(0.0, |written_ms| {
                (now_ms - written_ms).max(0) as f64 / 1000.0
            }),
        });
    }
    Ok(lags)
}
