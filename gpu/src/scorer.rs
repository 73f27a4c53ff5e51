//! The purchase model for scoring on the CPU: weights frozen into plain arrays, each
//! sequence encoded once, and the first layer split by input so that per row only the
//! offer's few dense features are multiplied:
//!
//! ```text
//! h1 = relu(U[seq]·W1_user + E[cat]·W1_cat + dense·W1_dense + b1)
//! ```
//!
//! `U·W1_user` is computed once per distinct sequence and `E·W1_cat` once per category, so a
//! row costs H1·(DENSE + 1) + H1·H2 + 2·H2 multiply-adds.

use std::collections::HashMap;
use std::sync::Mutex;

use rayon::prelude::*;

use crate::GpuError;
use crate::frozen::FrozenEncoder;
use crate::purchase::{DENSE, PurchaseConfig, PurchaseModel, Rows};

#[derive(Debug)]
pub struct Scorer {
    config: PurchaseConfig,
    encoder: Option<FrozenEncoder>,
    /// `[D, H1]`.
    w1_user: Vec<f32>,
    /// `[categories + 1, H1]`: each category's embedding times its rows of W1, plus b1.
    cat_h1: Vec<f32>,
    /// `[DENSE, H1]`.
    w1_dense: Vec<f32>,
    /// `[H1, H2]`, `[H2]`, `[H2, 2]`, `[2]`.
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

fn flat(t: &candle_core::Tensor) -> Result<Vec<f32>, GpuError> {
    Ok(t.flatten_all()?.to_vec1()?)
}

impl Scorer {
    pub fn new(model: &PurchaseModel) -> Result<Scorer, GpuError> {
        let config = model.config().clone();
        let named: std::collections::HashMap<String, candle_core::Tensor> =
            model.named_tensors()?.into_iter().collect();
        let get = |name: &str| -> Result<Vec<f32>, GpuError> {
            named
                .get(name)
                .ok_or_else(|| GpuError::Shape(format!("no tensor {name}")))
                .and_then(flat)
        };
        let h1 = config.hidden[0];
        let w1 = get("mlp.hidden1.weight")?;
        let b1 = get("mlp.hidden1.bias")?;
        let user = if config.use_sequence {
            config.encoder.dim
        } else {
            0
        };
        let cd = config.category_dim;
        let emb = get("category.embedding")?;
        let n_cat = config.categories.len() + 1;
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
            w1_dense: w1[(user + cd) * h1..(user + cd + DENSE) * h1].to_vec(),
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

    /// P(buy) for every row.
    pub fn probabilities(&self, rows: &Rows) -> Result<Vec<f64>, GpuError> {
        let mut out = self.logits(rows)?;
        for z in &mut out {
            *z = 1.0 / (1.0 + (-*z).exp());
        }
        Ok(out)
    }

    /// The purchase logit of every row.
    pub fn logits(&self, rows: &Rows) -> Result<Vec<f64>, GpuError> {
        let n = rows.len();
        let len = self.config.seq_len;
        let n_seq = rows.sequences.len() / len.max(1);
        let n_cat = self.config.categories.len() + 1;
        if rows.category.len() != n || rows.price.len() != n || rows.discount.len() != n {
            return Err(GpuError::Shape("rows of unequal length".into()));
        }
        if (self.config.time_left && rows.time_left.len() != n)
            || (self.config.hour && rows.hour.len() != n)
        {
            return Err(GpuError::Shape("missing offer features".into()));
        }
        if rows.seq_of_row.iter().any(|&s| s as usize >= n_seq)
            || rows.category.iter().any(|&c| c as usize >= n_cat)
        {
            return Err(GpuError::Shape(
                "a row points past its sequences or categories".into(),
            ));
        }
        let (h1, h2) = (self.config.hidden[0], self.config.hidden[1]);
        let seq_h1 = self.sequence_parts(&rows.sequences)?;
        let mut out = vec![0.0f64; n];
        out.par_chunks_mut(1024).enumerate().for_each_init(
            || (vec![0.0f32; h1], vec![0.0f32; h2]),
            |(a1, a2), (chunk, dst)| {
                for (j, p) in dst.iter_mut().enumerate() {
                    let r = chunk * 1024 + j;
                    let c = rows.category[r] as usize;
                    a1.copy_from_slice(&self.cat_h1[c * h1..(c + 1) * h1]);
                    if let Some(s) = &seq_h1 {
                        let k = rows.seq_of_row[r] as usize;
                        for (o, x) in a1.iter_mut().zip(&s[k * h1..(k + 1) * h1]) {
                            *o += x;
                        }
                    }
                    let dense = rows.dense(&self.config, r);
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
                    let (mut f, mut g) = (self.b3[0], self.b3[1]);
                    for (i, &x) in a2.iter().enumerate() {
                        let x = x.max(0.0);
                        f += x * self.w3[2 * i];
                        g += x * self.w3[2 * i + 1];
                    }
                    let slope = f64::from(g.max(0.0)) + (-f64::from(g.abs())).exp().ln_1p();
                    *p = f64::from(f) + slope * f64::from(rows.discount[r]);
                }
            },
        );
        Ok(out)
    }
}
