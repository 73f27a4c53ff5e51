//! Large constant values copied into result columns, within the size a batch may take.
//!
//! DataFusion folds constant expressions when it plans: `array_repeat(-0.0, 55080)` becomes
//! one 440 KB list, checked once by the function's own size limit. Three things then copy it
//! per row, outside the memory pool:
//! - a projection outputs it on every row of each batch — 8,192 copies, 3.6 GB in one array
//!   (the SQL fuzzer took a server capped at 256 MiB past 2.5 GiB with it);
//! - an expression builds each row's value from it: `array_append(<711 KB list>, k)` makes a
//!   new list per row, 5.8 GB a batch (11.7 GiB the next time the fuzzer found it);
//! - an aggregate evaluates its argument into a column before accumulating it:
//!   `string_agg(<300 KB text>, …)` over a 2,000-row batch allocated 586 MB before the
//!   aggregate's memory reservation saw it.
//!
//! A scalar subquery is such a constant too, of a size known only when it runs:
//! `cuped_ttest((SELECT <65 KB text>), …)` over 40,000 rows took the server past 2 GB.
//!
//! [`BroadcastLimitRule`] checks all three, in projections, filters and aggregates'
//! arguments and group keys. A constant a projection outputs or an aggregate reads fails
//! with 54000 when its copies for a batch would take more than [`MAX_RESULT_BYTES`], like
//! the size-limited functions themselves. An expression with a large constant argument and a variable-size
//! result (text, binary, lists) may copy it or not — `array_append` does, `substr` does
//! not — so where the batch times the constant could pass the limit it is evaluated on
//! slices of the batch small enough that each slice's copies are bounded, and fails with
//! 54000 once its results pass the limit. Small constants, or few rows, are evaluated as
//! before, in one piece.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch};
use datafusion::arrow::compute::concat;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::Result;
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;
use flashsql_udfs::limits::{MAX_RESULT_BYTES, check_result_bytes};

use crate::checked_expr::CheckedExpr;
use crate::row_expressions::{self, Place};

/// Constants smaller than this are copied without a check: even a batch of a million rows
/// of them stays within [`MAX_RESULT_BYTES`].
const CHECKED_FROM_BYTES: usize = (MAX_RESULT_BYTES >> 20) as usize;

/// At most this many bytes of a large constant's copies are built at once when an
/// expression is evaluated slice by slice.
const SLICE_BYTES: usize = 16 << 20;

/// Checks the copies of large constants in projections, filters and aggregates' arguments
/// (see the module notes).
#[derive(Debug, Default)]
pub struct BroadcastLimitRule;

impl PhysicalOptimizerRule for BroadcastLimitRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Aggregates read some arguments as literals when they are planned (`srm_test`'s
        // variants, `string_agg`'s delimiter): a literal stays one unless a batch of its
        // copies could pass the limit. Group keys are evaluated into a column per batch too:
        // `GROUP BY <95 kB literal>` over a batch of 8,192 rows built 780 MB before the
        // grouping saw it.
        let batch_size = config.execution.batch_size.get();
        let literal_from = (MAX_RESULT_BYTES as usize / batch_size.max(1)).max(CHECKED_FROM_BYTES);
        let guard = |e: &Arc<dyn PhysicalExpr>, schema: &Schema, place: Place| match place {
            Place::Predicate => slice_large_constant_work(e.clone(), schema),
            Place::Projected => guarded(e, schema, CHECKED_FROM_BYTES),
            Place::Argument | Place::GroupKey => guarded(e, schema, literal_from),
            Place::AggregateFilter => Ok(e.clone()),
        };
        plan.transform_up(|node| {
            Ok(match row_expressions::rewritten(&node, &guard)? {
                Some(plan) => Transformed::yes(plan),
                None => Transformed::no(node),
            })
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
    evaluate: &dyn Fn(&RecordBatch) -> Result<ColumnarValue>,
) -> Result<ColumnarValue> {
    let value = evaluate(batch)?;
    if let ColumnarValue::Scalar(v) = &value {
        let bytes = (v.size() as u64).saturating_mul(batch.num_rows() as u64);
        check_result_bytes("a constant repeated on every row", bytes)?;
    }
    Ok(value)
}

/// `expr` with its copies of large constants checked: the constant itself where `expr` is
/// one — a large literal, or an expression of no column whose value is known only when it
/// runs (a scalar subquery's) — each sub-expression building values from one otherwise.
fn guarded(
    expr: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
    literal_from: usize,
) -> Result<Arc<dyn PhysicalExpr>> {
    let expr = slice_large_constant_work(expr.clone(), schema)?;
    let large_literal = expr
        .downcast_ref::<Literal>()
        .is_some_and(|l| l.value().size() >= literal_from);
    Ok(if large_literal || runtime_constant(&expr) {
        Arc::new(CheckedExpr::new(expr, Arc::new(copies_fit)))
    } else {
        expr
    })
}

/// An expression that reads no column and is not a literal: it may evaluate to one value
/// for the whole batch, of a size seen only then.
fn runtime_constant(expr: &Arc<dyn PhysicalExpr>) -> bool {
    expr.downcast_ref::<Literal>().is_none()
        && expr.downcast_ref::<CheckedExpr>().is_none()
        && collect_columns(expr).is_empty()
}

/// `expr` with each sub-expression that builds variable-size values from a large constant
/// evaluated through [`sliced`].
fn slice_large_constant_work(
    expr: Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    expr.transform_up(|e| {
        if e.downcast_ref::<CheckedExpr>().is_some() || e.downcast_ref::<Literal>().is_some() {
            return Ok(Transformed::no(e));
        }
        let constant_bytes: usize = e
            .children()
            .iter()
            .filter_map(|c| c.downcast_ref::<Literal>())
            .map(|l| l.value().size())
            .filter(|&size| size >= CHECKED_FROM_BYTES)
            .sum();
        if constant_bytes == 0 || !variable_size(&e.data_type(schema)?) {
            return Ok(Transformed::no(e));
        }
        Ok(Transformed::yes(Arc::new(CheckedExpr::new(
            e,
            Arc::new(move |batch, evaluate| sliced(batch, evaluate, constant_bytes)),
        )) as Arc<dyn PhysicalExpr>))
    })
    .map(|t| t.data)
}

/// Whether values of `dt` can be as large as the constants they are built from.
fn variable_size(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::List(_)
            | DataType::LargeList(_)
            | DataType::ListView(_)
            | DataType::LargeListView(_)
            | DataType::FixedSizeList(_, _)
            | DataType::Struct(_)
            | DataType::Map(_, _)
            | DataType::Union(_, _)
            | DataType::Dictionary(_, _)
    )
}

/// Evaluates in one piece where a copy of the constants per row fits the limit, else slice
/// by slice, failing (54000) once the results pass [`MAX_RESULT_BYTES`].
fn sliced(
    batch: &RecordBatch,
    evaluate: &dyn Fn(&RecordBatch) -> Result<ColumnarValue>,
    constant_bytes: usize,
) -> Result<ColumnarValue> {
    let rows = batch.num_rows();
    if (rows as u64).saturating_mul(constant_bytes as u64) <= MAX_RESULT_BYTES {
        return evaluate(batch);
    }
    let rows_per_slice = (SLICE_BYTES / constant_bytes).max(1);
    let mut pieces: Vec<ArrayRef> = Vec::new();
    let mut bytes = 0u64;
    let mut offset = 0;
    while offset < rows {
        let len = rows_per_slice.min(rows - offset);
        let piece = match evaluate(&batch.slice(offset, len))? {
            // All arguments constant: one value for the whole batch.
            ColumnarValue::Scalar(v) if offset == 0 => return Ok(ColumnarValue::Scalar(v)),
            value => value.into_array(len)?,
        };
        bytes = bytes.saturating_add(piece.get_array_memory_size() as u64);
        check_result_bytes("an expression over a large constant", bytes)?;
        pieces.push(piece);
        offset += len;
    }
    let refs: Vec<&dyn Array> = pieces.iter().map(|p| p.as_ref()).collect();
    Ok(ColumnarValue::Array(concat(&refs)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{context_with, context_with_partitions, rows as run};

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

    /// `array_append` over a 711 KB constant builds a new list per row: 5.8 GB for a batch
    /// of 8,192 rows, in a projection or a filter, fails; `substr` over a 400 KB constant
    /// copies little and is answered on every row, as is a large constant on a few rows.
    #[tokio::test]
    async fn values_built_from_a_large_constant_are_size_checked() {
        let ctx = context_with(Arc::new(BroadcastLimitRule), None);
        for sql in [
            "SELECT array_append(array_repeat(CAST(NULL AS BIGINT), 88941), x) AS a \
             FROM generate_series(1, 8192) t(x)",
            "SELECT x FROM generate_series(1, 8192) t(x) \
             WHERE cardinality(array_append(array_repeat(1, 100000), x)) > 0",
            "SELECT string_agg(repeat('x', 300000), ',') AS s FROM generate_series(1, 8192) t(x)",
            "SELECT x % 2 AS g, string_agg(concat(repeat('x', 300000), x), ',') AS s \
             FROM generate_series(1, 8192) t(x) GROUP BY 1",
            // A scalar subquery's value, known only when it runs.
            "SELECT string_agg((SELECT max(repeat('x', 300000)) FROM generate_series(1, 2)), ',') \
             AS s FROM generate_series(1, 8192) t(x)",
            "SELECT (SELECT max(repeat('x', 300000)) FROM generate_series(1, 2)) AS s \
             FROM generate_series(1, 8192) t(x)",
            // A large constant group key (the fuzzer's seed 12).
            "SELECT repeat('x', 95131) AS g, count(*) AS n FROM generate_series(1, 8192) t(x) \
             GROUP BY 1",
        ] {
            let err = run(&ctx, sql).await.expect_err("gigabytes of copies");
            assert!(
                err.to_string().contains("more than the 256 MiB"),
                "unexpected error for {sql}: {err}"
            );
        }
        // The same group key over a few rows is answered: one group.
        assert_eq!(
            run(
                &ctx,
                "SELECT repeat('x', 95131) AS g, count(*) AS n FROM generate_series(1, 10) t(x) \
                 GROUP BY 1"
            )
            .await
            .expect("1 MB of keys"),
            1
        );
        // An aggregate reading an argument as a literal when it is planned keeps it one.
        assert_eq!(
            run(
                &ctx,
                "SELECT string_agg(CAST(x AS TEXT), repeat('-', 1000)) AS s FROM generate_series(1, 10) t(x)"
            )
            .await
            .expect("a 1 kB delimiter"),
            1
        );
        // A two-stage aggregate: its final stage holds the same arguments, over the first
        // stage's input (the SQL fuzzer's XX000 when they were typed against the states).
        let two = context_with_partitions(Arc::new(BroadcastLimitRule), None, 2);
        assert_eq!(
            run(
                &two,
                "SELECT max(CASE WHEN repeat('x', 300) < s THEN x ELSE 0 END) AS n \
                 FROM (SELECT x, CAST(x AS TEXT) AS s FROM generate_series(1, 100000) t(x)) q"
            )
            .await
            .expect("a two-stage aggregate"),
            1
        );
        assert_eq!(
            run(
                &ctx,
                "SELECT substr(repeat('x', 400000), x, 3) AS s FROM generate_series(1, 8192) t(x)"
            )
            .await
            .expect("small results"),
            8192
        );
        assert_eq!(
            run(
                &ctx,
                "SELECT array_append(array_repeat(1, 100000), x) AS a FROM generate_series(1, 20) t(x)"
            )
            .await
            .expect("16 MB"),
            20
        );
    }
}
