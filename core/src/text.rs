//! Text that came from input, bounded before it reaches a reason, a log line, a status or
//! a table. A file's header, a record or a field can be megabytes long; an error that
//! quotes it must not be (a 20 MB reason once made the commit that stored it run out of
//! memory). Every such text goes through [`bounded`], with [`TEXT_LIMIT`] unless a
//! narrower bound fits.

use std::borrow::Cow;

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

#[cfg(test)]
mod tests {
    use super::*;

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
