//! The per-row part of the frozen model: the first layer's dense inputs, the two hidden
//! layers and the output head, row by row in registers and L1. Measured faster than candle's
//! matrix products over blocks of rows, whose temporaries cost more than the products
//! (benches/RESULTS.md).
//!
//! The default shape (hidden [64, 32]) has its own build with the sizes known at compile
//! time: the second layer then runs two rows at a time with both rows' accumulators in
//! vector registers, so each weight row is loaded once per pair and the two rows' additions
//! overlap. Every row's operations are the same, in the same order, as in the build for any
//! shape, so both give the same bits (a test checks this).

use super::Weights;
use crate::GpuError;

mod attribution;
use crate::calibration::Platt;
use crate::purchase::{PurchaseConfig, Rows};

/// The frozen weights after the user vector's part of the first layer.
#[derive(Debug)]
pub(super) struct Network {
    h1: usize,
    h2: usize,
    offer: bool,
    outputs: usize,
    calibration: Option<Platt>,
    /// `[H1]`, kept apart for the explanations' baseline (`attribution.rs`).
    b1: Vec<f32>,
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
}

/// What [`Network::score_chunk`] reads besides the weights: the rows, and U·W1_user of
/// each of their sequences (`None` without the sequence encoder).
pub(super) struct Inputs<'a> {
    pub config: &'a PurchaseConfig,
    pub rows: &'a Rows,
    pub seq_h1: Option<&'a [f32]>,
}

/// Per-thread buffers of [`Network::score_chunk`].
pub(super) struct Scratch {
    a1: Vec<f32>,
    a2: Vec<f32>,
    dense: Vec<f32>,
}

impl Scratch {
    pub fn new(config: &PurchaseConfig) -> Scratch {
        Scratch {
            a1: vec![0.0; config.hidden[0]],
            a2: vec![0.0; config.hidden[1]],
            dense: vec![0.0; config.dense_dim()],
        }
    }
}

/// The shape with its own compiled kernel: `train_model`'s hidden layers.
const FIXED: (usize, usize) = (64, 32);

impl Network {
    /// The network of a model's `weights`; `w1` is the first layer's weight `[inputs, H1]`,
    /// whose rows after the user vector's are folded in here: the category embedding's
    /// (with b1) into one row per category, and the dense inputs' kept as they are.
    pub fn new(
        config: &PurchaseConfig,
        weights: &Weights,
        w1: &[f32],
    ) -> Result<Network, GpuError> {
        let h1 = config.hidden[0];
        let b1 = weights.get("mlp.hidden1.bias")?;
        let user = config.user_dim();
        let cd = config.category_inputs();
        let (emb, n_cat) = if config.has_offer() {
            (
                weights.get("category.embedding")?,
                config.categories.len() + 1,
            )
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
        Ok(Network {
            h1,
            h2: config.hidden[1],
            offer: config.has_offer(),
            outputs: config.outputs(),
            calibration: config.calibration,
            b1,
            cat_h1,
            w1_dense: w1[(user + cd) * h1..(user + cd + config.dense_dim()) * h1].to_vec(),
            w2: weights.get("mlp.hidden2.weight")?,
            b2: weights.get("mlp.hidden2.bias")?,
            w3: weights.get("mlp.out.weight")?,
            b3: weights.get("mlp.out.bias")?,
        })
    }

    /// The logits of rows `first ..` into `dst`.
    /// The AVX2 build of this is [`Network::score_chunk_avx2`].
    #[inline(always)]
    pub fn score_chunk(&self, x: &Inputs, first: usize, dst: &mut [f64], scratch: &mut Scratch) {
        if (self.h1, self.h2) == FIXED {
            self.pairs::<{ FIXED.0 }, { FIXED.1 }>(x, first, dst, scratch);
        } else {
            self.any_shape(x, first, dst, scratch);
        }
    }

    /// [`Network::score_chunk`] compiled for AVX2: the same operations in the same order (no
    /// fused multiply-add), so the same numbers, twice as wide.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    pub unsafe fn score_chunk_avx2(
        &self,
        x: &Inputs,
        first: usize,
        dst: &mut [f64],
        scratch: &mut Scratch,
    ) {
        self.score_chunk(x, first, dst, scratch);
    }

    /// The first layer before its ReLU for row `r`: its category's row (with b1), its
    /// sequence's part and its dense inputs.
    #[inline(always)]
    fn first_layer(&self, x: &Inputs, r: usize, dense: &mut [f32], a1: &mut [f32]) {
        let h1 = a1.len();
        let c = if self.offer {
            x.rows.category[r] as usize
        } else {
            0
        };
        a1.copy_from_slice(&self.cat_h1[c * h1..(c + 1) * h1]);
        if let Some(s) = x.seq_h1 {
            let k = x.rows.seq_of_row[r] as usize;
            for (o, x) in a1.iter_mut().zip(&s[k * h1..(k + 1) * h1]) {
                *o += x;
            }
        }
        x.rows.dense(x.config, r, dense);
        for (&x, row) in dense.iter().zip(self.w1_dense.chunks_exact(h1)) {
            for (o, w) in a1.iter_mut().zip(row) {
                *o += x * w;
            }
        }
    }

    /// The output head on the second layer before its ReLU: the logit, after calibration.
    #[inline(always)]
    fn head(&self, a2: &[f32], discount: impl FnOnce() -> f32) -> f64 {
        let (mut f, mut g) = (self.b3[0], self.b3.get(1).copied().unwrap_or(0.0));
        for (i, &x) in a2.iter().enumerate() {
            let x = x.max(0.0);
            f += x * self.w3[self.outputs * i];
            if self.offer {
                g += x * self.w3[self.outputs * i + 1];
            }
        }
        let mut z = f64::from(f);
        if self.offer {
            let g = f64::from(g);
            z += (g.max(0.0) + (-g.abs()).exp().ln_1p()) * f64::from(discount());
        }
        match &self.calibration {
            Some(c) => c.apply(z),
            None => z,
        }
    }

    /// Any shape, one row at a time.
    #[inline(always)]
    pub(super) fn any_shape(
        &self,
        x: &Inputs,
        first: usize,
        dst: &mut [f64],
        scratch: &mut Scratch,
    ) {
        let Scratch { a1, a2, dense } = scratch;
        for (j, p) in dst.iter_mut().enumerate() {
            let r = first + j;
            self.first_layer(x, r, dense, a1);
            a2.copy_from_slice(&self.b2);
            for (&x, row) in a1.iter().zip(self.w2.chunks_exact(self.h2)) {
                let x = x.max(0.0);
                for (o, w) in a2.iter_mut().zip(row) {
                    *o += x * w;
                }
            }
            *p = self.head(a2, || x.rows.discount[r]);
        }
    }

    /// Hidden sizes `H1`, `H2` known at compile time, two rows at a time (an odd last row is
    /// paired with itself).
    #[inline(always)]
    fn pairs<const H1: usize, const H2: usize>(
        &self,
        x: &Inputs,
        first: usize,
        dst: &mut [f64],
        scratch: &mut Scratch,
    ) {
        let (w2, _) = self.w2.as_chunks::<H2>();
        let Some(b2) = self.b2.first_chunk::<H2>() else {
            return self.any_shape(x, first, dst, scratch);
        };
        if w2.len() != H1 {
            return self.any_shape(x, first, dst, scratch);
        }
        let dense = &mut scratch.dense;
        let mut a1 = [[0.0f32; H1]; 2];
        for (pair, out) in dst.chunks_mut(2).enumerate() {
            let r0 = first + 2 * pair;
            let r1 = r0 + out.len() - 1;
            self.first_layer(x, r0, dense, &mut a1[0]);
            self.first_layer(x, r1, dense, &mut a1[1]);
            let (mut a0, mut a1b) = (*b2, *b2);
            for (i, w) in w2.iter().enumerate() {
                let (x0, x1) = (a1[0][i].max(0.0), a1[1][i].max(0.0));
                for j in 0..H2 {
                    a0[j] += x0 * w[j];
                    a1b[j] += x1 * w[j];
                }
            }
            out[0] = self.head(&a0, || x.rows.discount[r0]);
            if let Some(o) = out.get_mut(1) {
                *o = self.head(&a1b, || x.rows.discount[r1]);
            }
        }
    }
}
