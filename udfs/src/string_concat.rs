//! The text `||` operator, with the result-size limit of [`crate::limits`].
//!
//! DataFusion evaluates `a || b` as a built-in operator that allocates its whole result for
//! a batch at once, outside the memory pool. A long literal joined to every row of a batch
//! (`left(s, k) || '<64 kB>'` over 8,192 rows) took half a gigabyte per batch and per
//! session; PostgreSQL refuses a value over 1 GB ("requested length too large", 54000) and
//! flashsql refuses a batch of results over
//! [`crate::limits::MAX_RESULT_BYTES`]. So the SQL planner turns a
//! text `||` into this function, which sizes its result before building it. Array `||` is
//! left to DataFusion's own planner, which runs first, and binary strings keep the built-in.
//!
//! Semantics are the operator's: NULL if either side is NULL, other types cast to text.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, StringArray};
use datafusion::arrow::compute::kernels::concat_elements::concat_elements_utf8;
use datafusion::arrow::compute::{CastOptions, cast_with_options};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::error::Result;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::planner::{ExprPlanner, PlannerResult, RawBinaryExpr};
use datafusion::logical_expr::sqlparser::ast::BinaryOperator;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ExprSchemable, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    Volatility,
};

use crate::limits::{check_result_bytes, text_bytes};

/// The function a text `||` becomes (a name no one calls by hand).
pub const NAME: &str = "text_concat";

/// `a || b` on text, size-checked.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct TextConcat {
    signature: Signature,
}

impl Default for TextConcat {
    fn default() -> Self {
        Self {
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

fn as_utf8(a: &ArrayRef) -> Result<ArrayRef> {
    Ok(cast_with_options(
        a,
        &DataType::Utf8,
        &CastOptions::default(),
    )?)
}

impl ScalarUDFImpl for TextConcat {
    fn name(&self) -> &str {
        NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    /// Both sides as text, as the operator casts them.
    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        if arg_types.len() != 2 {
            return Err(crate::error::user_error(format!(
                "{NAME} takes 2 arguments, got {}",
                arg_types.len()
            )));
        }
        Ok(arg_types
            .iter()
            .map(|t| match t {
                DataType::Utf8View | DataType::LargeUtf8 | DataType::Utf8 => t.clone(),
                _ => DataType::Utf8,
            })
            .collect())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [left, right] = args.args.as_slice() else {
            return Err(crate::error::user_error(format!(
                "{NAME} takes 2 arguments"
            )));
        };
        check_result_bytes(
            "||",
            text_bytes(left, rows).saturating_add(text_bytes(right, rows)),
        )?;
        if let (ColumnarValue::Scalar(l), ColumnarValue::Scalar(r)) = (left, right) {
            let text = |s: &ScalarValue| -> Result<Option<String>> {
                Ok(match s.cast_to(&DataType::Utf8)? {
                    ScalarValue::Utf8(t) => t,
                    _ => None,
                })
            };
            let joined = match (text(l)?, text(r)?) {
                (Some(a), Some(b)) => Some(a + &b),
                _ => None,
            };
            return Ok(ColumnarValue::Scalar(ScalarValue::Utf8(joined)));
        }
        let (l, r) = (
            as_utf8(&left.to_array(rows)?)?,
            as_utf8(&right.to_array(rows)?)?,
        );
        let joined: StringArray = concat_elements_utf8(l.as_string::<i32>(), r.as_string::<i32>())?;
        Ok(ColumnarValue::Array(Arc::new(joined) as ArrayRef))
    }
}

/// Plans a text `||` as [`TextConcat`]; anything else (arrays, binary strings, other
/// operators) as before.
#[derive(Debug)]
pub struct TextConcatPlanner {
    udf: Arc<ScalarUDF>,
}

impl Default for TextConcatPlanner {
    fn default() -> Self {
        Self {
            udf: Arc::new(ScalarUDF::new_from_impl(TextConcat::default())),
        }
    }
}

/// A type `||` casts to text: not a list, struct, map or binary string.
fn casts_to_text(t: &DataType) -> bool {
    !t.is_nested() && !t.is_binary()
}

impl ExprPlanner for TextConcatPlanner {
    fn plan_binary_op(
        &self,
        expr: RawBinaryExpr,
        schema: &DFSchema,
    ) -> Result<PlannerResult<RawBinaryExpr>> {
        if expr.op != BinaryOperator::StringConcat {
            return Ok(PlannerResult::Original(expr));
        }
        let (Ok(l), Ok(r)) = (expr.left.get_type(schema), expr.right.get_type(schema)) else {
            return Ok(PlannerResult::Original(expr));
        };
        // One side must be text (as the operator itself requires) and neither a list.
        if !(l.is_string() || l.is_null() || r.is_string() || r.is_null())
            || !casts_to_text(&l)
            || !casts_to_text(&r)
        {
            return Ok(PlannerResult::Original(expr));
        }
        Ok(PlannerResult::Planned(Expr::ScalarFunction(
            ScalarFunction::new_udf(self.udf.clone(), vec![expr.left, expr.right]),
        )))
    }
}
