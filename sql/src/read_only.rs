//! Read-only sessions: with `default_transaction_read_only` on, or inside `BEGIN READ ONLY` /
//! after `SET TRANSACTION READ ONLY`, statements that write are refused with 25006, as in
//! PostgreSQL. A reporting tool or a service that must never change data can ask for this.
//! A user with the read-only role (`users`) is refused the same statements with 42501.

use std::ops::ControlFlow;

use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    ObjectName, Statement, TransactionAccessMode, TransactionMode, visit_relations,
};

use crate::errors::SqlError;

/// What a statement writes, named as PostgreSQL's error names it; None for a read.
pub fn writes(statement: &DFStatement) -> Option<&'static str> {
    let s = match statement {
        DFStatement::Statement(s) => s.as_ref(),
        DFStatement::CreateExternalTable(_) => return Some("CREATE EXTERNAL TABLE"),
        DFStatement::CopyTo(_) => return Some("COPY"),
        _ => return None,
    };
    Some(match s {
        Statement::Insert(_) => "INSERT",
        Statement::Update(_) => "UPDATE",
        Statement::Delete(_) => "DELETE",
        Statement::Merge { .. } => "MERGE",
        Statement::Truncate { .. } => "TRUNCATE TABLE",
        Statement::CreateTable(_) => "CREATE TABLE",
        Statement::CreateView { .. } => "CREATE VIEW",
        Statement::CreateSchema { .. } => "CREATE SCHEMA",
        Statement::CreateIndex(_) => "CREATE INDEX",
        Statement::Drop { .. } => "DROP",
        Statement::AlterTable(_) => "ALTER TABLE",
        Statement::Comment { .. } => "COMMENT",
        Statement::Copy { to: false, .. } => "COPY FROM",
        // A query, a cursor or EXPLAIN ANALYZE over a function that writes.
        _ if calls_writing_function(s) => "SELECT from a function that writes",
        _ => return None,
    })
}

fn calls_writing_function(s: &Statement) -> bool {
    visit_relations(s, |name: &ObjectName| {
        let last = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(|i| i.value.to_ascii_lowercase());
        if last.is_some_and(|n| flashsql_udfs::WRITING_FUNCTIONS.contains(&n.as_str())) {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    })
    .is_break()
}

/// Whether transaction modes ask for read-only (`Some(true)`) or read-write (`Some(false)`).
pub fn access_mode(modes: &[TransactionMode]) -> Option<bool> {
    modes.iter().rev().find_map(|m| match m {
        TransactionMode::AccessMode(TransactionAccessMode::ReadOnly) => Some(true),
        TransactionMode::AccessMode(TransactionAccessMode::ReadWrite) => Some(false),
        _ => None,
    })
}

/// The error for a write in a read-only transaction.
pub fn refused(what: &str) -> SqlError {
    SqlError::coded(
        "25006",
        format!("cannot execute {what} in a read-only transaction"),
    )
}

/// The error for a write by a user whose role may only read.
pub fn denied(user: &str, what: &str) -> SqlError {
    SqlError::with_hint(
        "42501",
        format!("permission denied for {what}: user \"{user}\" has the read_only role"),
        "log in as a user with the read_write role to change data",
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn kind(sql: &str) -> Option<&'static str> {
        let s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .remove(0);
        writes(&DFStatement::Statement(Box::new(s)))
    }

    #[test]
    fn writes_are_told_from_reads() {
        assert_eq!(kind("SELECT * FROM users"), None);
        assert_eq!(
            kind("SELECT * FROM optimize_discounts('c', budget => 1)"),
            None
        );
        assert_eq!(kind("INSERT INTO t VALUES (1)"), Some("INSERT"));
        assert_eq!(kind("DELETE FROM t"), Some("DELETE"));
        assert_eq!(kind("CREATE TABLE t AS SELECT 1"), Some("CREATE TABLE"));
        assert_eq!(kind("DROP VIEW v"), Some("DROP"));
        assert_eq!(kind("COPY t FROM STDIN"), Some("COPY FROM"));
        assert_eq!(kind("COPY t TO STDOUT"), None);
        assert!(kind("SELECT * FROM train_model('m', 'rows')").is_some());
        assert!(kind("SELECT * FROM flashsql.drop_model('m')").is_some());
    }
}
