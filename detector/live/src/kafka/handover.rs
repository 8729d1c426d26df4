//! Model state moving with the metrics topic's partitions: the consumer's context
//! publishes the state of the series it scores (periodically and when a rebalance takes
//! their partitions away) and takes over the series of partitions it is assigned.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

use omen_common::kafka::{apply, is_cooperative, Rebalance};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use super::client::{read_state, send, Publisher, BROKER_TIMEOUT, CORRELATOR_KEY};
use crate::config::KafkaConfig;
use crate::engine::Origin;
use crate::state::{now_ms, LiveState};

/// One record of the state topic.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Handoff {
    /// The metrics partition the series' samples arrive on.
    pub(crate) partition: i32,
    /// The engine's exported state of the series.
    pub(crate) state: String,
}

/// The consumer's context: hands model state over on rebalances.
pub(crate) struct Handover {
    pub(crate) shared: Arc<LiveState>,
    pub(crate) config: KafkaConfig,
    pub(crate) producer: Publisher,
    /// The metrics partition of every series scored here.
    pub(crate) owned: Mutex<HashMap<String, i32>>,
    /// The metrics partitions assigned now.
    pub(crate) assigned: Mutex<HashSet<i32>>,
}

impl Handover {
    pub(crate) fn owned(&self) -> MutexGuard<'_, HashMap<String, i32>> {
        self.owned.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn assigned(&self) -> MutexGuard<'_, HashSet<i32>> {
        self.assigned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes the state of the series on `partitions` (all when None); returns how
    /// many were published.
    pub(crate) fn publish(&self, partitions: Option<&HashSet<i32>>) -> usize {
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
            self.shared.count_error(Origin::Kafka, "handoff");
        }
        published
    }

    /// Sends the evidence scored since the last call to the correlator.
    pub(crate) fn publish_evidence(&self) {
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
    pub(crate) fn take_over(&self, partitions: &HashSet<i32>) -> Result<usize, KafkaError> {
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

impl ClientContext for Handover {}

impl ConsumerContext for Handover {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let cooperative = is_cooperative(consumer);
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
                        self.shared.count_error(Origin::Kafka, "handoff");
                    }
                }
                if !cooperative {
                    self.assigned().clear();
                }
                self.assigned().extend(&set);
                apply(consumer, Rebalance::Assign, partitions)
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
                apply(consumer, Rebalance::Revoke, partitions)
            }
        };
        if let Err(error) = result {
            warn!(%error, "applying the rebalance failed");
        }
    }
}
