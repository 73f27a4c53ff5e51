//! Training the purchase and propensity models: mini-batch AdamW on a numerically stable binary
//! cross-entropy, a seeded split by user or by time, early stopping on the validation loss
//! (the best epoch's weights are kept).
//!
//! Every random choice — initial weights, the split, the order of the batches — comes from
//! the seed, and candle's CPU kernels are deterministic, so the same seed and rows give
//! bitwise-identical weights on the CPU.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::GpuError;
use crate::calibration::Platt;
use crate::device::{self, DeviceChoice};
use crate::encoder::EncoderConfig;
use crate::importance::{Importance, permutation};
use crate::init::{FNV_OFFSET, fnv1a};
use crate::metrics::{self, auc, log_loss};
use crate::purchase::{PurchaseConfig, PurchaseModel, Rows, bce_with_logits};
use crate::scorer::Scorer;

#[derive(Debug, Clone, PartialEq)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub learning_rate: f64,
    pub weight_decay: f64,
    /// Epochs without a better validation loss before training stops.
    pub patience: usize,
    /// Share of rows (by user, or the latest by time) held out for validation.
    pub valid_share: f64,
    pub seed: u64,
    pub device: DeviceChoice,
    /// Fit a Platt calibration on the validation rows after training.
    pub calibrate: bool,
    /// Start the sequence encoder from another model's trained encoder instead of seeded
    /// weights (fine-tuning a pre-trained encoder); the rest of the network is seeded.
    pub encoder_init: Option<EncoderInit>,
}

/// A trained encoder's weights to start from: the model they come from (`name@version`),
/// its shape, and its `encoder.*` tensors.
#[derive(Debug, Clone)]
pub struct EncoderInit {
    pub from: String,
    pub config: EncoderConfig,
    pub tensors: Arc<HashMap<String, Tensor>>,
}

/// Two starts are the same when they come from the same stored model.
impl PartialEq for EncoderInit {
    fn eq(&self, other: &Self) -> bool {
        self.from == other.from && self.config == other.config
    }
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions {
            epochs: 10,
            batch_size: 512,
            learning_rate: 3e-3,
            weight_decay: 1e-4,
            patience: 2,
            valid_share: 0.2,
            seed: 42,
            device: DeviceChoice::Auto,
            calibrate: true,
            encoder_init: None,
        }
    }
}

/// What decides which rows are held out.
#[derive(Debug, Clone)]
pub enum SplitKeys {
    /// A seeded share of users: all of a user's rows fall on one side.
    User(Vec<i64>),
    /// The latest rows by time (ties at the cut-off go to validation).
    Time(Vec<i64>),
}

/// One epoch of training, as `train_model` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f64,
    pub valid_loss: f64,
    pub valid_auc: Option<f64>,
    pub valid_logloss: f64,
    pub seconds: f64,
    /// Whether the validation loss beat every earlier epoch's (the kept weights moved here).
    pub improved: bool,
}

/// A trained model (on the CPU) and how training went.
#[derive(Debug)]
pub struct Trained<M = PurchaseModel> {
    pub model: M,
    pub reports: Vec<EpochReport>,
    /// The kept report's `epoch`: an epoch, a Newton step, or a number of trees.
    pub best_epoch: usize,
    pub device: DeviceChoice,
    pub train_rows: usize,
    pub valid_rows: usize,
    /// Of the training rows, independent of their order.
    pub fingerprint: String,
    /// The validation log loss before and after calibration, when the model is calibrated.
    pub calibrated: Option<(f64, f64)>,
    /// Permutation importance of each input on the validation rows (and, for a logistic
    /// model, its coefficients).
    pub importance: Vec<Importance>,
}

impl<M> Trained<M> {
    /// The report of the kept weights.
    pub fn kept(&self) -> &EpochReport {
        self.reports
            .iter()
            .find(|r| r.epoch == self.best_epoch)
            .unwrap_or(&self.reports[self.reports.len() - 1])
    }

    /// The same training record around another form of the model.
    pub fn map<N>(self, f: impl FnOnce(M) -> N) -> Trained<N> {
        Trained {
            model: f(self.model),
            reports: self.reports,
            best_epoch: self.best_epoch,
            device: self.device,
            train_rows: self.train_rows,
            valid_rows: self.valid_rows,
            fingerprint: self.fingerprint,
            calibrated: self.calibrated,
            importance: self.importance,
        }
    }
}

/// Row indices for training and for validation.
pub fn split(keys: &SplitKeys, share: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let (mut train, mut valid) = (Vec::new(), Vec::new());
    match keys {
        SplitKeys::User(users) => {
            for (r, &u) in users.iter().enumerate() {
                if unit_hash(seed, u) < share {
                    valid.push(r);
                } else {
                    train.push(r);
                }
            }
        }
        SplitKeys::Time(ts) => {
            let mut order: Vec<usize> = (0..ts.len()).collect();
            order.sort_by_key(|&r| (ts[r], r));
            let first_valid = ((1.0 - share) * ts.len() as f64).floor() as usize;
            let cut = order.get(first_valid).map(|&r| ts[r]);
            for (r, &t) in ts.iter().enumerate() {
                if cut.is_some_and(|c| t >= c) {
                    valid.push(r);
                } else {
                    train.push(r);
                }
            }
        }
    }
    (train, valid)
}

/// A uniform number in [0, 1) from (seed, key): SplitMix64 of both.
fn unit_hash(seed: u64, key: i64) -> f64 {
    let mut z = seed ^ (key as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

impl SplitKeys {
    fn permuted(&self, order: &[usize]) -> SplitKeys {
        let pick = |v: &[i64]| order.iter().map(|&r| v[r]).collect();
        match self {
            SplitKeys::User(v) => SplitKeys::User(pick(v)),
            SplitKeys::Time(v) => SplitKeys::Time(pick(v)),
        }
    }

    fn key(&self, r: usize) -> i64 {
        match self {
            SplitKeys::User(v) | SplitKeys::Time(v) => v[r],
        }
    }
}

/// FNV-1a of each row: its sequence, features, offer, category bucket, label and split key —
/// all training reads.
fn row_hashes(rows: &Rows, labels: &[f32], keys: &SplitKeys, len: usize) -> Vec<u64> {
    let f = |v: &[f32], r: usize| v.get(r).map_or(0, |x| x.to_bits());
    let width = rows.feature_width();
    (0..rows.len())
        .map(|r| {
            let s = rows.seq_of_row[r] as usize;
            let mut h = FNV_OFFSET;
            for &t in &rows.sequences[s * len..(s + 1) * len] {
                h = fnv1a(h, &t.to_le_bytes());
            }
            for x in &rows.features[r * width..(r + 1) * width] {
                h = fnv1a(h, &x.to_bits().to_le_bytes());
            }
            for x in [
                rows.category.get(r).copied().unwrap_or(0),
                f(&rows.price, r),
                f(&rows.discount, r),
                f(&rows.time_left, r),
                f(&rows.hour, r),
                rows.category_bucket.get(r).copied().unwrap_or(0),
                labels[r].to_bits(),
            ] {
                h = fnv1a(h, &x.to_le_bytes());
            }
            fnv1a(h, &keys.key(r).to_le_bytes())
        })
        .collect()
}

/// The rows `idx` of `rows`, with only the sequences they use: validation encodes no
/// training-only sequence.
fn subset(rows: &Rows, idx: &[usize], len: usize) -> Rows {
    fn pick<T: Copy>(v: &[T], idx: &[usize]) -> Vec<T> {
        if v.is_empty() {
            Vec::new()
        } else {
            idx.iter().map(|&r| v[r]).collect()
        }
    }
    let width = rows.feature_width();
    let mut renumbered: HashMap<u32, u32> = HashMap::new();
    let mut sequences = Vec::new();
    let seq_of_row = idx
        .iter()
        .map(|&r| {
            let s = rows.seq_of_row[r];
            *renumbered.entry(s).or_insert_with(|| {
                let k = s as usize;
                sequences.extend_from_slice(&rows.sequences[k * len..(k + 1) * len]);
                (sequences.len() / len - 1) as u32
            })
        })
        .collect();
    Rows {
        sequences,
        sequence_hashes: Vec::new(),
        seq_of_row,
        category: pick(&rows.category, idx),
        price: pick(&rows.price, idx),
        discount: pick(&rows.discount, idx),
        time_left: pick(&rows.time_left, idx),
        hour: pick(&rows.hour, idx),
        category_bucket: pick(&rows.category_bucket, idx),
        features: idx
            .iter()
            .flat_map(|&r| rows.features[r * width..(r + 1) * width].iter().copied())
            .collect(),
    }
}

/// The AUC of validation `logits` against their `labels`, and the log loss of their
/// probabilities: what every kind reports per epoch besides the loss it stops on.
pub(crate) fn ranking(labels: &[f32], logits: &[f64]) -> (Option<f64>, f64) {
    let probs: Vec<f64> = logits.iter().map(|z| 1.0 / (1.0 + (-z).exp())).collect();
    let mut pairs: Vec<(f64, f64)> = probs
        .iter()
        .zip(labels)
        .map(|(&p, &y)| (p, f64::from(y)))
        .collect();
    (auc(&mut pairs), log_loss(labels, &probs))
}

/// Calibrates a tabular model's `config` on its validation logits `z` when `opts` asks and
/// it helps ([`calibration`]); the log loss before and after when it did.
pub(crate) fn calibrate_config(
    opts: &TrainOptions,
    config: &mut PurchaseConfig,
    z: &[f64],
    labels: &[f32],
) -> Option<(f64, f64)> {
    let (platt, before, after) = calibration(opts, z, labels)?;
    config.calibration = Some(platt);
    Some((before, after))
}

/// A Platt calibration fitted on validation logits `z`, when `opts` asks for one and it
/// lowers their log loss; with the log loss before and after.
pub(crate) fn calibration(
    opts: &TrainOptions,
    z: &[f64],
    labels: &[f32],
) -> Option<(Platt, f64, f64)> {
    if !opts.calibrate {
        return None;
    }
    let before = metrics::bce_with_logits(labels, z);
    let platt = Platt::fit(z, labels)?;
    let scaled: Vec<f64> = z.iter().map(|&v| platt.apply(v)).collect();
    let after = metrics::bce_with_logits(labels, &scaled);
    if after < before {
        tracing::info!(a = platt.a, b = platt.b, before, after, "calibrated");
        Some((platt, before, after))
    } else {
        None
    }
}

/// A copy of the variables' current values on the CPU, as a model.
fn snapshot(config: &PurchaseConfig, vars: &[(String, Var)]) -> Result<PurchaseModel, GpuError> {
    let mut named = HashMap::new();
    for (name, v) in vars {
        named.insert(name.clone(), v.as_tensor().to_device(&Device::Cpu)?.copy()?);
    }
    PurchaseModel::from_named(config.clone(), &named)
}

/// The training rows put in an order of their own content (a query returns rows in
/// whatever order its parallel plan produced, and the same rows must give the same model),
/// their fingerprint, and the seeded split.
pub(crate) struct Prepared {
    pub rows: Rows,
    pub labels: Vec<f32>,
    pub fingerprint: String,
    pub train_idx: Vec<usize>,
    pub valid_idx: Vec<usize>,
    pub valid_rows: Rows,
    pub valid_labels: Vec<f32>,
}

/// Checks the rows against the config and prepares them for training ([`Prepared`]).
pub(crate) fn prepare(
    config: &PurchaseConfig,
    rows: &Rows,
    labels: &[f32],
    keys: &SplitKeys,
    opts: &TrainOptions,
) -> Result<Prepared, GpuError> {
    if labels.len() != rows.len() {
        return Err(GpuError::Shape("one label per row is needed".into()));
    }
    if config.seq_len == 0 || !rows.sequences.len().is_multiple_of(config.seq_len) {
        return Err(GpuError::Shape(format!(
            "sequences are not whole windows of {} tokens",
            config.seq_len
        )));
    }
    rows.check(config)?;
    let len = config.seq_len;
    let hashes = row_hashes(rows, labels, keys, len);
    let mut order: Vec<usize> = (0..rows.len()).collect();
    order.sort_by_key(|&r| hashes[r]);
    // Sorted row hashes, hashed: the same rows in any order share the fingerprint.
    let fingerprint = format!(
        "{:016x}",
        order
            .iter()
            .fold(FNV_OFFSET, |h, &r| fnv1a(h, &hashes[r].to_le_bytes()))
    );
    let rows = subset(rows, &order, len);
    let labels: Vec<f32> = order.iter().map(|&r| labels[r]).collect();
    let keys = keys.permuted(&order);
    let (train_idx, valid_idx) = split(&keys, opts.valid_share, opts.seed);
    if train_idx.is_empty() || valid_idx.is_empty() {
        return Err(GpuError::Data(format!(
            "the split leaves {} training and {} validation rows: both need at least one",
            train_idx.len(),
            valid_idx.len()
        )));
    }
    let valid_rows = subset(&rows, &valid_idx, len);
    let valid_labels: Vec<f32> = valid_idx.iter().map(|&r| labels[r]).collect();
    Ok(Prepared {
        rows,
        labels,
        fingerprint,
        train_idx,
        valid_idx,
        valid_rows,
        valid_labels,
    })
}

/// Trains a model; `on_epoch` sees each epoch's report as soon as it is known and
/// may stop training by returning an error.
pub fn train(
    config: PurchaseConfig,
    rows: &Rows,
    labels: &[f32],
    keys: &SplitKeys,
    opts: &TrainOptions,
    on_epoch: &mut dyn FnMut(&EpochReport) -> Result<(), GpuError>,
) -> Result<Trained, GpuError> {
    if config.inputs() == 0 {
        return Err(GpuError::Data(
            "the model has no inputs: give it a sequence (sequence => true) or features".into(),
        ));
    }
    if opts.batch_size == 0 || opts.epochs == 0 {
        return Err(GpuError::Shape(
            "epochs and batch_size must be positive".into(),
        ));
    }
    let Prepared {
        rows,
        labels,
        fingerprint,
        mut train_idx,
        valid_idx,
        valid_rows,
        valid_labels,
    } = prepare(&config, rows, labels, keys, opts)?;
    let rows = &rows;
    let (dev, used) = device::open(opts.device)?;

    let init = PurchaseModel::seeded(config.clone(), opts.seed, &dev)?;
    if let Some(start) = &opts.encoder_init {
        let mismatch = if !config.use_sequence {
            Some("this model reads no sequence (sequence => false)".to_string())
        } else if start.config.dim != config.encoder.dim {
            Some(format!(
                "its user vector has {} dimensions and this model's {}: give the same embed_dim",
                start.config.dim, config.encoder.dim
            ))
        } else if start.config != config.encoder {
            Some("its encoder was built with another vocabulary or shape".to_string())
        } else {
            None
        };
        if let Some(why) = mismatch {
            return Err(GpuError::Incompatible(format!(
                "encoder_from: {}'s encoder does not fit: {why}",
                start.from
            )));
        }
    }
    let mut vars = Vec::new();
    for (name, t) in init.named_tensors()? {
        // Same encoder config (checked above), same shapes.
        let start = opts
            .encoder_init
            .as_ref()
            .and_then(|s| s.tensors.get(&name));
        let t = match start {
            Some(pre) => pre.to_device(&dev)?,
            None => t,
        };
        vars.push((name, Var::from_tensor(&t)?));
    }
    let named: HashMap<String, Tensor> = vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().clone()))
        .collect();
    let model = PurchaseModel::from_named(config.clone(), &named)?;
    let mut opt = AdamW::new(
        vars.iter().map(|(_, v)| v.clone()).collect(),
        ParamsAdamW {
            lr: opts.learning_rate,
            weight_decay: opts.weight_decay,
            ..ParamsAdamW::default()
        },
    )?;

    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    rng.set_stream(0x7261_696e); // the batch order, apart from the weights' streams
    let mut reports = Vec::new();
    // The kept epoch: its validation loss, number, weights and validation logits.
    let mut best: Option<(f64, usize, PurchaseModel, Vec<f64>)> = None;
    let mut stale = 0;
    for epoch in 1..=opts.epochs {
        let t0 = Instant::now();
        train_idx.shuffle(&mut rng);
        let mut total = 0.0;
        for batch in train_idx.chunks(opts.batch_size) {
            let logits = model.logits(rows, batch, &dev)?;
            let y: Vec<f32> = batch.iter().map(|&r| labels[r]).collect();
            let y = Tensor::from_vec(y, batch.len(), &dev)?;
            let loss = bce_with_logits(&logits, &y)?;
            opt.backward_step(&loss)?;
            total += f64::from(loss.to_scalar::<f32>()?) * batch.len() as f64;
        }
        let current = snapshot(&config, &vars)?;
        let logits = Scorer::new(&current)?.logits(&valid_rows)?;
        let valid_loss = metrics::bce_with_logits(&valid_labels, &logits);
        if !valid_loss.is_finite() {
            return Err(GpuError::Data(format!(
                "training diverged at epoch {epoch} (validation loss {valid_loss}): lower learning_rate"
            )));
        }
        let improved = best.as_ref().is_none_or(|(b, ..)| valid_loss < b - 1e-7);
        let (valid_auc, valid_logloss) = ranking(&valid_labels, &logits);
        let report = EpochReport {
            epoch,
            train_loss: total / train_idx.len() as f64,
            valid_loss,
            valid_auc,
            valid_logloss,
            seconds: t0.elapsed().as_secs_f64(),
            improved,
        };
        tracing::info!(?report, "train_model epoch");
        on_epoch(&report)?;
        reports.push(report);
        if improved {
            best = Some((valid_loss, epoch, current, logits));
            stale = 0;
        } else {
            stale += 1;
            if stale >= opts.patience {
                break;
            }
        }
    }
    let (_, best_epoch, model, logits) =
        best.ok_or_else(|| GpuError::Data("no epoch finished".into()))?;
    let (model, calibrated) = match calibration(opts, &logits, &valid_labels) {
        Some((platt, before, after)) => {
            (model.with_calibration(Some(platt)), Some((before, after)))
        }
        None => (model, None),
    };
    let scorer = Scorer::new(&model)?;
    let importance = permutation(
        model.config(),
        &valid_rows,
        &valid_labels,
        opts.seed,
        &|r| scorer.logits(r),
    )?;
    Ok(Trained {
        model,
        calibrated,
        reports,
        best_epoch,
        device: used,
        train_rows: train_idx.len(),
        valid_rows: valid_idx.len(),
        fingerprint,
        importance,
    })
}
