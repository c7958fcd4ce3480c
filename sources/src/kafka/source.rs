//! The Kafka source loop: poll messages, buffer them per partition, hand each partition's
//! buffer on as a chunk when it is large or old enough, and act on acknowledgements
//! (the broker's committed offset follows DuckDB's, for lag tools).
//!
//! Backpressure: when the committer's channel is full, every assigned partition is paused
//! and the loop keeps polling (so the group membership stays alive) until the chunk fits.
//!
//! [`held`] keeps what the loop holds between polls (buffers, what was sent, revocations,
//! offset jumps); [`once`] decides when a `--once` run is over.

mod held;
mod once;

use std::{
    collections::HashMap,
    sync::{mpsc::TrySendError, Arc, Mutex, MutexGuard, PoisonError},
    time::{Duration, Instant},
};

use rdkafka::{
    consumer::{CommitMode, Consumer},
    error::RDKafkaErrorCode,
    TopicPartitionList,
};
use sluice_core::{Chunk, DeadLetter, Ident, Origin, PartitionProgress, Position, TableSchema};
use tracing::{debug, error, info, warn};

use super::{
    commit::{self, Answer},
    config::{Format, KafkaSourceConfig},
    consumer::{self, describe, KafkaConsumer, Lake, PartitionKey, Redactor, Shared},
    decode::{infer_json, Decoder, Partition},
};
use crate::{telemetry, typing::contract::RefusalLog, SourceContext, SourceError, SourceEvent};
use held::{Buffer, Held};
use once::Once;

/// How long a partition's buffer may wait before it is handed on.
const FLUSH_AGE: Duration = Duration::from_millis(200);
/// One poll's wait when nothing is buffered.
const POLL: Duration = Duration::from_millis(100);
/// Longest a stopping source waits for its last chunks to be committed.
const STOP_WAIT: Duration = Duration::from_secs(10);
/// Longest a stopping source waits for the broker to confirm its last offset commit.
const BROKER_COMMIT_WAIT: Duration = Duration::from_secs(5);

/// Everything a Kafka source needs, prepared by the daemon.
#[derive(Debug)]
pub struct KafkaSetup {
    pub name: Arc<str>,
    pub config: KafkaSourceConfig,
    pub table: Ident,
    /// Declared columns, or those of the existing table; inferred when `None`.
    pub data_schema: Option<TableSchema>,
    /// `_sluice.offsets` of this source.
    pub stored: HashMap<(String, i32), i64>,
    pub chunk_rows: usize,
    pub chunk_bytes: usize,
    /// The lake the table is published to, if any (see [`Lake`]).
    pub lake: Option<Lake>,
}

/// A running Kafka source.
pub struct KafkaSource {
    setup: KafkaSetup,
    consumer: KafkaConsumer,
    shared: Arc<Mutex<Shared>>,
    decoder: Option<Decoder>,
    held: Held,
    redactor: Redactor,
    paused: bool,
    status: Arc<crate::SourceStatus>,
    refusals: RefusalLog,
}

impl std::fmt::Debug for KafkaSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaSource")
            .field("name", &self.setup.name)
            .finish_non_exhaustive()
    }
}

impl KafkaSource {
    pub fn new(setup: KafkaSetup, status: Arc<crate::SourceStatus>) -> Result<Self, SourceError> {
        let committed = setup
            .stored
            .iter()
            .map(|((t, p), o)| ((t.as_str().into(), *p), *o))
            .collect();
        let shared = Arc::new(Mutex::new(Shared {
            committed,
            lake: setup.lake.clone(),
            ..Shared::default()
        }));
        let held = Held::default();
        let consumer = consumer::create(
            &setup.name,
            &setup.config,
            shared.clone(),
            held.revocations.clone(),
            status.clone(),
        )
        .map_err(|detail| config_error(&setup.name, detail))?;
        let decoder = setup.data_schema.clone().map(|data| decoder(&setup, data));
        telemetry::register_kafka(&setup.name, &setup.config.subscription());
        Ok(KafkaSource {
            redactor: Redactor::new(&setup.config),
            setup,
            consumer,
            shared,
            decoder,
            held,
            paused: false,
            status,
            refusals: RefusalLog::default(),
        })
    }

    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Consumes until stopped (or, with `--once`, until every assigned partition is read
    /// up to its high watermark and committed; see [`once`]).
    pub fn run(mut self, mut ctx: SourceContext) -> Result<(), SourceError> {
        // Acknowledgements are shared with the rebalance callbacks (see consumer.rs).
        let (_closed, none) = std::sync::mpsc::channel();
        self.shared().acks = Some(std::mem::replace(&mut ctx.acks, none));
        let topics = self.setup.config.subscription();
        let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.consumer
            .subscribe(&topics)
            .map_err(|e| config_error(&self.setup.name, describe(&e, &self.redactor)))?;
        info!(source = %self.setup.name, topics = ?topics, group = %self.setup.config.group_id, "consuming");
        let mut once = ctx.once.then(Once::new);
        loop {
            self.take_acks();
            self.take_revoked(&ctx);
            if let Some(fatal) = self.shared().fatal.take() {
                return Err(SourceError::Config {
                    source_name: self.setup.name.to_string(),
                    detail: fatal,
                });
            }
            self.take_gaps();
            if ctx.stop.is_cancelled() {
                self.flush(&ctx, true);
                if !self.wait_for_acks() {
                    // Closing the client would leave the group through a coordinator that
                    // is gone, and can wait for it without end (seen: after the revocation).
                    // The process is stopping: the client is left as it is, and the group
                    // drops this member when its session times out.
                    warn!(source = %self.setup.name, "the brokers are unreachable: stopping without closing the Kafka client; every offset is in DuckDB");
                    drop(ctx);
                    std::mem::forget(self);
                }
                return Ok(());
            }
            if let Some(done) = once.as_mut().and_then(|o| o.step(&mut self, &ctx)) {
                return done;
            }
            self.poll_some();
            self.check_jumps();
            if self.shared().fatal.is_some() {
                continue; // nothing past a gap is handed on under on_offset_gap = "fail"
            }
            self.flush(&ctx, false);
        }
    }

    /// Polls up to a chunk's worth of messages, waiting only for the first, and no longer
    /// than until the oldest buffer is due. Not waiting at all while buffers were held made
    /// the loop spin on an empty queue (400k empty polls per million messages), taking CPU
    /// from librdkafka's fetcher threads.
    fn poll_some(&mut self) {
        let now = Instant::now();
        let mut wait = self
            .held
            .buffers
            .values()
            .filter_map(|b| b.since)
            .map(|since| (since + FLUSH_AGE).saturating_duration_since(now))
            .min()
            .map_or(POLL, |due| due.min(POLL));
        for _ in 0..self.setup.chunk_rows {
            let Some(result) = self.consumer.poll(wait) else {
                self.held.apply_revocations(&self.shared);
                return;
            };
            wait = Duration::ZERO;
            match result {
                Ok(m) => self.held.push(&self.shared, &m),
                Err(e) => {
                    warn!(source = %self.setup.name, error = %describe(&e, &self.redactor), "consume error")
                }
            }
        }
    }

    /// For each forward jump in a partition's offsets: if the broker no longer has the
    /// offset expected, retention deleted messages this source had not read (librdkafka
    /// then resets to the earliest offset by itself) and `on_offset_gap` decides, as when
    /// a stored offset is found missing at assignment. Other jumps (aborted transactions,
    /// compaction) are normal.
    fn check_jumps(&mut self) {
        let jumps = std::mem::take(&mut self.held.jumps);
        if jumps.is_empty() {
            return;
        }
        let context = self.consumer.context().clone();
        // A gap already found at assignment explains the jump: it is recorded once.
        let known: Vec<PartitionKey> = self
            .shared()
            .gaps
            .iter()
            .map(|g| (g.topic.clone(), g.partition))
            .collect();
        let recorded = |k: &PartitionKey| {
            known.contains(k) || self.held.buffers.get(k).is_some_and(|b| !b.gaps.is_empty())
        };
        let jumps: Vec<_> = jumps.into_iter().filter(|(k, _)| !recorded(k)).collect();
        for (key, expected) in jumps {
            debug!(source = %self.setup.name, topic = %key.0, partition = key.1, expected,
                "offsets jumped forward; checking the broker still has the expected one");
            context.checked(&self.consumer, &key, expected);
        }
        self.take_gaps();
    }

    /// Hands on every buffer that is large or old enough (all of them with `all`).
    fn flush(&mut self, ctx: &SourceContext, all: bool) {
        // One clock read per call: reading it per buffer was 5% of a busy source's time.
        let now = Instant::now();
        let due: Vec<PartitionKey> = self
            .held
            .buffers
            .iter()
            .filter(|(_, b)| !b.messages.is_empty() || !b.gaps.is_empty())
            .filter(|(_, b)| {
                all || b.messages.len() >= self.setup.chunk_rows
                    || b.bytes >= self.setup.chunk_bytes
                    || b.since.is_some_and(|s| now.duration_since(s) >= FLUSH_AGE)
                    || !b.gaps.is_empty()
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            let Some(buf) = self.held.buffers.remove(&key) else {
                continue;
            };
            let first = buf.messages.first().map(|m| m.offset);
            match self.chunk(&key, buf) {
                Ok(Some(chunk)) => self.send(ctx, chunk),
                Ok(None) => {}
                Err(e) => {
                    // Not a bad message (those are dead letters) but a chunk that cannot be
                    // typed at all: the source stops, nothing of the partition from here
                    // on is handed on, so the next start reads these messages again.
                    let detail = format!(
                        "cannot decode the messages of {} partition {} from offset {}: {e}",
                        key.0,
                        key.1,
                        first.unwrap_or_default()
                    );
                    error!(source = %self.setup.name, error = %detail, "stopping the source");
                    self.shared().fatal.get_or_insert(detail);
                    return;
                }
            }
        }
    }

    fn chunk(
        &mut self,
        key: &PartitionKey,
        buf: Buffer,
    ) -> Result<Option<Chunk>, arrow::error::ArrowError> {
        let Some(last) = buf.messages.last().map(|m| m.offset) else {
            return Ok(None); // gaps alone wait for the partition's next messages
        };
        if self.decoder.is_none() && self.setup.config.format == Format::Json {
            if let Some(schema) = infer_json(&buf.messages, self.setup.config.nested) {
                let cols: Vec<String> = schema
                    .columns
                    .iter()
                    .map(|c| format!("{} {}", c.name, c.ty))
                    .collect();
                info!(source = %self.setup.name, table = %self.setup.table, columns = %cols.join(", "), "inferred the table's schema");
                self.decoder = Some(decoder(&self.setup, schema));
            }
        }
        // No JSON object yet to infer from: every message so far is a dead letter.
        let decoder = self
            .decoder
            .get_or_insert_with(|| decoder(&self.setup, TableSchema::default()));
        let (mut decoded, refused) = decoder.decode_evolving(
            Partition {
                topic: &key.0,
                partition: key.1,
            },
            &buf.messages,
        )?;
        let raw_columns = Arc::new(decoder.raw_columns());
        if decoder.data.is_empty() {
            self.decoder = None; // inferred from the next JSON object
        }
        let (name, table) = (&*self.setup.name, self.setup.table.as_str());
        self.refusals.report(name, table, &self.status, &refused);
        let mut dead_letters = buf.gaps;
        dead_letters.append(&mut decoded.dead_letters);
        let next_offset = last + 1;
        self.shared()
            .in_flight
            .insert((key.clone(), next_offset), buf.bytes as u64);
        self.held.sent.insert(key.clone(), next_offset);
        Ok(Some(Chunk {
            source: self.setup.name.clone(),
            table: self.setup.table.clone(),
            raw_columns,
            rows: decoded.rows,
            dead_letters,
            position: Position::Kafka(PartitionProgress {
                topic: key.0.clone(),
                partition: key.1,
                next_offset,
            }),
            since: buf.since.unwrap_or_else(Instant::now),
        }))
    }

    /// Sends a chunk; while the channel is full, partitions are paused and polling goes on.
    fn send(&mut self, ctx: &SourceContext, chunk: Chunk) {
        let mut event = SourceEvent::Chunk(chunk);
        loop {
            match ctx.events.try_send(event) {
                Ok(()) => break,
                Err(TrySendError::Disconnected(_)) => return,
                Err(TrySendError::Full(e)) => {
                    event = e;
                    self.pause(true);
                    // Serves group heartbeats and rebalances; paused partitions deliver nothing new.
                    // Messages fetched before the pause still arrive: they are kept.
                    if let Some(Ok(m)) = self.consumer.poll(POLL) {
                        self.held.push(&self.shared, &m);
                    }
                    if ctx.stop.is_cancelled() {
                        let _ = ctx.events.send(event);
                        break;
                    }
                }
            }
        }
        self.pause(false);
    }

    fn pause(&mut self, pause: bool) {
        if self.paused == pause {
            return;
        }
        let Ok(assignment) = self.consumer.assignment() else {
            return;
        };
        debug!(source = %self.setup.name, pause, "backpressure: the committer is behind; partitions paused or resumed");
        let result = if pause {
            self.consumer.pause(&assignment)
        } else {
            self.consumer.resume(&assignment)
        };
        if let Err(e) = result {
            warn!(source = %self.setup.name, error = %describe(&e, &self.redactor), "pause/resume failed");
        }
        self.paused = pause;
    }

    /// Records acknowledged positions and commits them to the broker (for lag tools).
    fn take_acks(&mut self) {
        self.acked(Duration::ZERO, CommitMode::Async);
    }

    /// Applies acknowledgements (waiting up to `wait`) and commits them to the broker.
    fn acked(&mut self, wait: Duration, mode: CommitMode) {
        let mut tpl = TopicPartitionList::new();
        let mut shared = self.shared.lock().unwrap_or_else(PoisonError::into_inner);
        for (p, bytes) in shared.drain_acks(wait) {
            telemetry::bytes_ingested(&self.setup.name, bytes);
            self.status
                .set_position(format!("{}/{}", p.topic, p.partition), p.next_offset);
            let key = (p.topic.clone(), p.partition);
            if let (true, Some(o)) = (shared.assigned.contains(&key), shared.broker_offset(&key)) {
                let _ = tpl.add_partition_offset(&p.topic, p.partition, rdkafka::Offset::Offset(o));
            }
        }
        drop(shared);
        self.commit_to_broker(&tpl, mode);
    }

    /// Tells the committer to drop its open chunks of revoked partitions (what this source
    /// held of them is already dropped, see [`Held::apply_revocations`]).
    fn take_revoked(&mut self, ctx: &SourceContext) {
        self.held.apply_revocations(&self.shared);
        let revoked = std::mem::take(&mut self.held.revoked);
        if revoked.is_empty() {
            return;
        }
        let _ = ctx.events.send(SourceEvent::Revoked {
            source: self.setup.name.clone(),
            partitions: revoked,
        });
    }

    /// Offset gaps become dead letters in their partition's next chunk.
    fn take_gaps(&mut self) {
        let gaps = std::mem::take(&mut self.shared().gaps);
        for g in gaps {
            let error = format!(
                "offset gap: offsets {}..{} of {}/{} were deleted by the broker before sluice read them; resumed at {}",
                g.stored, g.resumed_at, g.topic, g.partition, g.resumed_at
            );
            let origin = Origin::Kafka {
                topic: g.topic.clone(),
                partition: g.partition,
                offset: g.stored,
                key: None,
            };
            self.held
                .buffers
                .entry((g.topic, g.partition))
                .or_default()
                .gaps
                .push(DeadLetter::new(error, b"", origin));
        }
    }

    /// On stop: waits (bounded) until what was sent is committed, then commits the offsets
    /// to the broker and waits (bounded) for its answer, so the partitions' next owner
    /// starts where this one ended. Returns whether the broker confirmed the offsets.
    fn wait_for_acks(&mut self) -> bool {
        let deadline = Instant::now() + STOP_WAIT;
        while !self.shared().in_flight.is_empty() && Instant::now() < deadline {
            self.acked(POLL, CommitMode::Async);
        }
        self.commit_to_broker_now()
    }

    /// Commits every durable offset of the assigned partitions to the broker, waiting at
    /// most [`BROKER_COMMIT_WAIT`] for the answer.
    /// Returns whether the group coordinator answered (or there was nothing to commit):
    /// only then can the client leave the group without waiting for it without end.
    fn commit_to_broker_now(&self) -> bool {
        let mut tpl = TopicPartitionList::new();
        {
            let shared = self.shared();
            for k in &shared.assigned {
                if let Some(o) = shared.broker_offset(k) {
                    let _ = tpl.add_partition_offset(&k.0, k.1, rdkafka::Offset::Offset(o));
                }
            }
        }
        if tpl.count() == 0 {
            return !self.shared().brokers_down;
        }
        sluice_core::fault::point("kafka.before_broker_commit");
        let answer = commit::commit_and_wait(&self.consumer, &tpl, BROKER_COMMIT_WAIT);
        sluice_core::fault::point("kafka.after_broker_commit");
        match answer {
            Answer::Confirmed => {
                info!(source = %self.setup.name, partitions = tpl.count(), "the broker confirmed the last offsets");
                true
            }
            Answer::Refused(code) => {
                warn!(source = %self.setup.name, error = %RDKafkaErrorCode::from(code),
                    "the broker refused the last offsets; they are durable in DuckDB, where the next start reads them");
                true
            }
            Answer::Silent => {
                warn!(source = %self.setup.name, wait = ?BROKER_COMMIT_WAIT,
                    "the broker did not answer the last offset commit in time; the offsets are durable in DuckDB, where the next start reads them");
                false
            }
        }
    }

    /// Commits offsets already durable in DuckDB to the broker (for lag tools and the
    /// partitions' next owner); a failure only costs a re-read that DuckDB filters.
    fn commit_to_broker(&self, tpl: &TopicPartitionList, mode: CommitMode) {
        if tpl.count() == 0 {
            return;
        }
        sluice_core::fault::point("kafka.before_broker_commit");
        if let Err(e) = self.consumer.commit(tpl, mode) {
            warn!(source = %self.setup.name, error = %describe(&e, &self.redactor), "committing offsets to the broker failed (DuckDB has them)");
        }
        sluice_core::fault::point("kafka.after_broker_commit");
    }
}

fn decoder(setup: &KafkaSetup, data: TableSchema) -> Decoder {
    Decoder {
        format: setup.config.format,
        data: Arc::new(data),
        keep_unknown: setup.config.keeps_unknown(),
        max_message_bytes: setup.config.max_message_bytes.as_u64() as usize,
        source: setup.name.clone(),
        contract: setup.config.schema_contract(),
        nested: setup.config.nested,
    }
}

fn config_error(name: &str, detail: String) -> SourceError {
    SourceError::Config {
        source_name: name.to_string(),
        detail,
    }
}
