//! The SQL faces of the uplift metrics: the aggregates `qini_auc` and `uplift_auc`, and the
//! table functions `qini_curve((SELECT …))` and `uplift_curve((SELECT …))` with one row per
//! point of the curve, for a BI tool to draw.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type, Schema, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature};

use super::curve::{Kind, Point, Row, auc_score, curve};
use crate::aggregate_state::{
    check_arity, constant_arg, list_of, list_state, list_states, named_signature, required_columns,
};
use crate::error::{row_error, user_error};
use crate::relation::{Compute, Options, RelationFunction, all_at_once, required_column};

const QINI_AUC: &str = "qini_auc";
const UPLIFT_AUC: &str = "uplift_auc";
const QINI_PARAMS: [&str; 4] = ["treatment", "outcome", "score", "negative_effect"];
const UPLIFT_PARAMS: [&str; 3] = ["treatment", "outcome", "score"];

/// The parameter names of an uplift aggregate, in order (see [`crate::parameter_names`]).
pub fn parameter_names(function: &str) -> Option<Vec<&'static str>> {
    [Kind::Qini, Kind::Uplift]
        .into_iter()
        .find(|&k| auc_name(k) == function)
        .map(|k| params(k).to_vec())
}

/// `qini_auc` and `uplift_auc`.
pub fn aggregates() -> Vec<AggregateUDF> {
    [Kind::Qini, Kind::Uplift]
        .into_iter()
        .map(|kind| {
            AggregateUDF::from(AucUdaf {
                kind,
                signature: named_signature(params(kind)),
            })
        })
        .collect()
}

fn params(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Qini => &QINI_PARAMS,
        Kind::Uplift => &UPLIFT_PARAMS,
    }
}

fn auc_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Qini => QINI_AUC,
        Kind::Uplift => UPLIFT_AUC,
    }
}

/// Reads one row's treatment (0/1) and outcome; `binary` requires a 0/1 outcome too.
fn checked_row(function: &str, score: f64, t: f64, y: f64, binary: bool) -> Result<Row> {
    if !(t == 0.0 || t == 1.0) {
        return Err(row_error(format!(
            "{function}: treatment must be 0 or 1 (or a boolean), got {t}"
        )));
    }
    if !score.is_finite() || !y.is_finite() {
        return Err(row_error(format!(
            "{function}: score and outcome must be finite numbers, got {score} and {y}"
        )));
    }
    if binary && !(y == 0.0 || y == 1.0) {
        return Err(row_error(format!(
            "{function}: outcome must be 0 or 1 (or a boolean), got {y}"
        )));
    }
    Ok(Row {
        score,
        treated: t == 1.0,
        outcome: y,
    })
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct AucUdaf {
    kind: Kind,
    signature: Signature,
}

impl AggregateUDFImpl for AucUdaf {
    fn name(&self) -> &str {
        auc_name(self.kind)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        check_arity(auc_name(self.kind), params(self.kind), 3, arg_types.len())?;
        let mut types = vec![DataType::Float64; 3];
        if arg_types.len() == 4 {
            types.push(DataType::Boolean);
        }
        Ok(types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let name = auc_name(self.kind);
        required_columns(&args, name, &UPLIFT_PARAMS)?;
        let negative_effect = match constant_arg(&args, 3, name, "negative_effect")? {
            None => true,
            Some(ScalarValue::Boolean(Some(b))) => b,
            Some(other) => {
                return Err(user_error(format!(
                    "{name}: negative_effect must be true or false, got {other}"
                )));
            }
        };
        Ok(Box::new(AucAccumulator {
            kind: self.kind,
            negative_effect,
            rows: Vec::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        // (score, treatment, outcome) per row, flattened.
        Ok(vec![Arc::new(Field::new(
            format!("{}[rows]", args.name),
            list_of(DataType::Float64),
            true,
        ))])
    }
}

#[derive(Debug)]
struct AucAccumulator {
    kind: Kind,
    negative_effect: bool,
    rows: Vec<Row>,
}

impl Accumulator for AucAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let name = auc_name(self.kind);
        let [t, y, s] = [0, 1, 2].map(|i| values[i].as_primitive::<Float64Type>());
        for i in 0..t.len() {
            if t.is_null(i) || y.is_null(i) || s.is_null(i) {
                continue;
            }
            let row = checked_row(name, s.value(i), t.value(i), y.value(i), true)?;
            self.rows.push(row);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for numbers in list_states::<Float64Type>(&states[0]) {
            for c in numbers.values().chunks_exact(3) {
                self.rows.push(Row {
                    score: c[0],
                    treated: c[1] == 1.0,
                    outcome: c[2],
                });
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let numbers: Vec<f64> = self
            .rows
            .iter()
            .flat_map(|r| [r.score, r.treated as u8 as f64, r.outcome])
            .collect();
        Ok(vec![list_state::<Float64Type>(numbers)])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let score = auc_score(self.kind, &self.rows, self.negative_effect);
        Ok(ScalarValue::Float64(score.is_finite().then_some(score)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.rows.capacity() * std::mem::size_of::<Row>()
    }
}

/// `qini_curve((SELECT treatment, outcome, score FROM …))` and `uplift_curve(…)`.
#[derive(Debug)]
pub struct CurveFunction(pub Kind);

const CURVE_NEEDS: &str =
    "columns treatment (0/1 or boolean), outcome (a number) and score (a number)";

impl RelationFunction for CurveFunction {
    fn name(&self) -> &'static str {
        match self.0 {
            Kind::Qini => "qini_curve",
            Kind::Uplift => "uplift_curve",
        }
    }

    fn usage(&self) -> &'static str {
        match self.0 {
            Kind::Qini => "qini_curve((SELECT treatment, outcome, score FROM …))",
            Kind::Uplift => "uplift_curve((SELECT treatment, outcome, score FROM …))",
        }
    }

    fn takes_input(&self) -> bool {
        true
    }

    fn option_names(&self) -> &'static [&'static str] {
        &[]
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new("value", DataType::Float64, false),
            Field::new("baseline", DataType::Float64, false),
        ]))
    }

    fn bind(&self, options: Options) -> Result<Compute> {
        options.finish()?;
        let kind = self.0;
        let name = self.name();
        let schema = self.schema();
        Ok(all_at_once(move |batches: &[RecordBatch]| {
            let mut rows = Vec::new();
            for b in batches {
                let column = |c: &str| required_column(name, b, c, &DataType::Float64, CURVE_NEEDS);
                let (t, y, s) = (column("treatment")?, column("outcome")?, column("score")?);
                let [t, y, s] = [&t, &y, &s].map(|a| a.as_primitive::<Float64Type>());
                for i in 0..b.num_rows() {
                    if t.is_null(i) || y.is_null(i) || s.is_null(i) {
                        continue;
                    }
                    rows.push(checked_row(
                        name,
                        s.value(i),
                        t.value(i),
                        y.value(i),
                        false,
                    )?);
                }
            }
            let points = curve(kind, &mut rows);
            let end = points
                .last()
                .copied()
                .unwrap_or(Point { n: 0.0, value: 0.0 });
            let baseline = |p: &Point| {
                if end.n > 0.0 {
                    end.value * p.n / end.n
                } else {
                    0.0
                }
            };
            let columns: Vec<ArrayRef> = vec![
                Arc::new(Int64Array::from_iter_values(
                    points.iter().map(|p| p.n as i64),
                )),
                Arc::new(Float64Array::from_iter_values(
                    points.iter().map(|p| p.value),
                )),
                Arc::new(Float64Array::from_iter_values(points.iter().map(baseline))),
            ];
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        }))
    }
}
