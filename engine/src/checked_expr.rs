//! A physical expression that is another one with a check around its evaluation.
//!
//! Physical rules put such checks into plans where DataFusion has no hook of its own: an
//! interrupt check in a join condition ([`crate::interrupt`]), a size check on a constant
//! copied down a column or
//! into every row's result ([`crate::broadcast_limit`]). The wrapper is otherwise its inner
//! expression: same type, nullability, display and identity.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, FieldRef, Schema};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::PhysicalExpr;

/// Evaluates a batch: gets the batch and the inner expression's evaluation, to call (or not)
/// and check around — on the batch or on slices of it.
pub type Check = Arc<
    dyn Fn(&RecordBatch, &dyn Fn(&RecordBatch) -> Result<ColumnarValue>) -> Result<ColumnarValue>
        + Send
        + Sync,
>;

/// `inner`, evaluated through `check`.
pub struct CheckedExpr {
    inner: Arc<dyn PhysicalExpr>,
    check: Check,
}

impl CheckedExpr {
    pub fn new(inner: Arc<dyn PhysicalExpr>, check: Check) -> Self {
        Self { inner, check }
    }
}

impl fmt::Debug for CheckedExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckedExpr")
            .field("inner", &self.inner)
            .finish()
    }
}

impl PartialEq for CheckedExpr {
    fn eq(&self, other: &Self) -> bool {
        self.inner.as_ref() == other.inner.as_ref()
    }
}

impl Eq for CheckedExpr {}

impl Hash for CheckedExpr {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.as_ref().hash(state);
    }
}

impl fmt::Display for CheckedExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.inner)
    }
}

impl PhysicalExpr for CheckedExpr {
    fn data_type(&self, input_schema: &Schema) -> Result<DataType> {
        self.inner.data_type(input_schema)
    }

    fn nullable(&self, input_schema: &Schema) -> Result<bool> {
        self.inner.nullable(input_schema)
    }

    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        self.inner.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        (self.check)(batch, &|b| self.inner.evaluate(b))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let inner = children.into_iter().next().ok_or_else(|| {
            DataFusionError::Internal("a checked expression has one child".into())
        })?;
        Ok(Arc::new(Self {
            inner,
            check: self.check.clone(),
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_sql(f)
    }
}
