//! Correlated scalar subqueries that are not aggregates.
//!
//! PostgreSQL accepts `(SELECT c.relkind FROM pg_class c WHERE c.oid = t.typrelid)` and fails
//! at run time only if the subquery yields more than one row. DataFusion refuses to plan it
//! ("Correlated scalar subquery must be aggregated"), and client tools send exactly this form
//! (pgjdbc's `getTypeInfo`, psql's `\dT`). Such a subquery is planned here as an aggregate over
//! its rows with [`ScalarSubqueryRows`], which DataFusion decorrelates like any aggregate,
//! read by [`ScalarSubqueryCheck`]: no row gives NULL, one row its value, and more than one
//! the error PostgreSQL gives (21000).
//!
//! DataFusion also cannot decorrelate a subquery whose filter holds a condition on the outer
//! row alone (`WHERE a.atthasdef AND d.adrelid = a.attrelid`); where the subquery's value
//! over no rows is known, that condition moves out of it (`CASE WHEN a.atthasdef THEN (…)
//! ELSE <value over no rows> END`), which is the same value.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, ScalarValue};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::utils::{conjunction, format_state_name, split_conjunction};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, Expr, LogicalPlan,
    LogicalPlanBuilder, Projection as LogicalPlanProjection, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Subquery, SubqueryAlias, Volatility, when,
};

use crate::errors::SqlError;

/// The first two values of a subquery's rows, as a list: empty or NULL without rows. The
/// outer query reads it with [`ScalarSubqueryCheck`], so that a subquery with more than one
/// row fails only for the outer rows that use it (as in PostgreSQL, where a row the WHERE
/// clause drops never evaluates its select list), not for every group the join computes.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ScalarSubqueryRows {
    signature: Signature,
}

impl ScalarSubqueryRows {
    pub const NAME: &'static str = "scalar_subquery_rows";

    pub fn udaf() -> AggregateUDF {
        AggregateUDF::new_from_impl(Self {
            signature: Signature::any(1, Volatility::Immutable),
        })
    }
}

impl AggregateUDFImpl for ScalarSubqueryRows {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let item = arg_types
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Plan(format!("{} takes one argument", Self::NAME)))?;
        Ok(DataType::new_list(item, true))
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let item = match args.return_field.data_type() {
            DataType::List(f) => f.data_type().clone(),
            other => {
                return Err(DataFusionError::Internal(format!(
                    "{} returns a list, not {other}",
                    Self::NAME
                )));
            }
        };
        Ok(Box::new(FirstTwo {
            item,
            values: Vec::with_capacity(2),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![
            Field::new(
                format_state_name(args.name, "rows"),
                args.return_type().clone(),
                true,
            )
            .into(),
        ])
    }
}

#[derive(Debug)]
struct FirstTwo {
    item: DataType,
    values: Vec<ScalarValue>,
}

impl FirstTwo {
    fn add(&mut self, values: &ArrayRef) -> Result<()> {
        for i in 0..values.len() {
            if self.values.len() >= 2 {
                break;
            }
            self.values.push(ScalarValue::try_from_array(values, i)?);
        }
        Ok(())
    }
}

impl Accumulator for FirstTwo {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        match values.first() {
            Some(values) => self.add(values),
            None => Ok(()),
        }
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let Some(lists) = states.first().and_then(|s| s.as_list_opt::<i32>()) else {
            return Err(DataFusionError::Internal(format!(
                "{} merges one list column",
                ScalarSubqueryRows::NAME
            )));
        };
        for list in lists.iter().flatten() {
            self.add(&list)?;
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![self.evaluate()?])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(ScalarValue::List(ScalarValue::new_list_nullable(
            &self.values,
            &self.item,
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self) + self.values.iter().map(|v| v.size()).sum::<usize>()
    }
}

/// The value of a subquery's only row from [`ScalarSubqueryRows`]' list: NULL for no row,
/// and the error PostgreSQL gives (21000) for more than one.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ScalarSubqueryCheck {
    signature: Signature,
}

impl ScalarSubqueryCheck {
    pub const NAME: &'static str = "scalar_subquery_value";

    pub fn udf() -> ScalarUDF {
        ScalarUDF::new_from_impl(Self {
            signature: Signature::any(1, Volatility::Immutable),
        })
    }
}

impl ScalarUDFImpl for ScalarSubqueryCheck {
    fn name(&self) -> &str {
        Self::NAME
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types.first() {
            Some(DataType::List(f)) => Ok(f.data_type().clone()),
            other => Err(DataFusionError::Plan(format!(
                "{} takes a list, not {other:?}",
                Self::NAME
            ))),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let scalar = matches!(args.args.first(), Some(ColumnarValue::Scalar(_)));
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let Some(lists) = arrays.first().and_then(|a| a.as_list_opt::<i32>()) else {
            return Err(DataFusionError::Internal(format!(
                "{} takes a list",
                Self::NAME
            )));
        };
        let mut take = Vec::with_capacity(lists.len());
        for (i, start) in lists.value_offsets().iter().take(lists.len()).enumerate() {
            let rows = if lists.is_null(i) {
                0
            } else {
                lists.value_length(i)
            };
            match rows {
                0 => take.push(None),
                1 => take.push(Some(*start as u64)),
                _ => {
                    return Err(DataFusionError::External(Box::new(SqlError::coded(
                        "21000",
                        "more than one row returned by a subquery used as an expression",
                    ))));
                }
            }
        }
        let out = datafusion::arrow::compute::take(
            lists.values().as_ref(),
            &UInt64Array::from(take),
            None,
        )?;
        Ok(if scalar {
            ColumnarValue::Scalar(ScalarValue::try_from_array(&out, 0)?)
        } else {
            ColumnarValue::Array(out)
        })
    }
}

/// Whether DataFusion would refuse this scalar subquery: correlated, not an aggregate, and
/// not known to yield at most one row (the check of DataFusion's `check_subquery_expr`).
fn needs_aggregate(subquery: &Subquery) -> bool {
    if subquery.outer_ref_columns.is_empty() {
        return false;
    }
    let mut inner = subquery.subquery.as_ref();
    loop {
        inner = match inner {
            LogicalPlan::Projection(p) => p.input.as_ref(),
            LogicalPlan::SubqueryAlias(a) => a.input.as_ref(),
            _ => break,
        };
    }
    let aggregated = match inner {
        LogicalPlan::Aggregate(a) => !a.aggr_expr.is_empty(),
        LogicalPlan::Filter(f) => matches!(f.input.as_ref(), LogicalPlan::Aggregate(_)),
        _ => false,
    };
    !aggregated && subquery.subquery.max_rows().is_none_or(|m| m > 1)
}

/// The subquery as an aggregate of its only column with [`ScalarSubqueryRows`]; the caller
/// reads its value with [`ScalarSubqueryCheck`].
fn aggregated(subquery: Subquery) -> Result<Subquery> {
    let schema = subquery.subquery.schema();
    let (qualifier, field) = schema.qualified_field(0);
    let column = Expr::Column(Column::from((qualifier, field)));
    let rows = ScalarSubqueryRows::udaf()
        .call(vec![column])
        .alias_qualified(qualifier.cloned(), field.name());
    let plan = LogicalPlanBuilder::from(subquery.subquery.as_ref().clone())
        .aggregate(Vec::<Expr>::new(), vec![rows])?
        .build()?;
    Ok(Subquery {
        subquery: Arc::new(plan),
        ..subquery
    })
}

/// Aggregates whose value over no rows is NULL.
const NULL_WHEN_EMPTY: [&str; 10] = [
    ScalarSubqueryRows::NAME,
    "min",
    "max",
    "sum",
    "avg",
    "array_agg",
    "string_agg",
    "first_value",
    "last_value",
    "median",
];

/// A subquery's value when it has no rows, as an expression of the outer query: its one
/// aggregate over no rows (0 for `count`, NULL for [`NULL_WHEN_EMPTY`]) put through the
/// projections above it (`coalesce(max(x), 0)` is 0). None where that is not known.
fn empty_value(plan: &LogicalPlan) -> Result<Option<Expr>> {
    match plan {
        LogicalPlan::SubqueryAlias(a) => empty_value(&a.input),
        LogicalPlan::Aggregate(a) if a.group_expr.is_empty() && a.aggr_expr.len() == 1 => {
            let Expr::AggregateFunction(f) = a.aggr_expr[0].clone().unalias() else {
                return Ok(None);
            };
            let name = f.func.name();
            Ok(if name == "count" {
                Some(Expr::Literal(ScalarValue::Int64(Some(0)), None))
            } else if NULL_WHEN_EMPTY.contains(&name) {
                let data_type = a.schema.field(0).data_type();
                Some(Expr::Literal(ScalarValue::try_from(data_type)?, None))
            } else {
                None
            })
        }
        LogicalPlan::Projection(p) if p.expr.len() == 1 && p.input.schema().fields().len() == 1 => {
            let Some(empty) = empty_value(&p.input)? else {
                return Ok(None);
            };
            let expr = p.expr[0].clone().unalias();
            if expr.exists(|e| {
                Ok(matches!(
                    e,
                    Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_)
                ))
            })? {
                return Ok(None);
            }
            // The input's one column is the aggregate; outer references are the outer row's.
            Ok(Some(
                expr.transform_up(|e| match e {
                    Expr::Column(_) => Ok(Transformed::yes(empty.clone())),
                    Expr::OuterReferenceColumn(_, column) => {
                        Ok(Transformed::yes(Expr::Column(column)))
                    }
                    other => Ok(Transformed::no(other)),
                })?
                .data,
            ))
        }
        _ => Ok(None),
    }
}

/// Takes the conditions on the outer row alone (`… WHERE a.atthasdef AND d.adrelid =
/// a.attrelid`, SQLAlchemy's column reflection) out of the subquery's filter, which
/// DataFusion cannot decorrelate, and returns them as a condition of the outer query. Only
/// through nodes that pass rows on one for one or aggregate them all.
fn hoist_outer_conditions(plan: &LogicalPlan) -> Result<Option<(LogicalPlan, Expr)>> {
    let rebuilt = |plan: &LogicalPlan, input: LogicalPlan| {
        plan.with_new_exprs(plan.expressions(), vec![input])
    };
    match plan {
        LogicalPlan::Projection(LogicalPlanProjection { input, .. })
        | LogicalPlan::SubqueryAlias(SubqueryAlias { input, .. }) => {
            Ok(match hoist_outer_conditions(input)? {
                Some((inner, condition)) => Some((rebuilt(plan, inner)?, condition)),
                None => None,
            })
        }
        LogicalPlan::Aggregate(a) if a.group_expr.is_empty() => {
            Ok(match hoist_outer_conditions(&a.input)? {
                Some((inner, condition)) => Some((rebuilt(plan, inner)?, condition)),
                None => None,
            })
        }
        LogicalPlan::Filter(f) => {
            let (outer, inner): (Vec<&Expr>, Vec<&Expr>) = split_conjunction(&f.predicate)
                .into_iter()
                .partition(|e| e.contains_outer() && e.column_refs().is_empty());
            if outer.is_empty() {
                return Ok(None);
            }
            let input = match conjunction(inner.into_iter().cloned()) {
                Some(rest) => LogicalPlanBuilder::from(f.input.as_ref().clone())
                    .filter(rest)?
                    .build()?,
                None => f.input.as_ref().clone(),
            };
            let condition = conjunction(outer.into_iter().cloned())
                .ok_or_else(|| DataFusionError::Internal("no outer condition".into()))?
                .transform_up(|e| match e {
                    Expr::OuterReferenceColumn(_, column) => {
                        Ok(Transformed::yes(Expr::Column(column)))
                    }
                    other => Ok(Transformed::no(other)),
                })?
                .data;
            Ok(Some((input, condition)))
        }
        _ => Ok(None),
    }
}

/// A correlated scalar subquery in a form DataFusion plans: aggregated when it is not, and
/// with conditions on the outer row alone moved out as `CASE WHEN condition THEN (subquery)
/// ELSE <its value over no rows> END` where that value is known.
fn plannable(sq: Subquery) -> Result<Transformed<Expr>> {
    // A subquery of more than one column is left to DataFusion's check, which names them.
    let wrap = needs_aggregate(&sq) && sq.subquery.schema().fields().len() == 1;
    let sq = if wrap { aggregated(sq)? } else { sq };
    let read = |sq: Subquery| {
        let value = Expr::ScalarSubquery(sq);
        if wrap {
            ScalarSubqueryCheck::udf().call(vec![value])
        } else {
            value
        }
    };
    if let Some(empty) = empty_value(&sq.subquery)?
        && let Some((plan, condition)) = hoist_outer_conditions(&sq.subquery)?
    {
        let outer_ref_columns = plan.all_out_ref_exprs();
        let value = read(Subquery {
            subquery: Arc::new(plan),
            outer_ref_columns,
            ..sq
        });
        let otherwise = if wrap {
            ScalarSubqueryCheck::udf().call(vec![empty])
        } else {
            empty
        };
        return Ok(Transformed::yes(
            when(condition, value).otherwise(otherwise)?,
        ));
    }
    Ok(Transformed::new_transformed(read(sq), wrap))
}

/// Rewrites every scalar subquery DataFusion would refuse (see the module doc); other plans
/// are returned unchanged.
pub fn aggregate_correlated(plan: LogicalPlan) -> Result<LogicalPlan> {
    // Most statements have no correlated scalar subquery: a read-only look first.
    let mut correlated = false;
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            correlated |= e.exists(|e| {
                Ok(matches!(e, Expr::ScalarSubquery(sq) if !sq.outer_ref_columns.is_empty()))
            })?;
            Ok(if correlated {
                TreeNodeRecursion::Stop
            } else {
                TreeNodeRecursion::Continue
            })
        })
    })?;
    if !correlated {
        return Ok(plan);
    }
    let rewritten = plan.transform_up_with_subqueries(|node| {
        // Expressions keep their names: the plan above refers to them by name.
        let names = NamePreserver::new(&node);
        node.map_expressions(|e| {
            let name = names.save(&e);
            Ok(e.transform_up(|e| match e {
                Expr::ScalarSubquery(sq) if !sq.outer_ref_columns.is_empty() => plannable(sq),
                other => Ok(Transformed::no(other)),
            })?
            .update_data(|e| name.restore(e)))
        })
    })?;
    if !rewritten.transformed {
        return Ok(rewritten.data);
    }
    // The subquery's column may now be nullable where it was not: recompute every schema.
    Ok(rewritten
        .data
        .transform_up_with_subqueries(|p| p.recompute_schema().map(Transformed::yes))?
        .data)
}
