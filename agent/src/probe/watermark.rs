//! What the Kafka client already knows about a partition's end: the high watermark that
//! the last fetch reported, read from librdkafka's cache without a network round trip.
//!
//! Both Kafka probes compare it with committed or applied offsets.

/// The high watermark the last fetch of a partition reported (librdkafka's cached
/// watermarks; rdkafka wraps only the ListOffsets query), or None before any fetch.
pub(super) fn fetched_high_watermark(
    reader: &rdkafka::consumer::BaseConsumer,
    topic: &str,
    partition: i32,
) -> Option<i64> {
    let topic = std::ffi::CString::new(topic).ok()?;
    let (mut low, mut high) = (-1i64, -1i64);
    // SAFETY: the client pointer is valid for the life of `reader`, the topic is a
    // NUL-terminated string that outlives the call, and librdkafka only writes the two
    // integers it is given; the call reads cached state and does not block.
    let error = unsafe {
        rdkafka::bindings::rd_kafka_get_watermark_offsets(
            rdkafka::consumer::Consumer::client(reader).native_ptr(),
            topic.as_ptr(),
            partition,
            &mut low,
            &mut high,
        )
    };
    (error == rdkafka::bindings::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR && high >= 0)
        .then_some(high)
}
