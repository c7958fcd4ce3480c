//! The result shape each of a connection's statements was described with, so that a
//! statement whose result changed shape since (a raw table gained a column, a column was
//! widened) gets Postgres's answer instead of rows of another shape: `0A000 cached plan
//! must not change result type`, with the routine pgjdbc takes as "prepare it again".
//!
//! A client that asks to describe the portal each time (psycopg) is told the new shape and
//! reads the new rows; one that executes a statement it described once (pgjdbc past
//! `prepareThreshold`, decoding binary by the types it was told) gets the error. Only a
//! hash of the statement's text and of the described columns is kept, per statement name,
//! and a statement's entry goes when it is closed (names are bounded by
//! [`super::prepared`]).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use super::types::Column;
use crate::gate::Refusal;

/// Postgres's message, which drivers match on (with [`ROUTINE`]).
pub const CACHED_PLAN_CHANGED: &str = "cached plan must not change result type";

/// The routine Postgres names in that error (pgjdbc re-prepares the statement on it).
pub const ROUTINE: &str = "RevalidateCachedQuery";

/// One connection's statements' described shapes, by statement name.
#[derive(Debug, Default)]
pub struct Shapes(Mutex<HashMap<String, (u64, u64)>>);

impl Shapes {
    /// Statement `name` of text `sql` was described to the client with `columns`.
    pub fn described(&self, name: &str, sql: &str, columns: &[Column]) {
        if let Ok(mut held) = self.0.lock() {
            held.insert(name.to_string(), (hash(sql), shape(columns)));
        }
    }

    /// The shape statement `name` of text `sql` was described with, if it was.
    pub fn expected(&self, name: &str, sql: &str) -> Option<u64> {
        let held = self.0.lock().ok()?;
        held.get(name)
            .filter(|(text, _)| *text == hash(sql))
            .map(|(_, shape)| *shape)
    }

    /// Statement `name` is closed.
    pub fn remove(&self, name: &str) {
        if let Ok(mut held) = self.0.lock() {
            held.remove(name);
        }
    }
}

/// A hash of the columns as a client decodes them: names, types and type modifiers.
pub fn shape(columns: &[Column]) -> u64 {
    let mut h = DefaultHasher::new();
    for c in columns {
        (&c.name, c.pg.oid(), c.typmod).hash(&mut h);
    }
    h.finish()
}

/// The error for a statement whose result is no longer of `expected`'s shape.
pub fn check(expected: Option<u64>, columns: &[Column]) -> Result<(), Refusal> {
    match expected {
        Some(e) if e != shape(columns) => Err(Refusal {
            sqlstate: "0A000",
            message: CACHED_PLAN_CHANGED.into(),
        }),
        _ => Ok(()),
    }
}

fn hash(text: &str) -> u64 {
    let mut h = DefaultHasher::new();
    text.hash(&mut h);
    h.finish()
}
