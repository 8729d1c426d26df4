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

pub(crate) mod client;
pub(crate) mod correlator;
pub(crate) mod handover;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use self::client::{Delivery, Publisher};
use self::correlator::{correlate, Correlation};
use self::handover::Handover;
use crate::config::KafkaConfig;
use crate::ingest::kafka::run;
use crate::state::LiveState;

/// Starts the consumer threads; they stop when `stop` is set, handing their series (and
/// incidents) over.
pub fn spawn(
    config: KafkaConfig,
    shared: Arc<LiveState>,
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
