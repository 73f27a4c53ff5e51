//! The expressions a plan evaluates on each input row — filters' predicates, projections'
//! columns, aggregates' arguments, `FILTER (WHERE …)` clauses and group keys — rewritten
//! in place.
//!
//! Physical rules that change how an expression is evaluated (not what it computes) take
//! each such node apart and rebuild it the same way; this is that one piece. An aggregate
//! is rewritten in the stage that evaluates its expressions: a final stage reads the first
//! stage's states.

use std::sync::Arc;

use datafusion::arrow::datatypes::Schema;
use datafusion::error::Result;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode, PhysicalGroupBy};
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};

/// Where an expression stands in its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A filter's predicate.
    Predicate,
    /// A projection's output column.
    Projected,
    /// An aggregate's argument.
    Argument,
    /// An aggregate's `FILTER (WHERE …)`.
    AggregateFilter,
    /// An aggregate's group key.
    GroupKey,
}

/// A rewrite of one expression, given its input's schema and its place; returning the same
/// `Arc` means no change.
pub type Rewrite<'a> =
    dyn Fn(&Arc<dyn PhysicalExpr>, &Schema, Place) -> Result<Arc<dyn PhysicalExpr>> + 'a;

/// `node` with its row expressions rewritten by `f`, or None if it is not a filter,
/// projection or first-stage aggregate, or `f` changed nothing.
pub fn rewritten(
    node: &Arc<dyn ExecutionPlan>,
    f: &Rewrite<'_>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(filter) = node.downcast_ref::<FilterExec>() {
        filter_with(filter, f)
    } else if let Some(projection) = node.downcast_ref::<ProjectionExec>() {
        projection_with(projection, f)
    } else if let Some(aggregate) = node.downcast_ref::<AggregateExec>() {
        aggregate_with(aggregate, f)
    } else {
        Ok(None)
    }
}

fn filter_with(filter: &FilterExec, f: &Rewrite<'_>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let predicate = f(
        filter.predicate(),
        &filter.input().schema(),
        Place::Predicate,
    )?;
    if Arc::ptr_eq(&predicate, filter.predicate()) {
        return Ok(None);
    }
    let plan = FilterExecBuilder::from(filter)
        .with_predicate(predicate)
        .build()?;
    Ok(Some(Arc::new(plan)))
}

fn projection_with(
    projection: &ProjectionExec,
    f: &Rewrite<'_>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let schema = projection.input().schema();
    let mut changed = false;
    let mut exprs = Vec::with_capacity(projection.expr().len());
    for e in projection.expr() {
        let expr = f(&e.expr, &schema, Place::Projected)?;
        changed |= !Arc::ptr_eq(&expr, &e.expr);
        exprs.push(ProjectionExpr {
            expr,
            alias: e.alias.clone(),
        });
    }
    if !changed {
        return Ok(None);
    }
    let plan = ProjectionExec::try_new(exprs, projection.input().clone())?;
    Ok(Some(Arc::new(plan)))
}

fn aggregate_with(
    aggregate: &AggregateExec,
    f: &Rewrite<'_>,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if !matches!(
        aggregate.mode(),
        AggregateMode::Partial | AggregateMode::Single | AggregateMode::SinglePartitioned
    ) {
        return Ok(None);
    }
    let schema = aggregate.input_schema();
    let mut changed = false;
    let mut aggregates = Vec::with_capacity(aggregate.aggr_expr().len());
    for a in aggregate.aggr_expr() {
        let all = a.all_expressions();
        let args = all
            .args
            .iter()
            .map(|arg| f(arg, &schema, Place::Argument))
            .collect::<Result<Vec<_>>>()?;
        let same = args.iter().zip(&all.args).all(|(n, o)| Arc::ptr_eq(n, o));
        match (same, a.with_new_expressions(args, all.order_by_exprs)) {
            (false, Some(new)) => {
                changed = true;
                aggregates.push(Arc::new(new));
            }
            _ => aggregates.push(a.clone()),
        }
    }
    let mut filters = Vec::with_capacity(aggregate.filter_expr().len());
    for clause in aggregate.filter_expr() {
        filters.push(match clause {
            Some(c) => {
                let new = f(c, &schema, Place::AggregateFilter)?;
                changed |= !Arc::ptr_eq(&new, c);
                Some(new)
            }
            None => None,
        });
    }
    let group_by = aggregate.group_expr();
    let keys = group_by
        .expr()
        .iter()
        .map(|(e, name)| Ok((f(e, &schema, Place::GroupKey)?, name.clone())))
        .collect::<Result<Vec<_>>>()?;
    let keys_changed = keys
        .iter()
        .zip(group_by.expr())
        .any(|((n, _), (o, _))| !Arc::ptr_eq(n, o));
    if !changed && !keys_changed {
        return Ok(None);
    }
    let group_by = if keys_changed {
        PhysicalGroupBy::new(
            keys,
            group_by.null_expr().to_vec(),
            group_by.groups().to_vec(),
            group_by.has_grouping_set(),
        )
    } else {
        group_by.clone()
    };
    let plan = AggregateExec::try_new(
        *aggregate.mode(),
        group_by,
        aggregates,
        filters,
        aggregate.input().clone(),
        schema,
    )?
    .with_limit_options(aggregate.limit_options());
    Ok(Some(Arc::new(plan)))
}
