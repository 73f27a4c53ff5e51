//! MERGE (and `INSERT … ON CONFLICT`, which the SQL layer writes as one) on a durable table.
//!
//! The SQL layer hands over the statement's new contents as queries: the target's rows,
//! each kept, updated or deleted, and the rows the statement inserts, each ending with an
//! [`ACTION`] column. They read one snapshot of the target's files and replace exactly that
//! snapshot in one commit, or fail with 40001 if another write committed meanwhile — the
//! same rule as UPDATE and DELETE (`dml`). The statement's count (PostgreSQL's: rows
//! updated, deleted and inserted) is taken as the rows are written.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::arrow::array::{Array, AsArray, BooleanArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::common::TableReference;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::{
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, Volatility, cast, col, create_udf,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::SessionContext;

use crate::error::EngineError;
use crate::inspect::InspectExec;
use crate::table::{Count, DurableTable};

/// The last column of each query: what the statement does with the row.
pub const ACTION: &str = "__fsm_act";

/// The values of [`ACTION`].
pub mod action {
    pub const KEPT: i64 = 0;
    pub const UPDATED: i64 = 1;
    pub const DELETED: i64 = 2;
    pub const INSERTED: i64 = 3;
}

/// Which statement a query stands for, as the row check's last argument: it decides
/// what a repeated key means and how the error reads.
pub mod mode {
    pub const MERGE: i64 = 0;
    pub const ON_CONFLICT_DO_NOTHING: i64 = 1;
    pub const ON_CONFLICT_DO_UPDATE: i64 = 2;
}

/// `__flashsql_merge_row(n, k, action, mode)`: whether a row of a query belongs to the new
/// contents. Several rows of a query can stand for one target row (one per source row it
/// matched) or one proposed key; `k` is this row's place among them, `n` how many of them
/// change the row (MERGE) or how many there are (ON CONFLICT). More than one fails the
/// statement (21000) where the row is changed or under `ON CONFLICT DO UPDATE`; otherwise
/// the first is kept, unless it is deleted.
pub const ROW_CHECK: &str = "__flashsql_merge_row";

/// Registers the row check on a session.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(create_udf(
        ROW_CHECK,
        vec![DataType::Int64; 4],
        DataType::Boolean,
        // Evaluated where it stands, above the aggregate that counts the matches.
        Volatility::Volatile,
        Arc::new(|args: &[ColumnarValue]| {
            let rows = args
                .iter()
                .find_map(|a| match a {
                    ColumnarValue::Array(a) => Some(a.len()),
                    ColumnarValue::Scalar(_) => None,
                })
                .unwrap_or(1);
            let arrays = args
                .iter()
                .map(|a| a.to_array(rows))
                .collect::<Result<Vec<_>>>()?;
            let [n, k, act, mode] = arrays.as_slice() else {
                return Err(DataFusionError::Internal(format!(
                    "{ROW_CHECK} takes four arguments"
                )));
            };
            let (n, k, act, mode) = (
                n.as_primitive::<Int64Type>(),
                k.as_primitive::<Int64Type>(),
                act.as_primitive::<Int64Type>(),
                mode.as_primitive::<Int64Type>(),
            );
            let mut keep = Vec::with_capacity(rows);
            for i in 0..rows {
                let (n, k, act, mode) = (n.value(i), k.value(i), act.value(i), mode.value(i));
                let changes = act == action::UPDATED || act == action::DELETED;
                if n > 1 && (changes || mode == mode::ON_CONFLICT_DO_UPDATE) {
                    return Err(EngineError::RowChangedTwice {
                        on_conflict: mode != mode::MERGE,
                    }
                    .into());
                }
                keep.push(k == 1 && act != action::DELETED);
            }
            Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(keep))))
        }),
    ));
}

/// Runs a MERGE of `table` (named `name` in the queries): `parts` are the planned queries,
/// each with the table's columns in order and [`ACTION`] last. Returns the count.
pub async fn execute(
    state: &SessionState,
    table: &DurableTable,
    name: &TableReference,
    parts: Vec<LogicalPlan>,
) -> Result<Arc<dyn ExecutionPlan>> {
    let (files, rows_before) = table.snapshot_files()?;
    let pinned = table.pinned(&files);
    let schema = datafusion::catalog::TableProvider::schema(table);
    let mut plans = Vec::with_capacity(parts.len());
    for part in parts {
        let part = crate::dml::pin_target(part, name, pinned.clone())?;
        let found = part.schema().fields().len();
        if found != schema.fields().len() + 1 {
            return Err(DataFusionError::Internal(format!(
                "a MERGE query with {found} columns for a table of {}",
                schema.fields().len()
            )));
        }
        // Each column as the table's type, under the table's name; the action last.
        let mut exprs: Vec<Expr> = part
            .schema()
            .columns()
            .into_iter()
            .zip(schema.fields())
            .map(|(c, f)| cast(Expr::Column(c), f.data_type().clone()).alias(f.name()))
            .collect();
        exprs.push(cast(col(ACTION), DataType::Int64).alias(ACTION));
        let part = LogicalPlanBuilder::from(part).project(exprs)?.build()?;
        plans.push(state.create_physical_plan(&part).await?);
    }
    let rows = match plans.len() {
        1 => plans.remove(0),
        _ => UnionExec::try_new(plans)?,
    };
    // Untouched and inserted rows, counted as they are written: the rest of the target's
    // rows before were updated or deleted.
    let untouched = Arc::new(AtomicU64::new(0));
    let inserted = Arc::new(AtomicU64::new(0));
    let (u, i) = (untouched.clone(), inserted.clone());
    let width = schema.fields().len();
    let counted = Arc::new(InspectExec::new(
        "MergeCountExec",
        rows,
        Arc::new(move |b| {
            let b = b?;
            let actions = b.column(width).as_primitive::<Int64Type>();
            let (mut kept, mut new) = (0, 0);
            for a in actions.iter().flatten() {
                match a {
                    action::KEPT => kept += 1,
                    action::INSERTED => new += 1,
                    _ => {}
                }
            }
            u.fetch_add(kept, Ordering::Relaxed);
            i.fetch_add(new, Ordering::Relaxed);
            Ok(b)
        }),
    ));
    let columns = counted.schema();
    let projection = columns
        .fields()
        .iter()
        .take(width)
        .enumerate()
        .map(|(i, f)| {
            (
                Arc::new(Column::new(f.name(), i)) as Arc<dyn PhysicalExpr>,
                f.name().to_string(),
            )
        })
        .collect::<Vec<_>>();
    let rows = Arc::new(ProjectionExec::try_new(projection, counted)?);
    Ok(table.rewrite(
        rows,
        files,
        Count::Merged {
            rows_before,
            untouched,
            inserted,
        },
    ))
}
