//! One query over HTTP (`POST /query`, for scripts and agents): the same gate, read-only
//! transaction, limits and metrics as a Postgres client, the result streamed as JSON,
//! CSV or an Arrow IPC stream. The HTTP server itself is the daemon's; this module knows
//! nothing of HTTP beyond the media types.
//!
//! - JSON: `{"columns": [{"name", "type"}], "rows": [[...]], "row_count": n}`, types as
//!   DuckDB names them; numbers and booleans as JSON numbers and booleans, json/LIST/
//!   STRUCT/MAP values as JSON, everything else as the text Postgres clients get. A
//!   failure after rows were sent ends the document with `"error": {"sqlstate",
//!   "message"}` (the document stays valid JSON).
//! - CSV: a header line, then the rows as `COPY ... TO STDOUT (FORMAT csv)` writes them.
//! - Arrow: DuckDB's own batches in the IPC stream format.
//!
//! CSV and Arrow have no place for an error after the first rows: the transfer is cut
//! short instead (no final chunk), which HTTP clients report as an error.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use duckdb::types::Value;
use futures::stream::{self, Stream};
use pgwire::api::portal::Format;
use pgwire::api::Type;
use pgwire::messages::data::DataRow;

use crate::copy::{self, CopyOut};
use crate::gate::{sqlstate, Refusal, Vetted};
use crate::metrics::Outcome;
use crate::pg::types::{fields, Column};
use crate::reader::{Reader, Statement};
use crate::service::Service;

mod catalog;
pub use catalog::catalog;

/// What a client asked the result as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Json,
    Csv,
    Arrow,
}

impl Output {
    /// The output an `Accept` header asks for; JSON when it names none sluice writes
    /// (or is absent). `None` when it names only types sluice cannot write.
    pub fn from_accept(accept: Option<&str>) -> Option<Output> {
        let Some(accept) = accept.filter(|a| !a.trim().is_empty()) else {
            return Some(Output::Json);
        };
        accept
            .split(',')
            .map(|t| t.split(';').next().unwrap_or("").trim().to_lowercase())
            .find_map(|t| match t.as_str() {
                "application/json" | "application/*" | "*/*" => Some(Output::Json),
                "text/csv" | "text/*" => Some(Output::Csv),
                "application/vnd.apache.arrow.stream" => Some(Output::Arrow),
                _ => None,
            })
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Output::Json => "application/json",
            Output::Csv => "text/csv; charset=utf-8",
            Output::Arrow => "application/vnd.apache.arrow.stream",
        }
    }
}

/// A query's result: its columns, and its body as chunks of bytes.
pub struct Answer {
    pub columns: Vec<Column>,
    pub body: std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, Refusal>> + Send>>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

/// Runs `text` (one query, `$1`... bound to `params`) for an HTTP client. Refused
/// (53300) when `max_connections` queries and clients are running already.
pub async fn query(
    service: &Arc<Service>,
    text: &str,
    params: Vec<Value>,
    output: Output,
) -> Result<Answer, Refusal> {
    let started = Instant::now();
    let counted = |r: Result<Answer, Refusal>| {
        if let Err(e) = &r {
            service.metrics.statement(Outcome::of(e), started.elapsed());
        }
        r
    };
    let permit = service.slot()?;
    let reader = Arc::new(service.reader("sql-http".into())?);
    let sql = match one_query(
        reader
            .vet(text, &service.scope, service.limits.statement_timeout)
            .await,
    ) {
        Ok(sql) => sql,
        Err(e) => return counted(Err(e)),
    };
    let scope = &service.scope;
    if let Err(e) = reader.session(scope.search_path.clone(), Vec::new()).await {
        return counted(Err(e));
    }
    let id = reader.new_id();
    if let Some(after) = service.limits.statement_timeout {
        reader.stop_after(id, after);
    }
    let statement = Statement::query(sql, params, Format::UnifiedText);
    let described = match reader.run(id, statement).await {
        Ok(d) => d,
        Err(e) => return counted(Err(e)),
    };
    let columns = described.columns.clone();
    let head = match output {
        Output::Json => json_head(&columns),
        Output::Csv => csv_line(
            &columns
                .iter()
                .map(|c| Some(c.name.as_bytes()))
                .collect::<Vec<_>>(),
        ),
        Output::Arrow => Vec::new(),
    };
    let mut state = Body {
        reader,
        id,
        output,
        columns: columns.clone(),
        arrow: None,
        service: service.clone(),
        started,
        rows: 0,
        done: false,
        _permit: permit,
    };
    if output == Output::Arrow {
        state.arrow = Some(
            arrow::ipc::writer::StreamWriter::try_new(Vec::new(), &described.schema)
                .map_err(|e| internal(&e))?,
        );
    }
    let first = stream::once(async move { Ok(Bytes::from(head)) });
    let rest = stream::unfold(state, |mut state| async move {
        let chunk = state.next().await?;
        Some((chunk, state))
    });
    Ok(Answer {
        columns,
        body: Box::pin(futures::StreamExt::chain(first, rest)),
    })
}

/// The one query of a request: several statements, or a session statement, are refused.
fn one_query(vetted: Result<Vec<Vetted>, Refusal>) -> Result<String, Refusal> {
    let mut vetted = vetted?;
    match (vetted.pop(), vetted.is_empty()) {
        (Some(Vetted::Query(sql)), true) => Ok(sql),
        (None, _) => Err(Refusal {
            sqlstate: sqlstate::SYNTAX,
            message: "the request holds no query".into(),
        }),
        _ => Err(Refusal {
            sqlstate: "0A000",
            message: "one query per request over HTTP (no session statements: each request \
                      is its own read-only transaction)"
                .into(),
        }),
    }
}

/// The state of a result's body.
struct Body {
    reader: Arc<Reader>,
    id: u64,
    output: Output,
    columns: Vec<Column>,
    arrow: Option<arrow::ipc::writer::StreamWriter<Vec<u8>>>,
    service: Arc<Service>,
    started: Instant,
    rows: u64,
    done: bool,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl Body {
    /// The next chunk of the body; `None` after the last.
    async fn next(&mut self) -> Option<Result<Bytes, Refusal>> {
        if self.done {
            return None;
        }
        let chunk = match self.output {
            Output::Arrow => self.next_arrow().await,
            Output::Json | Output::Csv => self.next_text().await,
        };
        match chunk {
            Ok(Some(bytes)) => Some(Ok(bytes)),
            Ok(None) => {
                self.done = true;
                self.service
                    .metrics
                    .statement(Outcome::Ok, self.started.elapsed());
                self.tail(None).map(Ok)
            }
            Err(e) => {
                self.done = true;
                self.service
                    .metrics
                    .statement(Outcome::of(&e), self.started.elapsed());
                match self.tail(Some(&e)) {
                    Some(tail) => Some(Ok(tail)),
                    None => Some(Err(e)),
                }
            }
        }
    }

    async fn next_text(&mut self) -> Result<Option<Bytes>, Refusal> {
        let Some(rows) = self.reader.next(self.id).await? else {
            return Ok(None);
        };
        self.service.metrics.rows_sent(rows.len());
        let mut out = Vec::new();
        for row in &rows {
            match self.output {
                Output::Json => {
                    if self.rows > 0 {
                        out.push(b',');
                    }
                    json_row(&mut out, row, &self.columns);
                }
                _ => out.extend(csv_line(&fields(row))),
            }
            self.rows += 1;
        }
        Ok(Some(Bytes::from(out)))
    }

    async fn next_arrow(&mut self) -> Result<Option<Bytes>, Refusal> {
        let Some(batch) = self.reader.next_batch(self.id).await? else {
            return Ok(None);
        };
        self.service.metrics.rows_sent(batch.num_rows());
        self.rows += batch.num_rows() as u64;
        let writer = self.arrow.as_mut().ok_or_else(|| internal(&"no writer"))?;
        writer.write(&batch).map_err(|e| internal(&e))?;
        Ok(Some(Bytes::from(std::mem::take(writer.get_mut()))))
    }

    /// What ends the body: JSON's closing (with the error, if any), Arrow's end of
    /// stream. `None` for a CSV body, or for an error that only cutting it short can tell.
    fn tail(&mut self, error: Option<&Refusal>) -> Option<Bytes> {
        match (self.output, error) {
            (Output::Json, e) => Some(Bytes::from(json_tail(self.rows, e))),
            (Output::Arrow, None) => {
                let mut writer = self.arrow.take()?;
                writer.finish().ok()?;
                Some(Bytes::from(writer.into_inner().ok()?))
            }
            _ => None,
        }
    }
}

fn json_head(columns: &[Column]) -> Vec<u8> {
    let columns: Vec<serde_json::Value> = columns
        .iter()
        .map(|c| serde_json::json!({"name": c.name, "type": c.duckdb}))
        .collect();
    format!(
        "{{\"columns\":{},\"rows\":[",
        serde_json::Value::from(columns)
    )
    .into_bytes()
}

fn json_tail(rows: u64, error: Option<&Refusal>) -> Vec<u8> {
    let mut out = format!("],\"row_count\":{rows}");
    if let Some(e) = error {
        let error = serde_json::json!({"sqlstate": e.sqlstate, "message": e.message});
        out.push_str(&format!(",\"error\":{error}"));
    }
    out.push_str("}\n");
    out.into_bytes()
}

/// One row as a JSON array, from its Postgres text encoding.
fn json_row(out: &mut Vec<u8>, row: &DataRow, columns: &[Column]) {
    out.push(b'[');
    for (i, (value, column)) in fields(row).into_iter().zip(columns).enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_value(out, value, &column.pg);
    }
    out.push(b']');
}

fn json_value(out: &mut Vec<u8>, value: Option<&[u8]>, pg: &Type) {
    let Some(v) = value else {
        out.extend_from_slice(b"null");
        return;
    };
    let text = String::from_utf8_lossy(v);
    let number = matches!(
        *pg,
        Type::INT2 | Type::INT4 | Type::INT8 | Type::FLOAT4 | Type::FLOAT8 | Type::NUMERIC
    );
    match *pg {
        Type::BOOL => out.extend_from_slice(if v == b"t" { b"true" } else { b"false" }),
        // NaN and the infinities are no JSON numbers: they stay text.
        _ if number && text.parse::<f64>().is_ok_and(f64::is_finite) => out.extend_from_slice(v),
        Type::JSON if serde_json::from_slice::<serde_json::Value>(v).is_ok() => {
            out.extend_from_slice(v)
        }
        _ => out.extend(
            serde_json::Value::from(text.as_ref())
                .to_string()
                .into_bytes(),
        ),
    }
}

fn csv_line(values: &[Option<&[u8]>]) -> Vec<u8> {
    let csv = CopyOut {
        query: String::new(),
        format: copy::CopyFormat::Csv,
        header: false,
        delimiter: ',',
        null: String::new(),
    };
    copy::line(values, &csv)
}

fn internal(e: &dyn std::fmt::Display) -> Refusal {
    Refusal {
        sqlstate: sqlstate::INTERNAL,
        message: format!("encoding the result failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_headers_choose_the_output() {
        assert_eq!(Output::from_accept(None), Some(Output::Json));
        assert_eq!(Output::from_accept(Some("text/csv")), Some(Output::Csv));
        assert_eq!(
            Output::from_accept(Some("application/vnd.apache.arrow.stream, */*;q=0.1")),
            Some(Output::Arrow)
        );
        assert_eq!(Output::from_accept(Some("image/png")), None);
    }

    #[test]
    fn values_become_json_by_their_postgres_type() {
        let cases: [(Option<&[u8]>, Type, &str); 8] = [
            (None, Type::TEXT, "null"),
            (Some(b"t"), Type::BOOL, "true"),
            (Some(b"12.50"), Type::NUMERIC, "12.50"),
            (Some(b"NaN"), Type::FLOAT8, "\"NaN\""),
            (Some(b"-7"), Type::INT8, "-7"),
            (
                Some(b"[1, {\"a\": null}]"),
                Type::JSON,
                "[1, {\"a\": null}]",
            ),
            (Some(b"say \"hi\"\n"), Type::TEXT, "\"say \\\"hi\\\"\\n\""),
            (
                Some(b"2024-02-29 13:14:15"),
                Type::TIMESTAMP,
                "\"2024-02-29 13:14:15\"",
            ),
        ];
        for (value, pg, want) in cases {
            let mut out = Vec::new();
            json_value(&mut out, value, &pg);
            assert_eq!(String::from_utf8(out).unwrap(), want, "{pg}");
        }
    }
}
