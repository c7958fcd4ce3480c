//! The CSV directory source as a source type (see [`crate::component`]).

use std::path::{Path, PathBuf};

use sluice_core::{Ident, IdentError, TableSchema};

use super::{CsvDirSetup, CsvDirSource, CsvSourceConfig};
use crate::{
    component::{resume_failed, Backlog, BuildContext, RunningSource, SourceKind, SourceType},
    SourceContext, SourceError,
};

impl SourceType for CsvSourceConfig {
    fn kind(&self) -> SourceKind {
        SourceKind::new("csv", Backlog::Files)
    }
    fn table_ident(&self, name: &str) -> Result<Ident, IdentError> {
        CsvSourceConfig::table_ident(self, name)
    }
    fn validate(&self, name: &str) -> Vec<(String, String)> {
        CsvSourceConfig::validate(self, name)
    }
    fn schema_contract(&self) -> crate::typing::contract::SchemaContract {
        self.schema_contract
    }
    fn declared_schema(&self) -> Option<TableSchema> {
        CsvSourceConfig::declared_schema(self)
    }
    fn declares_schema(&self) -> bool {
        self.schema.is_some()
    }
    fn resolve_paths(&mut self, base: &Path) {
        self.path = base.join(&self.path);
    }
    fn check(&self) -> Vec<(String, String)> {
        if self.path.is_dir() {
            return Vec::new();
        }
        vec![(
            "path".into(),
            format!(
                "{} does not exist or is not a directory",
                self.path.display()
            ),
        )]
    }
    fn build(&self, ctx: BuildContext<'_>) -> Result<Box<dyn RunningSource>, SourceError> {
        let dir = |kind: &str| -> PathBuf { ctx.data_dir.join(kind).join(ctx.name) };
        let setup = CsvDirSetup {
            name: ctx.name.into(),
            config: self.clone(),
            table: ctx.table,
            data_schema: ctx.data_schema,
            ledger: ctx
                .resume
                .files(ctx.name)
                .map_err(|e| resume_failed(ctx.name, e))?,
            archive_dir: dir("archive"),
            quarantine_dir: dir("quarantine"),
            chunk_rows: ctx.chunk_rows,
            chunk_bytes: ctx.chunk_bytes,
        };
        Ok(Box::new(CsvDirSource::new(setup)?))
    }
}

impl RunningSource for CsvDirSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        CsvDirSource::run(*self, ctx)
    }
}
