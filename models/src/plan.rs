//! The plan: every enabled model rendered once to learn its configuration and refs, ordered
//! so each model comes after what it reads, with the raw tables it depends on.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use sluice_core::Ident;

use crate::{
    config::{Materialized, ModelConfig},
    data_tests::DataTest,
    error::{ModelError, Result},
    project::{Problems, Project},
    render::{self, line_of_ref, Catalog, Mode, EPHEMERAL_PREFIX},
};

/// One model, ready to run.
#[derive(Debug, Clone)]
pub struct ModelPlan {
    pub name: Ident,
    pub path: PathBuf,
    pub text: String,
    pub config: ModelConfig,
    /// Models this one refs directly.
    pub parents: BTreeSet<String>,
    /// Raw tables this model depends on, directly or through its parents.
    pub raw_tables: BTreeSet<String>,
    pub tests: Vec<DataTest>,
}

/// All models in dependency order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub catalog: Catalog,
    pub models: Vec<ModelPlan>,
}

impl Plan {
    /// Reads the model directory and plans it, reporting every problem of both steps.
    pub fn load(
        dir: &std::path::Path,
        model_schema: Ident,
        raw_schema: Ident,
        raw_tables: Option<&BTreeSet<String>>,
    ) -> Result<Plan, Problems> {
        let (project, mut problems) = Project::read(dir)?;
        match Plan::build(&project, model_schema, raw_schema, raw_tables) {
            Ok(plan) if problems.is_empty() => Ok(plan),
            Ok(_) => Err(Problems(problems)),
            Err(Problems(more)) => {
                problems.extend(more);
                Err(Problems(problems))
            }
        }
    }

    /// Renders every model of `project` for discovery and orders them. `raw_tables`, when
    /// given, are the raw tables that exist or that a source feeds: a `ref` to anything
    /// else is an error.
    pub fn build(
        project: &Project,
        model_schema: Ident,
        raw_schema: Ident,
        raw_tables: Option<&BTreeSet<String>>,
    ) -> Result<Plan, Problems> {
        let mut catalog = Catalog {
            model_schema,
            raw_schema,
            models: project
                .files
                .iter()
                .map(|f| (f.name.clone(), None))
                .collect(),
            sources: project.sources.clone(),
        };
        let mut problems = Vec::new();
        let mut found = BTreeMap::new();
        for f in &project.files {
            let rendered = render::render(&f.path, &f.name, &f.text, &catalog, Mode::Discover);
            let config = rendered.and_then(|r| {
                let mut layer = f.layer.clone();
                layer.overlay(&r.config);
                let config = layer.resolve().map_err(|m| {
                    let line = f
                        .text
                        .lines()
                        .position(|l| l.contains("config("))
                        .map(|i| i + 1);
                    ModelError::invalid(&f.path, line, m)
                })?;
                Ok((config, r))
            });
            match config {
                Ok((config, r)) if config.enabled => {
                    found.insert(f.name.clone(), (f, config, r));
                }
                Ok(_) => {}
                Err(e) => problems.push(e),
            }
        }
        catalog.models = found
            .iter()
            .map(|(name, (_, c, _))| (name.clone(), Some(c.materialized)))
            .collect();
        let mut models = BTreeMap::new();
        for (name, (f, config, r)) in &found {
            let mut parents = BTreeSet::new();
            for reference in &r.refs {
                let line = line_of_ref(&f.text, reference);
                if found.contains_key(reference) {
                    parents.insert(reference.clone());
                } else if project.files.iter().any(|x| &x.name == reference) {
                    problems.push(ModelError::invalid(
                        &f.path,
                        line,
                        format!("ref({reference:?}): that model is disabled or invalid"),
                    ));
                } else if raw_tables.is_some_and(|known| !known.contains(reference)) {
                    problems.push(ModelError::invalid(
                        &f.path,
                        line,
                        format!("ref({reference:?}): no model and no raw table has that name"),
                    ));
                }
            }
            let tests = project
                .tests
                .iter()
                .filter(|t| &t.model == name)
                .cloned()
                .collect();
            models.insert(
                name.clone(),
                ModelPlan {
                    name: Ident::new(name)
                        .map_err(|e| ModelError::invalid(&f.path, None, e.to_string()))?,
                    path: f.path.clone(),
                    text: f.text.clone(),
                    config: config.clone(),
                    parents,
                    raw_tables: r
                        .raw_tables
                        .iter()
                        .filter(|t| !found.contains_key(*t))
                        .cloned()
                        .collect(),
                    tests,
                },
            );
        }
        let ordered = match order(&models) {
            Ok(o) => o,
            Err(e) => {
                problems.push(e);
                Vec::new()
            }
        };
        if !problems.is_empty() {
            return Err(Problems(problems));
        }
        let mut plan = Plan {
            catalog,
            models: Vec::new(),
        };
        for name in ordered {
            let mut m = models
                .remove(&name)
                .expect("ordered names come from the map");
            for p in &m.parents {
                let upstream = plan
                    .get(p)
                    .map(|p| p.raw_tables.clone())
                    .unwrap_or_default();
                m.raw_tables.extend(upstream);
            }
            plan.models.push(m);
        }
        Ok(plan)
    }

    pub fn get(&self, name: &str) -> Option<&ModelPlan> {
        self.models.iter().find(|m| m.name.as_str() == name)
    }

    /// Models that are built in the database (every kind but ephemeral).
    pub fn built(&self) -> impl Iterator<Item = &ModelPlan> {
        self.models
            .iter()
            .filter(|m| m.config.materialized != Materialized::Ephemeral)
    }

    /// Whether `name` depends, directly or not, on `ancestor`.
    pub fn depends_on(&self, name: &str, ancestor: &str) -> bool {
        let Some(m) = self.get(name) else {
            return false;
        };
        m.parents
            .iter()
            .any(|p| p == ancestor || self.depends_on(p, ancestor))
    }

    /// The SQL of `model` in `mode`, with ephemeral models inlined as CTEs.
    pub fn sql(&self, model: &ModelPlan, mode: Mode) -> Result<String> {
        let body = render::render(
            &model.path,
            model.name.as_str(),
            &model.text,
            &self.catalog,
            mode,
        )?;
        let mut ctes = Vec::new();
        let mut seen = BTreeSet::new();
        self.inline(&body.ephemerals, &mut ctes, &mut seen)?;
        let sql = trim_statement(&body.sql);
        if ctes.is_empty() {
            return Ok(sql.to_string());
        }
        Ok(format!(
            "WITH {}\nSELECT * FROM (\n{sql}\n) AS {}",
            ctes.join(",\n"),
            model.name.quoted()
        ))
    }

    /// Renders ephemeral models (their own ephemerals first) as `name AS (sql)` CTEs.
    fn inline(
        &self,
        names: &[String],
        ctes: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> Result<()> {
        for name in names {
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(m) = self.get(name) else { continue };
            let r = render::render(&m.path, name, &m.text, &self.catalog, Mode::Full)?;
            self.inline(&r.ephemerals, ctes, seen)?;
            ctes.push(format!(
                "{EPHEMERAL_PREFIX}{name} AS (\n{}\n)",
                trim_statement(&r.sql)
            ));
        }
        Ok(())
    }
}

/// The statement without trailing whitespace and semicolons, so it can be wrapped.
fn trim_statement(sql: &str) -> &str {
    sql.trim_end_matches(|c: char| c.is_whitespace() || c == ';')
}

/// Parents before children; a cycle is an error naming its models and the ref closing it.
fn order(models: &BTreeMap<String, ModelPlan>) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut state: BTreeMap<&str, bool> = BTreeMap::new(); // false = visiting, true = done
    fn visit<'a>(
        name: &'a str,
        models: &'a BTreeMap<String, ModelPlan>,
        state: &mut BTreeMap<&'a str, bool>,
        stack: &mut Vec<&'a str>,
        out: &mut Vec<String>,
    ) -> Result<()> {
        match state.get(name) {
            Some(true) => return Ok(()),
            Some(false) => {
                let start = stack.iter().position(|s| *s == name).unwrap_or(0);
                let mut cycle: Vec<&str> = stack[start..].to_vec();
                cycle.push(name);
                let closing = models.get(*stack.last().unwrap_or(&name));
                return Err(ModelError::invalid(
                    closing.map(|m| m.path.clone()).unwrap_or_default(),
                    closing.and_then(|m| line_of_ref(&m.text, name)),
                    format!("ref cycle: {}", cycle.join(" -> ")),
                ));
            }
            None => {}
        }
        state.insert(name, false);
        stack.push(name);
        if let Some(m) = models.get(name) {
            for p in &m.parents {
                visit(p, models, state, stack, out)?;
            }
        }
        stack.pop();
        state.insert(name, true);
        out.push(name.to_string());
        Ok(())
    }
    for name in models.keys() {
        visit(name, models, &mut state, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}
