//! `Decoder::decode_evolving`: new fields, widened types, and what the contract refuses.

use super::*;
use crate::typing::contract::{ColumnsPolicy, Refusal};

fn evolving(columns: &[(&str, ColumnType)]) -> Decoder {
    decoder(Format::Json, columns)
}

fn types(decoder: &Decoder) -> Vec<String> {
    column_types(&decoder.data)
}

#[test]
fn a_new_field_becomes_a_column_and_a_wider_value_widens_its_column() {
    let mut d = evolving(&[("id", ColumnType::BigInt)]);
    let topic: Arc<str> = "t".into();
    let ms = [msg(0, r#"{"id":1}"#), msg(1, r#"{"id":1.5,"city":"Oslo"}"#)];
    let (out, refused) = d.decode_evolving(at(&topic, 0), &run(&ms)).unwrap();
    assert_eq!(types(&d), ["id DOUBLE", "city VARCHAR"]);
    assert!(refused.is_empty(), "{refused:?}");
    assert!(out.dead_letters.is_empty(), "{:?}", out.dead_letters);
    assert_eq!(out.rows.num_rows(), 2);
}

#[test]
fn a_message_that_is_a_dead_letter_for_a_frozen_field_widens_nothing() {
    let mut d = evolving(&[("id", ColumnType::BigInt)]);
    d.contract.columns = ColumnsPolicy::Freeze;
    let topic: Arc<str> = "t".into();
    let ms = [msg(0, r#"{"id":1}"#), msg(1, r#"{"id":1.5,"city":"Oslo"}"#)];
    let (out, refused) = d.decode_evolving(at(&topic, 0), &run(&ms)).unwrap();
    assert_eq!(types(&d), ["id BIGINT"], "the dead letter's 1.5 widened id");
    assert_eq!(refused, [("city".to_string(), Refusal::FrozenColumn, 1)]);
    // One dead letter for the message, though two things refuse it.
    let errors = offsets_and_errors(&out);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, 1);
    assert_eq!(out.rows.num_rows(), 1);
    // A frozen field alone: the dead letter names it.
    let ms = [msg(2, r#"{"id":2,"city":"Rome"}"#)];
    let (out, _) = d.decode_evolving(at(&topic, 0), &run(&ms)).unwrap();
    let errors = offsets_and_errors(&out);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].1.contains("\"city\""), "{}", errors[0].1);
}

#[test]
fn a_field_past_max_columns_makes_a_dead_letter_not_a_silent_drop() {
    let mut d = evolving(&[("id", ColumnType::BigInt)]);
    d.contract.max_columns = 2;
    let topic: Arc<str> = "t".into();
    let ms = [msg(0, r#"{"id":1,"a":1,"b":2}"#), msg(1, r#"{"id":2}"#)];
    let (out, refused) = d.decode_evolving(at(&topic, 0), &run(&ms)).unwrap();
    assert_eq!(types(&d), ["id BIGINT", "a BIGINT"]);
    assert_eq!(refused, [("b".to_string(), Refusal::TooManyColumns, 1)]);
    let errors = offsets_and_errors(&out);
    assert_eq!(errors.iter().map(|e| e.0).collect::<Vec<_>>(), [0]);
    assert_eq!(out.rows.num_rows(), 1);
}

#[test]
fn a_message_with_a_value_no_widening_takes_widens_no_other_column() {
    let mut d = evolving(&[("a", ColumnType::BigInt), ("b", ColumnType::BigInt)]);
    let topic: Arc<str> = "t".into();
    // "x" needs VARCHAR (refused by default): its message is a dead letter, so its b = 2.5
    // must not turn b DOUBLE; message 2's new field is also from a doomed message.
    let ms = [
        msg(0, r#"{"a":1,"b":2}"#),
        msg(1, r#"{"a":"x","b":2.5}"#),
        msg(2, r#"{"a":"y","c":true}"#),
        msg(3, r#"{"a":3,"b":4}"#),
    ];
    let (out, refused) = d.decode_evolving(at(&topic, 0), &run(&ms)).unwrap();
    assert_eq!(types(&d), ["a BIGINT", "b BIGINT"]);
    assert_eq!(refused, [("a".to_string(), Refusal::FrozenType, 2)]);
    let offsets: Vec<i64> = offsets_and_errors(&out).iter().map(|e| e.0).collect();
    assert_eq!(offsets, [1, 2]);
    assert_eq!(out.rows.num_rows(), 2);
}
