//! An operator that passes its input's batches on unchanged after a look at each: the one
//! piece behind counting an UPDATE's changed rows (`dml`) and stopping an interrupted
//! statement (`interrupt`).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

/// What [`InspectExec`] does with each batch; an error ends the stream with it.
pub type Inspect = Arc<dyn Fn(&RecordBatch) -> Result<()> + Send + Sync>;

/// Passes its input's batches on, calling `inspect` on each first.
pub struct InspectExec {
    /// Shown in plans, and how rules recognise the operator.
    name: &'static str,
    input: Arc<dyn ExecutionPlan>,
    inspect: Inspect,
}

impl InspectExec {
    pub fn new(name: &'static str, input: Arc<dyn ExecutionPlan>, inspect: Inspect) -> Self {
        Self {
            name,
            input,
            inspect,
        }
    }
}

impl fmt::Debug for InspectExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InspectExec")
            .field("name", &self.name)
            .field("input", &self.input)
            .finish_non_exhaustive()
    }
}

impl DisplayAs for InspectExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)
    }
}

impl ExecutionPlan for InspectExec {
    fn name(&self) -> &'static str {
        self.name
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children
            .into_iter()
            .next()
            .ok_or_else(|| DataFusionError::Internal(format!("{} has one child", self.name)))?;
        Ok(Arc::new(Self::new(self.name, input, self.inspect.clone())))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let inspect = self.inspect.clone();
        let stream = self
            .input
            .execute(partition, context)?
            .map(move |b| b.and_then(|b| inspect(&b).map(|()| b)));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.input.schema(),
            stream,
        )))
    }
}
