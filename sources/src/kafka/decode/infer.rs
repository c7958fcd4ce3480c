//! Schema inference from sample JSON messages: the fields in the order first seen, typed
//! like CSV columns from their text. A field holding only objects (or arrays) becomes
//! `JSON`, or with `nested = "struct"` a `STRUCT` of the objects' fields, inferred the
//! same way, level by level.

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use sluice_core::{Column, ColumnType, TableSchema};

use super::Messages;
use crate::{
    kafka::config::Nested,
    typing::{cast::json_text, declared::check_column_name, infer},
};

/// Infers the data columns from sample messages; `None` if no sample is a JSON object.
pub fn infer_json(samples: &Messages, nested: Nested) -> Option<TableSchema> {
    let mut shape = Shape::default();
    let mut objects = Vec::new();
    for m in samples.iter() {
        let payload = m.payload.unwrap_or_default();
        let (Ok(Value::Object(o)), Ok(s)) = (
            serde_json::from_slice::<Value>(payload),
            serde_json::from_slice::<Shape>(payload),
        ) else {
            continue;
        };
        shape.merge(s);
        objects.push(o);
    }
    shape.0.retain(|(name, _)| check_column_name(name).is_ok());
    let objects: Vec<&Map<String, Value>> = objects.iter().collect();
    let columns = fields(&objects, &shape, nested);
    (!columns.is_empty()).then(|| TableSchema::new(columns))
}

/// The type a column of these JSON values (no nulls) gets, as inference types a field:
/// for a field seen after the table's schema was inferred, or a value its column's type
/// does not hold.
pub(crate) fn value_type(name: &str, values: &[&Value], nested: Nested) -> ColumnType {
    let mut shape = Shape::default();
    for o in values.iter().filter_map(|v| v.as_object()) {
        shape.merge(shape_of(o));
    }
    column_type(name, values, &Some(shape), nested)
}

fn shape_of(o: &Map<String, Value>) -> Shape {
    Shape(
        o.iter()
            .map(|(k, v)| (k.clone(), v.as_object().map(shape_of)))
            .collect(),
    )
}

/// A column per field of `shape`, typed from the values `objects` hold.
fn fields(objects: &[&Map<String, Value>], shape: &Shape, nested: Nested) -> Vec<Column> {
    shape
        .0
        .iter()
        .map(|(name, inner)| {
            let values: Vec<&Value> = objects
                .iter()
                .filter_map(|o| o.get(name))
                .filter(|v| !v.is_null())
                .collect();
            Column::new(name.clone(), column_type(name, &values, inner, nested))
        })
        .collect()
}

fn column_type(name: &str, values: &[&Value], inner: &Option<Shape>, nested: Nested) -> ColumnType {
    if !values.is_empty() && values.iter().all(|v| v.is_object()) {
        if let (Nested::Struct, Some(inner)) = (nested, inner) {
            let objects: Vec<&Map<String, Value>> =
                values.iter().filter_map(|v| v.as_object()).collect();
            let children = fields(&objects, inner, nested);
            if !children.is_empty() {
                return ColumnType::Struct(children.into());
            }
        }
        return ColumnType::Json;
    }
    if !values.is_empty() && values.iter().all(|v| v.is_object() || v.is_array()) {
        return ColumnType::Json;
    }
    let text = arrow::array::StringArray::from(
        values
            .iter()
            .map(|v| json_text((*v).clone()))
            .collect::<Vec<_>>(),
    );
    let typed = infer::infer(vec![name.to_string()], &[text]);
    typed.columns[0].ty.clone()
}

/// A JSON object's keys in the order written (`serde_json::Map` sorts them), with the
/// same for the values that are objects. Merged over samples: first seen, first.
#[derive(Debug, Default)]
struct Shape(Vec<(String, Option<Shape>)>);

impl Shape {
    fn merge(&mut self, other: Shape) {
        for (name, inner) in other.0 {
            let known = self
                .0
                .iter_mut()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name));
            match (known, inner) {
                (None, inner) => self.0.push((name, inner)),
                (Some((_, mine @ None)), theirs) => *mine = theirs,
                (Some((_, Some(mine))), Some(theirs)) => mine.merge(theirs),
                (Some(_), None) => {}
            }
        }
    }
}

impl<'de> Deserialize<'de> for Shape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ShapeVisitor)
    }
}

struct ShapeVisitor;

impl<'de> Visitor<'de> for ShapeVisitor {
    type Value = Shape;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Shape, A::Error> {
        let mut keys = Vec::new();
        while let Some(k) = map.next_key::<String>()? {
            let MaybeShape(inner) = map.next_value()?;
            keys.push((k, inner));
        }
        Ok(Shape(keys))
    }
}

/// Any JSON value: the shape of an object, nothing for the others.
struct MaybeShape(Option<Shape>);

impl<'de> Deserialize<'de> for MaybeShape {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(MaybeShapeVisitor)
    }
}

struct MaybeShapeVisitor;

impl<'de> Visitor<'de> for MaybeShapeVisitor {
    type Value = MaybeShape;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MaybeShape, A::Error> {
        ShapeVisitor.visit_map(map).map(|s| MaybeShape(Some(s)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MaybeShape, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(MaybeShape(None))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<MaybeShape, E> {
        Ok(MaybeShape(None))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<MaybeShape, E> {
        Ok(MaybeShape(None))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<MaybeShape, E> {
        Ok(MaybeShape(None))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<MaybeShape, E> {
        Ok(MaybeShape(None))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<MaybeShape, E> {
        Ok(MaybeShape(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<MaybeShape, E> {
        Ok(MaybeShape(None))
    }
}
