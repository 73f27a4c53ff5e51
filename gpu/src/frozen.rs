//! The encoder for inference on the CPU: weights frozen into plain arrays and the forward pass
//! written out by hand, parallel over sequences. Each kernel is folded into the embedding
//! table (`embedding · [K_0 | … | K_{w−1}]`, see [`crate::encoder`]), so a sequence costs
//! L·Σw row additions of C floats, a running max and one small projection — no tensor
//! temporaries, which dominate candle's forward at this size.

use rayon::prelude::*;

use crate::GpuError;
use crate::encoder::SequenceEncoder;

/// One width's folded table `[V, w·C]` (row-major) and bias `[C]`.
#[derive(Debug)]
struct Folded {
    width: usize,
    table: Vec<f32>,
    bias: Vec<f32>,
}

/// The channel count with its own compiled loop: `train_model`'s encoder.
const FIXED_CHANNELS: usize = 32;

#[derive(Debug)]
pub struct FrozenEncoder {
    vocab: usize,
    channels: usize,
    dim: usize,
    folded: Vec<Folded>,
    /// `[Σ C, D]` row-major, and `[D]`.
    proj: Vec<f32>,
    proj_bias: Vec<f32>,
}

impl FrozenEncoder {
    pub fn new(encoder: &SequenceEncoder) -> Result<FrozenEncoder, GpuError> {
        let parts = encoder.folded_parts()?;
        let config = encoder.config();
        Ok(FrozenEncoder {
            vocab: config.vocab,
            channels: config.channels,
            dim: config.dim,
            folded: parts
                .folded
                .into_iter()
                .map(|(width, table, bias)| Folded { width, table, bias })
                .collect(),
            proj: parts.proj,
            proj_bias: parts.proj_bias,
        })
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Encodes `tokens` (sequences of `len` tokens each, concatenated) into one
    /// `dim`-vector per sequence, concatenated.
    pub fn encode(&self, tokens: &[u32], len: usize) -> Result<Vec<f32>, GpuError> {
        let widest = self.folded.iter().map(|f| f.width).max().unwrap_or(1);
        if len < widest || !tokens.len().is_multiple_of(len) {
            return Err(GpuError::Shape(format!(
                "{} tokens are not whole sequences of length {len} (at least {widest})",
                tokens.len()
            )));
        }
        if let Some(&bad) = tokens.iter().find(|&&t| t as usize >= self.vocab) {
            return Err(GpuError::Shape(format!(
                "token {bad} is outside the vocabulary of {}",
                self.vocab
            )));
        }
        let (c, d) = (self.channels, self.dim);
        let mut out = vec![0.0f32; tokens.len() / len * d];
        let avx2 = crate::simd::has_avx2();
        out.par_chunks_mut(d)
            .zip(tokens.par_chunks(len))
            .with_min_len(64)
            .for_each_init(
                || (vec![0.0f32; c], vec![0.0f32; c * self.folded.len()]),
                |(acc, pooled), (dst, seq)| {
                    #[cfg(target_arch = "x86_64")]
                    if avx2 {
                        // SAFETY: the CPU has AVX2 (checked at run time).
                        unsafe { self.encode_one_avx2(seq, dst, acc, pooled) };
                        return;
                    }
                    let _ = avx2;
                    self.encode_one(seq, dst, acc, pooled);
                },
            );
        Ok(out)
    }

    /// [`FrozenEncoder::encode_one`] compiled for AVX2: the same operations in the same
    /// order, so the same numbers.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn encode_one_avx2(
        &self,
        seq: &[u32],
        dst: &mut [f32],
        acc: &mut [f32],
        pooled: &mut [f32],
    ) {
        self.encode_one(seq, dst, acc, pooled);
    }

    /// One sequence's vector into `dst`; `acc` holds C floats, `pooled` C per width.
    #[inline(always)]
    fn encode_one(&self, seq: &[u32], dst: &mut [f32], acc: &mut [f32], pooled: &mut [f32]) {
        let (c, d) = (self.channels, self.dim);
        if c == FIXED_CHANNELS {
            self.pool_fixed::<FIXED_CHANNELS>(seq, pooled);
        } else {
            self.pool_any(seq, acc, pooled);
        }
        dst.copy_from_slice(&self.proj_bias);
        for (h, row) in pooled.iter().zip(self.proj.chunks(d)) {
            for (o, p) in dst.iter_mut().zip(row) {
                *o += h * p;
            }
        }
    }

    /// The max-pooled ReLU of every width's convolution into `pooled` (C per width), window
    /// by window, for any channel count; `acc` holds C floats.
    #[inline(always)]
    fn pool_any(&self, seq: &[u32], acc: &mut [f32], pooled: &mut [f32]) {
        let (c, len) = (self.channels, seq.len());
        for (f, part) in self.folded.iter().zip(pooled.chunks_mut(c)) {
            let w = f.width;
            part.fill(f32::NEG_INFINITY);
            for tau in 0..=len - w {
                acc.copy_from_slice(&f.bias);
                for i in 0..w {
                    let row = seq[tau + i] as usize * w * c + i * c;
                    for (a, x) in acc.iter_mut().zip(&f.table[row..row + c]) {
                        *a += x;
                    }
                }
                for (p, a) in part.iter_mut().zip(acc.iter()) {
                    *p = p.max(a.max(0.0));
                }
            }
        }
    }

    /// [`FrozenEncoder::pool_any`] with `C` channels known at compile time: a window's sum
    /// and the running maximum stay in vector registers. The same operations in the same
    /// order, so the same bits.
    #[inline(always)]
    fn pool_fixed<const C: usize>(&self, seq: &[u32], pooled: &mut [f32]) {
        let len = seq.len();
        for (f, part) in self.folded.iter().zip(pooled.chunks_exact_mut(C)) {
            let w = f.width;
            let (rows, _) = f.table.as_chunks::<C>();
            let Some(bias) = f.bias.first_chunk::<C>() else {
                return;
            };
            let mut best = [f32::NEG_INFINITY; C];
            for tau in 0..=len - w {
                let mut acc = *bias;
                for i in 0..w {
                    let row = &rows[seq[tau + i] as usize * w + i];
                    acc = std::array::from_fn(|j| acc[j] + row[j]);
                }
                best = std::array::from_fn(|j| best[j].max(acc[j].max(0.0)));
            }
            part.copy_from_slice(&best);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encoder::EncoderConfig;
    use candle_core::{Device, Tensor};
    use rand::{Rng, SeedableRng};

    /// The frozen forward equals the tensor forward within 1e-5 on seeded weights and tokens,
    /// with plain and with factored embeddings.
    #[test]
    fn frozen_equals_the_tensor_forward() {
        for factor_buckets in [None, Some(64)] {
            frozen_equals_the_tensor_forward_with(factor_buckets);
        }
    }

    fn frozen_equals_the_tensor_forward_with(factor_buckets: Option<usize>) {
        let dev = Device::Cpu;
        let config = EncoderConfig {
            factor_buckets,
            ..EncoderConfig::default()
        };
        let enc = SequenceEncoder::seeded(config, 9, &dev).unwrap();
        let frozen = FrozenEncoder::new(&enc).unwrap();
        let (b, l) = (37, 20);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let ids: Vec<u32> = (0..b * l).map(|_| rng.random_range(0..2561)).collect();
        let want = enc
            .forward(&Tensor::from_vec(ids.clone(), (b, l), &dev).unwrap())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let got = frozen.encode(&ids, l).unwrap();
        assert_eq!(got.len(), want.len());
        let worst = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "max difference {worst}");
        assert!(frozen.encode(&ids[..7], 7).is_ok());
        assert!(matches!(
            frozen.encode(&ids[..5], 3),
            Err(GpuError::Shape(_))
        ));
        assert!(matches!(
            frozen.encode(&[9999; 8], 8),
            Err(GpuError::Shape(_))
        ));
    }

    /// The AVX2 build of the per-sequence loop gives the same bits as the baseline build,
    /// and the loop for the default channel count the same as the one for any.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn avx2_build_gives_the_same_bits() {
        if !crate::simd::has_avx2() {
            eprintln!("skipping: this CPU has no AVX2");
            return;
        }
        let enc = SequenceEncoder::seeded(EncoderConfig::default(), 3, &Device::Cpu).unwrap();
        let frozen = FrozenEncoder::new(&enc).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(8);
        let (c, d) = (frozen.channels, frozen.dim);
        for _ in 0..20 {
            let seq: Vec<u32> = (0..40).map(|_| rng.random_range(0..2561)).collect();
            let mut pooled = vec![0.0f32; c * frozen.folded.len()];
            let (mut a, mut b) = (vec![0.0f32; d], vec![0.0f32; d]);
            frozen.encode_one(&seq, &mut a, &mut vec![0.0; c], &mut pooled);
            // SAFETY: AVX2 is present (checked above).
            unsafe { frozen.encode_one_avx2(&seq, &mut b, &mut vec![0.0; c], &mut pooled) };
            assert!(a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()));
            // The loop for C = 32 and the one for any C pool the same bits.
            let mut any = vec![0.0f32; c * frozen.folded.len()];
            frozen.pool_any(&seq, &mut vec![0.0; c], &mut any);
            frozen.pool_fixed::<FIXED_CHANNELS>(&seq, &mut pooled);
            assert!(pooled.iter().all(|x| x.is_finite()));
            assert!(
                pooled
                    .iter()
                    .zip(&any)
                    .all(|(x, y)| x.to_bits() == y.to_bits())
            );
        }
    }
}
