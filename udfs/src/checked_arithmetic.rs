//! Integer arithmetic that fails on overflow, as PostgreSQL's does.
//!
//! DataFusion's `+`, `-` and `*` on integers wrap: `9223372036854775807 + 1` answers
//! −9223372036854775808, a wrong number an analyst cannot tell from a right one. Its
//! checked mode (`BinaryExpr::with_fail_on_overflow`) is not reachable from SQL planning or
//! constant folding. [`CheckedIntegerArithmetic`] therefore replaces integer `+ - *` in every
//! analysed plan by functions that use Arrow's checked kernels: an overflow is an error with
//! SQLSTATE 22003 ("integer out of range" in PostgreSQL), whether it happens on a row or when
//! the optimiser folds constants (a failed fold is left for execution, where it fails).
//! Column names stay what the user wrote (`a + b`), and other types (floats, decimals, dates,
//! intervals) keep DataFusion's own operators.
//!
//! Limit: an expression nested deeper than [`MAX_CHECKED_DEPTH`] levels keeps DataFusion's
//! wrapping operators. DataFusion asks a function call for its type by formatting its
//! arguments' names, so each planning pass over a chain of n checked calls costs about n³;
//! real statements are far shallower, and the deep ones (generated sums of thousands of
//! terms) still plan.

use std::sync::Arc;

use datafusion::arrow::compute::kernels::numeric::{add, mul, sub};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::DFSchema;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{
    Transformed, TransformedResult, TreeNode, TreeNodeRecursion, TreeNodeVisitor,
};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Expr, ExprSchemable, LogicalPlan, Operator, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::physical_expr_common::datum::apply;

/// Expressions nested deeper than this keep wrapping arithmetic (see the module
/// documentation).
pub const MAX_CHECKED_DEPTH: usize = 128;

/// The nesting depth of an expression, in one walk.
fn depth(expr: &Expr) -> usize {
    struct Depth {
        now: usize,
        max: usize,
    }
    impl<'n> TreeNodeVisitor<'n> for Depth {
        type Node = Expr;
        fn f_down(&mut self, _: &'n Expr) -> Result<TreeNodeRecursion> {
            self.now += 1;
            self.max = self.max.max(self.now);
            Ok(TreeNodeRecursion::Continue)
        }
        fn f_up(&mut self, _: &'n Expr) -> Result<TreeNodeRecursion> {
            self.now -= 1;
            Ok(TreeNodeRecursion::Continue)
        }
    }
    let mut v = Depth { now: 0, max: 0 };
    let _ = expr.visit(&mut v);
    v.max
}

/// Rewrites integer `+ - *` into their checked forms (see the module documentation).
#[derive(Debug)]
pub struct CheckedIntegerArithmetic {
    add: Arc<ScalarUDF>,
    sub: Arc<ScalarUDF>,
    mul: Arc<ScalarUDF>,
}

impl Default for CheckedIntegerArithmetic {
    fn default() -> Self {
        let udf = |op| Arc::new(ScalarUDF::new_from_impl(CheckedOp::new(op)));
        Self {
            add: udf(Op::Add),
            sub: udf(Op::Sub),
            mul: udf(Op::Mul),
        }
    }
}

impl AnalyzerRule for CheckedIntegerArithmetic {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| self.rewrite_node(node))
            .data()
    }

    fn name(&self) -> &str {
        "flashsql_checked_integer_arithmetic"
    }
}

impl CheckedIntegerArithmetic {
    fn rewrite_node(&self, plan: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        crate::plan_expressions::rewrite_expressions(plan, |expr, schema| {
            self.rewrite_expr(expr, schema)
        })
    }

    /// Rewrites one expression tree bottom-up in a single pass. The types of rewritten
    /// nodes are carried on a stack rather than asked of the tree again: asking a function
    /// call for its type formats its arguments' names, which over a chain of 200,000 sums
    /// would cost quadratic time.
    fn rewrite_expr(&self, expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
        if depth(&expr) > MAX_CHECKED_DEPTH {
            return Ok(Transformed::no(expr));
        }
        // One entry per finished subtree, in visiting order: its type when already known.
        let mut types: Vec<Option<DataType>> = Vec::new();
        expr.transform_up(|node| {
            let mut children = 0;
            node.apply_children(|_| {
                children += 1;
                Ok(TreeNodeRecursion::Continue)
            })?;
            let child_types = types.split_off(types.len().saturating_sub(children));
            let (node, known) = self.rewrite_one(node, child_types, schema)?;
            types.push(known);
            Ok(node)
        })
    }

    /// `node` (whose children are done) as a checked call if it is integer arithmetic, and
    /// its type if that is known without a walk of the tree.
    fn rewrite_one(
        &self,
        node: Expr,
        child_types: Vec<Option<DataType>>,
        schema: &DFSchema,
    ) -> Result<(Transformed<Expr>, Option<DataType>)> {
        let Expr::BinaryExpr(BinaryExpr { left, op, right }) = node else {
            return Ok((Transformed::no(node), None));
        };
        let udf = match op {
            Operator::Plus => &self.add,
            Operator::Minus => &self.sub,
            Operator::Multiply => &self.mul,
            // Other operators are left without asking their operands' types.
            _ => {
                let node = Expr::BinaryExpr(BinaryExpr { left, op, right });
                return Ok((Transformed::no(node), None));
            }
        };
        let mut known = child_types.into_iter();
        let mut type_of = |e: &Expr| match known.next().flatten() {
            Some(t) => Some(t),
            // Types that cannot be computed yet (an untyped parameter) keep the operator.
            None => e.get_type(schema).ok(),
        };
        let l = match (type_of(&left), type_of(&right)) {
            (Some(l), Some(r)) if l == r && l.is_integer() => l,
            _ => {
                let node = Expr::BinaryExpr(BinaryExpr { left, op, right });
                return Ok((Transformed::no(node), None));
            }
        };
        let call = Expr::ScalarFunction(ScalarFunction::new_udf(udf.clone(), vec![*left, *right]));
        Ok((Transformed::yes(call), Some(l)))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Op {
    Add,
    Sub,
    Mul,
}

/// One checked operator on two integers of the same type.
#[derive(Debug, PartialEq, Eq, Hash)]
struct CheckedOp {
    op: Op,
    signature: Signature,
}

impl CheckedOp {
    fn new(op: Op) -> Self {
        Self {
            op,
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for CheckedOp {
    fn name(&self) -> &str {
        match self.op {
            Op::Add => "checked_add",
            Op::Sub => "checked_sub",
            Op::Mul => "checked_mul",
        }
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        arg_types
            .first()
            .cloned()
            .ok_or_else(|| DataFusionError::Plan(format!("{} takes two integers", self.name())))
    }

    /// Nullable only if an operand is, as for the operator it replaces: a table created
    /// from `a * b` of NOT NULL columns keeps a NOT NULL column.
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let data_type = self.return_type(
            &args
                .arg_fields
                .iter()
                .map(|f| f.data_type().clone())
                .collect::<Vec<_>>(),
        )?;
        let nullable = args.arg_fields.iter().any(|f| f.is_nullable());
        Ok(Arc::new(Field::new(self.name(), data_type, nullable)))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [lhs, rhs] = args.args.as_slice() else {
            return Err(DataFusionError::Plan(format!(
                "{} takes two integers",
                self.name()
            )));
        };
        match self.op {
            Op::Add => apply(lhs, rhs, add),
            Op::Sub => apply(lhs, rhs, sub),
            Op::Mul => apply(lhs, rhs, mul),
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::SessionContext;

    use super::*;

    fn context() -> SessionContext {
        let state = SessionStateBuilder::new()
            .with_default_features()
            .with_analyzer_rule(Arc::new(CheckedIntegerArithmetic::default()))
            .build();
        SessionContext::new_with_state(state)
    }

    async fn run(ctx: &SessionContext, sql: &str) -> Result<String> {
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(pretty_format_batches(&batches)?.to_string())
    }

    fn is_overflow(e: &DataFusionError) -> bool {
        matches!(
            e.find_root(),
            DataFusionError::ArrowError(err, _)
                if matches!(**err, datafusion::arrow::error::ArrowError::ArithmeticOverflow(_))
        )
    }

    /// Overflow is an error on constants (folded at planning) and on rows, for each
    /// operator and integer width; results in range and other types are unchanged.
    #[tokio::test]
    async fn integer_overflow_is_an_error() {
        let ctx = context();
        for sql in [
            "SELECT 9223372036854775807 + 1",
            "SELECT -9223372036854775807 - 2",
            "SELECT 4611686018427387904 * 2",
            "SELECT CAST(2147483647 AS INT) + CAST(1 AS INT)",
            "SELECT CAST(32767 AS SMALLINT) * CAST(2 AS SMALLINT)",
            "SELECT v + 1 FROM (VALUES (1), (9223372036854775807)) t(v)",
            "SELECT sum(v * 3) FROM (VALUES (1), (4611686018427387904)) t(v)",
        ] {
            let err = run(&ctx, sql).await.expect_err(sql);
            assert!(is_overflow(&err), "{sql}: {err}");
        }
        // In range: the same answers as before, under the names the user wrote.
        let out = run(&ctx, "SELECT 9223372036854775806 + 1, 2 * 3 - 1")
            .await
            .expect("runs");
        assert!(out.contains("9223372036854775807"), "{out}");
        assert!(out.contains("Int64(2) * Int64(3) - Int64(1)"), "{out}");
        let out = run(
            &ctx,
            "SELECT v * 2 AS d FROM (VALUES (21)) t(v) WHERE v + 0 = 21",
        )
        .await
        .expect("runs");
        assert!(out.contains("42"), "{out}");
        let out = run(
            &ctx,
            "SELECT v + 1 AS w, count(*) AS n FROM (VALUES (1), (1), (2)) t(v) \
             GROUP BY v + 1 HAVING count(*) > 1 ORDER BY v + 1",
        )
        .await
        .expect("runs");
        assert!(out.contains("| 2 | 2 |"), "{out}");
        // NOT NULL operands give a NOT NULL result, as the operator did.
        let df = ctx
            .sql("SELECT v * 1000 + w AS k FROM (VALUES (1, 2)) t(v, w)")
            .await
            .expect("plans");
        assert!(!df.schema().field(0).is_nullable());
        let batches = df.collect().await.expect("runs");
        assert!(!batches[0].schema().field(0).is_nullable());
        // A chain deeper than the limit plans (with wrapping arithmetic); one within it is
        // checked all the way up.
        let deep = format!("SELECT 1{}", " + 1".repeat(MAX_CHECKED_DEPTH + 10));
        run(&ctx, &deep).await.expect("a deep chain plans");
        let shallow = format!(
            "SELECT 9223372036854775800{}",
            " + 1".repeat(MAX_CHECKED_DEPTH - 10)
        );
        let err = run(&ctx, &shallow).await.expect_err("overflows");
        assert!(is_overflow(&err), "{err}");
        // Floats keep IEEE arithmetic; dates keep their own operators.
        let out = run(
            &ctx,
            "SELECT 1.7976931348623157e308 * 10, DATE '2026-01-01' + INTERVAL '1 day'",
        )
        .await
        .expect("runs");
        assert!(out.contains("inf"), "{out}");
        assert!(out.contains("2026-01-02"), "{out}");
    }
}
