//! SQL identifiers. Every identifier that comes from configuration (schema, table, source
//! names) is validated once into an [`Ident`]; every identifier that comes from data (CSV
//! header names) is quoted through [`quote_ident`]. No other code builds quoted names.

use std::fmt;

/// Longest identifier accepted from configuration.
pub const MAX_IDENT_LEN: usize = 63;

/// A configuration-supplied SQL identifier: ASCII letter or `_` first, then letters, digits
/// or `_`, at most [`MAX_IDENT_LEN`] bytes. Safe to embed once quoted with [`Ident::quoted`].
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

/// Why a string is not an acceptable identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error("must not be empty")]
    Empty,
    #[error("{0:?} is longer than {MAX_IDENT_LEN} characters")]
    TooLong(String),
    #[error("{0:?} must start with a letter or '_' and contain only letters, digits and '_'")]
    BadCharacters(String),
}

impl Ident {
    /// Validates `name` as an identifier.
    pub fn new(name: &str) -> Result<Self, IdentError> {
        if name.is_empty() {
            return Err(IdentError::Empty);
        }
        if name.len() > MAX_IDENT_LEN {
            return Err(IdentError::TooLong(name.to_string()));
        }
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !first_ok || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(IdentError::BadCharacters(name.to_string()));
        }
        Ok(Ident(name.to_string()))
    }

    /// The identifier as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The identifier double-quoted for SQL.
    pub fn quoted(&self) -> String {
        quote_ident(&self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Ident {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Quotes any string as a SQL identifier (doubling embedded quotes), for names that come
/// from data, such as CSV header fields.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        assert_eq!(
            Ident::new("raw_2").map(|i| i.quoted()),
            Ok("\"raw_2\"".into())
        );
        assert!(Ident::new("_x").is_ok());
    }

    #[test]
    fn rejects_injection_and_odd_names() {
        for bad in [
            "",
            "1abc",
            "a-b",
            "a\"b",
            "x; drop table y",
            "é",
            &"a".repeat(64),
        ] {
            assert!(Ident::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn quote_ident_escapes_quotes() {
        assert_eq!(quote_ident("we\"ird name"), "\"we\"\"ird name\"");
    }
}
