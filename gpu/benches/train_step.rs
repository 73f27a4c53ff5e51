//! One training epoch of the purchase model on seeded synthetic rows, in rows per second
//! (the default shape: vocabulary 2,561, sequences of 64, batch 512).
//!
//! `cargo bench -p flashsql-gpu --bench train_step`. Prints a Markdown table.

mod common;

use std::time::Instant;

/// As in the server binary (see src/main.rs), purge delay included.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

use flashsql_gpu::device::DeviceChoice;
use flashsql_gpu::train::{SplitKeys, TrainOptions, train};
use rand::{Rng, SeedableRng};

fn main() {
    // SAFETY: sets a plain integer option of the allocator.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 1000) };
    let n = 25_000;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let sequences = (0..n * 64).map(|_| rng.random_range(0..2561)).collect();
    let rows = common::random_offers(&mut rng, sequences, (0..n as u32).collect());
    let labels: Vec<f32> = (0..n)
        .map(|_| f32::from(u8::from(rng.random_bool(0.2))))
        .collect();
    let keys = SplitKeys::User((0..n as i64).collect());
    let config = common::purchase_config();
    let opts = TrainOptions {
        epochs: 1,
        device: DeviceChoice::Cpu,
        ..TrainOptions::default()
    };
    let t0 = Instant::now();
    let trained = train(config, &rows, &labels, &keys, &opts, &mut |_| Ok(())).expect("train");
    let s = t0.elapsed().as_secs_f64();
    let epoch = trained.reports[0].seconds;
    println!(
        "| one epoch, {} training rows, batch 512, 2 cores | seconds | rows/s |",
        trained.train_rows
    );
    println!("|---|---|---|");
    println!(
        "| epoch (training and validation) | {epoch:.2} | {:.0} |",
        trained.train_rows as f64 / epoch
    );
    println!("| whole call (with setup) | {s:.2} | |");
}
