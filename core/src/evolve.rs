//! Schemas that change: the widening lattice of column types and how a table's schema
//! takes in a batch's.
//!
//! A column's type only ever widens, to the least type that holds every value of both
//! ([`widen`]). The lattice, lossless steps first:
//!
//! - `TINYINT < SMALLINT < INTEGER < BIGINT`, and the unsigned types likewise; an unsigned
//!   and a signed type meet at the next signed type that holds both (`UBIGINT` and any
//!   signed type at `DECIMAL(20,0)`);
//! - an integer and a `DECIMAL(p,s)` meet at the decimal with room for both (at most
//!   `DECIMAL(38,s)`); two decimals likewise;
//! - `FLOAT < DOUBLE`; an integer or a decimal and a floating type meet at `DOUBLE` (a
//!   `BIGINT` column is checked first: see `sluice_state::tables::evolve`);
//! - `DATE < TIMESTAMP`;
//! - two `STRUCT`s meet at the struct of both their fields, each widened;
//! - `JSON` holds a `STRUCT` or a number or boolean;
//! - `VARCHAR` is the last resort for any two other types (a source's policy may forbid
//!   it: [`is_last_resort`]).

use std::sync::Arc;

use arrow::{
    array::{Array, ArrayRef},
    compute::{cast_with_options, CastOptions},
    datatypes::DataType,
    error::ArrowError,
};

use crate::{Column, ColumnType, TableSchema};

/// The least type that holds every value of `a` and of `b`.
pub fn widen(a: &ColumnType, b: &ColumnType) -> ColumnType {
    use ColumnType::*;
    if a == b {
        return a.clone();
    }
    if let Some(t) = numeric(a, b) {
        return t;
    }
    match (a, b) {
        (Date, Timestamp) | (Timestamp, Date) => Timestamp,
        (Struct(x), Struct(y)) => Struct(merge_fields(x, y)),
        (Json, other) | (other, Json) if holds_as_json(other) => Json,
        (Struct(_), other) | (other, Struct(_)) if holds_as_json(other) => Json,
        _ => Varchar,
    }
}

/// Whether widening `from` to `to` falls back on text: `VARCHAR`, or `JSON` for what was
/// not JSON (a struct or a number whose queries would change), at the top or in a field of
/// a struct.
pub fn is_last_resort(from: &ColumnType, to: &ColumnType) -> bool {
    use ColumnType::*;
    match (from, to) {
        _ if from == to => false,
        (Struct(a), Struct(b)) => b.iter().any(|g| {
            a.iter()
                .find(|f| f.name.eq_ignore_ascii_case(&g.name))
                .is_some_and(|f| is_last_resort(&f.ty, &g.ty))
        }),
        (_, Varchar | Json) => true,
        _ => false,
    }
}

/// The first row of `a` whose value does not come back from a cast to `to` (an integer
/// or decimal that a floating type would round), if any: a widening must not alter a
/// value. `None` whenever `to` is not floating or `a` is not exact.
pub fn first_rounded(a: &ArrayRef, to: &DataType) -> Result<Option<usize>, ArrowError> {
    let from = a.data_type();
    if !to.is_floating() || from.is_floating() || !from.is_numeric() {
        return Ok(None);
    }
    let options = CastOptions {
        safe: false,
        ..Default::default()
    };
    let there = cast_with_options(a, to, &options)?;
    let back = cast_with_options(&there, from, &options)?;
    if back.as_ref() == a.as_ref() {
        return Ok(None);
    }
    Ok((0..a.len()).find(|&r| a.slice(r, 1) != back.slice(r, 1)))
}

/// Whether `to` holds every value of `from` (`from` widens to `to`).
pub fn holds(to: &ColumnType, from: &ColumnType) -> bool {
    widen(to, from) == *to
}

/// Types a `JSON` column holds without turning them into text: a struct, numbers, booleans.
fn holds_as_json(t: &ColumnType) -> bool {
    use ColumnType::*;
    matches!(
        t,
        Json | Struct(_) | Boolean | Double | Float | Decimal { .. }
    ) || int_digits(t).is_some()
}

/// Two numeric types' meet, if both are numeric.
fn numeric(a: &ColumnType, b: &ColumnType) -> Option<ColumnType> {
    use ColumnType::*;
    let float = |t: &ColumnType| matches!(t, Float | Double);
    match (a, b) {
        (Float, Float) => Some(Float),
        (x, y) if float(x) && float(y) => Some(Double),
        (x, y) if float(x) && is_exact(y) || is_exact(x) && float(y) => Some(Double),
        (x, y) if int_digits(x).is_some() && int_digits(y).is_some() => Some(integers(x, y)),
        (x, y) if is_exact(x) && is_exact(y) => Some(decimals(x, y)),
        _ => None,
    }
}

fn is_exact(t: &ColumnType) -> bool {
    int_digits(t).is_some() || matches!(t, ColumnType::Decimal { .. })
}

/// Decimal digits an integer type needs, and whether it is signed.
fn int_digits(t: &ColumnType) -> Option<(u8, bool)> {
    use ColumnType::*;
    Some(match t {
        TinyInt => (3, true),
        SmallInt => (5, true),
        Integer => (10, true),
        BigInt => (19, true),
        UTinyInt => (3, false),
        USmallInt => (5, false),
        UInteger => (10, false),
        UBigInt => (20, false),
        _ => return None,
    })
}

/// Integer width rank, signed and unsigned apart: 0 for 8 bits up to 3 for 64.
fn rank(t: &ColumnType) -> u8 {
    use ColumnType::*;
    match t {
        TinyInt | UTinyInt => 0,
        SmallInt | USmallInt => 1,
        Integer | UInteger => 2,
        _ => 3,
    }
}

fn integers(a: &ColumnType, b: &ColumnType) -> ColumnType {
    use ColumnType::*;
    const SIGNED: [ColumnType; 4] = [TinyInt, SmallInt, Integer, BigInt];
    const UNSIGNED: [ColumnType; 4] = [UTinyInt, USmallInt, UInteger, UBigInt];
    let (sa, sb) = (int_digits(a).map(|d| d.1), int_digits(b).map(|d| d.1));
    let top = rank(a).max(rank(b));
    match (sa, sb) {
        (Some(true), Some(true)) => SIGNED[top as usize].clone(),
        (Some(false), Some(false)) => UNSIGNED[top as usize].clone(),
        _ => {
            // Mixed: the unsigned one needs the next signed width up.
            let unsigned_rank = if sa == Some(false) { rank(a) } else { rank(b) };
            let need = top.max(unsigned_rank + 1);
            SIGNED.get(need as usize).cloned().unwrap_or(Decimal {
                precision: 20,
                scale: 0,
            })
        }
    }
}

/// Digits before and after the point of an exact type.
fn decimal_shape(t: &ColumnType) -> (u8, u8) {
    match t {
        ColumnType::Decimal { precision, scale } => (precision - *scale as u8, *scale as u8),
        other => (int_digits(other).map_or(0, |d| d.0), 0),
    }
}

fn decimals(a: &ColumnType, b: &ColumnType) -> ColumnType {
    let ((ia, fa), (ib, fb)) = (decimal_shape(a), decimal_shape(b));
    let (int, frac) = (ia.max(ib), fa.max(fb));
    match int.checked_add(frac).filter(|p| *p <= 38) {
        Some(precision) => ColumnType::Decimal {
            precision,
            scale: frac as i8,
        },
        None => ColumnType::Double,
    }
}

/// `x`'s fields in their order, each widened with `y`'s of the same name, then `y`'s
/// others.
fn merge_fields(x: &[Column], y: &[Column]) -> Arc<[Column]> {
    let mut out: Vec<Column> = x
        .iter()
        .map(
            |f| match y.iter().find(|g| g.name.eq_ignore_ascii_case(&f.name)) {
                Some(g) => Column::new(f.name.clone(), widen(&f.ty, &g.ty)),
                None => f.clone(),
            },
        )
        .collect();
    for g in y {
        if !x.iter().any(|f| f.name.eq_ignore_ascii_case(&g.name)) {
            out.push(g.clone());
        }
    }
    out.into()
}

/// One change to a table's columns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemaChange {
    pub column: String,
    /// `None` for a new column.
    pub old: Option<ColumnType>,
    pub new: ColumnType,
}

impl SchemaChange {
    /// `add_column` or `widen_column` (the `change` label of the metric and the table).
    pub fn kind(&self) -> &'static str {
        match self.old {
            None => "add_column",
            Some(_) => "widen_column",
        }
    }
}

impl TableSchema {
    /// The schema that holds both this table's rows and `incoming`'s: this table's columns
    /// in their order, each widened to hold `incoming`'s values, then `incoming`'s new
    /// columns in its order. Names compare case-insensitively, as DuckDB compares them;
    /// a column keeps the spelling it was created with. A column `incoming` lacks stays
    /// (its rows hold NULL there), and none ever narrows.
    pub fn evolve(&self, incoming: &TableSchema) -> (TableSchema, Vec<SchemaChange>) {
        let mut columns = self.columns.clone();
        let mut changes = Vec::new();
        for c in &incoming.columns {
            match self.position(&c.name) {
                Some(i) => {
                    let wider = widen(&columns[i].ty, &c.ty);
                    if wider != columns[i].ty {
                        changes.push(SchemaChange {
                            column: columns[i].name.clone(),
                            old: Some(columns[i].ty.clone()),
                            new: wider.clone(),
                        });
                        columns[i].ty = wider;
                    }
                }
                None => {
                    changes.push(SchemaChange {
                        column: c.name.clone(),
                        old: None,
                        new: c.ty.clone(),
                    });
                    columns.push(c.clone());
                }
            }
        }
        (TableSchema::new(columns), changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ColumnType::*;

    fn t(s: &str) -> ColumnType {
        s.parse().expect(s)
    }

    #[test]
    fn integers_widen_by_width_and_sign() {
        assert_eq!(widen(&Integer, &BigInt), BigInt);
        assert_eq!(widen(&TinyInt, &SmallInt), SmallInt);
        assert_eq!(widen(&UTinyInt, &TinyInt), SmallInt);
        assert_eq!(widen(&UInteger, &Integer), BigInt);
        assert_eq!(widen(&UBigInt, &TinyInt), t("DECIMAL(20,0)"));
        assert_eq!(widen(&UBigInt, &UTinyInt), UBigInt);
    }

    #[test]
    fn exact_and_floating_types_meet_without_loss_where_they_can() {
        assert_eq!(widen(&BigInt, &Double), Double);
        assert_eq!(widen(&Float, &Double), Double);
        assert_eq!(widen(&Integer, &Float), Double);
        assert_eq!(widen(&BigInt, &t("DECIMAL(10,2)")), t("DECIMAL(21,2)"));
        assert_eq!(
            widen(&t("DECIMAL(5,1)"), &t("DECIMAL(4,3)")),
            t("DECIMAL(7,3)")
        );
        assert_eq!(widen(&t("DECIMAL(38,0)"), &t("DECIMAL(10,10)")), Double);
        assert_eq!(widen(&t("DECIMAL(10,2)"), &Double), Double);
    }

    #[test]
    fn dates_structs_and_json() {
        assert_eq!(widen(&Date, &Timestamp), Timestamp);
        assert_eq!(widen(&Timestamp, &TimestampTz), Varchar);
        let s1 = t("STRUCT(a BIGINT, b VARCHAR)");
        let s2 = t("STRUCT(a DOUBLE, c DATE)");
        assert_eq!(widen(&s1, &s2), t("STRUCT(a DOUBLE, b VARCHAR, c DATE)"));
        assert_eq!(widen(&s1, &Json), Json);
        assert_eq!(widen(&s1, &BigInt), Json);
        assert_eq!(widen(&Json, &Boolean), Json);
        assert_eq!(widen(&Json, &Varchar), Varchar);
        assert_eq!(widen(&s1, &Date), Varchar);
    }

    #[test]
    fn varchar_is_the_last_resort_and_the_top() {
        assert_eq!(widen(&Boolean, &BigInt), Varchar);
        assert_eq!(widen(&Date, &Double), Varchar);
        assert!(is_last_resort(&BigInt, &Varchar));
        assert!(!is_last_resort(&Varchar, &Varchar));
        assert!(is_last_resort(&t("STRUCT(a INT)"), &Json));
        assert!(is_last_resort(&t("STRUCT(a INT)"), &t("STRUCT(a VARCHAR)")));
        assert!(!is_last_resort(
            &t("STRUCT(a INT)"),
            &t("STRUCT(a BIGINT, b VARCHAR)")
        ));
        assert!(!is_last_resort(&Json, &Json));
        for ty in [
            BigInt,
            Double,
            Date,
            Json,
            t("STRUCT(a INT)"),
            t("DECIMAL(3,1)"),
        ] {
            assert_eq!(widen(&ty, &Varchar), Varchar, "{ty}");
            assert!(holds(&Varchar, &ty));
        }
    }

    #[test]
    fn the_lattice_is_commutative_idempotent_and_never_narrows() {
        let all = [
            Boolean,
            TinyInt,
            SmallInt,
            Integer,
            BigInt,
            UTinyInt,
            USmallInt,
            UInteger,
            UBigInt,
            Float,
            Double,
            t("DECIMAL(10,2)"),
            t("DECIMAL(38,5)"),
            Varchar,
            Json,
            Blob,
            Date,
            Time,
            Timestamp,
            TimestampTz,
            t("STRUCT(a BIGINT)"),
        ];
        for a in &all {
            assert_eq!(widen(a, a), *a);
            for b in &all {
                let w = widen(a, b);
                assert_eq!(w, widen(b, a), "{a} v {b}");
                assert!(holds(&w, a) && holds(&w, b), "{a} v {b} = {w}");
                assert_eq!(widen(&w, a), w, "widening {a} v {b} twice moved it");
            }
        }
    }

    #[test]
    fn evolve_appends_new_columns_and_widens_in_place() {
        let table = TableSchema::new(vec![
            Column::new("id", BigInt),
            Column::new("Amount", BigInt),
            Column::new("note", Varchar),
        ]);
        let batch = TableSchema::new(vec![
            Column::new("amount", Double),
            Column::new("id", Integer),
            Column::new("region", Varchar),
        ]);
        let (evolved, changes) = table.evolve(&batch);
        assert_eq!(
            evolved.to_string(),
            "id BIGINT, Amount DOUBLE, note VARCHAR, region VARCHAR"
        );
        assert_eq!(
            changes,
            [
                SchemaChange {
                    column: "Amount".into(),
                    old: Some(BigInt),
                    new: Double
                },
                SchemaChange {
                    column: "region".into(),
                    old: None,
                    new: Varchar
                },
            ]
        );
        let (again, none) = evolved.evolve(&batch);
        assert_eq!(again, evolved);
        assert!(
            none.is_empty(),
            "a second batch of the same shape changes nothing"
        );
    }
}
