//! Indexes over the columns of tables held in memory, for point lookups.
//!
//! A service reads one item's row at a time (`WHERE item_id = $1`), thousands of times a
//! second. Even from memory, a scan filters every row of the table; an index built once per
//! snapshot of a held table ([`crate::hot_tables`]) finds the rows at once. Indexes are
//! built on the first lookup by a column and live as long as the snapshot they index, so
//! they never need to be maintained: a commit makes a new snapshot. An index is the keys
//! sorted, each with its row's place: 16 bytes a row for integer keys, so that tables of
//! millions of rows held for lookups are indexed in tens of megabytes (a hash map of
//! per-key lists took about 80).
//!
//! Only keys whose SQL equality is the values' equality are indexed: integers, text, dates,
//! timestamps and booleans. Floating-point keys (where `0.0 = -0.0`) and decimals are left
//! to the scan.

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

/// One key value, as the index compares it (booleans as 0 and 1).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Int(i64),
    Text(String),
}

/// The indexed keys, sorted; `places[i]` is where the row of `keys[i]` is.
#[derive(Debug)]
enum Keys {
    Int(Vec<i64>),
    Text(Vec<String>),
}

/// The rows of one column of a held table's batches, by value (NULLs are not indexed:
/// `= NULL` matches nothing).
#[derive(Debug)]
pub struct KeyIndex {
    data_type: DataType,
    keys: Keys,
    /// (batch, row) in scan order within each key.
    places: Vec<(u32, u32)>,
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
        let mut entries: Vec<(Key, (u32, u32))> = Vec::new();
        for (b, batch) in batches.iter().enumerate() {
            let array = batch.column(column);
            let keys = keys_of(array.as_ref())?;
            for (r, key) in keys.into_iter().enumerate() {
                if let Some(key) = key {
                    entries.push((key, (b as u32, r as u32)));
                }
            }
        }
        // Stable: a key's rows stay in scan order.
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let places = entries.iter().map(|e| e.1).collect();
        let keys = if matches!(
            data_type,
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
        ) {
            Keys::Text(
                entries
                    .into_iter()
                    .filter_map(|(k, _)| match k {
                        Key::Text(s) => Some(s),
                        Key::Int(_) => None,
                    })
                    .collect(),
            )
        } else {
            Keys::Int(
                entries
                    .into_iter()
                    .filter_map(|(k, _)| match k {
                        Key::Int(v) => Some(v),
                        Key::Text(_) => None,
                    })
                    .collect(),
            )
        };
        Some(Self {
            data_type,
            keys,
            places,
        })
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
            ScalarValue::Boolean(Some(b)) => Key::Int((*b).into()),
            _ => return None,
        };
        let range = match (&self.keys, &key) {
            (Keys::Int(keys), Key::Int(v)) => equal_range(keys, v),
            (Keys::Text(keys), Key::Text(v)) => equal_range(keys, v),
            _ => return None,
        };
        Some(&self.places[range])
    }

    /// Roughly the memory the index takes, for the cache's budget.
    pub fn bytes(&self) -> u64 {
        let keys = match &self.keys {
            Keys::Int(k) => k.capacity() * std::mem::size_of::<i64>(),
            Keys::Text(k) => {
                k.capacity() * std::mem::size_of::<String>()
                    + k.iter().map(String::len).sum::<usize>()
            }
        };
        (keys + self.places.capacity() * std::mem::size_of::<(u32, u32)>()) as u64
    }
}

/// Where `value` stands in the sorted `keys`.
fn equal_range<T: Ord>(keys: &[T], value: &T) -> std::ops::Range<usize> {
    let start = keys.partition_point(|k| k < value);
    start..start + keys[start..].partition_point(|k| k <= value)
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
            .map(|v| v.map(|b| Key::Int(b.into())))
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
