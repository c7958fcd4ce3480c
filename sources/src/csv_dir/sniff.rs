//! Telling a text CSV file from something else before parsing it. A file that is binary
//! (has a NUL byte), whose first line is not UTF-8, or whose start is substantially not
//! UTF-8 (another encoding) is quarantined whole rather than turned into thousands of
//! meaningless dead letters. A few bad bytes in otherwise good text only cost their rows
//! (they become dead letters).

/// How much of the start of a file is examined.
pub const SNIFF_BYTES: usize = 64 * 1024;
/// Share of undecodable bytes in the sample above which the file is not UTF-8 text...
const MAX_INVALID_SHARE: f64 = 0.01;
/// ...provided there are more than this many (a small file with one bad byte is text).
const MIN_INVALID_BYTES: usize = 16;

/// Why the start of a file is not CSV text, or `None` if it looks like text.
/// `complete` says whether `head` is the whole file (so a multi-byte character cut at the
/// end of `head` is an error only then).
pub fn not_text_reason(head: &[u8], complete: bool) -> Option<String> {
    if let Some(pos) = head.iter().position(|&b| b == 0) {
        return Some(format!("binary content: NUL byte at offset {pos}"));
    }
    let first_line_end = head.iter().position(|&b| b == b'\n').unwrap_or(head.len());
    let mut invalid = 0usize;
    let mut first_invalid = None;
    let mut rest = head;
    let mut offset = 0usize;
    while let Err(e) = std::str::from_utf8(rest) {
        let at = offset + e.valid_up_to();
        let Some(len) = e.error_len() else {
            // A sequence cut by the end of the sample is only an error at the file's end.
            if complete {
                invalid += rest.len() - e.valid_up_to();
                first_invalid.get_or_insert(at);
            }
            break;
        };
        invalid += len;
        first_invalid.get_or_insert(at);
        offset = at + len;
        rest = &head[offset..];
    }
    let first_invalid = first_invalid?;
    if first_invalid < first_line_end {
        return Some(format!(
            "not UTF-8 text: the first line has an invalid byte sequence at offset {first_invalid}"
        ));
    }
    if invalid > MIN_INVALID_BYTES && invalid as f64 > head.len() as f64 * MAX_INVALID_SHARE {
        return Some(format!(
            "not UTF-8 text: {invalid} undecodable bytes in the first {} (first at offset {first_invalid})",
            head.len()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_passes() {
        assert_eq!(not_text_reason(b"id,name\n1,\xc3\xa9\n", true), None);
    }

    #[test]
    fn cut_character_at_end_of_sample_passes_unless_complete() {
        assert_eq!(not_text_reason(b"a,\xc3", false), None);
        assert!(not_text_reason(b"a,\xc3", true).is_some());
    }

    #[test]
    fn binary_and_other_encodings_are_refused() {
        assert!(not_text_reason(b"PK\x03\x04\x00\x00", true)
            .expect("binary")
            .contains("NUL byte at offset 4"));
        assert!(not_text_reason(b"caf\xe9,1\n", true)
            .expect("latin1 header")
            .contains("first line"));
        let mut latin1_body = b"id,name\n".to_vec();
        for i in 0..40 {
            latin1_body.extend_from_slice(format!("{i},caf").as_bytes());
            latin1_body.extend_from_slice(b"\xe9\n");
        }
        assert!(not_text_reason(&latin1_body, true).is_some());
    }

    #[test]
    fn one_bad_row_in_good_text_is_left_to_dead_letters() {
        let mut text = b"id,name\n".to_vec();
        for i in 0..500 {
            text.extend_from_slice(format!("{i},plain ascii name\n").as_bytes());
        }
        text.extend_from_slice(b"501,caf\xe9\n");
        assert_eq!(not_text_reason(&text, true), None);
    }
}
