//! `schema.yml` files (any `*.yml` under the model paths): model properties, column tests
//! and source declarations, in dbt's version-2 format.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_yaml_ng::{Mapping, Value};
use sluice_core::Ident;

use super::{dbt_project::yaml_config_value, line_of};
use crate::{
    config::ConfigLayer,
    data_tests::{DataTest, RelationRef, Severity, TestKind},
    error::{ModelError, Result},
};

/// What one YAML file declares.
#[derive(Debug, Default)]
pub struct SchemaFile {
    /// Model name -> configuration from its `config:` block, with the line of its entry.
    pub models: BTreeMap<String, (ConfigLayer, Option<usize>)>,
    pub tests: Vec<DataTest>,
    /// Source name -> schema.
    pub sources: BTreeMap<String, Ident>,
}

struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Ctx<'_> {
    fn err(&self, needle: &str, message: impl Into<String>) -> ModelError {
        ModelError::invalid(self.path, line_of(self.text, needle), message)
    }
}

pub fn parse(path: &Path, text: &str) -> Result<SchemaFile> {
    let ctx = Ctx { path, text };
    let doc: Value = serde_yaml_ng::from_str(text)
        .map_err(|e| ModelError::invalid(path, e.location().map(|l| l.line()), e.to_string()))?;
    let mut out = SchemaFile::default();
    let Value::Mapping(map) = doc else {
        // An empty file parses as null: nothing declared.
        return Ok(out);
    };
    for (key, value) in &map {
        match key.as_str().unwrap_or_default() {
            "version" => {}
            "models" => {
                for entry in seq(&ctx, value, "models")? {
                    model(&ctx, entry, &mut out)?;
                }
            }
            "sources" => {
                for entry in seq(&ctx, value, "sources")? {
                    source(&ctx, entry, &mut out)?;
                }
            }
            other => {
                return Err(ctx.err(
                    &format!("{other}:"),
                    format!("{other:?} is not supported (sluice reads `models` and `sources`)"),
                ))
            }
        }
    }
    Ok(out)
}

fn seq<'a>(ctx: &Ctx<'_>, v: &'a Value, what: &str) -> Result<&'a Vec<Value>> {
    v.as_sequence()
        .ok_or_else(|| ctx.err(&format!("{what}:"), format!("{what} must be a list")))
}

fn name_of(ctx: &Ctx<'_>, m: &Mapping, what: &str) -> Result<String> {
    m.get("name")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ctx.err(what, format!("every entry of {what} needs a name")))
}

fn model(ctx: &Ctx<'_>, entry: &Value, out: &mut SchemaFile) -> Result<()> {
    let m = entry
        .as_mapping()
        .ok_or_else(|| ctx.err("models:", "each model entry must be a mapping"))?;
    let name = name_of(ctx, m, "models:")?;
    let at = format!("name: {name}");
    let mut layer = ConfigLayer::default();
    for (key, value) in m {
        match key.as_str().unwrap_or_default() {
            "name" | "description" | "docs" | "meta" | "access" | "group" | "latest_version" => {}
            "config" => {
                for (k, v) in value.as_mapping().into_iter().flatten() {
                    let k = k.as_str().unwrap_or_default();
                    let bad = |e: String| ctx.err(&at, format!("model {name}: config.{k}: {e}"));
                    layer
                        .set(k, yaml_config_value(v).map_err(bad)?)
                        .map_err(bad)?;
                }
            }
            "columns" => {
                for col in seq(ctx, value, "columns")? {
                    column(ctx, &name, col, out)?;
                }
            }
            "tests" | "data_tests" => {
                return Err(ctx.err(
                    &at,
                    format!(
                        "model {name}: model-level tests are not supported; put unique, \
                         not_null, accepted_values and relationships under `columns`"
                    ),
                ))
            }
            other => {
                return Err(ctx.err(
                    &at,
                    format!("model {name}: property {other:?} is not supported"),
                ))
            }
        }
    }
    out.models
        .insert(name.clone(), (layer, line_of(ctx.text, &at)));
    Ok(())
}

fn column(ctx: &Ctx<'_>, model: &str, col: &Value, out: &mut SchemaFile) -> Result<()> {
    let m = col.as_mapping().ok_or_else(|| {
        ctx.err(
            "columns:",
            format!("model {model}: each column must be a mapping"),
        )
    })?;
    let name = name_of(ctx, m, "columns:")?;
    let at = format!("name: {name}");
    let column =
        Ident::new(&name).map_err(|e| ctx.err(&at, format!("model {model}: column: {e}")))?;
    for key in ["tests", "data_tests"] {
        let Some(tests) = m.get(key) else { continue };
        for test in seq(ctx, tests, key)? {
            out.tests.push(data_test(ctx, model, &column, test)?);
        }
    }
    Ok(())
}

fn data_test(ctx: &Ctx<'_>, model: &str, column: &Ident, test: &Value) -> Result<DataTest> {
    let (test_name, args) = match test {
        Value::String(s) => (s.clone(), Mapping::new()),
        Value::Mapping(m) if m.len() == 1 => {
            let (k, v) = m.iter().next().expect("one entry");
            let args = v.as_mapping().cloned().unwrap_or_default();
            (k.as_str().unwrap_or_default().to_string(), args)
        }
        _ => {
            return Err(ctx.err(
                column.as_str(),
                format!("model {model}: a test must be a name or a one-key mapping"),
            ))
        }
    };
    let line = line_of(ctx.text, &test_name);
    let bad = |m: String| {
        ModelError::invalid(
            ctx.path,
            line,
            format!("model {model}, column {column}, test {test_name}: {m}"),
        )
    };
    let mut severity = Severity::Error;
    let mut values = None;
    let (mut to, mut field) = (None, None);
    for (k, v) in &args {
        match k.as_str().unwrap_or_default() {
            "severity" => severity = parse_severity(v).map_err(bad)?,
            "config" => {
                for (ck, cv) in v.as_mapping().into_iter().flatten() {
                    match ck.as_str().unwrap_or_default() {
                        "severity" => severity = parse_severity(cv).map_err(bad)?,
                        other => {
                            return Err(bad(format!(
                                "config {other:?} is not supported (severity is)"
                            )))
                        }
                    }
                }
            }
            "values" => {
                let list = v
                    .as_sequence()
                    .ok_or_else(|| bad("values must be a list".into()))?;
                values = Some(
                    list.iter()
                        .map(|x| match x {
                            Value::String(s) => Ok(s.clone()),
                            Value::Number(n) => Ok(n.to_string()),
                            Value::Bool(b) => Ok(b.to_string()),
                            _ => Err(bad("values must be strings or numbers".into())),
                        })
                        .collect::<Result<Vec<_>>>()?,
                );
            }
            "to" => {
                to = Some(
                    v.as_str()
                        .ok_or_else(|| bad("to must be ref('model') or source('s', 't')".into()))?,
                )
            }
            "field" => {
                let f = v
                    .as_str()
                    .ok_or_else(|| bad("field must be a column name".into()))?;
                field = Some(Ident::new(f).map_err(|e| bad(format!("field: {e}")))?);
            }
            "quote" => {}
            other => return Err(bad(format!("argument {other:?} is not supported"))),
        }
    }
    let kind = match test_name.as_str() {
        "unique" => TestKind::Unique,
        "not_null" => TestKind::NotNull,
        "accepted_values" => TestKind::AcceptedValues(values.ok_or_else(|| bad("needs `values`".into()))?),
        "relationships" => TestKind::Relationships {
            to: RelationRef::parse(to.ok_or_else(|| bad("needs `to`".into()))?).map_err(bad)?,
            field: field.ok_or_else(|| bad("needs `field`".into()))?,
        },
        other => {
            return Err(bad(format!(
                "test {other:?} is not supported (unique, not_null, accepted_values, relationships are)"
            )))
        }
    };
    Ok(DataTest {
        model: model.to_string(),
        column: column.clone(),
        kind,
        severity,
        path: PathBuf::from(ctx.path),
        line,
    })
}

fn parse_severity(v: &Value) -> std::result::Result<Severity, String> {
    match v.as_str().map(str::to_ascii_lowercase).as_deref() {
        Some("warn") => Ok(Severity::Warn),
        Some("error") => Ok(Severity::Error),
        _ => Err("severity must be warn or error".into()),
    }
}

fn source(ctx: &Ctx<'_>, entry: &Value, out: &mut SchemaFile) -> Result<()> {
    let m = entry
        .as_mapping()
        .ok_or_else(|| ctx.err("sources:", "each source entry must be a mapping"))?;
    let name = name_of(ctx, m, "sources:")?;
    let at = format!("name: {name}");
    let schema = m.get("schema").and_then(Value::as_str).unwrap_or(&name);
    let schema =
        Ident::new(schema).map_err(|e| ctx.err(&at, format!("source {name}: schema: {e}")))?;
    for (key, value) in m {
        match key.as_str().unwrap_or_default() {
            "name" | "schema" | "description" | "meta" | "loader" | "database" | "freshness"
            | "loaded_at_field" => {}
            "tables" => {
                for t in seq(ctx, value, "tables")? {
                    let has_tests = t
                        .as_mapping()
                        .and_then(|t| t.get("columns"))
                        .and_then(Value::as_sequence)
                        .is_some_and(|cols| {
                            cols.iter()
                                .any(|c| c.get("tests").or_else(|| c.get("data_tests")).is_some())
                        });
                    if has_tests {
                        return Err(ctx.err(
                            &at,
                            format!("source {name}: tests on sources are not supported; test a staging model instead"),
                        ));
                    }
                }
            }
            other => {
                return Err(ctx.err(
                    &at,
                    format!("source {name}: property {other:?} is not supported"),
                ))
            }
        }
    }
    out.sources.insert(name, schema);
    Ok(())
}
