//! Checks on a batch of results before the protocol library encodes it, for values it
//! cannot encode or cannot encode within memory.
//!
//! - A list of decimals goes through a 96-bit decimal type and the library panics (cutting
//!   the connection mid-result) on an element beyond it: such a result fails with 22003.
//!   Lone decimals are encoded without the panic.
//! - An array value is encoded through a vector of its elements and then its text, both
//!   outside the memory pool: `array_repeat(30228, 30584837)` (a 245 MB list, within the
//!   size-limited function's bound then) took the server from 140 MB to 1.3 GB on its way
//!   to the client. An array whose encoding could take more than the functions' bound,
//!   [`MAX_RESULT_BYTES`](flashsql_udfs::limits::MAX_RESULT_BYTES), fails with 54000
//!   before it is encoded.

use datafusion::arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Decimal128Type};
use datafusion::error::{DataFusionError, Result};
use flashsql_udfs::limits::check_result_bytes;

use crate::errors::SqlError;

/// Fails (22003, 54000) where a value of `batch` cannot be sent (see the module notes).
pub fn values_fit(batch: &RecordBatch) -> Result<()> {
    for column in batch.columns() {
        let rows = column.len();
        let Some((values, _, _)) = elements(column.as_ref(), 0, rows) else {
            continue;
        };
        if matches!(values.data_type(), DataType::Decimal128(..)) {
            decimals_fit(values)?;
        }
        for i in 0..rows {
            if let Some((values, start, end)) = elements(column.as_ref(), i, i + 1) {
                check_result_bytes(
                    "an array value sent to the client",
                    encoded_bytes(values, start, end),
                )?;
            }
        }
    }
    Ok(())
}

/// For a list array, its elements and the range of them that rows `start..end` hold.
fn elements(list: &dyn Array, start: usize, end: usize) -> Option<(&ArrayRef, usize, usize)> {
    match list.data_type() {
        DataType::List(_) => {
            let list = list.as_list::<i32>();
            let o = list.value_offsets();
            Some((list.values(), o[start] as usize, o[end] as usize))
        }
        DataType::LargeList(_) => {
            let list = list.as_list::<i64>();
            let o = list.value_offsets();
            Some((list.values(), o[start] as usize, o[end] as usize))
        }
        DataType::FixedSizeList(_, n) => {
            let n = *n as usize;
            Some((list.as_fixed_size_list().values(), start * n, end * n))
        }
        _ => None,
    }
}

fn decimals_fit(values: &ArrayRef) -> Result<()> {
    const MAX_MANTISSA: u128 = (1u128 << 96) - 1;
    let decimals = values.as_primitive::<Decimal128Type>();
    let too_big = decimals.scale() > 28
        || decimals
            .iter()
            .flatten()
            .any(|v| v.unsigned_abs() > MAX_MANTISSA);
    if too_big {
        return Err(DataFusionError::External(Box::new(SqlError::coded(
            "22003",
            "a numeric array element is too large to send (more than 28 digits)",
        ))));
    }
    Ok(())
}

/// Bytes an element other than text or binary may take while it is encoded: its slot in
/// the library's vector of elements (16) and its text with a separator (a timestamp with a
/// time zone, the longest, is 33).
const ELEMENT_BYTES: u64 = 64;

/// An upper bound on the memory the encoding of elements `start..end` of `values` takes.
fn encoded_bytes(values: &ArrayRef, start: usize, end: usize) -> u64 {
    let n = end.saturating_sub(start) as u64;
    if let Some((inner, s, e)) = elements(values.as_ref(), start, end) {
        return (n * ELEMENT_BYTES).saturating_add(encoded_bytes(inner, s, e));
    }
    // Text and binary are escaped (at most doubled: `"` and `\` take a backslash, bytes
    // two hex digits) and quoted.
    let bytes = match values.data_type() {
        DataType::Utf8 => {
            let o = values.as_string::<i32>().value_offsets();
            (o[end] - o[start]) as u64
        }
        DataType::LargeUtf8 => {
            let o = values.as_string::<i64>().value_offsets();
            (o[end] - o[start]) as u64
        }
        DataType::Binary => {
            let o = values.as_binary::<i32>().value_offsets();
            (o[end] - o[start]) as u64
        }
        DataType::LargeBinary => {
            let o = values.as_binary::<i64>().value_offsets();
            (o[end] - o[start]) as u64
        }
        DataType::Utf8View => {
            let views = values.as_string_view();
            (start..end).map(|i| views.value(i).len() as u64).sum()
        }
        _ => 0,
    };
    bytes.saturating_mul(2).saturating_add(n * ELEMENT_BYTES)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{Int64Array, ListArray, StringArray};
    use datafusion::arrow::buffer::OffsetBuffer;
    use datafusion::arrow::datatypes::{Field, Schema};

    use flashsql_udfs::limits::MAX_RESULT_BYTES;

    use super::*;

    const LIMIT: u64 = MAX_RESULT_BYTES;

    fn batch_of(list: ListArray) -> RecordBatch {
        let schema = Schema::new(vec![Field::new("a", list.data_type().clone(), true)]);
        RecordBatch::try_new(Arc::new(schema), vec![Arc::new(list)]).expect("batch")
    }

    /// One row of 4.2M integers could take 268 MB to encode and fails with 54000; the same
    /// elements spread over 1,000 rows, and a row just under the bound, are sent.
    #[test]
    fn an_array_too_large_to_encode_is_refused_before_it_is_encoded() {
        let n = (LIMIT / ELEMENT_BYTES + 1) as usize;
        let item = Arc::new(Field::new("item", DataType::Int64, true));
        let values = Arc::new(Int64Array::from(vec![1i64; n]));
        let one = ListArray::new(
            item.clone(),
            OffsetBuffer::from_lengths([n]),
            values.clone(),
            None,
        );
        let err = values_fit(&batch_of(one)).expect_err("too large");
        assert!(err.to_string().contains("more than the 256 MiB"), "{err}");
        let rows = 1_000;
        let spread = ListArray::new(
            item.clone(),
            OffsetBuffer::from_lengths(std::iter::repeat_n(n / rows, rows)),
            Arc::new(Int64Array::from(vec![1i64; n / rows * rows])),
            None,
        );
        values_fit(&batch_of(spread)).expect("many small arrays");
        let under = ListArray::new(
            item,
            OffsetBuffer::from_lengths([n - 1]),
            Arc::new(Int64Array::from(vec![1i64; n - 1])),
            None,
        );
        values_fit(&batch_of(under)).expect("at the bound");
    }

    /// Text elements count their bytes, doubled for escaping.
    #[test]
    fn text_elements_count_their_bytes() {
        let long = "x".repeat((LIMIT / 2) as usize);
        let item = Arc::new(Field::new("item", DataType::Utf8, true));
        let list = ListArray::new(
            item,
            OffsetBuffer::from_lengths([1]),
            Arc::new(StringArray::from(vec![long.as_str()])),
            None,
        );
        assert!(values_fit(&batch_of(list)).is_err());
    }
}
