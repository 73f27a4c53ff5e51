//! The Lagrangian dual: for a multiplier λ every item independently picks the level
//! maximising `value − λ·cost`; the total cost falls as λ rises, so bisection finds the
//! smallest λ whose plan fits the budget. The dual value `Σ max(value − λ·cost) + λ·budget`
//! bounds the optimum from above, so every answer comes with its own optimality gap. One
//! pass over the N·K numbers per step, in parallel.

use rayon::prelude::*;

use super::{Curves, Item, KnapsackError, Plan, check_feasible, validate};

/// Best level of one item for multiplier `lambda`; ties go to the cheaper, then lower level.
pub(super) fn best_level(it: Item<'_>, lambda: f64) -> (usize, f64) {
    let mut best = 0;
    let mut best_score = f64::NEG_INFINITY;
    for k in 0..it.len() {
        let s = it.score(k, lambda);
        if s > best_score || (s == best_score && it.costs[k] < it.costs[best]) {
            best = k;
            best_score = s;
        }
    }
    (best, best_score)
}

/// (Σ chosen cost, Σ chosen value, Σ best score) at `lambda`.
fn pass(curves: &Curves, lambda: f64) -> (f64, f64, f64) {
    curves
        .par_iter()
        .map(|it| {
            let (k, s) = best_level(it, lambda);
            (it.costs[k], it.values[k], s)
        })
        .reduce(|| (0.0, 0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2))
}

/// Solves with the Lagrangian dual until the relative duality gap is at most `tolerance`
/// (or the multiplier is pinned down to machine precision).
pub fn solve_lagrangian(
    curves: &Curves,
    budget: f64,
    tolerance: f64,
) -> Result<Plan, KnapsackError> {
    validate(curves, budget)?;
    check_feasible(curves, budget)?;
    let plan_at = |lambda: f64| -> Plan {
        let choice: Vec<usize> = curves
            .par_iter()
            .map(|it| best_level(it, lambda).0)
            .collect();
        let (cost, objective, score) = pass(curves, lambda);
        Plan {
            choice,
            objective,
            cost,
            upper_bound: score + lambda * budget,
            shadow_price: lambda,
        }
    };
    // λ = 0: the unconstrained optimum; if it fits, it is optimal.
    let (c0, v0, _) = pass(curves, 0.0);
    if c0 <= budget {
        let mut p = plan_at(0.0);
        p.upper_bound = v0;
        return Ok(p);
    }
    // Bracket: grow λ until the plan fits.
    let mut lo = 0.0;
    let mut hi = 1.0;
    while pass(curves, hi).0 > budget {
        lo = hi;
        hi *= 2.0;
        if hi > 1e300 {
            break;
        }
    }
    let mut best_upper = f64::INFINITY;
    let mut feasible = hi;
    let mut feasible_value = pass(curves, hi).1;
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        let (c, v, s) = pass(curves, mid);
        best_upper = best_upper.min(s + mid * budget);
        if c <= budget {
            hi = mid;
            feasible = mid;
            feasible_value = v;
        } else {
            lo = mid;
        }
        let gap = (best_upper - feasible_value) / best_upper.abs().max(1e-300);
        if gap <= tolerance || hi - lo <= f64::EPSILON * hi.max(1.0) {
            break;
        }
    }
    let mut p = plan_at(feasible);
    p.upper_bound = best_upper.min(p.upper_bound).max(p.objective);
    Ok(p)
}
