//! A table's declared sort order (`CREATE TABLE … WITH (sort_by = 'user_id, ts')`).
//!
//! Behaviour logs are read per user and in time: windows `PARTITION BY user_id ORDER BY ts`,
//! point-in-time joins, `WHERE user_id = …`. When every file of a table is sorted by the
//! declared columns, row groups cover narrow key ranges that statistics prune, and a scan of
//! a table tells DataFusion the order — each file read as sorted runs of its own, see
//! [`crate::sorted_runs`] — so a window per user sorts only the rows that tie on it
//! ([`crate::presorted`]). The promise is kept by every writer: INSERT, UPDATE, DELETE, MERGE,
//! COPY and CREATE TABLE AS sort their rows (in DataFusion's sort, within the memory limit,
//! spilling), compaction merges sorted files in order, and the generated world is checked
//! while it is written.
//!
//! Keys are plain column names, ascending with NULLs last, PostgreSQL's default order.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::SortOptions;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::row::{OwnedRow, RowConverter, SortField};
use datafusion::common::Column;
use datafusion::logical_expr::{Expr, SortExpr};
use datafusion::physical_expr::expressions::Column as PhysicalColumn;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};

use crate::error::{EngineError, Result};

/// The storage parameter that declares the order, as in `WITH (sort_by = '…')`.
pub const PARAMETER: &str = "sort_by";

/// The order every key is kept in: ascending, NULLs last.
const OPTIONS: SortOptions = SortOptions {
    descending: false,
    nulls_first: false,
};

/// The column names of a `sort_by` value (`'user_id, ts'`, `'"UserId", ts'`): unquoted
/// names fold to lower case as in SQL, double-quoted ones are kept as written.
pub fn parse(value: &str) -> Result<Vec<String>> {
    let mut keys: Vec<String> = Vec::new();
    for part in value.split(',') {
        let part = part.trim();
        let name = match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
            Some(quoted) if !quoted.is_empty() => quoted.replace("\"\"", "\""),
            _ if !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_alphanumeric() || c == '_' || c == '$') =>
            {
                part.to_lowercase()
            }
            _ => {
                return Err(EngineError::InvalidInput(format!(
                    "{PARAMETER} = '{value}': expected column names separated by commas \
                     (each sorted ascending, NULLs last), e.g. 'user_id, ts'"
                )));
            }
        };
        if keys.contains(&name) {
            return Err(EngineError::DuplicateColumn(name));
        }
        keys.push(name);
    }
    Ok(keys)
}

/// The position of each key in `schema` (42703 for one that names no column).
fn key_indices(keys: &[String], schema: &Schema) -> Result<Vec<usize>> {
    keys.iter()
        .map(|k| {
            schema
                .index_of(k)
                .map_err(|_| EngineError::UndefinedColumn(k.clone()))
        })
        .collect()
}

/// Checks that every key names a column of `schema`.
pub fn check(keys: &[String], schema: &Schema) -> Result<()> {
    key_indices(keys, schema).map(drop)
}

/// The order as logical sort expressions: a listing table's per-file sort order, or the
/// sort of a `CREATE TABLE … AS` query.
pub fn sort_exprs(keys: &[String]) -> Vec<SortExpr> {
    keys.iter()
        .map(|k| {
            Expr::Column(Column::new_unqualified(k)).sort(!OPTIONS.descending, OPTIONS.nulls_first)
        })
        .collect()
}

/// The order over `schema`'s columns (None without keys).
pub fn lex_ordering(keys: &[String], schema: &Schema) -> Result<Option<LexOrdering>> {
    let exprs = keys
        .iter()
        .zip(key_indices(keys, schema)?)
        .map(|(k, index)| PhysicalSortExpr::new(Arc::new(PhysicalColumn::new(k, index)), OPTIONS));
    Ok(LexOrdering::new(exprs))
}

/// `input`'s rows as one stream in `ordering`: unchanged if they already are (a DELETE's
/// kept rows read from sorted files), else sorted per partition and merged. The sort runs
/// under the session's memory limit and spills to disk past it.
pub fn sorted(
    input: Arc<dyn ExecutionPlan>,
    ordering: &LexOrdering,
) -> Result<Arc<dyn ExecutionPlan>> {
    let partitions = input.output_partitioning().partition_count();
    let ordered = input
        .equivalence_properties()
        .ordering_satisfy(ordering.clone())?;
    Ok(match (ordered, partitions) {
        (true, 1) => input,
        (true, _) => Arc::new(SortPreservingMergeExec::new(ordering.clone(), input)),
        (false, 1) => Arc::new(SortExec::new(ordering.clone(), input)),
        (false, _) => Arc::new(SortPreservingMergeExec::new(
            ordering.clone(),
            Arc::new(SortExec::new(ordering.clone(), input).with_preserve_partitioning(true)),
        )),
    })
}

/// Whether `batches`, read one after another, are in the order of `keys` (columns of
/// `schema`): checked where rows are written that were not sorted here (the generated
/// world), so a declared order is never a guess.
pub fn is_sorted(batches: &[RecordBatch], keys: &[String], schema: &Schema) -> Result<bool> {
    if keys.is_empty() {
        return Ok(true);
    }
    let indices = key_indices(keys, schema)?;
    let fields = indices
        .iter()
        .map(|&i| SortField::new_with_options(schema.field(i).data_type().clone(), OPTIONS))
        .collect();
    let converter = RowConverter::new(fields)?;
    let mut last: Option<OwnedRow> = None;
    for batch in batches.iter().filter(|b| b.num_rows() > 0) {
        let columns: Vec<_> = indices.iter().map(|&i| batch.column(i).clone()).collect();
        let rows = converter.convert_columns(&columns)?;
        if last.as_ref().is_some_and(|l| l.row() > rows.row(0)) {
            return Ok(false);
        }
        if (1..rows.num_rows()).any(|i| rows.row(i - 1) > rows.row(i)) {
            return Ok(false);
        }
        last = Some(rows.row(rows.num_rows() - 1).owned());
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, Field};

    #[test]
    fn values_name_columns_folded_like_sql() {
        assert_eq!(parse("user_id, ts").unwrap(), ["user_id", "ts"]);
        assert_eq!(parse(" User_Id ,TS ").unwrap(), ["user_id", "ts"]);
        assert_eq!(parse(r#""UserId", "a""b""#).unwrap(), ["UserId", "a\"b"]);
        for bad in ["", "a,", "user_id DESC", "a b", "f(x)", "\"\""] {
            assert!(
                matches!(parse(bad), Err(EngineError::InvalidInput(_))),
                "{bad:?} should be refused"
            );
        }
        assert!(matches!(
            parse("a, A"),
            Err(EngineError::DuplicateColumn(c)) if c == "a"
        ));
    }

    #[test]
    fn keys_must_be_columns() {
        let schema = Schema::new(vec![
            Field::new("user_id", DataType::Int64, false),
            Field::new("ts", DataType::Int64, false),
        ]);
        check(&["ts".into(), "user_id".into()], &schema).unwrap();
        assert!(matches!(
            check(&["user_id".into(), "day".into()], &schema),
            Err(EngineError::UndefinedColumn(c)) if c == "day"
        ));
        let ordering = lex_ordering(&["ts".into()], &schema).unwrap().unwrap();
        assert_eq!(ordering.to_string(), "ts@1 ASC NULLS LAST");
        assert!(lex_ordering(&[], &schema).unwrap().is_none());
    }

    /// Order is checked within and across batches, NULLs last, later keys breaking ties.
    #[test]
    fn sortedness_spans_batches() {
        use datafusion::arrow::array::Int64Array;
        let schema = Arc::new(Schema::new(vec![
            Field::new("u", DataType::Int64, true),
            Field::new("t", DataType::Int64, false),
        ]));
        let batch = |u: Vec<Option<i64>>, t: Vec<i64>| {
            RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(Int64Array::from(u)), Arc::new(Int64Array::from(t))],
            )
            .unwrap()
        };
        let keys = ["u".to_string(), "t".to_string()];
        let a = batch(vec![Some(1), Some(1), Some(2)], vec![5, 7, 1]);
        let b = batch(vec![Some(2), None], vec![1, 0]);
        assert!(is_sorted(&[a.clone(), b.clone()], &keys, &schema).unwrap());
        // Across the boundary: (2, 1) then (2, 0).
        let c = batch(vec![Some(2)], vec![0]);
        assert!(!is_sorted(&[a.clone(), c], &keys, &schema).unwrap());
        // Within a batch: the tie on u broken by t going down.
        let d = batch(vec![Some(1), Some(1)], vec![7, 5]);
        assert!(!is_sorted(&[d], &keys, &schema).unwrap());
        // NULL first is out of order.
        let e = batch(vec![None, Some(1)], vec![0, 0]);
        assert!(!is_sorted(&[e], &keys, &schema).unwrap());
        assert!(is_sorted(std::slice::from_ref(&b), &["t".to_string()], &schema).is_ok());
        // No keys: any order is the declared one.
        assert!(is_sorted(&[b, a], &[], &schema).unwrap());
    }
}
