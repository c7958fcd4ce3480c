//! Reading one complete file: sniffing it, mapping its header onto the table (inferring
//! the table's schema from the first file when none is declared), and sending its chunks
//! to the committer. A file that is not CSV text is recorded as quarantined instead.

use std::{fs::File, io::Read, path::Path, sync::Arc};

use arrow::record_batch::RecordBatch;
use sluice_core::{Chunk, FileHash, FileProgress, FileRecord, FileStatus, Position, TableSchema};
use tracing::{debug, error, info, warn};

use super::{raw_schema, stat, CsvDirSource, InFlight};
use crate::{
    csv_dir::{
        infer,
        reader::{read_header, sample, FileReader, Header, Layout},
        sniff::{not_text_reason, SNIFF_BYTES},
    },
    SourceContext, SourceEvent,
};

impl CsvDirSource {
    pub(super) fn read_file(
        &mut self,
        path: &Path,
        real: &Path,
        name: &str,
        hash: FileHash,
        resume: Option<FileRecord>,
        ctx: &SourceContext,
    ) {
        let result = self.read_chunks(path, real, name, &hash, resume, ctx);
        if let Err(e) = result {
            error!(source = %self.setup.name, file = %name, error = %e,
                "error reading file; what was read is kept, the rest is retried when the file changes or on restart");
            self.abandon(&hash);
            if let Some(sig) = stat(path) {
                self.settled.insert(path.to_path_buf(), sig);
            }
        }
    }

    pub(super) fn read_chunks(
        &mut self,
        path: &Path,
        real: &Path,
        name: &str,
        hash: &FileHash,
        resume: Option<FileRecord>,
        ctx: &SourceContext,
    ) -> std::io::Result<()> {
        if let Some(reason) = sniff(real)? {
            {
                self.quarantine(path, name, hash, reason, ctx);
                return Ok(());
            };
        }
        let header = match read_header(real, &self.opts)? {
            Ok(h) => h,
            Err(reason) => {
                self.quarantine(path, name, hash, reason, ctx);
                return Ok(());
            }
        };
        let data = match self.table_schema(real, name, &header)? {
            Ok(d) => d,
            Err(reason) => {
                self.quarantine(path, name, hash, reason, ctx);
                return Ok(());
            }
        };
        let layout = match Layout::for_file(data.clone(), &header) {
            Ok(l) => l,
            Err(reason) => {
                self.quarantine(path, name, hash, reason, ctx);
                return Ok(());
            }
        };
        let acked_offset = resume.as_ref().map_or(0, |r| r.next_offset);
        let (offset, line) = match resume {
            Some(r) if r.next_offset > header.data_offset => (r.next_offset, r.next_line),
            _ => (header.data_offset, header.data_line),
        };
        let source = &*self.setup.name;
        let mut reader =
            FileReader::open(real, name, source, layout, self.opts.clone(), offset, line)?;
        let raw_schema = Arc::new(raw_schema(&data));
        self.track_in_flight(hash, path, name, acked_offset);
        loop {
            let chunk = reader.next_chunk()?;
            let status = match chunk.done {
                true => FileStatus::Ingested,
                false => FileStatus::Partial,
            };
            let progress = FileProgress {
                hash: hash.clone(),
                name: name.to_string(),
                next_offset: chunk.next_offset,
                next_line: chunk.next_line,
                status,
            };
            self.send(
                ctx,
                raw_schema.clone(),
                chunk.rows,
                chunk.dead_letters,
                progress,
            );
            if chunk.done || ctx.stop.is_cancelled() {
                return Ok(());
            }
            self.take_acks(ctx);
        }
    }

    /// The table's data columns: known, or inferred from this file (then kept).
    pub(super) fn table_schema(
        &mut self,
        real: &Path,
        name: &str,
        header: &Header,
    ) -> std::io::Result<std::result::Result<Arc<TableSchema>, String>> {
        if let Some(data) = &self.data {
            return Ok(Ok(data.clone()));
        }
        if header.fields == 0 {
            return Ok(Err(
                "the file is empty, so no schema can be inferred from it".into(),
            ));
        }
        let names = match infer::column_names(header.names.as_deref(), header.fields) {
            Ok(n) => n,
            Err(reason) => return Ok(Err(reason)),
        };
        let samples = sample(real, &self.opts, header, infer::SAMPLE_RECORDS)?;
        let schema = Arc::new(infer::infer(names, &samples));
        let described: Vec<String> = schema
            .columns
            .iter()
            .map(|c| format!("{} {}", c.name, c.ty))
            .collect();
        info!(source = %self.setup.name, table = %self.setup.table, file = %name,
            columns = %described.join(", "), "inferred the table's schema");
        self.data = Some(schema.clone());
        Ok(Ok(schema))
    }

    pub(super) fn send(
        &mut self,
        ctx: &SourceContext,
        raw_schema: Arc<TableSchema>,
        rows: RecordBatch,
        dead_letters: Vec<sluice_core::DeadLetter>,
        progress: FileProgress,
    ) {
        if let Some(f) = self.in_flight.get_mut(&progress.hash) {
            f.unacked += 1;
        }
        let chunk = Chunk {
            source: self.setup.name.clone(),
            table: self.setup.table.clone(),
            raw_schema,
            rows,
            dead_letters,
            position: Position::File(progress),
        };
        self.sent_since_drained = true;
        if ctx.events.send(SourceEvent::Chunk(chunk)).is_err() {
            // The committer is gone (shutting down after an error): nothing more to do.
            debug!(source = %self.setup.name, "committer hung up");
        }
    }

    /// Records the file as quarantined; it is moved once that is committed.
    pub(super) fn quarantine(
        &mut self,
        path: &Path,
        name: &str,
        hash: &FileHash,
        reason: String,
        ctx: &SourceContext,
    ) {
        warn!(source = %self.setup.name, file = %name, %reason, "quarantining file");
        self.track_in_flight(hash, path, name, 0);
        let empty = Arc::new(TableSchema::default());
        let rows = RecordBatch::new_empty(empty.arrow_schema());
        let progress = FileProgress {
            hash: hash.clone(),
            name: name.to_string(),
            next_offset: 0,
            next_line: 1,
            status: FileStatus::Quarantined { reason },
        };
        self.send(ctx, empty, rows, Vec::new(), progress);
    }

    /// Remembers that chunks of `hash` are being sent, from file offset `from`, until its
    /// final one is acknowledged.
    pub(super) fn track_in_flight(&mut self, hash: &FileHash, path: &Path, name: &str, from: u64) {
        let flight = InFlight {
            path: path.to_path_buf(),
            name: name.to_string(),
            unacked: 0,
            acked_offset: from,
            abandoned: false,
        };
        self.in_flight.insert(hash.clone(), flight);
    }
}

/// Reads the start of a file and says why it is not CSV text, if it is not.
fn sniff(path: &Path) -> std::io::Result<Option<String>> {
    let mut head = Vec::with_capacity(SNIFF_BYTES);
    File::open(path)?
        .take(SNIFF_BYTES as u64 + 1)
        .read_to_end(&mut head)?;
    let complete = head.len() <= SNIFF_BYTES;
    head.truncate(SNIFF_BYTES);
    Ok(not_text_reason(&head, complete))
}
