//! The off-policy estimators as DataFusion aggregates: arguments, checks, partial states
//! and the struct they return. The estimators themselves are in [`super::estimate`].

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature};

use super::estimate::{Estimator, OpeState, Round};
use crate::aggregate_state::{
    check_arity, constant_arg, list_of, list_state, list_states, named_signature, option_number,
    required_columns,
};
use crate::error::{row_error, user_error};

const ALL: [Estimator; 5] = [
    Estimator::Ips,
    Estimator::Snips,
    Estimator::Dm,
    Estimator::Dr,
    Estimator::SwitchDr,
];

impl Estimator {
    /// The estimator a function name calls.
    pub(super) fn named(function: &str) -> Option<Estimator> {
        ALL.into_iter().find(|e| e.name() == function)
    }

    pub fn name(self) -> &'static str {
        match self {
            Estimator::Ips => "ope_ips",
            Estimator::Snips => "ope_snips",
            Estimator::Dm => "ope_dm",
            Estimator::Dr => "ope_dr",
            Estimator::SwitchDr => "ope_switch_dr",
        }
    }

    /// The row columns, in order; the options (`clip` or `threshold`, then `alpha`) follow.
    fn columns(self) -> &'static [&'static str] {
        const WEIGHTS: [&str; 3] = ["reward", "propensity", "target_propensity"];
        const MODELLED: [&str; 5] = [
            "reward",
            "propensity",
            "target_propensity",
            "estimated_reward",
            "estimated_value",
        ];
        match self {
            Estimator::Ips | Estimator::Snips => &WEIGHTS,
            Estimator::Dm => &["estimated_value"],
            Estimator::Dr | Estimator::SwitchDr => &MODELLED,
        }
    }

    /// The name of the weight limit option, if the estimator has one.
    fn limit(self) -> Option<&'static str> {
        match self {
            Estimator::Ips | Estimator::Dr => Some("clip"),
            Estimator::SwitchDr => Some("threshold"),
            Estimator::Snips | Estimator::Dm => None,
        }
    }

    /// Parameter names in order (for `name => value` arguments).
    pub(super) fn params(self) -> Vec<&'static str> {
        let mut names = self.columns().to_vec();
        names.extend(self.limit());
        names.push("alpha");
        names
    }

    fn fields() -> Fields {
        let f = |n: &str| Field::new(n, DataType::Float64, true);
        vec![
            f("estimate"),
            f("std_error"),
            f("ci_low"),
            f("ci_high"),
            Field::new("n", DataType::Int64, true),
            f("effective_sample_size"),
            f("mean_weight"),
            f("max_weight"),
            Field::new("limited", DataType::Int64, true),
        ]
        .into()
    }
}

/// Every off-policy estimator.
pub fn all() -> Vec<AggregateUDF> {
    ALL.into_iter()
        .map(|e| AggregateUDF::from(OpeUdaf::new(e)))
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct OpeUdaf {
    estimator: Estimator,
    signature: Signature,
}

impl OpeUdaf {
    pub fn new(estimator: Estimator) -> OpeUdaf {
        let signature = named_signature(&estimator.params());
        OpeUdaf {
            estimator,
            signature,
        }
    }
}

impl AggregateUDFImpl for OpeUdaf {
    fn name(&self) -> &str {
        self.estimator.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let e = self.estimator;
        check_arity(e.name(), &e.params(), e.columns().len(), arg_types.len())?;
        Ok(vec![DataType::Float64; arg_types.len()])
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(Estimator::fields()))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let e = self.estimator;
        let name = e.name();
        required_columns(&args, name, e.columns())?;
        let mut limit = f64::INFINITY;
        let mut alpha = 0.05;
        for (i, param) in e.params().into_iter().enumerate().skip(e.columns().len()) {
            let Some(value) = constant_arg(&args, i, name, param)? else {
                continue;
            };
            let v = option_number(&value);
            if param == "alpha" {
                if !(v > 0.0 && v < 1.0) {
                    return Err(user_error(format!(
                        "{name}: alpha must be between 0 and 1 (exclusive), got {value}"
                    )));
                }
                alpha = v;
            } else {
                // A clip of 0 would zero every weight; a switch threshold of 0 is DM.
                let ok = if param == "clip" { v > 0.0 } else { v >= 0.0 };
                if !ok {
                    let bound = if param == "clip" {
                        "positive"
                    } else {
                        "at least 0"
                    };
                    return Err(user_error(format!(
                        "{name}: {param} must be {bound}, got {value}"
                    )));
                }
                limit = v;
            }
        }
        Ok(Box::new(OpeAccumulator {
            estimator: e,
            limit,
            alpha,
            state: OpeState::default(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[state]", args.name),
            list_of(DataType::Float64),
            true,
        ))])
    }
}

#[derive(Debug)]
struct OpeAccumulator {
    estimator: Estimator,
    limit: f64,
    alpha: f64,
    state: OpeState,
}

impl OpeAccumulator {
    /// The round in row `i` (no argument NULL there); bad values are errors.
    fn round(&self, columns: &[&[f64]], i: usize) -> Result<Round> {
        let name = self.estimator.name();
        // At most five columns: read into a fixed array, no allocation per row.
        let mut values = [0.0; 5];
        for (v, c) in values.iter_mut().zip(columns) {
            *v = c[i];
        }
        let values = &values[..columns.len()];
        if let Some((k, v)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(row_error(format!(
                "{name}: {} must be a finite number, got {v}",
                self.estimator.columns()[k]
            )));
        }
        let round = if self.estimator.weighted() {
            let [reward, propensity, target_propensity] = [values[0], values[1], values[2]];
            if !(propensity > 0.0 && propensity <= 1.0) {
                return Err(row_error(format!(
                    "{name}: propensity must be in (0, 1], got {propensity}; a logged \
                     action with propensity 0 cannot be reweighted"
                )));
            }
            if !(0.0..=1.0).contains(&target_propensity) {
                return Err(row_error(format!(
                    "{name}: target_propensity must be in [0, 1], got {target_propensity}"
                )));
            }
            Round {
                reward,
                propensity,
                target_propensity,
                estimated_reward: values.get(3).copied().unwrap_or(0.0),
                estimated_value: values.get(4).copied().unwrap_or(0.0),
            }
        } else {
            Round {
                reward: 0.0,
                propensity: 1.0,
                target_propensity: 1.0,
                estimated_reward: 0.0,
                estimated_value: values[0],
            }
        };
        Ok(round)
    }
}

impl Accumulator for OpeAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let width = self.estimator.columns().len();
        let arrays: Vec<_> = values[..width]
            .iter()
            .map(|a| a.as_primitive::<Float64Type>())
            .collect();
        let columns: Vec<&[f64]> = arrays.iter().map(|a| a.values().as_ref()).collect();
        let rows = arrays.first().map_or(0, |a| a.len());
        for i in 0..rows {
            if arrays.iter().any(|a| a.is_null(i)) {
                continue;
            }
            let round = self.round(&columns, i)?;
            self.state.push(self.estimator, &round, self.limit);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for numbers in list_states::<Float64Type>(&states[0]) {
            if let Some(other) = OpeState::from_slice(numbers.values()) {
                self.state.merge(&other);
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![list_state::<Float64Type>(
            self.state.to_array().to_vec(),
        )])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let fields = Estimator::fields();
        if self.state.is_empty() {
            return ScalarValue::try_from(DataType::Struct(fields));
        }
        let r = self.state.result(self.estimator, self.alpha);
        let float = |x: f64| ScalarValue::Float64(x.is_finite().then_some(x));
        let int = |x: f64| ScalarValue::Int64(x.is_finite().then_some(x.round() as i64));
        let values = [
            float(r.estimate),
            float(r.se),
            float(r.ci_low),
            float(r.ci_high),
            int(r.n),
            float(r.effective_sample_size),
            float(r.mean_weight),
            float(r.max_weight),
            int(r.limited),
        ];
        let columns = values
            .iter()
            .map(|v| v.to_array())
            .collect::<Result<Vec<ArrayRef>>>()?;
        let array = StructArray::try_new(fields, columns, None)?;
        Ok(ScalarValue::Struct(Arc::new(array)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}
