//! `CREATE TABLE … WITH (name = value)` and `ALTER TABLE … SET (name = value)`: PostgreSQL's
//! storage parameters, of which flashsql knows one, `sort_by` (see
//! `flashsql_engine::sort_order`). DataFusion plans no `WITH` clause, so the parameters are
//! taken off the statement before it is planned and handed to the engine with the plan.

use datafusion::sql::sqlparser::ast::{CreateTable, CreateTableOptions, Expr, SqlOption, Value};
use flashsql_engine::sort_order;

use crate::errors::SqlError;

/// Removes `ct`'s `WITH (…)` parameters and returns the `sort_by` columns they declare
/// (none if absent). Any other parameter is refused as PostgreSQL refuses one it does not
/// know (22023), so a misspelt `sortby` is not silently ignored.
pub fn take_sort_by(ct: &mut CreateTable) -> Result<Vec<String>, SqlError> {
    let options = match std::mem::take(&mut ct.table_options) {
        CreateTableOptions::None => return Ok(Vec::new()),
        CreateTableOptions::With(options) => options,
        other => {
            return Err(SqlError::coded(
                "42601",
                format!("table options {other} are not supported; use WITH (sort_by = '…')"),
            ));
        }
    };
    Ok(sort_by_of(options)?.unwrap_or_default())
}

/// The columns `ALTER TABLE … SET (sort_by = …)` declares: none for `''` (which drops the
/// declaration, as `RESET (sort_by)` does).
pub fn alter_sort_by(options: Vec<SqlOption>) -> Result<Vec<String>, SqlError> {
    Ok(sort_by_of(options)?.unwrap_or_default())
}

/// The `sort_by` columns among storage parameters, if it is given (`''`: no columns).
fn sort_by_of(options: Vec<SqlOption>) -> Result<Option<Vec<String>>, SqlError> {
    let mut sort_by = None;
    for option in options {
        let (key, value) = match option {
            SqlOption::KeyValue { key, value } => (key, value),
            other => return Err(unrecognised(&other.to_string())),
        };
        if !key.value.eq_ignore_ascii_case(sort_order::PARAMETER) {
            return Err(unrecognised(&key.value));
        }
        let text = match &value {
            Expr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) => s.clone(),
                _ => value.to_string(),
            },
            Expr::Identifier(i) => i.value.clone(),
            _ => value.to_string(),
        };
        let keys = if text.trim().is_empty() {
            Vec::new()
        } else {
            sort_order::parse(&text)?
        };
        if sort_by.replace(keys).is_some() {
            return Err(SqlError::coded(
                "42601",
                format!(
                    "parameter \"{}\" specified more than once",
                    sort_order::PARAMETER
                ),
            ));
        }
    }
    Ok(sort_by)
}

fn unrecognised(name: &str) -> SqlError {
    SqlError::coded(
        "22023",
        format!(
            "unrecognized parameter \"{name}\": the one table parameter is {}",
            sort_order::PARAMETER
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn create(sql: &str) -> CreateTable {
        match Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .pop()
        {
            Some(Statement::CreateTable(ct)) => ct,
            other => panic!("not a CREATE TABLE: {other:?}"),
        }
    }

    fn code(e: SqlError) -> String {
        crate::errors::classify_sql(&e).code.to_string()
    }

    #[test]
    fn sort_by_is_taken_off_the_statement() {
        let mut ct = create("CREATE TABLE t (u INT, ts TIMESTAMP) WITH (sort_by = 'u, ts')");
        assert_eq!(take_sort_by(&mut ct).unwrap(), ["u", "ts"]);
        assert!(matches!(ct.table_options, CreateTableOptions::None));
        let mut ct = create("CREATE TABLE t WITH (SORT_BY = u) AS SELECT 1 AS u");
        assert_eq!(take_sort_by(&mut ct).unwrap(), ["u"]);
        let mut ct = create("CREATE TABLE t (u INT)");
        assert!(take_sort_by(&mut ct).unwrap().is_empty());
    }

    #[test]
    fn other_parameters_are_refused() {
        let mut ct = create("CREATE TABLE t (u INT) WITH (fillfactor = 70)");
        assert_eq!(code(take_sort_by(&mut ct).unwrap_err()), "22023");
        let mut ct = create("CREATE TABLE t (u INT) WITH (sort_by = 'u', sort_by = 'u')");
        assert_eq!(code(take_sort_by(&mut ct).unwrap_err()), "42601");
        let mut ct = create("CREATE TABLE t (u INT) WITH (sort_by = 'u DESC')");
        assert_eq!(code(take_sort_by(&mut ct).unwrap_err()), "22023");
    }
}
