//! The wiring between a source thread and the committer.

use std::sync::{
    mpsc::{Receiver, SyncSender},
    Arc,
};

use sluice_core::{Chunk, Position};
use tokio_util::sync::CancellationToken;

/// What a source sends to the committer.
#[derive(Debug)]
pub enum SourceEvent {
    /// Rows (and dead letters, and a position) to commit.
    Chunk(Chunk),
    /// The source has nothing more to read for now (used by `--once`): commit what it
    /// sent without waiting for the batch's age limit.
    Drained { source: Arc<str> },
}

/// Everything a source needs to run.
#[derive(Debug)]
pub struct SourceContext {
    pub events: SyncSender<SourceEvent>,
    /// Positions of this source that are now committed, in commit order.
    pub acks: Receiver<Position>,
    /// Cancelled on shutdown: stop reading, wait for acknowledgements, return.
    pub stop: CancellationToken,
    /// Read what is there now, wait until it is committed, then return.
    pub once: bool,
}
