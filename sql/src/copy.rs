//! `COPY (query) TO STDOUT [options]`: what psql's `\copy (query) TO ...` sends. The only
//! form of `COPY` a client may use: the query inside is vetted like any other, and the
//! rows go to the client, never to a file. Options: `FORMAT text | csv | binary`, `HEADER`,
//! `DELIMITER 'c'`, `NULL 'text'`, in the parenthesised form or the old bare-word form
//! (`CSV HEADER`).

/// A `COPY`'s format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyFormat {
    Text,
    Csv,
    /// Postgres's binary COPY format (what DuckDB's `postgres` scanner and psycopg's
    /// binary copy read): a signature, then each row as a field count and the fields'
    /// binary values, each with its length.
    Binary,
}

/// The binary format's signature, flags and header extension length; sent with the first
/// row, or with the trailer when there is none (as Postgres does: clients expect it so).
pub const BINARY_HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// The binary format's trailer: a field count of -1.
pub const BINARY_TRAILER: &[u8] = &[0xff, 0xff];

/// A parsed `COPY (query) TO STDOUT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyOut {
    pub query: String,
    pub format: CopyFormat,
    pub header: bool,
    pub delimiter: char,
    pub null: String,
}

/// `Some` if `text` is `COPY (...) TO STDOUT ...`; `Err` if it is a `COPY` of that form
/// with options sluice does not know. `None` for anything else (the gate decides).
pub fn parse(text: &str) -> Option<Result<CopyOut, String>> {
    let t = text.trim().trim_end_matches(';').trim_end();
    let rest = strip_word(t, "copy")?.trim_start();
    let inner = rest.strip_prefix('(')?;
    let close = closing_paren(inner)?;
    let query = inner[..close].trim().to_string();
    let after = inner[close + 1..].trim_start();
    let after = strip_word(after, "to")?.trim_start();
    let options = strip_word(after, "stdout")?.trim();
    Some(
        options_of(options).map(|(format, header, delimiter, null)| {
            let csv = format == CopyFormat::Csv;
            CopyOut {
                query,
                format,
                header,
                delimiter: delimiter.unwrap_or(if csv { ',' } else { '\t' }),
                null: null.unwrap_or_else(|| if csv { String::new() } else { "\\N".into() }),
            }
        }),
    )
}

type Options = (CopyFormat, bool, Option<char>, Option<String>);

fn options_of(text: &str) -> Result<Options, String> {
    let text = strip_word(text, "with").unwrap_or(text).trim();
    let body = match text.strip_prefix('(') {
        Some(b) => b.strip_suffix(')').ok_or("unbalanced COPY options")?,
        None => text,
    };
    let tokens = tokens(body)?;
    let mut opts: Options = (CopyFormat::Text, false, None, None);
    let mut i = 0;
    while i < tokens.len() {
        let word = tokens[i].to_lowercase();
        let next = tokens.get(i + 1).cloned();
        let flag = |v: &Option<String>| match v.as_deref().map(str::to_lowercase).as_deref() {
            Some("true" | "on" | "1") => (true, 2),
            Some("false" | "off" | "0") => (false, 2),
            _ => (true, 1),
        };
        match word.as_str() {
            "format" => {
                match next.as_deref().map(str::to_lowercase).as_deref() {
                    Some("csv") => opts.0 = CopyFormat::Csv,
                    Some("text") => opts.0 = CopyFormat::Text,
                    Some("binary") => opts.0 = CopyFormat::Binary,
                    other => {
                        return Err(format!(
                            "COPY format {} is not supported (text, csv or binary)",
                            other.unwrap_or("(none)")
                        ))
                    }
                }
                i += 2;
            }
            "csv" => {
                opts.0 = CopyFormat::Csv;
                i += 1;
            }
            "binary" => {
                opts.0 = CopyFormat::Binary;
                i += 1;
            }
            "header" => {
                let (on, n) = flag(&next);
                opts.1 = on;
                i += n;
            }
            "delimiter" => {
                let v = next.ok_or("DELIMITER needs a value")?;
                let mut chars = v.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => opts.2 = Some(c),
                    _ => return Err("the COPY delimiter must be one character".into()),
                }
                i += 2;
            }
            "null" => {
                opts.3 = Some(next.ok_or("NULL needs a value")?);
                i += 2;
            }
            "," => i += 1,
            other => return Err(format!("COPY option {other} is not supported")),
        }
    }
    Ok(opts)
}

/// Words, quoted strings (unquoted) and commas.
fn tokens(text: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == ',' {
            chars.next();
            out.push(",".into());
        } else if c == '\'' || c == '"' {
            // A string, or a quoted identifier (`FORMAT "binary"`, as DuckDB's postgres
            // scanner writes it): its text either way.
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    Some(q) if q == c && chars.peek() == Some(&c) => {
                        chars.next();
                        s.push(c);
                    }
                    Some(q) if q == c => break,
                    Some(ch) => s.push(ch),
                    None => return Err("an unterminated string in COPY options".into()),
                }
            }
            out.push(s);
        } else {
            let mut s = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() || c == ',' || c == '\'' || c == '"' {
                    break;
                }
                s.push(c);
                chars.next();
            }
            out.push(s);
        }
    }
    Ok(out)
}

/// `text` without a leading keyword (case-insensitive, followed by a non-word character).
fn strip_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let head = text.get(..word.len())?;
    let rest = &text[word.len()..];
    (head.eq_ignore_ascii_case(word)
        && !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_'))
    .then_some(rest)
}

/// Where the parenthesis opened just before `text` closes (quotes and comments aware).
fn closing_paren(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\'' | b'"' => {
                let q = bytes[i];
                i += 1;
                while i < bytes.len() && bytes[i] != q {
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'(' => depth += 1,
            b')' if depth == 0 => return Some(i),
            b')' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// One row (text-format values, `None` for NULL) as a line of the COPY output.
pub fn line(values: &[Option<&[u8]>], copy: &CopyOut) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.extend(copy.delimiter.to_string().as_bytes());
        }
        match v {
            None => out.extend(copy.null.as_bytes()),
            Some(v) if copy.format == CopyFormat::Csv => csv_field(&mut out, v, copy),
            Some(v) => text_field(&mut out, v, copy.delimiter),
        }
    }
    out.push(b'\n');
    out
}

fn csv_field(out: &mut Vec<u8>, v: &[u8], copy: &CopyOut) {
    let delimiter = copy.delimiter.to_string();
    let needs = v.is_empty()
        || v == copy.null.as_bytes()
        || v.iter().any(|b| matches!(b, b'"' | b'\n' | b'\r'))
        || v.windows(delimiter.len())
            .any(|w| w == delimiter.as_bytes());
    if !needs {
        out.extend(v);
        return;
    }
    out.push(b'"');
    for b in v {
        if *b == b'"' {
            out.push(b'"');
        }
        out.push(*b);
    }
    out.push(b'"');
}

fn text_field(out: &mut Vec<u8>, v: &[u8], delimiter: char) {
    for b in v {
        match b {
            b'\\' => out.extend(b"\\\\"),
            b'\n' => out.extend(b"\\n"),
            b'\r' => out.extend(b"\\r"),
            b'\t' => out.extend(b"\\t"),
            b if char::from(*b) == delimiter => {
                out.push(b'\\');
                out.push(*b);
            }
            b => out.push(*b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_copy_forms_parse() {
        let c = parse("COPY ( SELECT id, 'a)b' FROM raw.t ) TO STDOUT WITH (FORMAT csv, HEADER)")
            .expect("copy")
            .expect("valid");
        assert_eq!(c.query, "SELECT id, 'a)b' FROM raw.t");
        assert!(c.format == CopyFormat::Csv && c.header);
        assert_eq!(c.delimiter, ',');
        let c = parse("copy (select 1) to stdout csv header delimiter ';'")
            .expect("copy")
            .expect("valid");
        assert!(c.format == CopyFormat::Csv && c.header);
        assert_eq!(c.delimiter, ';');
        let c = parse("COPY (SELECT 1) TO STDOUT")
            .expect("copy")
            .expect("valid");
        assert!(c.format == CopyFormat::Text && !c.header);
        assert_eq!(c.null, "\\N");
        let c = parse("COPY (SELECT 1) TO STDOUT (FORMAT binary)")
            .expect("copy")
            .expect("valid");
        assert_eq!(c.format, CopyFormat::Binary);
        let c = parse("COPY (SELECT 1) TO STDOUT (FORMAT \"binary\");")
            .expect("copy")
            .expect("valid");
        assert_eq!(c.format, CopyFormat::Binary);
        assert!(parse("COPY (SELECT 1) TO STDOUT (FORMAT parquet)")
            .expect("copy")
            .is_err());
        assert_eq!(parse("COPY raw.t TO '/tmp/x.csv'"), None);
        assert_eq!(parse("COPY (SELECT 1) TO '/tmp/x.csv'"), None);
        assert_eq!(parse("SELECT 1"), None);
    }

    #[test]
    fn lines_escape_like_postgres() {
        let csv = parse("COPY (x) TO STDOUT (FORMAT csv)")
            .expect("copy")
            .expect("valid");
        let line1 = line(&[Some(b"a,b"), None, Some(b"say \"hi\""), Some(b"")], &csv);
        assert_eq!(line1, b"\"a,b\",,\"say \"\"hi\"\"\",\"\"\n");
        let text = parse("COPY (x) TO STDOUT").expect("copy").expect("valid");
        assert_eq!(line(&[Some(b"a\tb\\"), None], &text), b"a\\tb\\\\\t\\N\n");
    }
}
