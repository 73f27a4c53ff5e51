//! The walk analyzer rules share when they swap expressions for equivalent ones: each
//! expression of a plan node is rewritten knowing the types of the node's inputs, keeps the
//! name the user's query gave it, and the node's schema follows.

use datafusion::common::DFSchema;
use datafusion::common::tree_node::Transformed;
use datafusion::error::Result;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::merge_schema;
use datafusion::logical_expr::{Expr, LogicalPlan};

/// `node` with each of its expressions rewritten by `f`, given the schema of the node's
/// inputs (outer references carry their own types; a node without inputs has only
/// literals), names kept and the schema recomputed when anything changed.
pub fn rewrite_expressions(
    node: LogicalPlan,
    mut f: impl FnMut(Expr, &DFSchema) -> Result<Transformed<Expr>>,
) -> Result<Transformed<LogicalPlan>> {
    let schema = merge_schema(&node.inputs());
    let names = NamePreserver::new(&node);
    let rewritten = node.map_expressions(|expr| {
        let name = names.save(&expr);
        f(expr, &schema).map(|t| t.update_data(|e| name.restore(e)))
    })?;
    if rewritten.transformed {
        rewritten.map_data(|plan| plan.recompute_schema())
    } else {
        Ok(rewritten)
    }
}
