//! What the Kafka pieces share: the producer (deliveries counted), the state topic's
//! reader, a rebalance applied by either protocol, and a throttle for failure logs.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tracing::warn;

use crate::config::KafkaConfig;
use crate::engine::Origin;
use crate::state::LiveState;

/// How long a hand-off may wait on the broker.
pub(crate) const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// The state topic's key for the correlator's incidents.
pub(crate) const CORRELATOR_KEY: &str = "omen:correlator";

/// Counts records the broker never acknowledged.
pub(crate) struct Delivery {
    pub(crate) shared: Arc<LiveState>,
}

impl ClientContext for Delivery {}

impl ProducerContext for Delivery {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if result.is_err() {
            self.shared.count_error(Origin::Kafka, "delivery");
        }
    }
}

pub(crate) type Publisher = Arc<BaseProducer<Delivery>>;

/// Sends one record; a full queue or a bad record is counted, not fatal.
pub(crate) fn send(
    shared: &LiveState,
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
            shared.count_error(Origin::Kafka, "produce");
            false
        }
    };
    producer.poll(Duration::ZERO);
    sent
}

/// The state topic's reader: reaching the end of a partition is how it knows it is done,
/// not an error to log.
pub(crate) struct StateReader;

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
pub(crate) fn read_state(config: &KafkaConfig) -> Result<HashMap<String, Vec<u8>>, KafkaError> {
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

/// Logs a failing client at most every 10 s (every failure is counted).
#[derive(Default)]
pub(crate) struct Throttle(Option<Instant>);

impl Throttle {
    pub(crate) fn ready(&mut self) -> bool {
        let ready = self
            .0
            .is_none_or(|at| at.elapsed() > Duration::from_secs(10));
        if ready {
            self.0 = Some(Instant::now());
        }
        ready
    }
}
