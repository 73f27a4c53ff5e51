//! What the aggregates (`auc`, `ece`, `behavior_sequence`, …) and the other functions with
//! options share: constant arguments, read once when the accumulator or evaluator is made,
//! signatures with parameter names, results that stay scalar for scalar arguments, and
//! partial states carried as one list of numbers per group.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, PrimitiveArray};
use datafusion::arrow::datatypes::{ArrowPrimitiveType, DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::error::Result;
use datafusion::logical_expr::function::AccumulatorArgs;
use datafusion::logical_expr::{ColumnarValue, Signature, TypeSignature, Volatility};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;

use crate::error::user_error;

/// Argument `i` of an aggregate call when it must be a constant (`bins`, `max_len`): `None`
/// when it is absent or NULL. A column there is an error, so the value cannot differ from row
/// to row or between the partitions whose states are merged.
pub fn constant_arg(
    args: &AccumulatorArgs,
    i: usize,
    function: &str,
    name: &str,
) -> Result<Option<ScalarValue>> {
    constant_expr(args.exprs, i, function, name)
}

/// [`constant_arg`] over any function's argument expressions (a window function's).
pub fn constant_expr(
    exprs: &[Arc<dyn PhysicalExpr>],
    i: usize,
    function: &str,
    name: &str,
) -> Result<Option<ScalarValue>> {
    let Some(expr) = exprs.get(i) else {
        return Ok(None);
    };
    match expr.downcast_ref::<Literal>() {
        Some(lit) if lit.value().is_null() => Ok(None),
        Some(lit) => Ok(Some(lit.value().clone())),
        None => Err(user_error(format!(
            "{function}: {name} must be a constant, the same for every row"
        ))),
    }
}

/// Checks that none of the first `names.len()` arguments — the row columns an aggregate
/// cannot do without — is a bare NULL: named arguments that skip one are filled with NULL
/// (`crate::parameter_names`), and every row would then be skipped, for a silent NULL.
pub fn required_columns(args: &AccumulatorArgs, function: &str, names: &[&str]) -> Result<()> {
    for (expr, name) in args.exprs.iter().zip(names) {
        if expr
            .downcast_ref::<Literal>()
            .is_some_and(|l| l.value().is_null())
        {
            return Err(user_error(format!(
                "{function}: {name} is required (a column or expression, not NULL)"
            )));
        }
    }
    Ok(())
}

/// A constant option read as a double; NaN when it is not a number, so that the caller's
/// range check refuses it with the option's name.
pub fn option_number(v: &ScalarValue) -> f64 {
    match v.cast_to(&DataType::Float64) {
        Ok(ScalarValue::Float64(Some(x))) => x,
        _ => f64::NAN,
    }
}

/// A constant option read as text.
pub fn option_text(v: &ScalarValue) -> String {
    match v {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => s.clone(),
        other => other.to_string(),
    }
}

/// Refuses a call with fewer than `required` or more than `names.len()` arguments, naming
/// the parameters.
pub fn check_arity(function: &str, names: &[&str], required: usize, given: usize) -> Result<()> {
    if given < required || given > names.len() {
        return Err(user_error(format!(
            "{function} takes {required} to {} arguments ({}), got {given}",
            names.len(),
            names.join(", ")
        )));
    }
    Ok(())
}

/// A user-defined signature whose arguments may be given as `name => value`.
pub fn named_signature(names: &[&str]) -> Signature {
    named_signature_with(names, Volatility::Immutable)
}

/// [`named_signature`] of a given volatility (volatile for functions that draw randomness).
pub fn named_signature_with(names: &[&str], volatility: Volatility) -> Signature {
    let signature = Signature::new(TypeSignature::UserDefined, volatility);
    // Names on a user-defined signature are always accepted.
    signature
        .clone()
        .with_parameter_names(names.to_vec())
        .unwrap_or(signature)
}

/// A scalar function's result: a scalar when every argument was one (a constant call that
/// the planner folds), else the array.
pub fn scalar_or_array(args: &[ColumnarValue], array: ArrayRef) -> Result<ColumnarValue> {
    if args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_))) {
        return Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(
            &array, 0,
        )?));
    }
    Ok(ColumnarValue::Array(array))
}

/// `DataType::List` of nullable `item`s.
pub fn list_of(item: DataType) -> DataType {
    DataType::List(Arc::new(Field::new_list_field(item, true)))
}

/// A partial state: `values` as a one-row list.
pub fn list_state<T: ArrowPrimitiveType>(values: Vec<T::Native>) -> ScalarValue {
    let array: ArrayRef = Arc::new(PrimitiveArray::<T>::from_iter_values(values));
    SingleRowListArrayBuilder::new(array).build_list_scalar()
}

/// The values of every non-NULL partial state in a state column.
pub fn list_states<T: ArrowPrimitiveType>(
    states: &ArrayRef,
) -> impl Iterator<Item = PrimitiveArray<T>> + '_ {
    let lists = states.as_list::<i32>();
    (0..lists.len())
        .filter(move |&i| lists.is_valid(i))
        .map(move |i| lists.value(i).as_primitive::<T>().clone())
}
