//! The encoder's forward pass on the CPU, in rows (sequences) per second.
//!
//! `cargo bench -p flashsql-gpu --bench encoder`. Prints a Markdown table.

mod common;

use candle_core::{Device, Tensor};
use flashsql_gpu::encoder::{EncoderConfig, SequenceEncoder};
use flashsql_gpu::frozen::FrozenEncoder;
use rand::{Rng, SeedableRng};

fn main() {
    let dev = Device::Cpu;
    let config = EncoderConfig::default();
    let enc = SequenceEncoder::seeded(config.clone(), 1, &dev).expect("encoder");
    let (b, l) = (8192, 64);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
    let ids: Vec<u32> = (0..b * l)
        .map(|_| rng.random_range(0..config.vocab as u32))
        .collect();
    let frozen = FrozenEncoder::new(&enc).expect("frozen");
    let flat = ids.clone();
    let ids = Tensor::from_vec(ids, (b, l), &dev).expect("tokens");
    let ours = common::median_seconds(&mut || {
        enc.forward(&ids).expect("forward");
    });
    let hand = common::median_seconds(&mut || {
        frozen.encode(&flat, l).expect("encode");
    });
    println!(
        "| encoder forward, B = {b}, L = {l}, E = 32, widths 2/3/5 × 32 channels, D = 32, median of 5 | seconds | rows/s |"
    );
    println!("|---|---|---|");
    println!(
        "| forward (table lookup + shifted sums) | {ours:.4} | {:.0} |",
        b as f64 / ours
    );
    println!(
        "| frozen, hand-written (inference) | {hand:.4} | {:.0} |",
        b as f64 / hand
    );
}
