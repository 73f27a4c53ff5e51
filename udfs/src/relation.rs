//! Table-valued functions with a query as input and named options, e.g.
//! `optimize_discounts((SELECT …), budget => 5000)`.
//!
//! DataFusion's table functions receive literals only, so these are planned by one relation
//! planner: it plans the subquery argument itself (or takes a table name in quotes), reads
//! the named options as literals, and hands both to the function. Bad options fail when the
//! query is planned; the result is computed when the query runs ([`ComputedExec`]), so
//! `EXPLAIN` shows the plan without running solvers or simulations.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, ParamValues, ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::execution::TaskContext;
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::logical_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableType};
use datafusion::physical_expr::{EquivalenceProperties, Partitioning, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, PlanProperties, SendableRecordBatchStream,
};
use datafusion::physical_plan::{ExecutionPlan, execute_stream};
use datafusion::sql::sqlparser::ast::{
    self as ast, FunctionArg, FunctionArgExpr, TableFactor, TableFunctionArgs,
};
use futures::TryStreamExt;

pub use crate::error::{column_error, row_error, user_error};

/// Where a function's input rows come from.
#[derive(Debug, Clone)]
pub enum Input {
    Plan(LogicalPlan),
    /// A table named in a string: resolved when the query runs, since names inside function
    /// arguments are not resolved with the rest of the statement.
    Table(TableReference),
}

impl Input {
    /// Plans the input.
    pub async fn physical_plan(&self, state: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = match self {
            Input::Plan(p) => p.clone(),
            Input::Table(r) => {
                let session = state
                    .as_any()
                    .downcast_ref::<SessionState>()
                    .ok_or_else(|| DataFusionError::Internal("unexpected session type".into()))?;
                let table = session
                    .schema_for_ref(r.clone())?
                    .table(r.table())
                    .await?
                    .ok_or_else(|| DataFusionError::Plan(format!("table '{r}' not found")))?;
                LogicalPlanBuilder::scan(r.clone(), provider_as_source(table), None)?.build()?
            }
        };
        state.create_physical_plan(&plan).await
    }
}

/// The named options of one call, consumed as the function reads them; whatever is left is
/// reported as unknown.
#[derive(Debug)]
pub struct Options {
    function: &'static str,
    usage: &'static str,
    values: BTreeMap<String, ScalarValue>,
}

impl Options {
    pub fn new(
        function: &'static str,
        usage: &'static str,
        named: Vec<(String, ScalarValue)>,
    ) -> Result<Options> {
        let mut values = BTreeMap::new();
        for (name, v) in named {
            if values.insert(name.clone(), v).is_some() {
                return Err(user_error(format!(
                    "{function}: option {name} is given twice"
                )));
            }
        }
        Ok(Options {
            function,
            usage,
            values,
        })
    }

    fn error(&self, msg: String) -> DataFusionError {
        user_error(format!("{}: {msg}", self.function))
    }

    pub fn number(&mut self, name: &str) -> Result<Option<f64>> {
        let Some(v) = self.values.remove(name) else {
            return Ok(None);
        };
        match v.cast_to(&DataType::Float64) {
            Ok(ScalarValue::Float64(Some(x))) if x.is_finite() => Ok(Some(x)),
            _ => Err(self.error(format!("option {name} must be a finite number, got {v}"))),
        }
    }

    pub fn required_number(&mut self, name: &str) -> Result<f64> {
        self.number(name)?.ok_or_else(|| {
            self.error(format!(
                "the option {name} => <number> is required ({})",
                self.usage
            ))
        })
    }

    /// A whole number ≥ 0.
    pub fn count(&mut self, name: &str) -> Result<Option<u64>> {
        match self.number(name)? {
            None => Ok(None),
            Some(x) if x >= 0.0 && x.fract() == 0.0 && x < 2f64.powi(63) => Ok(Some(x as u64)),
            Some(x) => Err(self.error(format!(
                "option {name} must be a whole number >= 0, got {x}"
            ))),
        }
    }

    /// A string option, lower-cased.
    pub fn text(&mut self, name: &str) -> Result<Option<String>> {
        match self.values.remove(name) {
            None => Ok(None),
            Some(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)),
            ) => Ok(Some(s.to_ascii_lowercase())),
            Some(v) => Err(self.error(format!("option {name} must be a string, got {v}"))),
        }
    }

    /// A boolean option.
    pub fn flag(&mut self, name: &str) -> Result<Option<bool>> {
        match self.values.remove(name) {
            None => Ok(None),
            Some(ScalarValue::Boolean(Some(b))) => Ok(Some(b)),
            Some(v) => Err(self.error(format!("option {name} must be true or false, got {v}"))),
        }
    }

    /// A string option that must be one of `choices` (matched case-insensitively); the first
    /// choice is the default.
    pub fn choice<T: Copy>(&mut self, name: &str, choices: &[(&str, T)]) -> Result<T> {
        let Some(given) = self.text(name)? else {
            return Ok(choices[0].1);
        };
        if let Some(&(_, v)) = choices.iter().find(|(c, _)| *c == given) {
            return Ok(v);
        }
        let names: Vec<String> = choices.iter().map(|(c, _)| format!("'{c}'")).collect();
        Err(self.error(format!(
            "{name} '{given}' is not known: use {}",
            names.join(", ")
        )))
    }

    /// Fails on any option the function did not read: the planner has already rejected
    /// names it does not know, so what is left is an option this call has no use for (e.g.
    /// `world_seed` with another scenario).
    pub fn finish(self) -> Result<()> {
        match self.values.keys().next() {
            None => Ok(()),
            Some(other) => Err(self.error(format!(
                "option '{other}' does not apply to this call; the options are {}",
                self.usage
            ))),
        }
    }
}

/// Column `name` of one of `function`'s input batches, read as `target`; `None` when the
/// input has no such column.
pub fn input_column(
    function: &str,
    batch: &RecordBatch,
    name: &str,
    target: &DataType,
) -> Result<Option<ArrayRef>> {
    let Ok(i) = batch.schema().index_of(name) else {
        return Ok(None);
    };
    cast(batch.column(i), target).map(Some).map_err(|e| {
        user_error(format!(
            "{function}: column {name} cannot be read as {target}: {e}"
        ))
    })
}

/// As [`input_column`] for a column the function cannot do without; the error lists what
/// the input needs (`needs`).
pub fn required_column(
    function: &str,
    batch: &RecordBatch,
    name: &str,
    target: &DataType,
    needs: &str,
) -> Result<ArrayRef> {
    let column = named_column(function, batch, name, needs)?;
    cast(&column, target).map_err(|e| {
        user_error(format!(
            "{function}: column {name} cannot be read as {target}: {e}"
        ))
    })
}

/// Orders each item's rows by discount and rejects an item that lists a discount twice: the
/// per-item levels that `optimize_discounts` and `next_discounts` read.
pub fn sort_levels<T>(
    function: &str,
    items: &mut BTreeMap<i64, Vec<T>>,
    discount: impl Fn(&T) -> f64,
) -> Result<()> {
    for (id, levels) in items.iter_mut() {
        levels.sort_by(|a, b| discount(a).total_cmp(&discount(b)));
        if let Some(w) = levels
            .windows(2)
            .find(|w| discount(&w[0]) == discount(&w[1]))
        {
            return Err(row_error(format!(
                "{function}: item_id {id} lists discount {} twice",
                discount(&w[0])
            )));
        }
    }
    Ok(())
}

/// As [`required_column`], in the column's own type (for functions that read several
/// types, such as lists or timestamps).
pub fn named_column(
    function: &str,
    batch: &RecordBatch,
    name: &str,
    needs: &str,
) -> Result<ArrayRef> {
    batch.column_by_name(name).cloned().ok_or_else(|| {
        column_error(format!(
            "{function}: the input has no column \"{name}\"; it needs {needs}"
        ))
    })
}

/// Hands one batch of output rows to the client as soon as it is ready; fails once the
/// query is cancelled, which should stop the computation.
pub type Emit<'a> = dyn FnMut(RecordBatch) -> Result<()> + 'a;

/// Whether anybody still waits for a computation's rows. A computation runs on a thread of
/// its own and the statement that started it can be cancelled, time out or lose its client
/// at any moment: long computations look between chunks of work and stop.
#[derive(Clone)]
pub struct Cancellation(Arc<dyn Fn() -> bool + Send + Sync>);

impl Cancellation {
    pub fn is_cancelled(&self) -> bool {
        (self.0)()
    }

    /// The error a computation stops with once it is cancelled.
    pub fn error(function: &str) -> DataFusionError {
        DataFusionError::Execution(format!("{function}: the query was cancelled"))
    }
}

/// Computes a function's rows from its collected input rows, emitting them as it goes.
pub type Compute =
    Arc<dyn Fn(&[RecordBatch], &mut Emit<'_>, &Cancellation) -> Result<()> + Send + Sync>;

/// A [`Compute`] for a function whose rows come out all at once, quickly.
pub fn all_at_once(
    f: impl Fn(&[RecordBatch]) -> Result<RecordBatch> + Send + Sync + 'static,
) -> Compute {
    Arc::new(
        move |batches: &[RecordBatch], emit: &mut Emit<'_>, _: &Cancellation| emit(f(batches)?),
    )
}

/// A [`Compute`] for a function whose rows come out all at once after long work, which
/// looks at the [`Cancellation`] as it goes.
pub fn all_at_once_cancellable(
    f: impl Fn(&[RecordBatch], &Cancellation) -> Result<RecordBatch> + Send + Sync + 'static,
) -> Compute {
    Arc::new(
        move |batches: &[RecordBatch], emit: &mut Emit<'_>, cancel: &Cancellation| {
            emit(f(batches, cancel)?)
        },
    )
}

/// How much memory a computation is taken to need, per byte of its collected input: the
/// input itself and the working copies the algorithms make of it (curves, item tables).
const WORKING_MEMORY_PER_INPUT_BYTE: usize = 3;

/// Collects every partition of `input`, reserving its memory — and the computation's working
/// memory — in the query's memory pool, so a function over more rows than `--memory-mb`
/// allows fails with 53200 instead of growing past the limit.
async fn collect_reserved(
    name: &'static str,
    input: Arc<dyn ExecutionPlan>,
    context: Arc<TaskContext>,
) -> Result<(Vec<RecordBatch>, MemoryReservation)> {
    let reservation = MemoryConsumer::new(name).register(context.memory_pool());
    let mut stream = execute_stream(input, context)?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.try_next().await? {
        reservation.try_grow(batch.get_array_memory_size() * WORKING_MEMORY_PER_INPUT_BYTE)?;
        batches.push(batch);
    }
    Ok((batches, reservation))
}

/// One table-valued function the planner knows.
pub trait RelationFunction: fmt::Debug + Send + Sync {
    fn name(&self) -> &'static str;
    /// How a call is written, for error messages.
    fn usage(&self) -> &'static str;
    /// Whether an argument is an input query or table.
    fn takes_input(&self) -> bool;
    /// Options that may also be given as leading positional literals, in this order, before
    /// the input: `train_model('m', (SELECT …))`.
    fn positional(&self) -> &'static [&'static str] {
        &[]
    }
    /// The names of its options; any other is an error before anything else is checked.
    fn option_names(&self) -> &'static [&'static str];
    fn schema(&self) -> SchemaRef;
    /// Reads the options (at planning time, so bad options fail before anything runs).
    fn bind(&self, options: Options) -> Result<Compute>;
}

/// The relation a call stands for: its input and how its rows are computed.
struct Computed {
    name: &'static str,
    input: Option<Input>,
    schema: SchemaRef,
    compute: Compute,
    /// Options given as bind parameters (`budget => $1`): read once the parameters are
    /// bound ([`parameters::bind`]), when `compute` is made from them.
    deferred: Option<Deferred>,
}

/// A call's options while some are still bind parameters.
#[derive(Clone)]
struct Deferred {
    function: Arc<dyn RelationFunction>,
    named: Vec<(String, OptionValue)>,
}

/// An option as written: a literal, or a bind parameter (`$1`) read when the statement is
/// executed.
#[derive(Debug, Clone)]
enum OptionValue {
    Value(ScalarValue),
    Parameter(String),
}

impl Deferred {
    /// The compute, once every option has a value: parameters are taken from `params`.
    /// None while a parameter has none (the statement is being planned, not run).
    fn compute(&self, params: Option<&ParamValues>) -> Result<Option<Compute>> {
        let mut values = Vec::with_capacity(self.named.len());
        for (name, v) in &self.named {
            let value = match (v, params) {
                (OptionValue::Value(v), _) => v.clone(),
                (OptionValue::Parameter(id), Some(params)) => {
                    params.get_placeholders_with_values(id)?.into_inner().0
                }
                (OptionValue::Parameter(_), None) => return Ok(None),
            };
            values.push((name.clone(), value));
        }
        let function = &self.function;
        Ok(Some(function.bind(Options::new(
            function.name(),
            function.usage(),
            values,
        )?)?))
    }

    /// A compute for a statement run without its parameters bound.
    fn unbound(name: &'static str) -> Compute {
        Arc::new(
            move |_: &[RecordBatch], _: &mut Emit<'_>, _: &Cancellation| {
                Err(user_error(format!(
                    "{name}: an option is a bind parameter ($n) that has no value"
                )))
            },
        )
    }
}

/// Bind parameters (`$1`, …) inside the input subqueries of relation functions.
///
/// A function's input is planned when the statement is, and lives inside its table provider,
/// where DataFusion's own parameter handling does not look. These two walk the plan to it, so
/// a service can prepare `SELECT * FROM optimize_discounts((SELECT … WHERE campaign_id = $1),
/// budget => 500)` once and execute it with different campaigns.
pub mod parameters {
    use std::collections::HashMap;
    use std::sync::Arc;

    use datafusion::arrow::datatypes::DataType;
    use datafusion::catalog::TableProvider;

    use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
    use datafusion::datasource::{provider_as_source, source_as_provider};
    use datafusion::error::Result;
    use datafusion::logical_expr::{LogicalPlan, TableScan};

    use super::{Computed, Input, OptionValue, ParamValues};

    /// A scan of a relation function's call, and its provider, when `node` is one.
    fn call(node: &LogicalPlan) -> Option<(&TableScan, Arc<dyn TableProvider>)> {
        let LogicalPlan::TableScan(scan) = node else {
            return None;
        };
        let provider = source_as_provider(&scan.source).ok()?;
        provider.is::<Computed>().then_some((scan, provider))
    }

    /// The types of the parameters used inside function inputs and options, by name (`$1`);
    /// an option's type is left to the client (a text value is read as the option needs).
    pub fn types(plan: &LogicalPlan) -> Result<HashMap<String, Option<DataType>>> {
        let mut out = HashMap::new();
        plan.apply_with_subqueries(|node| {
            if let Some((_, provider)) = call(node)
                && let Some(c) = provider.downcast_ref::<Computed>()
            {
                if let Some(Input::Plan(input)) = &c.input {
                    out.extend(input.get_parameter_types()?);
                    // A function call inside the input has an input of its own.
                    out.extend(types(input)?);
                }
                for (_, v) in c.deferred.iter().flat_map(|d| d.named.iter()) {
                    if let OptionValue::Parameter(id) = v {
                        out.entry(id.clone()).or_insert(None);
                    }
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        Ok(out)
    }

    /// The plan with `params` substituted inside function inputs.
    pub fn bind(plan: LogicalPlan, params: &ParamValues) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| {
            let Some((scan, provider)) = call(&node) else {
                return Ok(Transformed::no(node));
            };
            let Some(c) = provider.downcast_ref::<Computed>() else {
                return Ok(Transformed::no(node));
            };
            if c.deferred.is_none() && !matches!(c.input, Some(Input::Plan(_))) {
                return Ok(Transformed::no(node));
            }
            let input = match &c.input {
                // Calls nested inside the input are bound too.
                Some(Input::Plan(input)) => Some(Input::Plan(bind(
                    input.clone().replace_params_with_values(params)?,
                    params,
                )?)),
                other => other.clone(),
            };
            let compute = match &c.deferred {
                Some(d) => d.compute(Some(params))?.ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal(
                        "bound options without values".into(),
                    )
                })?,
                None => c.compute.clone(),
            };
            let bound = Computed {
                name: c.name,
                input,
                schema: c.schema.clone(),
                compute,
                deferred: None,
            };
            let mut scan = scan.clone();
            scan.source = provider_as_source(Arc::new(bound));
            Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
        })
        .map(|t| t.data)
    }
}

impl fmt::Debug for Computed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Computed")
            .field("name", &self.name)
            .field("input", &self.input)
            .finish()
    }
}

#[async_trait]
impl TableProvider for Computed {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = match &self.input {
            Some(input) => Some(input.physical_plan(state).await?),
            None => None,
        };
        Ok(Arc::new(ComputedExec::new(
            self.name,
            input,
            self.schema.clone(),
            projection.cloned(),
            self.compute.clone(),
        )?))
    }
}

/// Runs a relation function: collects its input (all partitions), computes the rows off the
/// async threads (solvers, simulations and training are CPU-bound) and streams out each batch
/// as the function emits it. A panic in the function fails the query, not the server.
pub struct ComputedExec {
    name: &'static str,
    input: Option<Arc<dyn ExecutionPlan>>,
    /// The function's full output schema; `projection` picks the columns emitted.
    full_schema: SchemaRef,
    projection: Option<Vec<usize>>,
    compute: Compute,
    properties: Arc<PlanProperties>,
}

impl ComputedExec {
    fn new(
        name: &'static str,
        input: Option<Arc<dyn ExecutionPlan>>,
        full_schema: SchemaRef,
        projection: Option<Vec<usize>>,
        compute: Compute,
    ) -> Result<ComputedExec> {
        let schema = match &projection {
            Some(p) => Arc::new(full_schema.project(p)?),
            None => full_schema.clone(),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(ComputedExec {
            name,
            input,
            full_schema,
            projection,
            compute,
            properties,
        })
    }
}

impl fmt::Debug for ComputedExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComputedExec")
            .field("name", &self.name)
            .finish()
    }
}

impl DisplayAs for ComputedExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ComputedExec: {}", self.name)
    }
}

impl ExecutionPlan for ComputedExec {
    fn name(&self) -> &'static str {
        "ComputedExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.input.iter().collect()
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
        Ok(Arc::new(ComputedExec::new(
            self.name,
            children.into_iter().next(),
            self.full_schema.clone(),
            self.projection.clone(),
            self.compute.clone(),
        )?))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "{}: no partition {partition}",
                self.name
            )));
        }
        let input = self.input.clone();
        let compute = self.compute.clone();
        let projection = self.projection.clone();
        let name = self.name;
        let rows = async move {
            let (batches, reservation) = match input {
                Some(input) => collect_reserved(name, input, context).await?,
                None => (
                    Vec::new(),
                    MemoryConsumer::new(name).register(context.memory_pool()),
                ),
            };
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
            let probe = tx.clone();
            let cancel = Cancellation(Arc::new(move || probe.is_closed()));
            tokio::task::spawn_blocking(move || {
                let _reservation = reservation;
                let mut emit = |batch: RecordBatch| -> Result<()> {
                    let batch = match &projection {
                        Some(p) => batch.project(p)?,
                        None => batch,
                    };
                    tx.blocking_send(Ok(batch)).map_err(|_| {
                        DataFusionError::Execution(format!("{name}: the query was cancelled"))
                    })
                };
                let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    compute(&batches, &mut emit, &cancel)
                }));
                let failure = match outcome {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e),
                    Err(_) => Some(DataFusionError::Internal(format!(
                        "{name} failed unexpectedly (a bug: please report it)"
                    ))),
                };
                if let Some(e) = failure {
                    let _ = tx.blocking_send(Err(e));
                }
            });
            Ok::<_, DataFusionError>(futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|item| (item, rx))
            }))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            futures::stream::once(rows).try_flatten(),
        )))
    }
}

/// Plans calls of the registered [`RelationFunction`]s in FROM clauses.
#[derive(Debug)]
pub struct RelationFunctions {
    functions: Vec<Arc<dyn RelationFunction>>,
}

impl fmt::Display for RelationFunctions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("flashsql relation functions")
    }
}

impl RelationFunctions {
    pub fn new(functions: Vec<Arc<dyn RelationFunction>>) -> RelationFunctions {
        RelationFunctions { functions }
    }
}

fn literal(
    function: &str,
    context: &mut dyn RelationPlannerContext,
    e: ast::Expr,
) -> Result<OptionValue> {
    let not_literal = |other: Expr| {
        user_error(format!(
            "{function}: options take literal values or bind parameters ($1), got {other}"
        ))
    };
    match context.sql_to_expr(e, &DFSchema::empty())? {
        Expr::Literal(v, _) => Ok(OptionValue::Value(v)),
        Expr::Placeholder(p) => Ok(OptionValue::Parameter(p.id)),
        Expr::Negative(inner) => match *inner {
            Expr::Literal(v, _) => Ok(OptionValue::Value(
                ScalarValue::new_zero(&v.data_type())?.sub(&v)?,
            )),
            other => Err(not_literal(other)),
        },
        other => Err(not_literal(other)),
    }
}

impl RelationPlanner for RelationFunctions {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> Result<RelationPlanning> {
        // Only calls of our functions are ours; everything else passes through untouched.
        let called = match &relation {
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            } => name
                .0
                .last()
                .and_then(|p| p.as_ident())
                .map(|i| i.value.to_ascii_lowercase()),
            _ => None,
        };
        let function = called.and_then(|c| self.functions.iter().find(|f| f.name() == c));
        let (
            Some(function),
            TableFactor::Table {
                alias,
                args: Some(TableFunctionArgs { args, .. }),
                ..
            },
        ) = (function, &relation)
        else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let (alias, args) = (alias.clone(), args.clone());
        let fname = function.name();
        let mut input = None;
        let mut named = Vec::new();
        let mut positional = function.positional().iter();
        for a in args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(e))
                    if !matches!(e, ast::Expr::Subquery(_)) && positional.len() > 0 =>
                {
                    if let Some(option) = positional.next() {
                        named.push((option.to_string(), literal(fname, context, e)?));
                    }
                }
                FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Subquery(q)))
                    if function.takes_input() && input.is_none() =>
                {
                    input = Some(Input::Plan(context.plan(TableFactor::Derived {
                        lateral: false,
                        subquery: q,
                        alias: None,
                        sample: None,
                    })?));
                }
                FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Value(v)))
                    if function.takes_input() && input.is_none() =>
                {
                    let ast::Value::SingleQuotedString(table) = &v.value else {
                        return Err(user_error(format!(
                            "{fname}: the first argument is a subquery (SELECT …) or a table name in quotes"
                        )));
                    };
                    input = Some(Input::Table(TableReference::from(table.as_str())));
                }
                FunctionArg::Named {
                    name,
                    arg: FunctionArgExpr::Expr(e),
                    ..
                }
                | FunctionArg::ExprNamed {
                    name: ast::Expr::Identifier(name),
                    arg: FunctionArgExpr::Expr(e),
                    ..
                } => {
                    named.push((name.value.to_ascii_lowercase(), literal(fname, context, e)?));
                }
                other => {
                    return Err(user_error(format!(
                        "{fname}: unexpected argument {other}; write {}",
                        function.usage()
                    )));
                }
            }
        }
        if function.takes_input() && input.is_none() {
            return Err(user_error(format!(
                "{fname}: the first argument must be the input: a subquery (SELECT …) or a table name in quotes; write {}",
                function.usage()
            )));
        }
        if let Some((other, _)) = named
            .iter()
            .find(|(n, _)| !function.option_names().contains(&n.as_str()))
        {
            return Err(user_error(format!(
                "{fname}: unknown option '{other}'; the options are {}",
                function.option_names().join(", ")
            )));
        }
        // Options read now; those given as bind parameters once the statement is bound.
        let call = Deferred {
            function: function.clone(),
            named,
        };
        let (compute, deferred) = match call.compute(None)? {
            Some(compute) => (compute, None),
            None => (Deferred::unbound(fname), Some(call)),
        };
        let provider = Arc::new(Computed {
            name: fname,
            input,
            schema: function.schema(),
            compute,
            deferred,
        });
        // Each call scans under its own name: two calls with the same arguments in one query
        // are two relations (the optimizer merges scans it takes for the same table). Without
        // an alias the relation is called after the function, as in PostgreSQL.
        static CALLS: AtomicU64 = AtomicU64::new(0);
        let scan_name = format!("{fname}_{}", CALLS.fetch_add(1, Ordering::Relaxed));
        let plan =
            LogicalPlanBuilder::scan(scan_name, provider_as_source(provider), None)?.build()?;
        let alias = alias.or_else(|| {
            Some(ast::TableAlias {
                explicit: false,
                name: ast::Ident::new(fname),
                columns: vec![],
                at: None,
            })
        });
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan, alias,
        ))))
    }
}
