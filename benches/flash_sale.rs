//! Pricing policies during a flash sale: the acceptance table (share of the LP bound per
//! policy and horizon, 500 trials, seed 1), the dynamic pricer against the closed form, and
//! the speed of 500 trials × T = 10,000.
//!
//! `cargo bench --bench flash_sale`. Prints Markdown tables; record them in benches/RESULTS.md.

use std::time::Instant;

use flashsql_udfs::sale::gvr::{Exponential, ValueTable};
use flashsql_udfs::sale::simulate::{Scenario, Simulation, TrialResult};
use flashsql_udfs::sale::single::SingleProduct;

fn mean_se(rows: &[TrialResult], f: impl Fn(&TrialResult) -> f64) -> (f64, f64) {
    let n = rows.len() as f64;
    let m = rows.iter().map(&f).sum::<f64>() / n;
    let v = rows.iter().map(|r| (f(r) - m).powi(2)).sum::<f64>() / (n - 1.0);
    (m, (v / n).sqrt())
}

fn main() {
    let trials = 500;
    let policies = [
        ("ts_update", 0),
        ("ts_fixed", 0),
        ("ts_blind", 0),
        ("greedy", 0),
        ("fixed", 2),
        ("clairvoyant", 0),
    ];
    println!(
        "| ferreira_single, inventory ratio 0.25, {trials} trials, seed 1 | T = 100 | T = 1,000 | T = 10,000 |"
    );
    println!("|---|---|---|---|");
    for (policy, level) in policies {
        let mut cells = Vec::new();
        for horizon in [100.0, 1000.0, 10000.0] {
            let sim = Simulation {
                scenario: Scenario::Single(SingleProduct::ferreira()),
                policy: policy.into(),
                horizon,
                inventory_ratio: 0.25,
                trials,
                seed: 1,
            };
            let rows = sim.run(level).expect("runs");
            let (m, se) = mean_se(&rows, |r| 100.0 * r.revenue / r.upper_bound);
            cells.push(format!("{m:.2} % ± {se:.2}"));
        }
        let name = if policy == "fixed" {
            "fixed (39.9)".to_string()
        } else {
            policy.to_string()
        };
        println!("| {name} | {} |", cells.join(" | "));
    }

    let model = Exponential {
        a: 10.0,
        alpha: 1.0,
    };
    let t0 = Instant::now();
    let table = ValueTable::solve(model, 50, 10.0, 0.01);
    let solve = t0.elapsed().as_secs_f64();
    let mut worst = 0.0f64;
    for x in 0..=50u32 {
        for n in 0..=100 {
            let t = n as f64 * 0.1;
            worst = worst.max((table.value(x as usize, t) - model.closed_form(x, t)).abs());
        }
    }
    println!();
    println!(
        "gvr_exponential (a = 10, α = 1): dynamic program for x ≤ 50, t ≤ 10 (step 0.01) in {solve:.4} s; worst |J − J*| over the 0.1 grid = {worst:.2e}"
    );
    for (x, t) in [(1u32, 1.0), (5, 5.0), (20, 5.0), (50, 10.0)] {
        println!(
            "  J({x}, {t}) = {:.6} (closed form {:.6})",
            table.value(x as usize, t),
            model.closed_form(x, t)
        );
    }

    println!();
    println!(
        "| speed: {trials} trials × T = 10,000 (plus the clairvoyant on the same draws), median of 3 | seconds |"
    );
    println!("|---|---|");
    for policy in ["ts_update", "ts_fixed", "greedy"] {
        let sim = Simulation {
            scenario: Scenario::Single(SingleProduct::ferreira()),
            policy: policy.into(),
            horizon: 10_000.0,
            inventory_ratio: 0.25,
            trials,
            seed: 2,
        };
        let mut times: Vec<f64> = (0..3)
            .map(|_| {
                let t0 = Instant::now();
                sim.run(0).expect("runs");
                t0.elapsed().as_secs_f64()
            })
            .collect();
        times.sort_by(f64::total_cmp);
        println!("| {policy} | {:.3} |", times[1]);
    }
}
