//! `SELECT * FROM load_file('taobao', '/path/file.csv', table => 'events', schema => 'public')`:
//! the SQL form of `flashsql load`. It creates a table, so it is recognised here, before
//! DataFusion plans the query, and run by the engine's loader (`flashsql_engine::load`).

use datafusion::sql::sqlparser::ast::{
    Expr, FunctionArg, FunctionArgExpr, Query, SetExpr, TableFactor, Value,
};

use crate::errors::SqlError;

/// A parsed `load_file` call.
#[derive(Debug, PartialEq, Eq)]
pub struct LoadCall {
    pub format: String,
    pub path: String,
    pub table: Option<String>,
    pub schema: Option<String>,
    /// `mode => 'append'`: into the existing table.
    pub append: bool,
}

fn text(arg: &FunctionArgExpr) -> Result<String, SqlError> {
    match arg {
        FunctionArgExpr::Expr(Expr::Value(v)) => match &v.value {
            Value::SingleQuotedString(s) => Ok(s.clone()),
            other => Err(invalid(&format!("a text literal, not {other}"))),
        },
        other => Err(invalid(&format!("a text literal, not {other}"))),
    }
}

fn invalid(what: &str) -> SqlError {
    SqlError::coded(
        "22023",
        format!(
            "load_file(format, path [, table => name] [, schema => name] \
             [, mode => 'create' | 'append']) takes {what}"
        ),
    )
}

/// The call, if `query` is a `SELECT … FROM load_file(…)` (and nothing else).
pub fn parse(query: &Query) -> Option<Result<LoadCall, SqlError>> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let [from] = select.from.as_slice() else {
        return None;
    };
    let TableFactor::Table {
        name,
        args: Some(args),
        ..
    } = &from.relation
    else {
        return None;
    };
    let last = name.0.last()?.as_ident()?.value.to_ascii_lowercase();
    if last != flashsql_udfs::LOAD_FILE {
        return None;
    }
    Some(call(&args.args))
}

fn call(args: &[FunctionArg]) -> Result<LoadCall, SqlError> {
    let mut positional = Vec::new();
    let (mut table, mut schema, mut append) = (None, None, false);
    for arg in args {
        let (name, value) = match arg {
            FunctionArg::Unnamed(a) => {
                positional.push(text(a)?);
                continue;
            }
            FunctionArg::Named { name, arg, .. } => (name.value.clone(), arg),
            FunctionArg::ExprNamed {
                name: Expr::Identifier(name),
                arg,
                ..
            } => (name.value.clone(), arg),
            other => return Err(invalid(&format!("no argument {other}"))),
        };
        match name.to_ascii_lowercase().as_str() {
            "table" => table = Some(text(value)?),
            "schema" => schema = Some(text(value)?),
            "mode" => {
                append = match text(value)?.to_ascii_lowercase().as_str() {
                    "append" => true,
                    "create" => false,
                    other => {
                        return Err(invalid(&format!(
                            "mode 'create' or 'append', not '{other}'"
                        )));
                    }
                }
            }
            other => return Err(invalid(&format!("no option \"{other}\""))),
        }
    }
    let [format, path] =
        <[String; 2]>::try_from(positional).map_err(|_| invalid("two positional arguments"))?;
    Ok(LoadCall {
        format,
        path,
        table,
        schema,
        append,
    })
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::ast::Statement;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn parsed(sql: &str) -> Option<Result<LoadCall, SqlError>> {
        let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses");
        match &statements[0] {
            Statement::Query(q) => parse(q),
            _ => None,
        }
    }

    #[test]
    fn calls_are_recognised_with_their_options() {
        let call = parsed("SELECT * FROM load_file('taobao', '/d/ub.csv', table => 'events')")
            .expect("a load")
            .expect("valid");
        assert_eq!(
            call,
            LoadCall {
                format: "taobao".into(),
                path: "/d/ub.csv".into(),
                table: Some("events".into()),
                schema: None,
                append: false,
            }
        );
        assert!(parsed("SELECT * FROM events").is_none());
        assert!(parsed("SELECT * FROM generate_series(1, 3)").is_none());
        assert!(
            parsed("SELECT * FROM load_file('csv')")
                .expect("a load")
                .is_err()
        );
        assert!(
            parsed("SELECT * FROM load_file('csv', '/x', colour => 'red')")
                .expect("a load")
                .is_err()
        );
    }
}
