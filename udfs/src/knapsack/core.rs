//! The integer optimum near the LP solution. With the LP multiplier λ, every plan's value is
//! at most `L(λ) − Σ_i rc_i`, where `L(λ) = Σ_i max_k (v_ik − λ·c_ik) + λ·budget` is the
//! Lagrangian bound and `rc_i ≥ 0` the reduced cost of item i's level. A plan that beats the
//! incumbent therefore uses only levels with `rc ≤ L(λ) − incumbent`: usually one level for
//! almost every item (those are fixed) and two or three for a few (the core). The core is
//! solved exactly by dynamic programming over Pareto-optimal (cost, value) states, pruned by
//! the same bound; this is the reduction behind Pisinger's core algorithms for the
//! multiple-choice knapsack. A work limit keeps pathological inputs from running away; the
//! caller then keeps its incumbent.

use rayon::prelude::*;

use super::Curves;

/// States the search may create in all before it gives up (about 50 ms). Instances of up to
/// ~10^4 items finish far below it; at 10^6 items the rounded plan is already within ~1e-9
/// of the bound and thousands of items are undecided, so the search stops early there.
const WORK_LIMIT: usize = 2_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CoreOutcome {
    /// `choice` is now an optimal plan.
    Optimal,
    /// The search was too large; `choice` is unchanged.
    GaveUp { free_items: usize },
}

#[derive(Debug, Clone, Copy)]
struct State {
    cost: f64,
    value: f64,
    parent: u32,
    level: u32,
}

/// Replaces `choice` (a feasible plan) by an optimal one, using the multiplier `lambda ≥ 0`.
pub(super) fn core_search(
    curves: &Curves,
    budget: f64,
    lambda: f64,
    choice: &mut [usize],
) -> CoreOutcome {
    let best_score: Vec<f64> = curves
        .par_iter()
        .map(|it| {
            (0..it.len())
                .map(|k| it.score(k, lambda))
                .fold(f64::NEG_INFINITY, f64::max)
        })
        .collect();
    let bound = best_score.iter().sum::<f64>() + lambda * budget;
    let incumbent = curves.totals(choice).0;
    let tol = 1e-12 * bound.abs().max(incumbent.abs()).max(1.0);
    let slack = bound - incumbent;
    if slack <= tol {
        return CoreOutcome::Optimal;
    }
    // The undecided items and their candidate levels (by reduced cost), with the reduced
    // cost of the second-best candidate. An item with one candidate keeps the incumbent's
    // level: the incumbent's own levels are all candidates, since its reduced costs add up
    // to at most the slack.
    let mut free: Vec<(usize, Vec<u32>, f64)> = curves
        .par_iter()
        .zip(&best_score)
        .enumerate()
        .filter_map(|(i, (it, &best))| {
            let rc = |k: usize| best - it.score(k, lambda);
            // Most items have a single candidate: find out without allocating.
            (0..it.len()).filter(|&k| rc(k) <= slack + tol).nth(1)?;
            let mut c: Vec<(f64, u32)> = (0..it.len())
                .filter(|&k| rc(k) <= slack + tol)
                .map(|k| (rc(k), k as u32))
                .collect();
            c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let second = c[1].0;
            Some((i, c.into_iter().map(|(_, k)| k).collect(), second))
        })
        .collect();
    let (free_value, free_cost) = free.iter().fold((0.0, 0.0), |acc, (i, _, _)| {
        let it = curves.item(*i);
        (acc.0 + it.values[choice[*i]], acc.1 + it.costs[choice[*i]])
    });
    let (total_value, total_cost) = curves.totals(choice);
    let room = budget - (total_cost - free_cost);
    let target = incumbent - (total_value - free_value);
    // Items whose alternatives are expensive first: they prune the most states early.
    free.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    let m = free.len();
    // What the undecided items can add at most (their best scores), and cost at least.
    let mut rest_score = vec![0.0; m + 1];
    let mut rest_min_cost = vec![0.0; m + 1];
    for j in (0..m).rev() {
        let (i, cands, _) = &free[j];
        let it = curves.item(*i);
        rest_score[j] = rest_score[j + 1] + best_score[*i];
        rest_min_cost[j] = rest_min_cost[j + 1]
            + cands
                .iter()
                .map(|&k| it.costs[k as usize])
                .fold(f64::INFINITY, f64::min);
    }
    let mut layers: Vec<Vec<State>> = Vec::with_capacity(m + 1);
    layers.push(vec![State {
        cost: 0.0,
        value: 0.0,
        parent: 0,
        level: 0,
    }]);
    let mut work = 0usize;
    for j in 0..m {
        let (i, cands, _) = &free[j];
        let it = curves.item(*i);
        let mut next = Vec::new();
        for (p, s) in layers[j].iter().enumerate() {
            for &k in cands {
                let cost = s.cost + it.costs[k as usize];
                let value = s.value + it.values[k as usize];
                if cost + rest_min_cost[j + 1] > room + tol {
                    continue;
                }
                let ub = value + lambda * (room - cost) + rest_score[j + 1];
                if ub <= target + tol {
                    continue;
                }
                next.push(State {
                    cost,
                    value,
                    parent: p as u32,
                    level: k,
                });
            }
        }
        // Keep the Pareto front: a state must be worth more than every cheaper one.
        next.sort_by(|a, b| a.cost.total_cmp(&b.cost).then(b.value.total_cmp(&a.value)));
        let mut best = f64::NEG_INFINITY;
        next.retain(|s| {
            let keep = s.value > best;
            best = best.max(s.value);
            keep
        });
        work += next.len();
        if work > WORK_LIMIT || next.len() > u32::MAX as usize {
            return CoreOutcome::GaveUp { free_items: m };
        }
        if next.is_empty() {
            return CoreOutcome::Optimal; // nothing beats the incumbent
        }
        layers.push(next);
    }
    let last = &layers[m];
    let Some((mut at, top)) = last
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.value.total_cmp(&b.1.value).then(b.0.cmp(&a.0)))
    else {
        return CoreOutcome::Optimal;
    };
    if top.value <= target + tol {
        return CoreOutcome::Optimal;
    }
    for j in (0..m).rev() {
        let s = layers[j + 1][at];
        choice[free[j].0] = s.level as usize;
        at = s.parent as usize;
    }
    CoreOutcome::Optimal
}
