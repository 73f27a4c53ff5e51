//! Stopping statements that compute for a long time inside one poll.
//!
//! A cancelled statement's task is aborted, and tokio aborts a task only when it yields.
//! Some operators compute for minutes without yielding: a nested-loop join whose condition
//! matches nothing scans its whole build side for each probe batch inside one poll, and an
//! aggregate above a join that emits many rows keeps polling it without ever being told to
//! wait. Each statement's task therefore carries an [`Interrupt`] flag, set when the task is
//! given up; [`InterruptRule`] puts checks of that flag into the physical plan where such
//! loops run (join conditions, and the outputs of joins and unnest), so the work ends with
//! an error at the next batch instead of running on for nobody.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::joins::{
    CrossJoinExec, HashJoinExec, NestedLoopJoinExec, NestedLoopJoinExecBuilder,
    PiecewiseMergeJoinExec, SortMergeJoinExec, SymmetricHashJoinExec,
};
use datafusion::physical_plan::unnest::UnnestExec;

use crate::checked_expr::CheckedExpr;
use crate::error::EngineError;
use crate::inspect::InspectExec;

tokio::task_local! {
    /// The flag of the statement whose task is running (see [`Interrupt::scope`]).
    static CURRENT: Interrupt;
}

/// Set once a statement's task has been given up (cancel, timeout, disconnect).
#[derive(Debug, Clone, Default)]
pub struct Interrupt(Arc<AtomicBool>);

impl Interrupt {
    /// Marks the statement as given up: its checks fail from now on.
    pub fn fire(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_fired(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// Runs `fut` as the statement this flag belongs to: plans made inside it check the flag.
    pub async fn scope<F: Future>(self, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }

    /// The flag of the statement running on this task, if any.
    pub fn current() -> Option<Interrupt> {
        CURRENT.try_with(Interrupt::clone).ok()
    }

    pub(crate) fn check(&self) -> Result<()> {
        if self.is_fired() {
            Err(EngineError::Interrupted.into())
        } else {
            Ok(())
        }
    }
}

/// Sets its flag when dropped unless [`InterruptOnDrop::disarm`] was called first: held by
/// whoever waits for a statement, so that giving up the wait gives up the work.
#[derive(Debug)]
pub struct InterruptOnDrop(Option<Interrupt>);

impl InterruptOnDrop {
    pub fn new(interrupt: Interrupt) -> Self {
        Self(Some(interrupt))
    }

    /// The statement finished: dropping this guard no longer interrupts anything (streams
    /// it left behind, like a cursor's, live on).
    pub fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        if let Some(i) = self.0.take() {
            i.fire();
        }
    }
}

/// The name of the operator that checks the flag after a join or unnest.
const INTERRUPTIBLE: &str = "InterruptibleExec";

/// Adds interrupt checks to plans made on a statement's task (a no-op elsewhere). Runs
/// after DataFusion's own rules, so the plan it sees is the one that executes.
#[derive(Debug, Default)]
pub struct InterruptRule;

impl PhysicalOptimizerRule for InterruptRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(interrupt) = Interrupt::current() else {
            return Ok(plan);
        };
        plan.transform_up(|node| {
            if node.name() == INTERRUPTIBLE {
                return Ok(Transformed::no(node));
            }
            let node = node
                .downcast_ref::<NestedLoopJoinExec>()
                .map(|nlj| with_checked_filter(nlj, &interrupt))
                .transpose()?
                .flatten()
                .unwrap_or(node);
            if !loops_on_its_own(node.as_ref()) {
                return Ok(Transformed::no(node));
            }
            let check = interrupt.clone();
            let wrapped = InspectExec::new(
                INTERRUPTIBLE,
                node,
                Arc::new(move |b| {
                    check.check()?;
                    b
                }),
            );
            Ok(Transformed::new(
                Arc::new(wrapped) as Arc<dyn ExecutionPlan>,
                true,
                TreeNodeRecursion::Continue,
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "flashsql_interrupt"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Operators that can emit many batches per batch they read: their consumers would loop on
/// them without reaching a point where the task yields.
fn loops_on_its_own(plan: &dyn ExecutionPlan) -> bool {
    plan.is::<NestedLoopJoinExec>()
        || plan.is::<CrossJoinExec>()
        || plan.is::<HashJoinExec>()
        || plan.is::<SortMergeJoinExec>()
        || plan.is::<SymmetricHashJoinExec>()
        || plan.is::<PiecewiseMergeJoinExec>()
        || plan.is::<UnnestExec>()
}

/// The nested-loop join with its condition checking the flag (`None` without a condition): the condition is evaluated
/// for every probe batch against each stretch of build rows, which is where a join that
/// matches nothing spends its time inside one poll.
fn with_checked_filter(
    nlj: &NestedLoopJoinExec,
    interrupt: &Interrupt,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(filter) = nlj.filter() else {
        return Ok(None);
    };
    let interrupt = interrupt.clone();
    let checked = JoinFilter::new(
        Arc::new(CheckedExpr::new(
            filter.expression().clone(),
            Arc::new(move |batch, evaluate| {
                interrupt.check()?;
                evaluate(batch)
            }),
        )),
        filter.column_indices().to_vec(),
        filter.schema().clone(),
    );
    Ok(Some(Arc::new(
        NestedLoopJoinExecBuilder::from(nlj)
            .with_filter(Some(checked))
            .build()?,
    )))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::SessionContext;

    use super::*;

    fn context() -> SessionContext {
        crate::test_support::context_with(Arc::new(InterruptRule), None)
    }

    /// A nested-loop join whose condition matches nothing computes inside one poll; once
    /// interrupted it evaluates its condition no more, instead of finishing the product.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_interrupted_join_evaluates_its_condition_no_more() {
        let ctx = context();
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        ctx.register_udf(create_udf(
            "counted",
            vec![DataType::Int64],
            DataType::Int64,
            Volatility::Immutable,
            Arc::new(move |args: &[ColumnarValue]| {
                seen.fetch_add(1, Ordering::SeqCst);
                Ok(args[0].clone())
            }),
        ));
        // 20,000 × 20,000 pairs; none match.
        let sql = "SELECT count(*) FROM generate_series(1, 20000) a(x), \
                   generate_series(1, 20000) b(y) WHERE counted(a.x - b.y) > 1000000";
        let uninterrupted = Interrupt::default();
        let plan = uninterrupted
            .scope(async { ctx.sql(sql).await?.create_physical_plan().await })
            .await
            .expect("plans");
        collect(plan, ctx.task_ctx()).await.expect("runs");
        assert!(calls.swap(0, Ordering::SeqCst) > 0, "the condition ran");

        let interrupt = Interrupt::default();
        let plan = interrupt
            .clone()
            .scope(async { ctx.sql(sql).await?.create_physical_plan().await })
            .await
            .expect("plans");
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        assert!(shown.contains("InterruptibleExec"), "{shown}");
        interrupt.fire();
        let err = collect(plan, ctx.task_ctx())
            .await
            .expect_err("interrupted");
        assert!(err.to_string().contains("interrupted"), "{err}");
        assert_eq!(
            calls.load(Ordering::SeqCst),
            0,
            "condition work after the interrupt"
        );
    }

    /// Outside a statement's task the rule leaves plans alone, and an uninterrupted plan
    /// answers as before.
    #[tokio::test]
    async fn plans_without_a_statement_flag_are_unchanged() {
        let ctx = context();
        let sql = "SELECT count(*) FROM generate_series(1, 100) a(x), \
                   generate_series(1, 100) b(y) WHERE a.x < b.y";
        let plan = ctx
            .sql(sql)
            .await
            .expect("sql")
            .create_physical_plan()
            .await
            .expect("plans");
        let shown = displayable(plan.as_ref()).indent(false).to_string();
        assert!(!shown.contains("InterruptibleExec"), "{shown}");
        let interrupt = Interrupt::default();
        let batches = interrupt
            .scope(async { ctx.sql(sql).await?.collect().await })
            .await
            .expect("runs");
        let count = datafusion::arrow::util::pretty::pretty_format_batches(&batches)
            .expect("formats")
            .to_string();
        // Pairs x < y among 1..=100: 100 · 99 / 2.
        assert!(count.contains("4950"), "{count}");
    }
}
