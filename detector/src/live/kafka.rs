//! Scale-out on Kafka: detectors in one consumer group share a metrics topic whose records
//! are samples keyed by series (the JSON of prometheus-kafka-adapter:
//! `{"name","labels","value","timestamp"}`), so each series is scored by exactly one
//! detector. Model state moves with the partitions through a state topic (keyed by
//! series, last record wins, so it may be compacted): each detector publishes the state
//! of its series every `handoff_interval` and when a rebalance takes their partitions
//! away; a detector assigned partitions reads the topic and takes over those series'
//! state instead of learning them again. A detector killed without a rebalance hands over
//! its last periodic publication.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::engine::{Engine, Mode, Source};
use super::runtime::{now_ms, Shared};
use crate::wire::{Sample, ValueKind};

/// How long a hand-off may wait on the broker.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// Samples scored per batch at most.
const BATCH: usize = 1000;

/// The `kafka` section of `omen detect`'s configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaConfig {
    pub brokers: String,
    /// The consumer group the detectors share.
    pub group: String,
    /// Samples, keyed by series.
    pub topic: String,
    /// Model state per series, for hand-offs between detectors.
    pub state_topic: String,
    #[serde(default = "default_handoff", with = "humantime_serde")]
    pub handoff_interval: Duration,
    /// Further librdkafka properties, for the consumer and the producer.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_handoff() -> Duration {
    Duration::from_secs(60)
}

/// One record of the state topic.
#[derive(Debug, Serialize, Deserialize)]
struct Handoff {
    /// The metrics partition the series' samples arrive on.
    partition: i32,
    /// The engine's exported state of the series.
    state: String,
}

/// A prometheus-kafka-adapter sample.
#[derive(Debug, Deserialize)]
struct AdapterSample {
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    value: serde_json::Value,
    timestamp: Option<serde_json::Value>,
}

/// Decodes one record value into a sample, or says why not.
fn decode(value: &[u8]) -> Result<Sample, &'static str> {
    let sample: AdapterSample = serde_json::from_slice(value).map_err(|_| "malformed")?;
    let mut labels = sample.labels;
    let name = sample
        .name
        .or_else(|| labels.get("__name__").cloned())
        .ok_or("no_name")?;
    labels.remove("__name__");
    let value = match &sample.value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .ok_or("bad_value")?;
    let timestamp_ms = match &sample.timestamp {
        None => None,
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => Some(
            chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|_| "bad_timestamp")?
                .timestamp_millis(),
        ),
        Some(_) => return Err("bad_timestamp"),
    };
    Ok(Sample {
        name,
        labels: labels.into_iter().collect(),
        value,
        timestamp_ms,
        kind: ValueKind::Unknown,
    })
}

/// The consumer's context: hands model state over on rebalances.
struct Handover {
    shared: Arc<Shared>,
    config: KafkaConfig,
    producer: BaseProducer,
    /// The metrics partition of every series scored here.
    owned: Mutex<HashMap<String, i32>>,
    /// The metrics partitions assigned now.
    assigned: Mutex<HashSet<i32>>,
}

impl Handover {
    fn owned(&self) -> MutexGuard<'_, HashMap<String, i32>> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn assigned(&self) -> MutexGuard<'_, HashSet<i32>> {
        self.assigned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the state of the series on `partitions` (all when None); returns how
    /// many were published.
    fn publish(&self, partitions: Option<&HashSet<i32>>) -> usize {
        let owned: Vec<(String, i32)> = self
            .owned()
            .iter()
            .filter(|(_, p)| partitions.is_none_or(|set| set.contains(p)))
            .map(|(k, p)| (k.clone(), *p))
            .collect();
        let mut published = 0;
        for (key, partition) in owned {
            let Some(state) = self.shared.engine().export_series(&key) else {
                continue;
            };
            let Ok(value) = serde_json::to_string(&Handoff { partition, state }) else {
                continue;
            };
            let record = BaseRecord::to(&self.config.state_topic)
                .key(&key)
                .payload(&value);
            match self.producer.send(record) {
                Ok(()) => published += 1,
                Err((error, _)) => {
                    warn!(%error, series = %key, "model state not published");
                    self.shared.count_error(Source::Kafka, "handoff");
                }
            }
            self.producer.poll(Duration::ZERO);
        }
        if let Err(error) = self.producer.flush(BROKER_TIMEOUT) {
            warn!(%error, "model state not all published");
            self.shared.count_error(Source::Kafka, "handoff");
        }
        published
    }

    /// Reads the state topic and takes over the series of `partitions`.
    fn take_over(&self, partitions: &HashSet<i32>) -> Result<usize, KafkaError> {
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &self.config.brokers)
            .set("group.id", format!("{}-state-reader", self.config.group))
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("auto.offset.reset", "earliest");
        let reader: BaseConsumer = client.create()?;
        let metadata = reader.fetch_metadata(Some(&self.config.state_topic), BROKER_TIMEOUT)?;
        let mut assignment = TopicPartitionList::new();
        for topic in metadata.topics() {
            for partition in topic.partitions() {
                // From offset 0 (reset to the log start if that is gone): tansu 0.6
                // resolves "beginning" to some batch of its choosing.
                assignment.add_partition_offset(
                    &self.config.state_topic,
                    partition.id(),
                    Offset::Offset(0),
                )?;
            }
        }
        reader.assign(&assignment)?;
        let mut latest: HashMap<String, Vec<u8>> = HashMap::new();
        let mut at_end = HashSet::new();
        let deadline = Instant::now() + BROKER_TIMEOUT;
        while at_end.len() < assignment.count() && Instant::now() < deadline {
            match reader.poll(Duration::from_millis(50)) {
                Some(Ok(message)) => {
                    if let (Some(key), Some(value)) = (message.key(), message.payload()) {
                        latest.insert(String::from_utf8_lossy(key).into_owned(), value.to_vec());
                    }
                }
                Some(Err(KafkaError::PartitionEOF(partition))) => {
                    at_end.insert(partition);
                }
                Some(Err(error)) => return Err(error),
                None => {}
            }
        }
        let now = now_ms();
        let mut taken = 0;
        for (key, value) in latest {
            let Ok(handoff) = serde_json::from_slice::<Handoff>(&value) else {
                continue;
            };
            if partitions.contains(&handoff.partition)
                && self
                    .shared
                    .engine()
                    .import_series(&key, &handoff.state, now)
            {
                self.owned().insert(key, handoff.partition);
                taken += 1;
            }
        }
        Ok(taken)
    }
}

impl ClientContext for Handover {}

impl ConsumerContext for Handover {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let set: HashSet<i32> = partitions
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                match self.take_over(&set) {
                    Ok(taken) => {
                        info!(partitions = ?set, series = taken, "partitions assigned, model state taken over")
                    }
                    Err(error) => {
                        warn!(%error, "cannot read the state topic: the series start afresh");
                        self.shared.count_error(Source::Kafka, "handoff");
                    }
                }
                if !cooperative {
                    self.assigned().clear();
                }
                self.assigned().extend(&set);
                if cooperative {
                    consumer.incremental_assign(partitions)
                } else {
                    consumer.assign(partitions)
                }
            }
            _ => {
                self.assigned().retain(|p| !set.contains(p));
                let published = self.publish(Some(&set));
                let gone: Vec<String> = {
                    let mut owned = self.owned();
                    let gone = owned
                        .iter()
                        .filter(|(_, p)| set.contains(p))
                        .map(|(k, _)| k.clone())
                        .collect::<Vec<_>>();
                    owned.retain(|_, p| !set.contains(p));
                    gone
                };
                let mut engine = self.shared.engine();
                for key in &gone {
                    engine.forget_series(key);
                }
                drop(engine);
                info!(partitions = ?set, series = gone.len(), published, "partitions revoked, model state handed over");
                if cooperative {
                    consumer.incremental_unassign(partitions)
                } else {
                    consumer.unassign()
                }
            }
        };
        if let Err(error) = result {
            warn!(%error, "applying the rebalance failed");
        }
    }
}

/// Starts the consumer thread; it stops when `stop` is set, handing its series over.
pub fn spawn(
    config: KafkaConfig,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, KafkaError> {
    let mut producer_config = ClientConfig::new();
    producer_config
        .set("bootstrap.servers", &config.brokers)
        .set("acks", "all")
        .set("message.max.bytes", "4194304");
    let mut consumer_config = ClientConfig::new();
    consumer_config
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("auto.offset.reset", "latest");
    for (key, value) in &config.properties {
        producer_config.set(key, value);
        consumer_config.set(key, value);
    }
    let producer: BaseProducer = producer_config.create()?;
    let context = Handover {
        shared: shared.clone(),
        config: config.clone(),
        producer,
        owned: Mutex::new(HashMap::new()),
        assigned: Mutex::new(HashSet::new()),
    };
    let consumer: BaseConsumer<Handover> = consumer_config.create_with_context(context)?;
    consumer.subscribe(&[&config.topic])?;
    std::thread::Builder::new()
        .name("omen-detect-kafka".into())
        .spawn(move || run(consumer, &config, &shared, &stop))
        .map_err(|e| KafkaError::ClientCreation(e.to_string()))
}

fn run(consumer: BaseConsumer<Handover>, config: &KafkaConfig, shared: &Shared, stop: &AtomicBool) {
    let mut last_handoff = Instant::now();
    // Samples with the partition they came from, scored once nothing more is queued.
    let mut batch: Vec<(i32, Sample)> = Vec::new();
    let mut last_error_log: Option<Instant> = None;
    while !stop.load(Ordering::Acquire) {
        if last_handoff.elapsed() >= config.handoff_interval {
            consumer.context().publish(None);
            last_handoff = Instant::now();
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                match message.payload().map(decode) {
                    Some(Ok(sample)) => batch.push((message.partition(), sample)),
                    Some(Err(reason)) => shared.count_error(Source::Kafka, reason),
                    None => {}
                }
                if batch.len() < BATCH {
                    continue;
                }
            }
            Some(Err(error)) => {
                shared.count_error(Source::Kafka, "kafka");
                if last_error_log.is_none_or(|at| at.elapsed() > Duration::from_secs(10)) {
                    warn!(%error, "kafka read failed");
                    last_error_log = Some(Instant::now());
                }
            }
            None => {}
        }
        score(consumer.context(), shared, &mut batch);
    }
    score(consumer.context(), shared, &mut batch);
    // Leaving the group revokes the partitions, which hands the series over.
    consumer.unsubscribe();
    let deadline = Instant::now() + BROKER_TIMEOUT;
    while !consumer.context().owned().is_empty() && Instant::now() < deadline {
        consumer.poll(Duration::from_millis(50));
    }
}

/// Scores the batch's samples of partitions still assigned (a rebalance may have handed
/// the others to another detector while they were read).
fn score(handover: &Handover, shared: &Shared, batch: &mut Vec<(i32, Sample)>) {
    if batch.is_empty() {
        return;
    }
    let samples: Vec<Sample> = {
        let assigned = handover.assigned();
        let mut owned = handover.owned();
        batch
            .drain(..)
            .filter(|(partition, _)| assigned.contains(partition))
            .map(|(partition, sample)| {
                owned.insert(Engine::series_key(&sample), partition);
                sample
            })
            .collect()
    };
    shared.ingest(Source::Kafka, samples, now_ms(), Mode::Live);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adapter_samples_decode_with_either_timestamp() {
        let sample = decode(br#"{"timestamp":"2026-12-02T07:00:00Z","value":"1.5","name":"up","labels":{"__name__":"up","job":"a"}}"#).unwrap();
        assert_eq!(sample.name, "up");
        assert_eq!(sample.labels, [("job".to_owned(), "a".to_owned())]);
        assert_eq!(sample.value, 1.5);
        assert_eq!(sample.timestamp_ms, Some(1_796_194_800_000));
        let sample = decode(br#"{"value":2,"labels":{"__name__":"x"},"timestamp":5}"#).unwrap();
        assert_eq!((sample.name.as_str(), sample.timestamp_ms), ("x", Some(5)));
        assert_eq!(decode(b"nope").unwrap_err(), "malformed");
        assert_eq!(
            decode(br#"{"value":"x","name":"a"}"#).unwrap_err(),
            "bad_value"
        );
        assert_eq!(decode(br#"{"value":1}"#).unwrap_err(), "no_name");
    }
}
