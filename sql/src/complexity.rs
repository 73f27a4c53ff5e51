//! Statements too deep to run are refused (SQLSTATE 54001) before anything recursive sees them.
//!
//! The SQL parser bounds nesting it reaches by recursion (parentheses, CASE, subqueries), but
//! it builds operator chains (`1 + 1 + … + 1`, `a OR b OR …`, `x::t::t…`) in a loop, so their
//! trees can be as deep as the text is long. Everything after the parser walks such a tree by
//! recursion — cloning, dropping, planning, evaluating — and a tree deep enough overflows a
//! thread's stack, which aborts the whole process. So the depth of every statement is measured
//! right after parsing and a statement deeper than [`MAX_DEPTH`] is refused; the threads that
//! plan and execute have stacks sized for that depth
//! ([`flashsql_engine::executor::THREAD_STACK_BYTES`]).
//!
//! Parsing, the client-query rewrites and the depth walk are themselves stack-safe (sqlparser
//! grows the stack onto the heap as it recurses); dropping a refused tree is not, so that
//! happens on a stack sized for the text.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, Statement, Visit, Visitor};

use crate::errors::SqlError;

/// The deepest expression/subquery nesting a statement may have. PostgreSQL's own limit
/// depends on its stack (`max_stack_depth`, 2 MB by default); this one is fixed, so every
/// thread that plans or executes gets a stack sized for it.
///
/// It also bounds planning time, which nothing can interrupt: DataFusion's type coercion
/// works out the type of every operand of a chain anew from its leaves, so planning a chain
/// costs the square of its length (`k + k + …` with 2,000 terms took 6.6 s of one core in a
/// release build, and went on that long after its statement timed out; 10,000 terms would
/// take minutes). At 1,000 levels the worst chain plans in about 1.6 s; longer lists belong
/// in `IN (…)`, an array or a table, which plan in linear time.
pub const MAX_DEPTH: usize = 1_000;

/// The most entries a SELECT list may have: PostgreSQL's limit (54011). It also bounds
/// planning time, which nothing can interrupt: DataFusion plans a wide projection in time
/// that grows with the square of its width (5,000 `item_id + n` columns took 5–10 s).
pub const MAX_TARGET_LIST: usize = 1_664;

/// Breaks at the first SELECT list longer than [`MAX_TARGET_LIST`].
struct Targets;

impl Visitor for Targets {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if widest(&query.body) > MAX_TARGET_LIST {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }
}

/// The longest SELECT list of a query body (of each side of a UNION, …).
fn widest(body: &SetExpr) -> usize {
    match body {
        SetExpr::Select(s) => s.projection.len(),
        SetExpr::SetOperation { left, right, .. } => widest(left).max(widest(right)),
        SetExpr::Query(q) => widest(&q.body),
        _ => 0,
    }
}

/// Counts nesting; breaks as soon as it exceeds the limit.
struct Depth {
    current: usize,
    limit: usize,
}

impl Depth {
    fn enter(&mut self) -> ControlFlow<()> {
        self.current += 1;
        if self.current > self.limit {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }

    fn leave(&mut self) -> ControlFlow<()> {
        self.current -= 1;
        ControlFlow::Continue(())
    }
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
        self.leave()
    }

    fn pre_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.enter()
    }

    fn post_visit_expr(&mut self, _: &Expr) -> ControlFlow<()> {
        self.leave()
    }
}

/// Whether `statement` nests deeper than `limit`.
fn deeper_than(statement: &Statement, limit: usize) -> bool {
    statement.visit(&mut Depth { current: 0, limit }).is_break()
}

/// The error for a statement over the limit.
fn too_complex() -> SqlError {
    SqlError::with_hint(
        "54001",
        format!(
            "statement too complex: expressions or subqueries nest deeper than {MAX_DEPTH} levels"
        ),
        "split long chains of operators: x = 1 OR x = 2 OR … as x IN (1, 2, …), a + b + … as a sum over rows",
    )
}

/// Refuses statements deeper than [`MAX_DEPTH`]. `sql` is the text they were parsed from: its
/// length bounds how deep they can be, and so the stack needed to drop them.
pub fn check<S>(
    sql: &str,
    statements: Vec<S>,
    as_statement: impl Fn(&S) -> Option<&Statement>,
) -> Result<Vec<S>, SqlError> {
    // Each level of a chain takes at least two characters (`+1`).
    if sql.len() / 2 <= MAX_DEPTH {
        return Ok(statements);
    }
    let too_deep = statements
        .iter()
        .filter_map(&as_statement)
        .any(|s| deeper_than(s, MAX_DEPTH));
    if !too_deep {
        // Within the depth limit, the walk is shallow enough for any stack.
        if statements
            .iter()
            .filter_map(&as_statement)
            .any(|s| s.visit(&mut Targets).is_break())
        {
            return Err(SqlError::coded(
                "54011",
                format!("target lists can have at most {MAX_TARGET_LIST} entries"),
            ));
        }
        return Ok(statements);
    }
    // Dropping a tree recurses once per level, a few hundred bytes each.
    let stack = (sql.len().saturating_mul(256)).clamp(1 << 20, 8 << 30);
    stacker::grow(stack, move || drop(statements));
    Err(too_complex())
}

/// How deep the SQL parser nests before it gives up (sqlparser's default recursion limit).
const PARSER_DEPTH: usize = 50;

/// How deeply function calls, `CASE`, `ARRAY[…]` and other keyword-led brackets may nest.
/// Where such a construct fails to parse, the parser tries reading its keyword another way
/// (as a column name) and parses everything inside again, at every level: a syntax error
/// at depth d costs about 2^d parses of it — 0.8 s at depth 18 in a debug build, hours at
/// 30, for one statement that nothing can interrupt. PostgreSQL's parser does not backtrack
/// and has no such limit; 16 levels is more than hand-written or generated SQL uses.
pub const CALL_DEPTH: usize = 16;

/// Words that open a bracket without the parser trying them two ways.
const PLAIN_BEFORE_BRACKET: &[&str] = &[
    "all", "and", "any", "as", "else", "exists", "filter", "from", "in", "join", "not", "on", "or",
    "over", "select", "some", "then", "using", "values", "when", "where",
];

/// Refuses text that nests brackets or CASE deeper than the parser can follow, or nests
/// the constructs it backtracks over deeper than [`CALL_DEPTH`]. The parser reports its
/// limit for most constructs, but where it tries alternatives it swallows the error and
/// reads the text another way (nested CASE becomes a column named `case`), so the nesting
/// is measured on the text first: brackets and CASE/END outside string literals, quoted
/// identifiers and comments.
pub fn check_text(sql: &str) -> Result<(), SqlError> {
    let b = sql.as_bytes();
    // One entry per open bracket or CASE: whether the parser may backtrack over it.
    let mut open: Vec<bool> = Vec::new();
    let (mut calls, mut deepest, mut deepest_calls, mut i) = (0usize, 0usize, 0usize, 0usize);
    let word_at = |i: usize, w: &[u8]| {
        b.len() >= i + w.len()
            && b[i..i + w.len()].eq_ignore_ascii_case(w)
            && (i == 0 || !is_word(b[i - 1]))
            && b.get(i + w.len()).is_none_or(|c| !is_word(*c))
    };
    // Whether the bracket at `i` follows a word the parser may read two ways (a function
    // name, ARRAY, CAST, …).
    let called = |i: usize| {
        let mut end = i;
        while end > 0 && b[end - 1].is_ascii_whitespace() {
            end -= 1;
        }
        let mut start = end;
        while start > 0 && is_word(b[start - 1]) {
            start -= 1;
        }
        start < end
            && !b[start].is_ascii_digit()
            && !PLAIN_BEFORE_BRACKET
                .iter()
                .any(|w| b[start..end].eq_ignore_ascii_case(w.as_bytes()))
    };
    let mut push = |backtracks: bool, open: &mut Vec<bool>, calls: &mut usize| {
        open.push(backtracks);
        if backtracks {
            *calls += 1;
        }
        deepest = deepest.max(open.len());
        deepest_calls = deepest_calls.max(*calls);
    };
    let pop = |open: &mut Vec<bool>, calls: &mut usize| {
        if open.pop() == Some(true) {
            *calls -= 1;
        }
    };
    while i < b.len() {
        match b[i] {
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'(' | b'[' => push(called(i), &mut open, &mut calls),
            b')' | b']' => pop(&mut open, &mut calls),
            b'c' | b'C' if word_at(i, b"case") => {
                push(true, &mut open, &mut calls);
                i += 3;
            }
            b'e' | b'E' if word_at(i, b"end") => {
                pop(&mut open, &mut calls);
                i += 2;
            }
            _ => {}
        }
        i += 1;
    }
    if deepest > PARSER_DEPTH {
        return Err(SqlError::coded(
            "54001",
            format!(
                "statement too complex: brackets or CASE nest {deepest} deep, more than the parser's {PARSER_DEPTH}"
            ),
        ));
    }
    if deepest_calls > CALL_DEPTH {
        return Err(SqlError::coded(
            "54001",
            format!(
                "statement too complex: function calls, CASE or ARRAY nest {deepest_calls} deep, more than {CALL_DEPTH}"
            ),
        ));
    }
    Ok(())
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn parse(sql: &str) -> Vec<Statement> {
        Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses")
    }

    #[test]
    fn depth_counts_chains_and_subqueries() {
        let chain = |n: usize| format!("SELECT 1{}", "+1".repeat(n - 1));
        // `SELECT e` is one query level; a chain of n terms is n−1 operators deep, plus the leaf.
        assert!(!deeper_than(&parse(&chain(10))[0], 11));
        assert!(deeper_than(&parse(&chain(10))[0], 10));
        // Query, subquery expression, query, subquery expression, query, literal.
        let nested = "SELECT (SELECT (SELECT 1))";
        assert!(!deeper_than(&parse(nested)[0], 6));
        assert!(deeper_than(&parse(nested)[0], 5));
    }

    #[test]
    fn constructs_the_parser_backtracks_over_nest_at_most_call_depth() {
        let nest = |open: &str, close: &str, n: usize| {
            format!("SELECT {}1{}", open.repeat(n), close.repeat(n))
        };
        for (open, close) in [("abs(", ")"), ("ARRAY[", "]"), ("CAST(", " AS BIGINT)")] {
            assert!(check_text(&nest(open, close, CALL_DEPTH)).is_ok(), "{open}");
            let e = check_text(&nest(open, close, CALL_DEPTH + 1)).expect_err(open);
            assert!(
                e.to_string()
                    .contains("function calls, CASE or ARRAY nest 17 deep"),
                "{e}"
            );
        }
        // Brackets the parser reads one way only: subqueries, IN lists, plain parentheses.
        assert!(check_text(&nest("(", ")", 40)).is_ok());
        assert!(check_text(&nest("(SELECT ", ")", 40)).is_ok());
        assert!(check_text(&nest("1 IN (SELECT ", ")", 40)).is_ok());
        // Mixed: the count is of the backtracking ones along one path.
        let mixed = "abs((".repeat(CALL_DEPTH) + "1" + &"))".repeat(CALL_DEPTH);
        assert!(check_text(&format!("SELECT {mixed}")).is_ok());
        // Siblings do not add up.
        let siblings = vec![nest("abs(", ")", CALL_DEPTH)[7..].to_string(); 50].join(", ");
        assert!(check_text(&format!("SELECT {siblings}")).is_ok());
    }

    #[test]
    fn nesting_is_measured_outside_literals_and_comments() {
        let case = |n: usize| {
            format!(
                "SELECT {}1{}",
                "CASE WHEN true THEN ".repeat(n),
                " END".repeat(n)
            )
        };
        assert!(check_text(&case(CALL_DEPTH)).is_ok());
        assert!(check_text(&case(CALL_DEPTH + 1)).is_err());
        let parens = |n: usize| format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n));
        assert!(check_text(&parens(PARSER_DEPTH)).is_ok());
        assert!(check_text(&parens(10_000)).is_err());
        let quoted = format!(
            "SELECT '{}' AS \"{}\" -- {}\n/* {} */",
            "(".repeat(100),
            "[".repeat(100),
            "(".repeat(100),
            "CASE ".repeat(100)
        );
        assert!(check_text(&quoted).is_ok());
        // Words that merely contain case or end.
        assert!(
            check_text(&format!(
                "SELECT {}",
                "showcase, endpoint, ".repeat(100) + "1"
            ))
            .is_ok()
        );
    }

    #[test]
    fn a_chain_over_the_limit_is_refused_with_54001() {
        let sql = format!("SELECT 1{}", "+1".repeat(MAX_DEPTH + 10));
        let statements = parse(&sql);
        let err = check(&sql, statements, |s| Some(s)).expect_err("refused");
        assert_eq!(crate::errors::classify_sql(&err).code, "54001");
        let sql = format!("SELECT 1{}", "+1".repeat(MAX_DEPTH / 2));
        assert_eq!(
            check(&sql, parse(&sql), |s| Some(s)).expect("kept").len(),
            1
        );
    }

    #[test]
    fn a_select_list_over_postgresqls_limit_is_refused_with_54011() {
        let list = |n: usize| {
            (0..n)
                .map(|i| format!("k + {i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        for sql in [
            format!("SELECT {} FROM t", list(MAX_TARGET_LIST + 1)),
            format!("SELECT 1 UNION ALL SELECT {}", list(MAX_TARGET_LIST + 1)),
            format!("SELECT * FROM (SELECT {} FROM t) AS s", list(2_000)),
        ] {
            let err = check(&sql, parse(&sql), |s| Some(s)).expect_err("refused");
            assert_eq!(
                crate::errors::classify_sql(&err).code,
                "54011",
                "{}",
                &sql[..40]
            );
        }
        let sql = format!("SELECT {} FROM t", list(MAX_TARGET_LIST));
        assert_eq!(
            check(&sql, parse(&sql), |s| Some(s)).expect("kept").len(),
            1
        );
    }
}
