//! The behaviour-sequence encoder: tokens → embedding → Conv1D with several kernel widths
//! (ReLU, max-pooled over time) → a linear projection to a D-dimensional user vector.
//!
//! The convolution is computed without unfolding the sequence: the embedding lookup followed
//! by a width-w kernel equals a lookup in the small table `embedding · [K_0 | … | K_{w−1}]`
//! (`[V, w·C]`), and the convolution is then a sum of w shifted slices of the looked-up rows.
//! This measured faster than candle's conv1d (im2col) and much faster than a hand-made unfold
//! whose `Tensor::cat` on strided views dominated; figures in `benches/RESULTS.md`.

use std::collections::HashMap;

use candle_core::{D, DType, Device, Tensor};

use crate::GpuError;
use crate::init::{glorot, named_tensor, zeros};

/// The encoder's shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncoderConfig {
    /// Token ids run from 0 (padding) to `vocab − 1`.
    pub vocab: usize,
    pub embed: usize,
    /// Kernel widths; sequences must be at least as long as the widest.
    pub widths: Vec<usize>,
    /// Output channels per width.
    pub channels: usize,
    /// The user vector's dimension.
    pub dim: usize,
    /// When tokens are `1 + group · buckets + bucket` (behavior_sequence: group = gap and
    /// event, bucket = category), each token's embedding is its own row **plus** a row for
    /// its group and one for its bucket. A rare token then still means what its event, age
    /// and category mean; with few rows per token that is most of what can be learnt.
    #[serde(default)]
    pub factor_buckets: Option<usize>,
}

impl EncoderConfig {
    /// The pooled features the projection reads.
    pub fn pooled(&self) -> usize {
        self.channels * self.widths.len()
    }
}

impl Default for EncoderConfig {
    fn default() -> Self {
        EncoderConfig {
            vocab: 2561,
            embed: 32,
            widths: vec![2, 3, 5],
            channels: 32,
            dim: 32,
            factor_buckets: None,
        }
    }
}

/// See [`SequenceEncoder::folded_parts`].
pub(crate) struct FoldedParts {
    pub folded: Vec<(usize, Vec<f32>, Vec<f32>)>,
    pub proj: Vec<f32>,
    pub proj_bias: Vec<f32>,
}

/// One kernel width's weights: kernel `[C, E, w]` and bias `[C]`.
#[derive(Debug, Clone)]
struct Conv {
    kernel: Tensor,
    bias: Tensor,
}

#[derive(Debug, Clone)]
struct Factors {
    group: Tensor,
    bucket: Tensor,
    group_of: Tensor,
    bucket_of: Tensor,
}

/// The number of groups of a factored vocabulary (padding's row 0 included) and each
/// token's group and bucket.
fn factor_index(vocab: usize, buckets: usize) -> (usize, Vec<u32>, Vec<u32>) {
    let group = |t: usize| if t == 0 { 0 } else { 1 + (t - 1) / buckets };
    let bucket = |t: usize| if t == 0 { 0 } else { (t - 1) % buckets };
    (
        group(vocab - 1) + 1,
        (0..vocab).map(|t| group(t) as u32).collect(),
        (0..vocab).map(|t| bucket(t) as u32).collect(),
    )
}

#[derive(Debug, Clone)]
pub struct SequenceEncoder {
    config: EncoderConfig,
    /// `[V, E]`; row 0 (padding) is multiplied by `pad_mask` in every pass, so it stays zero
    /// whatever training does to it.
    embedding: Tensor,
    /// `[V, 1]`: 0 for the padding token, 1 otherwise.
    pad_mask: Tensor,
    /// With [`EncoderConfig::factor_buckets`]: the group and bucket tables (`[G, E]`,
    /// `[buckets, E]`) and each token's row in them (`[V]`).
    factors: Option<Factors>,
    convs: Vec<Conv>,
    proj_weight: Tensor,
    proj_bias: Tensor,
}

impl SequenceEncoder {
    /// An encoder with seeded initial weights.
    pub fn seeded(config: EncoderConfig, seed: u64, device: &Device) -> Result<Self, GpuError> {
        let (v, e, c, d) = (config.vocab, config.embed, config.channels, config.dim);
        if config.widths.is_empty()
            || config.widths.contains(&0)
            || v < 2
            || e == 0
            || c == 0
            || config.factor_buckets == Some(0)
        {
            return Err(GpuError::Shape(format!("invalid encoder shape {config:?}")));
        }
        let mut named = HashMap::new();
        named.insert(
            "encoder.embedding".to_string(),
            glorot(seed, "encoder.embedding", &[v, e], v, e, device)?,
        );
        if let Some(buckets) = config.factor_buckets {
            let (groups, _, _) = factor_index(v, buckets);
            for (name, rows) in [
                ("encoder.group_embedding", groups),
                ("encoder.bucket_embedding", buckets),
            ] {
                named.insert(
                    name.to_string(),
                    glorot(seed, name, &[rows, e], rows, e, device)?,
                );
            }
        }
        for &w in &config.widths {
            let name = format!("encoder.conv{w}.weight");
            let kernel = glorot(seed, &name, &[c, e, w], w * e, c, device)?;
            named.insert(name, kernel);
            named.insert(format!("encoder.conv{w}.bias"), zeros(&[c], device)?);
        }
        let pooled = config.pooled();
        named.insert(
            "encoder.proj.weight".to_string(),
            glorot(seed, "encoder.proj.weight", &[pooled, d], pooled, d, device)?,
        );
        named.insert("encoder.proj.bias".to_string(), zeros(&[d], device)?);
        SequenceEncoder::from_named(config, &named)
    }

    /// The encoder made of named tensors (as [`SequenceEncoder::named_tensors`] gives them):
    /// loading a stored model, or wrapping training variables.
    pub fn from_named(
        config: EncoderConfig,
        named: &HashMap<String, Tensor>,
    ) -> Result<Self, GpuError> {
        let (v, e, c, d) = (config.vocab, config.embed, config.channels, config.dim);
        let get = |name: &str, shape: &[usize]| named_tensor(named, name, shape);
        let embedding = get("encoder.embedding", &[v, e])?;
        let device = embedding.device().clone();
        let pad_mask = Tensor::cat(
            &[
                Tensor::zeros((1, 1), DType::F32, &device)?,
                Tensor::ones((v - 1, 1), DType::F32, &device)?,
            ],
            0,
        )?;
        let factors = match config.factor_buckets {
            Some(buckets) if buckets > 0 => {
                let (groups, group_of, bucket_of) = factor_index(v, buckets);
                Some(Factors {
                    group: get("encoder.group_embedding", &[groups, e])?,
                    bucket: get("encoder.bucket_embedding", &[buckets, e])?,
                    group_of: Tensor::from_vec(group_of, v, &device)?,
                    bucket_of: Tensor::from_vec(bucket_of, v, &device)?,
                })
            }
            Some(_) => return Err(GpuError::Shape("factor_buckets must be positive".into())),
            None => None,
        };
        let mut convs = Vec::new();
        for &w in &config.widths {
            convs.push(Conv {
                kernel: get(&format!("encoder.conv{w}.weight"), &[c, e, w])?,
                bias: get(&format!("encoder.conv{w}.bias"), &[c])?,
            });
        }
        let pooled = config.pooled();
        Ok(SequenceEncoder {
            proj_weight: get("encoder.proj.weight", &[pooled, d])?,
            proj_bias: get("encoder.proj.bias", &[d])?,
            embedding,
            pad_mask,
            factors,
            convs,
            config,
        })
    }

    /// Every weight by name (the padding row of the embedding zeroed), for storing and
    /// for training.
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>, GpuError> {
        let mut out = vec![(
            "encoder.embedding".to_string(),
            self.embedding.broadcast_mul(&self.pad_mask)?,
        )];
        if let Some(f) = &self.factors {
            out.push(("encoder.group_embedding".to_string(), f.group.clone()));
            out.push(("encoder.bucket_embedding".to_string(), f.bucket.clone()));
        }
        for (conv, w) in self.convs.iter().zip(&self.config.widths) {
            out.push((format!("encoder.conv{w}.weight"), conv.kernel.clone()));
            out.push((format!("encoder.conv{w}.bias"), conv.bias.clone()));
        }
        out.push(("encoder.proj.weight".to_string(), self.proj_weight.clone()));
        out.push(("encoder.proj.bias".to_string(), self.proj_bias.clone()));
        Ok(out)
    }

    /// Each token's embedding (its row, plus its group's and bucket's when factored), the
    /// padding row zeroed.
    fn table(&self) -> Result<Tensor, GpuError> {
        let rows = match &self.factors {
            None => self.embedding.clone(),
            Some(f) => {
                ((&self.embedding + f.group.index_select(&f.group_of, 0)?)?
                    + f.bucket.index_select(&f.bucket_of, 0)?)?
            }
        };
        Ok(rows.broadcast_mul(&self.pad_mask)?)
    }

    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// The weights as plain arrays, each kernel folded into the embedding table: per width
    /// (w, `[V, w·C]`, bias), and the projection `[Σ C, D]` with its bias.
    pub(crate) fn folded_parts(&self) -> Result<FoldedParts, GpuError> {
        let (e, c) = (self.config.embed, self.config.channels);
        let mut folded = Vec::with_capacity(self.convs.len());
        for conv in &self.convs {
            let w = conv.kernel.dim(2)?;
            let all_shifts = conv.kernel.permute((1, 2, 0))?.reshape((e, w * c))?;
            let table = self
                .table()?
                .matmul(&all_shifts)?
                .flatten_all()?
                .to_vec1()?;
            folded.push((w, table, conv.bias.to_vec1()?));
        }
        Ok(FoldedParts {
            folded,
            proj: self.proj_weight.flatten_all()?.to_vec1()?,
            proj_bias: self.proj_bias.to_vec1()?,
        })
    }

    /// Encodes `tokens` (`[B, L]`, u32, left-padded with 0) into `[B, D]` user vectors.
    pub fn forward(&self, tokens: &Tensor) -> Result<Tensor, GpuError> {
        let (b, l) = tokens.dims2()?;
        let widest = self.config.widths.iter().copied().max().unwrap_or(1);
        if l < widest {
            return Err(GpuError::Shape(format!(
                "sequences of length {l} are shorter than the widest kernel ({widest}): pad them"
            )));
        }
        let c = self.config.channels;
        let embedding = self.table()?;
        let mut pooled = Vec::with_capacity(self.convs.len());
        for conv in &self.convs {
            let w = conv.kernel.dim(2)?;
            let t = l - w + 1;
            // Embedding then kernel shift i is one lookup in the table Z_i = table · K_i
            // (`[V, C]`), of the tokens at positions i … i + t − 1: y[τ] = Σ_i Z_i[token τ+i].
            // Each shift gathers only the rows it uses, so the backward pass scatters into
            // `[V, C]` tables instead of zero-padding full `[B, L, w, C]` gradients.
            let mut y: Option<Tensor> = None;
            for i in 0..w {
                let k_i = conv.kernel.narrow(2, i, 1)?.squeeze(2)?.t()?.contiguous()?;
                let ids = tokens.narrow(1, i, t)?.flatten_all()?;
                let part = embedding.matmul(&k_i)?.index_select(&ids, 0)?;
                y = Some(match y {
                    None => part,
                    Some(sum) => (sum + part)?,
                });
            }
            let y = y
                .ok_or_else(|| GpuError::Shape("a kernel of width 0".into()))?
                .reshape((b, t, c))?
                .broadcast_add(&conv.bias)?
                .relu()?;
            pooled.push(y.max(1)?); // max over time: [B, C]
        }
        let h = Tensor::cat(&pooled, D::Minus1)?;
        Ok(h.matmul(&self.proj_weight)?
            .broadcast_add(&self.proj_bias)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn tokens(b: usize, l: usize, vocab: u32, seed: u64, device: &Device) -> Tensor {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let v: Vec<u32> = (0..b * l).map(|_| rng.random_range(0..vocab)).collect();
        Tensor::from_vec(v, (b, l), device).unwrap()
    }

    /// The forward pass equals a plain-loop implementation of the same network (embedding
    /// lookup, valid convolution, ReLU, max over time, projection) within 1e-5.
    #[test]
    fn forward_equals_a_plain_loop_reference() {
        let dev = Device::Cpu;
        let config = EncoderConfig {
            vocab: 50,
            embed: 8,
            widths: vec![2, 3, 5],
            channels: 6,
            dim: 4,
            factor_buckets: None,
        };
        let enc = SequenceEncoder::seeded(config.clone(), 7, &dev).unwrap();
        let (b, l) = (5, 12);
        let ids = tokens(b, l, 50, 1, &dev);
        let ours = enc.forward(&ids).unwrap().to_vec2::<f32>().unwrap();
        let table = enc.table().unwrap().to_vec2::<f32>().unwrap();
        let proj = enc.proj_weight.to_vec2::<f32>().unwrap();
        let pb = enc.proj_bias.to_vec1::<f32>().unwrap();
        let seqs = ids.to_vec2::<u32>().unwrap();
        let (e, c) = (config.embed, config.channels);
        for (row, seq) in seqs.iter().enumerate() {
            let mut pooled = Vec::new();
            for conv in &enc.convs {
                let k = conv.kernel.to_vec3::<f32>().unwrap(); // [C][E][w]
                let bias = conv.bias.to_vec1::<f32>().unwrap();
                let w = k[0][0].len();
                for ch in 0..c {
                    let mut best = f32::NEG_INFINITY;
                    for t in 0..=l - w {
                        let mut s = bias[ch];
                        for i in 0..w {
                            for f in 0..e {
                                s += k[ch][f][i] * table[seq[t + i] as usize][f];
                            }
                        }
                        best = best.max(s.max(0.0));
                    }
                    pooled.push(best);
                }
            }
            for d in 0..config.dim {
                let want: f32 =
                    pb[d] + pooled.iter().zip(&proj).map(|(h, p)| h * p[d]).sum::<f32>();
                assert!(
                    (ours[row][d] - want).abs() < 1e-5,
                    "row {row} dim {d}: {} vs {want}",
                    ours[row][d]
                );
            }
        }
    }

    /// Same seed, same weights and outputs, bit for bit; another seed differs. Padding
    /// embeds to zero.
    #[test]
    fn seeded_encoders_are_reproducible() {
        let dev = Device::Cpu;
        let ids = tokens(4, 16, 2561, 2, &dev);
        let a = SequenceEncoder::seeded(EncoderConfig::default(), 42, &dev).unwrap();
        let b = SequenceEncoder::seeded(EncoderConfig::default(), 42, &dev).unwrap();
        let c = SequenceEncoder::seeded(EncoderConfig::default(), 43, &dev).unwrap();
        let (ya, yb, yc) = (
            a.forward(&ids).unwrap().to_vec2::<f32>().unwrap(),
            b.forward(&ids).unwrap().to_vec2::<f32>().unwrap(),
            c.forward(&ids).unwrap().to_vec2::<f32>().unwrap(),
        );
        assert_eq!(ya.len(), 4);
        assert_eq!(ya[0].len(), 32);
        assert_eq!(ya, yb);
        assert_ne!(ya, yc);
        let pad = a.table().unwrap().get(0).unwrap().to_vec1::<f32>().unwrap();
        assert!(pad.iter().all(|&v| v == 0.0));
        let short = tokens(2, 3, 2561, 3, &dev);
        assert!(matches!(a.forward(&short), Err(GpuError::Shape(_))));
    }
}
