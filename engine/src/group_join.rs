//! Aggregating a join's matches where they are found: a group join.
//!
//! "Events before each exposure" — `exposures x LEFT JOIN events e ON e.user_id =
//! x.user_id AND e.ts < x.shown_ts GROUP BY x.exposure_id` — is how the behaviour behind a
//! decision is counted. As a hash join under a partial aggregate it emits every matching
//! pair (240M on the medium world), copying two columns out of the join for each, and the
//! aggregate then hashes each pair's `exposure_id` again to find its group: together 40 %
//! of the query's CPU. Yet each pair's group is already known when the pair is found: it is
//! its build row's.
//!
//! [`GroupJoinExec`] probes the join's build side as `HashJoinExec` does, but interns the
//! group keys once per build row and feeds each matching pair straight into the
//! accumulators of its build row's group; it then emits what the partial aggregate would
//! have (group values, accumulator states), which the final aggregate above merges as
//! before. A left join's build rows without a match are fed as the join would have emitted
//! them: once, with the probe side's columns NULL.
//!
//! [`GroupJoinRule`] puts it in place of a partial `AggregateExec` directly over a
//! partitioned inner or left `HashJoinExec` (no row limit, NULL keys equal nothing) when
//! every group key is a build-side column, no aggregate is DISTINCT or ordered, and the
//! join keys are of a type whose equality is its values' (integers, dates, timestamps,
//! text, booleans, decimals; not floats, where `0.0 = -0.0`).

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, UInt32Array, new_null_array,
};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::compute::{
    cast, concat_batches, filter, prep_null_mask_filter, take, take_record_batch,
};
use datafusion::arrow::datatypes::{DataType, Int64Type, Schema, SchemaRef, UInt32Type};
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{HashMap, JoinSide, JoinType, NullEquality};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Operator;
use datafusion::logical_expr::{EmitTo, GroupsAccumulator};
use datafusion::physical_expr::aggregate::AggregateFunctionExpr;
use datafusion::physical_expr::expressions::{BinaryExpr, Column};
use datafusion::physical_expr::{
    Distribution, EquivalenceProperties, GroupsAccumulatorAdapter, Partitioning, PhysicalExpr,
};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::group_values::{GroupValues, new_group_values};
use datafusion::physical_plan::aggregates::order::GroupOrdering;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::joins::{HashJoinExec, PartitionMode};
use datafusion::physical_plan::metrics::{
    BaselineMetrics, Count, ExecutionPlanMetricsSet, MetricBuilder, MetricsSet,
};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
    displayable,
};
use futures::{StreamExt, TryStreamExt};

use crate::interrupt::Interrupt;
use crate::key_index::integer_valued;

/// Not set: no slot (a build row whose key is NULL), or no group number yet.
const NONE: u32 = u32::MAX;

/// Candidate pairs handled at once: bounds the memory of a probe batch whose rows each
/// match many build rows.
#[cfg(not(test))]
const PAIRS_PER_CHUNK: usize = 1 << 16;
/// Small in tests, so that their probe batches are walked in several chunks.
#[cfg(test)]
const PAIRS_PER_CHUNK: usize = 1_000;

/// A partial aggregate of a hash join's output, computed while probing (module docs).
pub struct GroupJoinExec {
    build: Arc<dyn ExecutionPlan>,
    probe: Arc<dyn ExecutionPlan>,
    plan: Arc<Plan>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl fmt::Debug for GroupJoinExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupJoinExec")
            .field("shown", &self.plan.shown)
            .finish_non_exhaustive()
    }
}

impl DisplayAs for GroupJoinExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GroupJoinExec: {}", self.plan.shown)
    }
}

impl ExecutionPlan for GroupJoinExec {
    fn name(&self) -> &'static str {
        "GroupJoinExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![
            Distribution::KeyPartitioned(self.plan.build_keys.clone()),
            Distribution::KeyPartitioned(self.plan.probe_keys.clone()),
        ]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.build, &self.probe]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        let plan = &self.plan;
        let mut expressions: Vec<&Arc<dyn PhysicalExpr>> =
            plan.build_keys.iter().chain(&plan.probe_keys).collect();
        expressions.extend(plan.filter.as_ref().map(JoinFilter::expression));
        expressions.extend(plan.arguments.iter().flatten());
        expressions.extend(plan.aggregate_filters.iter().flatten());
        for e in expressions {
            if f(e)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [build, probe]: [Arc<dyn ExecutionPlan>; 2] = children
            .try_into()
            .map_err(|_| DataFusionError::Internal("GroupJoinExec has two children".into()))?;
        Ok(Arc::new(Self {
            properties: properties(self.schema(), &probe),
            build,
            probe,
            plan: Arc::clone(&self.plan),
            metrics: ExecutionPlanMetricsSet::new(),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let build = self.build.execute(partition, context.clone())?;
        let probe = self.probe.execute(partition, context.clone())?;
        let reservation = MemoryConsumer::new(format!("GroupJoinExec[{partition}]"))
            .register(context.memory_pool());
        let counters = Counters::new(&self.metrics, partition);
        let baseline = BaselineMetrics::new(&self.metrics, partition);
        let batch_size = context.session_config().batch_size().max(1);
        let plan = Arc::clone(&self.plan);
        let work = async move {
            let out = plan
                .run(build, probe, reservation, &counters, &baseline, batch_size)
                .await?;
            baseline.record_output(out.iter().map(RecordBatch::num_rows).sum());
            baseline.done();
            Ok::<_, DataFusionError>(out)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            futures::stream::once(work)
                .map_ok(|batches| futures::stream::iter(batches.into_iter().map(Ok)))
                .try_flatten(),
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

fn properties(schema: SchemaRef, probe: &Arc<dyn ExecutionPlan>) -> Arc<PlanProperties> {
    Arc::new(PlanProperties::new(
        EquivalenceProperties::new(schema),
        Partitioning::UnknownPartitioning(probe.output_partitioning().partition_count()),
        EmissionType::Final,
        Boundedness::Bounded,
    ))
}

/// What EXPLAIN ANALYZE shows of the work beyond rows out and time.
struct Counters {
    build_rows: Count,
    probe_rows: Count,
    pairs: Count,
    matched_pairs: Count,
}

impl Counters {
    fn new(metrics: &ExecutionPlanMetricsSet, partition: usize) -> Self {
        let counter = |name: &'static str| MetricBuilder::new(metrics).counter(name, partition);
        Self {
            build_rows: counter("build_rows"),
            probe_rows: counter("probe_rows"),
            pairs: counter("candidate_pairs"),
            matched_pairs: counter("matched_pairs"),
        }
    }
}

/// What each partition's stream does: the join's keys and condition, and the aggregate's
/// groups and accumulators (their arguments over the join's columns they read).
struct Plan {
    build_keys: Vec<Arc<dyn PhysicalExpr>>,
    probe_keys: Vec<Arc<dyn PhysicalExpr>>,
    /// The join's condition beyond its keys, over its own intermediate columns.
    filter: Option<JoinFilter>,
    comparison: Option<Comparison>,
    /// A left join: build rows without a match still make (or join) a group.
    keep_unmatched: bool,
    /// The build-side columns that are the group keys, in the aggregate's order.
    group_columns: Vec<usize>,
    aggregates: Vec<Arc<AggregateFunctionExpr>>,
    /// Each aggregate's arguments and FILTER, over the columns of [`Self::pair_columns`].
    arguments: Vec<Vec<Arc<dyn PhysicalExpr>>>,
    aggregate_filters: Vec<Option<Arc<dyn PhysicalExpr>>>,
    /// The join's columns the aggregates read, by side, and their schema.
    pair_columns: Vec<(JoinSide, usize)>,
    pair_schema: SchemaRef,
    /// The partial aggregate's output.
    schema: SchemaRef,
    /// The replaced plan's text, shown by EXPLAIN.
    shown: String,
    interrupt: Option<Interrupt>,
}

/// The aggregation's state: a group per distinct key of the build rows.
struct Groups {
    /// The group of each build row.
    of_build_row: Vec<usize>,
    values: Box<dyn GroupValues>,
    accumulators: Vec<Box<dyn GroupsAccumulator>>,
    /// Each group's number in the accumulators (NONE until first fed). They are numbered
    /// as they are met, as a hash aggregate numbers them: DataFusion's accumulators take
    /// every number below the highest given as a group that has had a row.
    number: Vec<u32>,
    /// The groups in the order of their numbers (an inner join emits only these).
    numbered: Vec<u32>,
}

impl Plan {
    async fn run(
        &self,
        build: SendableRecordBatchStream,
        mut probe: SendableRecordBatchStream,
        reservation: MemoryReservation,
        counters: &Counters,
        baseline: &BaselineMetrics,
        batch_size: usize,
    ) -> Result<Vec<RecordBatch>> {
        let build_schema = build.schema();
        let batches: Vec<RecordBatch> = build.try_collect().await?;
        let timer = baseline.elapsed_compute().timer();
        let build = concat_batches(&build_schema, &batches)?;
        drop(batches);
        counters.build_rows.add(build.num_rows());
        reservation.try_grow(build.get_array_memory_size())?;
        let keys = evaluate(&self.build_keys, &build)?;
        let (index, order) = BuildIndex::new(&keys)?;
        // The rows of one key side by side: a probe row's candidates are one range.
        let build = take_record_batch(&build, &order)?;
        drop(order);
        let compared = match &self.comparison {
            Some(c) => c.build_values(&build)?,
            None => None,
        };
        let mut groups = self.groups(&build)?;
        reservation.try_grow(index.size() + groups.values.size())?;
        timer.done();
        if build.num_rows() == 0 {
            return Ok(vec![]);
        }

        let mut matched = vec![
            false;
            if self.keep_unmatched {
                build.num_rows()
            } else {
                0
            }
        ];
        let (mut build_rows, mut probe_rows) = (Vec::new(), Vec::new());
        while let Some(batch) = probe.next().await {
            let batch = batch?;
            if let Some(interrupt) = &self.interrupt {
                interrupt.check()?;
            }
            let _timer = baseline.elapsed_compute().timer();
            counters.probe_rows.add(batch.num_rows());
            let ranges = index.ranges(&evaluate(&self.probe_keys, &batch)?)?;
            // The condition tested while walking when it is one comparison of integers
            // without NULLs; otherwise evaluated over each chunk of candidate pairs.
            let inline = match (&self.comparison, &compared) {
                (Some(c), Some(build_values)) => c
                    .probe_values(&batch)?
                    .map(|probe_values| (c.op, build_values, probe_values)),
                _ => None,
            };
            let mut walk = Walk::new(&ranges);
            loop {
                build_rows.clear();
                probe_rows.clear();
                let more = match &inline {
                    Some((op, bv, pv)) => {
                        walk.fill_compared(*op, bv, pv, &mut build_rows, &mut probe_rows)
                    }
                    None => walk.fill(&mut build_rows, &mut probe_rows, |_, _| true),
                };
                if !build_rows.is_empty() {
                    let (b, p) = if inline.is_some() {
                        (
                            UInt32Array::from(std::mem::take(&mut build_rows)),
                            UInt32Array::from(std::mem::take(&mut probe_rows)),
                        )
                    } else {
                        self.keep_matching(&build, &batch, &build_rows, &probe_rows)?
                    };
                    counters.matched_pairs.add(b.len());
                    if self.keep_unmatched {
                        for &row in b.values() {
                            matched[row as usize] = true;
                        }
                    }
                    self.feed(&mut groups, &build, Some((&batch, &p)), &b)?;
                }
                if !more {
                    break;
                }
            }
            counters.pairs.add(walk.candidates);
        }

        let _timer = baseline.elapsed_compute().timer();
        if self.keep_unmatched {
            let unmatched: UInt32Array = (0..build.num_rows() as u32)
                .filter(|&row| !matched[row as usize])
                .collect();
            for start in (0..unmatched.len()).step_by(PAIRS_PER_CHUNK) {
                let len = PAIRS_PER_CHUNK.min(unmatched.len() - start);
                self.feed(&mut groups, &build, None, &unmatched.slice(start, len))?;
            }
        }
        let accumulated: usize = groups.accumulators.iter().map(|a| a.size()).sum();
        reservation.try_grow(accumulated)?;
        self.emit(groups, batch_size)
    }

    /// Interns the group keys of every build row.
    fn groups(&self, build: &RecordBatch) -> Result<Groups> {
        let columns: Vec<ArrayRef> = self
            .group_columns
            .iter()
            .map(|&i| build.column(i).clone())
            .collect();
        let fields: Vec<_> = (0..self.group_columns.len())
            .map(|i| self.schema.field(i).clone())
            .collect();
        let mut values = new_group_values(Arc::new(Schema::new(fields)), &GroupOrdering::None)?;
        let mut of_build_row = Vec::with_capacity(build.num_rows());
        values.intern(&columns, &mut of_build_row)?;
        let accumulators = self
            .aggregates
            .iter()
            .map(groups_accumulator)
            .collect::<Result<_>>()?;
        Ok(Groups {
            number: vec![NONE; values.len()],
            numbered: Vec::new(),
            of_build_row,
            values,
            accumulators,
        })
    }

    /// The pairs that satisfy the join's condition beyond its keys.
    fn keep_matching(
        &self,
        build: &RecordBatch,
        probe: &RecordBatch,
        build_rows: &[u32],
        probe_rows: &[u32],
    ) -> Result<(UInt32Array, UInt32Array)> {
        let b = UInt32Array::from(build_rows.to_vec());
        let p = UInt32Array::from(probe_rows.to_vec());
        let Some(join_filter) = &self.filter else {
            return Ok((b, p));
        };
        let columns = join_filter
            .column_indices()
            .iter()
            .map(|c| match c.side {
                JoinSide::Left => Ok(take(build.column(c.index), &b, None)?),
                JoinSide::Right => Ok(take(probe.column(c.index), &p, None)?),
                JoinSide::None => Err(DataFusionError::Internal(
                    "a join filter column of neither side".into(),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        let intermediate = RecordBatch::try_new(join_filter.schema().clone(), columns)?;
        let keep = join_filter
            .expression()
            .evaluate(&intermediate)?
            .into_array(intermediate.num_rows())?;
        // NULL is not true: a pair whose condition is unknown does not match.
        let keep = match keep.as_boolean() {
            k if k.null_count() > 0 => prep_null_mask_filter(k),
            k => k.clone(),
        };
        Ok((
            filter(&b, &keep)?.as_primitive::<UInt32Type>().clone(),
            filter(&p, &keep)?.as_primitive::<UInt32Type>().clone(),
        ))
    }

    /// Feeds pairs (or, with no probe side, unmatched build rows against NULLs) to the
    /// accumulators of their build rows' groups.
    fn feed(
        &self,
        groups: &mut Groups,
        build: &RecordBatch,
        probe: Option<(&RecordBatch, &UInt32Array)>,
        build_rows: &UInt32Array,
    ) -> Result<()> {
        if build_rows.is_empty() {
            return Ok(());
        }
        let columns = self
            .pair_columns
            .iter()
            .zip(self.pair_schema.fields())
            .map(|(&(side, index), field)| match (side, probe) {
                (JoinSide::Left, _) => Ok(take(build.column(index), build_rows, None)?),
                (_, Some((batch, rows))) => Ok(take(batch.column(index), rows, None)?),
                (_, None) => Ok(new_null_array(field.data_type(), build_rows.len())),
            })
            .collect::<Result<Vec<_>>>()?;
        let pairs = RecordBatch::try_new_with_options(
            self.pair_schema.clone(),
            columns,
            &datafusion::arrow::array::RecordBatchOptions::new()
                .with_row_count(Some(build_rows.len())),
        )?;
        let mut group_indices = Vec::with_capacity(build_rows.len());
        for &row in build_rows.values() {
            let group = groups.of_build_row[row as usize];
            let number = &mut groups.number[group];
            if *number == NONE {
                *number = groups.numbered.len() as u32;
                groups.numbered.push(group as u32);
            }
            group_indices.push(*number as usize);
        }
        let total = groups.numbered.len();
        for ((accumulator, arguments), aggregate_filter) in groups
            .accumulators
            .iter_mut()
            .zip(&self.arguments)
            .zip(&self.aggregate_filters)
        {
            let values = evaluate(arguments, &pairs)?;
            let keep = aggregate_filter
                .as_ref()
                .map(|f| f.evaluate(&pairs)?.into_array(pairs.num_rows()))
                .transpose()?;
            let keep = keep.as_ref().map(|k| k.as_boolean());
            accumulator.update_batch(&values, &group_indices, keep, total)?;
        }
        Ok(())
    }

    /// The partial aggregate's output: group values, then each accumulator's state.
    fn emit(&self, mut groups: Groups, batch_size: usize) -> Result<Vec<RecordBatch>> {
        if groups.numbered.is_empty() {
            return Ok(vec![]);
        }
        let numbered = UInt32Array::from(std::mem::take(&mut groups.numbered));
        let mut columns = groups
            .values
            .emit(EmitTo::All)?
            .iter()
            .map(|values| take(values, &numbered, None))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        for accumulator in &mut groups.accumulators {
            columns.extend(accumulator.state(EmitTo::All)?);
        }
        let out = RecordBatch::try_new(self.schema.clone(), columns)?;
        Ok((0..out.num_rows())
            .step_by(batch_size)
            .map(|start| out.slice(start, batch_size.min(out.num_rows() - start)))
            .collect())
    }
}

fn evaluate(expressions: &[Arc<dyn PhysicalExpr>], batch: &RecordBatch) -> Result<Vec<ArrayRef>> {
    expressions
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect()
}

/// The accumulator the partial aggregate would have used.
fn groups_accumulator(
    aggregate: &Arc<AggregateFunctionExpr>,
) -> Result<Box<dyn GroupsAccumulator>> {
    if aggregate.groups_accumulator_supported() {
        aggregate.create_groups_accumulator()
    } else {
        let aggregate = Arc::clone(aggregate);
        Ok(Box::new(GroupsAccumulatorAdapter::new(move || {
            aggregate.create_accumulator()
        })))
    }
}

/// Walks the ranges of build rows matching each probe row, a bounded number of pairs at a
/// time.
struct Walk<'a> {
    /// (probe row, first build row, end) per probe row with candidates.
    ranges: &'a [(u32, u32, u32)],
    at: usize,
    /// Where the walk stopped inside `ranges[at]`, if it did.
    resume: Option<u32>,
    candidates: usize,
}

impl<'a> Walk<'a> {
    fn new(ranges: &'a [(u32, u32, u32)]) -> Self {
        Self {
            ranges,
            at: 0,
            resume: None,
            candidates: 0,
        }
    }

    /// Adds the pairs `keep` accepts until a chunk's worth of candidates; false once every
    /// range is walked.
    fn fill(
        &mut self,
        build_rows: &mut Vec<u32>,
        probe_rows: &mut Vec<u32>,
        keep: impl Fn(usize, usize) -> bool,
    ) -> bool {
        let mut room = PAIRS_PER_CHUNK;
        while room > 0 {
            let Some(&(probe_row, start, end)) = self.ranges.get(self.at) else {
                return false;
            };
            let from = self.resume.take().unwrap_or(start);
            let to = end.min(from.saturating_add(room as u32));
            for build_row in from..to {
                if keep(build_row as usize, probe_row as usize) {
                    build_rows.push(build_row);
                    probe_rows.push(probe_row);
                }
            }
            let walked = (to - from) as usize;
            self.candidates += walked;
            room -= walked;
            if to == end {
                self.at += 1;
            } else {
                self.resume = Some(to);
            }
        }
        self.at < self.ranges.len()
    }

    /// [`Self::fill`] keeping the pairs where `build op probe` holds.
    fn fill_compared(
        &mut self,
        op: Operator,
        b: &[i64],
        p: &[i64],
        build_rows: &mut Vec<u32>,
        probe_rows: &mut Vec<u32>,
    ) -> bool {
        match op {
            Operator::Lt => self.fill(build_rows, probe_rows, |x, y| b[x] < p[y]),
            Operator::LtEq => self.fill(build_rows, probe_rows, |x, y| b[x] <= p[y]),
            Operator::Gt => self.fill(build_rows, probe_rows, |x, y| b[x] > p[y]),
            Operator::GtEq => self.fill(build_rows, probe_rows, |x, y| b[x] >= p[y]),
            Operator::Eq => self.fill(build_rows, probe_rows, |x, y| b[x] == p[y]),
            _ => self.fill(build_rows, probe_rows, |x, y| b[x] != p[y]),
        }
    }
}

/// A join condition that is one comparison between an integer-valued column of each side
/// (`e.ts < x.shown_ts`), tested as the candidates are walked instead of through Arrow
/// arrays of every candidate pair.
#[derive(Debug, Clone)]
struct Comparison {
    /// The operator with the build side's column on its left.
    op: Operator,
    build_column: usize,
    probe_column: usize,
}

impl Comparison {
    /// The comparison `filter` is, if it is one.
    fn of(filter: &JoinFilter, build: &Schema, probe: &Schema) -> Option<Self> {
        let binary = filter.expression().downcast_ref::<BinaryExpr>()?;
        let op = *binary.op();
        if !matches!(
            op,
            Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
                | Operator::Eq
                | Operator::NotEq
        ) {
            return None;
        }
        let side = |e: &Arc<dyn PhysicalExpr>| {
            let c = e.downcast_ref::<Column>()?;
            filter
                .column_indices()
                .get(c.index())
                .map(|i| (i.side, i.index))
        };
        let (left, right) = (side(binary.left())?, side(binary.right())?);
        let (op, (build_column, probe_column)) = match (left, right) {
            ((JoinSide::Left, b), (JoinSide::Right, p)) => (op, (b, p)),
            ((JoinSide::Right, p), (JoinSide::Left, b)) => (op.swap()?, (b, p)),
            _ => return None,
        };
        let (bt, pt) = (
            build.field(build_column).data_type(),
            probe.field(probe_column).data_type(),
        );
        (bt == pt && integer_valued(bt)).then_some(Self {
            op,
            build_column,
            probe_column,
        })
    }

    /// The build side's values, or `None` where one is NULL.
    fn build_values(&self, build: &RecordBatch) -> Result<Option<ScalarBuffer<i64>>> {
        integer_values(build.column(self.build_column))
    }

    fn probe_values(&self, probe: &RecordBatch) -> Result<Option<ScalarBuffer<i64>>> {
        integer_values(probe.column(self.probe_column))
    }
}

/// An integer-valued column as i64, or `None` if it holds a NULL.
fn integer_values(column: &ArrayRef) -> Result<Option<ScalarBuffer<i64>>> {
    if column.null_count() > 0 {
        return Ok(None);
    }
    let values = cast(column, &DataType::Int64)?;
    Ok(Some(values.as_primitive::<Int64Type>().values().clone()))
}

/// The build rows by join key, reordered so that each key's rows are contiguous: a key's
/// slot, and each slot's first row (the next slot's first row ends it).
struct BuildIndex {
    slots: Slots,
    starts: Vec<u32>,
}

enum Slots {
    /// One integer key over a range not much wider than the rows: a slot per value.
    Dense { min: i64, width: usize },
    /// One integer key over a wide range.
    Sparse(HashMap<i64, u32>),
    /// Any other keys, compared in Arrow's row format.
    Rows {
        converter: RowConverter,
        map: HashMap<Box<[u8]>, u32>,
    },
}

impl BuildIndex {
    /// The index and the order to put the build rows in: by slot, rows with a NULL key
    /// last (they match nothing).
    fn new(keys: &[ArrayRef]) -> Result<(Self, UInt32Array)> {
        let rows = keys.first().map_or(0, |k| k.len());
        if rows >= NONE as usize {
            return Err(DataFusionError::ResourcesExhausted(format!(
                "a group join's build side of {rows} rows"
            )));
        }
        let valid = all_valid(keys);
        // The slot of each row (NONE for a NULL key).
        let mut slot_of = vec![NONE; rows];
        let (slots, count) = if let Some(values) = integer_key(keys)? {
            let values = values.as_primitive::<Int64Type>().values();
            let min = present(&valid, rows).map(|r| values[r]).min().unwrap_or(0);
            let max = present(&valid, rows).map(|r| values[r]).max().unwrap_or(0);
            let width = (max as i128 - min as i128) as u128 + 1;
            if width <= (2 * rows + 1024) as u128 {
                for r in present(&valid, rows) {
                    slot_of[r] = (values[r] - min) as u32;
                }
                let width = width as usize;
                (Slots::Dense { min, width }, width)
            } else {
                let mut map = HashMap::with_capacity(rows);
                for r in present(&valid, rows) {
                    let next = map.len() as u32;
                    slot_of[r] = *map.entry(values[r]).or_insert(next);
                }
                let count = map.len();
                (Slots::Sparse(map), count)
            }
        } else {
            let fields = keys
                .iter()
                .map(|k| SortField::new(k.data_type().clone()))
                .collect();
            let converter = RowConverter::new(fields)?;
            let converted = converter.convert_columns(keys)?;
            let mut map: HashMap<Box<[u8]>, u32> = HashMap::with_capacity(rows);
            for r in present(&valid, rows) {
                let next = map.len() as u32;
                slot_of[r] = *map.entry(converted.row(r).as_ref().into()).or_insert(next);
            }
            let count = map.len();
            (Slots::Rows { converter, map }, count)
        };
        // A counting sort of the rows by slot.
        let mut starts = vec![0u32; count + 1];
        for &s in slot_of.iter().filter(|&&s| s != NONE) {
            starts[s as usize + 1] += 1;
        }
        for i in 1..starts.len() {
            starts[i] += starts[i - 1];
        }
        let mut at = starts.clone();
        let mut order = vec![0u32; rows];
        let mut last = rows;
        for (r, &s) in slot_of.iter().enumerate().rev() {
            if s == NONE {
                last -= 1;
                order[last] = r as u32;
            }
        }
        for (r, &s) in slot_of.iter().enumerate() {
            if s != NONE {
                order[at[s as usize] as usize] = r as u32;
                at[s as usize] += 1;
            }
        }
        Ok((Self { slots, starts }, UInt32Array::from(order)))
    }

    fn size(&self) -> usize {
        let slots = match &self.slots {
            Slots::Dense { .. } => 0,
            Slots::Sparse(map) => map.capacity() * 16,
            Slots::Rows { map, .. } => map.capacity() * 24,
        };
        slots + self.starts.capacity() * 4
    }

    /// (probe row, first candidate, end) for each probe row whose key is present.
    fn ranges(&self, keys: &[ArrayRef]) -> Result<Vec<(u32, u32, u32)>> {
        let rows = keys.first().map_or(0, |k| k.len());
        let valid = all_valid(keys);
        let present = present(&valid, rows);
        let mut ranges = Vec::with_capacity(rows);
        let mut push = |r: usize, slot: Option<usize>| {
            if let Some(s) = slot {
                let (start, end) = (self.starts[s], self.starts[s + 1]);
                if start < end {
                    ranges.push((r as u32, start, end));
                }
            }
        };
        match &self.slots {
            Slots::Dense { min, width } => {
                let values = integer_key(keys)?.ok_or_else(key_type_changed)?;
                let values = values.as_primitive::<Int64Type>().values();
                for r in present {
                    let slot = values[r]
                        .checked_sub(*min)
                        .and_then(|s| usize::try_from(s).ok());
                    push(r, slot.filter(|s| s < width));
                }
            }
            Slots::Sparse(map) => {
                let values = integer_key(keys)?.ok_or_else(key_type_changed)?;
                let values = values.as_primitive::<Int64Type>().values();
                for r in present {
                    push(r, map.get(&values[r]).map(|&s| s as usize));
                }
            }
            Slots::Rows { converter, map } => {
                let converted = converter.convert_columns(keys)?;
                for r in present {
                    push(r, map.get(converted.row(r).as_ref()).map(|&s| s as usize));
                }
            }
        }
        Ok(ranges)
    }
}

fn key_type_changed() -> DataFusionError {
    DataFusionError::Internal("a group join's probe keys differ in type from its build keys".into())
}

/// Whether each row has every key (a NULL key matches nothing); `None` when all do.
fn all_valid(keys: &[ArrayRef]) -> Option<NullBuffer> {
    keys.iter().fold(None, |valid, k| {
        NullBuffer::union(valid.as_ref(), k.logical_nulls().as_ref())
    })
}

/// The rows that have every key.
fn present(valid: &Option<NullBuffer>, rows: usize) -> impl Iterator<Item = usize> + '_ {
    (0..rows).filter(move |&r| valid.as_ref().is_none_or(|v| v.is_valid(r)))
}

/// A single integer-valued key as Int64, or `None` for keys compared as rows.
fn integer_key(keys: &[ArrayRef]) -> Result<Option<ArrayRef>> {
    match keys {
        [key] if integer_valued(key.data_type()) => Ok(Some(cast(key, &DataType::Int64)?)),
        _ => Ok(None),
    }
}

/// Key types whose SQL equality is the equality of their values (and of their row format).
fn is_exact_key(t: &DataType) -> bool {
    integer_valued(t)
        || matches!(
            t,
            DataType::UInt64
                | DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Binary
                | DataType::LargeBinary
                | DataType::BinaryView
                | DataType::Boolean
                | DataType::Decimal128(_, _)
                | DataType::Decimal256(_, _)
        )
}

/// Puts [`GroupJoinExec`] in place of partial aggregates over hash joins (module docs).
#[derive(Debug, Default)]
pub struct GroupJoinRule;

impl PhysicalOptimizerRule for GroupJoinRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let interrupt = Interrupt::current();
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            match group_join(aggregate, &interrupt)? {
                Some(exec) => Ok(Transformed::yes(Arc::new(exec) as Arc<dyn ExecutionPlan>)),
                None => Ok(Transformed::no(node)),
            }
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "GroupJoinRule"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// The group join doing `aggregate`'s work, if it can.
fn group_join(
    aggregate: &AggregateExec,
    interrupt: &Option<Interrupt>,
) -> Result<Option<GroupJoinExec>> {
    let group_by = aggregate.group_expr();
    if *aggregate.mode() != AggregateMode::Partial
        || group_by.has_grouping_set()
        || group_by.expr().is_empty()
        || aggregate.limit_options().is_some()
        || !aggregate.dynamic_expressions_produced().is_empty()
    {
        return Ok(None);
    }
    let Some(join) = aggregate.input().downcast_ref::<HashJoinExec>() else {
        return Ok(None);
    };
    if !matches!(join.join_type(), JoinType::Inner | JoinType::Left)
        || *join.partition_mode() != PartitionMode::Partitioned
        || join.null_equality() != NullEquality::NullEqualsNothing
        || join.null_aware
        || join.fetch().is_some()
    {
        return Ok(None);
    }
    let build_schema = join.left().schema();
    let probe_schema = join.right().schema();
    for (b, p) in join.on() {
        let (bt, pt) = (b.data_type(&build_schema)?, p.data_type(&probe_schema)?);
        if bt != pt || !is_exact_key(&bt) {
            return Ok(None);
        }
    }
    // The aggregate's input column `i` is the join's column `place[i]`: (side, index).
    let build_width = build_schema.fields().len();
    let joined: Vec<usize> = match &join.projection {
        Some(p) => p.to_vec(),
        None => (0..build_width + probe_schema.fields().len()).collect(),
    };
    let place = |i: usize| -> Option<(JoinSide, usize)> {
        let j = *joined.get(i)?;
        Some(if j < build_width {
            (JoinSide::Left, j)
        } else {
            (JoinSide::Right, j - build_width)
        })
    };
    let mut group_columns = Vec::new();
    for (e, _) in group_by.expr() {
        match e.downcast_ref::<Column>().and_then(|c| place(c.index())) {
            Some((JoinSide::Left, index)) => group_columns.push(index),
            _ => return Ok(None),
        }
    }
    if aggregate
        .aggr_expr()
        .iter()
        .any(|a| a.is_distinct() || !a.order_bys().is_empty())
    {
        return Ok(None);
    }
    // The columns the aggregates read, renumbered in the order first met.
    let input_schema = aggregate.input_schema();
    let mut pair_inputs: Vec<usize> = Vec::new();
    let mut renumber = |e: &Arc<dyn PhysicalExpr>| -> Result<Arc<dyn PhysicalExpr>> {
        Ok(Arc::clone(e)
            .transform(|node| {
                let Some(c) = node.downcast_ref::<Column>() else {
                    return Ok(Transformed::no(node));
                };
                let at = match pair_inputs.iter().position(|&i| i == c.index()) {
                    Some(at) => at,
                    None => {
                        pair_inputs.push(c.index());
                        pair_inputs.len() - 1
                    }
                };
                Ok(Transformed::yes(
                    Arc::new(Column::new(c.name(), at)) as Arc<dyn PhysicalExpr>
                ))
            })?
            .data)
    };
    let arguments = aggregate
        .aggr_expr()
        .iter()
        .map(|a| a.expressions().iter().map(&mut renumber).collect())
        .collect::<Result<Vec<Vec<_>>>>()?;
    let aggregate_filters = aggregate
        .filter_expr()
        .iter()
        .map(|f| f.as_ref().map(&mut renumber).transpose())
        .collect::<Result<Vec<_>>>()?;
    let mut pair_columns = Vec::new();
    for &i in &pair_inputs {
        match place(i) {
            Some(p) => pair_columns.push(p),
            None => return Ok(None),
        }
    }
    let pair_schema = Arc::new(input_schema.project(&pair_inputs)?);
    let line = |plan: &dyn ExecutionPlan, name: &str| {
        let line = displayable(plan).one_line().to_string();
        line.trim().trim_start_matches(name).to_string()
    };
    let shown = format!(
        "{} over {}",
        line(aggregate, "AggregateExec: mode=Partial, "),
        line(join, "HashJoinExec: mode=Partitioned, ")
    );
    let plan = Plan {
        build_keys: join.on().iter().map(|(b, _)| Arc::clone(b)).collect(),
        probe_keys: join.on().iter().map(|(_, p)| Arc::clone(p)).collect(),
        filter: join.filter().cloned(),
        comparison: join
            .filter()
            .and_then(|f| Comparison::of(f, &build_schema, &probe_schema)),
        keep_unmatched: *join.join_type() == JoinType::Left,
        group_columns,
        aggregates: aggregate.aggr_expr().to_vec(),
        arguments,
        aggregate_filters,
        pair_columns,
        pair_schema,
        schema: aggregate.schema(),
        shown,
        interrupt: interrupt.clone(),
    };
    Ok(Some(GroupJoinExec {
        build: Arc::clone(join.left()),
        probe: Arc::clone(join.right()),
        plan: Arc::new(plan),
        properties: properties(aggregate.schema(), join.right()),
        metrics: ExecutionPlanMetricsSet::new(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int32Array, Int64Array, StringArray};
    use datafusion::arrow::datatypes::Field;
    use datafusion::datasource::MemTable;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::prelude::{SessionConfig, SessionContext};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// `x` (the build side: 3,000 decisions of 120 users, some without a user) and `e`
    /// (40,000 events of 150 users, some without a user or a time), seeded. `wide_user`
    /// spreads the ids over a range too wide for a slot per value; `name` is the user as
    /// text; `cat` repeats across decisions.
    fn tables(ctx: &SessionContext, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let maybe = |rng: &mut ChaCha8Rng, v: i64, null_share: f64| {
            (!rng.random_bool(null_share)).then_some(v)
        };
        let (n_x, n_e) = (3_000, 40_000);
        let (mut ids, mut users, mut shown, mut cats) = (vec![], vec![], vec![], vec![]);
        for id in 0..n_x {
            let user = rng.random_range(0..120);
            ids.push(id);
            users.push(maybe(&mut rng, user, 0.03));
            shown.push(Some(rng.random_range(0..1_000)));
            cats.push(rng.random_range(0..7));
        }
        let wide = |u: &Option<i64>| u.map(|u| u * 1_000_003 - 40_000_000);
        let name = |u: &Option<i64>| u.map(|u| format!("user {u}"));
        let x_schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("user_id", DataType::Int64, true),
            Field::new("shown", DataType::Int64, true),
            Field::new("cat", DataType::Int32, false),
            Field::new("wide_user", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let x = RecordBatch::try_new(
            x_schema.clone(),
            vec![
                Arc::new(Int64Array::from(ids)),
                Arc::new(Int64Array::from(users.clone())),
                Arc::new(Int64Array::from(shown)),
                Arc::new(Int32Array::from(cats)),
                Arc::new(Int64Array::from_iter(users.iter().map(wide))),
                Arc::new(StringArray::from_iter(users.iter().map(name))),
            ],
        )
        .unwrap();
        let e_schema = Arc::new(Schema::new(vec![
            Field::new("user_id", DataType::Int64, true),
            Field::new("ts", DataType::Int64, true),
            Field::new("v", DataType::Int64, true),
            Field::new("wide_user", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
        ]));
        let batch = |rng: &mut ChaCha8Rng, rows: usize, null_share: f64| {
            let users: Vec<Option<i64>> = (0..rows)
                .map(|_| {
                    let u = rng.random_range(0..150);
                    maybe(rng, u, null_share)
                })
                .collect();
            let ts: Vec<Option<i64>> = (0..rows)
                .map(|_| {
                    let t = rng.random_range(0..1_000);
                    maybe(rng, t, null_share)
                })
                .collect();
            let v: Vec<Option<i64>> = (0..rows)
                .map(|_| {
                    let v = rng.random_range(-5..20);
                    maybe(rng, v, 0.1)
                })
                .collect();
            RecordBatch::try_new(
                e_schema.clone(),
                vec![
                    Arc::new(Int64Array::from(users.clone())),
                    Arc::new(Int64Array::from(ts)),
                    Arc::new(Int64Array::from(v)),
                    Arc::new(Int64Array::from_iter(users.iter().map(wide))),
                    Arc::new(StringArray::from_iter(users.iter().map(name))),
                ],
            )
            .unwrap()
        };
        // Batches without NULLs take the inline comparison, the others Arrow's.
        let e_batches: Vec<RecordBatch> = (0..n_e / 4_000)
            .map(|i| batch(&mut rng, 4_000, if i % 2 == 0 { 0.0 } else { 0.05 }))
            .collect();
        let x_table = MemTable::try_new(
            x_schema,
            vec![vec![x.slice(0, 1_500)], vec![x.slice(1_500, 1_500)]],
        );
        let (a, b) = e_batches.split_at(e_batches.len() / 2);
        let e_table = MemTable::try_new(e_schema, vec![a.to_vec(), b.to_vec()]);
        ctx.register_table("x", Arc::new(x_table.unwrap())).unwrap();
        ctx.register_table("e", Arc::new(e_table.unwrap())).unwrap();
    }

    /// The plan and sorted answer of `sql`, with the group join or with DataFusion's hash
    /// join and partial aggregate alone (the reference). Joins are partitioned, as they
    /// are over tables larger than DataFusion's single-partition thresholds.
    async fn run(sql: &str, group_join: bool, seed: u64) -> (String, String) {
        let mut config = SessionConfig::new()
            .with_target_partitions(3)
            .with_batch_size(1_000);
        let opts = config.options_mut();
        opts.optimizer.hash_join_single_partition_threshold = 0;
        opts.optimizer.hash_join_single_partition_threshold_rows = 0;
        let mut builder = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        if group_join {
            builder = builder.with_physical_optimizer_rule(Arc::new(GroupJoinRule));
        }
        let ctx = SessionContext::new_with_state(builder.build());
        tables(&ctx, seed);
        crate::test_support::plan_and_answer(&ctx, sql).await
    }

    async fn agrees(sql: &str, rewritten: bool) {
        for seed in [1, 2] {
            let (plan, answer) = run(sql, true, seed).await;
            let (reference_plan, reference) = run(sql, false, seed).await;
            assert_eq!(plan.contains("GroupJoinExec"), rewritten, "{sql}\n{plan}");
            assert!(!reference_plan.contains("GroupJoinExec"));
            assert!(answer.lines().count() > 4, "{sql}: {answer}");
            assert_eq!(answer, reference, "{sql}\n{plan}");
        }
    }

    /// Events before each decision (the point-in-time join), with every common aggregate:
    /// NULL keys on both sides, NULL times, decisions without events.
    #[tokio::test]
    async fn point_in_time_counts_match_the_join() {
        agrees(
            "SELECT x.id, count(e.user_id) AS n, count(*) AS c, sum(e.v) AS s, min(e.v) AS lo, \
             max(e.ts) AS hi, avg(e.v) AS mean, sum(e.v) FILTER (WHERE e.v > 5) AS big \
             FROM x LEFT JOIN e ON e.user_id = x.user_id AND e.ts < x.shown \
             GROUP BY x.id ORDER BY x.id",
            true,
        )
        .await;
        // The comparison written the other way round, and non-strict.
        agrees(
            "SELECT x.id, count(e.ts) AS n FROM x LEFT JOIN e \
             ON e.user_id = x.user_id AND x.shown >= e.ts GROUP BY x.id ORDER BY x.id",
            true,
        )
        .await;
    }

    /// Groups shared by many build rows, an inner join (no group for a decision without a
    /// match), two group keys, and a condition Arrow evaluates.
    #[tokio::test]
    async fn shared_groups_and_inner_joins_match_the_join() {
        agrees(
            "SELECT x.cat, count(*) AS c, sum(e.v) AS s FROM x JOIN e ON e.user_id = x.user_id \
             GROUP BY x.cat ORDER BY x.cat",
            true,
        )
        .await;
        agrees(
            "SELECT x.cat, x.shown % 3 AS k, count(e.v) AS c, max(e.v - x.shown) AS m \
             FROM x JOIN e ON e.user_id = x.user_id AND e.ts + e.v < x.shown AND e.v <> 3 \
             GROUP BY x.cat, x.shown % 3 ORDER BY 1, 2",
            false,
        )
        .await;
        agrees(
            "SELECT x.cat, x.user_id, count(e.v) AS c, max(e.v - x.shown) AS m \
             FROM x JOIN e ON e.user_id = x.user_id AND e.ts + e.v < x.shown AND e.v <> 3 \
             GROUP BY x.cat, x.user_id ORDER BY 1, 2",
            true,
        )
        .await;
    }

    /// Keys over a wide range (hashed) and text keys (compared as rows).
    #[tokio::test]
    async fn hashed_and_text_keys_match_the_join() {
        agrees(
            "SELECT x.id, count(e.v) AS n, sum(e.v) AS s FROM x LEFT JOIN e \
             ON e.wide_user = x.wide_user AND e.ts < x.shown GROUP BY x.id ORDER BY x.id",
            true,
        )
        .await;
        agrees(
            "SELECT x.id, count(e.v) AS n, sum(e.v) AS s FROM x LEFT JOIN e \
             ON e.name = x.name AND e.ts < x.shown GROUP BY x.id ORDER BY x.id",
            true,
        )
        .await;
    }

    /// Grouping by the probe side's columns is left to the hash join.
    #[tokio::test]
    async fn probe_side_groups_are_left_to_the_join() {
        agrees(
            "SELECT e.ts % 10 AS k, count(x.id) AS n FROM x JOIN e ON e.user_id = x.user_id \
             GROUP BY e.ts % 10 ORDER BY 1",
            false,
        )
        .await;
    }
}
