//! Cutting a query string into statements at top-level semicolons: outside string
//! literals (`'...'`, `E'...'`), quoted identifiers (`"..."`), dollar quotes
//! (`$tag$...$tag$`) and comments (`-- ...`, `/* ... */`, nested as in Postgres).
//! Pieces holding only whitespace and comments are dropped. The cut is a proposal: the
//! gate runs a piece only after DuckDB has parsed it on its own.

/// The statements of `text`, each without its terminating semicolon.
pub fn statements(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let (mut out, mut start, mut i) = (Vec::new(), 0, 0);
    while i < bytes.len() {
        i = match bytes[i] {
            b';' => {
                push(&mut out, &text[start..i]);
                start = i + 1;
                i + 1
            }
            b'\'' => quoted(bytes, i, b'\'', backslashes(bytes, i)),
            b'"' => quoted(bytes, i, b'"', false),
            b'-' if bytes.get(i + 1) == Some(&b'-') => line_end(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'*') => block_end(bytes, i),
            b'$' => dollar_end(text, i),
            _ => i + 1,
        };
    }
    push(&mut out, &text[start..]);
    out
}

fn push<'a>(out: &mut Vec<&'a str>, piece: &'a str) {
    if !only_comments(piece) {
        out.push(piece.trim());
    }
}

/// Whether a piece holds nothing but whitespace and comments.
fn only_comments(piece: &str) -> bool {
    let bytes = piece.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        i = match bytes[i] {
            b if b.is_ascii_whitespace() => i + 1,
            b'-' if bytes.get(i + 1) == Some(&b'-') => line_end(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'*') => block_end(bytes, i),
            _ => return false,
        };
    }
    true
}

/// An `E'...'` string takes backslash escapes.
fn backslashes(bytes: &[u8], quote: usize) -> bool {
    quote > 0
        && matches!(bytes[quote - 1], b'E' | b'e')
        && (quote == 1 || !is_word(bytes[quote - 2]))
}

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// The index after a quoted run opened at `open` (a doubled quote is a literal one).
fn quoted(bytes: &[u8], open: usize, quote: u8, backslash: bool) -> usize {
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslash => i += 2,
            b if b == quote && bytes.get(i + 1) == Some(&quote) => i += 2,
            b if b == quote => return i + 1,
            _ => i += 1,
        }
    }
    bytes.len()
}

fn line_end(bytes: &[u8], from: usize) -> usize {
    bytes[from..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(bytes.len(), |p| from + p + 1)
}

fn block_end(bytes: &[u8], from: usize) -> usize {
    let (mut depth, mut i) = (0usize, from);
    while i < bytes.len() {
        if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
            depth += 1;
            i += 2;
        } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
            depth -= 1;
            i += 2;
            if depth == 0 {
                return i;
            }
        } else {
            i += 1;
        }
    }
    bytes.len()
}

/// After a `$tag$ ... $tag$` quote opened at `open`; a `$` that opens none (a parameter
/// such as `$1`) is passed over.
fn dollar_end(text: &str, open: usize) -> usize {
    let bytes = text.as_bytes();
    if open > 0 && is_word(bytes[open - 1]) {
        return open + 1;
    }
    let tag_len = bytes[open + 1..]
        .iter()
        .position(|&b| !(b.is_ascii_alphabetic() || b == b'_' || b >= 0x80))
        .unwrap_or(bytes.len() - open - 1);
    if bytes.get(open + 1 + tag_len) != Some(&b'$') {
        return open + 1;
    }
    let tag = &text[open..open + tag_len + 2];
    let body = open + tag.len();
    text[body..]
        .find(tag)
        .map_or(bytes.len(), |p| body + p + tag.len())
}

#[cfg(test)]
mod tests {
    use super::statements;

    #[test]
    fn cuts_at_top_level_semicolons_only() {
        let text = "select 'a;b', \"c;d\", E'it\\'s;', $$x;y$$, $t$;$t$ from t -- ;\n\
                    where a = $1 /* ; /* nested ; */ ; */; select 2;;  -- end\n";
        assert_eq!(
            statements(text),
            [
                "select 'a;b', \"c;d\", E'it\\'s;', $$x;y$$, $t$;$t$ from t -- ;\n\
                 where a = $1 /* ; /* nested ; */ ; */",
                "select 2"
            ]
        );
        assert_eq!(
            statements("select 'it''s;'; select 1"),
            ["select 'it''s;'", "select 1"]
        );
        assert!(statements(" ; -- nothing\n /* at all */ ;").is_empty());
        // Unterminated quotes run to the end: one piece, which DuckDB then refuses.
        assert_eq!(
            statements("select 'a; drop table t"),
            ["select 'a; drop table t"]
        );
    }
}
