//! Folding a MERGE's joined rows into one row per target row.
//!
//! A MERGE joins each target row to every source row its condition matches, so one target
//! row can come out several times; the statement keeps one of the copies (the one a clause
//! acts on) and fails where two copies act (21000). Written as SQL, that fold was a grouped
//! aggregate of `first_value(column ORDER BY action)` per column, which copied every value
//! four times on its way through partial and final aggregation and their emits (a self-MERGE
//! of 131 MB of text peaked 790 MB above the server's baseline, and spilled) and ran through
//! DataFusion's per-group fallback for text. [`MergeFoldExec`] keeps the joined batches as
//! they are, remembers per target row which copy wins, and emits the winners in the target's
//! order by gathering them from those batches, a batch at a time: values are copied once,
//! into the output, and what it holds is reserved in the memory pool.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayData, AsArray, RecordBatch};
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use crate::merge::{action, mode, row_stays};

/// Folds joined MERGE rows: its input has the table's `width` columns, the action, the
/// target row's number and the matched source row's number (NULL where none matched); its
/// output has the table's columns and the action, one row per target row that stays.
pub struct MergeFoldExec {
    input: Arc<dyn ExecutionPlan>,
    width: usize,
    /// The statement ([`mode`]): it decides when a row changed twice fails.
    mode: i64,
    properties: Arc<PlanProperties>,
}

impl MergeFoldExec {
    pub fn new(input: Arc<dyn ExecutionPlan>, width: usize, mode: i64) -> Result<Self> {
        let fields = input.schema().fields().len();
        if fields != width + 3 {
            return Err(DataFusionError::Internal(format!(
                "MergeFoldExec: {fields} input columns for a table of {width}"
            )));
        }
        // One fold sees every copy of a target row: the copies may come from any partition.
        let input: Arc<dyn ExecutionPlan> = if input.output_partitioning().partition_count() > 1 {
            Arc::new(CoalescePartitionsExec::new(input))
        } else {
            input
        };
        let schema = Arc::new(input.schema().project(&(0..=width).collect::<Vec<_>>())?);
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Self {
            input,
            width,
            mode,
            properties,
        })
    }
}

impl fmt::Debug for MergeFoldExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MergeFoldExec")
            .field("width", &self.width)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl DisplayAs for MergeFoldExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MergeFoldExec")
    }
}

impl ExecutionPlan for MergeFoldExec {
    fn name(&self) -> &'static str {
        "MergeFoldExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
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
            .ok_or_else(|| DataFusionError::Internal("MergeFoldExec has one child".into()))?;
        Ok(Arc::new(Self::new(input, self.width, self.mode)?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "MergeFoldExec: no partition {partition}"
            )));
        }
        let mut input = self.input.execute(0, context.clone())?;
        let reservation = MemoryConsumer::new("MergeFoldExec").register(context.memory_pool());
        let batch_size = context.session_config().batch_size().max(1);
        let (width, mode) = (self.width, self.mode);
        let schema = self.schema();
        let folded = async move {
            let mut fold = Fold::new(width, reservation);
            while let Some(batch) = input.next().await {
                fold.add(batch?)?;
            }
            Ok::<_, DataFusionError>(fold.rows(mode, batch_size))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(folded)
                .map_ok(futures::stream::iter)
                .try_flatten(),
        )))
    }
}

/// What is known of one target row's copies.
#[derive(Clone, Copy)]
struct Slot {
    /// The winning copy: the one with the highest action, the first of equals.
    batch: u32,
    row: u32,
    action: i64,
    /// How many copies a clause acts on (updates or deletes).
    acting: u32,
    /// The lowest source row number among acting copies, the highest among all.
    first_acting: i64,
    last_matched: i64,
}

struct Fold {
    width: usize,
    /// The input batches still holding a winning copy, cut to the table's columns and the
    /// action.
    batches: Vec<RecordBatch>,
    held_rows: usize,
    /// By target row number.
    slots: HashMap<i64, Slot>,
    /// The allocations the held batches reference (a join's output shares its inputs'
    /// buffers: each is counted once).
    buffers: HashSet<usize>,
    held_bytes: usize,
    reservation: MemoryReservation,
}

impl Fold {
    fn new(width: usize, reservation: MemoryReservation) -> Self {
        Self {
            width,
            batches: Vec::new(),
            held_rows: 0,
            slots: HashMap::new(),
            buffers: HashSet::new(),
            held_bytes: 0,
            reservation,
        }
    }

    fn add(&mut self, batch: RecordBatch) -> Result<()> {
        let rows = batch.num_rows();
        if rows == 0 {
            return Ok(());
        }
        let w = self.width;
        let actions = batch.column(w).as_primitive::<Int64Type>().clone();
        let ids = batch.column(w + 1).as_primitive::<Int64Type>().clone();
        let matched = batch.column(w + 2).as_primitive::<Int64Type>().clone();
        let index = u32::try_from(self.batches.len())
            .map_err(|_| DataFusionError::Internal("MergeFoldExec: too many batches".into()))?;
        for i in 0..rows {
            let action = actions.value(i);
            let acting = action == action::UPDATED || action == action::DELETED;
            let source = matched.is_valid(i).then(|| matched.value(i));
            let new = Slot {
                batch: index,
                row: i as u32,
                action,
                acting: u32::from(acting),
                first_acting: if acting {
                    source.unwrap_or(i64::MAX)
                } else {
                    i64::MAX
                },
                last_matched: source.unwrap_or(i64::MIN),
            };
            match self.slots.entry(ids.value(i)) {
                Entry::Vacant(e) => {
                    e.insert(new);
                }
                Entry::Occupied(mut e) => {
                    let slot = e.get_mut();
                    if action > slot.action {
                        (slot.batch, slot.row, slot.action) = (new.batch, new.row, action);
                    }
                    slot.acting = slot.acting.saturating_add(new.acting);
                    slot.first_acting = slot.first_acting.min(new.first_acting);
                    slot.last_matched = slot.last_matched.max(new.last_matched);
                }
            }
        }
        let kept = batch.project(&(0..=w).collect::<Vec<_>>())?;
        self.held_bytes += new_bytes(&kept, &mut self.buffers);
        self.batches.push(kept);
        self.held_rows += rows;
        // Copies that lost leave their batches' rows unused: past twice the rows that can
        // win, gather the winners into one batch and let the rest go.
        if self.held_rows > 2 * self.slots.len() + 8192 {
            self.compact()?;
        }
        self.reserve()
    }

    fn reserve(&mut self) -> Result<()> {
        let slots = self.slots.capacity() * (std::mem::size_of::<(i64, Slot)>() + 8);
        self.reservation
            .try_resize(self.held_bytes + slots)
            .map_err(|e| match e {
                DataFusionError::ResourcesExhausted(m) => DataFusionError::ResourcesExhausted(
                    format!("MERGE holds one row per target row: {m}"),
                ),
                other => other,
            })
    }

    fn compact(&mut self) -> Result<()> {
        let mut winners: Vec<(usize, usize)> = Vec::with_capacity(self.slots.len());
        for (n, slot) in self.slots.values_mut().enumerate() {
            winners.push((slot.batch as usize, slot.row as usize));
            (slot.batch, slot.row) = (0, n as u32);
        }
        let held: Vec<&RecordBatch> = self.batches.iter().collect();
        let batch = interleave_record_batch(&held, &winners)?;
        self.buffers.clear();
        self.held_bytes = new_bytes(&batch, &mut self.buffers);
        self.held_rows = batch.num_rows();
        self.batches = vec![batch];
        Ok(())
    }

    /// The rows that stay, in target order, `batch_size` at a time (the held batches and
    /// the reservation go with them, and are let go when the last is out); a row changed
    /// twice ends them with its error.
    fn rows(self, mode: i64, batch_size: usize) -> Emit {
        let mut slots: Vec<(i64, Slot)> = self.slots.into_iter().collect();
        slots.sort_unstable_by_key(|(id, _)| *id);
        Emit {
            batches: self.batches,
            slots: slots.into_iter().map(|(_, s)| s).collect(),
            next: 0,
            mode,
            batch_size,
            _reservation: self.reservation,
        }
    }
}

struct Emit {
    batches: Vec<RecordBatch>,
    slots: Vec<Slot>,
    next: usize,
    mode: i64,
    batch_size: usize,
    _reservation: MemoryReservation,
}

impl Iterator for Emit {
    type Item = Result<RecordBatch>;

    fn next(&mut self) -> Option<Result<RecordBatch>> {
        while self.next < self.slots.len() {
            let end = (self.next + self.batch_size).min(self.slots.len());
            let mut picked = Vec::with_capacity(end - self.next);
            for slot in &self.slots[self.next..end] {
                // How many copies count: those acted on, or under ON CONFLICT DO UPDATE,
                // whether a proposal follows the first one that updates the row.
                let n = match self.mode {
                    mode::ON_CONFLICT_DO_UPDATE => {
                        1 + i64::from(slot.first_acting < slot.last_matched)
                    }
                    _ => i64::from(slot.acting),
                };
                match row_stays(n, 1, slot.action, self.mode) {
                    Ok(true) => picked.push((slot.batch as usize, slot.row as usize)),
                    Ok(false) => {}
                    Err(e) => {
                        self.next = self.slots.len();
                        return Some(Err(e.into()));
                    }
                }
            }
            self.next = end;
            if !picked.is_empty() {
                let held: Vec<&RecordBatch> = self.batches.iter().collect();
                return Some(interleave_record_batch(&held, &picked).map_err(Into::into));
            }
        }
        None
    }
}

/// The bytes of `batch`'s allocations not yet in `seen`, which it adds them to.
fn new_bytes(batch: &RecordBatch, seen: &mut HashSet<usize>) -> usize {
    fn walk(data: &ArrayData, seen: &mut HashSet<usize>) -> usize {
        let mut bytes = 0;
        let nulls = data.nulls().map(|n| n.buffer());
        for buffer in data.buffers().iter().chain(nulls) {
            if seen.insert(buffer.data_ptr().as_ptr() as usize) {
                bytes += buffer.capacity();
            }
        }
        bytes
            + data
                .child_data()
                .iter()
                .map(|c| walk(c, seen))
                .sum::<usize>()
    }
    batch
        .columns()
        .iter()
        .map(|c| walk(&c.to_data(), seen))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringViewArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::memory::{DataSourceExec, MemorySourceConfig};
    use datafusion::execution::memory_pool::GreedyMemoryPool;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{SessionConfig, SessionContext};

    use crate::merge::action::{DELETED, KEPT, UPDATED};

    /// One joined copy: (value, text, action, target row, source row).
    type Copy = (i64, &'static str, i64, i64, Option<i64>);

    fn input(batches: &[&[Copy]]) -> Arc<dyn ExecutionPlan> {
        let schema = Arc::new(Schema::new(vec![
            Field::new("v", DataType::Int64, true),
            Field::new("s", DataType::Utf8View, true),
            Field::new("act", DataType::Int64, false),
            Field::new("rid", DataType::Int64, false),
            Field::new("pos", DataType::Int64, true),
        ]));
        let batches = batches
            .iter()
            .map(|rows| {
                RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
                        Arc::new(StringViewArray::from_iter_values(rows.iter().map(|r| r.1))),
                        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.2))),
                        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
                        Arc::new(Int64Array::from_iter(rows.iter().map(|r| r.4))),
                    ],
                )
                .expect("batch")
            })
            .collect::<Vec<_>>();
        // Two partitions: the copies of one target row arrive through different ones.
        let (a, b) = batches.split_at(batches.len() / 2);
        DataSourceExec::from_data_source(
            MemorySourceConfig::try_new(&[a.to_vec(), b.to_vec()], schema, None).expect("source"),
        )
    }

    async fn fold_with(
        batches: &[&[Copy]],
        mode: i64,
        pool: Option<usize>,
    ) -> Result<Vec<(i64, String, i64)>> {
        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(bytes) = pool {
            runtime = runtime.with_memory_pool(Arc::new(GreedyMemoryPool::new(bytes)));
        }
        let ctx = SessionContext::new_with_config_rt(
            SessionConfig::new().with_batch_size(2),
            runtime.build_arc()?,
        );
        let plan = Arc::new(MergeFoldExec::new(input(batches), 2, mode)?);
        assert_eq!(plan.schema().fields().len(), 3);
        let mut rows = Vec::new();
        for b in collect(plan, ctx.task_ctx()).await? {
            assert!(b.num_rows() <= 2, "emitted a batch at a time");
            let v = b.column(0).as_primitive::<Int64Type>();
            let s = b.column(1).as_string_view();
            let a = b.column(2).as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                rows.push((v.value(i), s.value(i).to_string(), a.value(i)));
            }
        }
        Ok(rows)
    }

    async fn fold(batches: &[&[Copy]], mode: i64) -> Result<Vec<(i64, String, i64)>> {
        fold_with(batches, mode, None).await
    }

    fn row(v: i64, s: &str, a: i64) -> (i64, String, i64) {
        (v, s.to_string(), a)
    }

    #[tokio::test]
    async fn one_row_per_target_row_in_target_order_the_acted_on_copy_winning() {
        let rows = fold(
            &[
                &[
                    (30, "c", KEPT, 3, Some(1)),
                    (10, "a", KEPT, 1, Some(1)),
                    (99, "gone", DELETED, 4, Some(2)),
                ],
                &[
                    (11, "a-new", UPDATED, 1, Some(2)),
                    (30, "c", KEPT, 3, Some(2)),
                    (20, "b", KEPT, 2, None),
                ],
            ],
            mode::MERGE,
        )
        .await
        .expect("fold");
        // Row 1's update wins over its kept copy, row 3 is kept once, row 4 is deleted.
        assert_eq!(
            rows,
            vec![
                row(11, "a-new", UPDATED),
                row(20, "b", KEPT),
                row(30, "c", KEPT)
            ]
        );
    }

    #[tokio::test]
    async fn two_copies_acted_on_fail_as_a_row_changed_twice() {
        let err = fold(
            &[
                &[(11, "x", UPDATED, 1, Some(1))],
                &[(12, "y", UPDATED, 1, Some(2))],
            ],
            mode::MERGE,
        )
        .await
        .expect_err("changed twice");
        assert!(err.to_string().contains("a second time"), "{err}");
        // Updated by one copy and deleted by another: also twice.
        let err = fold(
            &[&[(11, "x", UPDATED, 1, Some(1)), (0, "", DELETED, 1, Some(2))]],
            mode::MERGE,
        )
        .await
        .expect_err("changed twice");
        assert!(err.to_string().contains("a second time"), "{err}");
    }

    #[tokio::test]
    async fn under_do_update_a_proposal_after_the_updating_one_fails() {
        // The update came from proposal 1; proposal 2 matched the row after it.
        let later = fold(
            &[&[(11, "x", UPDATED, 1, Some(1)), (10, "x", KEPT, 1, Some(2))]],
            mode::ON_CONFLICT_DO_UPDATE,
        )
        .await;
        assert!(later.is_err(), "{later:?}");
        // A proposal before the updating one (its WHERE did not hold) is no conflict.
        let earlier = fold(
            &[&[(10, "x", KEPT, 1, Some(1)), (11, "x", UPDATED, 1, Some(2))]],
            mode::ON_CONFLICT_DO_UPDATE,
        )
        .await
        .expect("fold");
        assert_eq!(earlier, vec![row(11, "x", UPDATED)]);
    }

    #[tokio::test]
    async fn losing_copies_are_let_go_and_the_result_is_unchanged() {
        // 3 target rows each matched 10,000 times: past the compaction threshold.
        let text: &'static str = Box::leak("t".repeat(100).into_boxed_str());
        let copies: Vec<Copy> = (0..30_000)
            .map(|i| (i % 3, text, KEPT, i % 3, Some(i)))
            .collect();
        let batches: Vec<&[Copy]> = copies.chunks(1000).collect();
        let rows = fold(&batches, mode::MERGE).await.expect("fold");
        assert_eq!(
            rows,
            vec![row(0, text, KEPT), row(1, text, KEPT), row(2, text, KEPT)]
        );
    }

    #[tokio::test]
    async fn what_it_holds_is_reserved_in_the_pool() {
        let text: &'static str = Box::leak("w".repeat(10_000).into_boxed_str());
        let copies: Vec<Copy> = (0..200).map(|i| (i, text, KEPT, i, None)).collect();
        let batches: Vec<&[Copy]> = copies.chunks(50).collect();
        // 2 MB of text held against a 1 MB pool.
        let err = fold_with(&batches, mode::MERGE, Some(1 << 20))
            .await
            .expect_err("over the pool");
        assert!(
            matches!(err.find_root(), DataFusionError::ResourcesExhausted(_)),
            "{err}"
        );
        // Under a pool that holds it, the same fold succeeds.
        let rows = fold_with(&batches, mode::MERGE, Some(16 << 20))
            .await
            .expect("fold");
        assert_eq!(rows.len(), 200);
    }

    #[test]
    fn shared_allocations_are_counted_once() {
        let strings = StringViewArray::from_iter_values(["x".repeat(1000), "y".repeat(1000)]);
        let schema = Arc::new(Schema::new(vec![Field::new(
            "s",
            DataType::Utf8View,
            false,
        )]));
        let batch = RecordBatch::try_new(schema, vec![Arc::new(strings)]).expect("batch");
        let mut seen = HashSet::new();
        let first = new_bytes(&batch, &mut seen);
        assert!(first >= 2000, "{first}");
        // A slice (as a join's output is) shares the allocations: nothing new.
        assert_eq!(new_bytes(&batch.slice(1, 1), &mut seen), 0);
    }
}
