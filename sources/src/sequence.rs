//! A source type for tests only (feature `test-sources`): `type = "sequence"` produces
//! the rows `id = 0, 1, ..., rows - 1` in chunks, each positioned by the keyed position
//! `ids` (the next id), and after a restart resumes where the committed rows end.
//!
//! It is here to prove the source seam: everything it needs is in this module plus one
//! line in the registry (`component.rs`), which is how a new source type is added (see
//! the README's *Development* section). The integration tests run it in the real binary,
//! killed at the commit's fault points, to check every id lands exactly once.

use std::{
    sync::{mpsc::TrySendError, Arc},
    time::Duration,
};

use arrow::{
    array::{Int64Array, StringArray},
    record_batch::RecordBatch,
};
use serde::Deserialize;
use sluice_core::{
    meta, Chunk, Column, ColumnType, DeadLetter, Ident, IdentError, KeyedProgress, Origin,
    Position, TableSchema,
};

use crate::{
    component::{resume_failed, Backlog, BuildContext, RunningSource, SourceKind, SourceType},
    SourceContext, SourceError, SourceEvent, SourceStatus,
};

/// The one key this source's position is stored under.
const KEY: &str = "ids";
/// How long the loop waits for an acknowledgement before looking at `stop` again.
const TICK: Duration = Duration::from_millis(50);

/// `[sources.<name>]` with `type = "sequence"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SequenceConfig {
    /// How many rows in all.
    pub rows: i64,
    /// Raw table (default: the source's name).
    #[serde(default)]
    pub table: Option<String>,
    /// Ids that are multiples of this become dead letters instead of rows (0: none).
    #[serde(default)]
    pub dead_every: i64,
    /// The source's thread panics when it reaches this id (how a panic is reported).
    #[serde(default)]
    pub panic_at: Option<i64>,
}

impl SequenceConfig {
    fn data() -> TableSchema {
        TableSchema::new(vec![Column::new("id", ColumnType::BigInt)])
    }
}

impl SourceType for SequenceConfig {
    fn kind(&self) -> SourceKind {
        SourceKind::new("sequence", Backlog::Unknown)
    }
    fn table_ident(&self, name: &str) -> Result<Ident, IdentError> {
        Ident::new(self.table.as_deref().unwrap_or(name))
    }
    fn validate(&self, _name: &str) -> Vec<(String, String)> {
        let mut problems = Vec::new();
        if self.rows < 0 {
            problems.push(("rows".into(), "must be 0 or more".into()));
        }
        if self.dead_every < 0 {
            problems.push(("dead_every".into(), "must be 0 or more".into()));
        }
        problems
    }
    fn declared_schema(&self) -> Option<TableSchema> {
        Some(Self::data())
    }
    fn declares_schema(&self) -> bool {
        true
    }
    fn resolve_paths(&mut self, _base: &std::path::Path) {}
    fn check(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    fn build(&self, ctx: BuildContext<'_>) -> Result<Box<dyn RunningSource>, SourceError> {
        let stored = ctx
            .resume
            .positions(ctx.name)
            .map_err(|e| resume_failed(ctx.name, e))?;
        let provenance = [Column::new(meta::SOURCE, ColumnType::Varchar)];
        let raw = crate::typing::declared::raw_columns(&Self::data(), provenance.clone());
        // A chunk's rows: the data, then the provenance (the committer adds its columns).
        let rows = TableSchema::new(Self::data().columns.into_iter().chain(provenance).collect());
        Ok(Box::new(Sequence {
            name: ctx.name.into(),
            table: ctx.table,
            raw: Arc::new(raw),
            rows: rows.arrow_schema(),
            next: stored.get(KEY).copied().unwrap_or(0),
            end: self.rows,
            dead_every: self.dead_every,
            panic_at: self.panic_at,
            chunk_rows: ctx.chunk_rows.max(1) as i64,
            status: ctx.status,
        }))
    }
}

/// A running sequence: the next id to send and the end.
#[derive(Debug)]
struct Sequence {
    name: Arc<str>,
    table: Ident,
    raw: Arc<TableSchema>,
    rows: arrow::datatypes::SchemaRef,
    next: i64,
    end: i64,
    dead_every: i64,
    panic_at: Option<i64>,
    chunk_rows: i64,
    status: Arc<SourceStatus>,
}

impl RunningSource for Sequence {
    fn run(mut self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        let mut committed = self.next;
        self.status.set_position(KEY.into(), committed);
        while self.next < self.end && !ctx.stop.is_cancelled() {
            let chunk = self.chunk()?;
            if !send(&ctx, chunk, |ack| self.acked(ack, &mut committed)) {
                return Ok(());
            }
        }
        if ctx.once {
            let _ = ctx.events.send(SourceEvent::Drained {
                source: self.name.clone(),
            });
        }
        // Until stopped (or, with --once, until everything sent is committed).
        let done = |committed: i64| ctx.stop.is_cancelled() || (ctx.once && committed >= self.next);
        while !done(committed) {
            if let Ok(ack) = ctx.acks.recv_timeout(TICK) {
                self.acked(ack, &mut committed);
            }
        }
        Ok(())
    }
}

impl Sequence {
    /// The next chunk of ids (multiples of `dead_every` as dead letters).
    fn chunk(&mut self) -> Result<Chunk, SourceError> {
        let to = (self.next + self.chunk_rows).min(self.end);
        if let Some(id) = self.panic_at.filter(|id| (self.next..to).contains(id)) {
            panic!("the sequence reached panic_at = {id}");
        }
        let dead = |id: &i64| self.dead_every > 0 && id % self.dead_every == 0;
        let ids: Vec<i64> = (self.next..to).filter(|id| !dead(id)).collect();
        let dead_letters = (self.next..to)
            .filter(dead)
            .map(|id| {
                let origin = Origin::Keyed {
                    stream: KEY.into(),
                    position: id,
                };
                let error = format!("id {id} is a multiple of dead_every");
                DeadLetter::new(error, id.to_string().as_bytes(), origin)
            })
            .collect();
        let sources = vec![&*self.name; ids.len()];
        let rows = RecordBatch::try_new(
            self.rows.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(sources)),
            ],
        )
        .map_err(|e| SourceError::Config {
            source_name: self.name.to_string(),
            detail: format!("assembling ids {}..{to}: {e}", self.next),
        })?;
        self.next = to;
        Ok(Chunk {
            source: self.name.clone(),
            table: self.table.clone(),
            raw_columns: self.raw.clone(),
            rows,
            dead_letters,
            position: Position::Keyed(KeyedProgress {
                key: KEY.into(),
                next: to,
            }),
            since: std::time::Instant::now(),
        })
    }

    fn acked(&self, ack: Position, committed: &mut i64) {
        if let Position::Keyed(p) = ack {
            *committed = p.next;
            self.status.set_position(KEY.into(), p.next);
        }
    }
}

/// Sends `chunk`, serving acknowledgements while the channel is full; false once the
/// committer is gone or a stop is requested.
fn send(ctx: &SourceContext, chunk: Chunk, mut on_ack: impl FnMut(Position)) -> bool {
    let mut event = SourceEvent::Chunk(chunk);
    loop {
        match ctx.events.try_send(event) {
            Ok(()) => return true,
            Err(TrySendError::Disconnected(_)) => return false,
            Err(TrySendError::Full(e)) => {
                event = e;
                if ctx.stop.is_cancelled() {
                    return false;
                }
                if let Ok(ack) = ctx.acks.recv_timeout(TICK) {
                    on_ack(ack);
                }
            }
        }
    }
}
