//! The group's one correlator: whichever detector of `<group>-correlator` holds the
//! anomalies topic's partition correlates the evidence all detectors send there; its
//! incidents move with the partition through the state topic, with the offsets it reached.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use omen_common::kafka::{apply, Rebalance};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::client::{read_state, send, Publisher, Throttle, BROKER_TIMEOUT, CORRELATOR_KEY};
use crate::config::KafkaConfig;
use crate::engine::correlate::{Correlator, Evidence};
use crate::engine::Origin;
use crate::state::{now_ms, LiveState};

/// The correlator's record of the state topic.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct CorrelatorHandoff {
    /// Where to go on reading the anomalies topic, by partition.
    pub(crate) offsets: BTreeMap<i32, i64>,
    pub(crate) correlator: Correlator,
}

/// The anomalies consumer's context: the correlator's role, and its incidents, come with
/// the anomalies topic's partition and go with it.
pub(crate) struct Correlation {
    pub(crate) shared: Arc<LiveState>,
    pub(crate) config: KafkaConfig,
    pub(crate) producer: Publisher,
    /// The anomalies partitions held now.
    pub(crate) held: Mutex<HashSet<i32>>,
}

impl Correlation {
    pub(crate) fn held(&self) -> MutexGuard<'_, HashSet<i32>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `correlator` with the positions reached on the anomalies topic, and
    /// commits those.
    pub(crate) fn publish(&self, consumer: &BaseConsumer<Self>, correlator: &Correlator) {
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
            self.shared.count_error(Origin::Kafka, "handoff");
        }
        if !handoff.offsets.is_empty() {
            if let Err(error) = consumer.commit(&positions, rdkafka::consumer::CommitMode::Async) {
                warn!(%error, "anomalies offsets not committed");
            }
        }
    }

    /// The incidents and positions the previous correlator handed over, if it did.
    pub(crate) fn handed_over(&self) -> Option<CorrelatorHandoff> {
        match read_state(&self.config) {
            Ok(mut latest) => latest
                .remove(CORRELATOR_KEY)
                .and_then(|value| serde_json::from_slice(&value).ok()),
            Err(error) => {
                warn!(%error, "cannot read the state topic: correlating afresh");
                self.shared.count_error(Origin::Kafka, "handoff");
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
        let rebalance = if assigning {
            Rebalance::Assign
        } else {
            Rebalance::Revoke
        };
        let result = apply(consumer, rebalance, partitions);
        if let Err(error) = result {
            warn!(%error, "applying the rebalance failed");
        }
    }
}

/// Reads the anomalies topic while this detector holds its partition, correlating the
/// group's evidence; publishes the incidents every `handoff_interval`.
pub(crate) fn correlate(
    consumer: BaseConsumer<Correlation>,
    config: &KafkaConfig,
    shared: &LiveState,
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
                    Some(Err(_)) => shared.count_error(Origin::Kafka, "malformed_evidence"),
                    None => {}
                }
            }
            Some(Err(error)) => {
                shared.count_error(Origin::Kafka, "kafka");
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
