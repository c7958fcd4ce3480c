//! When a `--once` run of a Kafka source is over.
//!
//! Each partition gets a target when it is first assigned during the run: its high
//! watermark then. A partition is *read* once its progress reaches its target, whichever
//! instance of the group did the reading. Its progress is the furthest of: its low
//! watermark (nothing exists below it), its next offset in [`Shared::committed`] (durable
//! in DuckDB, or raised on assignment to where another instance left the partition), the
//! client's position (which passes transaction markers, never delivered as messages) and
//! what this source sent. A partition is *settled* once it is read and nothing of it is
//! buffered or waiting for the committer.
//!
//! The run is over when every partition assigned now is settled. Never between a
//! revocation and the next assignment (an eager rebalance revokes every partition first):
//! that wait, like the one for the first assignment, is bounded.
//!
//! [`Shared::committed`]: crate::kafka::consumer::Shared::committed

use std::{
    collections::{BTreeSet, HashMap},
    fmt,
    time::{Duration, Instant},
};

use rdkafka::{consumer::Consumer, Offset};
use tracing::{debug, info};

use super::{config_error, describe, KafkaConsumer, KafkaSource, PartitionKey};
use crate::{SourceContext, SourceError, SourceEvent};

/// Longest a run waits for a partition assignment: the first, or the next after a
/// revocation.
const ASSIGNMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a waiting run says what it waits for.
const REPORT_EVERY: Duration = Duration::from_secs(10);
/// Longest wait for a partition's watermarks (a failed fetch is retried at the next step).
const WATERMARKS_TIMEOUT: Duration = Duration::from_secs(10);

/// A partition's watermarks when it was first assigned during the run.
#[derive(Debug, Clone, Copy)]
struct Target {
    low: i64,
    high: i64,
}

/// Where a `--once` run stands.
#[derive(Debug)]
pub(super) struct Once {
    /// Since when the run has been without an assignment (`None`: it has one).
    unassigned_since: Option<Instant>,
    targets: HashMap<PartitionKey, Target>,
    /// What was sent when the committer was last told to commit everything (`Drained`).
    drained: HashMap<PartitionKey, i64>,
    next_report: Instant,
}

/// An assigned partition that is not settled yet.
#[derive(Debug)]
struct Unsettled {
    key: PartitionKey,
    progress: Option<i64>,
    /// `None`: its watermarks are not known yet.
    target: Option<i64>,
    read: bool,
}

impl fmt::Display for Unsettled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.key.0, self.key.1)?;
        match self.progress {
            Some(at) => write!(f, " at {at}")?,
            None => write!(f, " at its start")?,
        }
        match (self.target, self.read) {
            (None, _) => write!(f, ", target unknown (fetching the watermarks)"),
            (Some(high), false) => write!(f, " of {high}"),
            (Some(high), true) => write!(f, " of {high}, committing"),
        }
    }
}

impl Once {
    pub(super) fn new() -> Self {
        let now = Instant::now();
        Once {
            unassigned_since: Some(now),
            targets: HashMap::new(),
            drained: HashMap::new(),
            next_report: now + REPORT_EVERY,
        }
    }

    /// `Some` when the run is over: every assigned partition settled (then the offsets
    /// go to the broker), or no assignment in time.
    pub(super) fn step(
        &mut self,
        src: &mut KafkaSource,
        ctx: &SourceContext,
    ) -> Option<Result<(), SourceError>> {
        let assignment = {
            let shared = src.shared();
            (shared.assignments > 0 && !shared.rebalancing)
                .then(|| (shared.assigned.clone(), shared.started_at_end.clone()))
        };
        let Some((assigned, at_end)) = assignment else {
            return self.unassigned(src);
        };
        self.unassigned_since = None;
        self.fetch_targets(src, assigned.difference(&at_end));
        let unsettled = self.unsettled(src, &assigned, &at_end);
        if unsettled.is_empty() {
            let _ = src.commit_to_broker_now(); // a run that ends here closes the client as usual
            return Some(Ok(()));
        }
        if unsettled.iter().all(|u| u.read) {
            self.drain(src, ctx);
        }
        if self.report_due() {
            let list: Vec<String> = unsettled.iter().map(ToString::to_string).collect();
            info!(source = %src.setup.name, waiting = %list.join(", "),
                "--once: waiting for partitions to be read up to their targets and committed");
        }
        None
    }

    /// While no assignment stands: fails once that lasts [`ASSIGNMENT_TIMEOUT`].
    fn unassigned(&mut self, src: &KafkaSource) -> Option<Result<(), SourceError>> {
        let since = *self.unassigned_since.get_or_insert_with(Instant::now);
        if since.elapsed() > ASSIGNMENT_TIMEOUT {
            return Some(Err(config_error(
                &src.setup.name,
                format!("no partition was assigned within {ASSIGNMENT_TIMEOUT:?}: are the brokers reachable and the topics there?"),
            )));
        }
        if self.report_due() {
            info!(source = %src.setup.name, "--once: waiting for a partition assignment");
        }
        None
    }

    /// Takes the watermarks of partitions assigned for the first time in the run.
    fn fetch_targets<'a>(
        &mut self,
        src: &KafkaSource,
        assigned: impl Iterator<Item = &'a PartitionKey>,
    ) {
        for key in assigned {
            if self.targets.contains_key(key) {
                continue;
            }
            match src
                .consumer
                .fetch_watermarks(&key.0, key.1, WATERMARKS_TIMEOUT)
            {
                Ok((low, high)) => {
                    debug!(source = %src.setup.name, topic = %key.0, partition = key.1, low, high,
                        "--once: reading the partition up to its high watermark");
                    self.targets.insert(key.clone(), Target { low, high });
                }
                Err(e) => {
                    debug!(source = %src.setup.name, topic = %key.0, partition = key.1,
                        error = %describe(&e, &src.redactor), "--once: cannot fetch the partition's watermarks yet");
                }
            }
        }
    }

    /// The assigned partitions that are not settled, with how far each is.
    fn unsettled(
        &self,
        src: &KafkaSource,
        assigned: &BTreeSet<PartitionKey>,
        at_end: &BTreeSet<PartitionKey>,
    ) -> Vec<Unsettled> {
        let positions = positions(&src.consumer);
        let shared = src.shared();
        let mut out = Vec::new();
        for key in assigned {
            let target = self.targets.get(key);
            let progress = [
                target.map(|t| t.low),
                shared.committed.get(key).copied(),
                src.held.sent.get(key).copied(),
                positions.get(key).copied(),
            ]
            .into_iter()
            .flatten()
            .max();
            // Started at its end (`start_from = "latest"`): nothing to read up to.
            let read = at_end.contains(key)
                || target.is_some_and(|t| progress.is_some_and(|p| p >= t.high));
            let buffered = src
                .held
                .buffers
                .get(key)
                .is_some_and(|b| !b.messages.is_empty());
            if read && !buffered && !shared.pending(std::slice::from_ref(key)) {
                continue;
            }
            out.push(Unsettled {
                key: key.clone(),
                progress,
                target: target.map(|t| t.high),
                read,
            });
        }
        out
    }

    /// Every assigned partition is read: hands on what is buffered and tells the
    /// committer to commit it now rather than when its batch is due (once per new send).
    fn drain(&mut self, src: &mut KafkaSource, ctx: &SourceContext) {
        src.flush(ctx, true);
        if src.held.sent == self.drained {
            return;
        }
        self.drained = src.held.sent.clone();
        let _ = ctx.events.send(SourceEvent::Drained {
            source: src.setup.name.clone(),
        });
        debug!(source = %src.setup.name, "--once: every assigned partition read up to its target; committing");
    }

    /// Whether it is time for the periodic report of what the run waits for.
    fn report_due(&mut self) -> bool {
        let now = Instant::now();
        if now < self.next_report {
            return false;
        }
        self.next_report = now + REPORT_EVERY;
        true
    }
}

/// The client's position of each assigned partition that has one: the offset after the
/// last message (or transaction marker) polled.
fn positions(consumer: &KafkaConsumer) -> HashMap<PartitionKey, i64> {
    let Ok(tpl) = consumer.position() else {
        return HashMap::new();
    };
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(((e.topic().into(), e.partition()), o)),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_partition_is_reported_with_its_position_and_target() {
        let line = |progress, target, read| {
            let key = ("orders".into(), 3);
            Unsettled {
                key,
                progress,
                target,
                read,
            }
            .to_string()
        };
        assert_eq!(
            line(Some(1200), Some(5000), false),
            "orders/3 at 1200 of 5000"
        );
        assert_eq!(
            line(Some(5000), Some(5000), true),
            "orders/3 at 5000 of 5000, committing"
        );
        assert_eq!(
            line(None, None, false),
            "orders/3 at its start, target unknown (fetching the watermarks)"
        );
    }
}
