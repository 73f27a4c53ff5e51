//! Preprocessing before training, as window functions over a partition (`OVER (PARTITION BY
//! category)`, or `OVER ()` for the whole table): `standard_scaler`, `min_max_scaler`,
//! `robust_scaler`, `is_outlier` and `quantile_bucketize`; and the scalar `bucketize`.
//!
//! Definitions follow scikit-learn and numpy so that results can be compared directly:
//! standard = (x − mean) / std (ddof 0, `StandardScaler`); min-max = (x − min) / (max − min)
//! (`MinMaxScaler`); robust = (x − median) / (q75 − q25) (`RobustScaler`, linear
//! percentiles); a zero scale is taken as 1, as scikit-learn does, so a constant column
//! scales to 0. NULL and NaN inputs are left out of the statistics and give NULL.
//! `is_outlier(x, method, k)` is `x` outside [q25 − k·IQR, q75 + k·IQR] (`'iqr'`, k = 1.5) or
//! |z| > k (`'zscore'`, k = 3). `quantile_bucketize(x, n)` is numpy's
//! `searchsorted(quantile(x, [1/n … (n−1)/n]), x, side='right')`: 0 … n − 1.
//! `bucketize(x, boundaries)` is `numpy.digitize(x, boundaries)`: the number of boundaries
//! ≤ x.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::error::Result;
use datafusion::logical_expr::function::{PartitionEvaluatorArgs, WindowUDFFieldArgs};
use datafusion::logical_expr::{
    ColumnarValue, PartitionEvaluator, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    WindowUDF, WindowUDFImpl,
};

use crate::aggregate_state::{
    constant_expr, list_of, named_signature, option_number, option_text, scalar_or_array,
};
use crate::error::user_error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transform {
    Standard,
    MinMax,
    Robust,
    Outlier,
    QuantileBucket,
}

const WINDOWS: [Transform; 5] = [
    Transform::Standard,
    Transform::MinMax,
    Transform::Robust,
    Transform::Outlier,
    Transform::QuantileBucket,
];

impl Transform {
    fn name(self) -> &'static str {
        match self {
            Transform::Standard => "standard_scaler",
            Transform::MinMax => "min_max_scaler",
            Transform::Robust => "robust_scaler",
            Transform::Outlier => "is_outlier",
            Transform::QuantileBucket => "quantile_bucketize",
        }
    }

    fn params(self) -> &'static [&'static str] {
        match self {
            Transform::Outlier => &["value", "method", "k"],
            Transform::QuantileBucket => &["value", "n"],
            _ => &["value"],
        }
    }

    fn output(self) -> DataType {
        match self {
            Transform::Outlier => DataType::Boolean,
            Transform::QuantileBucket => DataType::Int64,
            _ => DataType::Float64,
        }
    }
}

/// Parameter names of a preprocessing function, in order (see [`crate::parameter_names`]).
pub fn parameter_names(function: &str) -> Option<Vec<&'static str>> {
    if function == BUCKETIZE {
        return Some(vec!["value", "boundaries"]);
    }
    WINDOWS
        .into_iter()
        .find(|t| t.name() == function)
        .map(|t| t.params().to_vec())
}

/// The window functions.
pub fn windows() -> Vec<WindowUDF> {
    WINDOWS
        .into_iter()
        .map(|t| WindowUDF::from(TransformUdwf::new(t)))
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct TransformUdwf {
    transform: Transform,
    signature: Signature,
}

impl TransformUdwf {
    fn new(transform: Transform) -> TransformUdwf {
        TransformUdwf {
            transform,
            signature: named_signature(transform.params()),
        }
    }
}

impl WindowUDFImpl for TransformUdwf {
    fn name(&self) -> &str {
        self.transform.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let params = self.transform.params();
        if arg_types.is_empty() || arg_types.len() > params.len() {
            return Err(user_error(format!(
                "{} takes 1 to {} arguments ({}), got {}",
                self.transform.name(),
                params.len(),
                params.join(", "),
                arg_types.len()
            )));
        }
        Ok(params
            .iter()
            .take(arg_types.len())
            .map(|p| match *p {
                "method" => DataType::Utf8,
                _ => DataType::Float64,
            })
            .collect())
    }

    fn partition_evaluator(
        &self,
        args: PartitionEvaluatorArgs,
    ) -> Result<Box<dyn PartitionEvaluator>> {
        let name = self.transform.name();
        let params = self.transform.params();
        let constant = |i: usize| constant_expr(args.input_exprs(), i, name, params[i]);
        let mut rule = Rule::None;
        match self.transform {
            Transform::Outlier => {
                let method = match constant(1)? {
                    None => "iqr".to_string(),
                    Some(v) => option_text(&v).to_ascii_lowercase(),
                };
                let k = constant(2)?.map(|v| option_number(&v));
                rule = match method.as_str() {
                    "iqr" => Rule::Iqr(k.unwrap_or(1.5)),
                    "zscore" => Rule::ZScore(k.unwrap_or(3.0)),
                    other => {
                        return Err(user_error(format!(
                            "{name}: method must be 'iqr' or 'zscore', got '{other}'"
                        )));
                    }
                };
                if let Rule::Iqr(k) | Rule::ZScore(k) = rule
                    && !(k >= 0.0 && k.is_finite())
                {
                    return Err(user_error(format!(
                        "{name}: k must be a non-negative number, got {k}"
                    )));
                }
            }
            Transform::QuantileBucket => {
                let n = constant(1)?.map(|v| option_number(&v)).unwrap_or(f64::NAN);
                if !((1.0..=10_000.0).contains(&n) && n.fract() == 0.0) {
                    return Err(user_error(format!(
                        "{name}: n must be a whole number of buckets from 1 to 10000"
                    )));
                }
                rule = Rule::Buckets(n as usize);
            }
            _ => {}
        }
        Ok(Box::new(TransformEvaluator {
            transform: self.transform,
            rule,
        }))
    }

    fn field(&self, field_args: WindowUDFFieldArgs) -> Result<FieldRef> {
        Ok(Arc::new(Field::new(
            field_args.name(),
            self.transform.output(),
            true,
        )))
    }
}

#[derive(Debug, Clone, Copy)]
enum Rule {
    None,
    Iqr(f64),
    ZScore(f64),
    Buckets(usize),
}

#[derive(Debug)]
struct TransformEvaluator {
    transform: Transform,
    rule: Rule,
}

/// numpy's default (linear) percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Mean and population standard deviation, two-pass.
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / n;
    (mean, var.sqrt())
}

/// A zero scale is taken as 1 (scikit-learn's `_handle_zeros_in_scale`).
fn scale(s: f64) -> f64 {
    if s == 0.0 { 1.0 } else { s }
}

impl PartitionEvaluator for TransformEvaluator {
    fn uses_window_frame(&self) -> bool {
        false
    }

    fn evaluate_all(&mut self, values: &[ArrayRef], num_rows: usize) -> Result<ArrayRef> {
        let x = values[0].as_primitive::<Float64Type>();
        let mut present: Vec<f64> = x.iter().flatten().filter(|v| !v.is_nan()).collect();
        let row = |i: usize| (x.is_valid(i) && !x.value(i).is_nan()).then(|| x.value(i));
        if present.is_empty() {
            return Ok(datafusion::arrow::array::new_null_array(
                &self.transform.output(),
                num_rows,
            ));
        }
        let needs_order = matches!(
            (self.transform, self.rule),
            (Transform::Robust, _)
                | (Transform::QuantileBucket, _)
                | (Transform::Outlier, Rule::Iqr(_))
        );
        if needs_order {
            present.sort_by(f64::total_cmp);
        }
        Ok(match self.transform {
            Transform::Standard | Transform::MinMax | Transform::Robust => {
                let (centre, s) = match self.transform {
                    Transform::Standard => mean_std(&present),
                    Transform::MinMax => {
                        let (lo, hi) = present
                            .iter()
                            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
                                (a.min(v), b.max(v))
                            });
                        (lo, hi - lo)
                    }
                    _ => (
                        percentile(&present, 0.5),
                        percentile(&present, 0.75) - percentile(&present, 0.25),
                    ),
                };
                let s = scale(s);
                Arc::new(Float64Array::from_iter(
                    (0..num_rows).map(|i| row(i).map(|v| (v - centre) / s)),
                ))
            }
            Transform::Outlier => {
                let outside: Box<dyn Fn(f64) -> bool> = match self.rule {
                    Rule::ZScore(k) => {
                        let (mean, std) = mean_std(&present);
                        Box::new(move |v| std > 0.0 && ((v - mean) / std).abs() > k)
                    }
                    Rule::Iqr(k) => {
                        let (q1, q3) = (percentile(&present, 0.25), percentile(&present, 0.75));
                        let iqr = q3 - q1;
                        Box::new(move |v| v < q1 - k * iqr || v > q3 + k * iqr)
                    }
                    _ => Box::new(|_| false),
                };
                Arc::new(BooleanArray::from_iter(
                    (0..num_rows).map(|i| row(i).map(&outside)),
                ))
            }
            Transform::QuantileBucket => {
                let Rule::Buckets(n) = self.rule else {
                    unreachable!("checked when the evaluator was made")
                };
                let edges: Vec<f64> = (1..n)
                    .map(|i| percentile(&present, i as f64 / n as f64))
                    .collect();
                Arc::new(Int64Array::from_iter((0..num_rows).map(|i| {
                    row(i).map(|v| edges.partition_point(|e| *e <= v) as i64)
                })))
            }
        })
    }
}

const BUCKETIZE: &str = "bucketize";

/// `bucketize(x, boundaries)`.
pub fn bucketize() -> ScalarUDF {
    ScalarUDF::from(Bucketize {
        signature: named_signature(&["value", "boundaries"]),
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bucketize {
    signature: Signature,
}

impl ScalarUDFImpl for Bucketize {
    fn name(&self) -> &str {
        BUCKETIZE
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return Err(user_error(format!(
                "{BUCKETIZE} takes 2 arguments (value, boundaries), got {}",
                arg_types.len()
            )));
        }
        Ok(vec![DataType::Float64, list_of(DataType::Float64)])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Int64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let x = arrays[0].as_primitive::<Float64Type>();
        let lists = arrays[1].as_list::<i32>();
        let mut out = Vec::with_capacity(rows);
        for i in 0..rows {
            if x.is_null(i) || lists.is_null(i) || x.value(i).is_nan() {
                out.push(None);
                continue;
            }
            let list = lists.value(i);
            let edges = list.as_primitive::<Float64Type>();
            if edges.null_count() > 0
                || edges.values().iter().any(|e| e.is_nan())
                || edges.values().windows(2).any(|w| w[0] >= w[1])
            {
                return Err(user_error(format!(
                    "{BUCKETIZE}: boundaries must be increasing numbers without NULLs"
                )));
            }
            let v = x.value(i);
            out.push(Some(edges.values().partition_point(|e| *e <= v) as i64));
        }
        scalar_or_array(&args.args, Arc::new(Int64Array::from(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t: Transform, rule: Rule, xs: &[Option<f64>]) -> ArrayRef {
        let mut e = TransformEvaluator { transform: t, rule };
        let input: ArrayRef = Arc::new(Float64Array::from(xs.to_vec()));
        e.evaluate_all(&[input], xs.len()).unwrap()
    }

    /// Against numpy / scikit-learn on [1, 2, 4, 8, NULL, 100]: StandardScaler,
    /// MinMaxScaler, RobustScaler; NULL stays NULL, a constant column gives 0.
    #[test]
    fn scalers_match_scikit_learn() {
        let xs = [
            Some(1.0),
            Some(2.0),
            Some(4.0),
            Some(8.0),
            None,
            Some(100.0),
        ];
        let std = run(Transform::Standard, Rule::None, &xs);
        let std = std.as_primitive::<Float64Type>();
        // numpy: ((x - x.mean()) / x.std())[0]
        assert!((std.value(0) - (-0.5703234321017339)).abs() < 1e-15);
        assert!(std.is_null(4));
        let rob = run(Transform::Robust, Rule::None, &xs);
        // median 4, q25 2, q75 8 → (100 - 4) / 6 = 16
        assert_eq!(rob.as_primitive::<Float64Type>().value(5), 16.0);
        let mm = run(Transform::MinMax, Rule::None, &xs);
        assert_eq!(mm.as_primitive::<Float64Type>().value(2), 3.0 / 99.0);
        let constant = run(Transform::Standard, Rule::None, &[Some(5.0), Some(5.0)]);
        assert_eq!(constant.as_primitive::<Float64Type>().value(1), 0.0);
        let out = run(Transform::Outlier, Rule::Iqr(1.5), &xs);
        let out = out.as_boolean();
        assert!(out.value(5) && !out.value(3));
        let b = run(Transform::QuantileBucket, Rule::Buckets(4), &xs);
        let b = b.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        // quantiles at .25/.5/.75: 2, 4, 8 → buckets of 1, 2, 4, 8, 100: 0, 1, 2, 3, 3
        let got: Vec<Option<i64>> = b.iter().collect();
        assert_eq!(got, vec![Some(0), Some(1), Some(2), Some(3), None, Some(3)]);
    }
}
