//! The purchase and propensity models for scoring on the CPU: weights frozen into plain
//! arrays, each sequence encoded once, and the first layer split by input so that per row
//! only the few dense features are multiplied:
//!
//! ```text
//! h1 = relu(U[seq]·W1_user + E[cat]·W1_cat + dense·W1_dense + b1)
//! ```
//!
//! `U·W1_user` is computed once per distinct sequence (and kept across calls, in `cache.rs`) and
//! `E·W1_cat` once per category, so a purchase row costs H1·(dense inputs + 1) + H1·H2 + 2·H2
//! multiply-adds (`network.rs`), plus one pass over its window for the category-affinity
//! inputs when the model reads them.

use std::collections::HashMap;
use std::sync::RwLock;

use candle_core::Tensor;
use rayon::prelude::*;

use crate::GpuError;
use crate::frozen::FrozenEncoder;
use crate::purchase::{PurchaseConfig, PurchaseModel, Rows};

mod cache;
mod network;
pub(crate) use cache::SequenceCache;
pub(crate) use cache::rows_through;
pub use cache::window_hash;
use network::{Inputs, Network, Scratch};

#[derive(Debug)]
pub struct Scorer {
    config: PurchaseConfig,
    encoder: Option<FrozenEncoder>,
    /// `[D, H1]`.
    w1_user: Vec<f32>,
    network: Network,
    /// U·W1_user of sequences already encoded, at most [`CACHED_SEQUENCES`] (cleared when
    /// full): about 0.5 KB each.
    cache: RwLock<SequenceCache>,
}

/// How many encoded sequences a loaded model keeps (~100 MB at the default shape).
pub(crate) const CACHED_SEQUENCES: usize = 200_000;

/// A model's tensors by name, as plain arrays.
pub(super) struct Weights(HashMap<String, Tensor>);

impl Weights {
    fn get(&self, name: &str) -> Result<Vec<f32>, GpuError> {
        let t = self
            .0
            .get(name)
            .ok_or_else(|| GpuError::Shape(format!("no tensor {name}")))?;
        Ok(t.flatten_all()?.to_vec1()?)
    }
}

impl Scorer {
    pub fn new(model: &PurchaseModel) -> Result<Scorer, GpuError> {
        let config = model.config().clone();
        let weights = Weights(model.named_tensors()?.into_iter().collect());
        let h1 = config.hidden[0];
        let w1 = weights.get("mlp.hidden1.weight")?;
        Ok(Scorer {
            encoder: match model.encoder() {
                Some(e) => Some(FrozenEncoder::new(e)?),
                None => None,
            },
            w1_user: w1[..config.user_dim() * h1].to_vec(),
            network: Network::new(&config, &weights, &w1)?,
            cache: RwLock::new(SequenceCache::new(config.seq_len, h1, CACHED_SEQUENCES)),
            config,
        })
    }

    pub fn config(&self) -> &PurchaseConfig {
        &self.config
    }

    /// The user vectors of `sequences` (`seq_len` tokens each), concatenated; `None` for a
    /// model trained without the sequence encoder.
    pub fn user_vectors(&self, sequences: &[u32]) -> Result<Option<Vec<f32>>, GpuError> {
        match &self.encoder {
            Some(e) => Ok(Some(e.encode(sequences, self.config.seq_len)?)),
            None => Ok(None),
        }
    }

    /// U·W1_user for each sequence (`seq_len` tokens each), `[S, H1]`; `None` without an
    /// encoder. `hashes` are the sequences' [`window_hash`]es, or empty (then computed
    /// here). Sequences seen in earlier calls come from the cache.
    fn sequence_parts(
        &self,
        sequences: &[u32],
        hashes: &[u64],
    ) -> Result<Option<Vec<f32>>, GpuError> {
        let Some(encoder) = &self.encoder else {
            return Ok(None);
        };
        let (len, h1, d) = (
            self.config.seq_len,
            self.config.hidden[0],
            self.config.encoder.dim,
        );
        rows_through(&self.cache, sequences, hashes, |misses| {
            let mut tokens = Vec::with_capacity(misses.len() * len);
            for &k in misses {
                tokens.extend_from_slice(&sequences[k * len..(k + 1) * len]);
            }
            let u = encoder.encode(&tokens, len)?;
            let mut parts = vec![0.0f32; misses.len() * h1];
            parts
                .par_chunks_mut(h1)
                .zip(u.par_chunks(d))
                .for_each(|(dst, uv)| {
                    for (f, &x) in uv.iter().enumerate() {
                        let row = &self.w1_user[f * h1..(f + 1) * h1];
                        for (o, w) in dst.iter_mut().zip(row) {
                            *o += x * w;
                        }
                    }
                });
            Ok(parts)
        })
        .map(Some)
    }

    /// Per-row integrated gradients (`network/attribution.rs`): the inputs the network
    /// reads as its first layer sees them, each row's value of each (`None` for the
    /// sequence, which is not one number), and per row one contribution per input then the
    /// bias (the logit at the all-zero input with no discount). They sum to the row's logit
    /// computed in f64; the scoring path computes it in f32, which differs by its rounding.
    #[allow(clippy::type_complexity)]
    pub fn contributions(
        &self,
        rows: &Rows,
    ) -> Result<(Vec<String>, Vec<Option<f64>>, Vec<f64>), GpuError> {
        rows.check(&self.config)?;
        let config = &self.config;
        let h1 = config.hidden[0];
        let seq_h1 = self.sequence_parts(&rows.sequences, &rows.sequence_hashes)?;
        let slots = dense_slots(config);
        let (f, bias) = (config.features.len(), self.network.baseline());
        let features_from = config.dense_dim() - f;
        let mut columns: Vec<String> = slots.iter().map(|(_, name)| name.clone()).collect();
        if config.has_offer() {
            columns.push("category_id".into());
        }
        if seq_h1.is_some() {
            columns.push("sequence".into());
        }
        if config.has_offer() {
            columns.push("discount".into());
        }
        let per_row: Vec<(Vec<Option<f64>>, Vec<f64>)> = (0..rows.len())
            .into_par_iter()
            .map_init(
                || vec![0.0f32; config.dense_dim()],
                |dense, r| {
                    rows.dense(config, r, dense);
                    let mut parts: Vec<f64> = Vec::with_capacity(columns.len() * h1);
                    let mut values: Vec<Option<f64>> = Vec::with_capacity(columns.len());
                    for &(j, _) in &slots {
                        parts.extend(self.network.dense_part(j, dense[j]));
                        values.push(Some(if config.has_offer() && j == 0 {
                            f64::from(rows.price[r].max(1e-6).ln())
                        } else if j >= features_from {
                            f64::from(rows.features[r * f + j - features_from])
                        } else {
                            f64::from(dense[j])
                        }));
                    }
                    if config.has_offer() {
                        let c = rows.category[r] as usize;
                        parts.extend(self.network.category_part(c));
                        values.push(
                            c.checked_sub(1)
                                .and_then(|k| config.categories.get(k))
                                .map(|&id| id as f64),
                        );
                    }
                    if let Some(s) = &seq_h1 {
                        let k = rows.seq_of_row[r] as usize;
                        parts.extend(s[k * h1..(k + 1) * h1].iter().map(|&x| f64::from(x)));
                        values.push(None);
                    }
                    let discount = rows.discount.get(r).copied().map_or(0.0, f64::from);
                    if config.has_offer() {
                        values.push(Some(discount));
                    }
                    let mut contributions = self.network.attribute(&parts, discount);
                    contributions.push(bias);
                    (values, contributions)
                },
            )
            .collect();
        let (mut values, mut contributions) = (Vec::new(), Vec::new());
        for (v, c) in per_row {
            values.extend(v);
            contributions.extend(c);
        }
        Ok((columns, values, contributions))
    }

    /// The probability of every row.
    pub fn probabilities(&self, rows: &Rows) -> Result<Vec<f64>, GpuError> {
        let mut out = self.logits(rows)?;
        for z in &mut out {
            *z = 1.0 / (1.0 + (-*z).exp());
        }
        Ok(out)
    }

    /// The logit of every row.
    pub fn logits(&self, rows: &Rows) -> Result<Vec<f64>, GpuError> {
        rows.check(&self.config)?;
        let seq_h1 = self.sequence_parts(&rows.sequences, &rows.sequence_hashes)?;
        let x = Inputs {
            config: &self.config,
            rows,
            seq_h1: seq_h1.as_deref(),
        };
        let mut out = vec![0.0f64; rows.len()];
        let avx2 = crate::simd::has_avx2();
        out.par_chunks_mut(1024).enumerate().for_each_init(
            || Scratch::new(&self.config),
            |scratch, (chunk, dst)| {
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: the CPU has AVX2 (checked at run time).
                    unsafe {
                        self.network
                            .score_chunk_avx2(&x, chunk * 1024, dst, scratch)
                    };
                    return;
                }
                let _ = avx2;
                self.network.score_chunk(&x, chunk * 1024, dst, scratch);
            },
        );
        Ok(out)
    }
}

/// The dense inputs a model reads, by their slot in [`Rows::dense`], with the names the
/// tabular kinds give the same inputs (`tabular::column_names`); slots a model was trained
/// without (time_left, hour) are left out.
fn dense_slots(config: &PurchaseConfig) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut k = 0;
    if config.has_offer() {
        out.push((0, "ln_price".into()));
        if config.time_left {
            out.push((1, "time_left".into()));
        }
        if config.hour {
            out.extend([(2, "hour_sin".into()), (3, "hour_cos".into())]);
        }
        k = crate::purchase::DENSE;
    }
    if config.affinity_layout().is_some() {
        for name in ["affinity_share", "affinity_events", "affinity_purchases"] {
            out.push((k, name.into()));
            k += 1;
        }
    }
    for f in 1..=config.features.len() {
        out.push((k, format!("feature_{f}")));
        k += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::EncoderConfig;
    use crate::purchase::{ModelKind, pad_sequence};
    use rand::{Rng, SeedableRng};

    /// A small config as `train_model` builds one: calibrated, with category affinity;
    /// `features` extra numeric features.
    fn small_config(kind: ModelKind, features: usize) -> PurchaseConfig {
        PurchaseConfig {
            kind,
            encoder: EncoderConfig::default(),
            seq_len: 16,
            use_sequence: true,
            categories: vec![1, 2, 3],
            category_dim: 8,
            hidden: [64, 32],
            log_price_mean: 3.0,
            log_price_sd: 0.5,
            time_left: true,
            hour: kind == ModelKind::Purchase,
            features: vec![crate::purchase::Scale { mean: 1.0, sd: 2.0 }; features],
            calibration: Some(crate::calibration::Platt { a: 0.8, b: -0.3 }),
            affinity: Some(crate::affinity::TokenLayout {
                category_buckets: 64,
                events: 5,
                purchase: 4,
            }),
            tabular: None,
        }
    }

    /// `n` rows, each with its own random 10-token sequence, and for a purchase model random
    /// offers (discounts below `max_discount`), for a propensity model random features.
    fn random_rows(
        rng: &mut rand_chacha::ChaCha8Rng,
        config: &PurchaseConfig,
        n: usize,
        max_discount: f32,
    ) -> Rows {
        let mut rows = Rows::default();
        for _ in 0..n {
            let seq: Vec<u32> = (0..10).map(|_| rng.random_range(1..2561)).collect();
            pad_sequence(&seq, config.seq_len, &mut rows.sequences);
        }
        rows.seq_of_row = (0..n as u32).collect();
        if config.has_offer() {
            rows.category = (0..n).map(|_| rng.random_range(0..4)).collect();
            rows.category_bucket = rows.category.iter().map(|&c| c * 3).collect();
            rows.price = (0..n).map(|_| rng.random_range(5.0..50.0)).collect();
            rows.discount = (0..n)
                .map(|_| rng.random_range(0.0..max_discount))
                .collect();
            rows.time_left = (0..n).map(|_| rng.random()).collect();
            rows.hour = (0..n).map(|_| rng.random_range(0.0..24.0)).collect();
        }
        let f = config.features.len();
        rows.features = (0..f * n).map(|_| rng.random_range(-3.0..5.0)).collect();
        rows
    }

    /// Every build of the per-row network gives the same bits: the AVX2 build and the
    /// baseline build, the default shape's two-rows-at-a-time kernel and the one for any
    /// shape (an odd number of rows, so the last row is paired with itself; a calibration,
    /// so that step is covered too; with category affinity).
    #[test]
    fn every_build_of_the_network_gives_the_same_bits() {
        let config = small_config(ModelKind::Purchase, 0);
        let model = PurchaseModel::seeded(config.clone(), 4, &candle_core::Device::Cpu).unwrap();
        let scorer = Scorer::new(&model).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        let n = 301;
        let rows = random_rows(&mut rng, &config, n, 0.5);
        let seq_h1 = scorer.sequence_parts(&rows.sequences, &[]).unwrap();
        let x = Inputs {
            config: &config,
            rows: &rows,
            seq_h1: seq_h1.as_deref(),
        };
        let net = &scorer.network;
        let score = |f: &dyn Fn(&mut [f64], &mut Scratch)| {
            let mut out = vec![0.0f64; n];
            f(&mut out, &mut Scratch::new(&config));
            out
        };
        let fixed = score(&|o, s| net.score_chunk(&x, 0, o, s));
        let any = score(&|o, s| net.any_shape(&x, 0, o, s));
        let same = |a: &[f64], b: &[f64]| a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(fixed.iter().all(|z| z.is_finite()));
        assert!(same(&fixed, &any));
        #[cfg(target_arch = "x86_64")]
        if crate::simd::has_avx2() {
            // SAFETY: AVX2 is present (checked above).
            let avx2 = score(&|o, s| unsafe { net.score_chunk_avx2(&x, 0, o, s) });
            assert!(same(&fixed, &avx2));
        } else {
            eprintln!("skipping the AVX2 build: this CPU has no AVX2");
        }
    }

    /// Integrated gradients add up: per row, the contributions and the bias sum to the
    /// logit in f64 (1e-9) and to the scored f32 logit (1e-4); each contribution matches a
    /// brute-force integral of the central-difference gradient along the path (4,000
    /// midpoints, 1e-3), for a calibrated purchase model and a propensity model with
    /// features.
    #[test]
    fn integrated_gradients_add_up_and_match_a_brute_force_integral() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for kind in [ModelKind::Purchase, ModelKind::Propensity] {
            let features = if kind == ModelKind::Purchase { 0 } else { 2 };
            let config = small_config(kind, features);
            let model =
                PurchaseModel::seeded(config.clone(), 9, &candle_core::Device::Cpu).unwrap();
            let scorer = Scorer::new(&model).unwrap();
            let n = 12;
            let mut rows = random_rows(&mut rng, &config, n, 0.9);
            // Row 0 at no discount: its discount contributes nothing.
            if let Some(d) = rows.discount.first_mut() {
                *d = 0.0;
            }
            let (columns, values, contributions) = scorer.contributions(&rows).unwrap();
            let d = columns.len();
            assert_eq!(values.len(), n * d);
            assert_eq!(contributions.len(), n * (d + 1));
            let scored = scorer.logits(&rows).unwrap();
            let seq_h1 = scorer
                .sequence_parts(&rows.sequences, &[])
                .unwrap()
                .unwrap();
            let h1 = 64;
            let net = &scorer.network;
            for r in 0..n {
                let c = &contributions[r * (d + 1)..(r + 1) * (d + 1)];
                // The row's parts, rebuilt here as the first layer reads them.
                let mut dense = vec![0.0f32; config.dense_dim()];
                rows.dense(&config, r, &mut dense);
                let mut parts: Vec<Vec<f64>> = dense_slots(&config)
                    .iter()
                    .map(|&(j, _)| net.dense_part(j, dense[j]))
                    .collect();
                let discount = if kind == ModelKind::Purchase {
                    parts.push(net.category_part(rows.category[r] as usize));
                    f64::from(rows.discount[r])
                } else {
                    0.0
                };
                parts.push(
                    seq_h1[r * h1..(r + 1) * h1]
                        .iter()
                        .map(|&x| f64::from(x))
                        .collect(),
                );
                let logit = net.logit_f64(&parts.concat(), discount);
                let sum: f64 = c.iter().sum();
                assert!(
                    (sum - logit).abs() < 1e-9,
                    "{kind:?} row {r}: {sum} vs {logit}"
                );
                assert!(
                    (sum - scored[r]).abs() < 1e-4,
                    "{kind:?} row {r}: {sum} vs scored {}",
                    scored[r]
                );
                // Brute force: ∫ ∂F/∂s dt by midpoints, ∂F/∂s by central differences along
                // each part (and along the discount).
                let steps = 4000;
                let eps = 1e-6;
                let at = |t: f64, extra: &[f64], d: f64| {
                    let mut all: Vec<f64> = parts.concat().iter().map(|v| v * t).collect();
                    all.extend_from_slice(extra);
                    net.logit_f64(&all, d)
                };
                for (k, part) in parts.iter().enumerate() {
                    let plus: Vec<f64> = part.iter().map(|v| v * eps).collect();
                    let minus: Vec<f64> = part.iter().map(|v| -v * eps).collect();
                    let brute: f64 = (0..steps)
                        .map(|m| {
                            let t = (m as f64 + 0.5) / steps as f64;
                            (at(t, &plus, t * discount) - at(t, &minus, t * discount)) / (2.0 * eps)
                        })
                        .sum::<f64>()
                        / steps as f64;
                    assert!(
                        (brute - c[k]).abs() < 1e-3 * (1.0 + c[k].abs()),
                        "{kind:?} row {r} input {}: {} vs brute force {brute}",
                        columns[k],
                        c[k]
                    );
                }
                if kind == ModelKind::Purchase {
                    let k = d - 1;
                    assert_eq!(columns[k], "discount");
                    let brute: f64 = (0..steps)
                        .map(|m| {
                            let t = (m as f64 + 0.5) / steps as f64;
                            (at(t, &[], (t + eps) * discount) - at(t, &[], (t - eps) * discount))
                                / (2.0 * eps)
                        })
                        .sum::<f64>()
                        / steps as f64;
                    assert!(
                        (brute - c[k]).abs() < 1e-3 * (1.0 + c[k].abs()),
                        "row {r} discount: {} vs {brute}",
                        c[k]
                    );
                    if r == 0 {
                        assert_eq!(c[k], 0.0);
                    }
                }
            }
        }
    }
}
