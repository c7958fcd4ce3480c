//! Models as `/status` shows them: the outcome of each model's latest run.

use std::{collections::BTreeMap, sync::Mutex};

use chrono::{DateTime, Utc};
use serde::Serialize;
use sluice_models::{ModelReport, Outcome, Plan, StoredReport, TestResult};

/// One data test's latest result.
#[derive(Debug, Clone, Serialize)]
pub struct TestStatus {
    pub name: String,
    pub severity: &'static str,
    /// Rows that break the test; 0 when it passes.
    pub failures: u64,
    /// Why the test could not run, if it could not.
    pub error: Option<String>,
}

/// How a model stands, shown in `/status` as `pending`, `ok`, `failing` or
/// `waiting for <upstream>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelHealth {
    /// Not built yet (nor ever, as far as the database says).
    Pending,
    /// Its last run built it.
    Ok,
    /// Its last run failed.
    Failing,
    /// It waits for a failing upstream model.
    Waiting { on: String },
}

impl std::fmt::Display for ModelHealth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelHealth::Pending => f.write_str("pending"),
            ModelHealth::Ok => f.write_str("ok"),
            ModelHealth::Failing => f.write_str("failing"),
            ModelHealth::Waiting { on } => write!(f, "waiting for {on}"),
        }
    }
}

impl Serialize for ModelHealth {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One model's latest state.
#[derive(Debug, Clone, Serialize)]
pub struct ModelStatus {
    pub materialized: String,
    pub state: ModelHealth,
    pub last_run: Option<DateTime<Utc>>,
    pub watermark: i64,
    /// Rows written by the last successful run.
    pub rows: u64,
    pub duration_ms: u64,
    pub runs: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    /// Commit time of the newest batch the model has consumed.
    pub newest_consumed: Option<DateTime<Utc>>,
    pub tests: Vec<TestStatus>,
}

/// Every model of the current plan.
#[derive(Debug, Default)]
pub struct ModelsHealth(Mutex<BTreeMap<String, ModelStatus>>);

impl ModelsHealth {
    /// Starts (or restarts, after a reload) tracking the models of `plan`, keeping what is
    /// known of models that remain.
    pub fn set_plan(&self, plan: &Plan) {
        let Ok(mut models) = self.0.lock() else {
            return;
        };
        let old = std::mem::take(&mut *models);
        for m in plan.built() {
            let name = m.name.to_string();
            let status = old.get(&name).cloned().unwrap_or(ModelStatus {
                materialized: m.config.materialized.to_string(),
                state: ModelHealth::Pending,
                last_run: None,
                watermark: 0,
                rows: 0,
                duration_ms: 0,
                runs: 0,
                failures: 0,
                last_error: None,
                newest_consumed: None,
                tests: Vec::new(),
            });
            models.insert(name, status);
        }
    }

    /// What the database keeps of models that have not run in this process yet (after a
    /// restart): their last successful build, watermark, freshness and test results.
    pub fn restore(&self, stored: &[StoredReport]) {
        let Ok(mut models) = self.0.lock() else {
            return;
        };
        for r in stored {
            let Some(s) = models
                .get_mut(&r.model)
                .filter(|s| s.state == ModelHealth::Pending)
            else {
                continue;
            };
            s.state = ModelHealth::Ok;
            s.last_run = DateTime::from_timestamp_micros(r.build.at_us);
            s.watermark = r.build.watermark;
            s.rows = r.build.rows;
            s.duration_ms = r.build.duration_ms;
            s.newest_consumed = r
                .newest_consumed_us
                .and_then(DateTime::from_timestamp_micros);
            s.tests = tests(&r.tests);
        }
    }

    pub fn record(&self, reports: &[ModelReport]) {
        let Ok(mut models) = self.0.lock() else {
            return;
        };
        for r in reports {
            let Some(s) = models.get_mut(&r.model) else {
                continue;
            };
            s.watermark = r.watermark;
            s.newest_consumed = r
                .newest_consumed_us
                .and_then(DateTime::from_timestamp_micros);
            match &r.outcome {
                Outcome::Built { rows, .. } => {
                    s.state = ModelHealth::Ok;
                    s.last_run = Some(Utc::now());
                    s.rows = *rows;
                    s.duration_ms = r.duration.as_millis() as u64;
                    s.runs += 1;
                    s.last_error = None;
                    s.tests = tests(&r.tests);
                }
                Outcome::Failed { error } => {
                    s.state = ModelHealth::Failing;
                    s.failures += 1;
                    s.last_error = Some(error.clone());
                }
                Outcome::Waiting { on } => s.state = ModelHealth::Waiting { on: on.clone() },
            }
        }
    }

    pub fn snapshot(&self) -> BTreeMap<String, ModelStatus> {
        self.0.lock().map(|m| m.clone()).unwrap_or_default()
    }
}

fn tests(results: &[TestResult]) -> Vec<TestStatus> {
    results
        .iter()
        .map(|t| TestStatus {
            name: t.name.clone(),
            severity: t.severity.as_str(),
            failures: t.failures,
            error: t.error.clone(),
        })
        .collect()
}
