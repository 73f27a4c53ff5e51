//! `simulate_flash_sale`: runs a pricing policy through many seeded sales of a scenario and
//! scores each against the LP upper bound and the re-solving clairvoyant on the same demand
//! draws (common random numbers: every policy meets the same customers in a trial).

use rand::Rng;
use rand_distr::{Distribution, Exp};
use rayon::prelude::*;

use super::SaleError;
use std::sync::Arc;

use super::gvr::{Exponential, ValueTable};
use super::posterior::stream;
use super::single::{SinglePolicy, SingleProduct, run as run_single};
use super::world::WorldSale;

#[derive(Debug, Clone)]
pub enum Scenario {
    /// One product, four prices, one Bernoulli customer per period.
    Single(SingleProduct),
    /// Poisson customers with exponential valuations, priced in continuous time.
    Exponential(Exponential),
    /// The synthetic world's campaigns, sold with a fixed plan per item.
    World(Arc<WorldSale>),
}

/// What to run: scenario, policy and the sale's size.
#[derive(Debug, Clone)]
pub struct Simulation {
    pub scenario: Scenario,
    pub policy: String,
    /// Periods (single product) or time units (exponential).
    pub horizon: f64,
    /// Inventory as a share of the expected number of customers.
    pub inventory_ratio: f64,
    pub trials: usize,
    pub seed: u64,
}

/// One simulated sale.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrialResult {
    pub trial: usize,
    pub revenue: f64,
    /// Revenue less unit costs (the same as revenue where the scenario has no costs).
    pub profit: f64,
    pub upper_bound: f64,
    pub units: u64,
    pub inventory: u64,
    /// The re-solving clairvoyant's revenue on the same customers, where the scenario has one.
    pub clairvoyant_revenue: Option<f64>,
}

const CUSTOMERS: u64 = 1;
const POLICY: u64 = 2;
const CLAIRVOYANT: u64 = 3;

/// The policies each scenario knows, for error messages.
pub fn policies(scenario: &Scenario) -> &'static str {
    match scenario {
        Scenario::Single(_) => {
            "'fixed' (with level => k), 'greedy', 'ts_fixed', 'ts_update', 'ts_blind', 'clairvoyant'"
        }
        Scenario::Exponential(_) => "'fixed' (the fluid price), 'dp' (optimal), 'clairvoyant'",
        Scenario::World(_) => {
            "'optimized' (the exact plan for profit), 'uniform' (one discount for all, same budget)"
        }
    }
}

fn single_policy(name: &str, level: usize, k: usize) -> Option<SinglePolicy> {
    Some(match name {
        "fixed" if level < k => SinglePolicy::Fixed(level),
        "greedy" => SinglePolicy::Greedy,
        "ts_fixed" => SinglePolicy::TsFixed,
        "ts_update" => SinglePolicy::TsUpdate,
        "ts_blind" => SinglePolicy::TsBlind,
        "clairvoyant" => SinglePolicy::Clairvoyant,
        _ => return None,
    })
}

/// Largest DP table the exponential scenario builds (inventory × time steps).
const MAX_TABLE: f64 = 5e7;

/// A checked simulation, ready to run: the policy resolved and the sale's size fixed.
enum Setup<'a> {
    Single {
        sc: &'a SingleProduct,
        policy: SinglePolicy,
        horizon: usize,
        inventory: u64,
    },
    Exponential {
        model: Exponential,
        dp: bool,
        horizon: f64,
        inventory: u64,
        step: f64,
    },
    World {
        world: &'a WorldSale,
        plan: &'a [f64],
    },
}

impl Simulation {
    /// Checks the options without simulating anything (cheap: used when a query is planned).
    pub fn check(&self, level: usize) -> Result<(), SaleError> {
        self.prepare(level).map(|_| ())
    }

    fn prepare(&self, level: usize) -> Result<Setup<'_>, SaleError> {
        let bad = |msg: String| Err(SaleError::Option(msg));
        if !(self.horizon.is_finite() && self.horizon > 0.0) {
            return bad(format!(
                "horizon must be a number > 0, got {}",
                self.horizon
            ));
        }
        if !(self.inventory_ratio.is_finite() && self.inventory_ratio >= 0.0) {
            return bad(format!(
                "inventory_ratio must be a number >= 0, got {}",
                self.inventory_ratio
            ));
        }
        if self.trials > 1_000_000 {
            return bad(format!("at most 1,000,000 trials, got {}", self.trials));
        }
        let unknown = || {
            SaleError::Option(format!(
                "policy '{}' is not known for this scenario: use {}",
                self.policy,
                policies(&self.scenario)
            ))
        };
        // Each setup with the customers one trial simulates (bounded below).
        let (setup, per_trial) = match &self.scenario {
            Scenario::Single(sc) => {
                let policy =
                    single_policy(&self.policy, level, sc.prices.len()).ok_or_else(unknown)?;
                let horizon = self.horizon.round() as usize;
                if horizon == 0 || horizon > 10_000_000 {
                    return bad(format!(
                        "horizon must be between 1 and 10^7 periods, got {}",
                        self.horizon
                    ));
                }
                let inventory = (self.inventory_ratio * horizon as f64).round() as u64;
                let setup = Setup::Single {
                    sc,
                    policy,
                    horizon,
                    inventory,
                };
                (setup, horizon as f64)
            }
            Scenario::Exponential(model) => {
                let dp = match self.policy.as_str() {
                    "dp" | "clairvoyant" => true,
                    "fixed" => false,
                    _ => return Err(unknown()),
                };
                if !(model.a > 0.0 && model.alpha > 0.0) {
                    return bad(format!(
                        "a and alpha must be > 0, got a => {}, alpha => {}",
                        model.a, model.alpha
                    ));
                }
                let t = self.horizon;
                if model.a * t > 1e7 {
                    return bad(format!(
                        "a · horizon (the expected customers per sale) must be at most 10^7, got {}",
                        model.a * t
                    ));
                }
                let inventory = (self.inventory_ratio * model.a * t).round() as u64;
                let step = (t / 1000.0).min(0.01);
                if (inventory as f64 + 1.0) * (t / step) > MAX_TABLE {
                    return bad(format!(
                        "the dynamic program for {inventory} units over horizon {t} is too large; use a smaller horizon or inventory_ratio"
                    ));
                }
                let setup = Setup::Exponential {
                    model: *model,
                    dp,
                    horizon: t,
                    inventory,
                    step,
                };
                (setup, model.a * t)
            }
            Scenario::World(world) => {
                let plan = match self.policy.as_str() {
                    "optimized" => &world.optimized,
                    "uniform" => &world.uniform,
                    _ => return Err(unknown()),
                };
                (Setup::World { world, plan }, world.visitors() as f64)
            }
        };
        // A simulation cannot be interrupted once it runs (cancel and statement_timeout end
        // the query, not the computation), so its size is bounded: about two minutes at most.
        if per_trial * self.trials as f64 > 1e9 {
            return bad(format!(
                "{} trials of {per_trial} customers each exceed the limit of 10^9 simulated customers per call",
                self.trials
            ));
        }
        Ok(setup)
    }

    /// Runs all trials in parallel; each trial's randomness comes from its own streams, so
    /// the result does not depend on the number of threads.
    pub fn run(&self, level: usize) -> Result<Vec<TrialResult>, SaleError> {
        self.run_until(level, &|| false)
    }

    /// Runs one trial per call of `trial`, in parallel, unless `stop` says the result is no
    /// longer wanted (looked at before each trial: at most 10^7 customers apart).
    fn each_trial(
        &self,
        stop: &(dyn Fn() -> bool + Sync),
        trial: impl Fn(usize) -> TrialResult + Sync,
    ) -> Result<Vec<TrialResult>, SaleError> {
        (0..self.trials)
            .into_par_iter()
            .map(|t| (!stop()).then(|| trial(t)))
            .collect::<Option<Vec<_>>>()
            .ok_or(SaleError::Cancelled)
    }

    /// [`Simulation::run`], stopping with [`SaleError::Cancelled`] once `stop` returns true.
    pub fn run_until(
        &self,
        level: usize,
        stop: &(dyn Fn() -> bool + Sync),
    ) -> Result<Vec<TrialResult>, SaleError> {
        match self.prepare(level)? {
            Setup::Single {
                sc,
                policy,
                horizon,
                inventory,
            } => {
                let bound = sc.lp_bound(horizon, inventory);
                self.each_trial(stop, |trial| {
                    let mut customers = stream(self.seed, CUSTOMERS, trial as u64);
                    let u: Vec<f64> = (0..horizon).map(|_| customers.random()).collect();
                    let mine = run_single(
                        sc,
                        policy,
                        inventory,
                        &u,
                        &mut stream(self.seed, POLICY, trial as u64),
                    );
                    let best = run_single(
                        sc,
                        SinglePolicy::Clairvoyant,
                        inventory,
                        &u,
                        &mut stream(self.seed, CLAIRVOYANT, trial as u64),
                    );
                    TrialResult {
                        trial,
                        revenue: mine.revenue,
                        profit: mine.revenue,
                        upper_bound: bound,
                        units: mine.units,
                        inventory,
                        clairvoyant_revenue: Some(best.revenue),
                    }
                })
            }
            Setup::Exponential {
                model,
                dp,
                horizon: t,
                inventory,
                step,
            } => {
                let table = ValueTable::solve(model, inventory as usize, t, step);
                let fixed = model.fluid_price(inventory, t);
                let bound = model.fluid_bound(inventory, t);
                let gaps = Exp::new(model.a).map_err(|e| SaleError::Option(e.to_string()))?;
                let values = Exp::new(model.alpha).map_err(|e| SaleError::Option(e.to_string()))?;
                self.each_trial(stop, |trial| {
                    let mut rng = stream(self.seed, CUSTOMERS, trial as u64);
                    let mut customers = Vec::new();
                    let mut to_go = t - gaps.sample(&mut rng);
                    while to_go > 0.0 {
                        customers.push((to_go, values.sample(&mut rng)));
                        to_go -= gaps.sample(&mut rng);
                    }
                    // The optimal pricer is the clairvoyant here (it knows the demand).
                    let best = super::gvr::run(&customers, inventory, |x, s| table.price(x, s));
                    let (revenue, units) = if dp {
                        best
                    } else {
                        super::gvr::run(&customers, inventory, |_, _| fixed)
                    };
                    TrialResult {
                        trial,
                        revenue,
                        profit: revenue,
                        upper_bound: bound,
                        units,
                        inventory,
                        clairvoyant_revenue: Some(best.0),
                    }
                })
            }
            Setup::World { world, plan } => {
                let inventory = world.inventory();
                let bound = world.upper_bound;
                let probs = world.purchase_probabilities(plan);
                self.each_trial(stop, |trial| {
                    let (revenue, profit, units) = world.run(plan, &probs, self.seed, trial as u64);
                    TrialResult {
                        trial,
                        revenue,
                        profit,
                        upper_bound: bound,
                        units,
                        inventory,
                        clairvoyant_revenue: None,
                    }
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ferreira(policy: &str, horizon: f64, trials: usize) -> (f64, f64) {
        let sim = Simulation {
            scenario: Scenario::Single(SingleProduct::ferreira()),
            policy: policy.into(),
            horizon,
            inventory_ratio: 0.25,
            trials,
            seed: 7,
        };
        let rows = sim.run(0).unwrap();
        let mean = |f: fn(&TrialResult) -> f64| rows.iter().map(f).sum::<f64>() / rows.len() as f64;
        (
            mean(|r| r.revenue / r.upper_bound),
            mean(|r| r.clairvoyant_revenue.unwrap_or(f64::NAN) / r.upper_bound),
        )
    }

    /// The ordering the theory predicts, on 200 trials of T = 2,000: TS-update learns and
    /// respects the inventory (close to the bound), TS-fixed paces by the initial capacity
    /// (lower), inventory-blind TS sells out at low prices (far lower); the clairvoyant is
    /// at the top and below the bound.
    #[test]
    fn ferreira_policies_rank_as_expected() {
        let (update, clair) = ferreira("ts_update", 2000.0, 200);
        let (fixed, _) = ferreira("ts_fixed", 2000.0, 200);
        let (blind, _) = ferreira("ts_blind", 2000.0, 200);
        let (greedy, _) = ferreira("greedy", 2000.0, 200);
        assert!(update > 0.97 && update < 1.0, "ts_update {update}");
        assert!(fixed < update, "ts_fixed {fixed} vs ts_update {update}");
        assert!(blind < 0.8, "ts_blind {blind}");
        assert!(greedy < update, "greedy {greedy}");
        assert!(clair >= update && clair <= 1.0, "clairvoyant {clair}");
        // Same seed, same answer.
        assert_eq!(
            ferreira("ts_update", 500.0, 20),
            ferreira("ts_update", 500.0, 20)
        );
    }

    /// The optimal dynamic pricer earns J*(x, T) on average: the mean over 4,000 simulated
    /// sales lies within 4 standard errors of the closed form.
    #[test]
    fn gvr_simulation_earns_the_closed_form() {
        let model = Exponential {
            a: 10.0,
            alpha: 1.0,
        };
        let sim = Simulation {
            scenario: Scenario::Exponential(model),
            policy: "dp".into(),
            horizon: 5.0,
            inventory_ratio: 0.4, // 20 units for 50 expected customers
            trials: 4000,
            seed: 3,
        };
        let rows = sim.run(0).unwrap();
        assert_eq!(rows[0].inventory, 20);
        let n = rows.len() as f64;
        let mean = rows.iter().map(|r| r.revenue).sum::<f64>() / n;
        let var = rows.iter().map(|r| (r.revenue - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let want = model.closed_form(20, 5.0);
        assert!(
            (mean - want).abs() < 4.0 * (var / n).sqrt(),
            "mean {mean} vs J* {want} (se {})",
            (var / n).sqrt()
        );
        let fixed = Simulation {
            policy: "fixed".into(),
            ..sim.clone()
        }
        .run(0)
        .unwrap();
        let fixed_mean = fixed.iter().map(|r| r.revenue).sum::<f64>() / n;
        assert!(
            fixed_mean < mean && fixed_mean > 0.8 * mean,
            "fixed {fixed_mean} vs dp {mean}"
        );
        assert!(
            Simulation {
                policy: "ts_update".into(),
                ..sim
            }
            .run(0)
            .is_err()
        );
    }
}
