//! `optimize_discounts((SELECT …demand curves…), budget => B, objective => 'profit',
//! solver => 'exact')`: one discount per item maximising expected revenue or profit within a
//! discount budget, with inventory capping the units sold.
//! Planned as a [`RelationFunction`](crate::relation::RelationFunction).
//!
//! Input columns (by name; other columns are ignored):
//! `item_id` (integer), `discount` (fraction of the price), `expected_units` (≥ 0),
//! `price` (> 0), `unit_cost` (≥ 0, required for `objective => 'profit'`), `inventory`
//! (≥ 0, optional; NULL = unlimited).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array, Int64Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use datafusion::error::Result;

use crate::knapsack::{Curves, KnapsackError, Plan, solve_exact, solve_lagrangian};
use crate::relation::{
    Compute, Options as Named, RelationFunction, all_at_once, input_column, required_column,
    row_error, sort_levels, user_error,
};

pub const NAME: &str = "optimize_discounts";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Objective {
    Revenue,
    Profit,
}

/// The `objective => …` option's values (the first is the default).
pub const OBJECTIVES: &[(&str, Objective)] = &[
    ("revenue", Objective::Revenue),
    ("profit", Objective::Profit),
];

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

const USAGE: &str = "optimize_discounts((SELECT …) | 'table', budget => <number>, objective => 'revenue'|'profit', solver => 'exact'|'lagrangian', tolerance => <number>)";

impl Options {
    fn read(mut o: Named) -> Result<Options> {
        let budget = o.required_number("budget")?;
        let objective = o.choice("objective", OBJECTIVES)?;
        let solver = o.choice(
            "solver",
            &[("exact", Solver::Exact), ("lagrangian", Solver::Lagrangian)],
        )?;
        let tolerance = o.number("tolerance")?.unwrap_or(1e-3);
        o.finish()?;
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

const NEEDS: &str =
    "item_id, discount, expected_units, price, and unit_cost for profit, inventory optionally";

fn column(batch: &RecordBatch, name: &str, target: &DataType) -> Result<Option<ArrayRef>> {
    input_column(NAME, batch, name, target)
}

fn required(batch: &RecordBatch, name: &str, target: &DataType) -> Result<ArrayRef> {
    required_column(NAME, batch, name, target, NEEDS)
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
                row_error(format!(
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
    sort_levels(NAME, &mut items, |l| l.discount)?;
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
    let mut problem = Curves::with_capacity(items.len(), items.values().map(Vec::len).sum());
    for levels in items.values() {
        problem.push(levels.iter().map(|l| {
            let value = match options.objective {
                Objective::Revenue => l.revenue,
                Objective::Profit => l.profit,
            };
            (value, l.subsidy)
        }));
    }
    let plan: Plan = match options.solver {
        Solver::Exact => solve_exact(&problem, options.budget),
        Solver::Lagrangian => solve_lagrangian(&problem, options.budget, options.tolerance),
    }
    .map_err(|e| match e {
        KnapsackError::Infeasible { budget, min_cost } => {
            // Name the items that cannot be left undiscounted for free.
            let pricey: Vec<String> = items
                .iter()
                .filter(|(_, levels)| levels.iter().all(|l| l.subsidy > 0.0))
                .take(5)
                .map(|(id, _)| id.to_string())
                .collect();
            user_error(format!(
                "{NAME}: no plan fits the budget {budget}: the items without a free level (no discount-0 row or every level subsidised, e.g. item_id {}) need {min_cost} at least",
                pricey.join(", ")
            ))
        }
        other => user_error(format!("{NAME}: {other}")),
    })?;
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

/// `optimize_discounts` as a relation function.
#[derive(Debug)]
pub struct OptimizeDiscounts;

impl RelationFunction for OptimizeDiscounts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn usage(&self) -> &'static str {
        USAGE
    }

    fn takes_input(&self) -> bool {
        true
    }

    fn option_names(&self) -> &'static [&'static str] {
        &["budget", "objective", "solver", "tolerance"]
    }

    fn schema(&self) -> SchemaRef {
        output_schema()
    }

    fn bind(&self, options: Named) -> Result<Compute> {
        let options = Options::read(options)?;
        Ok(all_at_once(move |batches: &[RecordBatch]| {
            optimize(batches, &options)
        }))
    }
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
        let named = |v: Vec<(&str, f64)>| {
            let v = v
                .into_iter()
                .map(|(n, x)| (n.to_string(), datafusion::common::ScalarValue::from(x)))
                .collect();
            Named::new(NAME, USAGE, v).unwrap()
        };
        let e = Options::read(named(vec![("budget", 1.0), ("budgett", 1.0)])).unwrap_err();
        assert!(
            e.to_string().contains("option 'budgett' does not apply"),
            "{e}"
        );
        let e = Options::read(named(vec![("budget", 1.0), ("tolerance", 2.0)])).unwrap_err();
        assert!(e.to_string().contains("tolerance must be in (0, 1)"), "{e}");
        let e = Options::read(named(vec![])).unwrap_err();
        assert!(
            e.to_string().contains("budget => <number> is required"),
            "{e}"
        );
    }
}
