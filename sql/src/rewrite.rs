//! Rewrites of PostgreSQL syntax that DataFusion does not plan, applied to parsed statements
//! before planning. Client tools send these in their catalog queries (psql's `\d+` and `\du`).

use std::borrow::Cow;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArguments, GroupByExpr, Query, SelectItem, SetExpr, Statement,
    visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// `ARRAY(SELECT e FROM … WHERE …)` becomes `(SELECT array_agg(e) FROM … WHERE …)`, and any
/// other `ARRAY(subquery)` `(SELECT array_agg(v) FROM (subquery) AS array_subquery(v))`: the
/// same array, built by an aggregate DataFusion can decorrelate (the first form keeps
/// references to the outer query where DataFusion can see them). Over no rows it is NULL
/// where PostgreSQL gives an empty array.
pub fn array_subqueries(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |e| {
        if let Expr::Function(f) = e
            && f.name.to_string().eq_ignore_ascii_case("array")
            && let FunctionArguments::Subquery(q) = &f.args
        {
            let sql = match aggregated_in_place(q) {
                Some(q) => format!("({q})"),
                None => {
                    format!("(SELECT array_agg(array_subquery.v) FROM ({q}) AS array_subquery(v))")
                }
            };
            if let Ok(rewritten) = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&sql)
                .and_then(|mut p| p.parse_expr())
            {
                *e = rewritten;
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// psql's `\d+` appends a table's TOAST options to its own with a lateral `unnest`, which
/// DataFusion cannot plan; flashsql tables have no storage options (nor TOAST tables), so the
/// list is empty.
const PSQL_TOAST_OPTIONS: &str =
    "c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x)";

/// Text-level rewrites applied before parsing: fixed client queries, and statements the SQL
/// parser does not know in PostgreSQL's spelling.
pub fn client_queries(sql: &str) -> Cow<'_, str> {
    let sql = alter_view_rename(sql);
    if sql.contains(PSQL_TOAST_OPTIONS) {
        Cow::Owned(sql.replace(PSQL_TOAST_OPTIONS, "CAST(NULL AS TEXT[])"))
    } else {
        sql
    }
}

/// `ALTER VIEW v RENAME TO w` is `ALTER TABLE v RENAME TO w` in PostgreSQL; the SQL parser
/// only knows the latter.
fn alter_view_rename(sql: &str) -> Cow<'_, str> {
    let trimmed = sql.trim_start();
    let upper: String = trimmed
        .chars()
        .take(64)
        .collect::<String>()
        .to_ascii_uppercase();
    if upper.starts_with("ALTER VIEW") && sql.to_ascii_uppercase().contains(" RENAME TO ") {
        let offset = sql.len() - trimmed.len();
        let mut out = String::with_capacity(sql.len() + 1);
        out.push_str(&sql[..offset]);
        out.push_str("ALTER TABLE");
        out.push_str(&trimmed["ALTER VIEW".len()..]);
        Cow::Owned(out)
    } else {
        Cow::Borrowed(sql)
    }
}

/// A plain one-column SELECT with its column wrapped in `array_agg`, or None.
fn aggregated_in_place(q: &Query) -> Option<Query> {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    let plain = q.order_by.is_none()
        && q.limit_clause.is_none()
        && q.with.is_none()
        && select.projection.len() == 1
        && select.distinct.is_none()
        && select.having.is_none()
        && matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty());
    if !plain {
        return None;
    }
    let expr = match &select.projection[0] {
        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e.clone(),
        _ => return None,
    };
    let aggregated = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(&format!("array_agg({expr})"))
        .and_then(|mut p| p.parse_expr())
        .ok()?;
    let mut out = q.clone();
    if let SetExpr::Select(s) = out.body.as_mut() {
        s.projection = vec![SelectItem::UnnamedExpr(aggregated)];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_subqueries_become_aggregates() {
        let rewritten = |sql: &str| {
            let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .expect("parses")
                .remove(0);
            array_subqueries(&mut s);
            s.to_string()
        };
        assert_eq!(
            rewritten("SELECT array(SELECT x FROM t WHERE t.k = u.k) AS xs FROM u"),
            "SELECT (SELECT array_agg(x) FROM t WHERE t.k = u.k) AS xs FROM u"
        );
        assert_eq!(
            rewritten("SELECT array(SELECT x FROM t ORDER BY x LIMIT 3) AS xs"),
            "SELECT (SELECT array_agg(array_subquery.v) FROM (SELECT x FROM t ORDER BY x LIMIT 3) AS array_subquery (v)) AS xs"
        );
    }
}
