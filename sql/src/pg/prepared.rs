//! How much one connection may keep prepared: named statements are held (their text and
//! pgwire's copy of their parse) until the client closes them or disconnects, so a client
//! could otherwise `Parse` 2,000 statements of 1 MB each and hold 2 GB.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::gate::Refusal;

/// Statements one connection may keep prepared at once.
pub const MAX_STATEMENTS: usize = 10_000;

/// Bytes of statement text one connection may keep prepared at once.
pub const MAX_BYTES: usize = 64 << 20;

/// One connection's prepared statements, by name: their sizes.
#[derive(Debug, Default)]
pub struct Prepared(Mutex<HashMap<String, usize>>);

impl Prepared {
    /// Whether statement `name` of `bytes` may be prepared (replacing one of that name).
    pub fn admits(&self, name: &str, bytes: usize) -> Result<(), Refusal> {
        let held = self.0.lock().map_err(|_| poisoned())?;
        let replaced = held.get(name).copied();
        let count = held.len() + usize::from(replaced.is_none());
        let total: usize = held.values().sum::<usize>() - replaced.unwrap_or(0) + bytes;
        if count > MAX_STATEMENTS || total > MAX_BYTES {
            return Err(Refusal {
                sqlstate: "54000",
                message: format!(
                    "this connection holds {} prepared statements of {} bytes; at most {MAX_STATEMENTS} and {MAX_BYTES} bytes: close (DEALLOCATE) some first",
                    held.len(),
                    held.values().sum::<usize>()
                ),
            });
        }
        Ok(())
    }

    /// Statement `name` of `bytes` is prepared.
    pub fn add(&self, name: &str, bytes: usize) {
        if let Ok(mut held) = self.0.lock() {
            held.insert(name.to_string(), bytes);
        }
    }

    /// Statement `name` is closed.
    pub fn remove(&self, name: &str) {
        if let Ok(mut held) = self.0.lock() {
            held.remove(name);
        }
    }
}

fn poisoned() -> Refusal {
    Refusal {
        sqlstate: "XX000",
        message: "the connection's statements are unusable".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_are_bounded_in_number_and_bytes_and_replacing_one_frees_it() {
        let p = Prepared::default();
        p.admits("a", MAX_BYTES).expect("one as large as all");
        p.add("a", MAX_BYTES);
        assert_eq!(p.admits("b", 1).expect_err("over").sqlstate, "54000");
        p.admits("a", MAX_BYTES).expect("a replaces itself");
        p.remove("a");
        for i in 0..MAX_STATEMENTS {
            p.add(&i.to_string(), 1);
        }
        assert!(p.admits("one more", 1).is_err());
        assert!(p.admits("0", 1).is_ok());
    }
}
