//! Samples from a Kafka topic shared by a group of detectors: records are samples keyed
//! by series (the JSON of prometheus-kafka-adapter: `{"name","labels","value","timestamp"}`),
//! so each series is scored by exactly one detector. Model state moves with the partitions
//! (`crate::kafka::handover`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::Producer;
use serde::Deserialize;
use tracing::warn;

use crate::config::KafkaConfig;
use crate::engine::{Engine, Mode, Origin};
use crate::kafka::client::{Throttle, BROKER_TIMEOUT};
use crate::kafka::handover::Handover;
use crate::state::{now_ms, LiveState};
use omen_detector::wire::{Sample, ValueKind};

/// Samples scored per batch at most.
pub(crate) const BATCH: usize = 1000;

/// A prometheus-kafka-adapter sample.
#[derive(Debug, Deserialize)]
pub(crate) struct AdapterSample {
    name: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    value: serde_json::Value,
    timestamp: Option<serde_json::Value>,
}

/// Decodes one record value into a sample, or says why not.
pub(crate) fn decode(value: &[u8]) -> Result<Sample, &'static str> {
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

pub(crate) fn run(
    consumer: BaseConsumer<Handover>,
    config: &KafkaConfig,
    shared: &LiveState,
    stop: &AtomicBool,
) {
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
                    Some(Err(reason)) => shared.count_error(Origin::Kafka, reason),
                    None => {}
                }
                if batch.len() < BATCH {
                    continue;
                }
            }
            Some(Err(error)) => {
                shared.count_error(Origin::Kafka, "kafka");
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

/// Scores the batch's samples of partitions still assigned (a rebalance may have handed
/// the others to another detector while they were read).
pub(crate) fn score(handover: &Handover, shared: &LiveState, batch: &mut Vec<(i32, Sample)>) {
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
    shared.ingest(Origin::Kafka, samples, now_ms(), Mode::Live);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn a_record_with_any_fields_gives_a_sample_or_a_reason(
            value in "\\PC{0,16}",
            timestamp in "\\PC{0,32}",
            number in any::<i64>(),
        ) {
            for record in [
                serde_json::json!({ "name": "m", "value": value, "timestamp": timestamp }),
                serde_json::json!({ "name": "m", "value": number, "timestamp": number }),
                serde_json::json!({ "labels": { "__name__": value }, "value": 1 }),
            ] {
                let _ = decode(record.to_string().as_bytes());
            }
        }
    }

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
