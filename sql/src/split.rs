//! Cutting a query string into statements at top-level semicolons: outside string
//! literals (`'...'`, `E'...'`), quoted identifiers (`"..."`), dollar quotes
//! (`$tag$...$tag$`) and comments (`-- ...`, `/* ... */`, nested as in Postgres).
//! Pieces holding only whitespace and comments are dropped. The cut is a proposal: the
//! gate runs a piece only after DuckDB has parsed it on its own.

/// The statements of `text`, each without its terminating semicolon.
pub fn statements(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, _) in Unquoted::new(text).filter(|(_, b)| *b == b';') {
        push(&mut out, &text[start..i]);
        start = i + 1;
    }
    push(&mut out, &text[start..]);
    out
}

/// How deep parentheses nest in `text`, outside string literals, quoted identifiers,
/// dollar quotes and comments.
pub fn nesting(text: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    for (_, b) in Unquoted::new(text) {
        match b {
            b'(' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The bytes of a query string (with their positions) outside string literals, quoted
/// identifiers, dollar quotes and comments.
struct Unquoted<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Unquoted<'a> {
    fn new(text: &'a str) -> Self {
        Unquoted { text, at: 0 }
    }
}

impl Iterator for Unquoted<'_> {
    type Item = (usize, u8);

    fn next(&mut self) -> Option<(usize, u8)> {
        let bytes = self.text.as_bytes();
        while let Some(&b) = bytes.get(self.at) {
            let i = self.at;
            self.at = match b {
                b'\'' => quoted(bytes, i, b'\'', backslashes(bytes, i)),
                b'"' => quoted(bytes, i, b'"', false),
                b'-' if bytes.get(i + 1) == Some(&b'-') => line_end(bytes, i),
                b'/' if bytes.get(i + 1) == Some(&b'*') => block_end(bytes, i),
                b'$' => dollar_end(self.text, i),
                _ => {
                    self.at = i + 1;
                    return Some((i, b));
                }
            };
        }
        None
    }
}

/// `text` with two spellings psql uses in its catalog queries made plain, outside quotes
/// and comments: `COLLATE pg_catalog.default` (or `COLLATE "default"`), which only says
/// "the default collation" and which DuckDB does not know by that name, is dropped; and
/// `OPERATOR(pg_catalog.~)` becomes `~` (DuckDB would read a function `pg_catalog.~`).
pub fn postgres_spellings(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut cuts = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        i = match bytes[i] {
            b'\'' => quoted(bytes, i, b'\'', backslashes(bytes, i)),
            b'"' => quoted(bytes, i, b'"', false),
            b'-' if bytes.get(i + 1) == Some(&b'-') => line_end(bytes, i),
            b'/' if bytes.get(i + 1) == Some(&b'*') => block_end(bytes, i),
            b'$' => dollar_end(text, i),
            b'c' | b'C' if i == 0 || !is_word(bytes[i - 1]) => match default_collation(text, i) {
                Some(end) => {
                    cuts.push((i..end, String::new()));
                    end
                }
                None => i + 1,
            },
            b'o' | b'O' if i == 0 || !is_word(bytes[i - 1]) => match qualified_operator(text, i) {
                Some((end, op)) => {
                    cuts.push((i..end, format!(" {op} ")));
                    end
                }
                None => i + 1,
            },
            _ => i + 1,
        };
    }
    if cuts.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut last = 0;
    for (cut, with) in cuts {
        out.push_str(&text[last..cut.start]);
        out.push_str(&with);
        last = cut.end;
    }
    out.push_str(&text[last..]);
    std::borrow::Cow::Owned(out)
}

/// The end of `OPERATOR(pg_catalog.op)` written at `at`, and the operator.
fn qualified_operator(text: &str, at: usize) -> Option<(usize, &str)> {
    let rest = &text[at..];
    if !rest.get(..8)?.eq_ignore_ascii_case("operator") {
        return None;
    }
    let inner = rest[8..].trim_start().strip_prefix('(')?;
    let close = inner.find(')')?;
    let (schema, op) = inner[..close].split_once('.')?;
    let op = op.trim();
    let symbolic = !op.is_empty() && op.chars().all(|c| "+-*/<>=~!@#%^&|`?".contains(c));
    (schema.trim().eq_ignore_ascii_case("pg_catalog") && symbolic).then(|| {
        let end = text.len() - inner.len() + close + 1;
        (end, op)
    })
}

/// The end of `COLLATE [pg_catalog.]default` written at `at`, if it is there.
fn default_collation(text: &str, at: usize) -> Option<usize> {
    let rest = &text[at..];
    let word = rest.get(..7)?;
    if !word.eq_ignore_ascii_case("collate") {
        return None;
    }
    let mut tail = rest[7..].trim_start();
    if tail.len() == rest.len() - 7 {
        return None;
    }
    for prefix in ["pg_catalog.", "\"pg_catalog\"."] {
        if tail
            .get(..prefix.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(prefix))
        {
            tail = &tail[prefix.len()..];
            break;
        }
    }
    for name in ["default", "\"default\""] {
        if tail
            .get(..name.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(name))
            && !tail[name.len()..].starts_with(|c: char| c.is_alphanumeric() || c == '_')
        {
            return Some(text.len() - tail.len() + name.len());
        }
    }
    None
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

    use super::{nesting, postgres_spellings, statements};

    #[test]
    fn nesting_counts_parentheses_outside_quotes_and_comments() {
        assert_eq!(nesting("select 1"), 0);
        assert_eq!(nesting("select ((1)), (2)"), 2);
        assert_eq!(
            nesting("select '((((', \"((\" -- ((((\n, /* (( */ $x$((($x$ (1)"),
            1
        );
    }

    #[test]
    fn psql_spellings_are_made_plain_outside_quotes_only() {
        let q = "WHERE c.relname OPERATOR(pg_catalog.~) '^(src)$' COLLATE pg_catalog.default\n  AND x = 'COLLATE pg_catalog.default' collate \"default\" -- COLLATE pg_catalog.default\n";
        assert_eq!(
            postgres_spellings(q),
            "WHERE c.relname  ~  '^(src)$' \n  AND x = 'COLLATE pg_catalog.default'  -- COLLATE pg_catalog.default\n"
        );
        for same in [
            "SELECT x COLLATE nocase",
            "SELECT x COLLATE defaults",
            "SELECT xcollate default",
            "SELECT operator(1)",
            "SELECT 'OPERATOR(pg_catalog.~)'",
            "SELECT OPERATOR(other.~)",
        ] {
            assert_eq!(postgres_spellings(same), same);
        }
    }

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
