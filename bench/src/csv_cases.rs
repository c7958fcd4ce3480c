//! `sluice-bench csv-cases`: each CSV bad-input case through the real `sluice run --once`
//! and through DuckDB's `read_csv` as sluice would call it inside a commit
//! ([`crate::csv_duckdb_reader::read_csv_call`]), side by side: which rows land (and the
//! line each is recorded at), which are rejected (at which line), which files are refused.
//! Not timed: it says which of sluice's CSV guarantees (README, *CSV sources in detail*)
//! the other reader keeps.

use std::path::Path;

use anyhow::Context;

use crate::csv_duckdb_reader::read_csv_call;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sluice binary (default: next to this one).
    #[arg(long)]
    sluice: Option<std::path::PathBuf>,
}

/// The table both readers load: two VARCHAR columns side by side, so that columns taken
/// by position rather than by header name can land in each other's place unnoticed.
const SCHEMA: [(&str, &str); 4] = [
    ("id", "BIGINT"),
    ("name", "VARCHAR"),
    ("city", "VARCHAR"),
    ("amount", "DOUBLE"),
];

struct Case {
    name: &'static str,
    bytes: &'static [u8],
}

const CASES: [Case; 9] = [
    Case {
        name: "short, long, unparseable rows",
        bytes: b"id,name,city,amount\n1,a,x,1.5\n2,b,y\n3,c,z,2.5,9\n4,d,w,notanumber\n5,e,v,3.5\n",
    },
    Case {
        name: "quoted line break, then a bad row",
        bytes: b"id,name,city,amount\n1,\"two\nlines\",x,1.5\n2,b,y,oops\n3,c,z,2.5\n",
    },
    Case {
        name: "blank line, then a bad row",
        bytes: b"id,name,city,amount\n1,a,x,1.5\n\n2,b,y,oops\n3,c,z,2.5\n",
    },
    Case {
        name: "field not UTF-8",
        bytes: b"id,name,city,amount\n1,\xff\xfe,x,1.0\n2,b,y,2.0\n",
    },
    Case {
        name: "header: columns in another order",
        bytes: b"id,city,name,amount\n1,Paris,alice,1.0\n",
    },
    Case {
        name: "header: a column the table lacks",
        bytes: b"id,name,city,amount,extra\n1,a,x,1.0,z\n",
    },
    Case {
        name: "header: a column missing",
        bytes: b"id,name,amount\n1,a,1.0\n",
    },
    Case {
        name: "not text (binary)",
        bytes: b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x03\x00>\x00\x01\x00\x00\x00\xff\xfe\xfd\n\x00\x10\x00\x00\n",
    },
    Case {
        name: "last line without a line end",
        bytes: b"id,name,city,amount\n1,a,x,1.0\n2,b,y,2.0",
    },
];

/// What one reader made of one file.
struct Outcome {
    /// Good rows: `line:name/city` each (line as recorded; `-` where none is).
    rows: String,
    /// Rejected rows (`line: error`), or why the whole file was refused.
    rejected: String,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let sluice = crate::daemon::sluice_binary(args.sluice.as_deref())?;
    let temp = crate::csv_bench::tempfile_dir(None)?;
    println!("| case | sluice: rows (line:name/city) | sluice: dead letters / refused | read_csv: rows | read_csv: rejects / refused |");
    println!("|---|---|---|---|---|");
    for (i, case) in CASES.iter().enumerate() {
        let dir = temp.path().join(format!("case-{i}"));
        let inbox = dir.join("inbox");
        std::fs::create_dir_all(&inbox)?;
        let file = inbox.join("drop.csv");
        std::fs::write(&file, case.bytes)?;
        let duck = through_read_csv(&file)?;
        let ours = through_sluice(&sluice, &dir, &inbox)
            .with_context(|| format!("sluice on case {:?}", case.name))?;
        println!(
            "| {} | {} | {} | {} | {} |",
            case.name, ours.rows, ours.rejected, duck.rows, duck.rejected
        );
    }
    Ok(())
}

fn through_read_csv(file: &Path) -> anyhow::Result<Outcome> {
    let conn = duckdb::Connection::open_in_memory()?;
    let sql = format!(
        "CREATE TABLE t AS SELECT *, row_number() OVER () + 1 AS line FROM {}",
        read_csv_call(file, &SCHEMA)
    );
    if let Err(e) = conn.execute_batch(&sql) {
        let message = e.to_string();
        let first = message.lines().nth(1).unwrap_or(&message);
        return Ok(Outcome {
            rows: "0".into(),
            rejected: format!("refused: {}", first.replace('|', "/")),
        });
    }
    Ok(Outcome {
        rows: listed(
            &conn,
            "SELECT string_agg('~' || line || ':' || coalesce(name, 'NULL') || '/' || coalesce(city, 'NULL'), ' ' \
             ORDER BY line) FROM t",
        )?,
        // store_rejects creates its tables when the scan starts, rejects or not.
        rejected: listed(
            &conn,
            "SELECT string_agg(line || ': ' || error_type, '; ' ORDER BY line) FROM sluice_rejects",
        )?,
    })
}

fn through_sluice(sluice: &Path, dir: &Path, inbox: &Path) -> anyhow::Result<Outcome> {
    let data = dir.join("data");
    let config = dir.join("sluice.toml");
    std::fs::write(
        &config,
        crate::csv_bench::csv_config(&data, "", "cases", inbox, &SCHEMA),
    )?;
    crate::csv_bench::run_sluice(sluice, &config)?;
    let conn = duckdb::Connection::open(data.join("warehouse.duckdb"))?;
    let has_table: bool = conn.query_row(
        "SELECT count(*) > 0 FROM duckdb_tables() WHERE schema_name = 'raw' AND table_name = 'cases'",
        [],
        |r| r.get(0),
    )?;
    // A file refused before any row was committed leaves no raw table.
    let rows = if has_table {
        listed(
            &conn,
            "SELECT string_agg(_sluice_line || ':' || coalesce(name, 'NULL') || '/' || \
             coalesce(city, 'NULL'), ' ' ORDER BY _sluice_line) FROM raw.cases",
        )?
    } else {
        "-".into()
    };
    let dead = listed(
        &conn,
        "SELECT string_agg(line || ': ' || left(error, 70), '; ' ORDER BY line) \
         FROM _sluice.dead_letters",
    )?;
    let refused = listed(
        &conn,
        "SELECT string_agg('refused: ' || reason, '; ') FROM _sluice.files \
         WHERE status = 'quarantined'",
    )?;
    Ok(Outcome {
        rows,
        rejected: [dead, refused]
            .into_iter()
            .filter(|s| s != "-")
            .collect::<Vec<_>>()
            .join("; "),
    })
}

/// The one text value `sql` returns, `-` for NULL (nothing to list).
fn listed(conn: &duckdb::Connection, sql: &str) -> anyhow::Result<String> {
    let value: Option<String> = conn.query_row(sql, [], |r| r.get(0))?;
    Ok(value.unwrap_or_else(|| "-".into()).replace('\n', "\\n"))
}
