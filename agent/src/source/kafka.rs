//! Kafka: records of a consumer group's partitions, one log line (or JSON document) per
//! record value.
//!
//! Exactly-once with the agent's checkpoint: a record's effects count only in the agent
//! that commits its offset, and offsets are committed only once the checkpoint holding
//! those effects is durable. So that a rebalance never hands another agent a partition
//! whose records this one applied but has not yet saved, the source hands out a batch
//! and reads nothing more until the worker has checkpointed it
//! ([`Source::needs_checkpoint`]); rebalances (served only while reading) thus find every
//! applied record durable, and records read in the same poll for a revoked partition are
//! dropped, left to its next owner. On assignment a partition starts at the checkpoint's
//! position when that is ahead of the group's committed offset, else at the committed
//! offset. A kill -9 between the checkpoint and its commit while another agent takes the
//! partition is the one window left (see the agent README). Reading, and so any
//! rebalance, happens in [`Source::prefetch`], outside the pipeline lock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use omen_common::kafka::{self as rebalance, Rebalance};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Deserialize;
use tracing::{debug, info, warn};

use super::framer::Framing;
use super::position::{KafkaPosition, SourceCheckpoint};
use super::traits::{RecordSink, Source, SourceEvent, StreamId};

/// Records handed out per poll at most (the worker checkpoints after each batch).
const MAX_RECORDS: usize = 20_000;
/// Bytes of record values handed out per poll at most.
const MAX_BYTES: usize = 8 << 20;
/// How long a rebalance waits for the group's committed offsets or a commit.
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// Client errors are logged at most this often (all are counted).
const ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Where a partition without a committed offset or a saved position starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KafkaStartAt {
    #[default]
    Earliest,
    Latest,
}

/// A Kafka source in the agent's configuration (`type: kafka`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// Names the source's positions in the checkpoint (default `kafka<index>`).
    pub name: Option<String>,
    /// `bootstrap.servers`: `host:port[,host:port…]`.
    pub brokers: String,
    pub topics: Vec<String>,
    /// The consumer group agents share partitions in.
    pub group: String,
    #[serde(default)]
    pub start_at: KafkaStartAt,
    /// Further librdkafka consumer properties (e.g. `session.timeout.ms`).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
    /// The rules file for this source's records (default: the agent's `rules`).
    pub rules: Option<std::path::PathBuf>,
}

#[derive(Debug, thiserror::Error)]
#[error("kafka source `{name}`: {source}")]
pub struct KafkaSourceError {
    name: String,
    source: KafkaError,
}

type Partition = (String, i32);

/// What the consumer's callbacks share with the source.
#[derive(Debug, Default)]
struct GroupState {
    /// Next offsets held by the last durable checkpoint, for the partitions owned (and,
    /// until the first assignment, those restored from the checkpoint).
    durable: HashMap<Partition, i64>,
    /// The partitions assigned to this member now.
    owned: HashSet<Partition>,
    /// Whether a first assignment came: restored positions of partitions it did not
    /// bring belong to other members now.
    joined: bool,
    /// Partitions revoked since the source last looked.
    revoked: Vec<Partition>,
    /// Client errors (broker unreachable…) since the source last looked.
    errors: u64,
    /// When a client error was last logged, and how many went unlogged since.
    last_error_log: Option<std::time::Instant>,
    unlogged_errors: u64,
}

/// The consumer's context: rebalances start partitions at the right offset and hand
/// them back committed.
pub struct GroupContext {
    source: String,
    state: Mutex<GroupState>,
}

impl GroupContext {
    fn state(&self) -> MutexGuard<'_, GroupState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts each assigned partition at the saved position when it is ahead of the
    /// group's committed offset.
    fn start_at_saved_positions(
        &self,
        consumer: &BaseConsumer<Self>,
        assignment: &mut TopicPartitionList,
    ) {
        let saved: Vec<(Partition, i64)> = {
            let mut state = self.state();
            for element in assignment.elements() {
                state
                    .owned
                    .insert((element.topic().to_owned(), element.partition()));
            }
            if !state.joined {
                state.joined = true;
                let GroupState { durable, owned, .. } = &mut *state;
                durable.retain(|key, _| owned.contains(key));
            }
            assignment
                .elements()
                .iter()
                .filter_map(|e| {
                    let key = (e.topic().to_owned(), e.partition());
                    state.durable.get(&key).map(|&offset| (key, offset))
                })
                .collect()
        };
        if saved.is_empty() {
            return;
        }
        let committed = consumer
            .committed_offsets(assignment.clone(), BROKER_TIMEOUT)
            .map_err(|error| warn!(source = %self.source, %error, "cannot read committed offsets, starting at the checkpoint's"))
            .ok();
        for ((topic, partition), offset) in saved {
            let committed = committed
                .as_ref()
                .and_then(|c| c.find_partition(&topic, partition))
                .and_then(|e| e.offset().to_raw());
            if committed.is_none_or(|c| c < offset) {
                if let Err(error) =
                    assignment.set_partition_offset(&topic, partition, Offset::Offset(offset))
                {
                    warn!(source = %self.source, %topic, partition, %error, "cannot start at the saved offset");
                }
            }
        }
    }

    /// Commits what is durable of the revoked partitions and forgets them.
    fn hand_back(&self, consumer: &BaseConsumer<Self>, revoked: &TopicPartitionList) {
        let mut state = self.state();
        let mut commit = TopicPartitionList::new();
        for element in revoked.elements() {
            let key = (element.topic().to_owned(), element.partition());
            state.owned.remove(&key);
            if let Some(offset) = state.durable.remove(&key) {
                let _ = commit.add_partition_offset(&key.0, key.1, Offset::Offset(offset));
            }
            state.revoked.push(key);
        }
        drop(state);
        // Partitions lost (the session expired: the broker is away, or this member was too
        // slow) may belong to another member already, and a commit would only hang.
        if commit.count() > 0 && !consumer.assignment_lost() {
            if let Err(error) = consumer.commit(&commit, CommitMode::Sync) {
                warn!(source = %self.source, %error, "commit of revoked partitions failed");
            }
        }
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        // librdkafka's errors also reach `error` below, which counts and logs them.
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                warn!(source = %self.source, facility, message, "librdkafka")
            }
            _ => debug!(source = %self.source, facility, message, "librdkafka"),
        }
    }

    /// Counted every time, logged at most every [`ERROR_LOG_INTERVAL`]: a broker that is
    /// away reports every reconnection attempt.
    fn error(&self, error: KafkaError, reason: &str) {
        let mut state = self.state();
        state.errors += 1;
        let now = std::time::Instant::now();
        if state
            .last_error_log
            .is_some_and(|at| now.duration_since(at) < ERROR_LOG_INTERVAL)
        {
            state.unlogged_errors += 1;
            return;
        }
        let unlogged = std::mem::take(&mut state.unlogged_errors);
        state.last_error_log = Some(now);
        drop(state);
        warn!(source = %self.source, %error, reason, unlogged, "kafka client error");
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.start_at_saved_positions(consumer, partitions);
                info!(source = %self.source, partitions = ?partition_names(partitions), "partitions assigned");
                rebalance::apply(consumer, Rebalance::Assign, partitions)
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.hand_back(consumer, partitions);
                info!(source = %self.source, partitions = ?partition_names(partitions), "partitions revoked");
                rebalance::apply(consumer, Rebalance::Revoke, partitions)
            }
            other => {
                warn!(source = %self.source, error = ?other, "rebalance failed");
                self.hand_back(consumer, partitions);
                consumer.unassign()
            }
        };
        if let Err(error) = result {
            warn!(source = %self.source, %error, "applying the rebalance failed");
        }
    }
}

fn partition_names(list: &TopicPartitionList) -> Vec<String> {
    list.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect()
}

/// A consumer-group member whose records feed the pipeline.
pub struct KafkaSource {
    name: String,
    consumer: BaseConsumer<GroupContext>,
    streams: HashMap<Partition, StreamId>,
    /// The source's own stream, for client errors.
    stream: Option<StreamId>,
    /// Next offset to read of each owned partition, for the records handed out.
    positions: BTreeMap<Partition, i64>,
    /// Records were handed out that no durable checkpoint holds yet.
    dirty: bool,
    /// A batch read by [`Source::prefetch`], not handed out yet.
    prefetched: Option<Vec<Fetched>>,
}

impl KafkaSource {
    /// Creates the consumer and subscribes (the group is joined while polling).
    pub fn new(name: String, config: &KafkaSourceConfig) -> Result<Self, KafkaSourceError> {
        let error = |source| KafkaSourceError {
            name: name.clone(),
            source,
        };
        let mut client = ClientConfig::new();
        client
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set(
                "auto.offset.reset",
                match config.start_at {
                    KafkaStartAt::Earliest => "earliest",
                    KafkaStartAt::Latest => "latest",
                },
            );
        for (key, value) in &config.properties {
            client.set(key, value);
        }
        let context = GroupContext {
            source: name.clone(),
            state: Mutex::new(GroupState::default()),
        };
        let consumer: BaseConsumer<GroupContext> =
            client.create_with_context(context).map_err(error)?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).map_err(error)?;
        Ok(Self {
            name,
            consumer,
            streams: HashMap::new(),
            stream: None,
            positions: BTreeMap::new(),
            dirty: false,
            prefetched: None,
        })
    }

    fn stream_for(&mut self, sink: &mut dyn RecordSink, partition: &Partition) -> StreamId {
        if let Some(&id) = self.streams.get(partition) {
            return id;
        }
        let id = sink.stream(&format!("kafka:{}/{}", partition.0, partition.1));
        self.streams.insert(partition.clone(), id);
        id
    }
}

/// One record read, not yet handed out.
struct Fetched {
    partition: Partition,
    offset: i64,
    value: Option<Vec<u8>>,
}

impl Source for KafkaSource {
    fn name(&self) -> &str {
        &self.name
    }

    fn prefetch(&mut self) {
        if self.dirty || self.prefetched.is_some() {
            // The last batch is not durable yet (reading now could serve a rebalance), or
            // a batch is already waiting.
            return;
        }
        let mut fetched = Vec::new();
        let mut bytes = 0;
        while fetched.len() < MAX_RECORDS && bytes < MAX_BYTES {
            match self.consumer.poll(Duration::ZERO) {
                None => break,
                Some(Ok(message)) => {
                    let value = message.payload().map(<[u8]>::to_vec);
                    bytes += value.as_ref().map_or(0, Vec::len);
                    fetched.push(Fetched {
                        partition: (message.topic().to_owned(), message.partition()),
                        offset: message.offset(),
                        value,
                    });
                }
                Some(Err(error)) => {
                    self.consumer.context().state().errors += 1;
                    warn!(source = %self.name, %error, "kafka read failed");
                    break;
                }
            }
        }
        let mut state = self.consumer.context().state();
        if state.joined {
            // Restored positions of partitions that went to other members.
            self.positions.retain(|p, _| state.owned.contains(p));
        }
        let revoked = std::mem::take(&mut state.revoked);
        if !revoked.is_empty() {
            // Read before the revocation, for another agent to apply now.
            fetched.retain(|f| !revoked.contains(&f.partition));
            self.positions.retain(|p, _| !revoked.contains(p));
        }
        self.prefetched = Some(fetched);
    }

    fn poll(&mut self, sink: &mut dyn RecordSink) -> u64 {
        // The worker prefetches outside the pipeline lock; other callers read here.
        self.prefetch();
        let fetched = self.prefetched.take().unwrap_or_default();
        let errors = std::mem::take(&mut self.consumer.context().state().errors);
        if errors > 0 {
            let stream = *self
                .stream
                .get_or_insert_with(|| sink.stream(&format!("kafka:{}", self.name)));
            for _ in 0..errors.min(100) {
                sink.event(stream, SourceEvent::ReadError);
            }
        }
        let mut bytes = 0;
        for record in &fetched {
            let stream = self.stream_for(sink, &record.partition);
            if let Some(value) = &record.value {
                bytes += value.len() as u64;
                sink.bytes_read(stream, value.len() as u64);
                let line = value.strip_suffix(b"\n").unwrap_or(value);
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                sink.record(stream, line, false);
            }
            // A tombstone (no value) is read past like any record.
            self.positions
                .insert(record.partition.clone(), record.offset + 1);
        }
        self.dirty = !fetched.is_empty();
        bytes
    }

    fn flush(&mut self, _sink: &mut dyn RecordSink, _end_of_input: bool) {}

    fn finished(&self) -> bool {
        false
    }

    fn checkpoint(&self) -> SourceCheckpoint {
        SourceCheckpoint::Kafka {
            partitions: self
                .positions
                .iter()
                .map(|((topic, partition), &offset)| KafkaPosition {
                    topic: topic.clone(),
                    partition: *partition,
                    offset,
                })
                .collect(),
        }
    }

    fn restore(&mut self, checkpoint: SourceCheckpoint) {
        let SourceCheckpoint::Kafka { partitions } = checkpoint else {
            return;
        };
        let mut state = self.consumer.context().state();
        for position in partitions {
            let key = (position.topic, position.partition);
            state.durable.insert(key.clone(), position.offset);
            self.positions.insert(key, position.offset);
        }
    }

    fn needs_checkpoint(&self) -> bool {
        self.dirty
    }

    fn checkpoint_written(&mut self, checkpoint: &SourceCheckpoint) {
        self.dirty = false;
        let SourceCheckpoint::Kafka { partitions } = checkpoint else {
            return;
        };
        let mut commit = TopicPartitionList::new();
        {
            let mut state = self.consumer.context().state();
            for position in partitions {
                let key = (position.topic.clone(), position.partition);
                let owned = state.owned.contains(&key);
                if state.joined && !owned {
                    continue;
                }
                state.durable.insert(key, position.offset);
                if !owned {
                    // Restored and not assigned yet: kept in the checkpoint, not committed.
                    continue;
                }
                let _ = commit.add_partition_offset(
                    &position.topic,
                    position.partition,
                    Offset::Offset(position.offset),
                );
            }
        }
        if commit.count() > 0 {
            // Asynchronous: a broker away must not stall the other sources. A failed commit
            // is retried by the next checkpoint's, and a rebalance commits synchronously.
            if let Err(error) = self.consumer.commit(&commit, CommitMode::Async) {
                warn!(source = %self.name, %error, "offset commit failed");
            }
        }
    }

    fn set_framing(&mut self, _framing: &Framing) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A source on a broker that is not there: creating the consumer does not connect.
    fn source(properties: &str) -> Result<KafkaSource, KafkaSourceError> {
        let yaml = format!(
            "{{ brokers: '127.0.0.1:1', topics: [t], group: g, properties: {properties} }}"
        );
        let config: KafkaSourceConfig = serde_yaml::from_str(&yaml).expect("a source");
        KafkaSource::new("k".to_owned(), &config)
    }

    /// librdkafka is built with OpenSSL: TLS and SASL (SCRAM, PLAIN) settings are taken,
    /// where a build without it refuses `security.protocol: ssl` when the consumer is made.
    #[test]
    fn tls_and_sasl_settings_are_taken() {
        let dir = tempfile::tempdir().unwrap();
        let pki = omen_common::pki::test_pki(dir.path());
        let (ca, cert, key) = (
            pki.ca.display(),
            pki.client_cert.display(),
            pki.client_key.display(),
        );
        for properties in [
            format!("{{ security.protocol: ssl, ssl.ca.location: '{ca}', ssl.certificate.location: '{cert}', ssl.key.location: '{key}' }}"),
            format!("{{ security.protocol: sasl_ssl, sasl.mechanism: SCRAM-SHA-512, sasl.username: omen, sasl.password: s3cret, ssl.ca.location: '{ca}' }}"),
            "{ security.protocol: sasl_ssl, sasl.mechanism: SCRAM-SHA-256, sasl.username: omen, sasl.password: s3cret }".to_owned(),
            "{ security.protocol: sasl_plaintext, sasl.mechanism: PLAIN, sasl.username: omen, sasl.password: s3cret }".to_owned(),
        ] {
            assert!(source(&properties).is_ok(), "{properties}: {:?}", source(&properties).err());
        }
        for (properties, says) in [
            (
                "{ security.protocol: sasl_ssl, sasl.mechanism: NOPE }",
                "sasl.mechanism",
            ),
            (
                "{ security.protocol: ssl, ssl.ca.location: /nonexistent/ca.crt }",
                "ssl.ca.location",
            ),
        ] {
            let error = source(properties).err().expect("refused").to_string();
            assert!(
                error.contains(says) || error.contains("kafka source `k`"),
                "{properties}: {error}"
            );
        }
    }
}
