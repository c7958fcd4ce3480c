//! An offset commit whose answer can be waited for, for a bounded time.
//!
//! Why not rdkafka's own calls: rust-rdkafka 0.39 submits a `CommitMode::Async` commit
//! with no reply queue, so the broker's answer never reaches
//! `ConsumerContext::commit_callback` (fede1024/rust-rdkafka#856, open; measured here: three
//! async commits sent, none answered), and a `CommitMode::Sync` commit waits without end
//! when the group coordinator is gone. This asks librdkafka (`rd_kafka_commit_queue`) to
//! post the answer on a queue of its own and waits on that queue at most `wait`. It is
//! the workspace's only `unsafe` code (allowed here alone, against the workspace's
//! `unsafe_code = "deny"`); drop it when rdkafka answers async commits.
#![allow(unsafe_code)]

use std::{ptr, time::Duration};

use rdkafka::{
    bindings as rdsys,
    consumer::{BaseConsumer, Consumer, ConsumerContext},
    types::RDKafkaRespErr,
    TopicPartitionList,
};

/// The broker's answer to an offset commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Every partition's offset is stored by the group coordinator.
    Confirmed,
    /// The commit, or one partition of it, was refused (or could not be sent).
    Refused(RDKafkaRespErr),
    /// No answer within the wait (the coordinator is unreachable or slow).
    Silent,
}

/// Commits `offsets` for the consumer's group and waits at most `wait` for the answer.
pub fn commit_and_wait<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    offsets: &TopicPartitionList,
    wait: Duration,
) -> Answer {
    let rk = consumer.client().native_ptr();
    let wait_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: `rk` is the live client `consumer` borrows for this whole call, and
    // `offsets.ptr()` a live list librdkafka copies before `rd_kafka_commit_queue` returns.
    // The queue is ours: created here, destroyed here once; an answer arriving after the
    // wait goes to a queue librdkafka keeps alive by reference count and then discards.
    // The event is destroyed once, after its error code and list were read.
    unsafe {
        let queue = rdsys::rd_kafka_queue_new(rk);
        let sent = rdsys::rd_kafka_commit_queue(rk, offsets.ptr(), queue, None, ptr::null_mut());
        let answer = if sent != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR {
            Answer::Refused(sent)
        } else {
            let event = rdsys::rd_kafka_queue_poll(queue, wait_ms);
            if event.is_null() {
                Answer::Silent
            } else {
                let answer = read_answer(event);
                rdsys::rd_kafka_event_destroy(event);
                answer
            }
        };
        rdsys::rd_kafka_queue_destroy(queue);
        answer
    }
}

/// The request's error, else the first partition's error, else confirmed.
///
/// # Safety
/// `event` is a live offset-commit event.
unsafe fn read_answer(event: *mut rdsys::rd_kafka_event_t) -> Answer {
    let ok = RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR;
    let err = rdsys::rd_kafka_event_error(event);
    if err != ok {
        return Answer::Refused(err);
    }
    let list = rdsys::rd_kafka_event_topic_partition_list(event);
    if list.is_null() || (*list).cnt <= 0 || (*list).elems.is_null() {
        return Answer::Confirmed;
    }
    let elems = std::slice::from_raw_parts((*list).elems, (*list).cnt as usize);
    match elems.iter().find(|e| e.err != ok) {
        Some(e) => Answer::Refused(e.err),
        None => Answer::Confirmed,
    }
}
