//! Size limits on the built-in functions whose result size an argument chooses.
//!
//! `repeat('x', 1000000000)`, `lpad('x', 2147483647)` or `array_repeat(1, 2147483647)` ask
//! for gigabytes in one allocation, outside the memory pool: the allocation fails and aborts
//! the process, or succeeds and runs on after the statement was cancelled (the function does
//! not yield). Like PostgreSQL ("requested length too large", SQLSTATE 54000), the wrapped
//! functions refuse a batch whose result would exceed a fixed size before computing it.
//! The estimate is an upper bound computed from the arguments alone.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::kernels::length::length;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::{
    DataType, FieldRef, Int64Type, IntervalMonthDayNanoType, IntervalUnit, TimeUnit,
    TimestampMicrosecondType,
};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::prelude::SessionContext;

use crate::error::FunctionError;

/// The most bytes one batch of a wrapped function's results may take. PostgreSQL's largest
/// value is 1 GB; this is lower so that a few such values combined (`repeat(…) || repeat(…)`)
/// still fit Arrow's 2 GiB per string array and the machine's memory.
pub const MAX_RESULT_BYTES: u64 = 256 << 20;

/// Refuses (54000) a batch of `what`'s results that would take more than
/// [`MAX_RESULT_BYTES`].
pub fn check_result_bytes(what: &str, bytes: u64) -> Result<()> {
    if bytes > MAX_RESULT_BYTES {
        return Err(FunctionError::TooLarge(format!(
            "{what}: the result would take {} MiB, more than the {} MiB a batch of results may take",
            bytes >> 20,
            MAX_RESULT_BYTES >> 20
        ))
        .into());
    }
    Ok(())
}

/// How a function's result size follows from its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text's bytes times n.
    Repeat,
    /// `lpad/rpad(text, n [, fill])`: n characters of at most 4 bytes.
    Pad,
    /// `array_repeat(element, n)`: n elements (of 8 bytes, as a floor).
    ArrayRepeat,
    /// `array_resize(list, n [, value])`: n elements.
    Resize,
    /// `range/generate_series(start, stop [, step])`: (stop − start) / step elements.
    Series,
    /// `array_to_string(list, separator [, null_text])`: every element's text and a
    /// separator (or the NULL text) per element.
    Join,
    /// `concat(a, …)`: every argument's text; `concat_ws(separator, a, …)`: and the
    /// separator between them.
    Concat,
    ConcatWs,
}

impl Growth {
    fn of(name: &str) -> Option<Growth> {
        Some(match name {
            "repeat" => Growth::Repeat,
            "lpad" | "rpad" => Growth::Pad,
            "array_repeat" => Growth::ArrayRepeat,
            "array_resize" => Growth::Resize,
            "range" | "generate_series" => Growth::Series,
            "array_to_string" => Growth::Join,
            "concat" => Growth::Concat,
            "concat_ws" => Growth::ConcatWs,
            _ => return None,
        })
    }
}

/// A built-in function with its result size checked first.
#[derive(Debug)]
struct SizeLimited {
    inner: Arc<ScalarUDF>,
    growth: Growth,
}

impl PartialEq for SizeLimited {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner && self.growth == other.growth
    }
}

impl Eq for SizeLimited {}

impl std::hash::Hash for SizeLimited {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.hash(state);
        self.growth.hash(state);
    }
}

/// `v` as one Int64 value per row (NULL where it is NULL or cannot be cast).
fn int64s(v: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    let array = v.to_array(rows)?;
    Ok(cast_with_options(
        &array,
        &DataType::Int64,
        &CastOptions {
            safe: true,
            ..Default::default()
        },
    )?)
}

/// The byte length of each string (NULL for NULL).
fn byte_lengths(v: &ColumnarValue, rows: usize) -> Result<ArrayRef> {
    let array = v.to_array(rows)?;
    let array = match array.data_type() {
        DataType::Utf8View => cast_with_options(&array, &DataType::Utf8, &CastOptions::default())?,
        _ => array,
    };
    Ok(cast_with_options(
        &length(&array)?,
        &DataType::Int64,
        &CastOptions::default(),
    )?)
}

/// The bytes of text `v` takes over `rows` rows, without building a scalar's broadcast.
pub(crate) fn text_bytes(v: &ColumnarValue, rows: usize) -> u64 {
    match v {
        ColumnarValue::Scalar(s) => match s {
            ScalarValue::Utf8(Some(t))
            | ScalarValue::Utf8View(Some(t))
            | ScalarValue::LargeUtf8(Some(t)) => (t.len() as u64).saturating_mul(rows as u64),
            _ => 0,
        },
        ColumnarValue::Array(a) => match a.data_type() {
            DataType::Utf8 => {
                let s = a.as_string::<i32>();
                let offsets = s.value_offsets();
                (offsets[offsets.len() - 1] - offsets[0]) as u64
            }
            DataType::LargeUtf8 => {
                let s = a.as_string::<i64>();
                let offsets = s.value_offsets();
                (offsets[offsets.len() - 1] - offsets[0]) as u64
            }
            DataType::Utf8View => a
                .as_string_view()
                .views()
                .iter()
                .map(|v| u64::from(*v as u32))
                .sum(),
            _ => 0,
        },
    }
}

/// The text of `args` joined, over `rows` rows: their text, and at most 40 bytes a row for
/// each argument that is not text (a number's or a date's text).
fn concatenated_bytes(args: &[ColumnarValue], rows: usize) -> u64 {
    args.iter().fold(0u64, |sum, a| {
        let bytes = match a.data_type() {
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => text_bytes(a, rows),
            _ => (rows as u64).saturating_mul(40),
        };
        sum.saturating_add(bytes)
    })
}

/// The 8-byte `take` index each element of a repeated or resized list is copied through.
const TAKE_INDEX: u64 = 8;

/// The bytes one copy of row `i`'s value of `v` takes in a repeated list, with its take
/// index (array_repeat builds its values with `take`): a fixed width, a constant's size, a
/// text's or binary's bytes with its offset and view, the average row of any other column.
fn element_bytes(v: &ColumnarValue, rows: usize) -> Result<Box<dyn Fn(usize) -> u64>> {
    if let Some(width) = v.data_type().primitive_width() {
        let size = width as u64 + TAKE_INDEX;
        return Ok(Box::new(move |_| size));
    }
    Ok(match v {
        ColumnarValue::Scalar(s) => {
            let size = s.size() as u64 + TAKE_INDEX;
            Box::new(move |_| size)
        }
        ColumnarValue::Array(a)
            if matches!(
                a.data_type(),
                DataType::Utf8
                    | DataType::LargeUtf8
                    | DataType::Utf8View
                    | DataType::Binary
                    | DataType::LargeBinary
            ) =>
        {
            let lengths = byte_lengths(v, rows)?;
            Box::new(move |i| count_at(&lengths, i).saturating_add(16 + TAKE_INDEX))
        }
        ColumnarValue::Array(a) => {
            let average = (a.get_array_memory_size() / a.len().max(1)) as u64 + 1 + TAKE_INDEX;
            Box::new(move |_| average)
        }
    })
}

/// The bytes each element of a resized list takes: its element type's width (16 where the
/// width varies), and its take index.
fn list_element_bytes(list: &ColumnarValue) -> u64 {
    let width = match list.data_type() {
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            f.data_type().primitive_width().unwrap_or(16) as u64
        }
        _ => 16,
    };
    width + TAKE_INDEX
}

/// Sum over rows of `per_row(i)`, saturating.
fn total(rows: usize, per_row: impl Fn(usize) -> u64) -> u64 {
    (0..rows).fold(0u64, |acc, i| acc.saturating_add(per_row(i)))
}

fn count_at(a: &ArrayRef, i: usize) -> u64 {
    let a = a.as_primitive::<Int64Type>();
    if a.is_null(i) {
        0
    } else {
        a.value(i).max(0) as u64
    }
}

/// Each row's value on one scale, once per batch: integers as they are, dates and timestamps
/// as nanoseconds since the epoch (None for NULL).
fn points(v: &ColumnarValue, rows: usize) -> Result<Vec<Option<i128>>> {
    let temporal = matches!(
        v.data_type(),
        DataType::Date32 | DataType::Date64 | DataType::Timestamp(..)
    );
    if !temporal {
        let a = int64s(v, rows)?;
        return Ok(a
            .as_primitive::<Int64Type>()
            .iter()
            .map(|x| x.map(i128::from))
            .collect());
    }
    // Microseconds cover every date and timestamp without overflow.
    let us = cast_with_options(
        &v.to_array(rows)?,
        &DataType::Timestamp(TimeUnit::Microsecond, None),
        &CastOptions::default(),
    )?;
    Ok(us
        .as_primitive::<TimestampMicrosecondType>()
        .iter()
        .map(|x| x.map(|us| i128::from(us) * 1000))
        .collect())
}

/// Each row's step on the scale of [`points`]: integers as they are, intervals as the
/// nanoseconds they span at least (a month as 28 days).
fn steps(v: &ColumnarValue, rows: usize) -> Result<Vec<Option<i128>>> {
    if !matches!(v.data_type(), DataType::Interval(_)) {
        return points(v, rows);
    }
    let a = cast_with_options(
        &v.to_array(rows)?,
        &DataType::Interval(IntervalUnit::MonthDayNano),
        &CastOptions::default(),
    )?;
    const DAY: i128 = 86_400_000_000_000;
    Ok(a.as_primitive::<IntervalMonthDayNanoType>()
        .iter()
        .map(|x| {
            x.map(|x| {
                i128::from(x.months) * 28 * DAY
                    + i128::from(x.days) * DAY
                    + i128::from(x.nanoseconds)
            })
        })
        .collect())
}

impl SizeLimited {
    /// An upper bound of the bytes this batch's results take.
    fn result_bytes(&self, args: &[ColumnarValue], rows: usize) -> Result<u64> {
        let arg = |k: usize| args.get(k);
        Ok(match (self.growth, arg(0), arg(1)) {
            (Growth::Repeat, Some(text), Some(n)) => {
                let (lens, counts) = (byte_lengths(text, rows)?, int64s(n, rows)?);
                total(rows, |i| {
                    count_at(&lens, i).saturating_mul(count_at(&counts, i))
                })
            }
            (Growth::Pad, Some(_), Some(n)) => {
                let counts = int64s(n, rows)?;
                total(rows, |i| count_at(&counts, i).saturating_mul(4))
            }
            (Growth::ArrayRepeat, Some(value), Some(n))
            | (Growth::Resize, Some(value), Some(n)) => {
                let counts = int64s(n, rows)?;
                // array_resize cannot shrink below nothing (the function itself reports a
                // negative size as an internal error).
                if self.growth == Growth::Resize
                    && let Some(bad) = counts
                        .as_primitive::<Int64Type>()
                        .iter()
                        .flatten()
                        .find(|n| *n < 0)
                {
                    return Err(crate::error::user_error(format!(
                        "array_resize(): the new size must not be negative, got {bad}"
                    )));
                }
                let element: Box<dyn Fn(usize) -> u64> = if self.growth == Growth::Resize {
                    let size = list_element_bytes(value);
                    Box::new(move |_| size)
                } else {
                    element_bytes(value, rows)?
                };
                total(rows, |i| count_at(&counts, i).saturating_mul(element(i)))
            }
            (Growth::Concat, _, _) => concatenated_bytes(args, rows),
            (Growth::ConcatWs, Some(separator), _) => {
                let between = args.len().saturating_sub(2) as u64;
                text_bytes(separator, rows)
                    .saturating_mul(between)
                    .saturating_add(concatenated_bytes(&args[1..], rows))
            }
            (Growth::Series, Some(start), Some(stop)) => {
                self.series_bytes(args, start, stop, rows)?
            }
            (Growth::Join, Some(list), Some(separator)) => {
                let list = list.to_array(rows)?;
                let separators = byte_lengths(separator, rows)?;
                let nulls = match arg(2) {
                    Some(n) => Some(byte_lengths(n, rows)?),
                    None => None,
                };
                let mut sum = 0u64;
                for i in 0..rows {
                    let (elements, text) = text_bound(&list, i);
                    let per_element = count_at(&separators, i)
                        .saturating_add(nulls.as_ref().map_or(0, |n| count_at(n, i)));
                    sum = sum
                        .saturating_add(text.saturating_add(elements.saturating_mul(per_element)));
                }
                sum
            }
            _ => 0,
        })
    }

    /// `range`/`generate_series`: (stop − start) / step + 1 elements per row; without a
    /// step, 1 (or a day for dates and timestamps); `range(stop)` counts from 0.
    fn series_bytes(
        &self,
        args: &[ColumnarValue],
        start: &ColumnarValue,
        stop: &ColumnarValue,
        rows: usize,
    ) -> Result<u64> {
        if args.len() == 1 {
            let stops = int64s(start, rows)?;
            return Ok(total(rows, |i| count_at(&stops, i).saturating_mul(8)));
        }
        let (starts, stops) = (points(start, rows)?, points(stop, rows)?);
        let default_step = match start.data_type() {
            DataType::Date32 | DataType::Date64 | DataType::Timestamp(..) => 86_400_000_000_000,
            _ => 1,
        };
        let steps = match args.get(2) {
            Some(s) => steps(s, rows)?,
            None => vec![Some(default_step); rows],
        };
        Ok(total(rows, |i| {
            let (Some(a), Some(b), Some(step)) = (starts[i], stops[i], steps[i]) else {
                return 0;
            };
            let span = b - a;
            // A zero step, or one pointing away from `stop`, is the function's own error or
            // an empty list.
            if step == 0 || (span > 0) != (step > 0) {
                return 0;
            }
            let count = (span / step).unsigned_abs().saturating_add(1);
            u64::try_from(count).unwrap_or(u64::MAX).saturating_mul(8)
        }))
    }
}

impl ScalarUDFImpl for SizeLimited {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        // An empty batch (a filter can leave one) has nothing to size: its arrays have no
        // row 0 to read. Constant arguments make one value whatever the batch, even an
        // empty one: a constant IN list is evaluated once on an empty batch when it is
        // planned, and `5 IN (cardinality(array_resize([1], 2147483647)))` built 17 GB
        // there, past the statement's cancellation.
        let constant = args
            .args
            .iter()
            .all(|a| matches!(a, ColumnarValue::Scalar(_)));
        let rows = if constant {
            args.number_rows.max(1)
        } else {
            args.number_rows
        };
        check_result_bytes(
            &format!("{}()", self.inner.name()),
            self.result_bytes(&args.args, rows)?,
        )?;
        let mut args = args;
        if self.growth == Growth::Pad
            && let Some(n) = args.args.get_mut(1)
        {
            // A negative length pads to nothing, as in PostgreSQL; the built-in panics on
            // a negative length in an array ("capacity overflow").
            *n = non_negative(n, args.number_rows)?;
        }
        self.inner.invoke_with_args(args)
    }
}

/// Row `i` of a list column: its leaf elements (nested lists flattened, as
/// `array_to_string` does) and an upper bound of their text — the bytes of strings, 80 per
/// other value (the longest number's text).
fn text_bound(list: &ArrayRef, i: usize) -> (u64, u64) {
    if list.is_null(i) {
        return (0, 0);
    }
    let values = match list.data_type() {
        DataType::List(_) => list.as_list::<i32>().value(i),
        DataType::LargeList(_) => list.as_list::<i64>().value(i),
        DataType::FixedSizeList(_, _) => list.as_fixed_size_list().value(i),
        _ => return (1, 80),
    };
    match values.data_type() {
        DataType::List(_) | DataType::LargeList(_) | DataType::FixedSizeList(_, _) => (0..values
            .len())
            .map(|j| text_bound(&values, j))
            .fold((0, 0), |(a, b), (c, d)| {
                (a.saturating_add(c), b.saturating_add(d))
            }),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let lens = byte_lengths(&ColumnarValue::Array(values.clone()), values.len())
                .unwrap_or_else(|_| {
                    Arc::new(datafusion::arrow::array::Int64Array::from(vec![
                        0i64;
                        values.len()
                    ]))
                });
            (
                values.len() as u64,
                total(values.len(), |j| count_at(&lens, j)),
            )
        }
        _ => (
            values.len() as u64,
            (values.len() as u64).saturating_mul(80),
        ),
    }
}

/// `v` with negative integers replaced by 0 (NULL stays NULL), as Int64.
fn non_negative(v: &ColumnarValue, rows: usize) -> Result<ColumnarValue> {
    let clamp = |x: Option<i64>| x.map(|x| x.max(0));
    Ok(match v {
        ColumnarValue::Scalar(s) => {
            let x = match s.cast_to(&DataType::Int64)? {
                datafusion::scalar::ScalarValue::Int64(x) => x,
                _ => None,
            };
            ColumnarValue::Scalar(datafusion::scalar::ScalarValue::Int64(clamp(x)))
        }
        ColumnarValue::Array(_) => {
            let a = int64s(v, rows)?;
            let clamped: datafusion::arrow::array::Int64Array =
                a.as_primitive::<Int64Type>().iter().map(clamp).collect();
            ColumnarValue::Array(Arc::new(clamped))
        }
    })
}

/// Replaces the session's size-choosing built-ins with size-limited versions.
pub fn register(ctx: &SessionContext) {
    let builtins: Vec<Arc<ScalarUDF>> = ctx.state().scalar_functions().values().cloned().collect();
    let mut seen = std::collections::HashSet::new();
    for f in builtins {
        let Some(growth) = Growth::of(f.name()) else {
            continue;
        };
        if !seen.insert(f.name().to_string()) {
            continue;
        }
        ctx.register_udf(ScalarUDF::new_from_impl(SizeLimited { inner: f, growth }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn code_of(ctx: &SessionContext, sql: &str) -> Option<&'static str> {
        let run = async { ctx.sql(sql).await?.collect().await };
        match run.await {
            Ok(_) => None,
            Err(e) => Some(match e.find_root() {
                datafusion::error::DataFusionError::External(x) => x
                    .downcast_ref::<FunctionError>()
                    .map(FunctionError::sqlstate)
                    .unwrap_or("other"),
                _ => "other",
            }),
        }
    }

    #[tokio::test]
    async fn results_over_the_limit_are_refused_before_they_are_built() {
        let ctx = SessionContext::new();
        register(&ctx);
        for sql in [
            "SELECT repeat('x', 1000000000)",
            "SELECT repeat('abcdefgh', 40000000)",
            "SELECT lpad('x', 2147483647)",
            "SELECT rpad('x', 2147483647, 'ab')",
            "SELECT array_repeat(1, 2147483647)",
            "SELECT array_to_string(array_repeat(1, 1000), repeat('x', 300000))",
            "SELECT array_resize([1], 2147483647)",
            "SELECT range(0, 9223372036854775807)",
            "SELECT generate_series(1, 1000000000)",
            "SELECT range(TIMESTAMP '1970-01-01 00:00:00', TIMESTAMP '2100-01-01 00:00:00', INTERVAL '1 second')",
            // Small per row, too much for a batch together.
            "SELECT repeat('x', 1000000 + value % 2) FROM range(1000)",
            // The SQL fuzzer's (seed 10): arrow's 2 GiB string column panicked.
            "SELECT array_to_string([value, 2, 3, 4, 5], repeat('x', 300000)) FROM range(1000)",
            // Each copy is a copy of the element's bytes (300 MB), and its take index.
            "SELECT array_repeat(repeat('x', 1000), 300000)",
            "SELECT array_repeat(CAST(value AS TEXT) || repeat('x', 1000), 3000) FROM range(100)",
            "SELECT array_repeat(30228, 30000000)",
            // Constant arguments on an empty batch: a constant IN list when it is planned.
            "SELECT 5 IN (46993, cardinality(array_resize([1], 40000000)))",
            "SELECT 5 IN (1, cardinality(array_repeat(1, 40000000)), length(repeat('x', 400000000)))",
        ] {
            assert_eq!(code_of(&ctx, sql).await, Some("54000"), "{sql}");
        }
        for sql in [
            "SELECT repeat('x', 1000)",
            "SELECT lpad('x', 10, 'ab')",
            "SELECT rpad(x, -2) FROM (VALUES ('ab'), ('c')) t(x)",
            // A negative length per row panicked in the built-in (found by the SQL fuzzer).
            "SELECT rpad(left('限时抢购', n), -1 * n) FROM (VALUES (1), (2), (3)) t(n)",
            "SELECT rpad(x, n, 'z') FROM (VALUES ('ab', -1), ('c', 2)) t(x, n)",
            "SELECT array_repeat(1, 3)",
            "SELECT array_repeat('abc', 1000), array_repeat([1, 2], 1000)",
            "SELECT cardinality(array_resize([value], 1000000)) FROM range(10)",
            "SELECT range(0, 10, 2)",
            "SELECT range(10, 0, 1)",
            "SELECT generate_series(DATE '2024-01-01', DATE '2024-02-01', INTERVAL '1 day')",
            "SELECT repeat(NULL, 5), repeat('x', NULL), repeat('x', -3)",
            "SELECT array_to_string([1, NULL, 3], ',', '*'), array_to_string([[1, 2], [3]], '-')",
            "SELECT array_to_string(['a', CAST(value AS TEXT)], repeat('x', 1000)) FROM range(1000)",
        ] {
            assert_eq!(code_of(&ctx, sql).await, None, "{sql}");
        }
        let rows = ctx
            .sql("SELECT repeat('ab', 3) AS r")
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
        assert_eq!(
            rows[0].column(0).as_string::<i32>().value(0),
            "ababab",
            "the wrapped function still computes"
        );
    }
}
