//! Windows that hold their whole input, within the memory pool.
//!
//! A window whose frame is a whole partition (`sum(x) OVER (PARTITION BY k)`, or `ROWS
//! BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING`) runs in DataFusion's
//! `WindowAggExec`, which collects its entire input before it computes anything and
//! reserves none of it in the memory pool: such a window over `generate_series(1,
//! 2147483647)` took a server capped at 256 MiB to 1.6 GiB in three seconds (found by the
//! SQL fuzzer). [`WindowMemoryRule`] puts an operator under each `WindowAggExec` that
//! reserves every batch it passes up in the task's pool and keeps the reservation for the
//! stream's life, so a window larger than the pool fails with 53200 like a sort or an
//! aggregate would.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::windows::WindowAggExec;

use crate::inspect::{Inspect, InspectExec};

/// The name of the operator that reserves a window's input.
const RESERVED: &str = "ReservedWindowInputExec";

/// Reserves the input of every whole-input window in the memory pool (see the module notes).
#[derive(Debug, Default)]
pub struct WindowMemoryRule;

impl PhysicalOptimizerRule for WindowMemoryRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            if !node.is::<WindowAggExec>() {
                return Ok(Transformed::no(node));
            }
            let children: Vec<Arc<dyn ExecutionPlan>> = node
                .children()
                .into_iter()
                .map(|child| {
                    if child.name() == RESERVED {
                        child.clone()
                    } else {
                        Arc::new(InspectExec::per_stream(
                            RESERVED,
                            child.clone(),
                            Arc::new(|context| reserving(context.memory_pool())),
                        )) as Arc<dyn ExecutionPlan>
                    }
                })
                .collect();
            // The reserving operator passes its input's properties on: the window's stay.
            let keep = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Keep);
            Ok(Transformed::yes(node.replace_children(children, keep)?))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "flashsql_window_memory"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// An inspection that reserves each batch's memory in `pool` until the stream ends.
fn reserving(pool: &Arc<dyn datafusion::execution::memory_pool::MemoryPool>) -> Inspect {
    let reservation = MemoryConsumer::new(RESERVED).register(pool);
    Arc::new(move |batch| {
        let batch = batch?;
        reservation.try_grow(batch.get_array_memory_size())?;
        Ok(batch)
    })
}

#[cfg(test)]
mod tests {
    use datafusion::error::DataFusionError;

    use super::*;
    use crate::test_support::{context_with, rows as run};

    /// A whole-partition window over more rows than the pool holds fails with "resources
    /// exhausted"; a small one is answered, and the pool is empty afterwards.
    #[tokio::test]
    async fn a_whole_input_window_is_reserved_in_the_pool() {
        let ctx = context_with(Arc::new(WindowMemoryRule), Some(16 << 20));
        let whole = "SELECT sum(value) OVER (PARTITION BY value % 3 ORDER BY 1 \
                     ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) \
                     FROM generate_series(1, {n})";
        let plan = ctx
            .sql(&whole.replace("{n}", "10"))
            .await
            .expect("plans")
            .create_physical_plan()
            .await
            .expect("physical plan");
        let shown = datafusion::physical_plan::displayable(plan.as_ref())
            .indent(true)
            .to_string();
        assert!(shown.contains(RESERVED), "{shown}");
        let err = run(&ctx, &whole.replace("{n}", "10000000"))
            .await
            .expect_err("80 MB of input in a 16 MiB pool");
        assert!(
            matches!(err.find_root(), DataFusionError::ResourcesExhausted(_)),
            "{err}"
        );
        assert_eq!(
            run(&ctx, &whole.replace("{n}", "10000"))
                .await
                .expect("fits"),
            10_000
        );
        assert_eq!(ctx.runtime_env().memory_pool.reserved(), 0);
    }
}
