//! Rendering a model's Jinja with dbt's context, via minijinja.
//!
//! The same function serves three moments: discovery (collect `config()` and `ref()` before
//! anything else is known), a full build, and an incremental run. What differs is the
//! [`Mode`]: it decides `is_incremental()`, `new_rows()`, and how `ref()` resolves.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
    path::Path,
    sync::{Arc, Mutex, PoisonError},
};

use minijinja::{
    value::{Kwargs, Object, Value, ValueKind},
    Environment, Error, ErrorKind, UndefinedBehavior,
};
use sluice_core::{meta, Ident};

use crate::{
    config::{ConfigLayer, ConfigValue, Materialized},
    error::{ModelError, Result},
};

/// Prefix of the CTE an ephemeral model becomes, as in dbt.
pub const EPHEMERAL_PREFIX: &str = "__dbt__cte__";

/// What is being rendered for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Collecting config and dependencies; refs resolve to placeholders.
    Discover,
    /// A full build: `is_incremental()` is false, `new_rows()` is `true`.
    Full,
    /// An incremental run over rows with `_sluice_batch > watermark`.
    Incremental { watermark: i64 },
}

/// Where names resolve: schemas, the models (with their materialization once known) and
/// the sources declared in YAML.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub model_schema: Ident,
    pub raw_schema: Ident,
    /// Every model, with its materialization (`None` while discovering).
    pub models: BTreeMap<String, Option<Materialized>>,
    /// Source name -> schema, from `sources:` in YAML.
    pub sources: BTreeMap<String, Ident>,
}

impl Catalog {
    /// The relation a `ref(name)` means: a model, an inlined ephemeral model, or a raw table.
    pub fn resolve_ref(&self, name: &str) -> std::result::Result<Resolved, String> {
        let ident = Ident::new(name).map_err(|e| format!("ref({name:?}): {e}"))?;
        Ok(match self.models.get(name) {
            Some(Some(Materialized::Ephemeral)) => Resolved::Ephemeral(ident),
            Some(_) => Resolved::Model(ident),
            None => Resolved::Raw(ident),
        })
    }

    /// The schema of source `source`: declared in YAML, or the raw schema by its own name.
    pub fn source_schema(&self, source: &str) -> std::result::Result<Ident, String> {
        if let Some(schema) = self.sources.get(source) {
            return Ok(schema.clone());
        }
        if source == self.raw_schema.as_str() {
            return Ok(self.raw_schema.clone());
        }
        Err(format!(
            "source({source:?}, ...) is not declared: declare it under `sources:` in a schema \
             .yml file, or use the raw schema's name ({:?})",
            self.raw_schema.as_str()
        ))
    }

    pub fn relation(&self, schema: &Ident, name: &Ident) -> String {
        format!("{}.{}", schema.quoted(), name.quoted())
    }
}

/// What a `ref()` resolved to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    Model(Ident),
    Ephemeral(Ident),
    Raw(Ident),
}

/// A rendered model and what rendering it revealed.
#[derive(Debug, Clone, Default)]
pub struct Rendered {
    pub sql: String,
    /// Keys set by `{{ config(...) }}`.
    pub config: ConfigLayer,
    /// Names passed to `ref()` (lines are found with [`line_of_ref`]).
    pub refs: BTreeSet<String>,
    /// Raw tables read (via `ref` of a non-model or `source` in the raw schema).
    pub raw_tables: BTreeSet<String>,
    /// Ephemeral models to inline, in first-use order.
    pub ephemerals: Vec<String>,
}

/// A dbt relation object: renders as its quoted name, exposes `schema`, `name`, `identifier`.
#[derive(Debug)]
struct Relation {
    schema: String,
    name: String,
    sql: String,
}

impl Object for Relation {
    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match key.as_str()? {
            "schema" => Some(Value::from(self.schema.clone())),
            "name" | "identifier" | "table" => Some(Value::from(self.name.clone())),
            "database" => Some(Value::from("")),
            _ => None,
        }
    }

    fn render(self: &Arc<Self>, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.sql)
    }
}

fn relation(schema: &str, name: &str, sql: String) -> Value {
    Value::from_object(Relation {
        schema: schema.to_string(),
        name: name.to_string(),
        sql,
    })
}

fn fail(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, msg.into())
}

/// Renders `text` (the model `name` in file `path`).
pub fn render(
    path: &Path,
    name: &str,
    text: &str,
    catalog: &Catalog,
    mode: Mode,
) -> Result<Rendered> {
    let found: Arc<Mutex<Rendered>> = Arc::default();
    let line_of = |e: &Error| e.line();
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    // dbt's Jinja is Python's: `d.items()`, `s.upper()`, `l.append()` and friends.
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    add_functions(&mut env, catalog, mode, &found);
    let this = Ident::new(name)
        .map_err(|e| ModelError::invalid(path, None, format!("model name: {e}")))?;
    env.add_global(
        "this",
        relation(
            catalog.model_schema.as_str(),
            name,
            catalog.relation(&catalog.model_schema, &this),
        ),
    );
    let sql = env
        .render_str(text, ())
        .map_err(|e| ModelError::invalid(path, line_of(&e), describe(&e)))?;
    let mut out = std::mem::take(&mut *found.lock().unwrap_or_else(PoisonError::into_inner));
    out.sql = sql;
    Ok(out)
}

/// minijinja's message without its own location suffix (the caller adds file and line).
fn describe(e: &Error) -> String {
    let mut msg = e.kind().to_string();
    if let Some(detail) = e.detail() {
        msg = format!("{msg}: {detail}");
    }
    let unknown = [
        ErrorKind::UnknownFunction,
        ErrorKind::UnknownMethod,
        ErrorKind::UnknownFilter,
        ErrorKind::UnknownTest,
        ErrorKind::UndefinedError,
    ];
    if unknown.contains(&e.kind()) {
        msg.push_str(
            " (sluice supports dbt's config, ref, source, this, is_incremental and its own \
             new_rows; macros and packages are not supported)",
        );
    }
    msg
}

fn add_functions(
    env: &mut Environment<'_>,
    catalog: &Catalog,
    mode: Mode,
    found: &Arc<Mutex<Rendered>>,
) {
    let lock = |f: &Arc<Mutex<Rendered>>| {
        let f = f.clone();
        move |g: &mut dyn FnMut(&mut Rendered)| {
            g(&mut f.lock().unwrap_or_else(PoisonError::into_inner))
        }
    };

    let with = lock(found);
    env.add_function(
        "config",
        move |kwargs: Kwargs| -> std::result::Result<String, Error> {
            let mut result = Ok(());
            with(&mut |r: &mut Rendered| {
                for key in kwargs.args() {
                    let value = kwargs.get::<Value>(key).map_err(|e| fail(e.to_string()));
                    let set = value.and_then(|v| {
                        let v = config_value(key, &v)?;
                        r.config.set(key, v).map_err(fail)
                    });
                    if let Err(e) = set {
                        result = Err(e);
                        return;
                    }
                }
            });
            result.map(|()| String::new())
        },
    );

    let (with, cat) = (lock(found), catalog.clone());
    env.add_function(
        "ref",
        move |a: String, b: Option<String>, _kw: Kwargs| -> std::result::Result<Value, Error> {
            if b.is_some() {
                return Err(fail(format!(
                    "ref({a:?}, ...): two-argument ref (a package's model) is not supported"
                )));
            }
            let resolved = cat.resolve_ref(&a).map_err(fail)?;
            let value = match (&resolved, mode) {
                (Resolved::Ephemeral(id), m) if m != Mode::Discover => {
                    let cte = format!("{EPHEMERAL_PREFIX}{id}");
                    relation("", id.as_str(), cte)
                }
                (Resolved::Raw(id), _) => relation(
                    cat.raw_schema.as_str(),
                    id.as_str(),
                    cat.relation(&cat.raw_schema, id),
                ),
                (Resolved::Model(id) | Resolved::Ephemeral(id), _) => relation(
                    cat.model_schema.as_str(),
                    id.as_str(),
                    cat.relation(&cat.model_schema, id),
                ),
            };
            with(&mut |r: &mut Rendered| {
                r.refs.insert(a.clone());
                match &resolved {
                    Resolved::Raw(id) => {
                        r.raw_tables.insert(id.to_string());
                    }
                    Resolved::Ephemeral(id) if !r.ephemerals.contains(&id.to_string()) => {
                        r.ephemerals.push(id.to_string())
                    }
                    _ => {}
                }
            });
            Ok(value)
        },
    );

    let (with, cat) = (lock(found), catalog.clone());
    env.add_function(
        "source",
        move |source: String, table: String| -> std::result::Result<Value, Error> {
            let schema = cat.source_schema(&source).map_err(fail)?;
            let table = Ident::new(&table).map_err(|e| fail(format!("source table: {e}")))?;
            if schema == cat.raw_schema {
                with(&mut |r: &mut Rendered| {
                    r.raw_tables.insert(table.to_string());
                });
            }
            Ok(relation(
                schema.as_str(),
                table.as_str(),
                cat.relation(&schema, &table),
            ))
        },
    );

    env.add_function("is_incremental", move || {
        matches!(mode, Mode::Incremental { .. })
    });

    env.add_function(
        "new_rows",
        move |alias: Option<String>| -> std::result::Result<Value, Error> {
            let Mode::Incremental { watermark } = mode else {
                return Ok(Value::from_safe_string("true".into()));
            };
            let column = match alias {
                Some(a) => {
                    let a = Ident::new(&a).map_err(|e| fail(format!("new_rows alias: {e}")))?;
                    format!("{}.{}", a.quoted(), sluice_core::quote_ident(meta::BATCH))
                }
                None => sluice_core::quote_ident(meta::BATCH),
            };
            Ok(Value::from_safe_string(format!("{column} > {watermark}")))
        },
    );
}

/// A `config()` argument as a [`ConfigValue`].
fn config_value(key: &str, v: &Value) -> std::result::Result<ConfigValue, Error> {
    match v.kind() {
        ValueKind::String | ValueKind::Number | ValueKind::Bool => {
            Ok(ConfigValue::Str(v.to_string()))
        }
        ValueKind::Seq => Ok(ConfigValue::List(
            v.try_iter()?.map(|x| x.to_string()).collect(),
        )),
        // Documentation-only keys may hold maps (meta, docs); their content is irrelevant.
        _ if matches!(key, "meta" | "docs" | "persist_docs") => Ok(ConfigValue::Str(String::new())),
        other => Err(fail(format!(
            "config {key}: a {other} is not a supported value"
        ))),
    }
}

/// The 1-based line of the first `ref('name')` / `ref("name")` in `text`, for error messages.
pub fn line_of_ref(text: &str, name: &str) -> Option<usize> {
    let needles = [format!("'{name}'"), format!("\"{name}\"")];
    text.lines()
        .position(|l| l.contains("ref") && needles.iter().any(|n| l.contains(n.as_str())))
        .map(|i| i + 1)
}
