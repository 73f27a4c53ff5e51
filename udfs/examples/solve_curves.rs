//! Solves one multiple-choice knapsack read from raw files, for comparison scripts:
//! `solve_curves VALUES COSTS N K BUDGET [RUNS]`, where VALUES and COSTS hold N·K
//! little-endian f64 (item-major). Prints one JSON object per solver with the median time.

use std::time::Instant;

use flashsql_udfs::knapsack::{Curves, Plan, solve_exact, solve_lagrangian};

fn read_f64s(path: &str) -> Result<Vec<f64>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    Ok(bytes
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

fn run() -> Result<(), String> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 6 {
        return Err("usage: solve_curves VALUES COSTS N K BUDGET [RUNS]".into());
    }
    let parse = |i: usize| -> Result<f64, String> {
        args[i]
            .parse::<f64>()
            .map_err(|e| format!("argument {i}: {e}"))
    };
    let (n, k, budget) = (parse(3)? as usize, parse(4)? as usize, parse(5)?);
    let runs = if args.len() > 6 {
        parse(6)? as usize
    } else {
        3
    };
    let (values, costs) = (read_f64s(&args[1])?, read_f64s(&args[2])?);
    if values.len() != n * k || costs.len() != n * k {
        return Err(format!("expected {} numbers per file", n * k));
    }
    let mut curves = Curves::with_capacity(n, n * k);
    for i in 0..n {
        let r = i * k..(i + 1) * k;
        curves.push(
            values[r.clone()]
                .iter()
                .copied()
                .zip(costs[r].iter().copied()),
        );
    }
    type Solve<'a> = Box<dyn Fn() -> Result<Plan, String> + 'a>;
    let solvers: [(&str, Solve); 2] = [
        (
            "lagrangian",
            Box::new(|| solve_lagrangian(&curves, budget, 1e-3).map_err(|e| e.to_string())),
        ),
        (
            "exact",
            Box::new(|| solve_exact(&curves, budget).map_err(|e| e.to_string())),
        ),
    ];
    for (name, solve) in solvers {
        let mut times = Vec::new();
        let mut plan = None;
        for _ in 0..runs.max(1) {
            let t0 = Instant::now();
            plan = Some(solve()?);
            times.push(t0.elapsed().as_secs_f64());
        }
        times.sort_by(f64::total_cmp);
        let p = plan.expect("at least one run");
        println!(
            "{{\"solver\": \"{name}\", \"seconds\": {}, \"objective\": {}, \"upper_bound\": {}, \"cost\": {}}}",
            times[times.len() / 2],
            p.objective,
            p.upper_bound,
            p.cost
        );
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("solve_curves: {e}");
        std::process::exit(2);
    }
}
