//! The SQL faces of the sale module: `simulate_flash_sale(…)` and `next_discounts((SELECT …), …)`.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch, StringArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Float64Type, Int64Type, Schema, SchemaRef};
use datafusion::error::Result;

use super::SaleError;
use super::gvr::Exponential;
use super::posterior::BetaArm;
use super::simulate::{Scenario, Simulation};
use super::single::SingleProduct;
use super::thompson::{Estimate, ItemState, next_period};
use super::world::WorldSale;
use crate::optimize::{OBJECTIVES, Objective};
use crate::relation::{
    Cancellation, Compute, Options, RelationFunction, all_at_once, all_at_once_cancellable,
    required_column, row_error, sort_levels, user_error,
};
use flashsql_datasets::Scale;

/// `simulate_flash_sale(scenario => …, policy => …, horizon => T, inventory_ratio => r,
/// trials => n, seed => s)`: one row per simulated sale.
#[derive(Debug)]
pub struct SimulateFlashSale;

const SIMULATE: &str = "simulate_flash_sale";
const SIMULATE_USAGE: &str = "simulate_flash_sale(scenario => 'ferreira_single'|'gvr_exponential'|'world', policy => <name>, horizon => <number>, inventory_ratio => <number>, trials => <count>, seed => <count>, level => <count> for policy 'fixed', a => <number>, alpha => <number> for gvr_exponential, scale => 'tiny'|'small', world_seed => <count>, discount => <number> for world)";

impl RelationFunction for SimulateFlashSale {
    fn name(&self) -> &'static str {
        SIMULATE
    }

    fn usage(&self) -> &'static str {
        SIMULATE_USAGE
    }

    fn takes_input(&self) -> bool {
        false
    }

    fn option_names(&self) -> &'static [&'static str] {
        &[
            "scenario",
            "policy",
            "horizon",
            "inventory_ratio",
            "trials",
            "seed",
            "level",
            "a",
            "alpha",
            "scale",
            "world_seed",
            "discount",
        ]
    }

    fn schema(&self) -> SchemaRef {
        let f = |n: &str| Field::new(n, DataType::Float64, false);
        Arc::new(Schema::new(vec![
            Field::new("trial", DataType::Int64, false),
            Field::new("policy", DataType::Utf8, false),
            f("revenue"),
            f("profit"),
            f("upper_bound"),
            f("pct_of_bound"),
            Field::new("units_sold", DataType::Int64, false),
            Field::new("inventory", DataType::Int64, false),
            Field::new("clairvoyant_revenue", DataType::Float64, true),
        ]))
    }

    fn bind(&self, mut o: Options) -> Result<Compute> {
        let scenario = match o.text("scenario")?.as_deref() {
            None | Some("ferreira_single") => Scenario::Single(SingleProduct::ferreira()),
            Some("gvr_exponential") => Scenario::Exponential(Exponential {
                a: o.number("a")?.unwrap_or(10.0),
                alpha: o.number("alpha")?.unwrap_or(1.0),
            }),
            Some("world") => {
                let scale: Scale = o
                    .text("scale")?
                    .as_deref()
                    .unwrap_or("tiny")
                    .parse()
                    .map_err(|e| user_error(format!("{SIMULATE}: {e}")))?;
                if !matches!(scale, Scale::Tiny | Scale::Small) {
                    return Err(user_error(format!(
                        "{SIMULATE}: the world scenario runs on the tiny or small world, not {scale}"
                    )));
                }
                let world_seed = o.count("world_seed")?.unwrap_or(42);
                let discount = o.number("discount")?.unwrap_or(0.1);
                if !(0.0..=1.0).contains(&discount) {
                    return Err(user_error(format!(
                        "{SIMULATE}: discount must be in [0, 1], got {discount}"
                    )));
                }
                let world = WorldSale::shared(scale, world_seed, discount)
                    .map_err(|e| user_error(format!("{SIMULATE}: {e}")))?;
                Scenario::World(world)
            }
            Some(other) => {
                return Err(user_error(format!(
                    "{SIMULATE}: scenario '{other}' is not known: use 'ferreira_single', 'gvr_exponential' or 'world'"
                )));
            }
        };
        let policy = o.text("policy")?.ok_or_else(|| {
            user_error(format!(
                "{SIMULATE}: the option policy => <name> is required: {}",
                super::simulate::policies(&scenario)
            ))
        })?;
        let sim = Simulation {
            scenario,
            policy,
            horizon: o.number("horizon")?.unwrap_or(1000.0),
            inventory_ratio: o.number("inventory_ratio")?.unwrap_or(0.25),
            trials: o.count("trials")?.unwrap_or(100) as usize,
            seed: o.count("seed")?.unwrap_or(0),
        };
        let level = o.count("level")?.unwrap_or(0) as usize;
        o.finish()?;
        // Bad options fail when the query is planned; nothing is simulated then.
        sim.check(level)
            .map_err(|e| user_error(format!("{SIMULATE}: {e}")))?;
        let schema = self.schema();
        let world = matches!(sim.scenario, Scenario::World(_));
        Ok(all_at_once_cancellable(move |_: &[RecordBatch], cancel| {
            let rows = sim
                .run_until(level, &|| cancel.is_cancelled())
                .map_err(|e| match e {
                    SaleError::Cancelled => Cancellation::error(SIMULATE),
                    other => user_error(format!("{SIMULATE}: {other}")),
                })?;
            let f = |g: &dyn Fn(&super::simulate::TrialResult) -> f64| -> ArrayRef {
                Arc::new(Float64Array::from_iter_values(rows.iter().map(g)))
            };
            Ok(RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from_iter_values(
                        rows.iter().map(|r| r.trial as i64),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|_| sim.policy.as_str()),
                    )),
                    f(&|r| r.revenue),
                    f(&|r| r.profit),
                    f(&|r| r.upper_bound),
                    f(&|r| {
                        // The world's bound is on expected profit, the others' on revenue.
                        let earned = if world { r.profit } else { r.revenue };
                        if r.upper_bound > 0.0 {
                            100.0 * earned / r.upper_bound
                        } else {
                            100.0
                        }
                    }),
                    Arc::new(Int64Array::from_iter_values(
                        rows.iter().map(|r| r.units as i64),
                    )),
                    Arc::new(Int64Array::from_iter_values(
                        rows.iter().map(|r| r.inventory as i64),
                    )),
                    Arc::new(Float64Array::from_iter(
                        rows.iter().map(|r| r.clairvoyant_revenue),
                    )),
                ],
            )?)
        }))
    }
}

/// `next_discounts((SELECT …), periods_left => n, budget => b, objective => …, seed => s)`:
/// the Thompson-sampling step a scheduler runs each period.
#[derive(Debug)]
pub struct NextDiscounts;

const NEXT: &str = "next_discounts";
const NEXT_NEEDS: &str =
    "item_id, discount, price, inventory, traffic, shown, sold (and unit_cost for profit)";
const NEXT_USAGE: &str = "next_discounts((SELECT item_id, discount, price, inventory, traffic, shown, sold [, unit_cost] …) | 'table', periods_left => <count>, budget => <number>, objective => 'revenue'|'profit', estimate => 'sample'|'mean', seed => <count>)";

#[derive(Debug, Clone, Copy, PartialEq)]
struct NextOptions {
    periods_left: f64,
    budget: Option<f64>,
    profit: bool,
    estimate: Estimate,
    seed: u64,
}

/// One (item, level) input row, validated.
struct LevelRow {
    discount: f64,
    price: f64,
    unit_cost: f64,
    inventory: f64,
    traffic: f64,
    shown: f64,
    sold: f64,
}

fn next_discounts(batches: &[RecordBatch], o: &NextOptions) -> Result<RecordBatch> {
    let f64t = DataType::Float64;
    let mut rows: BTreeMap<i64, Vec<LevelRow>> = BTreeMap::new();
    for b in batches {
        let need = |name: &str, t: &DataType| -> Result<ArrayRef> {
            required_column(NEXT, b, name, t, NEXT_NEEDS)
        };
        let ids = need("item_id", &DataType::Int64)?;
        let ids = ids.as_primitive::<Int64Type>();
        let mut arrays = Vec::new();
        for name in ["discount", "price", "inventory", "traffic", "shown", "sold"] {
            arrays.push((name, need(name, &f64t)?));
        }
        let cols: Vec<(&str, &Float64Array)> = arrays
            .iter()
            .map(|(name, a)| (*name, a.as_primitive::<Float64Type>()))
            .collect();
        let cost = if o.profit {
            Some(need("unit_cost", &f64t)?)
        } else {
            None
        };
        for r in 0..b.num_rows() {
            if ids.is_null(r) {
                return Err(row_error(format!("{NEXT}: item_id must not be NULL")));
            }
            let id = ids.value(r);
            let mut v = [0.0; 6];
            for (j, (name, c)) in cols.iter().enumerate() {
                // No observations yet is the common case: NULL shown/sold count as 0.
                let x = if c.is_null(r) && (*name == "shown" || *name == "sold") {
                    0.0
                } else if c.is_null(r) {
                    return Err(row_error(format!(
                        "{NEXT}: item_id {id}: {name} must not be NULL"
                    )));
                } else {
                    c.value(r)
                };
                if !(x.is_finite() && x >= 0.0) {
                    return Err(row_error(format!(
                        "{NEXT}: item_id {id}: {name} must be a finite number >= 0, got {x}"
                    )));
                }
                v[j] = x;
            }
            let [discount, price, inventory, traffic, shown, sold] = v;
            if discount > 1.0 || price <= 0.0 || sold > shown {
                return Err(row_error(format!(
                    "{NEXT}: item_id {id}: needs discount in [0, 1], price > 0 and sold <= shown (got discount {discount}, price {price}, shown {shown}, sold {sold})"
                )));
            }
            let unit_cost = match &cost {
                Some(c) => {
                    let c = c.as_primitive::<Float64Type>();
                    if c.is_null(r) || !(c.value(r).is_finite() && c.value(r) >= 0.0) {
                        return Err(row_error(format!(
                            "{NEXT}: item_id {id}: unit_cost must be a finite number >= 0"
                        )));
                    }
                    c.value(r)
                }
                None => 0.0,
            };
            rows.entry(id).or_default().push(LevelRow {
                discount,
                price,
                unit_cost,
                inventory,
                traffic,
                shown,
                sold,
            });
        }
    }
    sort_levels(NEXT, &mut rows, |l| l.discount)?;
    let mut items = Vec::with_capacity(rows.len());
    for (&id, levels) in &rows {
        // Inventory and traffic belong to the item: every level row must say the same.
        if let Some(l) = levels
            .iter()
            .find(|l| l.inventory != levels[0].inventory || l.traffic != levels[0].traffic)
        {
            return Err(row_error(format!(
                "{NEXT}: item_id {id}: inventory and traffic must be the same on all its rows (got inventory {} and {}, traffic {} and {})",
                levels[0].inventory, l.inventory, levels[0].traffic, l.traffic
            )));
        }
        items.push(ItemState {
            id,
            unit_value: levels
                .iter()
                .map(|l| l.price * (1.0 - l.discount) - l.unit_cost)
                .collect(),
            unit_subsidy: levels.iter().map(|l| l.price * l.discount).collect(),
            arms: levels
                .iter()
                .map(|l| BetaArm::observed(BetaArm::UNIFORM, l.shown, l.sold))
                .collect(),
            traffic: levels[0].traffic,
            inventory: levels[0].inventory,
        });
    }
    let step = next_period(&items, o.periods_left, o.budget, o.estimate, o.seed);
    let schema = next_schema();
    let level_of = |d: &super::thompson::Decision| d.level.map(|k| &rows[&d.id][k]);
    let ds = &step.decisions;
    Ok(RecordBatch::try_new(
        schema,
        vec![
            Arc::new(Int64Array::from_iter_values(ds.iter().map(|d| d.id))),
            Arc::new(Float64Array::from_iter(
                ds.iter().map(|d| level_of(d).map(|l| l.discount)),
            )),
            Arc::new(Float64Array::from_iter_values(
                ds.iter().map(|d| d.probability),
            )),
            Arc::new(Float64Array::from_iter_values(ds.iter().map(|d| d.sampled))),
            Arc::new(Float64Array::from_iter_values(
                ds.iter()
                    .map(|d| level_of(d).map_or(0.0, |l| l.traffic * d.sampled)),
            )),
            Arc::new(Float64Array::from(vec![step.shadow_price; ds.len()])),
            Arc::new(Float64Array::from(vec![step.lp_value; ds.len()])),
        ],
    )?)
}

fn next_schema() -> SchemaRef {
    let f = |n: &str| Field::new(n, DataType::Float64, false);
    Arc::new(Schema::new(vec![
        Field::new("item_id", DataType::Int64, false),
        Field::new("discount", DataType::Float64, true),
        f("probability"),
        f("sampled_conversion"),
        f("expected_units"),
        f("shadow_price"),
        f("lp_value"),
    ]))
}

impl RelationFunction for NextDiscounts {
    fn name(&self) -> &'static str {
        NEXT
    }

    fn usage(&self) -> &'static str {
        NEXT_USAGE
    }

    fn takes_input(&self) -> bool {
        true
    }

    fn option_names(&self) -> &'static [&'static str] {
        &["periods_left", "budget", "objective", "estimate", "seed"]
    }

    fn schema(&self) -> SchemaRef {
        next_schema()
    }

    fn bind(&self, mut o: Options) -> Result<Compute> {
        let periods_left = o.count("periods_left")?.ok_or_else(|| {
            user_error(format!(
                "{NEXT}: the option periods_left => <count> is required ({NEXT_USAGE})"
            ))
        })?;
        if periods_left == 0 {
            return Err(user_error(format!(
                "{NEXT}: periods_left must be at least 1"
            )));
        }
        let budget = o.number("budget")?;
        if budget.is_some_and(|b| b < 0.0) {
            return Err(user_error(format!("{NEXT}: budget must be >= 0")));
        }
        let profit = o.choice("objective", OBJECTIVES)? == Objective::Profit;
        let estimate = o.choice(
            "estimate",
            &[("sample", Estimate::Sample), ("mean", Estimate::Mean)],
        )?;
        let seed = o.count("seed")?.unwrap_or(0);
        o.finish()?;
        let opts = NextOptions {
            periods_left: periods_left as f64,
            budget,
            profit,
            estimate,
            seed,
        };
        Ok(all_at_once(move |batches: &[RecordBatch]| {
            next_discounts(batches, &opts)
        }))
    }
}
