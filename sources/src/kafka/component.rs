//! The Kafka source as a source type (see [`crate::component`]).

use std::path::Path;

use sluice_core::{Ident, IdentError, SharedStreams, TableSchema};

use super::{
    consumer::Lake,
    source::{KafkaSetup, KafkaSource},
    KafkaSourceConfig,
};
use crate::{
    component::{resume_failed, Backlog, BuildContext, RunningSource, SourceKind, SourceType},
    SourceContext, SourceError,
};

impl SourceType for KafkaSourceConfig {
    fn kind(&self) -> SourceKind {
        SourceKind::new("kafka", Backlog::Messages)
    }
    fn table_ident(&self, name: &str) -> Result<Ident, IdentError> {
        KafkaSourceConfig::table_ident(self, name)
    }
    fn validate(&self, name: &str) -> Vec<(String, String)> {
        KafkaSourceConfig::validate(self, name)
    }
    fn schema_contract(&self) -> crate::typing::contract::SchemaContract {
        KafkaSourceConfig::schema_contract(self)
    }
    fn declared_schema(&self) -> Option<TableSchema> {
        KafkaSourceConfig::declared_schema(self)
    }
    fn declares_schema(&self) -> bool {
        self.schema.is_some()
    }
    fn resolve_paths(&mut self, _base: &Path) {}
    /// A broker is only reached at run time: unreachable is not a configuration error.
    fn check(&self) -> Vec<(String, String)> {
        Vec::new()
    }
    /// The group's members divide the partitions: a stream is a (topic, partition).
    fn shared_streams(&self) -> Option<SharedStreams> {
        Some(SharedStreams {
            scope: format!("kafka:{}", self.group_id),
            stream_columns: vec![super::provenance::TOPIC, super::provenance::PARTITION],
            position_column: super::provenance::OFFSET,
        })
    }
    fn build(&self, ctx: BuildContext<'_>) -> Result<Box<dyn RunningSource>, SourceError> {
        let setup = KafkaSetup {
            name: ctx.name.into(),
            config: self.clone(),
            table: ctx.table,
            data_schema: ctx.data_schema,
            stored: ctx
                .resume
                .offsets(ctx.name)
                .map_err(|e| resume_failed(ctx.name, e))?,
            chunk_rows: ctx.chunk_rows,
            chunk_bytes: ctx.chunk_bytes,
            lake: ctx
                .shared_ledger
                .zip(self.shared_streams())
                .map(|(ledger, streams)| Lake { ledger, streams }),
        };
        Ok(Box::new(KafkaSource::new(setup, ctx.status)?))
    }
}

impl RunningSource for KafkaSource {
    fn run(self: Box<Self>, ctx: SourceContext) -> Result<(), SourceError> {
        KafkaSource::run(*self, ctx)
    }
}
