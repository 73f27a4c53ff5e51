//! The synthetic world as a flash-sale scenario: every (campaign, item) of the generated
//! world is sold again to the same visitors, whose true purchase probability at any discount
//! follows from the logged one (the world's logit is linear in the discount with slope
//! `discount_sensitivity`, see docs/world.md). Two plans spend the same expected subsidy:
//! one uniform discount for every item, and the profit-optimal plan of the exact solver on
//! the true demand curves; simulations draw the same visitors' decisions for both.

use std::collections::HashMap;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};
use flashsql_datasets::world::{DISCOUNT_LEVELS, sigmoid};
use flashsql_datasets::{Dataset, Scale, generate};
use rand::Rng;

use super::SaleError;
use super::posterior::stream;
use crate::knapsack::{Curves, solve_exact};

/// One (campaign, item) on sale: its visitors in arrival order and its economics.
#[derive(Debug, Clone)]
struct SaleItem {
    price: f64,
    unit_cost: f64,
    allotment: u64,
    /// Discount levels allowed for this item.
    levels: Vec<f64>,
    /// Per visitor: (logit at discount 0, discount sensitivity).
    visitors: Vec<(f64, f64)>,
}

impl SaleItem {
    fn expected_units(&self, d: f64) -> f64 {
        let demand: f64 = self.visitors.iter().map(|&(a, b)| sigmoid(a + b * d)).sum();
        demand.min(self.allotment as f64)
    }

    fn unit_profit(&self, d: f64) -> f64 {
        self.price * (1.0 - d) - self.unit_cost
    }
}

/// The world's items with a uniform plan and the optimised plan at the same budget.
#[derive(Debug, Clone)]
pub struct WorldSale {
    items: Vec<SaleItem>,
    pub uniform: Vec<f64>,
    pub optimized: Vec<f64>,
    /// The expected subsidy of the uniform plan, the optimised plan's budget.
    pub budget: f64,
    /// Expected profit of each plan, and the LP bound of the optimised one.
    pub uniform_profit: f64,
    pub optimized_profit: f64,
    pub upper_bound: f64,
}

fn column<'a>(d: &'a Dataset, schema: &str, table: &str) -> Result<&'a [RecordBatch], SaleError> {
    d.table(schema, table)
        .map(|t| t.batches.as_slice())
        .ok_or_else(|| SaleError::Option(format!("the world has no table {schema}.{table}")))
}

fn read_i64(batches: &[RecordBatch], name: &str) -> Result<Vec<i64>, SaleError> {
    let mut out = Vec::new();
    for b in batches {
        let c = b
            .column_by_name(name)
            .ok_or_else(|| SaleError::Option(format!("the world has no column {name}")))?;
        out.extend(c.as_primitive::<Int64Type>().values().iter().copied());
    }
    Ok(out)
}

fn read_f64(batches: &[RecordBatch], name: &str) -> Result<Vec<f64>, SaleError> {
    let mut out = Vec::new();
    for b in batches {
        let c = b
            .column_by_name(name)
            .ok_or_else(|| SaleError::Option(format!("the world has no column {name}")))?;
        let c = c.as_primitive::<Float64Type>();
        out.extend((0..c.len()).map(|i| c.value(i)));
    }
    Ok(out)
}

impl WorldSale {
    /// Builds the scenario from the world of `scale` and `world_seed`, with the uniform plan
    /// at `uniform_discount` (clamped to each item's deepest allowed level).
    pub fn new(
        scale: Scale,
        world_seed: u64,
        uniform_discount: f64,
    ) -> Result<WorldSale, SaleError> {
        let d = generate(scale, world_seed).map_err(|e| SaleError::Option(e.to_string()))?;
        let items = column(&d, "public", "items")?;
        let (item_ids, prices, costs) = (
            read_i64(items, "item_id")?,
            read_f64(items, "base_price")?,
            read_f64(items, "unit_cost")?,
        );
        let item_at: HashMap<i64, usize> = item_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i))
            .collect();
        let users = column(&d, "truth", "users")?;
        let beta: HashMap<i64, f64> = read_i64(users, "user_id")?
            .into_iter()
            .zip(read_f64(users, "discount_sensitivity")?)
            .collect();
        let truth = column(&d, "truth", "exposures")?;
        let true_prob: HashMap<i64, f64> = read_i64(truth, "exposure_id")?
            .into_iter()
            .zip(read_f64(truth, "true_prob")?)
            .collect();
        let campaigns = column(&d, "public", "campaigns")?;
        let mut sale: Vec<SaleItem> = Vec::new();
        let mut index: HashMap<(i64, i64), usize> = HashMap::new();
        for (((c, i), max_d), allotment) in read_i64(campaigns, "campaign_id")?
            .into_iter()
            .zip(read_i64(campaigns, "item_id")?)
            .zip(read_f64(campaigns, "discount")?)
            .zip(read_i64(campaigns, "allotment")?)
        {
            let at = *item_at
                .get(&i)
                .ok_or_else(|| SaleError::Option(format!("campaign item {i} is not in items")))?;
            index.insert((c, i), sale.len());
            sale.push(SaleItem {
                price: prices[at],
                unit_cost: costs[at],
                allotment: allotment.max(0) as u64,
                levels: DISCOUNT_LEVELS
                    .iter()
                    .copied()
                    .filter(|&l| l <= max_d + 1e-12)
                    .collect(),
                visitors: Vec::new(),
            });
        }
        let exposures = column(&d, "public", "exposures")?;
        for ((((id, user), item), campaign), shown_d) in read_i64(exposures, "exposure_id")?
            .into_iter()
            .zip(read_i64(exposures, "user_id")?)
            .zip(read_i64(exposures, "item_id")?)
            .zip(read_i64(exposures, "campaign_id")?)
            .zip(read_f64(exposures, "discount")?)
        {
            let (Some(&s), Some(&p), Some(&b)) = (
                index.get(&(campaign, item)),
                true_prob.get(&id),
                beta.get(&user),
            ) else {
                continue;
            };
            let p = p.clamp(1e-12, 1.0 - 1e-12);
            let logit = (p / (1.0 - p)).ln();
            sale[s].visitors.push((logit - b * shown_d, b));
        }
        let uniform: Vec<f64> = sale
            .iter()
            .map(|s| {
                s.levels
                    .iter()
                    .copied()
                    .filter(|&l| l <= uniform_discount + 1e-12)
                    .fold(0.0, f64::max)
            })
            .collect();
        let subsidy = |s: &SaleItem, d: f64| d * s.price * s.expected_units(d);
        let profit = |s: &SaleItem, d: f64| s.unit_profit(d) * s.expected_units(d);
        let budget: f64 = sale.iter().zip(&uniform).map(|(s, &d)| subsidy(s, d)).sum();
        let uniform_profit: f64 = sale.iter().zip(&uniform).map(|(s, &d)| profit(s, d)).sum();
        let mut curves = Curves::with_capacity(sale.len(), sale.len() * DISCOUNT_LEVELS.len());
        for s in &sale {
            curves.push(s.levels.iter().map(|&d| (profit(s, d), subsidy(s, d))));
        }
        let plan = solve_exact(&curves, budget).map_err(|e| SaleError::Option(e.to_string()))?;
        let optimized: Vec<f64> = sale
            .iter()
            .zip(&plan.choice)
            .map(|(s, &k)| s.levels[k])
            .collect();
        Ok(WorldSale {
            items: sale,
            uniform,
            optimized,
            budget,
            uniform_profit,
            optimized_profit: plan.objective,
            upper_bound: plan.upper_bound,
        })
    }

    /// Visitors over all items (the customers of one simulated sale).
    pub fn visitors(&self) -> usize {
        self.items.iter().map(|s| s.visitors.len()).sum()
    }

    /// Total allotment over all items.
    pub fn inventory(&self) -> u64 {
        self.items.iter().map(|s| s.allotment).sum()
    }

    /// One simulated sale of `plan` (a discount per item): each visitor buys with their true
    /// probability while stock lasts; visitor v's uniform comes from (seed, trial) only, so
    /// every plan meets the same decisions. Returns (revenue, profit, units).
    pub fn run(&self, plan: &[f64], seed: u64, trial: u64) -> (f64, f64, u64) {
        let mut rng = stream(seed, 21, trial);
        let (mut revenue, mut profit, mut units) = (0.0, 0.0, 0);
        for (s, &d) in self.items.iter().zip(plan) {
            let mut left = s.allotment;
            for &(a, b) in &s.visitors {
                let u: f64 = rng.random();
                if left > 0 && u < sigmoid(a + b * d) {
                    left -= 1;
                    units += 1;
                    revenue += s.price * (1.0 - d);
                    profit += s.unit_profit(d);
                }
            }
        }
        (revenue, profit, units)
    }
}
