//! Postgres's system catalog as clients read it: `pg_class`, `pg_attribute`, `pg_type`,
//! `pg_namespace` and the tables psql's `\d`, the JDBC driver's `getColumns` (Metabase's
//! sync) and SQLAlchemy's reflection join them with.
//!
//! DuckDB has a `pg_catalog` of its own, but it reports DuckDB's type ids where clients
//! expect Postgres OIDs, lacks columns they select (`relforcerowsecurity`, `attidentity`,
//! `typcollation`, ...) and whole tables (`pg_inherits`, `pg_policy`, ...). sluice does
//! not change it (it belongs to the whole database); it gives each client connection
//! temporary table macros `sluice_pg_<table>()` with Postgres's columns, and the gate
//! renames what a query names (`pg_catalog.pg_class c` or `pg_class c`) to them, by the
//! locations in DuckDB's parse ([`crate::rewrite`]). Macros, not views: a temporary view
//! would show up in `information_schema.tables` beside the warehouse's own.
//!
//! Types are announced with the same OIDs as result columns ([`crate::pg::types`]);
//! a test checks the two mappings agree for every DuckDB type.

use duckdb::Connection;
use pgwire::api::Type;

/// Postgres catalog tables sluice answers itself (the gate renames them to
/// `sluice_pg_<name>()`).
pub const TABLES: &[&str] = &[
    "pg_am",
    "pg_attrdef",
    "pg_attribute",
    "pg_auth_members",
    "pg_class",
    "pg_collation",
    "pg_constraint",
    "pg_database",
    "pg_description",
    "pg_foreign_table",
    "pg_index",
    "pg_inherits",
    "pg_namespace",
    "pg_opclass",
    "pg_partitioned_table",
    "pg_policy",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_rewrite",
    "pg_roles",
    "pg_settings",
    "pg_statistic_ext",
    "pg_trigger",
    "pg_type",
    "pg_user",
];

/// Postgres functions over the catalog that sluice answers itself, as
/// `sluice_<name>` macros (renamed like [`crate::shims`]).
pub const FUNCTIONS: &[&str] = &["format_type"];

/// Whether `name` (lower-case) is one of [`TABLES`].
pub fn answers(name: &str) -> bool {
    TABLES.contains(&name)
}

/// The Postgres types sluice announces: the type, how `format_type` writes it, and its
/// `typcategory`.
const TYPES: &[(Type, &str, char)] = &[
    (Type::BOOL, "boolean", 'B'),
    (Type::BYTEA, "bytea", 'U'),
    (Type::CHAR, "\"char\"", 'S'),
    (Type::NAME, "name", 'S'),
    (Type::INT8, "bigint", 'N'),
    (Type::INT2, "smallint", 'N'),
    (Type::INT4, "integer", 'N'),
    (Type::TEXT, "text", 'S'),
    (Type::OID, "oid", 'N'),
    (Type::JSON, "json", 'U'),
    (Type::FLOAT4, "real", 'N'),
    (Type::FLOAT8, "double precision", 'N'),
    (Type::VARCHAR, "character varying", 'S'),
    (Type::DATE, "date", 'D'),
    (Type::TIME, "time without time zone", 'D'),
    (Type::TIMESTAMP, "timestamp without time zone", 'D'),
    (Type::TIMESTAMPTZ, "timestamp with time zone", 'D'),
    (Type::INTERVAL, "interval", 'T'),
    (Type::NUMERIC, "numeric", 'N'),
    (Type::UUID, "uuid", 'U'),
];

/// DuckDB's spelling of a column type (`duckdb_columns().data_type`) -> Postgres type,
/// as [`crate::pg::types::pg_type`] maps the logical type. Nested types are json, DECIMAL
/// is numeric; anything not listed is text.
const BY_NAME: &[(&str, Type)] = &[
    ("BOOLEAN", Type::BOOL),
    ("TINYINT", Type::INT2),
    ("SMALLINT", Type::INT2),
    ("UTINYINT", Type::INT2),
    ("INTEGER", Type::INT4),
    ("USMALLINT", Type::INT4),
    ("BIGINT", Type::INT8),
    ("UINTEGER", Type::INT8),
    ("UBIGINT", Type::NUMERIC),
    ("HUGEINT", Type::NUMERIC),
    ("UHUGEINT", Type::NUMERIC),
    ("BIGNUM", Type::NUMERIC),
    ("FLOAT", Type::FLOAT4),
    ("DOUBLE", Type::FLOAT8),
    ("JSON", Type::JSON),
    ("VARCHAR", Type::TEXT),
    ("BLOB", Type::BYTEA),
    ("DATE", Type::DATE),
    ("TIME", Type::TIME),
    ("TIME_NS", Type::TIME),
    ("TIMESTAMP", Type::TIMESTAMP),
    ("TIMESTAMP_S", Type::TIMESTAMP),
    ("TIMESTAMP_MS", Type::TIMESTAMP),
    ("TIMESTAMP_NS", Type::TIMESTAMP),
    ("TIMESTAMP WITH TIME ZONE", Type::TIMESTAMPTZ),
    ("INTERVAL", Type::INTERVAL),
    ("UUID", Type::UUID),
];

/// Creates the catalog macros on `conn` (temporary: only this connection sees them).
pub fn create(conn: &Connection) -> duckdb::Result<()> {
    conn.execute_batch(&definitions())
}

fn definitions() -> String {
    let mut sql = scalar_macros();
    for (name, body) in table_macros() {
        sql.push_str(&format!(
            "CREATE OR REPLACE TEMP MACRO sluice_{name}() AS TABLE {body};\n"
        ));
    }
    sql
}

/// `sluice_pg_type_oid(data_type)`, `sluice_pg_typmod(data_type, precision, scale)` and
/// `sluice_format_type(oid, typmod)`.
fn scalar_macros() -> String {
    let by_name: String = BY_NAME
        .iter()
        .map(|(name, t)| format!(" WHEN '{name}' THEN {}", t.oid()))
        .collect();
    format!(
        "CREATE OR REPLACE TEMP MACRO sluice_pg_types() AS TABLE {types};\n\
         CREATE OR REPLACE TEMP MACRO sluice_pg_type_oid(data_type) AS CASE \
           WHEN data_type LIKE 'DECIMAL(%' THEN {numeric} \
           WHEN data_type LIKE '%]' OR data_type LIKE 'STRUCT(%' OR data_type LIKE 'MAP(%' \
                OR data_type LIKE 'UNION(%' THEN {json} \
           ELSE CASE data_type{by_name} ELSE {text} END END;\n\
         CREATE OR REPLACE TEMP MACRO sluice_pg_typmod(data_type, precision, scale) AS \
           CASE WHEN data_type LIKE 'DECIMAL(%' THEN ((precision << 16) | scale) + 4 \
           ELSE -1 END;\n\
         CREATE OR REPLACE TEMP MACRO sluice_format_type(type_oid, typmod) AS \
           (SELECT t.display FROM sluice_pg_types() t WHERE t.oid = type_oid) \
           || CASE WHEN type_oid = {numeric} AND typmod > 4 \
              THEN '(' || ((typmod - 4) >> 16) || ',' || ((typmod - 4) & 65535) || ')' \
              ELSE '' END;\n",
        numeric = Type::NUMERIC.oid(),
        json = Type::JSON.oid(),
        text = Type::TEXT.oid(),
        types = types_values(),
    )
}

/// The announced types as rows: (oid, typname, display, typlen, typcategory).
fn types_values() -> String {
    let rows: Vec<String> = TYPES
        .iter()
        .map(|(t, display, category)| {
            format!(
                "({}, '{}', '{}', {}, '{category}')",
                t.oid(),
                t.name(),
                display.replace('\'', "''"),
                crate::pg::types::type_size(t),
            )
        })
        .collect();
    format!(
        "SELECT * FROM (VALUES {}) t(oid, typname, display, typlen, typcategory)",
        rows.join(", ")
    )
}

/// The catalog tables: name and query. Relations are the current database's only (not
/// the temporary or system catalogs); OIDs are DuckDB's catalog OIDs.
fn table_macros() -> Vec<(&'static str, String)> {
    let mut tables = vec![
        ("pg_namespace", NAMESPACE.to_string()),
        ("pg_class", CLASS.to_string()),
        ("pg_attribute", ATTRIBUTE.to_string()),
        ("pg_attrdef", ATTRDEF.to_string()),
        ("pg_type", TYPE.to_string()),
        ("pg_index", INDEX.to_string()),
        ("pg_constraint", CONSTRAINT.to_string()),
        ("pg_description", DESCRIPTION.to_string()),
        ("pg_database", DATABASE.to_string()),
        ("pg_settings", SETTINGS.to_string()),
        (
            "pg_am",
            "SELECT 2::BIGINT AS oid, 'heap' AS amname, 't' AS amtype".into(),
        ),
        (
            "pg_roles",
            "SELECT 10::BIGINT AS oid, 'sluice' AS rolname, false AS rolsuper, \
             false AS rolinherit, false AS rolcreaterole, false AS rolcreatedb, \
             true AS rolcanlogin, false AS rolreplication, -1 AS rolconnlimit, \
             NULL::VARCHAR AS rolpassword, NULL::TIMESTAMPTZ AS rolvaliduntil, \
             false AS rolbypassrls, NULL::VARCHAR[] AS rolconfig"
                .into(),
        ),
        (
            "pg_user",
            "SELECT 'sluice' AS usename, 10::BIGINT AS usesysid, false AS usecreatedb, \
             false AS usesuper, false AS userepl, false AS usebypassrls, \
             NULL::VARCHAR AS passwd, NULL::TIMESTAMPTZ AS valuntil, \
             NULL::VARCHAR[] AS useconfig"
                .into(),
        ),
    ];
    tables.extend(EMPTY.iter().map(|(name, columns)| {
        (
            *name,
            format!("SELECT * FROM (SELECT {columns}) WHERE false"),
        )
    }));
    tables
}

/// The session's parameters (what `SHOW ALL` lists), not DuckDB's settings, which are
/// the whole database's and none of a client's business.
const SETTINGS: &str = "SELECT name, setting, NULL::VARCHAR AS unit, \
     'Client Connection Defaults' AS category, NULL::VARCHAR AS short_desc, \
     NULL::VARCHAR AS extra_desc, 'user' AS context, 'string' AS vartype, \
     'session' AS source, NULL::VARCHAR AS min_val, NULL::VARCHAR AS max_val, \
     NULL::VARCHAR[] AS enumvals, setting AS boot_val, setting AS reset_val, \
     NULL::VARCHAR AS sourcefile, NULL::INTEGER AS sourceline, false AS pending_restart \
     FROM (SELECT unnest(map_keys(m)) AS name, unnest(map_values(m)) AS setting \
           FROM (SELECT getvariable('sluice_settings') AS m) WHERE m IS NOT NULL) \
     ORDER BY name";

const NAMESPACE: &str =
    "SELECT oid::BIGINT AS oid, schema_name AS nspname, 10::BIGINT AS nspowner, \
     NULL::VARCHAR[] AS nspacl FROM duckdb_schemas() \
     WHERE database_name = current_database() \
        OR (database_name = 'system' AND schema_name IN ('pg_catalog', 'information_schema'))";

/// `relkind` r (table), v (view), i (index), S (sequence).
const CLASS: &str = "SELECT oid::BIGINT AS oid, relname, relnamespace::BIGINT AS relnamespace, \
     0::BIGINT AS reltype, 0::BIGINT AS reloftype, 10::BIGINT AS relowner, \
     CASE WHEN relkind IN ('r', 'i') THEN 2 ELSE 0 END::BIGINT AS relam, \
     0::BIGINT AS relfilenode, 0::BIGINT AS reltablespace, 0 AS relpages, \
     reltuples::REAL AS reltuples, 0 AS relallvisible, 0::BIGINT AS reltoastrelid, \
     relhasindex, false AS relisshared, 'p' AS relpersistence, relkind, \
     relnatts::SMALLINT AS relnatts, relchecks::SMALLINT AS relchecks, \
     false AS relhasrules, false AS relhastriggers, false AS relhassubclass, \
     false AS relrowsecurity, false AS relforcerowsecurity, true AS relispopulated, \
     'd' AS relreplident, false AS relispartition, 0::BIGINT AS relrewrite, \
     0::BIGINT AS relfrozenxid, 0::BIGINT AS relminmxid, NULL::VARCHAR[] AS relacl, \
     NULL::VARCHAR[] AS reloptions, NULL::VARCHAR AS relpartbound FROM ( \
     SELECT table_oid AS oid, table_name AS relname, schema_oid AS relnamespace, \
        estimated_size AS reltuples, index_count > 0 AS relhasindex, 'r' AS relkind, \
        column_count AS relnatts, check_constraint_count AS relchecks \
     FROM duckdb_tables() WHERE database_name = current_database() \
     UNION ALL SELECT view_oid, view_name, schema_oid, 0, false, 'v', column_count, 0 \
     FROM duckdb_views() WHERE database_name = current_database() \
     UNION ALL SELECT index_oid, index_name, schema_oid, 0, false, 'i', 0, 0 \
     FROM duckdb_indexes() WHERE database_name = current_database() \
     UNION ALL SELECT sequence_oid, sequence_name, schema_oid, 0, false, 'S', 0, 0 \
     FROM duckdb_sequences() WHERE database_name = current_database())";

/// Columns of the current database's tables and views, with Postgres type OIDs.
const ATTRIBUTE: &str = "SELECT table_oid::BIGINT AS attrelid, column_name AS attname, \
     sluice_pg_type_oid(data_type)::BIGINT AS atttypid, -1 AS attstattarget, \
     coalesce((SELECT t.typlen FROM sluice_pg_types() t \
               WHERE t.oid = sluice_pg_type_oid(data_type)), -1)::SMALLINT AS attlen, \
     column_index::SMALLINT AS attnum, 0 AS attndims, -1 AS attcacheoff, \
     sluice_pg_typmod(data_type, numeric_precision, numeric_scale)::INTEGER AS atttypmod, \
     false AS attbyval, 'i' AS attalign, 'p' AS attstorage, '' AS attcompression, \
     NOT is_nullable AS attnotnull, column_default IS NOT NULL AS atthasdef, \
     false AS atthasmissing, '' AS attidentity, \
     CASE WHEN is_generated THEN 's' ELSE '' END AS attgenerated, \
     false AS attisdropped, true AS attislocal, 0 AS attinhcount, 0::BIGINT AS attcollation, \
     NULL::VARCHAR[] AS attacl, NULL::VARCHAR[] AS attoptions, \
     NULL::VARCHAR[] AS attfdwoptions, NULL::VARCHAR AS attmissingval \
     FROM duckdb_columns() WHERE database_name = current_database()";

/// The warehouse, the one database a client can read.
const DATABASE: &str = "SELECT database_oid::BIGINT AS oid, database_name AS datname, \
     10::BIGINT AS datdba, 6 AS encoding, 'c' AS datlocprovider, false AS datistemplate, \
     true AS datallowconn, -1 AS datconnlimit, 0::BIGINT AS datfrozenxid, \
     0::BIGINT AS datminmxid, 0::BIGINT AS dattablespace, 'C' AS datcollate, 'C' AS datctype, \
     NULL::VARCHAR AS daticulocale, NULL::VARCHAR AS datcollversion, NULL::VARCHAR[] AS datacl \
     FROM duckdb_databases() WHERE database_name = current_database()";

const ATTRDEF: &str = "SELECT (table_oid * 10000 + column_index)::BIGINT AS oid, \
     table_oid::BIGINT AS adrelid, column_index::SMALLINT AS adnum, column_default AS adbin \
     FROM duckdb_columns() \
     WHERE database_name = current_database() AND column_default IS NOT NULL";

const TYPE: &str = "SELECT oid::BIGINT AS oid, typname, \
     (SELECT s.oid FROM duckdb_schemas() s \
      WHERE s.database_name = 'system' AND s.schema_name = 'pg_catalog')::BIGINT AS typnamespace, \
     10::BIGINT AS typowner, typlen::SMALLINT AS typlen, typlen > 0 AS typbyval, \
     'b' AS typtype, typcategory, false AS typispreferred, true AS typisdefined, \
     ',' AS typdelim, 0::BIGINT AS typrelid, '-' AS typsubscript, 0::BIGINT AS typelem, \
     0::BIGINT AS typarray, typname || 'in' AS typinput, typname || 'out' AS typoutput, \
     typname || 'recv' AS typreceive, typname || 'send' AS typsend, '-' AS typmodin, \
     '-' AS typmodout, '-' AS typanalyze, 'i' AS typalign, 'p' AS typstorage, \
     false AS typnotnull, 0::BIGINT AS typbasetype, -1 AS typtypmod, 0 AS typndims, \
     0::BIGINT AS typcollation, NULL::VARCHAR AS typdefaultbin, NULL::VARCHAR AS typdefault, \
     NULL::VARCHAR[] AS typacl FROM sluice_pg_types()";

const INDEX: &str = "SELECT index_oid::BIGINT AS indexrelid, table_oid::BIGINT AS indrelid, \
     0::SMALLINT AS indnatts, 0::SMALLINT AS indnkeyatts, is_unique AS indisunique, \
     is_primary AS indisprimary, false AS indnullsnotdistinct, false AS indisexclusion, true AS indimmediate, \
     false AS indisclustered, true AS indisvalid, false AS indcheckxmin, true AS indisready, \
     true AS indislive, false AS indisreplident, []::SMALLINT[] AS indkey, \
     []::BIGINT[] AS indcollation, []::BIGINT[] AS indclass, []::SMALLINT[] AS indoption, \
     NULL::VARCHAR AS indexprs, NULL::VARCHAR AS indpred \
     FROM duckdb_indexes() WHERE database_name = current_database()";

/// Constraints, with Postgres's one-letter kinds and 1-based column numbers.
const CONSTRAINT: &str = "SELECT (table_oid * 10000 + constraint_index)::BIGINT AS oid, \
     coalesce(constraint_name, constraint_text) AS conname, schema_oid::BIGINT AS connamespace, \
     CASE constraint_type WHEN 'CHECK' THEN 'c' WHEN 'UNIQUE' THEN 'u' \
       WHEN 'PRIMARY KEY' THEN 'p' WHEN 'FOREIGN KEY' THEN 'f' WHEN 'NOT NULL' THEN 'n' \
       ELSE 'x' END AS contype, \
     false AS condeferrable, false AS condeferred, true AS convalidated, \
     table_oid::BIGINT AS conrelid, 0::BIGINT AS contypid, 0::BIGINT AS conindid, \
     0::BIGINT AS conparentid, 0::BIGINT AS confrelid, ' ' AS confupdtype, \
     ' ' AS confdeltype, ' ' AS confmatchtype, true AS conislocal, 0 AS coninhcount, \
     false AS connoinherit, \
     list_transform(constraint_column_indexes, lambda i: (i + 1)::SMALLINT) AS conkey, \
     NULL::SMALLINT[] AS confkey, expression AS conbin \
     FROM duckdb_constraints() WHERE database_name = current_database() \
       AND constraint_type <> 'NOT NULL'";

/// Comments on tables, views and their columns. `classoid` is left NULL: clients
/// compare it with `'pg_class'::regclass`, which is text here.
const DESCRIPTION: &str = "SELECT table_oid::BIGINT AS objoid, NULL::VARCHAR AS classoid, \
     0 AS objsubid, comment AS description FROM duckdb_tables() \
     WHERE database_name = current_database() AND comment IS NOT NULL \
     UNION ALL SELECT view_oid, NULL, 0, comment FROM duckdb_views() \
     WHERE database_name = current_database() AND comment IS NOT NULL \
     UNION ALL SELECT table_oid, NULL, column_index, comment FROM duckdb_columns() \
     WHERE database_name = current_database() AND comment IS NOT NULL";

/// Catalog tables that are empty in a warehouse (no collations, inheritance, policies,
/// triggers, rules, publications, foreign tables), with the columns clients select.
const EMPTY: &[(&str, &str)] = &[
    (
        "pg_collation",
        "0::BIGINT AS oid, ''::VARCHAR AS collname, 0::BIGINT AS collnamespace, \
         0::BIGINT AS collowner, '' AS collprovider, true AS collisdeterministic, \
         0 AS collencoding, '' AS collcollate, '' AS collctype",
    ),
    (
        "pg_auth_members",
        "0::BIGINT AS oid, 0::BIGINT AS roleid, 0::BIGINT AS member, 0::BIGINT AS grantor, \
         false AS admin_option",
    ),
    (
        "pg_inherits",
        "0::BIGINT AS inhrelid, 0::BIGINT AS inhparent, 0 AS inhseqno, \
         false AS inhdetachpending",
    ),
    (
        "pg_opclass",
        "0::BIGINT AS oid, 0::BIGINT AS opcmethod, '' AS opcname, 0::BIGINT AS opcnamespace, \
         0::BIGINT AS opcowner, 0::BIGINT AS opcfamily, 0::BIGINT AS opcintype, \
         false AS opcdefault, 0::BIGINT AS opckeytype",
    ),
    (
        "pg_partitioned_table",
        "0::BIGINT AS partrelid, '' AS partstrat, 0::SMALLINT AS partnatts, \
         0::BIGINT AS partdefid",
    ),
    (
        "pg_foreign_table",
        "0::BIGINT AS ftrelid, 0::BIGINT AS ftserver, NULL::VARCHAR[] AS ftoptions",
    ),
    (
        "pg_policy",
        "0::BIGINT AS oid, '' AS polname, 0::BIGINT AS polrelid, '' AS polcmd, \
         true AS polpermissive, []::BIGINT[] AS polroles, NULL::VARCHAR AS polqual, \
         NULL::VARCHAR AS polwithcheck",
    ),
    (
        "pg_statistic_ext",
        "0::BIGINT AS oid, 0::BIGINT AS stxrelid, '' AS stxname, 0::BIGINT AS stxnamespace, \
         0::BIGINT AS stxowner, 0 AS stxstattarget, []::SMALLINT[] AS stxkeys, \
         []::VARCHAR[] AS stxkind, NULL::VARCHAR AS stxexprs",
    ),
    (
        "pg_publication",
        "0::BIGINT AS oid, '' AS pubname, 0::BIGINT AS pubowner, false AS puballtables, \
         false AS pubinsert, false AS pubupdate, false AS pubdelete, false AS pubtruncate, \
         false AS pubviaroot",
    ),
    (
        "pg_publication_rel",
        "0::BIGINT AS oid, 0::BIGINT AS prpubid, 0::BIGINT AS prrelid, \
         NULL::VARCHAR AS prqual, NULL::SMALLINT[] AS prattrs",
    ),
    (
        "pg_publication_namespace",
        "0::BIGINT AS oid, 0::BIGINT AS pnpubid, 0::BIGINT AS pnnspid",
    ),
    (
        "pg_trigger",
        "0::BIGINT AS oid, 0::BIGINT AS tgrelid, 0::BIGINT AS tgparentid, '' AS tgname, \
         0::BIGINT AS tgfoid, 0::SMALLINT AS tgtype, '' AS tgenabled, false AS tgisinternal, \
         0::BIGINT AS tgconstrrelid, 0::BIGINT AS tgconstrindid, 0::BIGINT AS tgconstraint, \
         false AS tgdeferrable, false AS tginitdeferred, 0::SMALLINT AS tgnargs",
    ),
    (
        "pg_rewrite",
        "0::BIGINT AS oid, '' AS rulename, 0::BIGINT AS ev_class, '' AS ev_type, \
         '' AS ev_enabled, false AS is_instead, NULL::VARCHAR AS ev_qual, \
         NULL::VARCHAR AS ev_action",
    ),
];

#[cfg(test)]
mod tests;
