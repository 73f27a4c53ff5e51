//! What the physical rules' unit tests share: a one-partition context with the rule
//! under test, and a query's row count.

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::execution::memory_pool::GreedyMemoryPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::collect;
use datafusion::prelude::{SessionConfig, SessionContext};

/// A context of one partition with `rule` after DataFusion's own, and a memory pool of
/// `pool_bytes` if given (unbounded otherwise).
pub fn context_with(
    rule: Arc<dyn PhysicalOptimizerRule + Send + Sync>,
    pool_bytes: Option<usize>,
) -> SessionContext {
    context_with_partitions(rule, pool_bytes, 1)
}

/// [`context_with`], planning for `partitions` partitions (two-stage aggregates, repartitions).
pub fn context_with_partitions(
    rule: Arc<dyn PhysicalOptimizerRule + Send + Sync>,
    pool_bytes: Option<usize>,
    partitions: usize,
) -> SessionContext {
    let mut runtime = RuntimeEnvBuilder::new();
    if let Some(bytes) = pool_bytes {
        runtime = runtime.with_memory_pool(Arc::new(GreedyMemoryPool::new(bytes)));
    }
    let state = SessionStateBuilder::new()
        .with_config(SessionConfig::new().with_target_partitions(partitions))
        .with_runtime_env(runtime.build_arc().expect("runtime"))
        .with_default_features()
        .with_physical_optimizer_rule(rule)
        .build();
    SessionContext::new_with_state(state)
}

/// The rows `sql` returns on `ctx`.
pub async fn rows(ctx: &SessionContext, sql: &str) -> Result<usize> {
    let plan = ctx.sql(sql).await?.create_physical_plan().await?;
    let batches = collect(plan, ctx.task_ctx()).await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}
