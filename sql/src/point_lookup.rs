//! Prepared point lookups answered without planning: `SELECT cols FROM t WHERE key = $1`.
//!
//! A backend service reads one item's plan at a time over a prepared statement, thousands of
//! times a second. Planning and running such a statement through DataFusion costs close to
//! a millisecond however small the table; PostgreSQL answers in a few tens of microseconds.
//! A statement of exactly this shape — a projection of plain columns, over one equality
//! between a column and a parameter, over a durable table — is recognised when it is
//! prepared, and each `Execute` reads the rows from the key index of the table's snapshot
//! held in memory ([`flashsql_engine::key_index`]). Whenever that cannot answer (the table
//! is not held yet or is too large even for lookups, the transaction's view differs, the
//! parameter has another type, the table was replaced by one of another shape), the
//! statement is planned and run as any other, and the scan loads the table for the next
//! lookup — a large one too, since a lookup asked for it (`flashsql_engine::hot_tables`). Both give the
//! same rows in the same order (this module's tests compare them;
//! `tests/it/hot_tables.rs` follows writes and transaction blocks over the wire).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::{Column, ParamValues, ScalarValue, TableReference};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::{BinaryExpr, Expr, LogicalPlan, Operator};
use flashsql_engine::key_index::KeyIndex;
use flashsql_engine::table::DurableTable;

/// A prepared statement recognised as a point lookup.
#[derive(Debug)]
pub struct PointLookup {
    table: TableReference,
    /// The table's columns when the statement was prepared: a table replaced since by one
    /// of another shape is planned again.
    table_schema: SchemaRef,
    /// The key column's place in the table.
    key: usize,
    /// The parameter the key is compared with (`$1`).
    parameter: String,
    /// The table's columns the result holds, in order.
    projection: Vec<usize>,
    /// The result's columns, as described to the client.
    schema: SchemaRef,
}

impl PointLookup {
    /// The lookup `plan` (a planned statement, before optimisation) stands for, if it is one.
    pub fn recognise(plan: &LogicalPlan) -> Option<Self> {
        let (projection, filter) = columns_over_filter(plan)?;
        let LogicalPlan::Filter(filter) = filter else {
            return None;
        };
        let (column, parameter) = column_equals_parameter(&filter.predicate)?;
        let mut below = filter.input.as_ref();
        while let LogicalPlan::SubqueryAlias(a) = below {
            below = a.input.as_ref();
        }
        let LogicalPlan::TableScan(scan) = below else {
            return None;
        };
        if !scan.filters.is_empty() || scan.fetch.is_some() || scan.projection.is_some() {
            return None;
        }
        let provider = source_as_provider(&scan.source).ok()?;
        provider.downcast_ref::<DurableTable>()?;
        let table_schema = provider.schema();
        let input = filter.input.schema();
        if input.fields().len() != table_schema.fields().len() {
            return None;
        }
        let key = input.index_of_column(column).ok()?;
        if !KeyIndex::supports(table_schema.field(key).data_type()) {
            return None;
        }
        let projection = projection
            .iter()
            .map(|c| input.index_of_column(c).ok())
            .collect::<Option<Vec<_>>>()?;
        Some(Self {
            table: scan.table_name.clone(),
            table_schema,
            key,
            parameter: parameter.to_string(),
            projection,
            schema: Arc::new(plan.schema().as_arrow().clone()),
        })
    }

    /// The result columns, as described to the client.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// The rows, if `table` (the provider its name resolves to now, in the session's
    /// transaction) can answer from memory; None to plan the statement instead.
    pub fn answer(
        &self,
        table: &dyn datafusion::catalog::TableProvider,
        params: &ParamValues,
    ) -> Option<RecordBatch> {
        let table = table.downcast_ref::<DurableTable>()?;
        let schema = datafusion::catalog::TableProvider::schema(table);
        if schema != self.table_schema {
            return None;
        }
        let value = params
            .get_placeholders_with_values(&self.parameter)
            .ok()?
            .value;
        let value = key_value(value, self.table_schema.field(self.key).data_type())?;
        table
            .lookup(self.key, &value, &self.projection, self.schema.clone())
            .ok()?
    }

    /// The table the lookup reads.
    pub fn table(&self) -> &TableReference {
        &self.table
    }
}

/// The parameter's value as the key column's type, when the comparison in SQL is the
/// comparison of those values: the same type, or an integer of another width that fits.
fn key_value(value: ScalarValue, key: &DataType) -> Option<ScalarValue> {
    if &value.data_type() == key {
        return Some(value);
    }
    if value.is_null() {
        return ScalarValue::try_from(key).ok();
    }
    if value.data_type().is_integer() && key.is_integer() {
        let cast = value.cast_to(key).ok()?;
        // A value out of the key's range matches no row, but that is the scan's to say.
        let back = cast.cast_to(&value.data_type()).ok()?;
        return (back == value).then_some(cast);
    }
    // Text compares as text whichever of its forms each side has (tables scan text as
    // views, parameters arrive as `Utf8`).
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    if text(&value.data_type()) && text(key) {
        return value.cast_to(key).ok();
    }
    None
}

/// The columns a plan's projections select, in the plan's output order, and the plan below
/// them; None if a projection computes anything.
fn columns_over_filter(plan: &LogicalPlan) -> Option<(Vec<Column>, &LogicalPlan)> {
    let LogicalPlan::Projection(top) = plan else {
        return None;
    };
    let mut selected = plain_columns(&top.expr)?;
    let mut input = top.input.as_ref();
    // Names applied over the projection (PostgreSQL's column names) are projections too.
    while let LogicalPlan::Projection(p) = input {
        let below = plain_columns(&p.expr)?;
        selected = selected
            .iter()
            .map(|c| {
                let i = p.schema.index_of_column(c).ok()?;
                below.get(i).cloned()
            })
            .collect::<Option<Vec<_>>>()?;
        input = p.input.as_ref();
    }
    Some((selected, input))
}

fn plain_columns(exprs: &[Expr]) -> Option<Vec<Column>> {
    exprs
        .iter()
        .map(|e| match e {
            Expr::Column(c) => Some(c.clone()),
            Expr::Alias(a) => match a.expr.as_ref() {
                Expr::Column(c) => Some(c.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// `column = $n` (either way round).
fn column_equals_parameter(predicate: &Expr) -> Option<(&Column, &str)> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = predicate
    else {
        return None;
    };
    match (left.as_ref(), right.as_ref()) {
        (Expr::Column(c), Expr::Placeholder(p)) | (Expr::Placeholder(p), Expr::Column(c)) => {
            Some((c, p.id.as_str()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::RecordBatch;
    use datafusion::common::{ParamValues, ScalarValue};

    use crate::session::{PgSession, StatementResult};

    async fn run(session: &PgSession, sql: &str, params: Option<ParamValues>) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        for statement in session.parse(sql).expect("parses") {
            match session
                .execute(statement, params.clone())
                .await
                .expect("runs")
            {
                StatementResult::Rows(df) => out.extend(df.collect().await.expect("rows")),
                StatementResult::Batches(_, b) => out.extend(b),
                _ => {}
            }
        }
        out
    }

    /// The rows, as text (a result of no rows may come as no batch or an empty one).
    fn pretty(batches: &[RecordBatch]) -> String {
        let rows: Vec<RecordBatch> = batches
            .iter()
            .filter(|b| b.num_rows() > 0)
            .cloned()
            .collect();
        datafusion::arrow::util::pretty::pretty_format_batches(&rows)
            .expect("format")
            .to_string()
    }

    #[tokio::test]
    async fn recognises_a_projection_of_columns_over_one_key_equality() {
        let (_dir, _engine, session) = crate::test_session().await;
        run(
            &session,
            "CREATE TABLE t (k BIGINT, name TEXT, x DOUBLE PRECISION)",
            None,
        )
        .await;
        for (sql, recognised) in [
            ("SELECT * FROM t WHERE k = $1", true),
            ("SELECT name, k AS key FROM t AS tt WHERE $1 = tt.k", true),
            ("SELECT x FROM public.t WHERE name = $1", true),
            ("SELECT k + 1 FROM t WHERE k = $1", false),
            ("SELECT * FROM t WHERE k = $1 AND x > 0", false),
            ("SELECT * FROM t WHERE k > $1", false),
            ("SELECT * FROM t WHERE x = $1", false),
            ("SELECT * FROM t WHERE k = $1 LIMIT 1", false),
            ("SELECT count(*) FROM t WHERE k = $1", false),
            ("SELECT * FROM t WHERE k = 5", false),
        ] {
            let prepared = session.prepare(sql).await.expect("prepares");
            assert_eq!(prepared.lookup.is_some(), recognised, "{sql}");
        }
    }

    /// From memory or planned, a lookup gives the same rows in the same order: duplicate
    /// keys across files, missing keys, NULL, another integer width, text keys.
    #[tokio::test]
    async fn answers_as_the_planned_statement_does() {
        let (_dir, _engine, session) = crate::test_session().await;
        run(
            &session,
            "CREATE TABLE t (k BIGINT, name TEXT, x DOUBLE PRECISION); \
             INSERT INTO t VALUES (1, 'a', 0.5), (2, NULL, 1.5), (NULL, 'c', 2.5); \
             INSERT INTO t VALUES (2, '限时', 3.5), (3, 'a', NULL)",
            None,
        )
        .await;
        let by_key = session
            .prepare("SELECT x, name, k FROM t WHERE k = $1")
            .await
            .expect("prepares");
        let by_name = session
            .prepare("SELECT k FROM t AS s WHERE $1 = s.name")
            .await
            .expect("prepares");
        let cases = [
            (&by_key, ScalarValue::Int64(Some(2))),
            (&by_key, ScalarValue::Int64(Some(1))),
            (&by_key, ScalarValue::Int64(Some(9))),
            (&by_key, ScalarValue::Int64(None)),
            (&by_key, ScalarValue::Int32(Some(3))),
            (&by_name, ScalarValue::Utf8(Some("a".into()))),
            (&by_name, ScalarValue::Utf8(Some("限时".into()))),
            (&by_name, ScalarValue::Utf8(Some("zz".into()))),
        ];
        for (prepared, value) in cases {
            let lookup = prepared.lookup.as_ref().expect("recognised");
            let params = ParamValues::List(vec![value.clone().into()]);
            let planned = run(&session, &prepared.sql, Some(params.clone())).await;
            let Some(StatementResult::Batches(schema, fast)) =
                session.point_lookup(lookup, &params).await
            else {
                panic!(
                    "{} with {value}: the table is held after its scan",
                    prepared.sql
                );
            };
            assert_eq!(
                pretty(&fast),
                pretty(&planned),
                "{} with {value}",
                prepared.sql
            );
            assert_eq!(
                Some(&schema),
                prepared.columns.as_ref(),
                "described columns"
            );
        }
        // A new snapshot is not held until a scan reads it: the lookup steps aside.
        run(&session, "INSERT INTO t VALUES (2, 'new', 9.5)", None).await;
        let lookup = by_key.lookup.as_ref().expect("recognised");
        let params = ParamValues::List(vec![ScalarValue::Int64(Some(2)).into()]);
        assert!(session.point_lookup(lookup, &params).await.is_none());
        let planned = run(&session, &by_key.sql, Some(params.clone())).await;
        assert_eq!(planned.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
        let Some(StatementResult::Batches(_, fast)) = session.point_lookup(lookup, &params).await
        else {
            panic!("held after the scan");
        };
        assert_eq!(pretty(&fast), pretty(&planned));
    }
}
