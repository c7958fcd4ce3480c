//! How long to wait before trying again: one policy type for every retry loop in sluice
//! (a commit blocked by a full disk, a failed model, a DuckDB file locked at start-up), so
//! each loop states its own bounds and nothing else.

use std::time::Duration;

/// Waits that double from `first` up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

impl Backoff {
    pub const fn new(first: Duration, max: Duration) -> Self {
        Backoff { first, max }
    }

    /// The same wait every time.
    pub const fn fixed(every: Duration) -> Self {
        Backoff {
            first: every,
            max: every,
        }
    }

    /// The wait after `previous` (`None`: the first wait).
    pub fn after(&self, previous: Option<Duration>) -> Duration {
        previous.map_or(self.first, |p| {
            p.saturating_mul(2).clamp(self.first, self.max)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_limit() {
        let b = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        let mut waits = Vec::new();
        let mut last = None;
        for _ in 0..5 {
            let w = b.after(last);
            waits.push(w.as_millis());
            last = Some(w);
        }
        assert_eq!(waits, [200, 400, 800, 1000, 1000]);
        let fixed = Backoff::fixed(Duration::from_secs(1));
        assert_eq!(
            fixed.after(Some(Duration::from_secs(1))),
            Duration::from_secs(1)
        );
    }
}
