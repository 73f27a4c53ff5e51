//! What the model benchmarks share: the timing rule and the model shape they measure.

#![allow(dead_code)] // each benchmark uses part of it

use std::time::Instant;

use flashsql_gpu::encoder::EncoderConfig;
use flashsql_gpu::purchase::{ModelKind, PurchaseConfig, Rows};
use rand::Rng;

/// The median of 5 timed runs of `f`, after one untimed run (warm-up).
pub fn median_seconds(f: &mut dyn FnMut()) -> f64 {
    f();
    let mut t: Vec<f64> = (0..5)
        .map(|_| {
            let t0 = Instant::now();
            f();
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[2]
}

/// The purchase model's default shape, as `train_model` builds it, over 40 categories with
/// both offer features.
pub fn purchase_config() -> PurchaseConfig {
    PurchaseConfig {
        kind: ModelKind::Purchase,
        encoder: EncoderConfig {
            factor_buckets: Some(64),
            ..EncoderConfig::default()
        },
        seq_len: 64,
        use_sequence: true,
        categories: (0..40).collect(),
        category_dim: 8,
        hidden: [64, 32],
        log_price_mean: 4.0,
        log_price_sd: 0.7,
        time_left: true,
        hour: true,
        features: Vec::new(),
        calibration: None,
        affinity: Some(flashsql_gpu::affinity::TokenLayout {
            category_buckets: 64,
            events: 5,
            purchase: 4,
        }),
        tabular: None,
    }
}

/// Random offers over 41 categories, with both offer features, for rows pointing at
/// `sequences` through `seq_of_row`.
pub fn random_offers(rng: &mut impl Rng, sequences: Vec<u32>, seq_of_row: Vec<u32>) -> Rows {
    let n = seq_of_row.len();
    // Category index k is the id k − 1 (0: unknown), whose bucket is itself below 64.
    let category: Vec<u32> = (0..n).map(|_| rng.random_range(0..41)).collect();
    Rows {
        sequences,
        sequence_hashes: Vec::new(),
        seq_of_row,
        category_bucket: category.iter().map(|&c| c.saturating_sub(1)).collect(),
        category,
        price: (0..n).map(|_| rng.random_range(10.0..200.0)).collect(),
        discount: (0..n).map(|_| rng.random_range(0.0..0.5)).collect(),
        time_left: (0..n).map(|_| rng.random()).collect(),
        hour: (0..n).map(|_| rng.random_range(0.0..24.0)).collect(),
        features: Vec::new(),
    }
}
