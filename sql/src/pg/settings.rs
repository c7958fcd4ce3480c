//! Session parameters: what `SET`, `RESET` and `SHOW` change and read. They live in
//! sluice, per connection; none is a DuckDB setting. Three change behaviour:
//! `statement_timeout` (stops a statement that runs longer),
//! `idle_in_transaction_session_timeout` (ends a transaction left open and idle, whose
//! snapshot would hold back DuckDB's checkpoints) and `search_path` (where unqualified
//! names resolve, within the schemas clients may read). The rest are kept
//! and shown back, so clients that set them on connect work.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::gate::Refusal;

/// One connection's parameters.
#[derive(Debug, Clone)]
pub struct Settings {
    values: BTreeMap<String, String>,
    defaults: BTreeMap<String, String>,
    /// The operator's `statement_timeout` and `idle_in_transaction_session_timeout`
    /// (`sql.*`): a session may lower them, never raise or remove them.
    ceilings: (Option<Duration>, Option<Duration>),
}

/// Parameters with fixed values: shown, never changed.
const FIXED: &[(&str, &str)] = &[
    ("server_encoding", "UTF8"),
    ("integer_datetimes", "on"),
    ("transaction_read_only", "on"),
    ("default_transaction_read_only", "on"),
    ("transaction_isolation", "repeatable read"),
    ("default_transaction_isolation", "repeatable read"),
    ("max_identifier_length", "63"),
    ("default_table_access_method", "heap"),
    ("is_superuser", "off"),
    ("lc_collate", "C"),
    ("lc_ctype", "C"),
];

impl Settings {
    pub fn new(
        statement_timeout: Option<Duration>,
        idle_in_transaction: Option<Duration>,
        server_version: &str,
    ) -> Self {
        let timeout = statement_timeout.map_or(0, |d| d.as_millis());
        let idle = idle_in_transaction.map_or(0, |d| d.as_millis());
        let defaults: BTreeMap<String, String> = [
            ("application_name", String::new()),
            ("client_encoding", "UTF8".into()),
            ("datestyle", "ISO, MDY".into()),
            ("intervalstyle", "postgres".into()),
            ("timezone", "UTC".into()),
            ("extra_float_digits", "1".into()),
            ("standard_conforming_strings", "on".into()),
            ("search_path", String::new()),
            ("statement_timeout", format!("{timeout}")),
            ("idle_in_transaction_session_timeout", format!("{idle}")),
            ("server_version", server_version.to_string()),
            ("server_version_num", version_num(server_version)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(FIXED.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
        Settings {
            values: defaults.clone(),
            defaults,
            ceilings: (statement_timeout, idle_in_transaction),
        }
    }

    /// Parameters the client sent in its startup message (`application_name`,
    /// `search_path` in `options`, ...): taken where valid, ignored otherwise.
    pub fn apply_startup(&mut self, metadata: &std::collections::HashMap<String, String>) {
        for (name, value) in metadata {
            let _ = self.set(name, value);
        }
    }

    /// `SET name = value`.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), Refusal> {
        let name = name.to_lowercase();
        if FIXED.iter().any(|(k, _)| *k == name) || name.starts_with("server_version") {
            return Err(Refusal {
                sqlstate: "55P02",
                message: format!("parameter \"{name}\" cannot be changed"),
            });
        }
        let value = value.trim_matches('\'').to_string();
        match name.as_str() {
            "statement_timeout" | "idle_in_transaction_session_timeout" => {
                let ms = timeout_millis(&name, &value)?;
                self.values.insert(name, ms.to_string());
            }
            "timezone"
                if !matches!(
                    value.to_lowercase().as_str(),
                    "utc" | "etc/utc" | "gmt" | "z" | "0" | "+00" | "+00:00"
                ) =>
            {
                return Err(Refusal {
                    sqlstate: "22023",
                    message: format!("sessions run in UTC (TimeZone cannot be {value}); convert in the query instead"),
                });
            }
            _ => {
                self.values.insert(name, value);
            }
        }
        Ok(())
    }

    /// `RESET name` (`None`: all).
    pub fn reset(&mut self, name: Option<&str>) {
        match name {
            None => self.values = self.defaults.clone(),
            Some(n) => {
                let n = n.to_lowercase();
                match self.defaults.get(&n) {
                    Some(v) => self.values.insert(n, v.clone()),
                    None => self.values.remove(&n),
                };
            }
        }
    }

    /// `SHOW name`: its value, or an error for an unknown parameter (42704, as Postgres).
    pub fn show(&self, name: &str) -> Result<String, Refusal> {
        let name = name.to_lowercase();
        match name.as_str() {
            "statement_timeout" => Ok(self
                .statement_timeout()
                .map_or("0".into(), |d| format!("{}ms", d.as_millis()))),
            "idle_in_transaction_session_timeout" => Ok(self
                .idle_in_transaction_timeout()
                .map_or("0".into(), |d| format!("{}ms", d.as_millis()))),
            "search_path" if self.values.get("search_path").is_none_or(String::is_empty) => {
                Ok("\"$user\", public".into())
            }
            _ => self.values.get(&name).cloned().ok_or_else(|| Refusal {
                sqlstate: "42704",
                message: format!("unrecognized configuration parameter \"{name}\""),
            }),
        }
    }

    /// Every parameter, for `SHOW ALL`.
    pub fn all(&self) -> Vec<(String, String)> {
        self.values
            .keys()
            .map(|k| (k.clone(), self.show(k).unwrap_or_default()))
            .collect()
    }

    /// The statement timeout in force: the session's, within the operator's.
    pub fn statement_timeout(&self) -> Option<Duration> {
        within(self.millis("statement_timeout"), self.ceilings.0)
    }

    /// The idle-in-transaction timeout in force: the session's, within the operator's.
    pub fn idle_in_transaction_timeout(&self) -> Option<Duration> {
        within(
            self.millis("idle_in_transaction_session_timeout"),
            self.ceilings.1,
        )
    }

    fn millis(&self, name: &str) -> Option<Duration> {
        let ms: u64 = self.values.get(name)?.parse().ok()?;
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// The schemas unqualified names resolve in: the session's `search_path` where it
    /// names readable schemas, else the readable schemas in order.
    pub fn search_path(&self, readable: &[String]) -> Vec<String> {
        let set: Vec<String> = self
            .values
            .get("search_path")
            .map(|v| {
                v.split(',')
                    .map(|s| s.trim().trim_matches('"').to_lowercase())
                    .filter(|s| readable.contains(s))
                    .collect()
            })
            .unwrap_or_default();
        if set.is_empty() {
            readable.to_vec()
        } else {
            set
        }
    }
}

/// A session's timeout (`None`: none) within the operator's (`None`: none).
fn within(session: Option<Duration>, ceiling: Option<Duration>) -> Option<Duration> {
    match (session, ceiling) {
        (Some(s), Some(c)) => Some(s.min(c)),
        (s, None) => s,
        (None, c) => c,
    }
}

/// The largest timeout a session may set, in milliseconds: Postgres's own bound
/// (`INT_MAX`, about 24.8 days).
const MAX_TIMEOUT_MS: u64 = i32::MAX as u64;

/// A timeout's value: milliseconds, or a number with a unit (`5s`, `2min`), at most
/// [`MAX_TIMEOUT_MS`] (a larger one is refused, never wrapped).
fn timeout_millis(name: &str, value: &str) -> Result<u64, Refusal> {
    let v = value.trim().to_lowercase();
    let split = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: u64 = n.parse().map_err(|_| invalid(name, value))?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1_000,
        "min" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(invalid(name, value)),
    };
    n.checked_mul(factor)
        .filter(|ms| *ms <= MAX_TIMEOUT_MS)
        .ok_or_else(|| Refusal {
            sqlstate: "22003",
            message: format!(
                "{value} is outside the valid range for parameter \"{name}\" (0 .. {MAX_TIMEOUT_MS}ms)"
            ),
        })
}

fn invalid(name: &str, value: &str) -> Refusal {
    Refusal {
        sqlstate: "22023",
        message: format!("invalid value for parameter \"{name}\": \"{value}\""),
    }
}

/// `server_version_num` for a `server_version` such as "16.6": 160006.
fn version_num(version: &str) -> String {
    let mut parts = version
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    (major * 10_000 + minor).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings::new(Some(Duration::from_secs(300)), None, "16.6")
    }

    #[test]
    fn timeouts_take_units_and_refuse_what_is_out_of_range() {
        let mut s = Settings::new(None, None, "16.6");
        s.set("statement_timeout", "'2min'").expect("2min");
        assert_eq!(s.statement_timeout(), Some(Duration::from_secs(120)));
        s.set("statement_timeout", "2147483647")
            .expect("INT_MAX ms");
        for value in [
            "2147483648",
            "25d",
            "18446744073709551615",
            "99999999999999999999",
            "213503982334601d",
            "-1",
            "1 fortnight",
        ] {
            let e = s.set("statement_timeout", value).expect_err(value);
            assert!(matches!(e.sqlstate, "22003" | "22023"), "{value}: {e:?}");
            // A refused value leaves the last one in force.
            assert_eq!(
                s.statement_timeout(),
                Some(Duration::from_millis(2_147_483_647))
            );
        }
        assert_eq!(
            s.set("idle_in_transaction_session_timeout", "30d")
                .expect_err("30d")
                .sqlstate,
            "22003"
        );
    }

    #[test]
    fn a_session_lowers_the_operators_timeouts_but_never_raises_or_removes_them() {
        let mut s = settings();
        let five_minutes = Some(Duration::from_secs(300));
        s.set("statement_timeout", "2s").expect("lower");
        assert_eq!(s.statement_timeout(), Some(Duration::from_secs(2)));
        for raise in ["0", "1h"] {
            s.set("statement_timeout", raise)
                .expect("accepted, as Postgres does");
            assert_eq!(s.statement_timeout(), five_minutes, "{raise}");
        }
        // Without an operator's timeout, the session's is the only one.
        let mut open = Settings::new(None, None, "16.6");
        open.set("statement_timeout", "1h").expect("1h");
        assert_eq!(open.statement_timeout(), Some(Duration::from_secs(3600)));
    }
}
