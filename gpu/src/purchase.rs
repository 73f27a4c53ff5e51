//! The discount-aware purchase model: P(buy) for a user's behaviour sequence, an item and an
//! offer, **non-decreasing in the discount by construction**:
//!
//! ```text
//! x      = [user vector (encoder) | category embedding | z(ln price) | time_left | sin h | cos h]
//! [f, g] = MLP(x)                      (two ReLU layers, no discount inside)
//! logit  = f(x) + softplus(g(x)) · discount
//! ```
//!
//! Since softplus ≥ 0 and the discount enters nowhere else, an optimiser searching discounts
//! can never exploit a model artefact that makes a deeper discount sell less.
//!
//! The same network without the offer is the **propensity** model: P(the user does the
//! labelled thing, e.g. buys within a day) from the behaviour sequence alone,
//! `logit = f([user vector | features])`. Both kinds fuse optional numeric `features`
//! (standardised with the training rows' mean and deviation) into the first layer.

use std::collections::HashMap;

use candle_core::{D, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::GpuError;
use crate::affinity::{AFFINITY, TokenLayout};
use crate::calibration::Platt;
use crate::encoder::{EncoderConfig, SequenceEncoder};
use crate::init::{glorot, named_tensor, zeros};
use crate::tabular::TabularSpec;

/// Dense offer features after the embeddings: z(ln price), time_left, sin and cos of the hour.
pub const DENSE: usize = 4;

/// What a model predicts, and so which inputs it reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelKind {
    /// P(buy | user, item, offer), monotone in the discount.
    #[default]
    Purchase,
    /// P(label | user): no item, no offer.
    Propensity,
}

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Purchase => "purchase",
            ModelKind::Propensity => "propensity",
        }
    }
}

/// How one numeric feature is standardised: `(x − mean) / sd`, from the training rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    pub mean: f32,
    pub sd: f32,
}

impl Scale {
    /// The scale of a column of values (sd 1 when it is constant, so it stays finite).
    pub fn of(values: impl Iterator<Item = f64> + Clone) -> Scale {
        let n = values.clone().count().max(1) as f64;
        let mean = values.clone().sum::<f64>() / n;
        let sd = (values.map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
        Scale {
            mean: mean as f32,
            sd: if sd > 1e-6 { sd as f32 } else { 1.0 },
        }
    }
}

/// Everything that fixes the model's shape and how raw inputs become features; stored in
/// the manifest so a loaded model reads its inputs exactly as it was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PurchaseConfig {
    /// Models stored before there were kinds are purchase models.
    #[serde(default)]
    pub kind: ModelKind,
    pub encoder: EncoderConfig,
    /// Sequences are cut to their last `seq_len` tokens and left-padded to it.
    pub seq_len: usize,
    /// Whether the user vector comes from the encoder; `false` is the ablation without it.
    pub use_sequence: bool,
    /// The category vocabulary: `categories[k]` has index k + 1; unknown categories map to 0.
    pub categories: Vec<i64>,
    pub category_dim: usize,
    pub hidden: [usize; 2],
    /// Mean and standard deviation of ln(price) on the training rows.
    pub log_price_mean: f32,
    pub log_price_sd: f32,
    /// Whether the offer features time_left and hour were given in training (and so must be
    /// given when scoring).
    pub time_left: bool,
    pub hour: bool,
    /// One scale per extra numeric feature (the `features` list), in list order.
    #[serde(default)]
    pub features: Vec<Scale>,
    /// Platt scaling of the logit, fitted on the validation rows after training.
    #[serde(default)]
    pub calibration: Option<Platt>,
    /// The token layout, when the model reads the category-affinity inputs
    /// ([`crate::affinity`]; purchase models with the sequence encoder).
    #[serde(default)]
    pub affinity: Option<TokenLayout>,
    /// The learner when it is not the network: which one, and how it reads the sequence
    /// ([`crate::tabular`]). Models stored before there were such learners are networks.
    #[serde(default)]
    pub tabular: Option<TabularSpec>,
}

impl PurchaseConfig {
    /// The index of a category id in the vocabulary (0 when unknown).
    pub fn category_index(&self, id: i64) -> u32 {
        self.categories
            .binary_search(&id)
            .map_or(0, |k| k as u32 + 1)
    }

    /// Whether the model reads an item and an offer (category, price, discount, …).
    pub fn has_offer(&self) -> bool {
        self.kind == ModelKind::Purchase
    }

    /// The width of the user vector in the first layer's input (0 without the encoder).
    pub fn user_dim(&self) -> usize {
        if self.use_sequence {
            self.encoder.dim
        } else {
            0
        }
    }

    /// The dense inputs after the user vector and the category embedding: the offer's
    /// [`DENSE`] (purchase models), the category affinity (when read) and then the extra
    /// features.
    pub fn dense_dim(&self) -> usize {
        let offer = if self.has_offer() { DENSE } else { 0 };
        offer + self.affinity_inputs() + self.features.len()
    }

    /// The token layout when the model reads category affinity.
    pub fn affinity_layout(&self) -> Option<TokenLayout> {
        self.affinity
            .filter(|_| self.has_offer() && self.use_sequence)
    }

    fn affinity_inputs(&self) -> usize {
        self.affinity_layout().map_or(0, |_| AFFINITY)
    }

    /// The width of the category embedding in the first layer's input.
    pub fn category_inputs(&self) -> usize {
        if self.has_offer() {
            self.category_dim
        } else {
            0
        }
    }

    /// The width of the first layer's input.
    pub fn inputs(&self) -> usize {
        self.user_dim() + self.category_inputs() + self.dense_dim()
    }

    /// Input and output widths of the three layers.
    fn layer_dims(&self) -> [usize; 4] {
        [
            self.inputs(),
            self.hidden[0],
            self.hidden[1],
            self.outputs(),
        ]
    }

    /// Network outputs: f and g (the discount slope) for purchase models, f alone otherwise.
    pub fn outputs(&self) -> usize {
        if self.has_offer() { 2 } else { 1 }
    }
}

/// Model inputs for a set of rows. Sequences are stored once each (`sequences`, `seq_len`
/// tokens per sequence) and rows point at them, so a user scored against many items is
/// encoded once.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub sequences: Vec<u32>,
    /// [`crate::scorer::window_hash`] of each of `sequences` when the caller has them (it
    /// hashed the rows' windows to find the distinct ones), else empty.
    pub sequence_hashes: Vec<u64>,
    pub seq_of_row: Vec<u32>,
    /// Vocabulary indices ([`PurchaseConfig::category_index`]).
    pub category: Vec<u32>,
    pub price: Vec<f32>,
    pub discount: Vec<f32>,
    /// Empty when the model does not use it.
    pub time_left: Vec<f32>,
    pub hour: Vec<f32>,
    /// The extra features, raw (not yet standardised), `config.features.len()` per row.
    pub features: Vec<f32>,
    /// The offer category's bucket in the token layout ([`TokenLayout::bucket`] of its id,
    /// so known for a category outside the vocabulary too); only for models that read
    /// category affinity.
    pub category_bucket: Vec<u32>,
}

impl Rows {
    pub fn len(&self) -> usize {
        self.seq_of_row.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seq_of_row.is_empty()
    }

    /// Extra features per row (`features` holds this many for each row).
    pub fn feature_width(&self) -> usize {
        self.features.len().checked_div(self.len()).unwrap_or(0)
    }

    /// Writes the dense inputs of row `r` into `out` (`config.dense_dim()` values): for a
    /// purchase model z(ln price), time_left, sin and cos of the hour, then its category
    /// affinity if it reads it; then the standardised extra features.
    #[inline(always)]
    pub fn dense(&self, config: &PurchaseConfig, r: usize, out: &mut [f32]) {
        let mut k = 0;
        if config.has_offer() {
            let z = (self.price[r].max(1e-6).ln() - config.log_price_mean) / config.log_price_sd;
            let t = self.time_left.get(r).copied().unwrap_or(0.0);
            let (s, c) = match self.hour.get(r) {
                Some(&h) => {
                    let a = h * std::f32::consts::TAU / 24.0;
                    (a.sin(), a.cos())
                }
                None => (0.0, 0.0),
            };
            out[..DENSE].copy_from_slice(&[z, t, s, c]);
            k = DENSE;
        }
        if let Some(layout) = config.affinity_layout() {
            let (len, s) = (config.seq_len, self.seq_of_row[r] as usize);
            let window = &self.sequences[s * len..(s + 1) * len];
            layout.inputs(window, self.category_bucket[r], &mut out[k..k + AFFINITY]);
            k += AFFINITY;
        }
        let f = config.features.len();
        for ((o, x), s) in out[k..k + f]
            .iter_mut()
            .zip(&self.features[r * f..(r + 1) * f])
            .zip(&config.features)
        {
            *o = (x - s.mean) / s.sd;
        }
    }

    /// Whether every input the model reads is there for every row, and every row points at
    /// a sequence and a category that exist.
    pub fn check(&self, config: &PurchaseConfig) -> Result<(), GpuError> {
        let n = self.len();
        let n_seq = self.sequences.len() / config.seq_len.max(1);
        let n_cat = config.categories.len() + 1;
        let offer_ok = !config.has_offer()
            || (self.category.len() == n
                && self.price.len() == n
                && self.discount.len() == n
                && (config.affinity_layout().is_none() || self.category_bucket.len() == n)
                && (!config.time_left || self.time_left.len() == n)
                && (!config.hour || self.hour.len() == n));
        if !offer_ok || self.features.len() != n * config.features.len() {
            return Err(GpuError::Shape(
                "rows do not carry the inputs the model reads".into(),
            ));
        }
        if self.seq_of_row.iter().any(|&s| s as usize >= n_seq)
            || self.category.iter().any(|&c| c as usize >= n_cat)
        {
            return Err(GpuError::Shape(
                "a row points past its sequences or categories".into(),
            ));
        }
        Ok(())
    }
}

/// A left-padded token window: the last `len` tokens of `seq`, zeros before them.
pub fn pad_sequence(seq: &[u32], len: usize, out: &mut Vec<u32>) {
    let keep = &seq[seq.len().saturating_sub(len)..];
    out.extend(std::iter::repeat_n(0, len - keep.len()));
    out.extend_from_slice(keep);
}

/// The model as tensors: the training path (autograd) and the source of the frozen one.
#[derive(Debug, Clone)]
pub struct PurchaseModel {
    config: PurchaseConfig,
    encoder: Option<SequenceEncoder>,
    /// `[categories + 1, category_dim]`; purchase models only.
    category: Option<Tensor>,
    layers: [(Tensor, Tensor); 3],
}

const LAYER_NAMES: [&str; 3] = ["mlp.hidden1", "mlp.hidden2", "mlp.out"];

impl PurchaseModel {
    /// A model with seeded initial weights.
    pub fn seeded(config: PurchaseConfig, seed: u64, device: &Device) -> Result<Self, GpuError> {
        let mut named: HashMap<String, Tensor> = HashMap::new();
        if config.use_sequence {
            let enc = SequenceEncoder::seeded(config.encoder.clone(), seed, device)?;
            named.extend(enc.named_tensors()?);
        }
        let n_cat = config.categories.len() + 1;
        if config.has_offer() {
            named.insert(
                "category.embedding".into(),
                glorot(
                    seed,
                    "category.embedding",
                    &[n_cat, config.category_dim],
                    n_cat,
                    config.category_dim,
                    device,
                )?,
            );
        }
        let dims = config.layer_dims();
        for (k, name) in LAYER_NAMES.iter().enumerate() {
            let (i, o) = (dims[k], dims[k + 1]);
            let w = format!("{name}.weight");
            named.insert(w.clone(), glorot(seed, &w, &[i, o], i, o, device)?);
            named.insert(format!("{name}.bias"), zeros(&[o], device)?);
        }
        PurchaseModel::from_named(config, &named)
    }

    /// The model made of named tensors (loading, or wrapping training variables).
    pub fn from_named(
        config: PurchaseConfig,
        named: &HashMap<String, Tensor>,
    ) -> Result<Self, GpuError> {
        let get = |name: &str, shape: &[usize]| named_tensor(named, name, shape);
        if let Some(layout) = config.affinity_layout() {
            layout.check(config.encoder.vocab)?;
        }
        let encoder = if config.use_sequence {
            Some(SequenceEncoder::from_named(config.encoder.clone(), named)?)
        } else {
            None
        };
        let category = if config.has_offer() {
            Some(get(
                "category.embedding",
                &[config.categories.len() + 1, config.category_dim],
            )?)
        } else {
            None
        };
        let dims = config.layer_dims();
        let layer = |k: usize| -> Result<(Tensor, Tensor), GpuError> {
            let name = LAYER_NAMES[k];
            Ok((
                get(&format!("{name}.weight"), &[dims[k], dims[k + 1]])?,
                get(&format!("{name}.bias"), &[dims[k + 1]])?,
            ))
        };
        Ok(PurchaseModel {
            layers: [layer(0)?, layer(1)?, layer(2)?],
            encoder,
            category,
            config,
        })
    }

    pub fn config(&self) -> &PurchaseConfig {
        &self.config
    }

    /// The same weights with a calibration of the logit.
    pub fn with_calibration(mut self, calibration: Option<Platt>) -> Self {
        self.config.calibration = calibration;
        self
    }

    pub fn encoder(&self) -> Option<&SequenceEncoder> {
        self.encoder.as_ref()
    }

    /// Every weight by name.
    pub fn named_tensors(&self) -> Result<Vec<(String, Tensor)>, GpuError> {
        let mut out = match &self.encoder {
            Some(e) => e.named_tensors()?,
            None => Vec::new(),
        };
        if let Some(c) = &self.category {
            out.push(("category.embedding".into(), c.clone()));
        }
        for (name, (w, b)) in LAYER_NAMES.iter().zip(&self.layers) {
            out.push((format!("{name}.weight"), w.clone()));
            out.push((format!("{name}.bias"), b.clone()));
        }
        Ok(out)
    }

    /// Logits `[B]` of the rows `batch` of `rows`, on `device`.
    pub fn logits(
        &self,
        rows: &Rows,
        batch: &[usize],
        device: &Device,
    ) -> Result<Tensor, GpuError> {
        let b = batch.len();
        let len = self.config.seq_len;
        let mut parts = Vec::with_capacity(3);
        if let Some(encoder) = &self.encoder {
            let mut tokens = Vec::with_capacity(b * len);
            for &r in batch {
                let s = rows.seq_of_row[r] as usize;
                tokens.extend_from_slice(&rows.sequences[s * len..(s + 1) * len]);
            }
            let tokens = Tensor::from_vec(tokens, (b, len), device)?;
            parts.push(encoder.forward(&tokens)?);
        }
        if let Some(category) = &self.category {
            let cats: Vec<u32> = batch.iter().map(|&r| rows.category[r]).collect();
            let cats = Tensor::from_vec(cats, b, device)?;
            parts.push(category.index_select(&cats, 0)?);
        }
        let width = self.config.dense_dim();
        if width > 0 {
            let mut dense = vec![0.0f32; b * width];
            for (&r, out) in batch.iter().zip(dense.chunks_mut(width)) {
                rows.dense(&self.config, r, out);
            }
            parts.push(Tensor::from_vec(dense, (b, width), device)?);
        }
        let mut h = Tensor::cat(&parts, D::Minus1)?;
        for (k, (w, bias)) in self.layers.iter().enumerate() {
            h = h.matmul(w)?.broadcast_add(bias)?;
            if k < 2 {
                h = h.relu()?;
            }
        }
        let mut z = h.narrow(1, 0, 1)?.squeeze(1)?;
        if self.config.has_offer() {
            let g = h.narrow(1, 1, 1)?.squeeze(1)?;
            let discount: Vec<f32> = batch.iter().map(|&r| rows.discount[r]).collect();
            let discount = Tensor::from_vec(discount, b, device)?;
            z = (z + softplus(&g)?.mul(&discount)?)?;
        }
        match self.config.calibration {
            Some(c) => Ok(z.affine(f64::from(c.a), f64::from(c.b))?),
            None => Ok(z),
        }
    }
}

/// softplus(x) = max(x, 0) + ln(1 + e^−|x|), stable for any x.
pub fn softplus(x: &Tensor) -> Result<Tensor, GpuError> {
    let tail = (x.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok((x.relu()? + tail)?)
}

/// Mean binary cross-entropy of logits, stable for any logit:
/// relu(x) − x·y + ln(1 + e^−|x|) (candle's own goes through the sigmoid and overflows).
pub fn bce_with_logits(logits: &Tensor, labels: &Tensor) -> Result<Tensor, GpuError> {
    let tail = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok((logits.relu()? - logits.mul(labels)? + tail)?.mean_all()?)
}

/// The category vocabulary of training rows: their distinct ids, sorted.
pub fn category_vocabulary(ids: &[i64]) -> Vec<i64> {
    let mut v = ids.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}
