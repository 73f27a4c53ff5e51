//! `ttest_from_stats(sum_c, sum_squares_c, n_c, sum_t, sum_squares_t, n_t [, alpha])`:
//! Welch's test on an experiment table kept pre-aggregated, one row per comparison.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StructArray};
use datafusion::arrow::datatypes::{DataType, Fields, Float64Type};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
};

use super::aggregates::Test;
use super::stats::{self, Summary};
use crate::aggregate_state::{named_signature, scalar_or_array};
use crate::error::user_error;

pub(super) const NAME: &str = "ttest_from_stats";
pub(super) const PARAMS: [&str; 7] = [
    "sum_control",
    "sum_squares_control",
    "n_control",
    "sum_treatment",
    "sum_squares_treatment",
    "n_treatment",
    "alpha",
];

pub fn udf() -> ScalarUDF {
    ScalarUDF::from(TTestFromStats {
        signature: named_signature(&PARAMS),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TTestFromStats {
    signature: Signature,
}

/// `ttest`'s struct without the variant names, which a table of sums does not carry.
fn fields() -> Fields {
    Test::TTest.fields().iter().skip(2).cloned().collect()
}

impl ScalarUDFImpl for TTestFromStats {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if !(6..=7).contains(&arg_types.len()) {
            return Err(user_error(format!(
                "{NAME} takes 6 or 7 arguments ({}), got {}",
                PARAMS.join(", "),
                arg_types.len()
            )));
        }
        Ok(vec![DataType::Float64; arg_types.len()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(fields()))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let cols: Vec<_> = arrays
            .iter()
            .map(|a| a.as_primitive::<Float64Type>())
            .collect();
        let fields = fields();
        let mut columns: Vec<Vec<Option<f64>>> = vec![Vec::with_capacity(rows); fields.len()];
        let mut valid = Vec::with_capacity(rows);
        for r in 0..rows {
            if cols.iter().take(6).any(|c| c.is_null(r)) {
                valid.push(false);
                columns.iter_mut().for_each(|c| c.push(None));
                continue;
            }
            let alpha = match cols.get(6) {
                Some(c) if !c.is_null(r) => c.value(r),
                _ => 0.05,
            };
            if !(alpha > 0.0 && alpha < 1.0) {
                return Err(user_error(format!(
                    "{NAME}: alpha must be between 0 and 1 (exclusive), got {alpha}"
                )));
            }
            let v = |i: usize| cols[i].value(r);
            for (n, what) in [(v(2), "n_control"), (v(5), "n_treatment")] {
                if !(n >= 1.0 && n.fract() == 0.0 && n.is_finite()) {
                    return Err(user_error(format!(
                        "{NAME}: {what} must be a positive whole number, got {n}"
                    )));
                }
            }
            let c = Summary::from_sums(v(0), v(1), v(2));
            let t = Summary::from_sums(v(3), v(4), v(5));
            let (abs, rel) = stats::welch(c, t, alpha);
            let nan = f64::NAN;
            let rel = rel.map_or([nan; 4], |e| [e.estimate, e.ci_low, e.ci_high, e.p_value]);
            let values = [
                c.n,
                t.n,
                c.mean,
                t.mean,
                c.variance,
                t.variance,
                abs.estimate,
                abs.ci_low,
                abs.ci_high,
                abs.statistic,
                abs.df.unwrap_or(nan),
                abs.p_value,
            ]
            .into_iter()
            .chain(rel);
            for (column, x) in columns.iter_mut().zip(values) {
                column.push(x.is_finite().then_some(x));
            }
            valid.push(true);
        }
        let arrays = fields
            .iter()
            .zip(columns)
            .map(|(f, values)| {
                let array: ArrayRef =
                    Arc::new(datafusion::arrow::array::Float64Array::from(values));
                Ok(datafusion::arrow::compute::cast(&array, f.data_type())?)
            })
            .collect::<Result<Vec<ArrayRef>>>()?;
        let nulls = datafusion::arrow::buffer::NullBuffer::from(valid);
        let array = StructArray::try_new(fields, arrays, Some(nulls))?;
        scalar_or_array(&args.args, Arc::new(array))
    }
}
