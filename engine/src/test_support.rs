//! What the engine's unit tests share: a one-partition context with a physical rule under
//! test, a query's plan and answer or row count, and an engine over an empty data directory.

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

/// The plan of `sql` on `ctx`, indented, and its answer as a table.
pub async fn plan_and_answer(ctx: &SessionContext, sql: &str) -> (String, String) {
    let plan = ctx
        .sql(sql)
        .await
        .expect("plans")
        .create_physical_plan()
        .await
        .expect("plans physically");
    let shown = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(false)
        .to_string();
    let batches = collect(plan, ctx.task_ctx()).await.expect("runs");
    let answer = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
        .expect("formats")
        .to_string();
    (shown, answer)
}

/// The rows `sql` returns on `ctx`.
pub async fn rows(ctx: &SessionContext, sql: &str) -> Result<usize> {
    let plan = ctx.sql(sql).await?.create_physical_plan().await?;
    let batches = collect(plan, ctx.task_ctx()).await?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

/// An engine over a new, empty data directory (no generated world); the directory lives as
/// long as the returned guard.
pub async fn engine() -> (tempfile::TempDir, crate::Engine) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = crate::EngineConfig::new(dir.path().join("data"));
    config.seed_world = None;
    let engine = crate::Engine::open(config).await.expect("engine");
    (dir, engine)
}
