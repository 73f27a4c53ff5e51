//! `string_agg(text, delimiter)` whose memory the pool sees as it grows, with the result-size
//! limit of [`crate::limits`].
//!
//! DataFusion's own accumulators for the plain form (no DISTINCT, no ORDER BY) grow each
//! group's `String` by doubling, and the grouped one reports the strings' lengths rather than
//! their capacities: the aggregate's reservation saw half of what was held, so
//! `string_agg(…) FROM generate_series(1, 2147483647) GROUP BY 1` took the server from 89 MB to
//! 742 MB under a 256 MiB pool and ran into the statement timeout instead of failing with
//! 53200. Here every group's value grows by doubling only up to
//! [`MAX_RESULT_BYTES`](crate::limits::MAX_RESULT_BYTES) (a longer value fails with 54000, as a
//! `repeat` of that size does), and the accumulators report the capacities they hold, so the
//! pool refuses (53200) before the process grows past it. The DISTINCT and ORDER BY forms keep
//! DataFusion's accumulators (they collect an array, sized by `array_agg`).

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, LargeStringArray, LargeStringBuilder,
};
use datafusion::arrow::compute::{cast, not, nullif, prep_null_mask_filter};
use datafusion::arrow::datatypes::{DataType, FieldRef};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::functions_aggregate::string_agg::StringAgg;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Documentation, EmitTo, GroupsAccumulator,
    ReversedUDAF, Signature,
};
use datafusion::physical_expr::expressions::Literal;

use crate::error::{FunctionError, user_error};
use crate::limits::MAX_RESULT_BYTES;

/// `string_agg`, registered in place of DataFusion's.
pub fn udaf() -> AggregateUDF {
    AggregateUDF::from(LimitedStringAgg::default())
}

/// DataFusion's `string_agg` (signature, types, states, the DISTINCT/ORDER BY forms) with
/// accumulators of our own for the plain form.
#[derive(Debug, Default, PartialEq, Eq, Hash)]
pub struct LimitedStringAgg {
    inner: StringAgg,
}

/// Whether `args` is the plain form, which our accumulators serve.
fn plain(args: &AccumulatorArgs) -> bool {
    !args.is_distinct && args.order_bys.is_empty()
}

/// The delimiter, which must be a text literal (NULL joins with nothing), as DataFusion's.
fn delimiter(args: &AccumulatorArgs) -> Result<String> {
    let Some(literal) = args.exprs.get(1).and_then(|e| e.downcast_ref::<Literal>()) else {
        return Err(user_error(
            "string_agg: the delimiter must be a text literal",
        ));
    };
    match literal.value().try_as_str() {
        Some(s) => Ok(s.unwrap_or("").to_string()),
        None if literal.value().is_null() => Ok(String::new()),
        None => Err(user_error(format!(
            "string_agg: the delimiter must be text, not {}",
            literal.value().data_type()
        ))),
    }
}

impl AggregateUDFImpl for LimitedStringAgg {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        self.inner.state_fields(args)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        if plain(&args) {
            Ok(Box::new(Joined::new(delimiter(&args)?)))
        } else {
            self.inner.accumulator(args)
        }
    }

    fn reverse_expr(&self) -> ReversedUDAF {
        ReversedUDAF::Reversed(Arc::new(udaf()))
    }

    fn groups_accumulator_supported(&self, args: AccumulatorArgs) -> bool {
        plain(&args)
    }

    fn create_groups_accumulator(
        &self,
        args: AccumulatorArgs,
    ) -> Result<Box<dyn GroupsAccumulator>> {
        Ok(Box::new(GroupsJoined::new(delimiter(&args)?)))
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
}

/// Appends `delimiter` (unless `value` is the first) and `value` to `into`, growing its
/// capacity by doubling up to the result limit; returns by how many bytes the capacity grew.
fn append(into: &mut Option<String>, delimiter: &str, value: &str) -> Result<usize> {
    let Some(joined) = into else {
        check_length(value.len())?;
        let first = value.to_string();
        let held = first.capacity();
        *into = Some(first);
        return Ok(held);
    };
    let needed = joined.len() + delimiter.len() + value.len();
    check_length(needed)?;
    let before = joined.capacity();
    if needed > before {
        // Doubling keeps appends amortised; the cap keeps a value near the limit from taking
        // twice the limit.
        let target = needed.max(before.saturating_mul(2).min(MAX_RESULT_BYTES as usize));
        joined.reserve_exact(target - joined.len());
    }
    joined.push_str(delimiter);
    joined.push_str(value);
    Ok(joined.capacity() - before)
}

fn check_length(bytes: usize) -> Result<()> {
    if bytes as u64 > MAX_RESULT_BYTES {
        return Err(FunctionError::TooLarge(format!(
            "string_agg: the result would take more than the {} MiB a value may take",
            MAX_RESULT_BYTES >> 20
        ))
        .into());
    }
    Ok(())
}

/// Calls `f` with each text of `array` (any string type, as DataFusion's accepts).
fn for_each_text(
    array: &ArrayRef,
    mut f: impl FnMut(usize, Option<&str>) -> Result<()>,
) -> Result<()> {
    match array.data_type() {
        DataType::Utf8 => {
            for (i, v) in array.as_string::<i32>().iter().enumerate() {
                f(i, v)?;
            }
        }
        DataType::LargeUtf8 => {
            for (i, v) in array.as_string::<i64>().iter().enumerate() {
                f(i, v)?;
            }
        }
        DataType::Utf8View => {
            for (i, v) in array.as_string_view().iter().enumerate() {
                f(i, v)?;
            }
        }
        DataType::Null => {}
        other => {
            return Err(user_error(format!(
                "string_agg: expected text to join, not {other}"
            )));
        }
    }
    Ok(())
}

/// The ungrouped plain form: one joined value.
#[derive(Debug)]
struct Joined {
    delimiter: String,
    joined: Option<String>,
}

impl Joined {
    fn new(delimiter: String) -> Self {
        Self {
            delimiter,
            joined: None,
        }
    }
}

impl Accumulator for Joined {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let Some(values) = values.first() else {
            return Ok(());
        };
        let Self { delimiter, joined } = self;
        for_each_text(values, |_, v| match v {
            Some(v) => append(joined, delimiter, v).map(|_| ()),
            None => Ok(()),
        })
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::LargeUtf8(self.joined.clone()))
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + self.delimiter.capacity()
            + self.joined.as_ref().map_or(0, String::capacity)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![ScalarValue::LargeUtf8(self.joined.take())])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.update_batch(states)
    }
}

/// The grouped plain form: one joined value per group, and the bytes their capacities hold.
#[derive(Debug)]
struct GroupsJoined {
    delimiter: String,
    joined: Vec<Option<String>>,
    held: usize,
}

impl GroupsJoined {
    fn new(delimiter: String) -> Self {
        Self {
            delimiter,
            joined: Vec::new(),
            held: 0,
        }
    }
}

impl GroupsAccumulator for GroupsJoined {
    fn update_batch(
        &mut self,
        values: &[ArrayRef],
        group_indices: &[usize],
        opt_filter: Option<&BooleanArray>,
        total_num_groups: usize,
    ) -> Result<()> {
        self.joined.resize(total_num_groups, None);
        let Some(values) = values.first() else {
            return Ok(());
        };
        let Self {
            delimiter,
            joined,
            held,
        } = self;
        for_each_text(values, |row, v| {
            let (Some(v), Some(&group)) = (v, group_indices.get(row)) else {
                return Ok(());
            };
            if opt_filter.is_some_and(|f| !f.is_valid(row) || !f.value(row)) {
                return Ok(());
            }
            let Some(slot) = joined.get_mut(group) else {
                return Err(user_error(format!(
                    "string_agg: group {group} out of {total_num_groups}"
                )));
            };
            *held += append(slot, delimiter, v)?;
            Ok(())
        })
    }

    fn evaluate(&mut self, emit_to: EmitTo) -> Result<ArrayRef> {
        let emitted = emit_to.take_needed(&mut self.joined);
        let (mut values, mut bytes) = (0, 0);
        for v in emitted.iter().flatten() {
            self.held -= v.capacity();
            values += 1;
            bytes += v.len();
        }
        let mut out = LargeStringBuilder::with_capacity(values, bytes);
        for v in emitted {
            out.append_option(v);
        }
        Ok(Arc::new(out.finish()))
    }

    fn state(&mut self, emit_to: EmitTo) -> Result<Vec<ArrayRef>> {
        Ok(vec![self.evaluate(emit_to)?])
    }

    fn merge_batch(
        &mut self,
        states: &[ArrayRef],
        group_indices: &[usize],
        total_num_groups: usize,
    ) -> Result<()> {
        self.update_batch(states, group_indices, None, total_num_groups)
    }

    fn convert_to_state(
        &self,
        values: &[ArrayRef],
        opt_filter: Option<&BooleanArray>,
    ) -> Result<Vec<ArrayRef>> {
        let Some(values) = values.first() else {
            return Ok(vec![Arc::new(LargeStringArray::new_null(0))]);
        };
        let text = cast(values, &DataType::LargeUtf8)?;
        let text = match opt_filter {
            // A filtered-out row's state is NULL (no value to join).
            Some(filter) => {
                let keep = if filter.null_count() > 0 {
                    prep_null_mask_filter(filter)
                } else {
                    filter.clone()
                };
                nullif(&text, &not(&keep)?)?
            }
            None => text,
        };
        Ok(vec![text])
    }

    fn size(&self) -> usize {
        size_of_val(self)
            + self.delimiter.capacity()
            + self.joined.capacity() * size_of::<Option<String>>()
            + self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::StringArray;

    fn texts(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    fn sqlstate(e: &datafusion::error::DataFusionError) -> Option<&'static str> {
        match e {
            datafusion::error::DataFusionError::External(inner) => inner
                .downcast_ref::<FunctionError>()
                .map(FunctionError::sqlstate),
            _ => None,
        }
    }

    #[test]
    fn joins_like_postgres_skipping_nulls() -> Result<()> {
        let mut acc = Joined::new(", ".into());
        assert_eq!(acc.evaluate()?, ScalarValue::LargeUtf8(None));
        acc.update_batch(&[texts(&[Some("a"), None, Some("b")])])?;
        acc.update_batch(&[texts(&[None, Some("")])])?;
        assert_eq!(
            acc.evaluate()?,
            ScalarValue::LargeUtf8(Some("a, b, ".into()))
        );

        let mut groups = GroupsJoined::new("-".into());
        groups.update_batch(
            &[texts(&[Some("x"), Some("y"), None, Some("z")])],
            &[0, 1, 2, 0],
            None,
            3,
        )?;
        let filter = BooleanArray::from(vec![Some(true), Some(false), None]);
        groups.update_batch(
            &[texts(&[Some("w"), Some("v"), Some("u")])],
            &[1, 2, 2],
            Some(&filter),
            3,
        )?;
        let out = groups.evaluate(EmitTo::All)?;
        let out = out.as_string::<i64>();
        assert_eq!(out.value(0), "x-z");
        assert_eq!(out.value(1), "y-w");
        assert!(
            out.is_null(2),
            "a group whose rows were all NULL or filtered is NULL"
        );
        assert_eq!(groups.held, 0, "emitted groups leave the reported size");
        Ok(())
    }

    #[test]
    fn partial_states_merge_into_the_same_value() -> Result<()> {
        let (mut left, mut right) = (GroupsJoined::new(",".into()), GroupsJoined::new(",".into()));
        left.update_batch(&[texts(&[Some("a"), Some("b")])], &[0, 1], None, 2)?;
        right.update_batch(&[texts(&[Some("c"), Some("d")])], &[1, 0], None, 2)?;
        let states = [left.state(EmitTo::All)?, right.state(EmitTo::All)?];
        let mut total = GroupsJoined::new(",".into());
        for s in &states {
            total.merge_batch(s, &[0, 1], 2)?;
        }
        let out = total.evaluate(EmitTo::All)?;
        assert_eq!(out.as_string::<i64>().value(0), "a,d");
        assert_eq!(out.as_string::<i64>().value(1), "b,c");

        let converted = total.convert_to_state(
            &[texts(&[Some("p"), Some("q")])],
            Some(&BooleanArray::from(vec![false, true])),
        )?;
        assert!(converted[0].is_null(0));
        assert_eq!(converted[0].as_string::<i64>().value(1), "q");
        Ok(())
    }

    /// The reported size covers every byte of capacity held, so the pool sees what the
    /// process holds (DataFusion's grouped accumulator reported lengths: up to half).
    #[test]
    fn reported_size_covers_capacity() -> Result<()> {
        let mut groups = GroupsJoined::new("|".into());
        let rows: Vec<Option<&str>> = vec![Some("0123456789"); 1000];
        for _ in 0..50 {
            groups.update_batch(&[texts(&rows)], &vec![0; 1000], None, 1)?;
            let capacity: usize = groups.joined.iter().flatten().map(String::capacity).sum();
            assert_eq!(groups.held, capacity);
            assert!(groups.size() >= capacity);
        }
        let mut one = Joined::new("|".into());
        one.update_batch(&[texts(&rows)])?;
        assert!(one.size() >= one.joined.as_ref().map_or(0, String::capacity));
        Ok(())
    }

    #[test]
    fn a_value_past_the_limit_fails_with_54000() -> Result<()> {
        let chunk = "x".repeat(1 << 20);
        let rows: Vec<Option<&str>> = vec![Some(chunk.as_str()); 64];
        let mut groups = GroupsJoined::new(String::new());
        let mut result = Ok(());
        for _ in 0..5 {
            result = groups.update_batch(&[texts(&rows)], &vec![0; 64], None, 1);
            if result.is_err() {
                break;
            }
        }
        let err = result.expect_err("320 MiB in one group passes the 256 MiB limit");
        assert_eq!(sqlstate(&err), Some("54000"), "{err}");
        let held: usize = groups.joined.iter().flatten().map(String::capacity).sum();
        assert!(
            held as u64 <= MAX_RESULT_BYTES,
            "capacity stops at the limit: {held}"
        );
        Ok(())
    }
}
