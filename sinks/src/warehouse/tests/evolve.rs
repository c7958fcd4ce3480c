//! A batch that changes its table's schema: the change commits with it.

use super::*;

#[test]
fn a_batch_with_a_new_column_and_a_wider_type_changes_the_table_in_its_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut w = open(dir.path());
    let first = chunk(vec!["1"], ColumnType::Integer, 10, FileStatus::Partial);
    w.commit(batch_of(first)).expect("first commit");
    let second = chunk(vec!["2"], ColumnType::BigInt, 20, FileStatus::Partial);
    let second = with_extra(second, ColumnType::Date, vec!["2026-01-01"]);
    let receipt = w.commit(batch_of(second)).expect("evolving commit");
    let kinds: Vec<(&str, String, String)> = receipt
        .schema_changes
        .iter()
        .map(|c| (c.kind(), c.column.clone(), c.new.to_string()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("widen_column", "v".to_string(), "BIGINT".to_string()),
            ("add_column", "extra".to_string(), "DATE".to_string())
        ]
    );
    assert_eq!(
        count(
            &w,
            "SELECT count(*) FROM raw.t WHERE (v = 1 AND extra IS NULL) OR (v = 2 AND extra = DATE '2026-01-01')"
        ),
        2
    );
    assert_eq!(
        count(
            &w,
            "SELECT count(*) FROM _sluice.schema_changes WHERE batch_id = 2 AND position->>'source' = 's'"
        ),
        2
    );
    // A third batch of the first shape changes nothing and lands (NULL in the new column).
    let third = chunk(vec!["3"], ColumnType::Integer, 30, FileStatus::Ingested);
    let receipt = w.commit(batch_of(third)).expect("old shape");
    assert!(receipt.schema_changes.is_empty());
    assert_eq!(
        count(
            &w,
            "SELECT count(*) FROM raw.t WHERE v = 3 AND extra IS NULL"
        ),
        1
    );
}
