//! Result column names as PostgreSQL chooses them for unaliased expressions: `count` for
//! `count(*)`, `?column?` for `1 + 1`, the column name for `t.x`, the type for `'1'::int`.
//! Clients read results by these names (`row["count"]`), so DataFusion's display names
//! (`count(*)`, `Int64(1)`) would break them.

use datafusion::common::Column;
use datafusion::error::Result;
use datafusion::logical_expr::{LogicalPlan, LogicalPlanBuilder, col};
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Ident, Query, SelectItem, SetExpr, Statement, VisitMut, VisitorMut,
};
use flashsql_engine::pg_types::pg_udt_name;

/// PostgreSQL's name for one unaliased expression, where it can be told from the syntax;
/// `Err(())` for a literal under a cast, whose name is its type.
fn figure(expr: &Expr) -> Result<Option<String>, ()> {
    Ok(match expr {
        Expr::Identifier(i) => Some(i.value.clone()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.clone()),
        Expr::Function(f) => f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_lowercase()),
        Expr::Cast { expr, .. } => match figure(expr)? {
            Some(n) if n != "?column?" => Some(n),
            _ => return Err(()),
        },
        Expr::Nested(inner) => figure(inner)?,
        Expr::Case { .. } => Some("case".into()),
        Expr::Exists { .. } => Some("exists".into()),
        Expr::Array(_) => Some("array".into()),
        _ => Some("?column?".into()),
    })
}

/// Function calls in the select lists of subqueries and CTEs get PostgreSQL's name as an
/// alias (`count`, `row_number`, `unnest`), so that the query around them can refer to it
/// (`WITH w AS (SELECT word, count(1) FROM …) SELECT … ORDER BY count`: pgcli). Where two
/// items would get the same name, or an item already has it, nothing changes (DataFusion
/// wants names unique). The outermost select list is named by [`pg_names`] instead.
pub fn name_nested_functions(statement: &mut Statement) {
    struct Nested {
        depth: usize,
    }
    impl VisitorMut for Nested {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            self.depth += 1;
            if self.depth > 1
                && let SetExpr::Select(select) = query.body.as_mut()
            {
                name_functions(&mut select.projection);
            }
            ControlFlow::Continue(())
        }
        fn post_visit_query(&mut self, _: &mut Query) -> ControlFlow<()> {
            self.depth -= 1;
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Nested { depth: 0 });
}

fn name_functions(items: &mut [SelectItem]) {
    let names: Vec<Option<String>> = items
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => figure(e).ok().flatten(),
            SelectItem::ExprWithAlias { alias, .. } => Some(alias.value.clone()),
            _ => None,
        })
        .collect();
    for (i, item) in items.iter_mut().enumerate() {
        let SelectItem::UnnamedExpr(expr @ Expr::Function(_)) = item else {
            continue;
        };
        let Some(name) = &names[i] else {
            continue;
        };
        if names.iter().filter(|n| n.as_ref() == Some(name)).count() > 1 {
            continue;
        }
        *item = SelectItem::ExprWithAlias {
            expr: expr.clone(),
            alias: Ident::new(name),
        };
    }
}

/// The names PostgreSQL would give the output columns of a simple `SELECT` (no `*`); `None`
/// for a slot that is aliased or left as DataFusion names it, or for queries of other shapes.
pub fn pg_names(query: &Query) -> Option<Vec<Option<NameHint>>> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    select
        .projection
        .iter()
        .map(|item| match item {
            SelectItem::UnnamedExpr(e) => Some(match figure(e) {
                Ok(n) => n.map(NameHint::Name),
                Err(()) => Some(NameHint::TypeName),
            }),
            SelectItem::ExprWithAlias { .. } => Some(None),
            _ => None, // a wildcard: positions are unknown before planning
        })
        .collect()
}

/// How to name one output column.
#[derive(Debug, Clone, PartialEq)]
pub enum NameHint {
    Name(String),
    /// PostgreSQL names a cast literal after its type (`int4`, `text`).
    TypeName,
}

/// Renames `plan`'s output columns to PostgreSQL's names. Leaves the plan as it is when the
/// new names would not be unique (DataFusion requires unique output names).
pub fn apply(plan: LogicalPlan, names: &[Option<NameHint>]) -> Result<LogicalPlan> {
    let fields = plan.schema().fields().clone();
    let finals: Vec<String> = if names.len() == fields.len() {
        fields
            .iter()
            .zip(names)
            .map(|(f, hint)| match hint {
                Some(NameHint::Name(n)) => n.clone(),
                Some(NameHint::TypeName) => pg_udt_name(f.data_type()),
                None => f.name().clone(),
            })
            .collect()
    } else {
        // An item expanded into several columns: `unnest` of a struct gives one per field,
        // which PostgreSQL (`(f(…)).*`) names after the field.
        fields
            .iter()
            .map(|f| struct_field_name(f.name()).unwrap_or(f.name()).to_string())
            .collect()
    };
    let changed = fields.iter().zip(&finals).any(|(f, n)| f.name() != n);
    let mut seen = std::collections::HashSet::new();
    if !changed || !finals.iter().all(|n| seen.insert(n.as_str())) {
        return Ok(plan);
    }
    let exprs = plan
        .schema()
        .iter()
        .zip(finals)
        .map(|((qualifier, field), name)| {
            let c = col(Column::new(qualifier.cloned(), field.name()));
            if field.name() == &name {
                c
            } else {
                c.alias(name)
            }
        })
        .collect::<Vec<_>>();
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

/// `field` for DataFusion's name of a struct field expanded by `unnest`
/// (`UNNEST(ab_test(…)).field`, `srm_test(t.v).field`, `__unnest_placeholder(…).field`).
fn struct_field_name(name: &str) -> Option<&str> {
    let (_, field) = name.rsplit_once(").")?;
    (!field.is_empty() && !field.contains(['(', ')', '.'])).then_some(field)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn names(sql: &str) -> Option<Vec<Option<NameHint>>> {
        let stmt = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        let datafusion::sql::sqlparser::ast::Statement::Query(q) = stmt else {
            panic!("not a query")
        };
        pg_names(&q)
    }

    #[test]
    fn names_follow_postgres() {
        let n = |s: &str| Some(NameHint::Name(s.to_string()));
        assert_eq!(
            names(
                "SELECT count(*), t.user_id, 1 + 1, x AS y, '1'::int, seg::text, CASE WHEN a THEN 1 END FROM t"
            ),
            Some(vec![
                n("count"),
                n("user_id"),
                n("?column?"),
                None,
                Some(NameHint::TypeName),
                n("seg"),
                n("case")
            ])
        );
        assert_eq!(names("SELECT * FROM t"), None);
        assert_eq!(
            struct_field_name("UNNEST(UNNEST(ab_test(t.v,t.c))).p_value"),
            Some("p_value")
        );
        assert_eq!(struct_field_name("srm_test(t.v).chi2"), Some("chi2"));
        assert_eq!(struct_field_name("unnest(x)"), None);
        assert_eq!(struct_field_name("t.y"), None);
        assert_eq!(names("SELECT 1 UNION SELECT 2"), None);
    }
}
