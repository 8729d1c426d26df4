//! Kafka consumer-group plumbing both consumers repeat (the agent's Kafka source, the
//! detector's hand-over and correlation consumers), behind the `kafka` feature so the
//! crate stays small without it.
//!
//! Invariant: a rebalance callback must apply the change librdkafka announced, in the
//! group's protocol, or the member keeps its old assignment: eager protocols replace the
//! whole assignment, cooperative ones change it partition by partition.

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::TopicPartitionList;

/// The change a rebalance makes to this member's partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rebalance {
    /// `partitions` are assigned to this member (`RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS`).
    Assign,
    /// `partitions` are taken from this member (`RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS`).
    Revoke,
}

/// Whether the group rebalances cooperatively (incrementally).
pub fn is_cooperative<C: ConsumerContext>(consumer: &BaseConsumer<C>) -> bool {
    matches!(
        consumer.rebalance_protocol(),
        RebalanceProtocol::Cooperative
    )
}

/// Applies a rebalance from inside `ConsumerContext::rebalance`: assigns or gives up
/// `partitions` incrementally under a cooperative protocol, else replaces the whole
/// assignment (`assign(partitions)` or `unassign()`).
pub fn apply<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    rebalance: Rebalance,
    partitions: &TopicPartitionList,
) -> KafkaResult<()> {
    match (rebalance, is_cooperative(consumer)) {
        (Rebalance::Assign, true) => consumer.incremental_assign(partitions),
        (Rebalance::Assign, false) => consumer.assign(partitions),
        (Rebalance::Revoke, true) => consumer.incremental_unassign(partitions),
        (Rebalance::Revoke, false) => consumer.unassign(),
    }
}
