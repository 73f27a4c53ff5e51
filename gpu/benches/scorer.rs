//! The purchase model's frozen scorer on the CPU, in rows per second, split into its parts:
//! encoding the distinct sequences, and the per-row MLP.
//!
//! `cargo bench -p flashsql-gpu --bench scorer`. Prints a Markdown table.

mod common;

use candle_core::Device;
use flashsql_gpu::purchase::PurchaseModel;
use flashsql_gpu::scorer::Scorer;
use rand::{Rng, SeedableRng};

fn main() {
    let config = common::purchase_config();
    let model = PurchaseModel::seeded(config.clone(), 1, &Device::Cpu).expect("model");
    let scorer = Scorer::new(&model).expect("scorer");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    println!(
        "| frozen scorer, 2 cores, median of 5 | rows | distinct sequences | seconds | rows/s |"
    );
    println!("|---|---|---|---|---|");
    for (n, distinct) in [
        (1usize << 20, 1usize << 20),
        (1 << 20, 1 << 13),
        (1 << 20, 1),
    ] {
        let sequences: Vec<u32> = (0..distinct * 64)
            .map(|_| rng.random_range(1..2561))
            .collect();
        let seq_of_row = (0..n).map(|r| (r % distinct) as u32).collect();
        let rows = common::random_offers(&mut rng, sequences, seq_of_row);
        let s = common::median_seconds(&mut || {
            scorer.probabilities(&rows).expect("score");
        });
        println!(
            "| probabilities | {n} | {distinct} | {s:.4} | {:.0} |",
            n as f64 / s
        );
    }
}
