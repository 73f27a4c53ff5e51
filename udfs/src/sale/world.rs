//! The synthetic world as a flash-sale scenario: every (campaign, item) of the generated
//! world is sold again to the same visitors, whose true purchase probability at any discount
//! follows from the logged one (the world's logit is linear in the discount with slope
//! `discount_sensitivity`, see docs/world.md). Two plans spend the same expected subsidy:
//! one uniform discount for every item, and the profit-optimal plan of the exact solver on
//! the true demand curves; simulations draw the same visitors' decisions for both.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::{ArrowPrimitiveType, Float64Type, Int64Type};
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

fn table<'a>(d: &'a Dataset, schema: &str, table: &str) -> Result<&'a [RecordBatch], SaleError> {
    d.table(schema, table)
        .map(|t| t.batches.as_slice())
        .ok_or_else(|| SaleError::Option(format!("the world has no table {schema}.{table}")))
}

/// Column `name` of a generated table, whose type the generator fixes.
fn read<T: ArrowPrimitiveType>(
    batches: &[RecordBatch],
    name: &str,
) -> Result<Vec<T::Native>, SaleError> {
    let mut out = Vec::new();
    for b in batches {
        let c = b
            .column_by_name(name)
            .and_then(|c| c.as_primitive_opt::<T>())
            .ok_or_else(|| {
                SaleError::Option(format!(
                    "the world has no column {name} of type {}",
                    T::DATA_TYPE
                ))
            })?;
        out.extend(c.values().iter().copied());
    }
    Ok(out)
}

/// Worlds already built, by (scale, world seed, uniform discount): generating a world and
/// solving its plan takes a fraction of a second on `small`, and a query comparing the two
/// plans names the same world twice. A handful are kept; the oldest go first.
type WorldKey = (Scale, u64, u64);
static BUILT: Mutex<Vec<(WorldKey, Arc<WorldSale>)>> = Mutex::new(Vec::new());
const KEEP: usize = 4;

impl WorldSale {
    /// As [`WorldSale::new`], built once per process for the same arguments.
    pub fn shared(
        scale: Scale,
        world_seed: u64,
        uniform_discount: f64,
    ) -> Result<Arc<WorldSale>, SaleError> {
        let key = (scale, world_seed, uniform_discount.to_bits());
        let lock = || BUILT.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, w)) = lock().iter().find(|(k, _)| *k == key) {
            return Ok(w.clone());
        }
        let world = Arc::new(WorldSale::new(scale, world_seed, uniform_discount)?);
        let mut built = lock();
        if built.len() >= KEEP {
            built.remove(0);
        }
        built.push((key, world.clone()));
        Ok(world)
    }

    /// Builds the scenario from the world of `scale` and `world_seed`, with the uniform plan
    /// at `uniform_discount` (clamped to each item's deepest allowed level).
    pub fn new(
        scale: Scale,
        world_seed: u64,
        uniform_discount: f64,
    ) -> Result<WorldSale, SaleError> {
        let d = generate(scale, world_seed).map_err(|e| SaleError::Option(e.to_string()))?;
        let items = table(&d, "public", "items")?;
        let (item_ids, prices, costs) = (
            read::<Int64Type>(items, "item_id")?,
            read::<Float64Type>(items, "base_price")?,
            read::<Float64Type>(items, "unit_cost")?,
        );
        let item_at: HashMap<i64, usize> = item_ids
            .iter()
            .enumerate()
            .map(|(i, &id)| (id, i))
            .collect();
        let users = table(&d, "truth", "users")?;
        let beta: HashMap<i64, f64> = read::<Int64Type>(users, "user_id")?
            .into_iter()
            .zip(read::<Float64Type>(users, "discount_sensitivity")?)
            .collect();
        let truth = table(&d, "truth", "exposures")?;
        let true_prob: HashMap<i64, f64> = read::<Int64Type>(truth, "exposure_id")?
            .into_iter()
            .zip(read::<Float64Type>(truth, "true_prob")?)
            .collect();
        let campaigns = table(&d, "public", "campaigns")?;
        let mut sale: Vec<SaleItem> = Vec::new();
        let mut index: HashMap<(i64, i64), usize> = HashMap::new();
        for (((c, i), max_d), allotment) in read::<Int64Type>(campaigns, "campaign_id")?
            .into_iter()
            .zip(read::<Int64Type>(campaigns, "item_id")?)
            .zip(read::<Float64Type>(campaigns, "discount")?)
            .zip(read::<Int64Type>(campaigns, "allotment")?)
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
        let exposures = table(&d, "public", "exposures")?;
        for ((((id, user), item), campaign), shown_d) in
            read::<Int64Type>(exposures, "exposure_id")?
                .into_iter()
                .zip(read::<Int64Type>(exposures, "user_id")?)
                .zip(read::<Int64Type>(exposures, "item_id")?)
                .zip(read::<Int64Type>(exposures, "campaign_id")?)
                .zip(read::<Float64Type>(exposures, "discount")?)
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
        // Expected (profit, subsidy) of every item at every level, each computed once.
        let values: Vec<Vec<(f64, f64)>> = sale
            .iter()
            .map(|s| {
                s.levels
                    .iter()
                    .map(|&d| {
                        let units = s.expected_units(d);
                        (s.unit_profit(d) * units, d * s.price * units)
                    })
                    .collect()
            })
            .collect();
        // The uniform plan: each item's deepest level not above the uniform discount (levels
        // ascend from 0).
        let uniform_level: Vec<usize> = sale
            .iter()
            .map(|s| {
                s.levels
                    .iter()
                    .rposition(|&l| l <= uniform_discount + 1e-12)
                    .unwrap_or(0)
            })
            .collect();
        let uniform: Vec<f64> = sale
            .iter()
            .zip(&uniform_level)
            .map(|(s, &k)| s.levels[k])
            .collect();
        let at_uniform = || values.iter().zip(&uniform_level).map(|(v, &k)| v[k]);
        let budget: f64 = at_uniform().map(|(_, subsidy)| subsidy).sum();
        let uniform_profit: f64 = at_uniform().map(|(profit, _)| profit).sum();
        let mut curves = Curves::with_capacity(sale.len(), sale.len() * DISCOUNT_LEVELS.len());
        for v in &values {
            curves.push(v.iter().copied());
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

    /// Every visitor's true purchase probability under `plan` (a discount per item): the same
    /// in every trial, so computed once per simulation.
    pub fn purchase_probabilities(&self, plan: &[f64]) -> Vec<Vec<f64>> {
        self.items
            .iter()
            .zip(plan)
            .map(|(s, &d)| {
                s.visitors
                    .iter()
                    .map(|&(a, b)| sigmoid(a + b * d))
                    .collect()
            })
            .collect()
    }

    /// One simulated sale of `plan`, whose [`WorldSale::purchase_probabilities`] are `probs`:
    /// each visitor buys with their true probability while stock lasts; visitor v's uniform
    /// comes from (seed, trial) only, so every plan meets the same decisions. Returns
    /// (revenue, profit, units).
    pub fn run(&self, plan: &[f64], probs: &[Vec<f64>], seed: u64, trial: u64) -> (f64, f64, u64) {
        let mut rng = stream(seed, 21, trial);
        let (mut revenue, mut profit, mut units) = (0.0, 0.0, 0);
        for ((s, &d), probs) in self.items.iter().zip(plan).zip(probs) {
            let mut left = s.allotment;
            for &p in probs {
                let u: f64 = rng.random();
                if left > 0 && u < p {
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
