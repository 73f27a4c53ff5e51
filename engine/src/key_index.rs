//! Hash indexes over the columns of small tables held in memory, for point lookups.
//!
//! A service reads one item's row at a time (`WHERE item_id = $1`), thousands of times a
//! second. Even from memory, a scan filters every row of the table; an index built once per
//! snapshot of a held table ([`crate::hot_tables`]) finds the rows at once. Indexes are
//! built on the first lookup by a column and live as long as the snapshot they index, so
//! they never need to be maintained: a commit makes a new snapshot.
//!
//! Only keys whose SQL equality is the values' equality are indexed: integers, text, dates,
//! timestamps and booleans. Floating-point keys (where `0.0 = -0.0`) and decimals are left
//! to the scan.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type,
    UInt16Type, UInt32Type,
};
use datafusion::common::ScalarValue;

/// Whether a column's values are integers that fit an i64 and compare as such: integers up
/// to 32 bits unsigned, dates and timestamps (equal exactly when their i64 values are).
pub fn integer_valued(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32
            | DataType::Date32
            | DataType::Date64
            | DataType::Timestamp(_, _)
    )
}

/// One key value, as the index compares it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    Int(i64),
    Text(String),
    Bool(bool),
}

/// Where the rows with one key are: (batch, row) in scan order.
type Places = Vec<(u32, u32)>;

/// The rows of one column of a held table's batches, by value (NULLs are not indexed:
/// `= NULL` matches nothing).
#[derive(Debug)]
pub struct KeyIndex {
    data_type: DataType,
    rows: HashMap<Key, Places>,
}

impl KeyIndex {
    /// Whether a column of this type can be indexed.
    pub fn supports(data_type: &DataType) -> bool {
        integer_valued(data_type)
            || matches!(
                data_type,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean
            )
    }

    /// The index of column `column` over `batches`, or None for a type it does not support.
    pub fn build(batches: &[RecordBatch], column: usize) -> Option<Self> {
        let data_type = batches
            .first()
            .map(|b| b.schema().field(column).data_type().clone())?;
        if !Self::supports(&data_type) {
            return None;
        }
        let mut rows: HashMap<Key, Places> = HashMap::new();
        for (b, batch) in batches.iter().enumerate() {
            let array = batch.column(column);
            let keys = keys_of(array.as_ref())?;
            for (r, key) in keys.into_iter().enumerate() {
                if let Some(key) = key {
                    rows.entry(key).or_default().push((b as u32, r as u32));
                }
            }
        }
        Some(Self { data_type, rows })
    }

    /// The places of the rows whose key equals `value`; None when `value` cannot be
    /// compared here (another type, which the caller answers another way).
    pub fn find(&self, value: &ScalarValue) -> Option<&[(u32, u32)]> {
        if value.is_null() {
            return Some(&[]);
        }
        if value.data_type() != self.data_type {
            return None;
        }
        let key = match value {
            ScalarValue::Int8(Some(v)) => Key::Int((*v).into()),
            ScalarValue::Int16(Some(v)) => Key::Int((*v).into()),
            ScalarValue::Int32(Some(v)) | ScalarValue::Date32(Some(v)) => Key::Int((*v).into()),
            ScalarValue::Int64(Some(v))
            | ScalarValue::Date64(Some(v))
            | ScalarValue::TimestampSecond(Some(v), _)
            | ScalarValue::TimestampMillisecond(Some(v), _)
            | ScalarValue::TimestampMicrosecond(Some(v), _)
            | ScalarValue::TimestampNanosecond(Some(v), _) => Key::Int(*v),
            ScalarValue::UInt8(Some(v)) => Key::Int((*v).into()),
            ScalarValue::UInt16(Some(v)) => Key::Int((*v).into()),
            ScalarValue::UInt32(Some(v)) => Key::Int((*v).into()),
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => Key::Text(s.clone()),
            ScalarValue::Boolean(Some(b)) => Key::Bool(*b),
            _ => return None,
        };
        Some(self.rows.get(&key).map_or(&[], Vec::as_slice))
    }

    /// Roughly the memory the index takes, for the cache's budget.
    pub fn bytes(&self) -> u64 {
        let per_entry = std::mem::size_of::<(Key, Places)>() + std::mem::size_of::<(u32, u32)>();
        let text: usize = self
            .rows
            .keys()
            .map(|k| match k {
                Key::Text(s) => s.len(),
                _ => 0,
            })
            .sum();
        (self.rows.len() * per_entry + text) as u64
    }
}

/// The keys of `array`'s rows (None for NULL), or None for an unsupported type.
fn keys_of(array: &dyn Array) -> Option<Vec<Option<Key>>> {
    fn ints<T>(array: &dyn Array) -> Vec<Option<Key>>
    where
        T: datafusion::arrow::datatypes::ArrowPrimitiveType,
        T::Native: Into<i64>,
    {
        array
            .as_primitive::<T>()
            .iter()
            .map(|v| v.map(|v| Key::Int(v.into())))
            .collect()
    }
    Some(match array.data_type() {
        DataType::Int8 => ints::<Int8Type>(array),
        DataType::Int16 => ints::<Int16Type>(array),
        DataType::Int32 => ints::<Int32Type>(array),
        DataType::Int64 => ints::<Int64Type>(array),
        DataType::UInt8 => ints::<UInt8Type>(array),
        DataType::UInt16 => ints::<UInt16Type>(array),
        DataType::UInt32 => ints::<UInt32Type>(array),
        DataType::Date32 => ints::<Date32Type>(array),
        DataType::Date64 => ints::<Date64Type>(array),
        DataType::Timestamp(_, _) => {
            let cast = datafusion::arrow::compute::cast(array, &DataType::Int64).ok()?;
            ints::<Int64Type>(cast.as_ref())
        }
        DataType::Utf8 => text(array.as_string::<i32>().iter()),
        DataType::LargeUtf8 => text(array.as_string::<i64>().iter()),
        DataType::Utf8View => text(array.as_string_view().iter()),
        DataType::Boolean => array
            .as_boolean()
            .iter()
            .map(|v| v.map(Key::Bool))
            .collect(),
        _ => return None,
    })
}

fn text<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Vec<Option<Key>> {
    values
        .map(|v| v.map(|s| Key::Text(s.to_string())))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Float64Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(ids: Vec<Option<i64>>, names: Vec<Option<&str>>) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(StringArray::from(names)),
            ],
        )
        .expect("batch")
    }

    #[test]
    fn finds_every_row_with_a_key_in_scan_order() {
        let batches = vec![
            batch(
                vec![Some(1), Some(2), None],
                vec![Some("a"), None, Some("b")],
            ),
            batch(vec![Some(2), Some(3)], vec![Some("a"), Some("限时")]),
        ];
        let ids = KeyIndex::build(&batches, 0).expect("int index");
        assert_eq!(
            ids.find(&ScalarValue::Int64(Some(2))),
            Some(&[(0, 1), (1, 0)][..])
        );
        assert_eq!(ids.find(&ScalarValue::Int64(Some(9))), Some(&[][..]));
        assert_eq!(ids.find(&ScalarValue::Int64(None)), Some(&[][..]), "= NULL");
        assert_eq!(ids.find(&ScalarValue::Int32(Some(2))), None, "another type");
        let names = KeyIndex::build(&batches, 1).expect("text index");
        assert_eq!(
            names.find(&ScalarValue::Utf8(Some("a".into()))),
            Some(&[(0, 0), (1, 0)][..])
        );
        assert_eq!(
            names.find(&ScalarValue::Utf8(Some("限时".into()))),
            Some(&[(1, 1)][..])
        );
    }

    #[test]
    fn floating_point_keys_are_left_to_the_scan() {
        let schema = Arc::new(Schema::new(vec![Field::new("x", DataType::Float64, true)]));
        let b = RecordBatch::try_new(schema, vec![Arc::new(Float64Array::from(vec![0.0, -0.0]))])
            .expect("batch");
        assert!(KeyIndex::build(&[b], 0).is_none());
    }
}
