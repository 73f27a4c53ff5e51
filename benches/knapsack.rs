//! Speed of the discount solvers at N = 1,000,000 items × K = 5 levels, and peak memory at
//! N = 10,000,000 × 5.
//!
//! `cargo bench --bench knapsack`. Prints Markdown tables; record them in benches/RESULTS.md.
//! The same-run comparison with numpy and HiGHS is `benches/compare/knapsack_speed.py`.

use std::time::Instant;

use flashsql_udfs::knapsack::{Curves, random_instance, solve_exact, solve_lagrangian};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Peak resident memory of this process so far (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

fn budget_of(items: &Curves, k: usize) -> f64 {
    items.iter().map(|it| it.costs[k - 1]).sum::<f64>() * 0.3
}

fn main() {
    let k = 5;
    let n = 1_000_000;
    let items = random_instance(n, k, 42);
    let budget = budget_of(&items, k);
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
    drop(items);
    println!(
        "| solver (N = {n}, K = {k}, budget 30 % of the maximum, median of {runs}) | seconds | gap to bound |"
    );
    println!("|---|---|---|");
    println!(
        "| lagrangian (tolerance 0.1 %) | {:.3} | {:.2e} |",
        median(lag),
        lag_gap
    );
    println!("| exact | {:.3} | {:.2e} |", median(ex), ex_gap);

    let n = 10_000_000;
    let items = random_instance(n, k, 43);
    let budget = budget_of(&items, k);
    let after_instance = peak_rss_mib();
    let t0 = Instant::now();
    let p = solve_exact(&items, budget).expect("solves");
    let ex = t0.elapsed().as_secs_f64();
    let ex_gap = p.gap();
    drop(p);
    let t0 = Instant::now();
    let p = solve_lagrangian(&items, budget, 1e-3).expect("solves");
    let lag = t0.elapsed().as_secs_f64();
    let fmt = |m: Option<f64>| m.map_or("n/a".to_string(), |m| format!("{m:.0} MiB"));
    println!();
    println!("| N = {n}, K = {k} | seconds | gap | peak RSS of the process |");
    println!("|---|---|---|---|");
    println!("| instance only | | | {} |", fmt(after_instance));
    println!("| exact | {ex:.2} | {ex_gap:.2e} | |");
    println!(
        "| lagrangian | {lag:.2} | {:.2e} | {} (whole run) |",
        p.gap(),
        fmt(peak_rss_mib())
    );
}
