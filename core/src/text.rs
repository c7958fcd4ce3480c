//! Text that came from input, bounded before it reaches a reason, a log line, a status or
//! a table. A file's header, a record or a field can be megabytes long; an error that
//! quotes it must not be (a 20 MB reason once made the commit that stored it run out of
//! memory). Every such text goes through [`bounded`], with [`TEXT_LIMIT`] unless a
//! narrower bound fits; what a client sent goes into a log line through [`for_log`]. And
//! what clients can make sluice log over and over (failed logins, refused messages) is
//! logged at most once an interval ([`LogLimit`]).

use std::borrow::Cow;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The bound on text from input kept or shown by sluice: reasons, errors, log fields (the
/// same as a dead letter's raw record, [`crate::DEAD_LETTER_RAW_LIMIT`]).
pub const TEXT_LIMIT: usize = 4096;

/// `text` if it is at most `max` bytes; else its first `max` bytes or fewer (cut at a
/// character boundary) followed by `... (N bytes)`, N being the whole text's length.
pub fn bounded(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max {
        return Cow::Borrowed(text);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Cow::Owned(format!("{}... ({} bytes)", &text[..end], text.len()))
}

/// [`bounded`] with [`TEXT_LIMIT`], owned (for errors and reasons that are kept).
pub fn bounded_owned(text: String) -> String {
    match bounded(&text, TEXT_LIMIT) {
        Cow::Borrowed(_) => text,
        Cow::Owned(cut) => cut,
    }
}

/// A client's text (a user name, say) for a log field: escaped, so that no line break or
/// control character a client chose reaches the log, and cut to `max` characters.
pub fn for_log(text: &str, max: usize) -> String {
    let escaped: String = text
        .chars()
        .take(max)
        .flat_map(char::escape_debug)
        .collect();
    if text.chars().nth(max).is_some() {
        format!("{escaped}...")
    } else {
        escaped
    }
}

/// One log line per interval for something clients can make happen at will: when one is
/// due, and how many were skipped since the last.
#[derive(Debug)]
pub struct LogLimit {
    every: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogLimit {
    pub const fn new(every: Duration) -> Self {
        LogLimit {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(skipped)` when a line is due now; `None` (counted) otherwise.
    pub fn due(&self) -> Option<u64> {
        let mut state = self.state.lock().ok()?;
        let (last, skipped) = &mut *state;
        if last.is_some_and(|t| t.elapsed() < self.every) {
            *skipped += 1;
            return None;
        }
        *last = Some(Instant::now());
        Some(std::mem::take(skipped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_logs_once_per_interval_with_a_count() {
        let limit = LogLimit::new(Duration::from_secs(3600));
        assert_eq!(limit.due(), Some(0));
        for _ in 0..5 {
            assert_eq!(limit.due(), None);
        }
        if let Ok(mut s) = limit.state.lock() {
            s.0 = Instant::now().checked_sub(Duration::from_secs(3601));
        }
        assert_eq!(limit.due(), Some(5));
    }

    #[test]
    fn log_fields_are_escaped_and_cut() {
        assert_eq!(for_log("a\nb", 10), "a\\nb");
        assert_eq!(for_log(&"x".repeat(100), 3), "xxx...");
    }

    #[test]
    fn short_text_is_kept_and_long_text_is_cut_with_its_length() {
        assert!(matches!(bounded("abc", 3), Cow::Borrowed("abc")));
        assert_eq!(bounded("abcdef", 3), "abc... (6 bytes)");
        let long = "x".repeat(20 << 20);
        let cut = bounded_owned(long);
        assert_eq!(cut.len(), TEXT_LIMIT + "... (20971520 bytes)".len());
        assert!(cut.ends_with("... (20971520 bytes)"), "{}", &cut[4000..]);
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // "é" is two bytes: a cut at 3 would fall inside the second one.
        assert_eq!(bounded("ééé", 3), "é... (6 bytes)");
        assert_eq!(bounded("ééé", 4), "éé... (6 bytes)");
    }
}
