//! Speed and memory of the discount solvers at N = 1,000,000 items × K = 5 levels.
//!
//! `cargo bench --bench knapsack`. Prints a Markdown table; record it in benches/RESULTS.md.

use std::time::Instant;

use flashsql_udfs::knapsack::{random_instance, solve_exact, solve_lagrangian};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let n = 1_000_000;
    let k = 5;
    let items = random_instance(n, k, 42);
    let budget: f64 = items.iter().map(|it| it.costs[k - 1]).sum::<f64>() * 0.3;
    let runs = 5;
    let mut lag = Vec::new();
    let mut ex = Vec::new();
    let mut lag_gap = 0.0;
    let mut ex_gap = 0.0;
    for _ in 0..runs {
        let t0 = Instant::now();
        let p = solve_lagrangian(&items, budget, 1e-3).expect("solves");
        lag.push(t0.elapsed().as_secs_f64());
        lag_gap = p.gap();
        let t0 = Instant::now();
        let p = solve_exact(&items, budget).expect("solves");
        ex.push(t0.elapsed().as_secs_f64());
        ex_gap = p.gap();
    }
    println!(
        "| solver (N = {n}, K = {k}, budget 30 % of the maximum, median of {runs}) | seconds | gap to bound |"
    );
    println!("|---|---|---|");
    println!(
        "| lagrangian (tolerance 0.1 %) | {:.3} | {:.2e} |",
        median(lag),
        lag_gap
    );
    println!(
        "| exact (LP via convex hulls, rounded) | {:.3} | {:.2e} |",
        median(ex),
        ex_gap
    );
}
