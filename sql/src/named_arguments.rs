//! `name => value` arguments that skip an option: `ttest(arm, y, alpha => 0.1)` leaves out
//! `control`, which DataFusion's resolution refuses ("Missing required parameter"), since it
//! only accepts names that fill a prefix of the parameters. For flashsql's experiment and
//! preprocessing functions, whose options treat NULL as "not given", the call is rewritten to positional
//! arguments with NULL in the gaps before planning. Unknown or repeated names are left for
//! DataFusion to refuse with its own message.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Statement, Value,
    visit_expressions_mut,
};

pub fn fill_gaps(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |e| {
        if let Expr::Function(f) = e {
            fill(f);
        }
        ControlFlow::<()>::Continue(())
    });
}

fn fill(f: &mut Function) {
    let Some(name) = f.name.0.last().and_then(|p| p.as_ident()) else {
        return;
    };
    let Some(params) = flashsql_udfs::parameter_names(&name.value.to_lowercase()) else {
        return;
    };
    let FunctionArguments::List(list) = &mut f.args else {
        return;
    };
    let named = |a: &FunctionArg| match a {
        FunctionArg::Named { name, .. } => Some(name.value.to_lowercase()),
        FunctionArg::ExprNamed {
            name: Expr::Identifier(i),
            ..
        } => Some(i.value.to_lowercase()),
        _ => None,
    };
    if list.args.iter().all(|a| named(a).is_none()) {
        return;
    }
    let positional = list.args.iter().take_while(|a| named(a).is_none()).count();
    let mut slots: Vec<Option<FunctionArgExpr>> = vec![None; params.len()];
    for (i, arg) in list.args.iter().enumerate() {
        let (index, value) = match arg {
            FunctionArg::Unnamed(v) if i < positional => (i, v),
            FunctionArg::Named { arg: value, .. } | FunctionArg::ExprNamed { arg: value, .. } => {
                let Some(index) = named(arg).and_then(|n| params.iter().position(|p| *p == n))
                else {
                    return;
                };
                (index, value)
            }
            _ => return,
        };
        if slots[index].is_some() {
            return;
        }
        slots[index] = Some(value.clone());
    }
    let last = slots.iter().rposition(Option::is_some).unwrap_or(0);
    list.args = slots
        .into_iter()
        .take(last + 1)
        .map(|s| {
            FunctionArg::Unnamed(
                s.unwrap_or_else(|| FunctionArgExpr::Expr(Expr::value(Value::Null))),
            )
        })
        .collect();
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let mut s = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        fill_gaps(&mut s);
        s.to_string()
    }

    #[test]
    fn skipped_options_become_nulls() {
        assert_eq!(
            rewritten("SELECT ttest(arm, y, alpha => 0.1) FROM t"),
            "SELECT ttest(arm, y, NULL, 0.1) FROM t"
        );
        assert_eq!(
            rewritten("SELECT sequential_test(arm, y, tuning => 900, control => 'a') FROM t"),
            "SELECT sequential_test(arm, y, 'a', NULL, 900) FROM t"
        );
        // Unchanged: no names, other functions, unknown names (DataFusion explains them).
        for sql in [
            "SELECT ttest(arm, y, 'a') FROM t",
            "SELECT f(a, b => 1) FROM t",
            "SELECT ttest(arm, y, nope => 1) FROM t",
        ] {
            assert_eq!(rewritten(sql), sql);
        }
    }
}
