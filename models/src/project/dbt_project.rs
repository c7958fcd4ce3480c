//! `dbt_project.yml`: where models live and the folder-level configuration.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_yaml_ng::{Mapping, Value};

use super::{line_of, read};
use crate::{
    config::{ConfigLayer, ConfigValue},
    error::{ModelError, Result},
};

/// Top-level keys that only matter to dbt itself (profiles, targets, other resources).
const IGNORED_KEYS: &[&str] = &[
    "name",
    "version",
    "config-version",
    "profile",
    "model-paths",
    "macro-paths",
    "seed-paths",
    "test-paths",
    "analysis-paths",
    "snapshot-paths",
    "docs-paths",
    "asset-paths",
    "target-path",
    "log-path",
    "packages-install-path",
    "clean-targets",
    "require-dbt-version",
    "quoting",
    "flags",
    "seeds",
    "snapshots",
    "tests",
    "data_tests",
    "sources",
    "query-comment",
    "dispatch",
    "restrict-access",
];

/// The parts of a dbt project sluice uses.
#[derive(Debug, Clone)]
pub struct DbtProject {
    pub name: Option<String>,
    pub model_paths: Vec<PathBuf>,
    pub macro_paths: Vec<PathBuf>,
    folders: Folder,
}

/// Configuration for a folder (or a model, at the leaves) and its sub-folders.
#[derive(Debug, Clone, Default)]
struct Folder {
    layer: ConfigLayer,
    children: BTreeMap<String, Folder>,
}

impl DbtProject {
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("dbt_project.yml");
        let text = read(&path)?;
        let doc: Value = serde_yaml_ng::from_str(&text).map_err(|e| {
            ModelError::invalid(&path, e.location().map(|l| l.line()), e.to_string())
        })?;
        let Value::Mapping(map) = doc else {
            return Err(ModelError::invalid(
                &path,
                None,
                "expected a mapping at the top level",
            ));
        };
        let mut project = DbtProject {
            name: map.get("name").and_then(Value::as_str).map(str::to_string),
            model_paths: paths(&map, "model-paths", "models", dir, &path, &text)?,
            macro_paths: paths(&map, "macro-paths", "macros", dir, &path, &text)?,
            folders: Folder::default(),
        };
        for (key, value) in &map {
            let key = key.as_str().unwrap_or_default();
            match key {
                "models" => {
                    project.folders = folder(value, &path, &text, "models")?;
                }
                "vars" => {
                    return Err(ModelError::invalid(
                        &path,
                        line_of(&text, "vars:"),
                        "`vars` (and var()) are not supported by sluice",
                    ))
                }
                k if IGNORED_KEYS.contains(&k) => {}
                other => {
                    return Err(ModelError::invalid(
                        &path,
                        line_of(&text, &format!("{other}:")),
                        format!("unknown key {other:?}"),
                    ))
                }
            }
        }
        Ok(project)
    }

    /// Folder-level configuration for the model at `relative` (under a model path, with
    /// the `.sql` extension removed from the last component).
    pub fn layer_for(&self, relative: &[String]) -> ConfigLayer {
        let mut layer = self.folders.layer.clone();
        // Under `models:`, the first level names the project (as in dbt).
        let Some(mut node) = self
            .name
            .as_ref()
            .and_then(|n| self.folders.children.get(n))
        else {
            return layer;
        };
        layer.overlay(&node.layer);
        for part in relative {
            match node.children.get(part) {
                Some(child) => {
                    layer.overlay(&child.layer);
                    node = child;
                }
                None => break,
            }
        }
        layer
    }
}

fn paths(
    map: &Mapping,
    key: &str,
    default: &str,
    dir: &Path,
    path: &Path,
    text: &str,
) -> Result<Vec<PathBuf>> {
    let Some(value) = map.get(key) else {
        return Ok(vec![dir.join(default)]);
    };
    let list = value.as_sequence().ok_or_else(|| {
        ModelError::invalid(
            path,
            line_of(text, key),
            format!("{key} must be a list of folders"),
        )
    })?;
    list.iter()
        .map(|v| {
            v.as_str().map(|s| dir.join(s)).ok_or_else(|| {
                ModelError::invalid(
                    path,
                    line_of(text, key),
                    format!("{key} must be a list of folders"),
                )
            })
        })
        .collect()
}

/// A `models:` mapping: `+key` (or a known key with a scalar value) is configuration, a
/// mapping is a sub-folder.
fn folder(value: &Value, path: &Path, text: &str, at: &str) -> Result<Folder> {
    let mut out = Folder::default();
    let Some(map) = value.as_mapping() else {
        return Ok(out);
    };
    for (key, value) in map {
        let key = key.as_str().unwrap_or_default();
        let is_config = key.starts_with('+') || !value.is_mapping();
        if is_config {
            let bad = |m: String| {
                ModelError::invalid(path, line_of(text, key), format!("{at}.{key}: {m}"))
            };
            let v = yaml_config_value(value).map_err(bad)?;
            out.layer.set(key, v).map_err(bad)?;
        } else {
            let child = folder(value, path, text, &format!("{at}.{key}"))?;
            out.children.insert(key.to_string(), child);
        }
    }
    Ok(out)
}

/// A YAML value as a [`ConfigValue`].
pub fn yaml_config_value(value: &Value) -> std::result::Result<ConfigValue, String> {
    let scalar = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    if let Some(s) = scalar(value) {
        return Ok(ConfigValue::Str(s));
    }
    match value {
        Value::Sequence(items) => items
            .iter()
            .map(|v| scalar(v).ok_or_else(|| "expected a list of strings".to_string()))
            .collect::<std::result::Result<_, _>>()
            .map(ConfigValue::List),
        // Documentation keys (meta, docs) may hold mappings; their content is irrelevant.
        Value::Mapping(_) => Ok(ConfigValue::Str(String::new())),
        _ => Err("expected a string or a list".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Materialized;

    #[test]
    fn folder_config_nests_under_the_project_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("dbt_project.yml"),
            "name: shop\nversion: '1.0'\nprofile: shop\nmodel-paths: [\"m\"]\nmodels:\n  shop:\n    \
             +materialized: view\n    marts:\n      +materialized: table\n      finance:\n        \
             materialized: incremental\n        unique_key: id\n",
        )
        .unwrap();
        let p = DbtProject::load(dir.path()).unwrap();
        assert_eq!(p.model_paths, vec![dir.path().join("m")]);
        let at = |parts: &[&str]| {
            let parts: Vec<String> = parts.iter().map(|s| s.to_string()).collect();
            p.layer_for(&parts).materialized
        };
        assert_eq!(at(&["stg_x"]), Some(Materialized::View));
        assert_eq!(at(&["marts", "fct"]), Some(Materialized::Table));
        assert_eq!(
            at(&["marts", "finance", "fct"]),
            Some(Materialized::Incremental)
        );
    }

    #[test]
    fn unknown_keys_and_vars_are_errors_with_lines() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("dbt_project.yml");
        std::fs::write(&file, "name: a\nvars:\n  x: 1\n").unwrap();
        let e = DbtProject::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("dbt_project.yml:2") && e.contains("vars"), "{e}");
        std::fs::write(&file, "name: a\nmodels:\n  a:\n    +post-hook: x\n").unwrap();
        let e = DbtProject::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains(":4") && e.contains("post-hook"), "{e}");
    }
}
