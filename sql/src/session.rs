//! The session statements Postgres clients send on their own: transaction control,
//! `SET`/`RESET`/`SHOW` of session parameters, `DISCARD`, `DEALLOCATE`. sluice answers
//! them itself; none reaches DuckDB as written (a transaction is opened by sluice as
//! `BEGIN TRANSACTION READ ONLY`). The grammar is strict: anything else is not a session
//! statement, and the gate refuses it.

/// A session statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `BEGIN`, `START TRANSACTION` (any modes: the transaction is read-only regardless).
    Begin,
    /// `COMMIT`, `END`.
    Commit,
    /// `ROLLBACK`, `ABORT`.
    Rollback,
    /// `SET [SESSION | LOCAL] name {TO | =} value[, ...]`, `SET TIME ZONE value`,
    /// `SET NAMES value`; the name lower-cased, the values as text joined by ", ".
    Set { name: String, value: String },
    /// `SET [SESSION CHARACTERISTICS AS] TRANSACTION ...`: acknowledged, nothing to do.
    SetTransaction,
    /// `RESET name` (`None`: `RESET ALL`).
    Reset { name: Option<String> },
    /// `SHOW name`, `SHOW ALL` (`all`), `SHOW TRANSACTION ISOLATION LEVEL`
    /// (`transaction_isolation`), `SHOW TIME ZONE` (`timezone`).
    Show { name: String },
    /// `DISCARD ALL | PLANS | SEQUENCES | TEMP | TEMPORARY`.
    Discard,
    /// `DEALLOCATE [PREPARE] name | ALL` (`None`: all).
    Deallocate { name: Option<String> },
    /// `SAVEPOINT name`.
    Savepoint { name: String },
    /// `RELEASE [SAVEPOINT] name`.
    Release { name: String },
    /// `ROLLBACK [WORK | TRANSACTION] TO [SAVEPOINT] name`: in a read-only transaction,
    /// this only ends the error state after a failed statement.
    RollbackTo { name: String },
}

impl Command {
    /// The command tag a Postgres server answers with.
    pub fn tag(&self) -> &'static str {
        match self {
            Command::Begin => "BEGIN",
            Command::Commit => "COMMIT",
            Command::Rollback => "ROLLBACK",
            Command::Set { .. } | Command::SetTransaction => "SET",
            Command::Reset { .. } => "RESET",
            Command::Show { .. } => "SHOW",
            Command::Discard => "DISCARD ALL",
            Command::Deallocate { .. } => "DEALLOCATE",
            Command::Savepoint { .. } => "SAVEPOINT",
            Command::Release { .. } => "RELEASE",
            Command::RollbackTo { .. } => "ROLLBACK",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    /// A bare word, lower-cased.
    Word(String),
    /// A quoted identifier or string literal, or a number: a value as written.
    Value(String),
    Equals,
    Comma,
}

/// The session statement `text` is, if it is one (one statement, no trailing semicolon).
pub fn parse(text: &str) -> Option<Command> {
    let tokens = tokenize(text)?;
    let words: Vec<&str> = tokens
        .iter()
        .map(|t| match t {
            Token::Word(w) => w.as_str(),
            _ => "",
        })
        .collect();
    match words.as_slice() {
        ["begin", rest @ ..] => transaction(rest, &tokens[1..], true),
        ["start", "transaction", ..] => transaction(&[], &tokens[2..], false),
        ["commit" | "end", rest @ ..] if work(rest) => Some(Command::Commit),
        ["rollback" | "abort", rest @ ..] if work(rest) => Some(Command::Rollback),
        ["rollback", rest @ ..] => rollback_to(rest, &tokens[1..]),
        ["savepoint", _] => name_at(&tokens, 1).map(|name| Command::Savepoint { name }),
        ["release", "savepoint", _] => name_at(&tokens, 2).map(|name| Command::Release { name }),
        ["release", _] => name_at(&tokens, 1).map(|name| Command::Release { name }),
        ["set", ..] => set(&tokens[1..]),
        ["reset", "all"] => Some(Command::Reset { name: None }),
        ["reset", name] if !name.is_empty() => Some(Command::Reset {
            name: Some(name.to_string()),
        }),
        ["show", "transaction", "isolation", "level"] => Some(show("transaction_isolation")),
        ["show", "time", "zone"] => Some(show("timezone")),
        ["show", name] if !name.is_empty() => Some(show(name)),
        ["discard", "all" | "plans" | "sequences" | "temp" | "temporary"] => Some(Command::Discard),
        ["deallocate", rest @ ..] => deallocate(rest, &tokens[1..]),
        _ => None,
    }
}

/// A savepoint's name: a word or a quoted identifier.
fn name_at(tokens: &[Token], i: usize) -> Option<String> {
    match tokens.get(i) {
        Some(Token::Word(w) | Token::Value(w)) if !w.is_empty() => Some(w.clone()),
        _ => None,
    }
}

/// `[WORK | TRANSACTION] TO [SAVEPOINT] name` after `ROLLBACK`.
fn rollback_to(words: &[&str], tokens: &[Token]) -> Option<Command> {
    let skip = usize::from(matches!(words.first(), Some(&("work" | "transaction"))));
    let words = &words[skip..];
    let to = match words {
        ["to", "savepoint", _] => 2,
        ["to", _] => 1,
        _ => return None,
    };
    name_at(tokens, skip + to).map(|name| Command::RollbackTo { name })
}

fn show(name: &str) -> Command {
    Command::Show {
        name: name.to_string(),
    }
}

/// `[WORK | TRANSACTION]` and nothing else.
fn work(rest: &[&str]) -> bool {
    matches!(rest, [] | ["work" | "transaction"])
}

/// `BEGIN [WORK | TRANSACTION] [modes]` (`optional_keyword`) or `START TRANSACTION [modes]`.
fn transaction(words: &[&str], tokens: &[Token], optional_keyword: bool) -> Option<Command> {
    let skip =
        usize::from(optional_keyword && matches!(words.first(), Some(&("work" | "transaction"))));
    modes(&tokens[skip..]).then_some(Command::Begin)
}

/// Transaction modes, separated by commas or by nothing (Postgres takes both):
/// `ISOLATION LEVEL ...`, `READ ONLY | WRITE`, `[NOT] DEFERRABLE`.
fn modes(tokens: &[Token]) -> bool {
    let words: Vec<Option<&str>> = tokens
        .iter()
        .map(|t| match t {
            Token::Word(w) => Some(w.as_str()),
            Token::Comma => None,
            _ => Some(""),
        })
        .collect();
    let mut rest = words.as_slice();
    let mut after_comma = false;
    while !rest.is_empty() {
        if rest[0].is_none() {
            if after_comma || rest.len() == 1 {
                return false;
            }
            after_comma = true;
            rest = &rest[1..];
            continue;
        }
        let item = |n: usize| rest.get(n).copied().flatten();
        let len = match (item(0), item(1), item(2), item(3)) {
            (Some("isolation"), Some("level"), Some("repeatable"), Some("read")) => 4,
            (Some("isolation"), Some("level"), Some("read"), Some("committed" | "uncommitted")) => {
                4
            }
            (Some("isolation"), Some("level"), Some("serializable"), _) => 3,
            (Some("read"), Some("only" | "write"), _, _) => 2,
            (Some("not"), Some("deferrable"), _, _) => 2,
            (Some("deferrable"), _, _, _) => 1,
            _ => return false,
        };
        after_comma = false;
        rest = &rest[len..];
    }
    true
}

fn set(tokens: &[Token]) -> Option<Command> {
    let word = |i: usize| match tokens.get(i) {
        Some(Token::Word(w)) => Some(w.as_str()),
        _ => None,
    };
    let scoped = usize::from(matches!(word(0), Some("session" | "local")));
    match (word(scoped), word(scoped + 1)) {
        (Some("transaction"), _) => modes(&tokens[scoped + 1..]).then_some(Command::SetTransaction),
        (Some("characteristics"), Some("as")) if word(scoped + 2) == Some("transaction") => {
            modes(&tokens[scoped + 3..]).then_some(Command::SetTransaction)
        }
        (Some("time"), Some("zone")) => values(&tokens[scoped + 2..]).map(|value| Command::Set {
            name: "timezone".into(),
            value,
        }),
        (Some("names"), _) => values(&tokens[scoped + 1..]).map(|value| Command::Set {
            name: "client_encoding".into(),
            value,
        }),
        (Some(name), _) => {
            let rest = &tokens[scoped + 1..];
            let rest = match rest.first() {
                Some(Token::Equals) => &rest[1..],
                Some(Token::Word(w)) if w == "to" => &rest[1..],
                _ => return None,
            };
            values(rest).map(|value| Command::Set {
                name: name.to_string(),
                value,
            })
        }
        _ => None,
    }
}

/// `value[, value ...]`, each a word, number or quoted text; joined by ", ".
fn values(tokens: &[Token]) -> Option<String> {
    let mut out = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        match (i % 2, t) {
            (0, Token::Word(v) | Token::Value(v)) => out.push(v.clone()),
            (1, Token::Comma) => {}
            _ => return None,
        }
    }
    (!out.is_empty() && tokens.len() % 2 == 1).then(|| out.join(", "))
}

fn deallocate(words: &[&str], tokens: &[Token]) -> Option<Command> {
    let rest = match words.first() {
        Some(&"prepare") => &tokens[1..],
        _ => tokens,
    };
    match rest {
        [Token::Word(w)] if w == "all" => Some(Command::Deallocate { name: None }),
        [Token::Word(name) | Token::Value(name)] => Some(Command::Deallocate {
            name: Some(name.clone()),
        }),
        _ => None,
    }
}

/// Words, quoted values, numbers, `=` and `,`; `None` for anything else (including a
/// second statement or an unterminated quote).
fn tokenize(text: &str) -> Option<Vec<Token>> {
    let mut tokens = Vec::new();
    let mut chars = text.trim().trim_end_matches(';').chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '=' | ',' => {
                chars.next();
                tokens.push(if c == '=' {
                    Token::Equals
                } else {
                    Token::Comma
                });
            }
            '\'' | '"' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next()? {
                        q if q == c && chars.peek() == Some(&c) => {
                            chars.next();
                            value.push(c);
                        }
                        q if q == c => break,
                        other => value.push(other),
                    }
                }
                tokens.push(Token::Value(value));
            }
            c if c.is_alphanumeric() || c == '_' || c == '-' || c == '.' || c == '+' => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if !(c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | ':' | '/')) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(
                    if word.starts_with(|c: char| c.is_alphabetic() || c == '_') {
                        Token::Word(word.to_lowercase())
                    } else {
                        Token::Value(word)
                    },
                );
            }
            _ => return None,
        }
    }
    Some(tokens)
}

#[cfg(test)]
mod tests {
    use super::{parse, Command};

    fn set(name: &str, value: &str) -> Option<Command> {
        Some(Command::Set {
            name: name.into(),
            value: value.into(),
        })
    }

    #[test]
    fn what_clients_send_on_connect_and_around_queries() {
        assert_eq!(parse("BEGIN"), Some(Command::Begin));
        assert_eq!(parse("begin transaction read only;"), Some(Command::Begin));
        // What DuckDB's postgres scanner sends: modes without commas.
        assert_eq!(
            parse("BEGIN TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY"),
            Some(Command::Begin)
        );
        assert_eq!(parse("BEGIN READ ONLY, , DEFERRABLE"), None);
        assert_eq!(parse("BEGIN READ ONLY,"), None);
        assert_eq!(parse("BEGIN READ SOMETIMES"), None);
        assert_eq!(
            parse("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
            Some(Command::Begin)
        );
        assert_eq!(parse("START TRANSACTION READ WRITE"), Some(Command::Begin));
        assert_eq!(parse("commit work"), Some(Command::Commit));
        assert_eq!(parse("END"), Some(Command::Commit));
        assert_eq!(parse("ROLLBACK"), Some(Command::Rollback));
        let sp = |n: &str| n.to_string();
        assert_eq!(
            parse("SAVEPOINT _pg3_1"),
            Some(Command::Savepoint { name: sp("_pg3_1") })
        );
        assert_eq!(
            parse("RELEASE SAVEPOINT a"),
            Some(Command::Release { name: sp("a") })
        );
        assert_eq!(parse("release a"), Some(Command::Release { name: sp("a") }));
        assert_eq!(
            parse("ROLLBACK TO SAVEPOINT \"_pg3_1\""),
            Some(Command::RollbackTo { name: sp("_pg3_1") })
        );
        assert_eq!(
            parse("rollback work to a"),
            Some(Command::RollbackTo { name: sp("a") })
        );
        assert_eq!(parse("ROLLBACK TO"), None);
        assert_eq!(parse("SAVEPOINT a b"), None);
        assert_eq!(
            parse("SET extra_float_digits = 3"),
            set("extra_float_digits", "3")
        );
        assert_eq!(
            parse("SET application_name = 'PostgreSQL JDBC Driver'"),
            set("application_name", "PostgreSQL JDBC Driver")
        );
        assert_eq!(
            parse("set session DateStyle to ISO, MDY"),
            set("datestyle", "iso, mdy")
        );
        assert_eq!(parse("SET TIME ZONE 'UTC'"), set("timezone", "UTC"));
        assert_eq!(
            parse("SET statement_timeout = '5s'"),
            set("statement_timeout", "5s")
        );
        assert_eq!(
            parse("SET search_path = raw, \"Main\""),
            set("search_path", "raw, Main")
        );
        assert_eq!(
            parse("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED"),
            Some(Command::SetTransaction)
        );
        assert_eq!(
            parse("SHOW TRANSACTION ISOLATION LEVEL"),
            Some(Command::Show {
                name: "transaction_isolation".into()
            })
        );
        assert_eq!(
            parse("show server_version"),
            Some(Command::Show {
                name: "server_version".into()
            })
        );
        assert_eq!(parse("RESET ALL"), Some(Command::Reset { name: None }));
        assert_eq!(parse("DISCARD ALL"), Some(Command::Discard));
        assert_eq!(
            parse("DEALLOCATE PREPARE s1"),
            Some(Command::Deallocate {
                name: Some("s1".into())
            })
        );
    }

    #[test]
    fn anything_else_is_not_a_session_statement() {
        for text in [
            "BEGIN; DROP TABLE t",
            "SET memory_limit",
            "SET x = 1; SELECT 1",
            "SET x = 'unterminated",
            "BEGIN ISOLATION LEVEL CHAOS",
            "COMMIT AND CHAIN",
            "SET x = (SELECT 1)",
            "SET x = ",
            "SET x = 1,",
            "SHOW",
            "DISCARD everything",
            "ATTACH 'x.db'",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }
}
