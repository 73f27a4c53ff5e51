//! The SQL parser: PostgreSQL's dialect with datafusion-pg-catalog's client-query rewrites,
//! less the one that changes results.
//!
//! The library's parser ends with `RemoveSubqueryFromProjection`, which turns a correlated
//! subquery in a select list into `NULL` and stamps `LIMIT 1` on an uncorrelated one (so
//! that psql's catalog queries plan). On user data that is a silently wrong answer:
//! `SELECT u.id, (SELECT count(*) FROM events e WHERE e.user_id = u.id) FROM users u` gave
//! NULL counts. flashsql plans such subqueries itself (`scalar_subquery`), so here every
//! other rule of the library applies and that one does not.
//!
//! The library also replaces a few whole client queries it cannot rewrite (a token-level
//! list, private to it). Where that list matched, its result is used unchanged: it is
//! recognised as a parse that differs from applying the library's rules to the plain parse.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::{Expr, Query, SelectItem, SetExpr, Statement, Value};
use datafusion::sql::sqlparser::ast::{Visit, Visitor, visit_relations};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;

use crate::pg_catalog::SYSTEM_SCHEMAS;
use datafusion_pg_catalog::sql::rules::{
    AliasDuplicatedProjectionRewrite, CurrentUserVariableToSessionUserFunctionCall,
    FixArrayLiteral, FixVersionColumnName, PrependUnqualifiedPgTableName,
    ResolveUnqualifiedIdentifier, RewriteArrayAnyAllOperation, RewritePgCatalogOperator,
    RewriteRegCastToSubquery, SqlStatementRewriteRule, StripCallableQualifier, StripCollate,
};

/// Parses statements as PostgreSQL clients write them (see the module doc).
#[derive(Debug)]
pub struct CompatParser {
    library: PostgresCompatibilityParser,
    /// The library's rules in its order, without `RemoveSubqueryFromProjection`.
    rules: Vec<Arc<dyn SqlStatementRewriteRule>>,
}

impl Default for CompatParser {
    fn default() -> Self {
        Self::new()
    }
}

impl CompatParser {
    pub fn new() -> Self {
        Self {
            library: PostgresCompatibilityParser::new(),
            rules: vec![
                Arc::new(AliasDuplicatedProjectionRewrite),
                Arc::new(ResolveUnqualifiedIdentifier),
                Arc::new(RewriteArrayAnyAllOperation),
                Arc::new(PrependUnqualifiedPgTableName),
                Arc::new(StripCallableQualifier),
                Arc::new(FixArrayLiteral),
                Arc::new(CurrentUserVariableToSessionUserFunctionCall),
                Arc::new(StripCollate),
                Arc::new(RewritePgCatalogOperator),
                Arc::new(RewriteRegCastToSubquery::new()),
                Arc::new(FixVersionColumnName),
            ],
        }
    }

    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, ParserError> {
        let library = self.library.parse(sql)?;
        // Only a select list holding NULL or a `LIMIT 1` subquery can have been changed by
        // the rule left out; everything else is the library's parse as it stands. Queries of
        // the system catalogs keep the library's form too: client tools' catalog queries
        // hold correlated subqueries DataFusion cannot decorrelate (psql's `\d`), and there
        // a NULL column is what the tools expect of a catalog that lacks the fact.
        if !library.iter().any(may_have_lost_a_subquery) || library.iter().any(reads_catalogs) {
            return Ok(library);
        }
        let Ok(plain) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
            return Ok(library);
        };
        let by_library_rules: Vec<Statement> = plain
            .iter()
            .cloned()
            .map(|s| self.library.rewrite(s))
            .collect();
        if by_library_rules != library {
            // The library replaced a whole client query: keep its replacement.
            return Ok(library);
        }
        Ok(plain
            .into_iter()
            .map(|s| self.rules.iter().fold(s, |s, rule| rule.rewrite(s)))
            .collect())
    }
}

/// Whether a statement reads a relation of `pg_catalog` or `information_schema` (the
/// library has already qualified the unqualified `pg_*` names).
fn reads_catalogs(statement: &Statement) -> bool {
    let found = visit_relations(statement, |name| {
        // The schema is the part before the relation's name (`[catalog.]schema.name`).
        let schema = name.0.iter().rev().nth(1).and_then(|p| p.as_ident());
        if schema.is_some_and(|s| SYSTEM_SCHEMAS.contains(&s.value.as_str())) {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    });
    found.is_break()
}

/// Whether a statement has a select list with a NULL literal or a `LIMIT 1` subquery.
fn may_have_lost_a_subquery(statement: &Statement) -> bool {
    struct Finder(bool);
    impl Visitor for Finder {
        type Break = ();
        fn pre_visit_query(&mut self, query: &Query) -> std::ops::ControlFlow<()> {
            if let SetExpr::Select(select) = query.body.as_ref() {
                for item in &select.projection {
                    let (SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. }) =
                        item
                    else {
                        continue;
                    };
                    match e {
                        Expr::Value(v) if v.value == Value::Null => self.0 = true,
                        Expr::Subquery(q) if q.limit_clause.is_some() => self.0 = true,
                        _ => {}
                    }
                }
            }
            if self.0 {
                std::ops::ControlFlow::Break(())
            } else {
                std::ops::ControlFlow::Continue(())
            }
        }
    }
    let mut finder = Finder(false);
    let _ = statement.visit(&mut finder);
    finder.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> String {
        CompatParser::new()
            .parse(sql)
            .expect("parses")
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn select_list_subqueries_are_kept() {
        assert_eq!(
            parsed(
                "SELECT u.id, (SELECT count(*) FROM events e WHERE e.user_id = u.id) FROM users u"
            ),
            "SELECT u.id, (SELECT count(*) FROM events e WHERE e.user_id = u.id) FROM users u"
        );
        assert_eq!(
            parsed("SELECT (SELECT id FROM users) AS x"),
            "SELECT (SELECT id FROM users) AS x"
        );
    }

    #[test]
    fn the_library_rules_still_apply() {
        // `::regclass` of a name becomes an oid lookup; NULL in a select list stays NULL.
        let out = parsed("SELECT NULL AS a, 'events'::regclass");
        assert!(out.starts_with("SELECT NULL AS a, (SELECT"), "{out}");
        assert!(out.contains("pg_class"), "{out}");
        // A correlated select-list subquery over the catalogs keeps the library's NULL.
        let out = parsed(
            "SELECT a.attname, (SELECT d.adbin FROM pg_attrdef d WHERE d.adrelid = a.attrelid) \
             FROM pg_attribute a",
        );
        assert!(
            out.starts_with("SELECT a.attname, NULL FROM pg_catalog.pg_attribute"),
            "{out}"
        );
    }
}
