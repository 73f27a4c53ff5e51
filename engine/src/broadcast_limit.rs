//! Large constant values copied down a result column, within the size a batch may take.
//!
//! DataFusion folds constant expressions when it plans: `array_repeat(-0.0, 55080)` becomes
//! one 440 KB list, checked once by the function's own size limit. A projection then copies
//! that value onto every row of each batch it outputs — 8,192 copies, 3.6 GB in one array,
//! allocated outside the memory pool (the SQL fuzzer took a server capped at 256 MiB past
//! 2.5 GiB with it). [`BroadcastLimitRule`] puts a size check in front of each large
//! constant a projection outputs: a batch whose copies would take more than
//! [`MAX_RESULT_BYTES`] fails with 54000, like the size-limited functions themselves.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use flashsql_udfs::limits::{MAX_RESULT_BYTES, check_result_bytes};

use crate::checked_expr::CheckedExpr;

/// Constants smaller than this are copied without a check: even a batch of a million rows
/// of them stays within [`MAX_RESULT_BYTES`].
const CHECKED_FROM_BYTES: usize = (MAX_RESULT_BYTES >> 20) as usize;

/// Checks the copies of large constants that projections output (see the module notes).
#[derive(Debug, Default)]
pub struct BroadcastLimitRule;

impl PhysicalOptimizerRule for BroadcastLimitRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(projection) = node.downcast_ref::<ProjectionExec>() else {
                return Ok(Transformed::no(node));
            };
            if !projection.expr().iter().any(|e| large_constant(&e.expr)) {
                return Ok(Transformed::no(node));
            }
            let exprs = projection
                .expr()
                .iter()
                .map(|e| ProjectionExpr {
                    expr: if large_constant(&e.expr) {
                        Arc::new(CheckedExpr::new(e.expr.clone(), Arc::new(copies_fit)))
                    } else {
                        e.expr.clone()
                    },
                    alias: e.alias.clone(),
                })
                .collect::<Vec<_>>();
            Ok(Transformed::yes(Arc::new(ProjectionExec::try_new(
                exprs,
                projection.input().clone(),
            )?) as Arc<dyn ExecutionPlan>))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "flashsql_broadcast_limit"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Evaluates a large constant, failing (54000) where its copies for the batch would be
/// too large.
fn copies_fit(
    batch: &RecordBatch,
    evaluate: &dyn Fn() -> Result<ColumnarValue>,
) -> Result<ColumnarValue> {
    let value = evaluate()?;
    if let ColumnarValue::Scalar(v) = &value {
        let bytes = (v.size() as u64).saturating_mul(batch.num_rows() as u64);
        check_result_bytes("a constant repeated on every row", bytes)?;
    }
    Ok(value)
}

fn large_constant(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.downcast_ref::<Literal>()
        .is_some_and(|l| l.value().size() >= CHECKED_FROM_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{context_with, rows as run};

    /// A 400 KB constant on 8,192 rows of a batch (3.2 GB) fails; on a few rows, and small
    /// constants on many, it is answered.
    #[tokio::test]
    async fn copies_of_a_large_constant_are_size_checked() {
        let ctx = context_with(Arc::new(BroadcastLimitRule), None);
        let big = "SELECT repeat('x', 400000) AS pad FROM generate_series(1, 8192)";
        let err = run(&ctx, big).await.expect_err("3.2 GB of copies");
        assert!(
            err.to_string().contains("more than the 256 MiB"),
            "unexpected error: {err}"
        );
        assert_eq!(
            run(
                &ctx,
                "SELECT repeat('x', 400000) AS pad FROM generate_series(1, 10)"
            )
            .await
            .expect("4 MB"),
            10
        );
        assert_eq!(
            run(&ctx, "SELECT 'small' AS s FROM generate_series(1, 100000)")
                .await
                .expect("small constants"),
            100_000
        );
    }
}
