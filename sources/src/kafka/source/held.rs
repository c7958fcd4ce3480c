//! What the Kafka source holds between polls: per partition, the buffered messages and
//! gaps, what it has sent, and the revocations and offset jumps still to act on.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Instant,
};

use rustc_hash::FxHashMap;

use rdkafka::message::{Message as _, Timestamp};
use sluice_core::DeadLetter;
use tracing::debug;

use crate::kafka::{
    consumer::{PartitionKey, Shared},
    decode::{Message, Messages},
};

/// One partition's messages waiting to be handed on.
#[derive(Debug, Default)]
pub(super) struct Buffer {
    pub(super) messages: Messages,
    pub(super) bytes: usize,
    pub(super) since: Option<Instant>,
    /// Offset gaps to record with the partition's next chunk.
    pub(super) gaps: Vec<DeadLetter>,
}

/// What the source holds between polls: buffered messages, what it sent, and
/// revocations the committer has not been told about yet.
#[derive(Debug, Default)]
pub(super) struct Held {
    /// Looked up for every message: a fast hash (the keys are the consumer's own).
    pub(super) buffers: FxHashMap<PartitionKey, Buffer>,
    /// The next offset after the last chunk sent, per partition.
    pub(super) sent: HashMap<PartitionKey, i64>,
    pub(super) revoked: Vec<PartitionKey>,
    /// The partition of the last message, whose key the next message likely shares.
    pub(super) last: Option<PartitionKey>,
    /// Partitions whose offsets jumped forward by more than one, with the offset expected.
    pub(super) jumps: Vec<(PartitionKey, i64)>,
    /// Set by the consumer's rebalance callback when it revokes partitions, so that the
    /// shared state is locked only then, not for every message.
    pub(super) revocations: Arc<AtomicBool>,
}

impl Held {
    /// Drops what is held of partitions revoked during the last poll, before any message
    /// of a new assignment is buffered.
    pub(super) fn apply_revocations(&mut self, shared: &Mutex<Shared>) {
        // The callback runs inside `poll`, on this thread: it is done by the time the
        // flag is read.
        if !self.revocations.swap(false, Ordering::AcqRel) {
            return;
        }
        let mut shared = shared.lock().unwrap_or_else(PoisonError::into_inner);
        for key in std::mem::take(&mut shared.revoked) {
            self.buffers.remove(&key);
            self.sent.remove(&key);
            shared.in_flight.retain(|(k, _), _| *k != key);
            self.revoked.push(key);
        }
    }

    /// The partition's next offset by this source's bookkeeping: after the last buffered
    /// message (which is past what was sent or committed), else after the last chunk sent,
    /// else the committed one; `None` when nothing is known yet.
    pub(super) fn expected(&self, shared: &Mutex<Shared>, key: &PartitionKey) -> Option<i64> {
        if let Some(last) = self.buffers.get(key).and_then(|b| b.messages.last()) {
            return Some(last.offset + 1);
        }
        let committed = shared
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .committed
            .get(key)
            .copied();
        match (committed, self.sent.get(key).copied()) {
            (Some(c), Some(s)) => Some(c.max(s)),
            (c, s) => c.or(s),
        }
    }

    /// Keeps a consumed message in its partition's buffer.
    ///
    /// A message below the partition's next offset (committed, sent or buffered) is
    /// already in DuckDB or on its way: it is skipped, whatever made the client deliver it
    /// again (an offset reset after a spurious out-of-range error, say).
    pub(super) fn push(
        &mut self,
        shared: &Mutex<Shared>,
        m: &rdkafka::message::BorrowedMessage<'_>,
    ) {
        self.apply_revocations(shared);
        // Messages come in runs of one partition: reuse its key (no allocation per message).
        let key = match &self.last {
            Some(k) if &*k.0 == m.topic() && k.1 == m.partition() => k.clone(),
            _ => {
                let k: PartitionKey = (m.topic().into(), m.partition());
                self.last = Some(k.clone());
                k
            }
        };
        let known = self.expected(shared, &key);
        let expected = known.unwrap_or(0);
        // A jump of one is a transaction marker; more may be aborted transactions or
        // compaction, or messages retention deleted before they were read: checked after
        // the poll (see KafkaSource::check_jumps).
        if known.is_some_and(|e| m.offset() > e + 1) {
            self.jumps.push((key.clone(), expected));
        }
        if m.offset() < expected {
            debug!(topic = %key.0, partition = key.1, offset = m.offset(), expected, "skipping a message delivered again");
            return;
        }
        let message = Message {
            offset: m.offset(),
            key: m.key(),
            timestamp_ms: match m.timestamp() {
                Timestamp::NotAvailable => None,
                Timestamp::CreateTime(t) | Timestamp::LogAppendTime(t) => Some(t),
            },
            payload: m.payload(),
        };
        let buf = self.buffers.entry(key).or_default();
        buf.bytes += message.size();
        buf.since.get_or_insert_with(Instant::now);
        buf.messages.push(message);
    }
}
