//! The integer optimum near the LP solution. With the LP multiplier λ, every plan's value is
//! at most `L(λ) − Σ_i rc_i`, where `L(λ) = Σ_i max_k (v_ik − λ·c_ik) + λ·budget` is the
//! Lagrangian bound and `rc_i ≥ 0` the reduced cost of item i's level. A plan that beats the
//! incumbent therefore uses only levels with `rc ≤ L(λ) − incumbent`: usually one level for
//! almost every item (those are fixed at their best level) and two or three for a few (the
//! core). The core is solved exactly by dynamic programming over Pareto-optimal (cost, value)
//! states, pruned by the same bound; this is the reduction behind Pisinger's core algorithms
//! for the multiple-choice knapsack.
//!
//! The core's size grows with the incumbent's gap, so the search first runs with a much
//! smaller reduced-cost threshold τ, chosen to leave at most a few dozen items undecided (a
//! heuristic: the best plan among levels with rc ≤ τ), which usually finds a plan close to
//! the optimum; that shrinks the gap, and the search is repeated with τ = the new gap. Once τ covers the gap the result is proved optimal. A work
//! limit keeps pathological inputs from running away; the caller then keeps its incumbent.

use rayon::prelude::*;

use super::Curves;

/// States one search may create before it gives up (about 50 ms).
const WORK_LIMIT: usize = 2_000_000;
/// The first pass's threshold as a share of the gap…
const FIRST_SHARE: f64 = 1.0 / 32.0;
/// …lowered until at most this many items are undecided, so that the first pass is quick.
const FIRST_MAX_FREE: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CoreOutcome {
    /// `choice` is now an optimal plan.
    Optimal,
    /// The search was too large; `choice` is the best plan found.
    GaveUp { free_items: usize },
}

#[derive(Debug, Clone, Copy)]
struct State {
    cost: f64,
    value: f64,
    parent: u32,
    level: u32,
}

/// Each item's best level and score `v − λ·c` at λ.
struct Scores {
    best: Vec<f64>,
    argmax: Vec<u32>,
}

/// Replaces `choice` (a feasible plan) by an optimal one, using the multiplier `lambda ≥ 0`.
pub(super) fn core_search(
    curves: &Curves,
    budget: f64,
    lambda: f64,
    choice: &mut [usize],
) -> CoreOutcome {
    let (best, argmax): (Vec<f64>, Vec<u32>) = curves
        .par_iter()
        .map(|it| {
            (0..it.len()).fold((f64::NEG_INFINITY, 0u32), |acc, k| {
                let s = it.score(k, lambda);
                if s > acc.0 { (s, k as u32) } else { acc }
            })
        })
        .unzip();
    let scores = Scores { best, argmax };
    let bound = scores.best.iter().sum::<f64>() + lambda * budget;
    let mut incumbent = curves.totals(choice).0;
    let tol = 1e-12 * bound.abs().max(incumbent.abs()).max(1.0);
    let mut threshold = (bound - incumbent) * FIRST_SHARE;
    while threshold > tol && undecided(curves, lambda, &scores, threshold, tol) > FIRST_MAX_FREE {
        threshold /= 4.0;
    }
    loop {
        let slack = bound - incumbent;
        if slack <= tol {
            return CoreOutcome::Optimal;
        }
        let tau = threshold.min(slack);
        match search(curves, budget, lambda, &scores, tau, tol, incumbent) {
            Search::GaveUp { free_items } => return CoreOutcome::GaveUp { free_items },
            Search::Found(levels) => {
                choice.copy_from_slice(&levels);
                incumbent = curves.totals(choice).0;
            }
            Search::NothingBetter => {}
        }
        // Every plan better than the incumbent has all its reduced costs within the new
        // gap; if the search covered that, nothing better exists.
        if tau + tol >= bound - incumbent {
            return CoreOutcome::Optimal;
        }
        threshold = bound - incumbent;
    }
}

/// How many items have more than one level with reduced cost ≤ `tau`.
fn undecided(curves: &Curves, lambda: f64, scores: &Scores, tau: f64, tol: f64) -> usize {
    curves
        .par_iter()
        .zip(&scores.best)
        .filter(|(it, best)| {
            (0..it.len())
                .filter(|&k| **best - it.score(k, lambda) <= tau + tol)
                .nth(1)
                .is_some()
        })
        .count()
}

enum Search {
    Found(Vec<usize>),
    NothingBetter,
    GaveUp { free_items: usize },
}

/// The best plan better than `incumbent` among levels with reduced cost ≤ `tau`.
fn search(
    curves: &Curves,
    budget: f64,
    lambda: f64,
    scores: &Scores,
    tau: f64,
    tol: f64,
    incumbent: f64,
) -> Search {
    // The undecided items: candidate levels ordered by reduced cost, and the reduced cost of
    // the second one. Every other item stays at its best level.
    let mut free: Vec<(usize, Vec<u32>, f64)> = curves
        .par_iter()
        .zip(&scores.best)
        .enumerate()
        .filter_map(|(i, (it, &best))| {
            let rc = |k: usize| best - it.score(k, lambda);
            // Most items have a single candidate: find out without allocating.
            (0..it.len()).filter(|&k| rc(k) <= tau + tol).nth(1)?;
            let mut c: Vec<(f64, u32)> = (0..it.len())
                .filter(|&k| rc(k) <= tau + tol)
                .map(|k| (rc(k), k as u32))
                .collect();
            c.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let second = c[1].0;
            Some((i, c.into_iter().map(|(_, k)| k).collect(), second))
        })
        .collect();
    let best_levels: Vec<usize> = scores.argmax.iter().map(|&k| k as usize).collect();
    let (all_value, all_cost) = curves.totals(&best_levels);
    let (free_value, free_cost) = free.iter().fold((0.0, 0.0), |acc, (i, _, _)| {
        let it = curves.item(*i);
        let k = best_levels[*i];
        (acc.0 + it.values[k], acc.1 + it.costs[k])
    });
    let room = budget - (all_cost - free_cost);
    let target = incumbent - (all_value - free_value);
    if room < -tol {
        return Search::NothingBetter;
    }
    // Items whose alternatives are expensive first: they prune the most states early.
    free.sort_by(|a, b| b.2.total_cmp(&a.2).then(a.0.cmp(&b.0)));
    let m = free.len();
    // What the undecided items can add at most (their best scores at λ, and their best
    // values whatever they cost), and cost at least.
    let mut rest_score = vec![0.0; m + 1];
    let mut rest_value = vec![0.0; m + 1];
    let mut rest_min_cost = vec![0.0; m + 1];
    for j in (0..m).rev() {
        let (i, cands, _) = &free[j];
        let it = curves.item(*i);
        rest_score[j] = rest_score[j + 1] + scores.best[*i];
        rest_value[j] = rest_value[j + 1]
            + cands
                .iter()
                .map(|&k| it.values[k as usize])
                .fold(f64::NEG_INFINITY, f64::max);
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
                // Two Lagrangian bounds on the rest: at λ, and at 0 (room left over that the
                // rest cannot spend is worth nothing).
                let ub =
                    value + (lambda * (room - cost) + rest_score[j + 1]).min(rest_value[j + 1]);
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
            return Search::GaveUp { free_items: m };
        }
        if next.is_empty() {
            return Search::NothingBetter;
        }
        layers.push(next);
    }
    let Some((mut at, top)) = layers[m]
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.value.total_cmp(&b.1.value).then(b.0.cmp(&a.0)))
    else {
        return Search::NothingBetter;
    };
    if top.value <= target + tol {
        return Search::NothingBetter;
    }
    let mut levels = best_levels;
    for j in (0..m).rev() {
        let s = layers[j + 1][at];
        levels[free[j].0] = s.level as usize;
        at = s.parent as usize;
    }
    Search::Found(levels)
}
