//! Rewrites of PostgreSQL syntax that DataFusion does not plan, applied to statements before
//! planning: as text before parsing ([`client_queries`]) or to the parsed statement
//! ([`client_expressions`], [`update_from`]). Client tools send most of these in their
//! catalog queries (psql, pgjdbc, SQLAlchemy).

use std::borrow::Cow;
use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, BinaryOperator, CastKind, DataType, Distinct, ExcludeSelectItem, Expr, Function,
    FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Ident, LimitClause, ObjectName,
    ObjectNamePart, OrderBy, OrderByExpr, OrderByKind, Query, Select, SelectItem, SetExpr,
    SetOperator, Statement, TableFactor, UpdateTableFromKind, Value, VisitMut, VisitorMut,
    visit_expressions, visit_expressions_mut, visit_relations_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::keywords::Keyword;
use datafusion::sql::sqlparser::parser::Parser;
use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};

/// An expression parsed from SQL text (the rewrites below build theirs as text).
fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .ok()
}

/// A function's name without its schema, in lower case (the compatibility parser has
/// already dropped `pg_catalog.` and `information_schema.`).
fn function_name(f: &Function) -> String {
    f.name
        .0
        .last()
        .and_then(|p| p.as_ident())
        .map(|i| i.value.to_ascii_lowercase())
        .unwrap_or_default()
}

/// PostgreSQL forms that client tools' catalog queries use, in DataFusion's terms, rewritten
/// in one pass over the statement:
/// - `ARRAY(SELECT e FROM … WHERE …)` becomes `(SELECT array_agg(e) FROM … WHERE …)`, and
///   any other `ARRAY(subquery)` `(SELECT array_agg(v) FROM (subquery) AS
///   array_subquery(v))`: the same array, built by an aggregate DataFusion can decorrelate
///   (the first form keeps references to the outer query where DataFusion can see them).
///   Over no rows it is NULL where PostgreSQL gives an empty array (psql's `\d+`, `\du`);
/// - `information_schema._pg_expandarray(a)`, a set-returning function in the select list
///   (pgjdbc's `getPrimaryKeys`/`getIndexInfo`), becomes `unnest(_pg_expandarray(a))`
///   (DataFusion zips several `unnest`s in one select list, as PostgreSQL does with several
///   set-returning functions);
/// - `generate_subscripts(a, 1)` beside `unnest(a)` (SQLAlchemy's primary keys) becomes
///   `unnest(generate_series(1, cardinality(a)))`;
/// - `pg_get_serial_sequence(…)` becomes the NULL it always is here: no column owns a
///   sequence (the descriptions, `col_description(…)` and the like, get NULL arguments). Written as the constant, the expression around it (SQLAlchemy casts it to
///   `regclass`, a lookup in pg_class) no longer reads the outer row, and its subquery plans;
/// - `LIKE 'pg!_%' ESCAPE '!'` (SQLAlchemy's schema names) gets backslash escapes, the only
///   ones DataFusion knows;
/// - a record's field, `(expr).name`, becomes DataFusion's `(expr)['name']`;
/// - `EXISTS (… LIMIT 1)` loses the limit, and `substring(s FROM 'pattern')` becomes
///   `regexp_match(s, 'pattern')[1]`.
pub fn client_expressions(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |e| {
        if let Some(rewritten) = client_expression(e) {
            *e = rewritten;
        }
        ControlFlow::<()>::Continue(())
    });
}

/// One expression of [`client_expressions`]: a replacement, or None when it is left as it
/// is or was changed in place.
fn client_expression(e: &mut Expr) -> Option<Expr> {
    match e {
        // `EXISTS (SELECT … LIMIT 1)` (pgAdmin): a limit of one or more rows does not change
        // whether a row exists, and DataFusion cannot decorrelate a subquery with a limit.
        Expr::Exists { subquery, .. } if limit_at_least_one(subquery) => {
            subquery.limit_clause = None;
            None
        }
        // `substring(s FROM 'pattern')` (pgAdmin's table properties) is PostgreSQL's regular
        // expression form: the first parenthesised group's match, or the whole match.
        Expr::Substring {
            expr,
            substring_from: Some(pattern),
            substring_for: None,
            ..
        } if matches!(pattern.as_ref(), Expr::Value(v)
            if matches!(&v.value, Value::SingleQuotedString(_) | Value::EscapedStringLiteral(_))) =>
        {
            parse_expr(&format!("(regexp_match({expr}, {pattern}))[1]"))
        }
        Expr::Function(f) => match function_name(f).as_str() {
            "array" => {
                let FunctionArguments::Subquery(q) = &f.args else {
                    return None;
                };
                let inlined = without_role_memberships(q);
                let q = inlined.as_ref().unwrap_or(q);
                parse_expr(&match aggregated_in_place(q) {
                    Some(q) => format!("({q})"),
                    None => {
                        format!(
                            "(SELECT array_agg(array_subquery.v) FROM ({q}) AS array_subquery(v))"
                        )
                    }
                })
            }
            crate::compat::EXPANDARRAY => {
                let mut inner = f.clone();
                inner.name = ObjectName::from(vec![Ident::new(crate::compat::EXPANDARRAY)]);
                parse_expr(&format!("unnest({inner})"))
            }
            "generate_subscripts" => {
                let FunctionArguments::List(list) = &f.args else {
                    return None;
                };
                let array = list.args.first()?;
                parse_expr(&format!("unnest(generate_series(1, cardinality({array})))"))
            }
            // Descriptions are not kept (always NULL): their arguments are not evaluated
            // (Metabase casts a `format()`ed name to regclass, a run-time lookup flashsql
            // does not do). The call stays, so that its column keeps its own name.
            "col_description" | "obj_description" | "shobj_description" => {
                let FunctionArguments::List(list) = &mut f.args else {
                    return None;
                };
                for arg in &mut list.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) = arg {
                        *e = Expr::value(Value::Null);
                    }
                }
                None
            }
            // The set-returning form of the split: one row per piece, as `unnest` gives.
            "regexp_split_to_table" => {
                let FunctionArguments::List(list) = &f.args else {
                    return None;
                };
                let args: Vec<String> = list.args.iter().map(|a| a.to_string()).collect();
                parse_expr(&format!(
                    "unnest(regexp_split_to_array({}))",
                    args.join(", ")
                ))
            }
            "pg_get_serial_sequence" => Some(Expr::Cast {
                kind: CastKind::Cast,
                expr: Box::new(Expr::value(Value::Null)),
                data_type: DataType::Text,
                array: false,
                format: None,
            }),
            _ => None,
        },
        Expr::Like {
            pattern,
            escape_char,
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char,
            ..
        } => {
            if let Some(escape) = escape_char.as_ref().and_then(|v| single_char(&v.value))
                && literal_text(pattern)
            {
                let _ = visit_expressions_mut(pattern.as_mut(), |p| {
                    if let Expr::Value(v) = p
                        && let Value::SingleQuotedString(text) = &v.value
                    {
                        v.value = Value::SingleQuotedString(backslash_escaped(text, escape));
                    }
                    ControlFlow::<()>::Continue(())
                });
                *escape_char = None;
            }
            None
        }
        // Only a parenthesised root: `t.col[1]` is a column, not a record's field.
        Expr::CompoundFieldAccess { root, access_chain }
            if matches!(root.as_ref(), Expr::Nested(_)) =>
        {
            for access in access_chain {
                if let AccessExpr::Dot(Expr::Identifier(field)) = access {
                    // Unquoted names fold to lower case, as everywhere else.
                    let name = match field.quote_style {
                        Some(_) => field.value.clone(),
                        None => field.value.to_lowercase(),
                    };
                    *access = AccessExpr::Dot(Expr::value(Value::SingleQuotedString(name)));
                }
            }
            None
        }
        _ => None,
    }
}

/// Whether an expression is string literals joined with `||` (SQLAlchemy sends
/// `'pg/_' || '%'`), whose escapes can be rewritten.
fn literal_text(e: &Expr) -> bool {
    match e {
        Expr::Value(v) => matches!(v.value, Value::SingleQuotedString(_)),
        Expr::Nested(inner) => literal_text(inner),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::StringConcat,
            right,
        } => literal_text(left) && literal_text(right),
        _ => false,
    }
}

/// The character of a one-character string literal.
fn single_char(v: &Value) -> Option<char> {
    match v {
        Value::SingleQuotedString(s) => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some(c),
                _ => None,
            }
        }
        _ => None,
    }
}

/// A LIKE pattern escaped with `escape` rewritten to escape with a backslash.
fn backslash_escaped(pattern: &str, escape: char) -> String {
    if escape == '\\' {
        return pattern.to_string();
    }
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            out.push('\\');
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// Whether `q` ends in `LIMIT n` with a literal n ≥ 1 and nothing else (no OFFSET, FETCH).
fn limit_at_least_one(q: &Query) -> bool {
    let Some(LimitClause::LimitOffset {
        limit: Some(Expr::Value(v)),
        offset: None,
        limit_by,
    }) = &q.limit_clause
    else {
        return false;
    };
    let Value::Number(n, _) = &v.value else {
        return false;
    };
    limit_by.is_empty() && q.fetch.is_none() && n.parse::<u64>().is_ok_and(|n| n >= 1)
}

/// Catalog relations PostgreSQL finds on its search path that the compatibility parser
/// does not qualify (it knows the library's tables only): qualified here so that they
/// resolve to flashsql's `pg_catalog`.
const MORE_CATALOG_RELATIONS: [&str; 2] = ["pg_user", "pg_user_mappings"];

/// Qualifies the unqualified names of `MORE_CATALOG_RELATIONS` with `pg_catalog`.
pub fn catalog_relations(statement: &mut Statement) {
    let _ = visit_relations_mut(statement, |name: &mut ObjectName| {
        if let [part] = name.0.as_slice()
            && let Some(ident) = part.as_ident()
            && MORE_CATALOG_RELATIONS.contains(&ident.value.to_ascii_lowercase().as_str())
        {
            name.0
                .insert(0, ObjectNamePart::Identifier(Ident::new("pg_catalog")));
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `UPDATE t SET c = e FROM s WHERE cond` (dbt's snapshots) becomes
/// `UPDATE t SET c = (SELECT e FROM s WHERE cond) WHERE EXISTS (SELECT 1 FROM s WHERE cond)`,
/// which DataFusion plans: the same rows get the same values, except that a target row with
/// more than one matching source row fails (21000) where PostgreSQL takes any one of them.
/// Inside the subqueries a name the source tables also have means theirs, so qualify the
/// target's columns (dbt does).
pub fn update_from(statement: &mut Statement) {
    let Statement::Update(update) = statement else {
        return;
    };
    let Some(UpdateTableFromKind::AfterSet(from)) = &update.from else {
        return;
    };
    let from = from
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let condition = update
        .selection
        .as_ref()
        .map(|w| format!(" WHERE {w}"))
        .unwrap_or_default();
    let mut assignments = update.assignments.clone();
    for a in &mut assignments {
        match parse_expr(&format!("(SELECT {} FROM {from}{condition})", a.value)) {
            Some(value) => a.value = value,
            None => return,
        }
    }
    let Some(exists) = parse_expr(&format!("EXISTS (SELECT 1 FROM {from}{condition})")) else {
        return;
    };
    update.assignments = assignments;
    update.selection = Some(exists);
    update.from = None;
}

/// `VALUES (…, (SELECT …), …)`: DataFusion computes a VALUES list while planning, before any
/// subquery in it has run, and fails with an internal error. A list holding a subquery
/// becomes the same rows as `SELECT … AS column1, … UNION ALL SELECT …` (PostgreSQL's column
/// names, the same types by the same coercion).
pub fn values_with_subqueries(statement: &mut Statement) {
    struct Lists;
    impl VisitorMut for Lists {
        type Break = ();
        fn post_visit_query(&mut self, q: &mut Query) -> ControlFlow<()> {
            let SetExpr::Values(values) = q.body.as_ref() else {
                return ControlFlow::Continue(());
            };
            let subquery = visit_expressions(values, |e| match e {
                Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                    ControlFlow::Break(())
                }
                _ => ControlFlow::Continue(()),
            });
            if subquery.is_continue() {
                return ControlFlow::Continue(());
            }
            let selects: Vec<String> = values
                .rows
                .iter()
                .map(|row| {
                    let columns: Vec<String> = row
                        .iter()
                        .enumerate()
                        .map(|(i, e)| format!("{e} AS column{}", i + 1))
                        .collect();
                    format!("SELECT {}", columns.join(", "))
                })
                .collect();
            if let Ok(parsed) = Parser::new(&PostgreSqlDialect {})
                .try_with_sql(&selects.join(" UNION ALL "))
                .and_then(|mut p| p.parse_query())
            {
                q.body = parsed.body;
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Lists);
}

/// `EXISTS (SELECT … FROM … WHERE …)` in a select list (pgAdmin's catalog queries):
/// DataFusion decorrelates `EXISTS` in filters only. In a select list it becomes
/// `(SELECT count(*) > 0 FROM … WHERE …)`, a correlated aggregate it does decorrelate —
/// the same truth value, as the subquery's rows are only counted (`NOT EXISTS` negated).
/// Subqueries with grouping, DISTINCT, a limit or set operations are left alone.
pub fn exists_in_select_lists(statement: &mut Statement) {
    struct Lists;
    impl VisitorMut for Lists {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let SetExpr::Select(select) = query.body.as_mut() {
                for item in &mut select.projection {
                    let expr = match item {
                        SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => e,
                        _ => continue,
                    };
                    let _ = visit_expressions_mut(expr, |e| {
                        if let Some(counted) = exists_as_count(e) {
                            *e = counted;
                        }
                        ControlFlow::<()>::Continue(())
                    });
                }
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut Lists);
}

fn exists_as_count(e: &Expr) -> Option<Expr> {
    let Expr::Exists { subquery, negated } = e else {
        return None;
    };
    let SetExpr::Select(select) = subquery.body.as_ref() else {
        return None;
    };
    let plain = subquery.with.is_none()
        && subquery.order_by.is_none()
        && subquery.limit_clause.is_none()
        && subquery.fetch.is_none()
        && select.distinct.is_none()
        && select.having.is_none()
        && matches!(&select.group_by, GroupByExpr::Expressions(g, _) if g.is_empty());
    if !plain {
        return None;
    }
    if let Some(tested) = membership_outside(select, *negated) {
        return Some(tested);
    }
    let mut counted = select.as_ref().clone();
    let test = if *negated {
        "count(*) = 0"
    } else {
        "count(*) > 0"
    };
    counted.projection = vec![SelectItem::UnnamedExpr(parse_expr(test)?)];
    parse_expr(&format!("({counted})"))
}

/// `EXISTS (SELECT … FROM … WHERE cond AND outer = ANY(inner_array))` (pgAdmin: is a column
/// in a foreign key) is correlated by a membership test, which DataFusion cannot
/// decorrelate. The test moves outside: `coalesce(array_has(flatten((SELECT
/// array_agg(inner_array) FROM … WHERE cond)), outer), false)` — true exactly when some row
/// meeting `cond` holds `outer` in its array, as the EXISTS is; the subquery left is
/// correlated by equalities only. (The parser has made `x = ANY(a)` `array_contains(a, x)`.)
fn membership_outside(select: &Select, negated: bool) -> Option<Expr> {
    let inner_names: Vec<String> = select
        .from
        .iter()
        .flat_map(|t| std::iter::once(&t.relation).chain(t.joins.iter().map(|j| &j.relation)))
        .filter_map(|r| match r {
            TableFactor::Table { name, alias, .. } => Some(match alias {
                Some(a) => a.name.value.to_ascii_lowercase(),
                None => name.0.last()?.as_ident()?.value.to_ascii_lowercase(),
            }),
            _ => None,
        })
        .collect();
    let outer = |e: &Expr| {
        matches!(e, Expr::CompoundIdentifier(parts)
            if parts.len() == 2 && !inner_names.contains(&parts[0].value.to_ascii_lowercase()))
    };
    let mut conjuncts = Vec::new();
    split_and(select.selection.as_ref()?, &mut conjuncts);
    let mut membership = None;
    let mut rest = Vec::new();
    for c in conjuncts {
        let member = match c {
            Expr::Function(f)
                if matches!(function_name(f).as_str(), "array_contains" | "array_has") =>
            {
                match &f.args {
                    FunctionArguments::List(l) => match l.args.as_slice() {
                        [
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(array)),
                            FunctionArg::Unnamed(FunctionArgExpr::Expr(value)),
                        ] if outer(value) && !outer(array) => Some((array, value)),
                        _ => None,
                    },
                    _ => None,
                }
            }
            _ => None,
        };
        match member {
            Some(m) if membership.is_none() => membership = Some(m),
            Some(_) => return None,
            None => rest.push(c.to_string()),
        }
    }
    let (array, value) = membership?;
    let from = select
        .from
        .iter()
        .map(|t| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let condition = if rest.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", rest.join(" AND "))
    };
    let not = if negated { "NOT " } else { "" };
    parse_expr(&format!(
        "{not}coalesce(array_has(flatten((SELECT array_agg({array}) FROM {from}{condition})), \
         {value}), false)"
    ))
}

/// The operands of a chain of ANDs.
fn split_and<'a>(e: &'a Expr, out: &mut Vec<&'a Expr>) {
    match e {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(left, out);
            split_and(right, out);
        }
        Expr::Nested(inner) => split_and(inner, out),
        other => out.push(other),
    }
}

/// `SELECT DISTINCT ON (k…) items … ORDER BY o…` whose select list holds a subquery
/// (pgAdmin's column properties): DataFusion plans DISTINCT ON as a node of its own, where
/// it cannot decorrelate subqueries. Written instead as the first row of each group by
/// `row_number()`, which keeps them in an ordinary projection:
/// `SELECT * EXCLUDE (hidden…) FROM (SELECT items, k AS hidden…, o AS hidden…,
/// row_number() OVER (PARTITION BY k… ORDER BY o…) AS hidden FROM …) WHERE hidden = 1
/// ORDER BY hidden o…` — the same rows, in the same order.
pub fn distinct_on_with_subqueries(statement: &mut Statement) {
    struct DistinctOn;
    impl VisitorMut for DistinctOn {
        type Break = ();
        fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
            if let Some(rewritten) = distinct_on_as_window(query) {
                *query = rewritten;
            }
            ControlFlow::Continue(())
        }
    }
    let _ = statement.visit(&mut DistinctOn);
}

fn distinct_on_as_window(query: &Query) -> Option<Query> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let Some(Distinct::On(on)) = &select.distinct else {
        return None;
    };
    let has_subquery = select.projection.iter().any(|item| {
        visit_expressions(item, |e| match e {
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                ControlFlow::Break(())
            }
            _ => ControlFlow::Continue(()),
        })
        .is_break()
    });
    if !has_subquery {
        return None;
    }
    let order: Vec<OrderByExpr> = match &query.order_by {
        None => Vec::new(),
        Some(OrderBy {
            kind: OrderByKind::Expressions(exprs),
            ..
        }) => exprs.clone(),
        Some(_) => return None,
    };
    let mut inner = select.as_ref().clone();
    inner.distinct = None;
    let mut hidden = Vec::new();
    for (i, e) in on.iter().enumerate() {
        let name = format!("__distinct_on_{i}");
        inner.projection.push(SelectItem::ExprWithAlias {
            expr: e.clone(),
            alias: Ident::new(&name),
        });
        hidden.push(name);
    }
    let mut outer_order = Vec::new();
    for (i, o) in order.iter().enumerate() {
        let name = format!("__distinct_order_{i}");
        inner.projection.push(SelectItem::ExprWithAlias {
            expr: o.expr.clone(),
            alias: Ident::new(&name),
        });
        outer_order.push(format!("{name} {}", o.options));
        hidden.push(name);
    }
    let partition = on
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    let window_order = if order.is_empty() {
        String::new()
    } else {
        format!(
            " ORDER BY {}",
            order
                .iter()
                .map(|o| o.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    inner.projection.push(SelectItem::ExprWithAlias {
        expr: parse_expr(&format!(
            "row_number() OVER (PARTITION BY {partition}{window_order})"
        ))?,
        alias: Ident::new("__distinct_row"),
    });
    hidden.push("__distinct_row".into());
    let order_clause = if outer_order.is_empty() {
        String::new()
    } else {
        format!(" ORDER BY {}", outer_order.join(", "))
    };
    let mut out = parse_query(&format!(
        "SELECT * FROM ({inner}) AS __distinct_on WHERE __distinct_row = 1{order_clause}"
    ))?;
    let SetExpr::Select(outer) = out.body.as_mut() else {
        return None;
    };
    let [SelectItem::Wildcard(options)] = outer.projection.as_mut_slice() else {
        return None;
    };
    options.opt_exclude = Some(ExcludeSelectItem::Multiple(
        hidden
            .iter()
            .map(|h| ObjectName::from(vec![Ident::new(h)]))
            .collect(),
    ));
    out.with = query.with.clone();
    out.limit_clause = query.limit_clause.clone();
    out.fetch = query.fetch.clone();
    Some(out)
}

/// A scalar or `IN` subquery must return one column, as PostgreSQL checks while parsing
/// (42601); DataFusion reads the first column of one with none (`(SELECT FROM t)`) and panics.
/// `EXISTS (SELECT FROM t)` stays valid.
pub fn subqueries_have_a_column(statement: &Statement) -> Result<(), crate::SqlError> {
    let empty =
        |q: &Query| matches!(q.body.as_ref(), SetExpr::Select(s) if s.projection.is_empty());
    let found = visit_expressions(statement, |e| match e {
        Expr::Subquery(q) | Expr::InSubquery { subquery: q, .. } if empty(q) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    });
    match found {
        ControlFlow::Break(()) => Err(crate::SqlError::syntax(
            "subquery must return only one column",
        )),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// psql's `\d+` appends a table's TOAST options to its own with a lateral `unnest`, which
/// DataFusion cannot plan; flashsql tables have no storage options (nor TOAST tables), so the
/// list is empty.
const PSQL_TOAST_OPTIONS: &str =
    "c.reloptions || array(select 'toast.' || x from pg_catalog.unnest(tc.reloptions) x)";

/// Text-level rewrites applied before parsing: fixed client queries, and statements the SQL
/// parser does not know in PostgreSQL's spelling.
pub fn client_queries(sql: &str) -> Cow<'_, str> {
    let mut sql = alter_view_rename(sql);
    if let Some(set) = alter_table_reset(&sql) {
        sql = Cow::Owned(set);
    }
    for (fragment, replacement) in FIXED_FRAGMENTS {
        if sql.contains(fragment) {
            sql = Cow::Owned(sql.replace(fragment, replacement));
        }
    }
    // psql's `\dn+`, `\df+`, `\l+` join access-control lists into text; the catalog keeps
    // them as text already (and they are empty).
    if sql.contains("array_to_string(") {
        for column in ACL_COLUMNS {
            let fragment = format!("pg_catalog.array_to_string({column}, E'\\n')");
            if sql.contains(&fragment) {
                sql = Cow::Owned(sql.replace(&fragment, column));
            }
        }
    }
    sql
}

/// Access-control list columns as psql's catalog queries name them.
const ACL_COLUMNS: [&str; 6] = [
    "n.nspacl", "p.proacl", "c.relacl", "d.datacl", "l.lanacl", "t.typacl",
];

/// Fragments of fixed client queries and what they become.
/// The role names of a row-security policy in psql's `\dp`: a correlated subquery inside
/// another, which DataFusion cannot plan. flashsql has no policies (`pg_policy` is empty),
/// so the expression is never evaluated; an empty text stands in for it.
const PSQL_POLICY_ROLES: &str = "pg_catalog.array_to_string(
               ARRAY(
                   SELECT rolname
                   FROM pg_catalog.pg_roles
                   WHERE oid = ANY (polroles)
                   ORDER BY 1
               ), E', ')";

const FIXED_FRAGMENTS: [(&str, &str); 4] = [
    (PSQL_POLICY_ROLES, "''"),
    (PSQL_TOAST_OPTIONS, "CAST(NULL AS TEXT[])"),
    // psql's `\dp` compares a policy's roles with the array literal `'{0}'` ("to public"),
    // whose type PostgreSQL infers as oid[]; DataFusion compares it as text.
    ("polroles <> '{0}'", "polroles <> make_array(0)"),
    // pgjdbc's type cache compares `pg_type.typinput` with a `regproc`; the catalog holds
    // input functions by name, so compare names.
    (
        "typinput='pg_catalog.array_in'::regproc",
        "typinput='array_in'",
    ),
];

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

/// `ALTER TABLE t RESET (sort_by)`, PostgreSQL's way to drop a storage parameter, is
/// `ALTER TABLE t SET (sort_by = '')`; the SQL parser only knows the latter. Each statement
/// of a multi-statement text is looked at.
fn alter_table_reset(sql: &str) -> Option<String> {
    if !sql.to_ascii_uppercase().contains("RESET") {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let significant = |from: usize| {
        tokens[from..]
            .iter()
            .filter(|t| !matches!(t, Token::Whitespace(_)))
    };
    let keyword =
        |t: Option<&Token>, k: Keyword| matches!(t, Some(Token::Word(w)) if w.keyword == k);
    let mut out = String::with_capacity(sql.len() + 8);
    let mut statement = 0;
    // The parenthesis depth inside a RESET's list, while in one.
    let mut list: Option<i32> = None;
    let mut changed = false;
    for (i, token) in tokens.iter().enumerate() {
        if let Some(depth) = list.as_mut() {
            match token {
                Token::LParen => *depth += 1,
                Token::RParen => *depth -= 1,
                _ => {}
            }
            out.push_str(&token.to_string());
            if *depth == 1 && matches!(token, Token::Word(_)) {
                out.push_str(" = ''");
            }
            if *depth == 0 && matches!(token, Token::RParen) {
                list = None;
            }
            continue;
        }
        if matches!(token, Token::SemiColon) {
            statement = i + 1;
        } else if keyword(Some(token), Keyword::RESET) {
            let mut head = significant(statement);
            // The keyword opens a parenthesised list (a table may be called `reset`).
            if keyword(head.next(), Keyword::ALTER)
                && keyword(head.next(), Keyword::TABLE)
                && significant(i + 1).next() == Some(&Token::LParen)
            {
                out.push_str("SET");
                list = Some(0);
                changed = true;
                continue;
            }
        }
        out.push_str(&token.to_string());
    }
    changed.then_some(out)
}

/// A plain one-column SELECT with its column wrapped in `array_agg`, or None.
/// pgAdmin lists a role's memberships, transitively, with a correlated recursive query:
/// `WITH RECURSIVE cte AS (SELECT … FROM pg_roles WHERE … UNION ALL SELECT … FROM cte JOIN
/// pg_auth_members …) SELECT col FROM cte`. flashsql has no role memberships
/// (`pg_auth_members` is empty), so the recursive part adds no row and the query is its
/// first part, selecting `col`: a plain correlated subquery DataFusion can plan.
fn without_role_memberships(q: &Query) -> Option<Query> {
    let with = q.with.as_ref()?;
    let [cte] = with.cte_tables.as_slice() else {
        return None;
    };
    let SetExpr::SetOperation {
        op: SetOperator::Union,
        left,
        right,
        ..
    } = cte.query.body.as_ref()
    else {
        return None;
    };
    if !with.recursive || !right.to_string().contains("pg_auth_members") {
        return None;
    }
    let (SetExpr::Select(anchor), SetExpr::Select(outer)) = (left.as_ref(), q.body.as_ref()) else {
        return None;
    };
    // The outer query reads one column of the CTE, by name, and nothing else.
    let reads_only_cte = outer.selection.is_none()
        && matches!(outer.from.as_slice(), [t] if t.joins.is_empty()
            && t.relation.to_string() == cte.alias.name.to_string());
    let [SelectItem::UnnamedExpr(Expr::Identifier(column))] = outer.projection.as_slice() else {
        return None;
    };
    if !reads_only_cte || q.order_by.is_some() || q.limit_clause.is_some() {
        return None;
    }
    let picked = anchor.projection.iter().find_map(|item| match item {
        SelectItem::ExprWithAlias { expr, alias } if alias.value == column.value => {
            Some(expr.clone())
        }
        SelectItem::UnnamedExpr(e @ Expr::Identifier(i)) if i.value == column.value => {
            Some(e.clone())
        }
        SelectItem::UnnamedExpr(e @ Expr::CompoundIdentifier(parts))
            if parts.last().is_some_and(|i| i.value == column.value) =>
        {
            Some(e.clone())
        }
        _ => None,
    })?;
    let mut select = anchor.as_ref().clone();
    select.projection = vec![SelectItem::UnnamedExpr(picked)];
    parse_query(&select.to_string())
}

/// A query parsed from SQL text.
fn parse_query(sql: &str) -> Option<Query> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_query())
        .ok()
        .map(|q| *q)
}

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
    let aggregated = parse_expr(&format!("array_agg({expr})"))?;
    let mut out = q.clone();
    if let SetExpr::Select(s) = out.body.as_mut() {
        s.projection = vec![SelectItem::UnnamedExpr(aggregated)];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `RESET (p)` becomes `SET (p = '')`; other statements pass unchanged.
    #[test]
    fn alter_table_reset_is_set_to_nothing() {
        assert_eq!(
            alter_table_reset("ALTER TABLE IF EXISTS s.\"Events\" RESET ( sort_by );").as_deref(),
            Some("ALTER TABLE IF EXISTS s.\"Events\" SET ( sort_by = '' );")
        );
        assert_eq!(
            alter_table_reset("alter table reset reset (sort_by)").as_deref(),
            Some("alter table reset SET (sort_by = '')")
        );
        assert_eq!(alter_table_reset("ALTER TABLE reset RENAME TO other"), None);
        assert_eq!(
            alter_table_reset("BEGIN; ALTER TABLE t RESET (sort_by); RESET ALL").as_deref(),
            Some("BEGIN; ALTER TABLE t SET (sort_by = ''); RESET ALL")
        );
        assert_eq!(alter_table_reset("SELECT 'RESET'"), None);
        assert_eq!(alter_table_reset("RESET (x)"), None);
    }

    /// pgAdmin's transitive role memberships: with no memberships, the recursive query is
    /// its first part, aggregated in place (a form DataFusion decorrelates).
    #[test]
    fn role_memberships_without_members() {
        let mut s = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT 'pg_signal_backend' = ANY(ARRAY(WITH RECURSIVE cte AS (\
             SELECT pg_roles.oid, pg_roles.rolname FROM pg_roles WHERE pg_roles.oid = roles.oid \
             UNION ALL SELECT m.roleid, pgr.rolname FROM cte cte_1 \
             JOIN pg_auth_members m ON m.member = cte_1.oid \
             JOIN pg_roles pgr ON pgr.oid = m.roleid) SELECT rolname FROM cte)) \
             FROM pg_roles AS roles",
        )
        .expect("parses")
        .remove(0);
        client_expressions(&mut s);
        assert_eq!(
            s.to_string(),
            "SELECT 'pg_signal_backend' = ANY(SELECT array_agg(pg_roles.rolname) FROM pg_roles \
             WHERE pg_roles.oid = roles.oid) FROM pg_roles AS roles"
        );
    }

    #[test]
    fn set_returning_calls_and_record_fields() {
        let mut s = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT (information_schema._pg_expandarray(i.indkey)).n AS seq, \
             (r.KEYS).x, (r.k).\"X\", con.conkey[pos.n] FROM t",
        )
        .expect("parses")
        .remove(0);
        client_expressions(&mut s);
        assert_eq!(
            s.to_string(),
            "SELECT (unnest(_pg_expandarray(i.indkey))).'n' AS seq, (r.KEYS).'x', (r.k).'X', con.conkey[pos.n] FROM t"
        );
    }

    #[test]
    fn like_escapes_become_backslashes() {
        assert_eq!(backslash_escaped("pg!_%", '!'), "pg\\_%");
        assert_eq!(backslash_escaped("a\\b!!c", '!'), "a\\\\b\\!c");
        let mut s = Parser::parse_sql(
            &PostgreSqlDialect {},
            "SELECT n FROM t WHERE n NOT LIKE 'pg!_%' ESCAPE '!' AND m LIKE 'a/_' || '%' ESCAPE '/'",
        )
        .expect("parses")
        .remove(0);
        client_expressions(&mut s);
        assert_eq!(
            s.to_string(),
            "SELECT n FROM t WHERE n NOT LIKE 'pg\\_%' AND m LIKE 'a\\_' || '%'"
        );
    }

    #[test]
    fn array_subqueries_become_aggregates() {
        let rewritten = |sql: &str| {
            let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .expect("parses")
                .remove(0);
            client_expressions(&mut s);
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
