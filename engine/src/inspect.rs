//! An operator that passes its input's results on after a look at each: the one piece
//! behind counting an UPDATE's changed rows (`dml`), stopping an interrupted statement
//! (`interrupt`) and naming the table whose file could not be read (`table`).
//!
//! It changes no row, so it is transparent to the optimizer: statistics, limits,
//! projections and filters pass through it to its input, and wrapping a scan costs no
//! pruning.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::Statistics;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::config::ConfigOptions;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::execution_plan::CardinalityEffect;
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties};
use futures::StreamExt;

/// What [`InspectExec`] does with each of its input's results: pass a batch on, end the
/// stream with an error of its own, or replace the input's error with a clearer one.
pub type Inspect = Arc<dyn Fn(Result<RecordBatch>) -> Result<RecordBatch> + Send + Sync>;

/// Makes a stream's inspection from its task context.
pub type MakeInspect = Arc<dyn Fn(&Arc<TaskContext>) -> Inspect + Send + Sync>;

/// Passes its input's results on through `inspect`.
pub struct InspectExec {
    /// Shown in plans, and how rules recognise the operator.
    name: &'static str,
    input: Arc<dyn ExecutionPlan>,
    inspect: Source,
}

/// Where each stream's inspection comes from.
#[derive(Clone)]
enum Source {
    /// One inspection for every stream.
    Shared(Inspect),
    /// A fresh inspection per stream, made with the stream's task context (one that keeps
    /// state, such as a memory reservation, for the stream's life).
    PerStream(MakeInspect),
}

impl InspectExec {
    pub fn new(name: &'static str, input: Arc<dyn ExecutionPlan>, inspect: Inspect) -> Self {
        Self {
            name,
            input,
            inspect: Source::Shared(inspect),
        }
    }

    /// Inspects each stream with a fresh inspection made from its task context.
    pub fn per_stream(
        name: &'static str,
        input: Arc<dyn ExecutionPlan>,
        make: MakeInspect,
    ) -> Self {
        Self {
            name,
            input,
            inspect: Source::PerStream(make),
        }
    }

    fn over(&self, input: Arc<dyn ExecutionPlan>) -> Arc<dyn ExecutionPlan> {
        Arc::new(Self {
            name: self.name,
            input,
            inspect: self.inspect.clone(),
        })
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

    /// Repartitioning belongs above: below, it would only split what passes through.
    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
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
        Ok(self.over(input))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let inspect = match &self.inspect {
            Source::Shared(inspect) => inspect.clone(),
            Source::PerStream(make) => make(&context),
        };
        let stream = match self.input.execute(partition, context) {
            Ok(stream) => stream,
            Err(e) => return Err(inspect(Err(e)).err().unwrap_or_else(already_failed)),
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.input.schema(),
            stream.map(move |b| inspect(b)),
        )))
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(input_stats
            .first()
            .cloned()
            .unwrap_or_else(|| Arc::new(Statistics::new_unknown(&self.schema()))))
    }

    #[allow(deprecated)]
    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        self.input.partition_statistics(partition)
    }

    fn supports_limit_pushdown(&self) -> bool {
        true
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::Equal
    }

    fn try_swapping_with_projection(
        &self,
        projection: &ProjectionExec,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        Ok(self
            .input
            .try_swapping_with_projection(projection)?
            .map(|input| self.over(input)))
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        FilterDescription::from_children(parent_filters, &self.children())
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(FilterPushdownPropagation::if_all(child_pushdown_result))
    }
}

/// An inspection that turned an error into a batch: it may only replace errors.
fn already_failed() -> DataFusionError {
    DataFusionError::Internal("an inspection replaced an error with a batch".into())
}
