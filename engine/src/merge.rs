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
    ColumnarValue, Expr, LogicalPlan, LogicalPlanBuilder, Volatility, cast, create_udf,
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
/// contents. Several rows of a query can stand for one proposed key (the target's rows,
/// one per source row matched, are folded by [`crate::merge_fold`] under the same rule);
/// `k` is this row's place among them, `n` how many of them change the row (MERGE) or how
/// many there are (ON CONFLICT). More than one fails the
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
                keep.push(row_stays(
                    n.value(i),
                    k.value(i),
                    act.value(i),
                    mode.value(i),
                )?);
            }
            Ok(ColumnarValue::Array(Arc::new(BooleanArray::from(keep))))
        }),
    ));
}

/// The columns a query whose rows are folded ([`MergePlans::fold`]) has after the action:
/// the target row's number and the matched source row's number (NULL where none matched).
pub const ROW_ID: &str = "__fsm_rid";
pub const SOURCE_ROW: &str = "__fsm_pos";

/// The planned queries of one MERGE, each with the table's columns in order and [`ACTION`]
/// after them.
pub struct MergePlans {
    /// The target's rows.
    pub kept: LogicalPlan,
    /// Set (to the statement's [`mode`]) where `kept` yields a target row once per source
    /// row it matched, followed by [`ROW_ID`] and [`SOURCE_ROW`]: the copies are folded into
    /// one ([`crate::merge_fold`]).
    pub fold: Option<i64>,
    /// The source rows inserted.
    pub inserted: Option<LogicalPlan>,
}

/// The rule of [`ROW_CHECK`], which the fold of the target's rows applies too: whether
/// the `k`th of `n` rows standing for one target row or key stays, or the error of a row
/// changed twice.
pub(crate) fn row_stays(n: i64, k: i64, act: i64, mode: i64) -> Result<bool, EngineError> {
    let changes = act == action::UPDATED || act == action::DELETED;
    if n > 1 && (changes || mode == mode::ON_CONFLICT_DO_UPDATE) {
        return Err(EngineError::RowChangedTwice {
            on_conflict: mode != mode::MERGE,
        });
    }
    Ok(k == 1 && act != action::DELETED)
}

/// Runs a MERGE of `table` (named `name` in the queries). Returns the count.
pub async fn execute(
    state: &SessionState,
    table: &DurableTable,
    name: &TableReference,
    queries: MergePlans,
) -> Result<Arc<dyn ExecutionPlan>> {
    let (files, rows_before) = table.snapshot_files()?;
    let pinned = table.pinned(&files);
    let schema = datafusion::catalog::TableProvider::schema(table);
    let width = schema.fields().len();
    let parts =
        std::iter::once((queries.kept, queries.fold)).chain(queries.inserted.map(|p| (p, None)));
    let mut plans = Vec::with_capacity(2);
    for (part, fold) in parts {
        let part = crate::dml::pin_target(part, name, pinned.clone())?;
        let found = part.schema().fields().len();
        let extra = if fold.is_some() { 3 } else { 1 };
        if found != width + extra {
            return Err(DataFusionError::Internal(format!(
                "a MERGE query with {found} columns for a table of {width}"
            )));
        }
        // Each column as the table's type, under the table's name; the action (and the
        // row numbers of a folded query) as Int64 after them.
        let columns = part.schema().columns();
        let mut exprs: Vec<Expr> = columns
            .iter()
            .zip(schema.fields())
            .map(|(c, f)| cast(Expr::Column(c.clone()), f.data_type().clone()).alias(f.name()))
            .collect();
        let mut tail = vec![ACTION];
        if fold.is_some() {
            tail.extend([ROW_ID, SOURCE_ROW]);
        }
        for (c, name) in columns[width..].iter().zip(tail) {
            exprs.push(cast(Expr::Column(c.clone()), DataType::Int64).alias(name));
        }
        let part = LogicalPlanBuilder::from(part).project(exprs)?.build()?;
        let plan = state.create_physical_plan(&part).await?;
        plans.push(match fold {
            Some(mode) => Arc::new(crate::merge_fold::MergeFoldExec::new(plan, width, mode)?) as _,
            None => plan,
        });
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
    table.rewrite(
        rows,
        files,
        Count::Merged {
            rows_before,
            untouched,
            inserted,
        },
    )
}
