//! Sorts that keep the order their input was stored in.
//!
//! A window `PARTITION BY user_id ORDER BY ts, event_type` over a table stored sorted by
//! `(user_id, ts)` (see [`crate::sort_order`]) is planned by DataFusion as a hash
//! repartition on `user_id`, which interleaves its input partitions and so loses their
//! order, then a full sort of every row on all four keys. [`PresortedRule`] makes the
//! repartition merge its inputs in order instead and sorts only the rows that tie on the
//! stored prefix (`PartialSortExec`), or nothing when the stored order covers the sort. On
//! the small world's 2.5M events the lag window over `(user_id, ts)` went from 375 to
//! 272 ms this way (benches/RESULTS.md).
//!
//! DataFusion's own `prefer_existing_sort` replaces a repartition only when that removes a
//! sort entirely; the partial case is what is added here.
//!
//! The opposite holds for aggregates: DataFusion keeps a presorted input's order through
//! the hash repartition below a final aggregate so that it can stream its groups, even over
//! a bounded scan. Measured on the same 2.5M events stored with and without a declared
//! order, that merge made `count(DISTINCT user_id)` per day 65 → 130 ms and `GROUP BY
//! user_id` 33 → 46 ms. [`HashedAggregatesRule`] undoes it over bounded input, before
//! DataFusion's sort enforcement, which then adds a sort wherever a parent still needs one.
//! It also hides the stored order from a partial aggregate whose groups extend past it
//! (the `(day, user_id)` groups below `count(DISTINCT user_id)` per day): DataFusion would
//! run that one in its partially-sorted streaming mode, which cost +20–40 % against
//! hashing the same rows.

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::physical_expr::PhysicalSortExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_plan::InputOrderMode;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::partial_sort::PartialSortExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};

/// Replaces a full sort of presorted rows, directly or above a hash repartition, by a sort
/// of their ties (see the module notes).
#[derive(Debug, Default)]
pub struct PresortedRule;

impl PhysicalOptimizerRule for PresortedRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            Ok(match presorted(&node)? {
                Some(replacement) => Transformed::yes(replacement),
                None => Transformed::no(node),
            })
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "flashsql_presorted"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Aggregates over bounded input hash their groups rather than merging presorted partitions
/// or streaming partially sorted groups (see the module notes). Runs right after
/// DataFusion's `EnforceDistribution`.
#[derive(Debug, Default)]
pub struct HashedAggregatesRule;

impl PhysicalOptimizerRule for HashedAggregatesRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let Some(aggregate) = node.downcast_ref::<AggregateExec>() else {
                return Ok(Transformed::no(node));
            };
            if let Some(hashed) = hashed_partial(aggregate)? {
                return Ok(Transformed::yes(hashed));
            }
            let Some(repartition) = node
                .children()
                .first()
                .and_then(|c| c.downcast_ref::<RepartitionExec>())
            else {
                return Ok(Transformed::no(node));
            };
            if !repartition.preserve_order() || repartition.properties().boundedness.is_unbounded()
            {
                return Ok(Transformed::no(node));
            }
            let hashed: Arc<dyn ExecutionPlan> = Arc::new(RepartitionExec::try_new(
                repartition.input().clone(),
                repartition.partitioning().clone(),
            )?);
            let recompute = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
            Ok(Transformed::yes(
                node.clone().replace_children(vec![hashed], recompute)?,
            ))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "flashsql_hashed_aggregates"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// `aggregate` reading its input as unordered, if it is a partial aggregate that would
/// otherwise stream groups partially sorted over a bounded scan of presorted rows (and
/// needs no order for its own sake, as `array_agg(… ORDER BY …)` does).
fn hashed_partial(aggregate: &AggregateExec) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if *aggregate.mode() != AggregateMode::Partial
        || !matches!(
            aggregate.input_order_mode(),
            InputOrderMode::PartiallySorted(_)
        )
        || aggregate.input().properties().boundedness.is_unbounded()
        || aggregate
            .aggr_expr()
            .iter()
            .any(|a| !a.order_bys().is_empty())
    {
        return Ok(None);
    }
    let Some(unordered) = without_stored_order(aggregate.input())? else {
        return Ok(None);
    };
    let recompute = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
    Arc::new(aggregate.clone())
        .replace_children(vec![unordered], recompute)
        .map(Some)
}

/// `plan` with its scan no longer declaring the order its rows are stored in, if the
/// order comes from a scan reached through row-wise operators only.
fn without_stored_order(plan: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(scan) = plan.downcast_ref::<DataSourceExec>() {
        let source = scan.data_source();
        if let Some(files) = source.downcast_ref::<FileScanConfig>() {
            let mut files = files.clone();
            files.output_ordering.clear();
            return Ok(Some(DataSourceExec::from_data_source(files)));
        }
        if let Some(memory) = source.downcast_ref::<MemorySourceConfig>() {
            let memory = memory.clone().try_with_sort_information(Vec::new())?;
            return Ok(Some(DataSourceExec::from_data_source(memory)));
        }
        return Ok(None);
    }
    // Table scans from files come wrapped in the engine's pass-through check.
    let row_wise = plan.is::<FilterExec>()
        || plan.is::<ProjectionExec>()
        || plan.is::<crate::inspect::InspectExec>();
    let [input] = plan.children()[..] else {
        return Ok(None);
    };
    if !row_wise {
        return Ok(None);
    }
    match without_stored_order(input)? {
        Some(unordered) => {
            let recompute = ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute);
            plan.clone()
                .replace_children(vec![unordered], recompute)
                .map(Some)
        }
        None => Ok(None),
    }
}

/// DataFusion's physical optimizer rules with [`HashedAggregatesRule`] after its
/// `EnforceDistribution` and [`PresortedRule`] at the end.
pub fn physical_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = PhysicalOptimizer::new().rules;
    let at = rules
        .iter()
        .position(|r| r.name() == "EnforceDistribution")
        .map_or(rules.len(), |i| i + 1);
    rules.insert(at, Arc::new(HashedAggregatesRule));
    rules.push(Arc::new(PresortedRule));
    rules
}

/// The cheaper form of `node` if it is a sort (no limit) of rows already ordered on a
/// prefix of its keys: directly, or through a hash repartition that can merge them in
/// order.
fn presorted(node: &Arc<dyn ExecutionPlan>) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Some(sort) = node.downcast_ref::<SortExec>() else {
        return Ok(None);
    };
    if sort.fetch().is_some() {
        return Ok(None);
    }
    let keys: Vec<_> = sort.expr().iter().cloned().collect();
    let Some(repartition) = sort.input().downcast_ref::<RepartitionExec>() else {
        return partial_sort(sort, sort.input().clone(), &keys);
    };
    if !sort.preserve_partitioning() {
        return Ok(None);
    }
    if repartition.preserve_order() || !matches!(repartition.partitioning(), Partitioning::Hash(..))
    {
        return Ok(None);
    }
    // The merge keeps each output partition in the input's order (when it has one).
    let merged: Arc<dyn ExecutionPlan> = Arc::new(
        RepartitionExec::try_new(
            repartition.input().clone(),
            repartition.partitioning().clone(),
        )?
        .with_preserve_order(),
    );
    partial_sort(sort, merged, &keys)
}

/// How many of `keys`, from the first, `input`'s partitions are already sorted by.
fn presorted_prefix(input: &Arc<dyn ExecutionPlan>, keys: &[PhysicalSortExpr]) -> Result<usize> {
    let stored = input.equivalence_properties();
    let mut prefix = 0;
    for k in 1..=keys.len() {
        if !stored.ordering_satisfy(keys[..k].iter().cloned())? {
            break;
        }
        prefix = k;
    }
    Ok(prefix)
}

/// `sort` over `input` as a sort of the rows that tie on the prefix `input` is sorted by
/// (nothing at all if that covers every key); None if it is sorted by none of them, or if
/// `sort` merges partitions that the replacement would not.
fn partial_sort(
    sort: &SortExec,
    input: Arc<dyn ExecutionPlan>,
    keys: &[PhysicalSortExpr],
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if !sort.preserve_partitioning() && input.output_partitioning().partition_count() > 1 {
        return Ok(None);
    }
    let prefix = presorted_prefix(&input, keys)?;
    Ok(match prefix {
        0 => None,
        p if p == keys.len() => Some(input),
        p => Some(Arc::new(
            PartialSortExec::new(sort.expr().clone(), input, p)
                .with_preserve_partitioning(sort.preserve_partitioning()),
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, RecordBatch};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::datasource::MemTable;
    use datafusion::execution::session_state::SessionStateBuilder;
    use datafusion::logical_expr::col;
    use datafusion::prelude::{SessionConfig, SessionContext};

    /// Rows sorted by (u, t) in two partitions; `x` breaks ties on t within a user.
    fn presorted_table() -> MemTable {
        let schema = Arc::new(Schema::new(vec![
            Field::new("u", DataType::Int64, false),
            Field::new("t", DataType::Int64, false),
            Field::new("x", DataType::Int64, false),
        ]));
        let part = |base: i64| {
            let mut u = Vec::new();
            let mut t = Vec::new();
            let mut x = Vec::new();
            for user in 0..50 {
                for step in 0..20 {
                    u.push(base + user);
                    t.push(step / 2);
                    x.push((user * 7 + step * 13) % 11);
                }
            }
            RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(u)),
                    Arc::new(Int64Array::from(t)),
                    Arc::new(Int64Array::from(x)),
                ],
            )
            .unwrap()
        };
        MemTable::try_new(schema.clone(), vec![vec![part(0)], vec![part(1000)]])
            .unwrap()
            .with_sort_order(vec![vec![
                col("u").sort(true, false),
                col("t").sort(true, false),
            ]])
    }

    /// The plan and answer of `sql` over [`presorted_table`] in two partitions, planned
    /// with the engine's rules or with DataFusion's alone (the reference).
    async fn run(sql: &str, engine_rules: bool) -> (String, String) {
        let mut builder = SessionStateBuilder::new()
            .with_config(SessionConfig::new().with_target_partitions(2))
            .with_default_features();
        if engine_rules {
            builder = builder.with_physical_optimizer_rules(physical_rules());
        }
        let ctx = SessionContext::new_with_state(builder.build());
        ctx.register_table("ev", Arc::new(presorted_table()))
            .unwrap();
        crate::test_support::plan_and_answer(&ctx, sql).await
    }

    /// A window ordered past the stored prefix sorts only the ties, and one ordered within
    /// it sorts nothing; both give the full sort's answer row for row.
    #[tokio::test]
    async fn windows_over_presorted_rows_sort_only_ties() {
        let tie_broken = "SELECT u, t, x, lag(x) OVER (PARTITION BY u ORDER BY t, x) AS p, \
                          row_number() OVER (PARTITION BY u ORDER BY t, x) AS r \
                          FROM ev ORDER BY u, r";
        let (plan, rows) = run(tie_broken, true).await;
        let (reference_plan, reference) = run(tie_broken, false).await;
        assert!(plan.contains("PartialSortExec"), "{plan}");
        assert!(plan.contains("preserve_order=true"), "{plan}");
        assert!(
            reference_plan.contains("SortExec: expr=[u@0 ASC NULLS LAST, t@1"),
            "{reference_plan}"
        );
        assert_eq!(rows, reference);

        let within = "SELECT u, t, lag(t) OVER (PARTITION BY u ORDER BY t) AS p \
                      FROM ev ORDER BY u, t";
        let (plan, rows) = run(within, true).await;
        let (_, reference) = run(within, false).await;
        assert!(!plan.contains("PartialSortExec"), "{plan}");
        assert!(plan.contains("preserve_order=true"), "{plan}");
        assert_eq!(rows, reference);

        // Not presorted on the window's first key: its sort stays whole (the final ORDER BY
        // over the window's output, sorted by x, sorts only ties on x).
        let other = "SELECT x, lag(t) OVER (PARTITION BY x ORDER BY t) AS p FROM ev ORDER BY 1, 2";
        let (plan, rows) = run(other, true).await;
        let (_, reference) = run(other, false).await;
        assert!(!plan.contains("preserve_order=true"), "{plan}");
        assert!(
            plan.contains("  SortExec: expr=[x@1 ASC NULLS LAST, t@0 ASC NULLS LAST]"),
            "{plan}"
        );
        assert_eq!(rows, reference);
    }

    /// Aggregates over presorted rows hash their groups: DataFusion alone merges the
    /// partitions in order to stream them, and streams a distinct's partial groups partially
    /// sorted; with the engine's rules the repartition below the final aggregate is a plain
    /// one, the partial aggregate hashes, and the answers agree.
    #[tokio::test]
    async fn aggregates_over_presorted_rows_hash_their_groups() {
        for sql in [
            "SELECT u, count(*) AS n, max(x) AS m FROM ev GROUP BY u ORDER BY u",
            "SELECT t, count(DISTINCT u) AS users FROM ev GROUP BY t ORDER BY t",
            "SELECT x, count(DISTINCT u) AS users FROM ev GROUP BY x ORDER BY x",
            "SELECT u, array_agg(x ORDER BY t, x) AS xs FROM ev GROUP BY u ORDER BY u",
        ] {
            let (plan, rows) = run(sql, true).await;
            let (reference_plan, reference) = run(sql, false).await;
            assert!(!plan.contains("preserve_order=true"), "{sql}\n{plan}");
            assert!(!plan.contains("PartiallySorted"), "{sql}\n{plan}");
            assert_eq!(rows, reference, "{sql}");
            if sql.starts_with("SELECT x") {
                // DataFusion alone streams the partial (x, u) groups partially sorted.
                assert!(
                    reference_plan.contains("ordering_mode=PartiallySorted"),
                    "{reference_plan}"
                );
            }
            if sql.starts_with("SELECT u, count(*)") {
                assert!(
                    reference_plan.contains("preserve_order=true"),
                    "{reference_plan}"
                );
            }
        }
    }

    /// A scan's declared order is hidden through the operators a table scan and a filter
    /// put between it and an aggregate (the engine's checked-scan wrapper among them).
    #[tokio::test]
    async fn stored_order_is_hidden_through_row_wise_operators() {
        use datafusion::catalog::TableProvider;
        let ctx = SessionContext::new();
        let scan = presorted_table()
            .scan(&ctx.state(), None, &[], None)
            .await
            .unwrap();
        let checked: Arc<dyn ExecutionPlan> = Arc::new(crate::inspect::InspectExec::new(
            "CheckedScanExec",
            scan,
            Arc::new(|b| b),
        ));
        assert!(checked.output_ordering().is_some());
        let hidden = without_stored_order(&checked).unwrap().expect("hidden");
        assert!(hidden.output_ordering().is_none());
        assert!(hidden.is::<crate::inspect::InspectExec>());
    }
}
