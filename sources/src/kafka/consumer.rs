//! The librdkafka consumer. Its context sees every rebalance: on assignment, each partition
//! is re-assigned at the offset stored in DuckDB (or, for a partition another instance of
//! the group consumed meanwhile, the broker's newer committed offset), after checking the
//! offset is still on the broker; on revocation the source is told to drop what it holds.
//! The broker is never told an offset below the group's committed one.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc::Receiver,
        Arc, Mutex, MutexGuard, PoisonError,
    },
    time::{Duration, Instant},
};

use rdkafka::{
    client::ClientContext,
    config::{ClientConfig, RDKafkaLogLevel},
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance},
    error::{KafkaError, RDKafkaErrorCode},
    statistics::Statistics,
    Offset, TopicPartitionList,
};
use sluice_core::{PartitionProgress, Position, SharedLedger, SharedStreams};
use tracing::{debug, error, info, warn};

use super::{
    commit::{self, Answer},
    config::{KafkaSourceConfig, OffsetGapPolicy, StartFrom},
};
use crate::{telemetry, SourceStatus};

/// Longest wait for a broker answer inside a rebalance.
const REBALANCE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a revocation waits for the revoked partitions' chunks to be committed.
const REVOKE_WAIT: Duration = Duration::from_secs(10);

/// A partition, by topic and number.
pub type PartitionKey = (Arc<str>, i32);

/// A stored offset the broker no longer has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gap {
    pub topic: Arc<str>,
    pub partition: i32,
    pub stored: i64,
    /// Where consumption resumed (the earliest offset the broker has).
    pub resumed_at: i64,
}

/// What the rebalance callbacks and the source loop share.
#[derive(Debug, Default)]
pub struct Shared {
    /// The next offset of each partition: as durable in DuckDB, raised on assignment to
    /// where the group or the lake holds the partition when another instance consumed it
    /// further (everything below is then durable in that instance). It only grows.
    pub committed: HashMap<PartitionKey, i64>,
    /// The group's committed offset of each partition when it was last assigned here: the
    /// broker is never told less, which would move the group back over messages another
    /// instance consumed.
    pub group: HashMap<PartitionKey, i64>,
    pub assigned: BTreeSet<PartitionKey>,
    /// Assigned partitions that had no offset, stored or on the broker, and started at
    /// their end (`start_from = "latest"`): `--once` has nothing to read from them.
    pub started_at_end: BTreeSet<PartitionKey>,
    /// Partitions revoked since the loop last looked.
    pub revoked: Vec<PartitionKey>,
    pub gaps: Vec<Gap>,
    /// A problem that stops the source (an offset gap under `on_offset_gap = "fail"`).
    pub fatal: Option<String>,
    /// Assignments received so far.
    pub assignments: u64,
    /// Partitions were revoked and the next assignment has not come yet (an eager
    /// rebalance revokes every partition first).
    pub rebalancing: bool,
    /// Acknowledgements from the committer (shared so a revocation can wait for them).
    pub acks: Option<Receiver<Position>>,
    /// Input bytes of chunks sent and not yet acknowledged, by (partition, next offset).
    pub in_flight: HashMap<(PartitionKey, i64), u64>,
    /// librdkafka reported every broker down, and none has been seen up since.
    pub brokers_down: bool,
    /// The lake the table is published to, if any.
    pub lake: Option<Lake>,
}

/// The lake a Kafka source's table is published to, with the group's other instances:
/// partitions start no lower than the lake holds them, and the broker is told only
/// offsets the lake holds, so a partition's next owner never starts past rows the lake
/// lacks (they may sit in this instance's DuckDB, not yet published).
#[derive(Debug, Clone)]
pub struct Lake {
    pub ledger: Arc<dyn SharedLedger>,
    pub streams: SharedStreams,
}

impl Lake {
    pub fn stream_id(&self, key: &PartitionKey) -> String {
        self.streams
            .stream_id(&[key.0.to_string(), key.1.to_string()])
    }
}

impl Shared {
    /// Applies the acknowledgements that have arrived (waiting up to `wait` for the
    /// first); returns each acknowledged position with the input bytes it made durable.
    pub fn drain_acks(&mut self, wait: Duration) -> Vec<(PartitionProgress, u64)> {
        let mut out = Vec::new();
        let Some(acks) = &self.acks else { return out };
        let mut next = if wait.is_zero() {
            acks.try_recv().ok()
        } else {
            acks.recv_timeout(wait).ok()
        };
        let mut positions = Vec::new();
        while let Some(position) = next {
            if let Position::Kafka(p) = position {
                positions.push(p);
            }
            next = acks.try_recv().ok();
        }
        for p in positions {
            let key: PartitionKey = (p.topic.clone(), p.partition);
            let bytes = self
                .in_flight
                .remove(&(key.clone(), p.next_offset))
                .unwrap_or(0);
            // An acknowledgement from before a rebalance must not lower a raised offset.
            let next = self.committed.entry(key).or_insert(p.next_offset);
            *next = (*next).max(p.next_offset);
            out.push((p, bytes));
        }
        out
    }

    /// Whether chunks of `partitions` are sent and not yet committed.
    pub fn pending(&self, partitions: &[PartitionKey]) -> bool {
        self.in_flight.keys().any(|(k, _)| partitions.contains(k))
    }

    /// The offset the broker may be told for `key`: durable in DuckDB and, with a lake,
    /// held by the lake, and not below the group's (`None`: nothing to tell).
    pub fn broker_offset(&self, key: &PartitionKey) -> Option<i64> {
        let durable = *self.committed.get(key)?;
        let offset = match &self.lake {
            None => durable,
            Some(lake) => lake.ledger.known(&lake.stream_id(key))?.min(durable),
        };
        let group = self.group.get(key).copied().unwrap_or(0);
        (offset >= group).then_some(offset)
    }

    /// The offsets of `partitions` the broker may be told, for a broker commit.
    pub fn offsets(&self, partitions: &[PartitionKey]) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        for k in partitions {
            if let Some(o) = self.broker_offset(k) {
                let _ = tpl.add_partition_offset(&k.0, k.1, Offset::Offset(o));
            }
        }
        tpl
    }
}

/// Hides secret librdkafka values in anything that is logged or reported.
#[derive(Debug, Clone, Default)]
pub struct Redactor(Vec<String>);

impl Redactor {
    pub fn new(config: &KafkaSourceConfig) -> Self {
        let secret = |k: &str| {
            ["password", "secret", "token", "key", "jaas", "credential"]
                .iter()
                .any(|s| k.contains(s))
        };
        Redactor(
            config
                .librdkafka
                .iter()
                .filter(|(k, v)| secret(&k.to_ascii_lowercase()) && v.len() >= 3)
                .map(|(_, v)| v.clone())
                .collect(),
        )
    }

    pub fn clean(&self, text: &str) -> String {
        self.0
            .iter()
            .fold(text.to_string(), |t, s| t.replace(s.as_str(), "***"))
    }
}

/// The consumer's context (librdkafka callbacks): rebalances, errors, statistics. Not the
/// daemon's [`crate::SourceContext`], which every source runs with.
#[derive(Debug)]
pub struct GroupContext {
    source: Arc<str>,
    shared: Arc<Mutex<Shared>>,
    /// Set when partitions are revoked (the source then takes `Shared::revoked`).
    revocations: Arc<AtomicBool>,
    start_from: StartFrom,
    on_gap: OffsetGapPolicy,
    status: Arc<SourceStatus>,
    redactor: Redactor,
}

pub type KafkaConsumer = BaseConsumer<GroupContext>;

impl GroupContext {
    fn shared(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// librdkafka settings sluice changes from librdkafka's defaults; `[librdkafka]` wins.
pub const DEFAULTS: &[(&str, &str)] = &[("fetch.queue.backoff.ms", "100")];

/// Creates the consumer (it connects lazily: an unreachable broker is not an error here).
pub fn create(
    source: &Arc<str>,
    config: &KafkaSourceConfig,
    shared: Arc<Mutex<Shared>>,
    revocations: Arc<AtomicBool>,
    status: Arc<SourceStatus>,
) -> Result<KafkaConsumer, String> {
    let redactor = Redactor::new(config);
    let mut cfg = client_config(source, config);
    cfg.set_log_level(RDKafkaLogLevel::Warning);
    let context = GroupContext {
        source: source.clone(),
        shared,
        revocations,
        start_from: config.start_from,
        on_gap: config.on_offset_gap,
        status,
        redactor: redactor.clone(),
    };
    cfg.create_with_context(context)
        .map_err(|e| describe(&e, &redactor))
}

/// The librdkafka configuration: sluice's defaults, then `[librdkafka]`, then the
/// settings sluice manages (which `[librdkafka]` may not name; see config.rs).
fn client_config(source: &str, config: &KafkaSourceConfig) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    // Defaults the `[librdkafka]` table may override. librdkafka stops fetching a partition
    // for `fetch.queue.backoff.ms` (1 s by default) once its local queue is over the
    // thresholds; sluice drains that queue in bursts of a batch, so with the default every
    // burst was followed by a second of idle fetching (the benchmark: 0.45x of a plain
    // consumer's throughput with 1 s, 0.58x with 100 ms).
    for (k, v) in DEFAULTS {
        cfg.set(*k, *v);
    }
    for (k, v) in &config.librdkafka {
        cfg.set(k, v);
    }
    cfg.set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Only consulted when a position turns out of range while running (every assigned
        // partition gets an explicit offset; start_from is applied there). Resetting to the
        // earliest offset re-delivers what sluice has (skipped, never written twice) and
        // makes a real gap a forward jump that `on_offset_gap` handles. "latest" would jump
        // silently over messages the broker still has after a spurious out-of-range error.
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "5000")
        .set("client.id", format!("sluice-{source}"));
    cfg
}

/// A librdkafka error without secret values (config errors quote the rejected value).
pub fn describe(e: &KafkaError, redactor: &Redactor) -> String {
    match e {
        KafkaError::ClientConfig(_, desc, key, _) => redactor.clean(&format!(
            "librdkafka setting {key:?}: {}",
            desc.replace(key.as_str(), "")
        )),
        other => redactor.clean(&other.to_string()),
    }
}

impl ClientContext for GroupContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        let message = self.redactor.clean(message);
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                error!(source = %self.source, facility = fac, "librdkafka: {message}")
            }
            RDKafkaLogLevel::Warning => {
                warn!(source = %self.source, facility = fac, "librdkafka: {message}")
            }
            _ => debug!(source = %self.source, facility = fac, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let reason = self.redactor.clean(reason);
        warn!(source = %self.source, error = %describe(&error, &self.redactor), %reason, "kafka client error");
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            self.status.set_problem(Some(format!(
                "all brokers are down or unreachable: {reason}"
            )));
            telemetry::kafka_broker_up(&self.source, false);
            self.shared().brokers_down = true;
        }
    }

    fn stats(&self, stats: Statistics) {
        let up = stats.brokers.values().any(|b| b.state == "UP");
        if up {
            self.shared().brokers_down = false;
        }
        telemetry::kafka_broker_up(&self.source, up);
        if up {
            self.status.set_problem(None);
        }
        let shared = self.shared();
        let mut total = 0;
        for (topic, t) in &stats.topics {
            for (partition, p) in &t.partitions {
                let key: PartitionKey = (topic.as_str().into(), *partition);
                if p.hi_offset < 0 || !shared.assigned.contains(&key) {
                    continue;
                }
                let next = shared
                    .committed
                    .get(&key)
                    .copied()
                    .unwrap_or(p.lo_offset.max(0));
                let lag = (p.hi_offset - next).max(0);
                total += lag as u64;
                telemetry::kafka_lag(&self.source, topic, *partition, lag);
            }
        }
        // For /status: the messages waiting to be read or committed.
        self.status.set_pending(total);
    }
}

impl ConsumerContext for GroupContext {
    /// Before partitions go: wait (bounded) until what was sent of them is committed, and
    /// commit those offsets to the broker, so their next owner starts where this one ended.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let keys: Vec<PartitionKey> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().into(), e.partition()))
            .collect();
        let deadline = Instant::now() + REVOKE_WAIT;
        let mut shared = self.shared();
        while shared.pending(&keys) && Instant::now() < deadline {
            for (_, bytes) in shared.drain_acks(Duration::from_millis(100)) {
                telemetry::bytes_ingested(&self.source, bytes);
            }
        }
        let offsets = shared.offsets(&keys);
        let brokers_down = shared.brokers_down;
        drop(shared);
        if brokers_down {
            // A synchronous commit would wait for a coordinator that may never return
            // (this runs on close, too): the offsets are durable in DuckDB, which the next
            // owner of these partitions reads first.
            debug!(source = %self.source, "brokers down: the revoked partitions' offsets stay in DuckDB only");
        } else if offsets.count() > 0 {
            // Bounded: the brokers can go without librdkafka having noticed yet.
            match commit::commit_and_wait(consumer, &offsets, REBALANCE_TIMEOUT) {
                Answer::Confirmed => {}
                Answer::Refused(code) => {
                    warn!(source = %self.source, error = %RDKafkaErrorCode::from(code), "committing offsets of revoked partitions failed")
                }
                Answer::Silent => {
                    warn!(source = %self.source, wait = ?REBALANCE_TIMEOUT, "committing offsets of revoked partitions failed: no answer in time")
                }
            }
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => self.on_assign(consumer, tpl),
            Rebalance::Revoke(tpl) => {
                let mut shared = self.shared();
                for e in tpl.elements() {
                    let key: PartitionKey = (e.topic().into(), e.partition());
                    shared.assigned.remove(&key);
                    shared.started_at_end.remove(&key);
                    shared.revoked.push(key);
                }
                shared.rebalancing = true;
                self.revocations.store(true, Ordering::Release);
                info!(source = %self.source, partitions = tpl.count(), "partitions revoked");
            }
            Rebalance::Error(e) => {
                warn!(source = %self.source, error = %describe(e, &self.redactor), "rebalance error")
            }
        }
    }
}

impl GroupContext {
    /// Re-assigns every partition at the offset it must resume from.
    fn on_assign(&self, consumer: &KafkaConsumer, tpl: &TopicPartitionList) {
        let broker = consumer
            .committed_offsets(tpl.clone(), REBALANCE_TIMEOUT)
            .ok();
        let mut positioned = TopicPartitionList::new();
        let mut assigned = Vec::new();
        let in_lake = self.lake_positions(tpl);
        for e in tpl.elements() {
            let key: PartitionKey = (e.topic().into(), e.partition());
            let theirs = broker
                .as_ref()
                .and_then(|b| b.find_partition(e.topic(), e.partition()))
                .and_then(|p| p.offset().to_raw())
                .filter(|o| *o >= 0);
            let offset = match self.resume(&key, theirs, in_lake.get(&key).copied()) {
                Some(next) => {
                    self.shared().started_at_end.remove(&key);
                    self.checked(consumer, &key, next)
                }
                None => match self.start_from {
                    StartFrom::Earliest => Offset::Beginning,
                    StartFrom::Latest => {
                        self.shared().started_at_end.insert(key.clone());
                        Offset::End
                    }
                },
            };
            if let Err(err) = positioned.add_partition_offset(e.topic(), e.partition(), offset) {
                warn!(source = %self.source, error = %err, "cannot position a partition");
            }
            assigned.push(key);
        }
        if let Err(e) = consumer.assign(&positioned) {
            let msg = format!(
                "assigning partitions at their stored offsets: {}",
                describe(&e, &self.redactor)
            );
            self.shared().fatal = Some(msg);
            return;
        }
        let mut shared = self.shared();
        shared.assigned.extend(assigned);
        shared.assignments += 1;
        shared.rebalancing = false;
        info!(source = %self.source, partitions = tpl.count(), "partitions assigned at their stored offsets");
    }

    /// Where `key` resumes: the furthest of the offset stored in DuckDB, the group's
    /// committed one (`theirs`) and the lake's (`None`: none is known). Another instance of
    /// the group may have consumed the partition since this one last had it; the broker's
    /// offset is only ever committed after its DuckDB commit (and, with a lake, once the
    /// lake holds it), and the lake holds what any instance published. So everything below
    /// is durable somewhere: [`Shared::committed`] is raised to it, and the group's offset
    /// becomes the least the broker is told.
    fn resume(&self, key: &PartitionKey, theirs: Option<i64>, lake: Option<i64>) -> Option<i64> {
        let mut shared = self.shared();
        if let Some(theirs) = theirs {
            shared.group.insert(key.clone(), theirs);
        }
        let stored = shared.committed.get(key).copied();
        let resume = [stored, theirs, lake].into_iter().flatten().max()?;
        shared.committed.insert(key.clone(), resume);
        Some(resume)
    }

    /// How far the lake holds each partition of `tpl` (empty without a lake). A lake that
    /// cannot be read now costs only a re-read: this instance then starts where DuckDB or
    /// the broker say, and rows the lake has are left out when published.
    fn lake_positions(&self, tpl: &TopicPartitionList) -> HashMap<PartitionKey, i64> {
        let Some(lake) = self.shared().lake.clone() else {
            return HashMap::new();
        };
        let keys: Vec<PartitionKey> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().into(), e.partition()))
            .collect();
        let ids: Vec<String> = keys.iter().map(|k| lake.stream_id(k)).collect();
        match lake.ledger.read(&ids) {
            Ok(held) => keys
                .into_iter()
                .zip(ids)
                .filter_map(|(k, id)| held.get(&id).map(|v| (k, *v)))
                .collect(),
            Err(e) => {
                warn!(source = %self.source, error = %e, "cannot read the lake's partition offsets; starting from DuckDB's and the broker's");
                HashMap::new()
            }
        }
    }

    /// `next` if the broker still has it; otherwise the gap policy decides.
    pub(crate) fn checked(
        &self,
        consumer: &KafkaConsumer,
        key: &PartitionKey,
        next: i64,
    ) -> Offset {
        let Ok((low, high)) = consumer.fetch_watermarks(&key.0, key.1, REBALANCE_TIMEOUT) else {
            return Offset::Offset(next);
        };
        if next >= low && next <= high {
            return Offset::Offset(next);
        }
        let what = format!(
            "partition {}/{}: the stored offset {next} is no longer on the broker (it has {low}..{high}); \
             messages were deleted (retention) before sluice read them",
            key.0, key.1
        );
        telemetry::kafka_offset_gap(&self.source, &key.0);
        match self.on_gap {
            OffsetGapPolicy::Fail => {
                error!(source = %self.source, "{what}; stopping (on_offset_gap = \"fail\")");
                self.shared().fatal = Some(format!("{what} (on_offset_gap = \"fail\"; set it to \"earliest\" to resume from offset {low})"));
                Offset::Offset(next)
            }
            OffsetGapPolicy::Earliest => {
                warn!(source = %self.source, "{what}; resuming at {low} (on_offset_gap = \"earliest\")");
                self.shared().gaps.push(Gap {
                    topic: key.0.clone(),
                    partition: key.1,
                    stored: next,
                    resumed_at: low,
                });
                Offset::Offset(low)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> KafkaSourceConfig {
        let text = format!("brokers = \"b:9092\"\ntopics = [\"t\"]\ngroup_id = \"g\"\n{extra}");
        toml::from_str(&text).expect("config")
    }

    #[test]
    fn sluice_defaults_apply_unless_the_librdkafka_table_sets_them() {
        let cfg = client_config("s", &config(""));
        assert_eq!(cfg.get("fetch.queue.backoff.ms"), Some("100"));
        assert_eq!(cfg.get("enable.auto.commit"), Some("false"));
        let cfg = client_config(
            "s",
            &config("[librdkafka]\n\"fetch.queue.backoff.ms\" = \"500\""),
        );
        assert_eq!(cfg.get("fetch.queue.backoff.ms"), Some("500"));
    }

    #[test]
    fn an_out_of_range_position_resets_to_the_earliest_offset_whatever_start_from_says() {
        let cfg = client_config("s", &config("start_from = \"latest\""));
        assert_eq!(cfg.get("auto.offset.reset"), Some("earliest"));
    }
}
