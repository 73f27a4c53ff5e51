//! The exact solver. First the LP relaxation, solved exactly: each item's levels are reduced
//! to the upper convex hull of (cost, value); a greedy over all incremental hull segments by
//! falling slope fills the budget, taking at most one item fractionally. That gives the LP
//! optimum (an upper bound on the integer optimum) and the budget's shadow price. The integer
//! plan drops the fractional step, keeps filling with later segments that still fit, is
//! repaired by local moves ([`polish`]), and is then proved optimal (or improved until it is)
//! by the search over the few items whose level is still in doubt ([`super::core`]).

use rayon::prelude::*;

use super::core::{CoreOutcome, core_search};
use super::{Curves, Item, KnapsackError, Plan, check_feasible, validate};

/// One incremental step along an item's upper hull, 16 bytes so that N = 10^7 items fit.
#[derive(Debug, Clone, Copy, Default)]
struct Segment {
    slope: f64,
    item: u32,
    /// The hull level this step reaches; it starts from the item's current level.
    to: u32,
}

/// Writes the levels on the upper-left convex hull of (cost, value) into `hull`, from the
/// cheapest level, with strictly increasing cost and value and strictly falling slopes. Ties
/// keep the lowest level index.
fn upper_hull(it: Item<'_>, order: &mut Vec<usize>, hull: &mut Vec<usize>) {
    order.clear();
    order.extend(0..it.len());
    order.sort_by(|&a, &b| {
        it.costs[a]
            .total_cmp(&it.costs[b])
            .then(it.values[b].total_cmp(&it.values[a]))
            .then(a.cmp(&b))
    });
    hull.clear();
    for &k in order.iter() {
        // A level must be worth more than every cheaper one (the frontier)…
        if let Some(&last) = hull.last()
            && (it.values[k] <= it.values[last] || it.costs[k] == it.costs[last])
        {
            continue;
        }
        // …and lie above the chord of its neighbours (the monotone-chain upper hull).
        while hull.len() >= 2 {
            let a = hull[hull.len() - 2];
            let b = hull[hull.len() - 1];
            let cross = (it.costs[b] - it.costs[a]) * (it.values[k] - it.values[a])
                - (it.values[b] - it.values[a]) * (it.costs[k] - it.costs[a]);
            if cross >= 0.0 {
                hull.pop();
            } else {
                break;
            }
        }
        hull.push(k);
    }
}

/// The first hull level of every item and all hull segments, counted first and then written
/// into one allocation (collecting per-item vectors would hold the segments twice).
fn hull_segments(curves: &Curves) -> (Vec<usize>, Vec<Segment>) {
    let scratch = || (Vec::new(), Vec::new());
    let shape: Vec<(usize, u32)> = curves
        .par_iter()
        .map_init(scratch, |(order, hull), it| {
            upper_hull(it, order, hull);
            (hull[0], (hull.len() - 1) as u32)
        })
        .collect();
    let first: Vec<usize> = shape.iter().map(|s| s.0).collect();
    const BLOCK: usize = 1 << 14;
    let block_sizes: Vec<usize> = shape
        .chunks(BLOCK)
        .map(|c| c.iter().map(|s| s.1 as usize).sum())
        .collect();
    drop(shape);
    let mut segments = vec![Segment::default(); block_sizes.iter().sum()];
    let mut slices = Vec::with_capacity(block_sizes.len());
    let mut rest = segments.as_mut_slice();
    for &size in &block_sizes {
        let (head, tail) = rest.split_at_mut(size);
        slices.push(head);
        rest = tail;
    }
    slices
        .into_par_iter()
        .enumerate()
        .for_each_init(scratch, |(order, hull), (b, out)| {
            let mut at = 0;
            for i in b * BLOCK..((b + 1) * BLOCK).min(curves.len()) {
                let it = curves.item(i);
                upper_hull(it, order, hull);
                for w in hull.windows(2) {
                    let dc = it.costs[w[1]] - it.costs[w[0]];
                    let dv = it.values[w[1]] - it.values[w[0]];
                    out[at] = Segment {
                        slope: dv / dc,
                        item: i as u32,
                        to: w[1] as u32,
                    };
                    at += 1;
                }
            }
        });
    (first, segments)
}

/// Solves the LP relaxation exactly, rounds it to an integer plan and searches the core of
/// undecided items for the integer optimum.
pub fn solve_exact(curves: &Curves, budget: f64) -> Result<Plan, KnapsackError> {
    validate(curves, budget)?;
    check_feasible(curves, budget)?;
    if curves.len() > u32::MAX as usize {
        return Err(KnapsackError::TooLarge(curves.len()));
    }
    let (mut choice, mut segments) = hull_segments(curves);
    let (mut value, mut cost) = curves.totals(&choice);
    // Falling slope; within an item the hull already orders them. Ties: item, then level.
    segments.par_sort_unstable_by(|a, b| {
        b.slope
            .total_cmp(&a.slope)
            .then(a.item.cmp(&b.item))
            .then(a.to.cmp(&b.to))
    });
    let mut lp_bound = f64::NAN;
    let mut shadow = 0.0;
    let mut fractional = None;
    // Items whose next hull step did not fit: their later steps are out of order.
    let mut blocked = vec![false; curves.len()];
    for s in &segments {
        let i = s.item as usize;
        if blocked[i] {
            continue;
        }
        let it = curves.item(i);
        let (from, to) = (choice[i], s.to as usize);
        let (dc, dv) = (
            it.costs[to] - it.costs[from],
            it.values[to] - it.values[from],
        );
        let remaining = budget - cost;
        if dc <= remaining {
            cost += dc;
            value += dv;
            choice[i] = to;
        } else {
            if lp_bound.is_nan() {
                // The fractional step of the LP optimum.
                lp_bound = value + dv * (remaining / dc);
                shadow = s.slope;
                fractional = Some(i);
            }
            blocked[i] = true;
        }
    }
    drop(segments);
    drop(blocked);
    if lp_bound.is_nan() {
        lp_bound = value; // every improving step fitted: the plan is the LP optimum
    } else {
        polish(curves, budget, &mut choice, fractional);
        // The core search proves the plan optimal or improves it; when it gives up (too
        // many undecided items) the polished plan stands with its reported gap.
        if let CoreOutcome::GaveUp { free_items } = core_search(curves, budget, shadow, &mut choice)
        {
            tracing::debug!(
                free_items,
                "exact solver: core search too large, plan kept as rounded"
            );
        }
    }
    let (value, cost) = curves.totals(&choice);
    Ok(Plan {
        choice,
        objective: value,
        cost,
        upper_bound: lp_bound.max(value),
        shadow_price: shadow,
    })
}

/// Repairs a rounded plan: (1) moves of one item to any better level that still fits,
/// repeated while they help; (2) for the item the LP took fractionally, moving it up while
/// moving one other item down to pay for it, if that gains. A pass is O(N·K²) (every level
/// of the fractional item against every level of every other item; K is a handful); the
/// plan only ever improves and stays within the budget.
fn polish(curves: &Curves, budget: f64, choice: &mut [usize], fractional: Option<usize>) {
    let mut cost = curves.totals(choice).1;
    const EPS: f64 = 1e-12;
    for _ in 0..4 {
        let mut improved = false;
        if let Some(f) = fractional {
            let it = curves.item(f);
            let cur = choice[f];
            // Best (gain, up level, other item, its level) over single compensating moves.
            let mut best: Option<(f64, usize, usize, usize)> = None;
            for up in 0..it.len() {
                let gain_up = it.values[up] - it.values[cur];
                let extra = it.costs[up] - it.costs[cur] - (budget - cost);
                if gain_up <= EPS || extra <= 0.0 {
                    continue; // no gain, or fits alone (the one-item pass takes it)
                }
                for (j, other) in curves.iter().enumerate() {
                    if j == f {
                        continue;
                    }
                    let cj = choice[j];
                    for down in 0..other.len() {
                        let saving = other.costs[cj] - other.costs[down];
                        if saving + EPS < extra {
                            continue;
                        }
                        let gain = gain_up - (other.values[cj] - other.values[down]);
                        if gain > EPS && best.is_none_or(|b| gain > b.0) {
                            best = Some((gain, up, j, down));
                        }
                    }
                }
            }
            if let Some((_, up, j, down)) = best {
                let other = curves.item(j);
                cost += it.costs[up] - it.costs[cur] + other.costs[down] - other.costs[choice[j]];
                choice[f] = up;
                choice[j] = down;
                improved = true;
            }
        }
        for (i, it) in curves.iter().enumerate() {
            let cur = choice[i];
            let mut pick = cur;
            for k in 0..it.len() {
                let new_cost = cost - it.costs[cur] + it.costs[k];
                if new_cost <= budget && it.values[k] > it.values[pick] + EPS {
                    pick = k;
                }
            }
            if pick != cur {
                cost += it.costs[pick] - it.costs[cur];
                choice[i] = pick;
                improved = true;
            }
        }
        if !improved {
            break;
        }
    }
}
