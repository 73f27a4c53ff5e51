//! DELETE and UPDATE on durable tables: each rewrites the table in one commit.
//!
//! DataFusion hands a table provider only the conjuncts of its WHERE clause that it can see
//! as filters on the target; once its optimizer has turned `WHERE id IN (SELECT …)` into a
//! semi join, that is none, and `DELETE FROM t WHERE id IN (SELECT …)` removed every row.
//! Here the statement's own plan is used instead, whatever its predicate holds: the kept
//! rows of a DELETE are the target's rows for which the condition is not true, and an
//! UPDATE writes the changed rows and the untouched ones (counting the changed ones as they
//! are written). Both read one snapshot of the
//! target's files and replace exactly that snapshot, or fail with 40001 if another write
//! committed meanwhile.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::catalog::TableProvider;
use datafusion::common::TableReference;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::datasource::{DefaultTableSource, provider_as_source};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{
    DmlStatement, Expr, LogicalPlan, LogicalPlanBuilder, TableScan, WriteOp, lit,
};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;

use crate::error::EngineError;
use crate::inspect::InspectExec;
use crate::table::{Count, DurableTable};

/// The durable table a DELETE or UPDATE writes, if it writes one.
pub fn durable_target(dml: &DmlStatement) -> Option<&DurableTable> {
    dml.target
        .downcast_ref::<DefaultTableSource>()?
        .table_provider
        .downcast_ref::<DurableTable>()
}

/// The physical plan of a DELETE or UPDATE of `table`; it yields one row with the count.
pub async fn plan(
    state: &SessionState,
    dml: &DmlStatement,
    table: &DurableTable,
) -> Result<Arc<dyn ExecutionPlan>> {
    let (files, rows_before) = table.snapshot_files()?;
    let input = pin_target(
        dml.input.as_ref().clone(),
        &dml.table_name,
        table.pinned(&files),
    )?;
    let (rows, count) = match dml.op {
        WriteOp::Delete => {
            let (source, condition) = split_filter(&input);
            // Keep a row unless the condition is true for it (NULL keeps it, as in SQL);
            // without a condition, none.
            let keep = match condition {
                Some(c) => Expr::IsNotTrue(Box::new(c)),
                None => lit(false),
            };
            let kept = LogicalPlanBuilder::from(source).filter(keep)?.build()?;
            let kept = state
                .create_physical_plan(&target_columns(kept, table)?)
                .await?;
            (kept, Count::Removed { rows_before })
        }
        WriteOp::Update => {
            let LogicalPlan::Projection(assign) = &input else {
                return Err(internal("an UPDATE plan without its projection"));
            };
            let changed = LogicalPlanBuilder::from(assign.input.as_ref().clone())
                .project(assign.expr.clone())?
                .build()?;
            let changed = state
                .create_physical_plan(&target_columns(changed, table)?)
                .await?;
            match split_filter(&assign.input) {
                // Every row changes: the snapshot's row count is the count.
                (_, None) => (changed, Count::Known(rows_before)),
                // The changed rows and the untouched ones; the count is what the first
                // part wrote, counted as it is written rather than by a second scan.
                (source, Some(c)) => {
                    let untouched = LogicalPlanBuilder::from(source)
                        .filter(Expr::IsNotTrue(Box::new(c)))?
                        .build()?;
                    let untouched = state
                        .create_physical_plan(&target_columns(untouched, table)?)
                        .await?;
                    let counted = Arc::new(AtomicU64::new(0));
                    let rows = counted.clone();
                    let changed = Arc::new(InspectExec::new(
                        "CountingExec",
                        changed,
                        Arc::new(move |b| {
                            let b = b?;
                            rows.fetch_add(b.num_rows() as u64, Ordering::Relaxed);
                            Ok(b)
                        }),
                    ));
                    (
                        UnionExec::try_new(vec![changed, untouched])?,
                        Count::Written(counted),
                    )
                }
            }
        }
        _ => return Err(internal("not a DELETE or UPDATE")),
    };
    table.rewrite(rows, files, count)
}

/// `plan` with every scan of table `name` (its own and any in its subqueries) reading
/// `pinned`: the snapshot a rewrite replaces.
pub fn pin_target(
    plan: LogicalPlan,
    name: &TableReference,
    pinned: Arc<DurableTable>,
) -> Result<LogicalPlan> {
    let pinned: Arc<dyn TableProvider> = pinned;
    Ok(plan
        .transform_up_with_subqueries(|node| match node {
            LogicalPlan::TableScan(scan) if scan.table_name.resolved_eq(name) => {
                Ok(Transformed::yes(LogicalPlan::TableScan(TableScan {
                    source: provider_as_source(pinned.clone()),
                    ..scan
                })))
            }
            other => Ok(Transformed::no(other)),
        })?
        .data)
}

/// A plan and the condition of the Filter at its top (a DELETE's or UPDATE's WHERE).
fn split_filter(plan: &LogicalPlan) -> (LogicalPlan, Option<Expr>) {
    match plan {
        LogicalPlan::Filter(f) => (f.input.as_ref().clone(), Some(f.predicate.clone())),
        other => (other.clone(), None),
    }
}

/// `plan`'s columns under the table's names and in its order (a target read through an
/// alias carries the alias as qualifier).
fn target_columns(plan: LogicalPlan, table: &DurableTable) -> Result<LogicalPlan> {
    let schema = table.schema();
    if plan.schema().fields().len() != schema.fields().len() {
        return Err(
            EngineError::NotSupported("DELETE … USING (use a subquery in WHERE)".into()).into(),
        );
    }
    let columns = plan
        .schema()
        .columns()
        .into_iter()
        .zip(schema.fields())
        .map(|(c, f)| Expr::Column(c).alias(f.name()))
        .collect::<Vec<_>>();
    LogicalPlanBuilder::from(plan).project(columns)?.build()
}

fn internal(what: &str) -> DataFusionError {
    DataFusionError::Internal(what.to_string())
}

/// Whether DataFusion's own DELETE/UPDATE (used for temporary tables) sees this statement's
/// whole condition: its table providers get the WHERE clause's conjuncts on the target, and
/// a subquery, once optimised into a join, is lost from them (every row then matched).
pub fn provider_sees_condition(dml: &DmlStatement) -> bool {
    let mut simple = true;
    let _ = dml.input.apply(|node| {
        let plain = matches!(
            node,
            LogicalPlan::Projection(_)
                | LogicalPlan::Filter(_)
                | LogicalPlan::TableScan(_)
                | LogicalPlan::SubqueryAlias(_)
        );
        let subquery = node
            .expressions()
            .iter()
            .any(|e| e.exists(|e| Ok(is_subquery(e))).unwrap_or(true));
        if !plain || subquery {
            simple = false;
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    simple
}

fn is_subquery(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Exists(_) | Expr::InSubquery(_) | Expr::ScalarSubquery(_)
    )
}

#[cfg(test)]
mod tests {
    use datafusion::physical_plan::collect;

    use crate::Output;
    use crate::test_support::engine;

    async fn count(session: &crate::session::Session, sql: &str) -> i64 {
        let Output::Rows(df) = session.sql(sql).await.expect("query") else {
            panic!("no rows");
        };
        let batches = df.collect().await.expect("runs");
        datafusion::arrow::array::AsArray::as_primitive::<datafusion::arrow::datatypes::Int64Type>(
            batches[0].column(0),
        )
        .value(0)
    }

    /// An UPDATE whose snapshot another write replaced fails with a concurrent-write error
    /// and changes nothing; the other write stays.
    #[tokio::test]
    async fn a_rewrite_after_a_concurrent_write_fails_and_changes_nothing() {
        let (_dir, engine) = engine().await;
        let session = engine.new_session().expect("session");
        session
            .sql("CREATE TABLE t (id BIGINT, v BIGINT)")
            .await
            .expect("create");
        session
            .sql("INSERT INTO t VALUES (1, 10), (2, 20)")
            .await
            .expect("insert");
        for (op, sum_after) in [
            ("UPDATE t SET v = 0 WHERE id = 1", 60),
            ("DELETE FROM t WHERE id = 1", 90),
        ] {
            let state = session.ctx().state();
            let plan = state.create_logical_plan(op).await.expect("plans");
            let datafusion::logical_expr::LogicalPlan::Dml(dml) = plan else {
                panic!("not DML: {op}");
            };
            let table = super::durable_target(&dml).expect("a durable table");
            let physical = super::plan(&state, &dml, table).await.expect("plans");
            // Another statement commits between planning and running.
            let other = engine.new_session().expect("session");
            other
                .sql("INSERT INTO t VALUES (3, 30)")
                .await
                .expect("insert");
            let err = collect(physical, state.task_ctx())
                .await
                .expect_err("the snapshot was replaced");
            assert!(
                err.to_string().contains("concurrent"),
                "{op}: unexpected error {err}"
            );
            assert_eq!(
                count(&session, "SELECT sum(v) FROM t").await,
                sum_after,
                "{op}"
            );
        }
        assert_eq!(count(&session, "SELECT count(*) FROM t").await, 4);
    }
}
