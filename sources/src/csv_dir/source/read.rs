//! Reading one complete file: sniffing it, mapping its header onto the table (inferring
//! the table's schema from the first file when none is declared), and sending its chunks
//! to the committer. A file that is not CSV text (or has a header that does not fit, or
//! cannot be read for a reason that retrying does not change) is recorded as quarantined
//! instead; one that cannot be opened or read for now is tried again.

use std::{fs::File, io::Read, path::Path, sync::Arc};

use arrow::record_batch::RecordBatch;
use sluice_core::{
    text, Chunk, Column, ColumnType, FileHash, FileId, FileProgress, FileRecord, FileStatus,
    Position, TableSchema,
};
use tracing::{debug, error, info, warn};

use super::{raw_columns, unreadable::Failure, CsvDirSource, Found, InFlight};
use crate::{
    csv_dir::{
        reader::{
            read_header, sample, FileReader, Header, HeaderChanged, Layout, ScanPoint, Start,
        },
        sniff::{not_text_reason, SNIFF_BYTES},
    },
    typing::{contract::Refusal, declared::check_column_name, infer},
    SourceContext, SourceEvent,
};

/// Where reading a file resumes: its record, the scan's state at the record's end, and
/// the bytes to skip there (a line end after a last line committed without one).
pub(super) type Resume = (FileRecord, ScanPoint, u64);

impl CsvDirSource {
    pub(super) fn read_file(
        &mut self,
        found: &Found<'_>,
        id: FileId,
        resume: Option<Resume>,
        ctx: &SourceContext,
    ) {
        let result = self.read_chunks(found, &id, resume, ctx);
        if let Some(changed) = result
            .as_ref()
            .err()
            .and_then(|e| e.get_ref()?.downcast_ref::<HeaderChanged>())
        {
            info!(source = %self.setup.name, file = %found.name, "{changed}; looking at the file again once it settles");
            self.abandon(&id);
            self.settler.touch(found.path, std::time::Instant::now());
            return;
        }
        let Err(e) = result else {
            return;
        };
        match Failure::of(&e) {
            Failure::Gone | Failure::MayPass => {
                // What was sent still commits; the next attempt resumes after it.
                self.abandon(&id);
                self.cannot_read(found.path, found.name, found.sig, &e, ctx);
            }
            Failure::Lasting => {
                // After the chunks already sent: their rows stay committed, and so does
                // the record of how far they reach (see `quarantine`).
                let reason = format!("cannot be read: {e}");
                error!(source = %self.setup.name, file = %found.name,
                    error = %text::bounded(&reason, text::TEXT_LIMIT), "cannot read the file");
                self.quarantine(found, id, reason, ctx);
            }
        }
    }

    pub(super) fn read_chunks(
        &mut self,
        found: &Found<'_>,
        id: &FileId,
        resume: Option<Resume>,
        ctx: &SourceContext,
    ) -> std::io::Result<()> {
        let (real, name) = (found.real, found.name);
        // Tracked from the start, with where the ledger's record of a resumed file ends: a
        // quarantine from here on must leave that record as it is.
        let recorded = resume
            .as_ref()
            .map(|(record, ..)| (record.next_offset, record.next_line));
        self.track_in_flight(id, found, recorded);
        if let Some(reason) = sniff(real)? {
            self.quarantine(found, id.clone(), reason, ctx);
            return Ok(());
        }
        let header = match read_header(real, &self.opts)? {
            Ok(h) => h,
            Err(reason) => {
                self.quarantine(found, id.clone(), reason, ctx);
                return Ok(());
            }
        };
        let data = match self.table_schema(real, name, &header)? {
            Ok(d) => d,
            Err(reason) => {
                self.quarantine(found, id.clone(), reason, ctx);
                return Ok(());
            }
        };
        let max = self.opts.contract.max_columns;
        if let Some(n) = header.names.as_ref().map(Vec::len).filter(|n| *n > max) {
            let reason = format!(
                "the header has {n} columns, more than schema_contract.max_columns ({max})"
            );
            self.quarantine(found, id.clone(), reason, ctx);
            return Ok(());
        }
        let layout = match Layout::for_file(data, &header) {
            Ok(l) => self.admit(real, name, &header, l)?,
            Err(reason) => {
                self.quarantine(found, id.clone(), reason, ctx);
                return Ok(());
            }
        };
        let start = start_of(&header, resume, found.limit);
        let source = &*self.setup.name;
        let mut reader = FileReader::open(real, name, source, layout, self.opts.clone(), start)?;
        let mut typed_as = reader.data().clone();
        let mut chunk_columns = Arc::new(raw_columns(&typed_as));
        loop {
            let chunk = reader.next_chunk()?;
            if !Arc::ptr_eq(reader.data(), &typed_as) {
                // A value widened a column: this chunk and the files after are typed so.
                typed_as = reader.data().clone();
                self.data = Some(typed_as.clone());
                chunk_columns = Arc::new(raw_columns(&typed_as));
            }
            let table = self.setup.table.as_str();
            self.refusals
                .report(&self.setup.name, table, &ctx.status, &chunk.refused);
            let status = match chunk.done {
                true => FileStatus::Ingested,
                false => FileStatus::Partial,
            };
            let progress = FileProgress {
                id: id.clone(),
                hash: chunk.hash,
                name: name.to_string(),
                next_offset: chunk.next_offset,
                next_line: chunk.next_line,
                status,
            };
            self.send(
                ctx,
                chunk_columns.clone(),
                chunk.rows,
                chunk.dead_letters,
                progress,
            );
            if chunk.done || ctx.stop.is_cancelled() {
                return Ok(());
            }
            self.take_acks(ctx);
            if !self.in_flight.contains_key(id) {
                // Refused by the committer: its quarantine is sent, no more of it is read
                // (see `on_refused`).
                return Ok(());
            }
        }
    }

    /// Settles the header fields the table lacks by the schema contract: new columns
    /// (typed from a sample of this file, as inference types them; the table gains them
    /// with the first chunk committed), or refusals the reader applies value by value.
    fn admit(
        &mut self,
        real: &Path,
        name: &str,
        header: &Header,
        mut layout: Layout,
    ) -> std::io::Result<Layout> {
        if layout.unknown.is_empty() {
            return Ok(layout);
        }
        let contract = self.opts.contract;
        let mut data = (*layout.data).clone();
        let base = data.len();
        let mut adding = Vec::new();
        for (i, column, fate) in layout.unknown.iter_mut() {
            let decision = match check_column_name(column) {
                Err(_) => Err(Refusal::InvalidName),
                Ok(()) => contract.new_column(base, adding.len()),
            };
            match decision {
                Ok(()) => adding.push((*i, column.clone())),
                Err(why) => *fate = Some(why),
            }
        }
        if adding.is_empty() {
            return Ok(layout);
        }
        let samples = sample(real, &self.opts, header, infer::SAMPLE_RECORDS)?;
        for (i, column) in adding {
            let ty = samples
                .get(i)
                .map_or(ColumnType::Varchar, infer::infer_type);
            info!(source = %self.setup.name, table = %self.setup.table, file = %name,
                column = %text::bounded(&column, 200), r#type = %ty, "the file brings a new column");
            data.columns.push(Column::new(column, ty));
        }
        let data = Arc::new(data);
        self.data = Some(data.clone());
        let mut relaid = Layout::for_file(data, header).map_err(std::io::Error::other)?;
        for u in relaid.unknown.iter_mut() {
            u.2 = layout.unknown.iter().find(|x| x.0 == u.0).and_then(|x| x.2);
        }
        Ok(relaid)
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
        if header.first_too_long {
            return Ok(Err(first_too_long(self.opts.max_record)));
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
        let columns = described.join(", ");
        info!(source = %self.setup.name, table = %self.setup.table, file = %name,
            columns = %text::bounded(&columns, text::TEXT_LIMIT), "inferred the table's schema");
        self.data = Some(schema.clone());
        Ok(Ok(schema))
    }

    pub(super) fn send(
        &mut self,
        ctx: &SourceContext,
        raw_columns: Arc<TableSchema>,
        rows: RecordBatch,
        dead_letters: Vec<sluice_core::DeadLetter>,
        progress: FileProgress,
    ) {
        if let Some(f) = self.in_flight.get_mut(&progress.id) {
            f.unacked += 1;
            if !matches!(progress.status, FileStatus::Quarantined { .. }) {
                f.recorded = Some((progress.next_offset, progress.next_line));
            }
        }
        let chunk = Chunk {
            source: self.setup.name.clone(),
            table: self.setup.table.clone(),
            raw_columns,
            rows,
            dead_letters,
            position: Position::File(progress),
            since: std::time::Instant::now(),
        };
        self.sent_since_drained = true;
        self.records_sent += (chunk.rows.num_rows() + chunk.dead_letters.len()) as u64;
        if ctx.events.send(SourceEvent::Chunk(chunk)).is_err() {
            // The committer is gone (shutting down after an error): nothing more to do.
            debug!(source = %self.setup.name, "committer hung up");
        }
    }

    /// Records the file as quarantined (after any of its chunks already sent); it is moved
    /// once that is committed. The reason is bounded: it may quote the file.
    ///
    /// A file with rows committed under `id` (sent in this pass, or committed before it was
    /// resumed) is quarantined under an id of its own, as a changed file is: `id`'s record
    /// keeps its position and the hash of the bytes committed, so the same name dropped
    /// again is read on after them if it begins with them, and quarantined as changed if
    /// not; either way no committed row is read twice. (Recorded under `id`, the quarantine
    /// would overwrite them: a later file of that name would be new, read from its start.)
    /// The quarantine's own record has the hash of the whole file, so the same content is
    /// quarantined again under any name without being read.
    pub(super) fn quarantine(
        &mut self,
        found: &Found<'_>,
        id: FileId,
        reason: String,
        ctx: &SourceContext,
    ) {
        let (id, reason) = match self.in_flight.get(&id).and_then(|f| f.recorded) {
            None => (id, reason),
            Some((offset, line)) => {
                self.abandon(&id);
                let reason = format!(
                    "{reason}; {offset} bytes of it (lines before {line}) were committed \
                     before, and their rows stay"
                );
                (self.new_file_id(found.name, &found.content), reason)
            }
        };
        if !self.in_flight.contains_key(&id) {
            self.track_in_flight(&id, found, None);
        }
        self.send_quarantine(ctx, id, found.content.clone(), found.name, reason);
    }

    /// Sends the record of file `id` (in flight) as quarantined: `content` is the hash of
    /// the whole file, so that the same content is quarantined again under any name.
    pub(super) fn send_quarantine(
        &mut self,
        ctx: &SourceContext,
        id: FileId,
        content: FileHash,
        name: &str,
        reason: String,
    ) {
        let status = FileStatus::quarantined(reason);
        if let FileStatus::Quarantined { reason } = &status {
            warn!(source = %self.setup.name, file = %name, %reason, "quarantining file");
        }
        let empty = Arc::new(TableSchema::default());
        let rows = RecordBatch::new_empty(empty.arrow_schema());
        let progress = FileProgress {
            id,
            hash: content,
            name: name.to_string(),
            next_offset: 0,
            next_line: 1,
            status,
        };
        self.send(ctx, empty, rows, Vec::new(), progress);
    }

    /// Remembers that chunks of file `id` are being sent until its final one is
    /// acknowledged. `recorded`: where the ledger's record of `id` ends (`next_offset`,
    /// `next_line`), for a file resumed after it; `None` for a file read from its start.
    pub(super) fn track_in_flight(
        &mut self,
        id: &FileId,
        found: &Found<'_>,
        recorded: Option<(u64, u64)>,
    ) {
        let flight = InFlight {
            path: found.path.to_path_buf(),
            name: found.name.to_string(),
            content: found.content.clone(),
            sig: found.sig,
            unacked: 0,
            committed: recorded,
            recorded,
            abandoned: false,
            typed_from: self.data.clone(),
        };
        self.in_flight.insert(id.clone(), flight);
    }
}

/// Where the reader starts: after the header for a new file; where the record's commits
/// ended (past the line end to skip) for one that continues.
fn start_of(header: &Header, resume: Option<Resume>, limit: u64) -> Start {
    let Some((record, point, skip)) = resume else {
        return Start {
            hasher: blake3::Hasher::new(),
            hashed_to: 0,
            offset: header.data_offset,
            line: header.data_line,
            limit,
            expect: header.raw.clone(),
        };
    };
    let (offset, line) = match point.offset + skip {
        o if o > header.data_offset => (o, record.next_line + u64::from(skip > 0)),
        _ => (header.data_offset, header.data_line),
    };
    let unparsed_header = header.raw.get(point.offset as usize..).unwrap_or_default();
    Start {
        hasher: point.hasher,
        hashed_to: point.offset,
        offset,
        line,
        limit,
        expect: unparsed_header.to_vec(),
    }
}

/// Why a file without a header whose first record is longer than `max_line_bytes`
/// cannot give the table its columns (once they are known, that record is a dead letter).
fn first_too_long(max_record: u64) -> String {
    format!(
        "the first record is longer than max_line_bytes ({}), so its columns cannot be \
         counted and the table's schema cannot be inferred from this file",
        bytesize::ByteSize(max_record)
    )
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
