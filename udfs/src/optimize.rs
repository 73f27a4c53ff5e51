//! `optimize_discounts((SELECT …demand curves…), budget => B, objective => 'profit',
//! solver => 'exact')`: one discount per item maximising expected revenue or profit within a
//! discount budget, with inventory capping the units sold.
//!
//! DataFusion's table functions receive literals only, so the function is planned by a
//! relation planner: it plans the subquery argument itself and reads the named options. The
//! result is computed when the query is physically planned (the curves are collected and
//! solved then) and served from memory.
//!
//! Input columns (by name; other columns are ignored):
//! `item_id` (integer), `discount` (fraction of the price), `expected_units` (≥ 0),
//! `price` (> 0), `unit_cost` (≥ 0, required for `objective => 'profit'`), `inventory`
//! (≥ 0, optional; NULL = unlimited).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::catalog::{MemTable, Session, TableProvider};
use datafusion::common::{ScalarValue, TableReference};
use datafusion::datasource::provider_as_source;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::SessionState;
use datafusion::logical_expr::planner::{
    PlannedRelation, RelationPlanner, RelationPlannerContext, RelationPlanning,
};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder, TableType};
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::sql::sqlparser::ast::{
    self as ast, FunctionArg, FunctionArgExpr, TableFactor, TableFunctionArgs,
};

use crate::knapsack::{ItemCurve, Plan, solve_exact, solve_lagrangian};

pub const NAME: &str = "optimize_discounts";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    Revenue,
    Profit,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Solver {
    Lagrangian,
    Exact,
}

/// The named options of `optimize_discounts`.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    pub budget: f64,
    pub objective: Objective,
    pub solver: Solver,
    /// Relative duality gap at which the Lagrangian solver stops.
    pub tolerance: f64,
}

fn user_error(msg: impl Into<String>) -> DataFusionError {
    DataFusionError::Plan(msg.into())
}

const OPTIONS_HELP: &str = "budget => <number>, objective => 'revenue'|'profit', solver => 'exact'|'lagrangian', tolerance => <number>";

impl Options {
    fn parse(named: &[(String, ScalarValue)]) -> Result<Options> {
        let mut budget = None;
        let mut objective = Objective::Revenue;
        let mut solver = Solver::Exact;
        let mut tolerance = 1e-3;
        let number = |name: &str, v: &ScalarValue| -> Result<f64> {
            match v.cast_to(&DataType::Float64) {
                Ok(ScalarValue::Float64(Some(x))) => Ok(x),
                _ => Err(user_error(format!(
                    "{NAME}: option {name} must be a number, got {v}"
                ))),
            }
        };
        let text = |name: &str, v: &ScalarValue| -> Result<String> {
            match v {
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)) => Ok(s.to_ascii_lowercase()),
                _ => Err(user_error(format!(
                    "{NAME}: option {name} must be a string, got {v}"
                ))),
            }
        };
        for (name, v) in named {
            match name.as_str() {
                "budget" => budget = Some(number(name, v)?),
                "tolerance" => tolerance = number(name, v)?,
                "objective" => {
                    objective = match text(name, v)?.as_str() {
                        "revenue" => Objective::Revenue,
                        "profit" => Objective::Profit,
                        other => {
                            return Err(user_error(format!(
                                "{NAME}: objective '{other}' is not known: use 'revenue' or 'profit'"
                            )));
                        }
                    }
                }
                "solver" => {
                    solver = match text(name, v)?.as_str() {
                        "exact" => Solver::Exact,
                        "lagrangian" => Solver::Lagrangian,
                        other => {
                            return Err(user_error(format!(
                                "{NAME}: solver '{other}' is not known: use 'exact' or 'lagrangian'"
                            )));
                        }
                    }
                }
                other => {
                    return Err(user_error(format!(
                        "{NAME}: unknown option '{other}'; the options are {OPTIONS_HELP}"
                    )));
                }
            }
        }
        let budget = budget.ok_or_else(|| {
            user_error(format!(
                "{NAME}: the option budget => <number> is required ({OPTIONS_HELP})"
            ))
        })?;
        if !(tolerance > 0.0 && tolerance < 1.0) {
            return Err(user_error(format!(
                "{NAME}: tolerance must be in (0, 1), got {tolerance}"
            )));
        }
        Ok(Options {
            budget,
            objective,
            solver,
            tolerance,
        })
    }
}

/// One input row, validated.
#[derive(Debug, Clone, Copy)]
struct Level {
    discount: f64,
    units: f64,
    revenue: f64,
    profit: f64,
    subsidy: f64,
}

/// Column `name` read as `target`; `None` if the input has no such column.
fn column(batch: &RecordBatch, name: &str, target: &DataType) -> Result<Option<ArrayRef>> {
    let Ok(i) = batch.schema().index_of(name) else {
        return Ok(None);
    };
    cast(batch.column(i), target).map(Some).map_err(|e| {
        user_error(format!(
            "{NAME}: column {name} cannot be read as {target}: {e}"
        ))
    })
}

fn required(batch: &RecordBatch, name: &str, target: &DataType) -> Result<ArrayRef> {
    column(batch, name, target)?.ok_or_else(|| {
        user_error(format!(
            "{NAME}: the input has no column \"{name}\"; it needs item_id, discount, expected_units, price, and unit_cost for profit, inventory optionally"
        ))
    })
}

/// Groups the input rows into per-item curves, ordered by item id and discount.
fn curves(batches: &[RecordBatch], objective: Objective) -> Result<BTreeMap<i64, Vec<Level>>> {
    let mut items: BTreeMap<i64, Vec<Level>> = BTreeMap::new();
    let f64t = DataType::Float64;
    for b in batches {
        let ids = required(b, "item_id", &DataType::Int64)?;
        let ids = ids.as_primitive::<Int64Type>();
        let disc = required(b, "discount", &f64t)?;
        let disc = disc.as_primitive::<Float64Type>();
        let units = required(b, "expected_units", &f64t)?;
        let units = units.as_primitive::<Float64Type>();
        let price = required(b, "price", &f64t)?;
        let price = price.as_primitive::<Float64Type>();
        let cost = match objective {
            Objective::Profit => Some(required(b, "unit_cost", &f64t)?),
            Objective::Revenue => column(b, "unit_cost", &f64t)?,
        };
        let cost = cost.as_ref().map(|c| c.as_primitive::<Float64Type>());
        let inventory = column(b, "inventory", &f64t)?;
        let inventory = inventory.as_ref().map(|c| c.as_primitive::<Float64Type>());
        for r in 0..b.num_rows() {
            let at = |what: &str| {
                user_error(format!(
                    "{NAME}: row with item_id {} and discount {}: {what}",
                    if ids.is_null(r) {
                        "NULL".to_string()
                    } else {
                        ids.value(r).to_string()
                    },
                    if disc.is_null(r) {
                        "NULL".to_string()
                    } else {
                        disc.value(r).to_string()
                    }
                ))
            };
            if ids.is_null(r) || disc.is_null(r) || units.is_null(r) || price.is_null(r) {
                return Err(at(
                    "item_id, discount, expected_units and price must not be NULL",
                ));
            }
            let (d, u, p) = (disc.value(r), units.value(r), price.value(r));
            if !(d.is_finite() && (0.0..=1.0).contains(&d)) {
                return Err(at("discount must be a fraction in [0, 1]"));
            }
            if !(u.is_finite() && u >= 0.0) {
                return Err(at("expected_units must be a finite number >= 0"));
            }
            if !(p.is_finite() && p > 0.0) {
                return Err(at("price must be a finite number > 0"));
            }
            let c = match cost {
                Some(c) if !c.is_null(r) => c.value(r),
                Some(_) => return Err(at("unit_cost must not be NULL")),
                None => 0.0,
            };
            if !(c.is_finite() && c >= 0.0) {
                return Err(at("unit_cost must be a finite number >= 0"));
            }
            let cap = match inventory {
                Some(inv) if !inv.is_null(r) => {
                    let v = inv.value(r);
                    if !(v.is_finite() && v >= 0.0) {
                        return Err(at("inventory must be a finite number >= 0"));
                    }
                    v
                }
                _ => f64::INFINITY,
            };
            let sold = u.min(cap);
            let paid = p * (1.0 - d);
            items.entry(ids.value(r)).or_default().push(Level {
                discount: d,
                units: sold,
                revenue: paid * sold,
                profit: (paid - c) * sold,
                subsidy: d * p * sold,
            });
        }
    }
    for levels in items.values_mut() {
        levels.sort_by(|a, b| a.discount.total_cmp(&b.discount));
    }
    Ok(items)
}

fn output_schema() -> SchemaRef {
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Int64, false),
        f("discount"),
        f("expected_units"),
        f("revenue"),
        f("profit"),
        f("subsidy"),
        f("shadow_price"),
        f("objective"),
        f("upper_bound"),
        f("gap"),
    ]))
}

/// Solves the curves and builds the result rows.
pub fn optimize(batches: &[RecordBatch], options: &Options) -> Result<RecordBatch> {
    let items = curves(batches, options.objective)?;
    let problem: Vec<ItemCurve> = items
        .values()
        .map(|levels| ItemCurve {
            values: levels
                .iter()
                .map(|l| match options.objective {
                    Objective::Revenue => l.revenue,
                    Objective::Profit => l.profit,
                })
                .collect(),
            costs: levels.iter().map(|l| l.subsidy).collect(),
        })
        .collect();
    let plan: Plan = match options.solver {
        Solver::Exact => solve_exact(&problem, options.budget),
        Solver::Lagrangian => solve_lagrangian(&problem, options.budget, options.tolerance),
    }
    .map_err(|e| user_error(format!("{NAME}: {e}")))?;
    let chosen: Vec<(i64, Level)> = items
        .iter()
        .zip(&plan.choice)
        .map(|((id, levels), &k)| (*id, levels[k]))
        .collect();
    let n = chosen.len();
    let col = |g: fn(&Level) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(
            chosen.iter().map(|(_, l)| g(l)),
        ))
    };
    let constant = |v: f64| -> ArrayRef { Arc::new(Float64Array::from(vec![v; n])) };
    Ok(RecordBatch::try_new(
        output_schema(),
        vec![
            Arc::new(Int64Array::from_iter_values(
                chosen.iter().map(|(id, _)| *id),
            )),
            col(|l| l.discount),
            col(|l| l.units),
            col(|l| l.revenue),
            col(|l| l.profit),
            col(|l| l.subsidy),
            constant(plan.shadow_price),
            constant(plan.objective),
            constant(plan.upper_bound),
            constant(plan.gap()),
        ],
    )?)
}

/// Where the demand curves come from.
#[derive(Debug)]
enum Input {
    Plan(LogicalPlan),
    /// A table named in a string: resolved when the query runs, since names inside function
    /// arguments are not resolved with the rest of the statement.
    Table(TableReference),
}

/// The relation `optimize_discounts(…)` stands for: its input and options.
#[derive(Debug)]
struct OptimizeProvider {
    input: Input,
    options: Options,
}

async fn input_plan(input: &Input, state: &dyn Session) -> Result<LogicalPlan> {
    match input {
        Input::Plan(p) => Ok(p.clone()),
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
            LogicalPlanBuilder::scan(r.clone(), provider_as_source(table), None)?.build()
        }
    }
}

#[async_trait]
impl TableProvider for OptimizeProvider {
    fn schema(&self) -> SchemaRef {
        output_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = input_plan(&self.input, state).await?;
        let physical = state.create_physical_plan(&plan).await?;
        let batches = collect(physical, state.task_ctx()).await?;
        let result = optimize(&batches, &self.options)?;
        let table = MemTable::try_new(output_schema(), vec![vec![result]])?;
        table.scan(state, projection, filters, limit).await
    }
}

/// Plans `optimize_discounts(…)` in FROM clauses.
#[derive(Debug, Default)]
pub struct OptimizePlanner;

impl fmt::Display for OptimizePlanner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(NAME)
    }
}

fn literal(context: &mut dyn RelationPlannerContext, e: ast::Expr) -> Result<ScalarValue> {
    let schema = datafusion::common::DFSchema::empty();
    match context.sql_to_expr(e, &schema)? {
        Expr::Literal(v, _) => Ok(v),
        Expr::Negative(inner) => match *inner {
            Expr::Literal(v, _) => ScalarValue::Float64(Some(0.0)).sub(&v),
            other => Err(user_error(format!(
                "{NAME}: options take literal values, got {other}"
            ))),
        },
        other => Err(user_error(format!(
            "{NAME}: options take literal values, got {other}"
        ))),
    }
}

impl RelationPlanner for OptimizePlanner {
    fn plan_relation(
        &self,
        relation: TableFactor,
        context: &mut dyn RelationPlannerContext,
    ) -> Result<RelationPlanning> {
        let TableFactor::Table {
            name,
            alias,
            args: Some(TableFunctionArgs { args, .. }),
            ..
        } = relation
        else {
            return Ok(RelationPlanning::Original(Box::new(relation)));
        };
        let is_ours = name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .is_some_and(|i| i.value.eq_ignore_ascii_case(NAME));
        if !is_ours {
            return Ok(RelationPlanning::Original(Box::new(TableFactor::Table {
                name,
                alias,
                args: Some(TableFunctionArgs {
                    args,
                    settings: None,
                }),
                with_hints: vec![],
                version: None,
                with_ordinality: false,
                partitions: vec![],
                json_path: None,
                sample: None,
                index_hints: vec![],
            })));
        }
        let mut input = None;
        let mut named = Vec::new();
        for a in args {
            match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Subquery(q)))
                    if input.is_none() =>
                {
                    input = Some(Input::Plan(context.plan(TableFactor::Derived {
                        lateral: false,
                        subquery: q,
                        alias: None,
                        sample: None,
                    })?));
                }
                FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Value(v)))
                    if input.is_none() =>
                {
                    let ast::Value::SingleQuotedString(table) = &v.value else {
                        return Err(user_error(format!(
                            "{NAME}: the first argument is a subquery (SELECT …) or a table name in quotes"
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
                    named.push((name.value.to_ascii_lowercase(), literal(context, e)?));
                }
                other => {
                    return Err(user_error(format!(
                        "{NAME}: unexpected argument {other}; write {NAME}((SELECT …), {OPTIONS_HELP})"
                    )));
                }
            }
        }
        let input = input.ok_or_else(|| {
            user_error(format!("{NAME}: the first argument must be the demand curves: a subquery (SELECT …) or a table name in quotes"))
        })?;
        let options = Options::parse(&named)?;
        let provider = Arc::new(OptimizeProvider { input, options });
        let plan = LogicalPlanBuilder::scan(NAME, provider_as_source(provider), None)?.build()?;
        Ok(RelationPlanning::Planned(Box::new(PlannedRelation::new(
            plan, alias,
        ))))
    }
}

/// Registers the relation planner on a session.
pub fn register(ctx: &datafusion::prelude::SessionContext) -> Result<()> {
    ctx.register_relation_planner(Arc::new(OptimizePlanner))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curves_batch() -> RecordBatch {
        // Two items, three levels each; item 2 has little inventory.
        let schema = Arc::new(Schema::new(vec![
            Field::new("item_id", DataType::Int64, false),
            Field::new("discount", DataType::Float64, false),
            Field::new("expected_units", DataType::Float64, false),
            Field::new("price", DataType::Float64, false),
            Field::new("unit_cost", DataType::Float64, false),
            Field::new("inventory", DataType::Float64, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(vec![1, 1, 1, 2, 2, 2])),
                Arc::new(Float64Array::from(vec![0.0, 0.1, 0.2, 0.0, 0.1, 0.2])),
                Arc::new(Float64Array::from(vec![10.0, 14.0, 20.0, 5.0, 8.0, 12.0])),
                Arc::new(Float64Array::from(vec![10.0; 6])),
                Arc::new(Float64Array::from(vec![5.0; 6])),
                Arc::new(Float64Array::from(vec![
                    None,
                    None,
                    None,
                    Some(6.0),
                    Some(6.0),
                    Some(6.0),
                ])),
            ],
        )
        .unwrap()
    }

    #[test]
    fn closed_form_small_case() {
        // Revenue per level: item 1: 100, 126, 160 (subsidy 0, 14, 40);
        // item 2 capped at 6 units: 50, 54, 48 (subsidy 0, 6, 12).
        // Budget 20: best is item 1 at 10 % (126) + item 2 at 10 % (54) = 180, subsidy 20.
        let opts = Options {
            budget: 20.0,
            objective: Objective::Revenue,
            solver: Solver::Exact,
            tolerance: 1e-3,
        };
        let out = optimize(&[curves_batch()], &opts).unwrap();
        let disc = out
            .column(1)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(disc.values(), &[0.1, 0.1]);
        let obj = out
            .column(7)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert!((obj.value(0) - 180.0).abs() < 1e-9);
        let units = out
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(units.value(1), 6.0, "inventory caps the units");
        // Budget 40 is enough for item 1 at 20 % (160) + item 2 at 0 % (50) = 210.
        let opts = Options {
            budget: 40.0,
            ..opts
        };
        let out = optimize(&[curves_batch()], &opts).unwrap();
        let obj = out
            .column(7)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert!((obj.value(0) - 210.0).abs() < 1e-9);
    }

    #[test]
    fn bad_rows_and_options_are_named() {
        let mut b = curves_batch();
        let mut cols = b.columns().to_vec();
        cols[3] = Arc::new(Float64Array::from(vec![10.0, 10.0, -1.0, 10.0, 10.0, 10.0]));
        b = RecordBatch::try_new(b.schema(), cols).unwrap();
        let opts = Options {
            budget: 20.0,
            objective: Objective::Revenue,
            solver: Solver::Exact,
            tolerance: 1e-3,
        };
        let e = optimize(&[b], &opts).unwrap_err().to_string();
        assert!(
            e.contains("item_id 1 and discount 0.2") && e.contains("price"),
            "{e}"
        );
        let e = Options::parse(&[("budgett".into(), ScalarValue::Float64(Some(1.0)))]).unwrap_err();
        assert!(e.to_string().contains("unknown option 'budgett'"), "{e}");
        let e = Options::parse(&[]).unwrap_err();
        assert!(
            e.to_string().contains("budget => <number> is required"),
            "{e}"
        );
    }
}
