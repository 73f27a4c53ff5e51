//! The purchase and propensity models for scoring on the CPU: weights frozen into plain
//! arrays, each sequence encoded once, and the first layer split by input so that per row
//! only the few dense features are multiplied:
//!
//! ```text
//! h1 = relu(U[seq]·W1_user + E[cat]·W1_cat + dense·W1_dense + b1)
//! ```
//!
//! `U·W1_user` is computed once per distinct sequence and `E·W1_cat` once per category, so a
//! purchase row costs H1·(DENSE + 1) + H1·H2 + 2·H2 multiply-adds.

use std::collections::HashMap;
use std::sync::Mutex;

use candle_core::Tensor;
use rayon::prelude::*;

use crate::GpuError;
use crate::frozen::FrozenEncoder;
use crate::purchase::{PurchaseConfig, PurchaseModel, Rows};

#[derive(Debug)]
pub struct Scorer {
    config: PurchaseConfig,
    encoder: Option<FrozenEncoder>,
    /// `[D, H1]`.
    w1_user: Vec<f32>,
    /// `[categories + 1, H1]`: each category's embedding times its rows of W1, plus b1 (for
    /// a propensity model one row, b1).
    cat_h1: Vec<f32>,
    /// `[dense_dim, H1]`.
    w1_dense: Vec<f32>,
    /// `[H1, H2]`, `[H2]`, `[H2, outputs]`, `[outputs]`.
    w2: Vec<f32>,
    b2: Vec<f32>,
    w3: Vec<f32>,
    b3: Vec<f32>,
    /// U·W1_user of sequences already encoded, at most [`CACHED_SEQUENCES`] (cleared when
    /// full): about 0.5 KB each.
    cache: Mutex<SequenceCache>,
}

/// Token window → its U·W1_user row.
type SequenceCache = HashMap<Box<[u32]>, Box<[f32]>, ahash::RandomState>;

/// How many encoded sequences a loaded model keeps (~100 MB at the default shape).
const CACHED_SEQUENCES: usize = 200_000;

fn flat(t: &Tensor) -> Result<Vec<f32>, GpuError> {
    Ok(t.flatten_all()?.to_vec1()?)
}

impl Scorer {
    pub fn new(model: &PurchaseModel) -> Result<Scorer, GpuError> {
        let config = model.config().clone();
        let named: HashMap<String, Tensor> = model.named_tensors()?.into_iter().collect();
        let get = |name: &str| -> Result<Vec<f32>, GpuError> {
            named
                .get(name)
                .ok_or_else(|| GpuError::Shape(format!("no tensor {name}")))
                .and_then(flat)
        };
        let h1 = config.hidden[0];
        let w1 = get("mlp.hidden1.weight")?;
        let b1 = get("mlp.hidden1.bias")?;
        let user = config.user_dim();
        let cd = config.category_inputs();
        let (emb, n_cat) = if config.has_offer() {
            (get("category.embedding")?, config.categories.len() + 1)
        } else {
            (Vec::new(), 1)
        };
        let mut cat_h1 = vec![0.0f32; n_cat * h1];
        for (k, dst) in cat_h1.chunks_mut(h1).enumerate() {
            dst.copy_from_slice(&b1);
            for f in 0..cd {
                let x = emb[k * cd + f];
                let row = &w1[(user + f) * h1..(user + f + 1) * h1];
                for (d, w) in dst.iter_mut().zip(row) {
                    *d += x * w;
                }
            }
        }
        Ok(Scorer {
            encoder: match model.encoder() {
                Some(e) => Some(FrozenEncoder::new(e)?),
                None => None,
            },
            w1_user: w1[..user * h1].to_vec(),
            w1_dense: w1[(user + cd) * h1..(user + cd + config.dense_dim()) * h1].to_vec(),
            cat_h1,
            w2: get("mlp.hidden2.weight")?,
            b2: get("mlp.hidden2.bias")?,
            w3: get("mlp.out.weight")?,
            b3: get("mlp.out.bias")?,
            cache: Mutex::new(SequenceCache::default()),
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
    /// encoder. Sequences seen in earlier calls come from the cache: a query scores a user's
    /// history against many offers, and its rows reach the scorer in many batches.
    fn sequence_parts(&self, sequences: &[u32]) -> Result<Option<Vec<f32>>, GpuError> {
        let Some(encoder) = &self.encoder else {
            return Ok(None);
        };
        let (len, h1, d) = (
            self.config.seq_len,
            self.config.hidden[0],
            self.config.encoder.dim,
        );
        let n_seq = sequences.len() / len.max(1);
        let mut out = vec![0.0f32; n_seq * h1];
        let mut misses: Vec<usize> = Vec::new();
        {
            let cache = self.lock_cache();
            for (k, (dst, seq)) in out.chunks_mut(h1).zip(sequences.chunks(len)).enumerate() {
                match cache.get(seq) {
                    Some(part) => dst.copy_from_slice(part),
                    None => misses.push(k),
                }
            }
        }
        if misses.is_empty() {
            return Ok(Some(out));
        }
        let mut tokens = Vec::with_capacity(misses.len() * len);
        for &k in &misses {
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
        let mut cache = self.lock_cache();
        if cache.len() + misses.len() > CACHED_SEQUENCES {
            cache.clear();
        }
        for (&k, part) in misses.iter().zip(parts.chunks(h1)) {
            out[k * h1..(k + 1) * h1].copy_from_slice(part);
            if cache.len() < CACHED_SEQUENCES {
                cache.insert(sequences[k * len..(k + 1) * len].into(), part.into());
            }
        }
        Ok(Some(out))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, SequenceCache> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
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
        let n = rows.len();
        rows.check(&self.config)?;
        let width = self.config.dense_dim();
        let (h1, h2) = (self.config.hidden[0], self.config.hidden[1]);
        let seq_h1 = self.sequence_parts(&rows.sequences)?;
        // Row by row, in registers and L1: measured faster than candle's matmul over blocks
        // of rows, whose temporaries cost more than the products (benches/RESULTS.md).
        let mut out = vec![0.0f64; n];
        let avx2 = crate::simd::has_avx2();
        out.par_chunks_mut(1024).enumerate().for_each_init(
            || Scratch {
                a1: vec![0.0f32; h1],
                a2: vec![0.0f32; h2],
                dense: vec![0.0f32; width],
            },
            |scratch, (chunk, dst)| {
                let seq_h1 = seq_h1.as_deref();
                #[cfg(target_arch = "x86_64")]
                if avx2 {
                    // SAFETY: the CPU has AVX2 (checked at run time).
                    unsafe { self.score_chunk_avx2(rows, seq_h1, chunk * 1024, dst, scratch) };
                    return;
                }
                let _ = avx2;
                self.score_chunk(rows, seq_h1, chunk * 1024, dst, scratch);
            },
        );
        Ok(out)
    }

    /// [`Scorer::score_chunk`] compiled for AVX2: the same operations in the same order (no
    /// fused multiply-add), so the same numbers, twice as wide.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn score_chunk_avx2(
        &self,
        rows: &Rows,
        seq_h1: Option<&[f32]>,
        first: usize,
        dst: &mut [f64],
        scratch: &mut Scratch,
    ) {
        self.score_chunk(rows, seq_h1, first, dst, scratch);
    }

    /// The logits of rows `first ..` into `dst`.
    #[inline(always)]
    fn score_chunk(
        &self,
        rows: &Rows,
        seq_h1: Option<&[f32]>,
        first: usize,
        dst: &mut [f64],
        scratch: &mut Scratch,
    ) {
        let offer = self.config.has_offer();
        let outputs = self.config.outputs();
        let (h1, h2) = (self.config.hidden[0], self.config.hidden[1]);
        let Scratch { a1, a2, dense } = scratch;
        for (j, p) in dst.iter_mut().enumerate() {
            let r = first + j;
            let c = if offer { rows.category[r] as usize } else { 0 };
            a1.copy_from_slice(&self.cat_h1[c * h1..(c + 1) * h1]);
            if let Some(s) = seq_h1 {
                let k = rows.seq_of_row[r] as usize;
                for (o, x) in a1.iter_mut().zip(&s[k * h1..(k + 1) * h1]) {
                    *o += x;
                }
            }
            rows.dense(&self.config, r, dense);
            for (f, &x) in dense.iter().enumerate() {
                let row = &self.w1_dense[f * h1..(f + 1) * h1];
                for (o, w) in a1.iter_mut().zip(row) {
                    *o += x * w;
                }
            }
            a2.copy_from_slice(&self.b2);
            for (i, &x) in a1.iter().enumerate() {
                let x = x.max(0.0);
                let row = &self.w2[i * h2..(i + 1) * h2];
                for (o, w) in a2.iter_mut().zip(row) {
                    *o += x * w;
                }
            }
            let (mut f, mut g) = (self.b3[0], self.b3.get(1).copied().unwrap_or(0.0));
            for (i, &x) in a2.iter().enumerate() {
                let x = x.max(0.0);
                f += x * self.w3[outputs * i];
                if offer {
                    g += x * self.w3[outputs * i + 1];
                }
            }
            let mut z = f64::from(f);
            if offer {
                let g = f64::from(g);
                z += (g.max(0.0) + (-g.abs()).exp().ln_1p()) * f64::from(rows.discount[r]);
            }
            *p = match &self.config.calibration {
                Some(c) => c.apply(z),
                None => z,
            };
        }
    }
}

/// Per-thread buffers of [`Scorer::logits`].
struct Scratch {
    a1: Vec<f32>,
    a2: Vec<f32>,
    dense: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::EncoderConfig;
    use crate::purchase::{ModelKind, pad_sequence};
    use rand::{Rng, SeedableRng};

    /// The AVX2 build of the per-row network gives the same bits as the baseline build.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_build_gives_the_same_bits() {
        if !crate::simd::has_avx2() {
            eprintln!("skipping: this CPU has no AVX2");
            return;
        }
        let config = PurchaseConfig {
            kind: ModelKind::Purchase,
            encoder: EncoderConfig::default(),
            seq_len: 16,
            use_sequence: true,
            categories: vec![1, 2, 3],
            category_dim: 8,
            hidden: [64, 32],
            log_price_mean: 3.0,
            log_price_sd: 0.5,
            time_left: true,
            hour: true,
            features: Vec::new(),
            calibration: None,
        };
        let model = PurchaseModel::seeded(config, 4, &candle_core::Device::Cpu).unwrap();
        let scorer = Scorer::new(&model).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(6);
        let n = 300;
        let mut rows = Rows::default();
        for _ in 0..n {
            let seq: Vec<u32> = (0..10).map(|_| rng.random_range(1..2561)).collect();
            pad_sequence(&seq, 16, &mut rows.sequences);
        }
        rows.seq_of_row = (0..n as u32).collect();
        rows.category = (0..n).map(|_| rng.random_range(0..4)).collect();
        rows.price = (0..n).map(|_| rng.random_range(5.0..50.0)).collect();
        rows.discount = (0..n).map(|_| rng.random_range(0.0..0.5)).collect();
        rows.time_left = (0..n).map(|_| rng.random()).collect();
        rows.hour = (0..n).map(|_| rng.random_range(0.0..24.0)).collect();
        let seq_h1 = scorer.sequence_parts(&rows.sequences).unwrap();
        let scratch = || Scratch {
            a1: vec![0.0; 64],
            a2: vec![0.0; 32],
            dense: vec![0.0; 4],
        };
        let (mut a, mut b) = (vec![0.0f64; n], vec![0.0f64; n]);
        scorer.score_chunk(&rows, seq_h1.as_deref(), 0, &mut a, &mut scratch());
        // SAFETY: AVX2 is present (checked above).
        unsafe { scorer.score_chunk_avx2(&rows, seq_h1.as_deref(), 0, &mut b, &mut scratch()) };
        assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
    }
}
