//! `text_column = 'view'`: equality with a short text constant, compared on string views.
//!
//! Behaviour logs are filtered and counted by their low-cardinality text columns — the
//! funnel `sum(CASE WHEN event_type = 'view' THEN 1 ELSE 0 END)`, `WHERE event_type =
//! 'purchase'`. Text is scanned as Arrow string views (see [`crate::text_views`]), in which a
//! string of at most 12 bytes is held whole inside its 16-byte view, after its length. Arrow's
//! comparison kernel takes each row through a general byte-view comparison (buffers,
//! lengths, prefixes, branches: a third of the funnel's CPU time, `perf`); against a constant
//! of at most 12 bytes, equality is one masked 128-bit comparison per row — the length and
//! exactly the constant's bytes, so whatever a writer left in the padding does not matter.
//!
//! [`ShortTextEqRule`] puts [`ShortTextEq`] in place of such `=`/`<>` wherever a plan
//! evaluates expressions per row ([`crate::row_expressions`]). It is the same comparison: same
//! result (NULL for a NULL input), same display; any input that is not a string-view array
//! is compared by DataFusion's own expression.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::common::ScalarValue;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, Operator};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Literal};
use datafusion::physical_expr_common::datum::apply_cmp;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::ExecutionPlan;

use crate::row_expressions::{self, Place};

/// The longest constant a view holds inline.
const INLINE: usize = 12;

/// `text = constant` (or `<>`) for a constant of at most [`INLINE`] bytes.
#[derive(Debug)]
pub struct ShortTextEq {
    text: Arc<dyn PhysicalExpr>,
    constant: Arc<dyn PhysicalExpr>,
    /// Written `constant = text`: kept for display and children's order.
    constant_first: bool,
    negated: bool,
    /// The bits of a view that hold its length and the constant's bytes, and their value
    /// in the constant's own view.
    mask: u128,
    target: u128,
}

impl ShortTextEq {
    /// The comparison `left op right`, if one side is short constant text and `op` is
    /// `=`/`<>`.
    pub fn try_new(
        left: Arc<dyn PhysicalExpr>,
        op: Operator,
        right: Arc<dyn PhysicalExpr>,
    ) -> Option<Self> {
        let constant_first = right.downcast_ref::<Literal>().is_none();
        let (text, constant) = if constant_first {
            (right, left)
        } else {
            (left, right)
        };
        let negated = match op {
            Operator::Eq => false,
            Operator::NotEq => true,
            _ => return None,
        };
        let bytes = match constant.downcast_ref::<Literal>()?.value() {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)) => s.as_bytes(),
            _ => return None,
        };
        if bytes.len() > INLINE {
            return None;
        }
        let (mask, target) = view_key(bytes);
        Some(Self {
            text,
            constant,
            constant_first,
            negated,
            mask,
            target,
        })
    }

    fn op(&self) -> Operator {
        if self.negated {
            Operator::NotEq
        } else {
            Operator::Eq
        }
    }

    /// The sides as written.
    fn sides(&self) -> [&Arc<dyn PhysicalExpr>; 2] {
        if self.constant_first {
            [&self.constant, &self.text]
        } else {
            [&self.text, &self.constant]
        }
    }

    /// DataFusion's own form of the comparison.
    fn general(&self) -> BinaryExpr {
        let [l, r] = self.sides();
        BinaryExpr::new(l.clone(), self.op(), r.clone())
    }
}

/// The mask and value a view of `bytes` (at most 12) has in its length and inline bytes:
/// little-endian, the length in the low 32 bits, the bytes after it.
fn view_key(bytes: &[u8]) -> (u128, u128) {
    let mut view = [0u8; 16];
    let mut mask = [0u8; 16];
    view[..4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
    view[4..4 + bytes.len()].copy_from_slice(bytes);
    mask[..4 + bytes.len()].fill(0xff);
    (u128::from_le_bytes(mask), u128::from_le_bytes(view))
}

impl PartialEq for ShortTextEq {
    fn eq(&self, other: &Self) -> bool {
        self.text.as_ref() == other.text.as_ref()
            && self.constant.as_ref() == other.constant.as_ref()
            && self.constant_first == other.constant_first
            && self.negated == other.negated
    }
}

impl Eq for ShortTextEq {}

impl Hash for ShortTextEq {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.text.as_ref().hash(state);
        self.constant.as_ref().hash(state);
        self.constant_first.hash(state);
        self.negated.hash(state);
    }
}

impl fmt::Display for ShortTextEq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.general())
    }
}

impl PhysicalExpr for ShortTextEq {
    fn data_type(&self, _input_schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.text.nullable(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let text = self.text.evaluate(batch)?;
        let views = match &text {
            ColumnarValue::Array(array) => array.as_string_view_opt(),
            ColumnarValue::Scalar(_) => None,
        };
        let Some(views) = views else {
            // Not string views: Arrow's comparison, on the value already computed.
            let constant = self.constant.evaluate(batch)?;
            let [l, r] = if self.constant_first {
                [&constant, &text]
            } else {
                [&text, &constant]
            };
            return apply_cmp(self.op(), l, r);
        };
        let nulls = views.logical_nulls();
        let views = views.views();
        let (mask, target, negated) = (self.mask, self.target, self.negated);
        let values =
            BooleanBuffer::collect_bool(views.len(), |i| ((views[i] & mask) == target) != negated);
        let result = BooleanArray::new(values, nulls);
        Ok(ColumnarValue::Array(Arc::new(result)))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        self.sides().to_vec()
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let [left, right]: [Arc<dyn PhysicalExpr>; 2] = children.try_into().map_err(|_| {
            DataFusionError::Internal("a short text comparison has two children".into())
        })?;
        Ok(
            match Self::try_new(left.clone(), self.op(), right.clone()) {
                Some(e) => Arc::new(e),
                None => Arc::new(BinaryExpr::new(left, self.op(), right)),
            },
        )
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.general().fmt_sql(f)
    }
}

/// `expr` with its `=`/`<>` between string views and short text constants as
/// [`ShortTextEq`] (`schema`: its input's).
fn with_short_text_eq(
    expr: &Arc<dyn PhysicalExpr>,
    schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    Ok(expr
        .clone()
        .transform_up(|e| {
            let Some(binary) = e.downcast_ref::<BinaryExpr>() else {
                return Ok(Transformed::no(e));
            };
            let Some(fast) =
                ShortTextEq::try_new(binary.left().clone(), *binary.op(), binary.right().clone())
            else {
                return Ok(Transformed::no(e));
            };
            if fast.text.data_type(schema)? != DataType::Utf8View {
                return Ok(Transformed::no(e));
            }
            Ok(Transformed::yes(Arc::new(fast) as Arc<dyn PhysicalExpr>))
        })?
        .data)
}

/// Rewrites short text comparisons in filters, projections and aggregates (see the module
/// notes).
#[derive(Debug, Default)]
pub struct ShortTextEqRule;

impl PhysicalOptimizerRule for ShortTextEqRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let rewrite =
            |e: &Arc<dyn PhysicalExpr>, schema: &Schema, _: Place| with_short_text_eq(e, schema);
        plan.transform_up(|node| {
            Ok(match row_expressions::rewritten(&node, &rewrite)? {
                Some(plan) => Transformed::yes(plan),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "flashsql_short_text_eq"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, Scalar, StringArray, StringViewArray};
    use datafusion::arrow::compute::kernels::cmp;
    use datafusion::arrow::datatypes::Field;
    use datafusion::physical_expr::expressions::col;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// Against Arrow's own kernel, on random short and long strings (NULLs, empty ones, ones
    /// sharing a prefix with the constant) and constants of every length up to 12, both
    /// operators, both sides.
    #[test]
    fn matches_arrows_comparison() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let alphabet = b"ab";
        let word = |rng: &mut ChaCha8Rng, max: usize| -> String {
            let n = rng.random_range(0..=max);
            (0..n)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
                .collect()
        };
        let rows: Vec<Option<String>> = (0..4000)
            .map(|_| (!rng.random_bool(0.05)).then(|| word(&mut rng, 16)))
            .collect();
        let array: ArrayRef = Arc::new(StringViewArray::from(rows.clone()));
        let schema = Schema::new(vec![Field::new("t", DataType::Utf8View, true)]);
        let batch = RecordBatch::try_new(Arc::new(schema.clone()), vec![array.clone()]).unwrap();
        for len in 0..=INLINE {
            let constant = "ab".repeat(7)[..len].to_string();
            let scalar = Scalar::new(StringViewArray::from_iter_values([constant.clone()]));
            for op in [Operator::Eq, Operator::NotEq] {
                let expected = match op {
                    Operator::Eq => cmp::eq(&array, &scalar).unwrap(),
                    _ => cmp::neq(&array, &scalar).unwrap(),
                };
                let literal: Arc<dyn PhysicalExpr> =
                    Arc::new(Literal::new(ScalarValue::Utf8View(Some(constant.clone()))));
                for swapped in [false, true] {
                    let (l, r) = if swapped {
                        (literal.clone(), col("t", &schema).unwrap())
                    } else {
                        (col("t", &schema).unwrap(), literal.clone())
                    };
                    let plain: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(l, op, r));
                    let fast = with_short_text_eq(&plain, &schema).unwrap();
                    assert!(fast.downcast_ref::<ShortTextEq>().is_some());
                    assert_eq!(fast.to_string(), plain.to_string());
                    let got = fast.evaluate(&batch).unwrap().into_array(4000).unwrap();
                    assert_eq!(got.as_boolean(), &expected, "{constant:?} {op}");
                }
            }
        }
        // A 13-byte constant and a comparison of text that is not a view stay as they are.
        let long: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            col("t", &schema).unwrap(),
            Operator::Eq,
            Arc::new(Literal::new(ScalarValue::Utf8View(Some("a".repeat(13))))),
        ));
        assert!(Arc::ptr_eq(
            &with_short_text_eq(&long, &schema).unwrap(),
            &long
        ));
        let plain_schema = Schema::new(vec![Field::new("t", DataType::Utf8, true)]);
        let plain_text: Arc<dyn PhysicalExpr> = Arc::new(BinaryExpr::new(
            Arc::new(Literal::new(ScalarValue::Utf8(Some("ab".into())))),
            Operator::NotEq,
            col("t", &plain_schema).unwrap(),
        ));
        assert!(Arc::ptr_eq(
            &with_short_text_eq(&plain_text, &plain_schema).unwrap(),
            &plain_text
        ));
        // Built over text that is not a view anyway (a later rewrite may do so), it is
        // Arrow's comparison.
        let utf8: ArrayRef = Arc::new(StringArray::from(rows));
        let plain_batch =
            RecordBatch::try_new(Arc::new(plain_schema.clone()), vec![utf8.clone()]).unwrap();
        let fallback = ShortTextEq::try_new(
            Arc::new(Literal::new(ScalarValue::Utf8(Some("ab".into())))),
            Operator::NotEq,
            col("t", &plain_schema).unwrap(),
        )
        .expect("a short constant");
        let got = fallback
            .evaluate(&plain_batch)
            .unwrap()
            .into_array(4000)
            .unwrap();
        let expected = cmp::neq(&Scalar::new(StringArray::from(vec!["ab"])), &utf8).unwrap();
        assert_eq!(got.as_boolean(), &expected);
    }
}
