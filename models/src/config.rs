//! A model's configuration: how it is materialized and merged. Layers come from
//! `dbt_project.yml` folders, then `schema.yml`, then the model's own `{{ config(...) }}`;
//! a later layer wins key by key, as in dbt.

use std::{fmt, time::Duration};

use sluice_core::Ident;

/// Default pause between rebuilds of a `table` model.
pub const DEFAULT_TABLE_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// How a model is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Materialized {
    View,
    Table,
    Incremental,
    Ephemeral,
}

impl fmt::Display for Materialized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Materialized::View => "view",
            Materialized::Table => "table",
            Materialized::Incremental => "incremental",
            Materialized::Ephemeral => "ephemeral",
        })
    }
}

/// How an incremental model folds its new rows into the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// Insert the new rows.
    Append,
    /// Upsert on `unique_key`; duplicate keys in the new rows are an error.
    Merge,
    /// Delete rows whose key appears in the new rows, then insert them all.
    DeleteInsert,
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Strategy::Append => "append",
            Strategy::Merge => "merge",
            Strategy::DeleteInsert => "delete+insert",
        })
    }
}

/// A value as written in YAML or Jinja: a string (or number/bool) or a list of strings.
#[derive(Debug, Clone, PartialEq)]
pub enum ConfigValue {
    Str(String),
    List(Vec<String>),
}

/// Keys accepted and ignored because they only document (no effect on the data).
const DOC_ONLY_KEYS: &[&str] = &[
    "tags",
    "description",
    "docs",
    "meta",
    "persist_docs",
    "group",
];

/// One layer of configuration, every key optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConfigLayer {
    pub enabled: Option<bool>,
    pub materialized: Option<Materialized>,
    pub unique_key: Option<Vec<Ident>>,
    pub strategy: Option<Strategy>,
    pub min_interval: Option<Duration>,
}

impl ConfigLayer {
    /// Sets `key` (without dbt's `+` prefix). The error says what is accepted.
    pub fn set(&mut self, key: &str, value: ConfigValue) -> Result<(), String> {
        let key = key.strip_prefix('+').unwrap_or(key);
        match key {
            "materialized" => {
                self.materialized = Some(match scalar(key, &value)? {
                    "view" => Materialized::View,
                    "table" => Materialized::Table,
                    "incremental" => Materialized::Incremental,
                    "ephemeral" => Materialized::Ephemeral,
                    other => {
                        return Err(format!(
                            "materialized = {other:?} is not supported \
                             (view | table | incremental | ephemeral)"
                        ))
                    }
                })
            }
            "incremental_strategy" => {
                self.strategy = Some(match scalar(key, &value)? {
                    "append" => Strategy::Append,
                    "merge" => Strategy::Merge,
                    "delete+insert" => Strategy::DeleteInsert,
                    other => {
                        return Err(format!(
                            "incremental_strategy = {other:?} is not supported \
                             (append | merge | delete+insert)"
                        ))
                    }
                })
            }
            "unique_key" => {
                let names = match value {
                    ConfigValue::Str(s) => vec![s],
                    ConfigValue::List(l) => l,
                };
                let keys = names
                    .iter()
                    .map(|n| Ident::new(n.trim()).map_err(|e| format!("unique_key: {e}")))
                    .collect::<Result<Vec<_>, _>>()?;
                if keys.is_empty() {
                    return Err("unique_key must name at least one column".into());
                }
                self.unique_key = Some(keys);
            }
            "min_interval" => {
                let text = scalar(key, &value)?;
                let d = humantime::parse_duration(text)
                    .map_err(|e| format!("min_interval = {text:?}: {e} (e.g. \"5s\")"))?;
                if d > Duration::from_secs(86_400) {
                    return Err(format!("min_interval = {text:?} is more than a day"));
                }
                self.min_interval = Some(d);
            }
            "enabled" => {
                self.enabled = Some(match scalar(key, &value)? {
                    "true" | "True" => true,
                    "false" | "False" => false,
                    other => return Err(format!("enabled = {other:?} must be true or false")),
                })
            }
            k if DOC_ONLY_KEYS.contains(&k) => {}
            other => {
                return Err(format!(
                    "config key {other:?} is not supported by sluice (supported: materialized, \
                     unique_key, incremental_strategy, min_interval, enabled, and the \
                     documentation keys {})",
                    DOC_ONLY_KEYS.join(", ")
                ))
            }
        }
        Ok(())
    }

    /// `other`'s keys override this layer's.
    pub fn overlay(&mut self, other: &ConfigLayer) {
        if other.enabled.is_some() {
            self.enabled = other.enabled;
        }
        if other.materialized.is_some() {
            self.materialized = other.materialized;
        }
        if other.unique_key.is_some() {
            self.unique_key.clone_from(&other.unique_key);
        }
        if other.strategy.is_some() {
            self.strategy = other.strategy;
        }
        if other.min_interval.is_some() {
            self.min_interval = other.min_interval;
        }
    }

    /// The final configuration, or why the combination is invalid.
    pub fn resolve(&self) -> Result<ModelConfig, String> {
        let materialized = self.materialized.unwrap_or(Materialized::View);
        let unique_key = self.unique_key.clone().unwrap_or_default();
        // dbt-duckdb's default: delete+insert with a key, append without.
        let strategy = self.strategy.unwrap_or(if unique_key.is_empty() {
            Strategy::Append
        } else {
            Strategy::DeleteInsert
        });
        if materialized == Materialized::Incremental
            && strategy != Strategy::Append
            && unique_key.is_empty()
        {
            return Err(format!(
                "incremental_strategy {strategy} needs a unique_key"
            ));
        }
        Ok(ModelConfig {
            enabled: self.enabled.unwrap_or(true),
            materialized,
            unique_key,
            strategy,
            // A table is rebuilt whole, so by default at most once a second; an incremental
            // model folds in only the new rows, after every commit unless told otherwise.
            min_interval: self.min_interval.unwrap_or(match materialized {
                Materialized::Table => DEFAULT_TABLE_MIN_INTERVAL,
                _ => Duration::ZERO,
            }),
        })
    }
}

fn scalar<'a>(key: &str, value: &'a ConfigValue) -> Result<&'a str, String> {
    match value {
        ConfigValue::Str(s) => Ok(s.as_str()),
        ConfigValue::List(_) => Err(format!("{key} takes one value, not a list")),
    }
}

/// A model's resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub enabled: bool,
    pub materialized: Materialized,
    pub unique_key: Vec<Ident>,
    pub strategy: Strategy,
    pub min_interval: Duration,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> ConfigValue {
        ConfigValue::Str(v.into())
    }

    #[test]
    fn later_layers_win_key_by_key() {
        let mut folder = ConfigLayer::default();
        folder.set("+materialized", s("table")).unwrap();
        folder.set("min_interval", s("5s")).unwrap();
        let mut model = ConfigLayer::default();
        model.set("materialized", s("incremental")).unwrap();
        model
            .set(
                "unique_key",
                ConfigValue::List(vec!["a".into(), "b".into()]),
            )
            .unwrap();
        folder.overlay(&model);
        let c = folder.resolve().unwrap();
        assert_eq!(c.materialized, Materialized::Incremental);
        assert_eq!(c.min_interval, Duration::from_secs(5));
        assert_eq!(c.strategy, Strategy::DeleteInsert);
        assert_eq!(c.unique_key.len(), 2);
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        let mut c = ConfigLayer::default();
        assert!(c
            .set("materialized", s("snapshot"))
            .unwrap_err()
            .contains("snapshot"));
        assert!(c
            .set("post_hook", s("x"))
            .unwrap_err()
            .contains("post_hook"));
        assert!(c
            .set("min_interval", s("1000years"))
            .unwrap_err()
            .contains("more than a day"));
        assert!(c.set("unique_key", s("a; drop")).is_err());
        c.set("materialized", s("incremental")).unwrap();
        c.set("incremental_strategy", s("merge")).unwrap();
        assert!(c.resolve().unwrap_err().contains("unique_key"));
    }

    #[test]
    fn defaults_follow_dbt() {
        let c = ConfigLayer::default().resolve().unwrap();
        assert_eq!(c.materialized, Materialized::View);
        assert_eq!(c.strategy, Strategy::Append);
        assert!(c.enabled);
    }
}
