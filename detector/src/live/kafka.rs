//! Scale-out on Kafka: detectors in one consumer group share a metrics topic whose records
//! are samples keyed by series (the JSON of prometheus-kafka-adapter:
//! `{"name","labels","value","timestamp"}`), so each series is scored by exactly one
//! detector. Model state moves with the partitions through a state topic (keyed by
//! series, last record wins, so it may be compacted): each detector publishes the state
//! of its series every `handoff_interval` and when a rebalance takes their partitions
//! away; a detector assigned partitions reads the topic and takes over those series'
//! state instead of learning them again. A detector killed without a rebalance hands over
//! its last periodic publication.
//!
//! With an `anomalies_topic`, the detectors do not correlate what they score: they send
//! their evidence (alarms, and points of series not back to normal) to that topic, keyed
//! by series, and one correlator raises the incidents from all of it. The correlator is
//! whichever detector of the group `<group>-correlator` holds the topic's partition (give
//! it one partition), so the role moves when that detector leaves; the incidents move with
//! it through the state topic, with the offset the new correlator goes on from.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::{RDKafkaErrorCode, RDKafkaRespErr};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::correlate::{Correlator, Evidence};
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
    /// Evidence for the one correlator of the group (see the module's documentation);
    /// without it, each detector correlates what it scores.
    #[serde(default)]
    pub anomalies_topic: Option<String>,
    #[serde(default = "default_handoff", with = "humantime_serde")]
    pub handoff_interval: Duration,
    /// Further librdkafka properties, for the consumer and the producer.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_handoff() -> Duration {
    Duration::from_secs(60)
}

/// The state topic's key for the correlator's incidents.
const CORRELATOR_KEY: &str = "omen:correlator";

/// The correlator's record of the state topic.
#[derive(Debug, Serialize, Deserialize)]
struct CorrelatorHandoff {
    /// Where to go on reading the anomalies topic, by partition.
    offsets: BTreeMap<i32, i64>,
    correlator: Correlator,
}

/// Counts records the broker never acknowledged.
struct Delivery {
    shared: Arc<Shared>,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if result.is_err() {
            self.shared.count_error(Source::Kafka, "delivery");
        }
    }
}

type Publisher = Arc<BaseProducer<Delivery>>;

/// Sends one record; a full queue or a bad record is counted, not fatal.
fn send(
    shared: &Shared,
    producer: &BaseProducer<Delivery>,
    topic: &str,
    key: &str,
    value: &str,
) -> bool {
    let record = BaseRecord::to(topic).key(key).payload(value);
    let sent = match producer.send(record) {
        Ok(()) => true,
        Err((error, _)) => {
            warn!(%error, %topic, "record not sent");
            shared.count_error(Source::Kafka, "produce");
            false
        }
    };
    producer.poll(Duration::ZERO);
    sent
}

/// The state topic's reader: reaching the end of a partition is how it knows it is done,
/// not an error to log.
struct StateReader;

impl ClientContext for StateReader {
    fn error(&self, error: KafkaError, reason: &str) {
        if !matches!(
            error,
            KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF)
        ) {
            warn!(%error, reason, "kafka: reading the state topic");
        }
    }
}

impl ConsumerContext for StateReader {}

/// The last record of every key of the state topic.
fn read_state(config: &KafkaConfig) -> Result<HashMap<String, Vec<u8>>, KafkaError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", format!("{}-state-reader", config.group))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest");
    let reader: BaseConsumer<StateReader> = client.create_with_context(StateReader)?;
    let metadata = reader.fetch_metadata(Some(&config.state_topic), BROKER_TIMEOUT)?;
    let mut assignment = TopicPartitionList::new();
    for topic in metadata.topics() {
        for partition in topic.partitions() {
            // From offset 0 (reset to the log start if that is gone): tansu 0.6
            // resolves "beginning" to some batch of its choosing.
            assignment.add_partition_offset(
                &config.state_topic,
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
    Ok(latest)
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
    producer: Publisher,
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
            if send(
                &self.shared,
                &self.producer,
                &self.config.state_topic,
                &key,
                &value,
            ) {
                published += 1;
            }
        }
        if let Err(error) = self.producer.flush(BROKER_TIMEOUT) {
            warn!(%error, "model state not all published");
            self.shared.count_error(Source::Kafka, "handoff");
        }
        published
    }

    /// Sends the evidence scored since the last call to the correlator.
    fn publish_evidence(&self) {
        let Some(topic) = &self.config.anomalies_topic else {
            return;
        };
        let evidence = self.shared.engine().take_evidence();
        let mut sent = 0;
        for evidence in &evidence {
            if let Ok(value) = serde_json::to_string(evidence) {
                sent += usize::from(send(
                    &self.shared,
                    &self.producer,
                    topic,
                    evidence.series(),
                    &value,
                ));
            }
        }
        if sent > 0 {
            self.shared.engine().count_published(sent);
        }
    }

    /// Reads the state topic and takes over the series of `partitions`.
    fn take_over(&self, partitions: &HashSet<i32>) -> Result<usize, KafkaError> {
        let latest = read_state(&self.config)?;
        let now = now_ms();
        let mut taken = 0;
        for (key, value) in latest {
            if key == CORRELATOR_KEY {
                continue;
            }
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

/// Takes (`assign`) or gives up the partitions of a rebalance, by either protocol.
fn apply<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    partitions: &TopicPartitionList,
    assign: bool,
) -> rdkafka::error::KafkaResult<()> {
    let cooperative = matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    );
    match (assign, cooperative) {
        (true, true) => consumer.incremental_assign(partitions),
        (true, false) => consumer.assign(partitions),
        (false, true) => consumer.incremental_unassign(partitions),
        (false, false) => consumer.unassign(),
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
                apply(consumer, partitions, true)
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
                apply(consumer, partitions, false)
            }
        };
        if let Err(error) = result {
            warn!(%error, "applying the rebalance failed");
        }
    }
}

/// The anomalies consumer's context: the correlator's role, and its incidents, come with
/// the anomalies topic's partition and go with it.
struct Correlation {
    shared: Arc<Shared>,
    config: KafkaConfig,
    producer: Publisher,
    /// The anomalies partitions held now.
    held: Mutex<HashSet<i32>>,
}

impl Correlation {
    fn held(&self) -> MutexGuard<'_, HashSet<i32>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `correlator` with the positions reached on the anomalies topic, and
    /// commits those.
    fn publish(&self, consumer: &BaseConsumer<Self>, correlator: &Correlator) {
        let positions = consumer.position().unwrap_or_default();
        let offsets: BTreeMap<i32, i64> = positions
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(offset) => Some((e.partition(), offset)),
                _ => None,
            })
            .collect();
        let handoff = CorrelatorHandoff {
            offsets,
            correlator: correlator.clone(),
        };
        let Ok(value) = serde_json::to_string(&handoff) else {
            return;
        };
        send(
            &self.shared,
            &self.producer,
            &self.config.state_topic,
            CORRELATOR_KEY,
            &value,
        );
        if let Err(error) = self.producer.flush(BROKER_TIMEOUT) {
            warn!(%error, "incidents not handed over");
            self.shared.count_error(Source::Kafka, "handoff");
        }
        if !handoff.offsets.is_empty() {
            if let Err(error) = consumer.commit(&positions, rdkafka::consumer::CommitMode::Async) {
                warn!(%error, "anomalies offsets not committed");
            }
        }
    }

    /// The incidents and positions the previous correlator handed over, if it did.
    fn handed_over(&self) -> Option<CorrelatorHandoff> {
        match read_state(&self.config) {
            Ok(mut latest) => latest
                .remove(CORRELATOR_KEY)
                .and_then(|value| serde_json::from_slice(&value).ok()),
            Err(error) => {
                warn!(%error, "cannot read the state topic: correlating afresh");
                self.shared.count_error(Source::Kafka, "handoff");
                None
            }
        }
    }
}

impl ClientContext for Correlation {}

impl ConsumerContext for Correlation {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let set: HashSet<i32> = partitions
            .elements()
            .iter()
            .map(|e| e.partition())
            .collect();
        let assigning = err == RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        // Otherwise this member got no partition (another detector correlates) or gives
        // up none it held (an empty record would overwrite the correlator's).
        if assigning && !set.is_empty() {
            let handoff = self.handed_over();
            let (offsets, correlator) = handoff
                .map(|h| (h.offsets, h.correlator))
                .unwrap_or_default();
            let topic = self.config.anomalies_topic.as_deref().unwrap_or_default();
            for (partition, offset) in offsets.iter().filter(|(p, _)| set.contains(p)) {
                let _ = partitions.set_partition_offset(topic, *partition, Offset::Offset(*offset));
            }
            let open = correlator.open().len();
            self.shared.engine().set_correlating(Some(correlator));
            self.held().extend(&set);
            info!(partitions = ?set, open, "correlating the group's anomalies");
        } else if !assigning && !self.held().is_empty() {
            let correlator = self.shared.engine().set_correlating(None);
            self.publish(consumer, &correlator);
            self.held().retain(|p| !set.contains(p));
            info!(partitions = ?set, open = correlator.open().len(), "no longer correlating, incidents handed over");
        }
        let result = apply(consumer, partitions, assigning);
        if let Err(error) = result {
            warn!(%error, "applying the rebalance failed");
        }
    }
}

/// Starts the consumer threads; they stop when `stop` is set, handing their series (and
/// incidents) over.
pub fn spawn(
    config: KafkaConfig,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Result<Vec<JoinHandle<()>>, KafkaError> {
    let mut producer_config = ClientConfig::new();
    producer_config
        .set("bootstrap.servers", &config.brokers)
        .set("acks", "all")
        .set("message.max.bytes", "4194304");
    let consumer_config = |group: &str| {
        let mut consumer_config = ClientConfig::new();
        consumer_config
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", group)
            .set("auto.offset.reset", "latest");
        for (key, value) in &config.properties {
            consumer_config.set(key, value);
        }
        consumer_config
    };
    for (key, value) in &config.properties {
        producer_config.set(key, value);
    }
    let producer: Publisher = Arc::new(producer_config.create_with_context(Delivery {
        shared: shared.clone(),
    })?);
    let mut threads = Vec::new();
    if let Some(topic) = &config.anomalies_topic {
        shared.engine().correlate_elsewhere();
        let context = Correlation {
            shared: shared.clone(),
            config: config.clone(),
            producer: producer.clone(),
            held: Mutex::new(HashSet::new()),
        };
        let consumer: BaseConsumer<Correlation> =
            consumer_config(&format!("{}-correlator", config.group))
                .set("enable.auto.commit", "false")
                .create_with_context(context)?;
        consumer.subscribe(&[topic])?;
        let (config, shared, stop) = (config.clone(), shared.clone(), stop.clone());
        threads.push(
            std::thread::Builder::new()
                .name("omen-detect-correlate".into())
                .spawn(move || correlate(consumer, &config, &shared, &stop))
                .map_err(|e| KafkaError::ClientCreation(e.to_string()))?,
        );
    }
    let context = Handover {
        shared: shared.clone(),
        config: config.clone(),
        producer,
        owned: Mutex::new(HashMap::new()),
        assigned: Mutex::new(HashSet::new()),
    };
    let consumer: BaseConsumer<Handover> =
        consumer_config(&config.group).create_with_context(context)?;
    consumer.subscribe(&[&config.topic])?;
    threads.push(
        std::thread::Builder::new()
            .name("omen-detect-kafka".into())
            .spawn(move || run(consumer, &config, &shared, &stop))
            .map_err(|e| KafkaError::ClientCreation(e.to_string()))?,
    );
    Ok(threads)
}

/// Logs a failing client at most every 10 s (every failure is counted).
#[derive(Default)]
struct Throttle(Option<Instant>);

impl Throttle {
    fn ready(&mut self) -> bool {
        let ready = self
            .0
            .is_none_or(|at| at.elapsed() > Duration::from_secs(10));
        if ready {
            self.0 = Some(Instant::now());
        }
        ready
    }
}

fn run(consumer: BaseConsumer<Handover>, config: &KafkaConfig, shared: &Shared, stop: &AtomicBool) {
    let mut last_handoff = Instant::now();
    // Samples with the partition they came from, scored once nothing more is queued.
    let mut batch: Vec<(i32, Sample)> = Vec::new();
    let mut throttle = Throttle::default();
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
                if throttle.ready() {
                    warn!(%error, "kafka read failed");
                }
            }
            None => {}
        }
        score(consumer.context(), shared, &mut batch);
        consumer.context().publish_evidence();
    }
    score(consumer.context(), shared, &mut batch);
    consumer.context().publish_evidence();
    // Leaving the group revokes the partitions, which hands the series over.
    consumer.unsubscribe();
    let deadline = Instant::now() + BROKER_TIMEOUT;
    while !consumer.context().owned().is_empty() && Instant::now() < deadline {
        consumer.poll(Duration::from_millis(50));
    }
    let _ = consumer.context().producer.flush(BROKER_TIMEOUT);
}

/// Reads the anomalies topic while this detector holds its partition, correlating the
/// group's evidence; publishes the incidents every `handoff_interval`.
fn correlate(
    consumer: BaseConsumer<Correlation>,
    config: &KafkaConfig,
    shared: &Shared,
    stop: &AtomicBool,
) {
    let topic = config.anomalies_topic.as_deref().unwrap_or_default();
    if let Ok(metadata) = consumer.fetch_metadata(Some(topic), BROKER_TIMEOUT) {
        let partitions = metadata
            .topics()
            .first()
            .map_or(0, |t| t.partitions().len());
        if partitions > 1 {
            warn!(
                topic,
                partitions,
                "the anomalies topic has more than one partition: their holders correlate apart, so an incident may split"
            );
        }
    }
    let mut last_handoff = Instant::now();
    let mut throttle = Throttle::default();
    while !stop.load(Ordering::Acquire) {
        if last_handoff.elapsed() >= config.handoff_interval {
            if !consumer.context().held().is_empty() {
                let correlator = shared.engine().correlator().clone();
                consumer.context().publish(&consumer, &correlator);
            }
            last_handoff = Instant::now();
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                if !consumer.context().held().contains(&message.partition()) {
                    continue;
                }
                match message.payload().map(serde_json::from_slice::<Evidence>) {
                    Some(Ok(evidence)) => shared.correlate(&[evidence], now_ms()),
                    Some(Err(_)) => shared.count_error(Source::Kafka, "malformed_evidence"),
                    None => {}
                }
            }
            Some(Err(error)) => {
                shared.count_error(Source::Kafka, "kafka");
                if throttle.ready() {
                    warn!(%error, "kafka read of the anomalies failed");
                }
            }
            None => {}
        }
    }
    // Leaving the group revokes the partition, which hands the incidents over.
    consumer.unsubscribe();
    let deadline = Instant::now() + BROKER_TIMEOUT;
    while !consumer.context().held().is_empty() && Instant::now() < deadline {
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
