//! Discount choice as a multiple-choice knapsack: one discount level per item, maximising
//! expected revenue or profit subject to a budget on the discount subsidy.
//!
//! Two solvers over the same [`Curves`]:
//! - [`solve_lagrangian`]: bisection on the Lagrangian multiplier; fast, stops at a requested
//!   duality gap.
//! - [`solve_exact`]: the LP relaxation solved exactly through convex hulls, rounded, and the
//!   integer optimum found by a core search around the LP solution.
//!
//! Every plan carries an upper bound on the optimum, so its gap is known.

mod core;
mod curves;
mod exact;
mod lagrangian;

pub use curves::{Curves, Item};
pub use exact::solve_exact;
pub use lagrangian::solve_lagrangian;

use rayon::prelude::*;

/// A plan: the chosen level per item and what it adds up to.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Index of the chosen level, per item.
    pub choice: Vec<usize>,
    pub objective: f64,
    pub cost: f64,
    /// An upper bound on the optimum of the integer problem.
    pub upper_bound: f64,
    /// The budget's shadow price (the Lagrange multiplier / the marginal slope of the LP).
    pub shadow_price: f64,
}

impl Plan {
    /// Relative gap between the plan and its upper bound.
    pub fn gap(&self) -> f64 {
        if self.upper_bound.abs() < 1e-300 {
            0.0
        } else {
            ((self.upper_bound - self.objective) / self.upper_bound.abs()).max(0.0)
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum KnapsackError {
    #[error("item {item}: {reason}")]
    InvalidItem { item: usize, reason: String },
    #[error("the budget must be a finite number >= 0, got {0}")]
    InvalidBudget(f64),
    #[error(
        "no plan fits the budget {budget}: the cheapest level of every item already costs {min_cost}"
    )]
    Infeasible { budget: f64, min_cost: f64 },
    #[error("{0} items are more than the exact solver handles (at most 2^32 - 1)")]
    TooLarge(usize),
}

fn validate(curves: &Curves, budget: f64) -> Result<(), KnapsackError> {
    if !budget.is_finite() || budget < 0.0 {
        return Err(KnapsackError::InvalidBudget(budget));
    }
    // What is wrong with one item, if anything: one check serves the search and the message.
    let problem = |it: Item<'_>| -> Option<String> {
        if it.is_empty() {
            return Some("has no levels".to_string());
        }
        it.values
            .iter()
            .zip(it.costs)
            .enumerate()
            .find_map(|(k, (&v, &c))| {
                if !v.is_finite() {
                    Some(format!("level {k}: value is {v}"))
                } else if !c.is_finite() || c < 0.0 {
                    Some(format!("level {k}: cost must be finite and >= 0, got {c}"))
                } else {
                    None
                }
            })
    };
    let Some((item, reason)) = curves
        .par_iter()
        .enumerate()
        .find_map_first(|(i, it)| problem(it).map(|r| (i, r)))
    else {
        return Ok(());
    };
    Err(KnapsackError::InvalidItem { item, reason })
}

/// Σ of every item's cheapest level: a plan exists iff this fits the budget.
fn check_feasible(curves: &Curves, budget: f64) -> Result<(), KnapsackError> {
    let min_cost: f64 = curves
        .par_iter()
        .map(|it| it.costs.iter().copied().fold(f64::INFINITY, f64::min))
        .sum();
    if min_cost > budget * (1.0 + 1e-12) + 1e-9 {
        return Err(KnapsackError::Infeasible { budget, min_cost });
    }
    Ok(())
}

/// A seeded random instance shaped like discount curves (level `l` is a discount of
/// `10·l` %: more discount sells more, up to a point, and costs more; level 0 is free), for
/// tests and benchmarks.
pub fn random_instance(n: usize, k: usize, seed: u64) -> Curves {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut curves = Curves::with_capacity(n, n * k);
    for _ in 0..n {
        let base: f64 = rng.random_range(1.0..20.0);
        let levels: Vec<(f64, f64)> = (0..k)
            .map(|l| {
                let d = l as f64 * 0.1;
                let lift = 1.0 + rng.random_range(0.5..3.0) * d;
                (base * lift * (1.0 - 0.5 * d), base * lift * d)
            })
            .collect();
        curves.push(levels);
    }
    curves
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brute_force(curves: &Curves, budget: f64) -> Option<f64> {
        let mut best: Option<f64> = None;
        let mut idx = vec![0usize; curves.len()];
        loop {
            let (v, c) = curves.totals(&idx);
            if c <= budget + 1e-9 {
                best = Some(best.map_or(v, |b: f64| b.max(v)));
            }
            let mut i = 0;
            loop {
                if i == curves.len() {
                    return best;
                }
                idx[i] += 1;
                if idx[i] < curves.item(i).len() {
                    break;
                }
                idx[i] = 0;
                i += 1;
            }
        }
    }

    /// Dynamic programming over integer costs: the textbook exact method, independent of
    /// both solvers. `best[b]` = the best value spending at most `b`.
    fn integer_dp(curves: &Curves, budget: usize) -> f64 {
        let mut best = vec![0.0f64; budget + 1];
        for it in curves.iter() {
            let mut next = vec![f64::NEG_INFINITY; budget + 1];
            for b in 0..=budget {
                for k in 0..it.len() {
                    let c = it.costs[k] as usize;
                    if c <= b {
                        next[b] = next[b].max(best[b - c] + it.values[k]);
                    }
                }
            }
            best = next;
        }
        best[budget]
    }

    fn check(curves: &Curves, plan: &Plan, budget: f64) {
        let (v, c) = curves.totals(&plan.choice);
        assert!(c <= budget + 1e-9, "plan costs {c} > budget {budget}");
        assert!((c - plan.cost).abs() < 1e-9 && (v - plan.objective).abs() < 1e-9);
    }

    fn max_cost(curves: &Curves) -> f64 {
        curves
            .iter()
            .map(|it| it.costs.iter().copied().fold(0.0, f64::max))
            .sum()
    }

    /// Against exhaustive search on small random instances (tolerance 1e-9): the exact plan
    /// is optimal; the Lagrangian plan is feasible and never above the optimum; both bounds
    /// are at least the optimum.
    #[test]
    fn solvers_agree_with_exhaustive_search() {
        for seed in 0..300u64 {
            let n = 1 + (seed as usize % 7);
            let k = 2 + (seed as usize % 4);
            let curves = random_instance(n, k, seed);
            let budget = max_cost(&curves) * (seed % 7) as f64 / 6.0;
            let opt = brute_force(&curves, budget).expect("level 0 is free");
            let exact = solve_exact(&curves, budget).unwrap();
            check(&curves, &exact, budget);
            assert!(
                (exact.objective - opt).abs() <= 1e-9 * opt.abs().max(1.0),
                "seed {seed}: exact plan {} but the optimum is {opt}",
                exact.objective
            );
            assert!(
                exact.upper_bound >= opt - 1e-9,
                "LP bound below the optimum"
            );
            let lag = solve_lagrangian(&curves, budget, 1e-9).unwrap();
            check(&curves, &lag, budget);
            assert!(lag.objective <= opt + 1e-9);
            assert!(
                lag.upper_bound >= opt - 1e-9,
                "dual bound below the optimum"
            );
        }
    }

    /// Integer costs let a budget DP find the optimum of instances far beyond exhaustive
    /// search (40 items × 5 levels); the exact solver must match it to 1e-9.
    #[test]
    fn exact_matches_integer_dp() {
        use rand::{Rng, SeedableRng};
        for seed in 0..40u64 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut curves = Curves::new();
            for _ in 0..40 {
                let mut levels = vec![(rng.random_range(1.0..10.0), 0.0)];
                for _ in 1..5 {
                    let (v, c) = *levels.last().unwrap();
                    levels.push((
                        v + rng.random_range(-1.0..6.0),
                        c + f64::from(rng.random_range(1..6u32)),
                    ));
                }
                curves.push(levels);
            }
            let budget = (max_cost(&curves) * rng.random_range(0.05..0.6)).floor();
            let opt = integer_dp(&curves, budget as usize);
            let exact = solve_exact(&curves, budget).unwrap();
            check(&curves, &exact, budget);
            assert!(
                (exact.objective - opt).abs() <= 1e-9 * opt,
                "seed {seed}: exact {} vs DP {opt}",
                exact.objective
            );
        }
    }

    /// On larger instances the gaps are small (the LP rounding loses at most one item's step).
    #[test]
    fn gaps_are_small_on_large_instances() {
        let curves = random_instance(20_000, 5, 7);
        let budget = max_cost(&curves) * 0.3;
        let exact = solve_exact(&curves, budget).unwrap();
        check(&curves, &exact, budget);
        assert!(exact.gap() < 1e-6, "exact gap {}", exact.gap());
        let lag = solve_lagrangian(&curves, budget, 1e-3).unwrap();
        check(&curves, &lag, budget);
        assert!(lag.gap() <= 1e-3, "lagrangian gap {}", lag.gap());
        assert!(exact.objective >= lag.objective);
        // The Lagrangian dual and the LP relaxation have the same optimum.
        assert!((lag.upper_bound - exact.upper_bound).abs() / exact.upper_bound < 1e-3);
    }

    #[test]
    fn edge_cases() {
        let curves = random_instance(50, 5, 1);
        // Budget zero: everyone at the free level.
        for p in [
            solve_exact(&curves, 0.0).unwrap(),
            solve_lagrangian(&curves, 0.0, 1e-9).unwrap(),
        ] {
            assert!(p.choice.iter().all(|&k| k == 0), "{:?}", p.choice);
            assert_eq!(p.cost, 0.0);
        }
        // Budget above everything: the unconstrained best per item, zero shadow price.
        let unconstrained: f64 = curves
            .iter()
            .map(|it| it.values.iter().copied().fold(f64::MIN, f64::max))
            .sum();
        for p in [
            solve_exact(&curves, 1e12).unwrap(),
            solve_lagrangian(&curves, 1e12, 1e-9).unwrap(),
        ] {
            assert!((p.objective - unconstrained).abs() < 1e-9);
            assert_eq!(p.shadow_price, 0.0);
        }
        // Bad input names the item.
        let mut bad = Curves::new();
        for i in 0..10 {
            let it = curves.item(i);
            let mut levels: Vec<(f64, f64)> = it
                .values
                .iter()
                .copied()
                .zip(it.costs.iter().copied())
                .collect();
            if i == 7 {
                levels[2].0 = f64::NAN;
            }
            bad.push(levels);
        }
        let e = solve_exact(&bad, 10.0).unwrap_err();
        assert!(e.to_string().starts_with("item 7: level 2"), "{e}");
        let mut empty = Curves::new();
        empty.push([(1.0, 0.0)]);
        empty.push([]);
        assert!(matches!(
            solve_lagrangian(&empty, 10.0, 1e-6),
            Err(KnapsackError::InvalidItem { item: 1, .. })
        ));
        assert!(matches!(
            solve_exact(&curves, f64::NAN),
            Err(KnapsackError::InvalidBudget(_))
        ));
        // No free level and too small a budget: infeasible, said plainly.
        let mut pricey = Curves::new();
        pricey.push([(5.0, 2.0), (6.0, 3.0)]);
        assert!(matches!(
            solve_exact(&pricey, 1.0),
            Err(KnapsackError::Infeasible { .. })
        ));
        // Ties are broken by item order, so the answer does not depend on thread timing:
        // among thousands of identical items (enough to run in parallel) the budget goes to
        // the first ones, and two runs agree.
        let mut twins = Curves::new();
        let it = curves.item(0);
        for _ in 0..5000 {
            twins.push(it.values.iter().copied().zip(it.costs.iter().copied()));
        }
        let budget = it.costs[2] * 1234.0;
        let p1 = solve_exact(&twins, budget).unwrap();
        let p2 = solve_exact(&twins, budget).unwrap();
        assert_eq!(p1.choice, p2.choice);
        assert!(
            p1.choice.windows(2).all(|w| w[0] >= w[1]),
            "upgrades go to the first items"
        );
    }
}
