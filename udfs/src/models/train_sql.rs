//! `train_model(name, (SELECT …), kind => 'purchase'|'propensity'|'logistic'|'gbdt', …)`: trains a
//! model from the rows of a query, streams one row per epoch (a Newton step for a logistic
//! model, every 10 trees for a gbdt one) as training goes, and stores the kept weights as the
//! next version of `name`.
//!
//! `purchase` and `propensity` are the network for each task; a tabular kind (`logistic`,
//! `gbdt`) does either task — a purchase model when the rows carry an offer (`discount`), else a
//! propensity model, or as `target =>` says — and reads the same columns, the sequence as
//! hand-made counts.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, RecordBatch, StringArray,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::Result;
use flashsql_gpu::GpuError;
use flashsql_gpu::encoder::EncoderConfig;
use flashsql_gpu::gbdt::GbdtParams;
use flashsql_gpu::learner::{Learned, learner_name};
use flashsql_gpu::purchase::{ModelKind, PurchaseConfig, Rows, Scale, category_vocabulary};
use flashsql_gpu::store::{Candidate, DeployTarget, Manifest, Metrics, ModelStore};
use flashsql_gpu::tabular::{SequenceCounts, TabularLearner, TabularSpec};
use flashsql_gpu::train::{EpochReport, SplitKeys, TrainOptions, Trained, split, train};

use super::features::{
    Features, check_offer, feature_matrix, floats, ints, model_error, scoring_arguments,
    scoring_rows, sequences,
};
use crate::error::{FunctionError, row_error};
use crate::relation::{Compute, Emit, Options, RelationFunction, named_column, user_error};

/// The SQL name of [`TrainModel`].
pub const NAME: &str = "train_model";
const USAGE: &str = "train_model('name', (SELECT label, seq, category_id, price, discount [, time_left, hour, features, user_id, ts] …), kind => 'purchase'|'propensity'|'logistic'|'gbdt'|'auto', target => 'purchase'|'propensity', l2 => (chosen on validation), sequence_counts => true, trees => 1000, max_depth => 6, max_leaves => 31, epochs => 10, batch_size => 512, learning_rate => 0.003, weight_decay => 0.0001, embed_dim => 32, max_len => 64, split => 'user'|'time', patience => 2, sequence => true, affinity => true, calibrate => true, seed => 42, device => 'auto'|'cpu'|'cuda[:N]', deploy => 'always'|'if_better'|'never', encoder_from => 'model')";
const NEEDS: &str = "label (boolean or 0/1), seq (from behavior_sequence), for kind => 'purchase' category_id, price and discount; optional time_left, hour and features (a list of numbers); user_id for split => 'user', ts for split => 'time'";

#[derive(Debug)]
pub struct TrainModel {
    pub store: Arc<ModelStore>,
}

#[derive(Debug, Clone)]
struct Plan {
    name: String,
    /// The task: what the model predicts and so which inputs it reads; `None` for a tabular
    /// kind without `target =>`: a purchase model when the rows have a discount.
    kind: Option<ModelKind>,
    /// The learners to train (`None`: the network): one, or for `kind => 'auto'` every one,
    /// simplest first; the best on the validation rows is kept.
    learners: Vec<Option<TabularLearner>>,
    /// The L2 penalty of a logistic model (scikit-learn's 1 / C) and the trees' λ; `None`:
    /// chosen on the validation rows for a logistic model, 1 for trees.
    l2: Option<f64>,
    /// Whether a tabular model reads the sequence as counts.
    sequence_counts: bool,
    /// A gbdt model's booster settings.
    gbdt: GbdtParams,
    /// The network's options; a tabular learner's are [`Plan::options_for`].
    options: TrainOptions,
    /// What the call said, where each learner has its own default.
    given: Given,
    embed_dim: usize,
    max_len: usize,
    by_time: bool,
    use_sequence: bool,
    affinity: bool,
    deploy: Deploy,
}

/// Options whose defaults depend on the learner, as the call gave them.
#[derive(Debug, Clone, Copy)]
struct Given {
    learning_rate: Option<f64>,
    patience: Option<usize>,
    calibrate: Option<bool>,
}

impl Plan {
    /// The training options of one learner: a logistic or gbdt model is fitted on the log
    /// loss itself and is not calibrated unless asked; trees take their own rate and patience.
    fn options_for(&self, learner: Option<TabularLearner>) -> (TrainOptions, GbdtParams) {
        let g = GbdtParams::default();
        let d = TrainOptions::default();
        let tree = learner == Some(TabularLearner::Gbdt);
        let options = TrainOptions {
            calibrate: self.given.calibrate.unwrap_or(learner.is_none()),
            ..self.options.clone()
        };
        let gbdt = GbdtParams {
            learning_rate: self
                .given
                .learning_rate
                .map_or(g.learning_rate, |r| r as f32),
            patience: self
                .given
                .patience
                .unwrap_or(if tree { g.patience } else { d.patience }),
            ..self.gbdt
        };
        (options, gbdt)
    }
}

/// Whether the new version becomes what the bare name means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deploy {
    Always,
    /// Only if its validation AUC beats the deployed version's on the same validation rows.
    IfBetter,
    Never,
}

impl RelationFunction for TrainModel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn usage(&self) -> &'static str {
        USAGE
    }

    fn takes_input(&self) -> bool {
        true
    }

    fn positional(&self) -> &'static [&'static str] {
        &["name"]
    }

    fn option_names(&self) -> &'static [&'static str] {
        &[
            "name",
            "kind",
            "target",
            "l2",
            "sequence_counts",
            "trees",
            "max_depth",
            "max_leaves",
            "epochs",
            "batch_size",
            "learning_rate",
            "weight_decay",
            "embed_dim",
            "max_len",
            "split",
            "patience",
            "sequence",
            "affinity",
            "calibrate",
            "seed",
            "device",
            "deploy",
            "encoder_from",
        ]
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("model", DataType::Utf8, false),
            Field::new("epoch", DataType::Int32, false),
            Field::new("train_loss", DataType::Float64, false),
            Field::new("valid_loss", DataType::Float64, false),
            Field::new("valid_auc", DataType::Float64, true),
            Field::new("valid_logloss", DataType::Float64, false),
            Field::new("seconds", DataType::Float64, false),
            Field::new("improved", DataType::Boolean, false),
        ]))
    }

    fn bind(&self, mut o: Options) -> Result<Compute> {
        let name = o
            .text("name")?
            .ok_or_else(|| user_error(format!("{NAME}: a model name is needed; write {USAGE}")))?;
        flashsql_gpu::store::check_name(&name).map_err(|e| model_error(NAME, e))?;
        // Network kinds name their task; a tabular kind takes it from `target =>` or, without
        // one, from the input (see `task`).
        let (kind, learners) = match o.text("kind")?.as_deref() {
            None => (None, vec![None]),
            Some("purchase") => (Some(ModelKind::Purchase), vec![None]),
            Some("propensity") => (Some(ModelKind::Propensity), vec![None]),
            Some("logistic") => (None, vec![Some(TabularLearner::Logistic)]),
            Some("gbdt") => (None, vec![Some(TabularLearner::Gbdt)]),
            Some("auto") => (
                None,
                vec![
                    Some(TabularLearner::Logistic),
                    Some(TabularLearner::Gbdt),
                    None,
                ],
            ),
            Some(other) => {
                return Err(user_error(format!(
                    "{NAME}: kind '{other}' is not known: use 'purchase', 'propensity', 'logistic', 'gbdt', 'auto'"
                )));
            }
        };
        let network_only = learners == [None];
        let target = match o.text("target")?.as_deref() {
            None => None,
            Some("purchase") => Some(ModelKind::Purchase),
            Some("propensity") => Some(ModelKind::Propensity),
            Some(other) => {
                return Err(user_error(format!(
                    "{NAME}: target '{other}' is not known: use 'purchase', 'propensity'"
                )));
            }
        };
        let kind = match (kind, target) {
            (Some(k), Some(t)) if k != t => {
                return Err(user_error(format!(
                    "{NAME}: kind => '{}' predicts {}, not target => '{}'",
                    k.name(),
                    k.name(),
                    t.name()
                )));
            }
            (Some(k), _) => Some(k),
            (None, Some(t)) => Some(t),
            // The network's default task.
            (None, None) if network_only => Some(ModelKind::Purchase),
            (None, None) => None,
        };
        let l2 = match o.number("l2")? {
            None => None,
            Some(v) if v.is_finite() && v >= 0.0 => Some(v),
            Some(v) => {
                return Err(user_error(format!(
                    "{NAME}: l2 must be a number ≥ 0, got {v}"
                )));
            }
        };
        let sequence_counts = o.flag("sequence_counts")?.unwrap_or(true);
        let d = TrainOptions::default();
        let positive = |o: &mut Options, key: &str, default: usize, max: u64| -> Result<usize> {
            match o.count(key)? {
                None => Ok(default),
                Some(v) if v >= 1 && v <= max => Ok(v as usize),
                Some(v) => Err(user_error(format!(
                    "{NAME}: {key} must be between 1 and {max}, got {v}"
                ))),
            }
        };
        let epochs = positive(&mut o, "epochs", d.epochs, 1000)?;
        let batch_size = positive(&mut o, "batch_size", d.batch_size, 1 << 20)?;
        let embed_dim = positive(&mut o, "embed_dim", 32, 1024)?;
        let max_len = positive(&mut o, "max_len", 64, 4096)?;
        let g = GbdtParams::default();
        let trees = positive(&mut o, "trees", g.trees, 100_000)?;
        let max_depth = positive(&mut o, "max_depth", g.max_depth, 64)?;
        let max_leaves = positive(&mut o, "max_leaves", g.max_leaves, 1 << 20)?;
        // Trees stop after many more rounds without improvement than epochs do.
        let given_patience = match o.count("patience")? {
            None => None,
            Some(v) if (1..=100_000).contains(&v) => Some(v as usize),
            Some(v) => {
                return Err(user_error(format!(
                    "{NAME}: patience must be between 1 and 100000, got {v}"
                )));
            }
        };
        let rate = |o: &mut Options, key: &str, default: f64| -> Result<f64> {
            match o.number(key)? {
                None => Ok(default),
                Some(v) if v > 0.0 && v < 10.0 || v == 0.0 => Ok(v),
                Some(v) => Err(user_error(format!(
                    "{NAME}: {key} must be positive and below 10, got {v}"
                ))),
            }
        };
        let given_rate = match o.number("learning_rate")? {
            None => None,
            Some(v) if v > 0.0 && v < 10.0 => Some(v),
            Some(v) => {
                return Err(user_error(format!(
                    "{NAME}: learning_rate must be positive and below 10, got {v}"
                )));
            }
        };
        let weight_decay = rate(&mut o, "weight_decay", d.weight_decay)?;
        let by_time = o.choice("split", &[("user", false), ("time", true)])?;
        let use_sequence = o.flag("sequence")?.unwrap_or(true);
        let affinity = o.flag("affinity")?.unwrap_or(true);
        let given_calibrate = o.flag("calibrate")?;
        let seed = o.count("seed")?.unwrap_or(d.seed);
        let device = match o.text("device")? {
            Some(s) => s.parse().map_err(|e: GpuError| model_error(NAME, e))?,
            None => self.store.default_device(),
        };
        let deploy = o.choice(
            "deploy",
            &[
                ("always", Deploy::Always),
                ("if_better", Deploy::IfBetter),
                ("never", Deploy::Never),
            ],
        )?;
        let encoder_init = match o.text("encoder_from")? {
            None => None,
            Some(_) if learners.iter().all(Option::is_some) => {
                return Err(user_error(format!(
                    "{NAME}: encoder_from starts a network's sequence encoder; a logistic or gbdt model has none"
                )));
            }
            Some(spec) => Some(
                self.store
                    .encoder_weights(&spec)
                    .map_err(|e| model_error(NAME, e))?,
            ),
        };
        o.finish()?;
        let plan = Plan {
            name,
            kind,
            learners,
            l2,
            sequence_counts,
            gbdt: GbdtParams {
                trees,
                max_depth,
                max_leaves,
                l2: l2.map_or(g.l2, |v| v as f32),
                ..g
            },
            options: TrainOptions {
                epochs,
                batch_size,
                learning_rate: given_rate.unwrap_or(d.learning_rate),
                weight_decay,
                patience: given_patience.unwrap_or(d.patience),
                seed,
                device,
                encoder_init,
                ..d
            },
            given: Given {
                learning_rate: given_rate,
                patience: given_patience,
                calibrate: given_calibrate,
            },
            embed_dim,
            max_len,
            by_time,
            use_sequence,
            affinity,
            deploy,
        };
        let store = self.store.clone();
        let schema = self.schema();
        Ok(Arc::new(
            move |batches: &[RecordBatch],
                  emit: &mut Emit<'_>,
                  _: &crate::relation::Cancellation| {
                run(&store, &plan, &schema, batches, emit)
            },
        ))
    }
}

/// A required input column.
fn column(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    named_column(NAME, batch, name, NEEDS)
}

fn required<T: Copy>(values: &[Option<T>], name: &str) -> Result<Vec<T>> {
    values
        .iter()
        .enumerate()
        .map(|(r, v)| v.ok_or_else(|| row_error(format!("{NAME}: row {}: {name} is NULL", r + 1))))
        .collect()
}

/// The item and offer columns a purchase model reads.
struct OfferColumns {
    category: Vec<i64>,
    price: Vec<f64>,
    discount: Vec<f64>,
    time_left: Option<Vec<f32>>,
    hour: Option<Vec<f32>>,
}

fn offer_columns(input: &RecordBatch) -> Result<OfferColumns> {
    let category = required(
        &ints(NAME, "category_id", &column(input, "category_id")?)?,
        "category_id",
    )?;
    let price = required(&floats(NAME, "price", &column(input, "price")?)?, "price")?;
    let discount = required(
        &floats(NAME, "discount", &column(input, "discount")?)?,
        "discount",
    )?;
    for (r, (&p, &d)) in price.iter().zip(&discount).enumerate() {
        check_offer(NAME, r, p, d)?;
    }
    let optional = |name: &str| -> Result<Option<Vec<f32>>> {
        match input.schema().index_of(name) {
            Ok(i) => Ok(Some(
                required(&floats(NAME, name, input.column(i))?, name)?
                    .into_iter()
                    .map(|v| v as f32)
                    .collect(),
            )),
            Err(_) => Ok(None),
        }
    };
    let time_left = optional("time_left")?;
    let hour = optional("hour")?;
    if hour.is_some() && time_left.is_none() {
        return Err(FunctionError::MissingColumn(format!(
            "{NAME}: the input has hour but no time_left; purchase_prob takes them in that order, so give both or neither"
        ))
        .into());
    }
    Ok(OfferColumns {
        category,
        price,
        discount,
        time_left,
        hour,
    })
}

/// What training reads from the input rows: the model's shape and input scales, the rows,
/// their labels and the split keys.
struct TrainingInput {
    config: PurchaseConfig,
    rows: Rows,
    labels: Vec<f32>,
    keys: SplitKeys,
}

/// The task a plan trains for on these rows: its own, else a purchase model when the rows
/// carry an offer.
fn task(plan: &Plan, input: &RecordBatch) -> ModelKind {
    plan.kind
        .unwrap_or(if input.schema().index_of("discount").is_ok() {
            ModelKind::Purchase
        } else {
            ModelKind::Propensity
        })
}

fn training_input(plan: &Plan, input: &RecordBatch) -> Result<TrainingInput> {
    let n = input.num_rows();
    let kind = task(plan, input);
    // Labels: boolean, or numbers that are 0 or 1.
    let labels: Vec<f32> = required(&floats(NAME, "label", &column(input, "label")?)?, "label")?
        .into_iter()
        .enumerate()
        .map(|(r, y)| {
            if y == 0.0 || y == 1.0 {
                Ok(y as f32)
            } else {
                Err(row_error(format!(
                    "{NAME}: row {}: label must be 0 or 1 (or a boolean), got {y}",
                    r + 1
                )))
            }
        })
        .collect::<Result<_>>()?;
    let encoder = EncoderConfig {
        dim: plan.embed_dim,
        factor_buckets: Some(crate::sequence::CATEGORY_BUCKETS as usize),
        ..EncoderConfig::default()
    };
    // Sequences shorter than the widest kernel are padded to it.
    let widest = encoder.widths.iter().copied().max().unwrap_or(1);
    let seq_len = plan.max_len.max(widest);
    // Without the encoder the sequence is not read (and need not be there).
    let (sequences, seq_of_row) = if plan.use_sequence {
        let w = sequences(NAME, &column(input, "seq")?, seq_len, encoder.vocab)?;
        (w.tokens, w.of_row)
    } else {
        (vec![0; seq_len], vec![0; n])
    };
    let features = match input.schema().index_of("features") {
        Ok(i) => {
            let Features {
                matrix,
                valid,
                width,
            } = feature_matrix(NAME, input.column(i), None)?;
            if let Some(r) = valid.iter().position(|v| !v) {
                return Err(row_error(format!(
                    "{NAME}: row {}: features is NULL",
                    r + 1
                )));
            }
            Some((matrix, width))
        }
        Err(_) => None,
    };
    let scales: Vec<Scale> = match &features {
        Some((matrix, width)) => (0..*width)
            .map(|k| Scale::of(matrix.iter().skip(k).step_by(*width).map(|&x| f64::from(x))))
            .collect(),
        None => Vec::new(),
    };
    let offer = match kind {
        ModelKind::Purchase => Some(offer_columns(input)?),
        ModelKind::Propensity => None,
    };
    let keys = if plan.by_time {
        SplitKeys::Time(required(&ints(NAME, "ts", &column(input, "ts")?)?, "ts")?)
    } else {
        SplitKeys::User(required(
            &ints(NAME, "user_id", &column(input, "user_id")?)?,
            "user_id",
        )?)
    };
    let mut config = PurchaseConfig {
        kind,
        encoder,
        seq_len,
        use_sequence: plan.use_sequence,
        category_dim: 8,
        hidden: [64, 32],
        log_price_mean: 0.0,
        log_price_sd: 1.0,
        time_left: false,
        hour: false,
        categories: Vec::new(),
        features: scales,
        calibration: None,
        // Only a purchase model with the sequence reads it.
        affinity: (plan.affinity && plan.use_sequence && kind == ModelKind::Purchase)
            .then_some(crate::sequence::TOKEN_LAYOUT),
        // Set per learner by `run`.
        tabular: None,
    };
    let mut rows = Rows {
        sequences,
        seq_of_row,
        features: features.map(|(m, _)| m).unwrap_or_default(),
        ..Rows::default()
    };
    if let Some(o) = offer {
        config.categories = category_vocabulary(&o.category);
        let scale = Scale::of(o.price.iter().map(|p| p.ln()));
        (config.log_price_mean, config.log_price_sd) = (scale.mean, scale.sd);
        config.time_left = o.time_left.is_some();
        config.hour = o.hour.is_some();
        rows.category = o
            .category
            .iter()
            .map(|&c| config.category_index(c))
            .collect();
        if let Some(layout) = config.affinity_layout() {
            rows.category_bucket = o.category.iter().map(|&c| layout.bucket(c)).collect();
        }
        rows.price = o.price.iter().map(|&p| p as f32).collect();
        rows.discount = o.discount.iter().map(|&d| d as f32).collect();
        rows.time_left = o.time_left.unwrap_or_default();
        rows.hour = o.hour.unwrap_or_default();
    }
    Ok(TrainingInput {
        config,
        rows,
        labels,
        keys,
    })
}

/// The counts a tabular model reads from `behavior_sequence`'s tokens.
fn sequence_counts() -> SequenceCounts {
    SequenceCounts {
        layout: crate::sequence::TOKEN_LAYOUT,
        events: crate::sequence::EVENT_TYPES.map(String::from).to_vec(),
        gaps: crate::sequence::GAP_BUCKETS as u32,
        horizons: crate::sequence::HORIZONS.map(String::from).to_vec(),
    }
}

fn run(
    store: &ModelStore,
    plan: &Plan,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    emit: &mut Emit<'_>,
) -> Result<()> {
    let started = Instant::now();
    let Some(first) = batches.first() else {
        return Err(row_error(format!(
            "{NAME}: the input query returned no rows"
        )));
    };
    let input = concat_batches(&first.schema(), batches)?;
    let n = input.num_rows();
    let TrainingInput {
        config,
        rows,
        labels,
        keys,
    } = training_input(plan, &input)?;
    // The version the bare name means now. Unless the new version is to replace it
    // whatever happens, it is pinned first: a name never deployed explicitly means its
    // latest version, which the new one would otherwise become the moment it is saved.
    let resolved = store.resolve(&plan.name).ok();
    let incumbent = resolved.as_ref().map(|(_, v)| *v);
    if let Some((name, v)) = &resolved
        && plan.deploy != Deploy::Always
        && store.deployed(name).is_none()
    {
        store
            .deploy(
                name,
                DeployTarget::Version(*v),
                "kept while train_model trains a challenger",
            )
            .map_err(|e| model_error(NAME, e))?;
    }
    let reservation = store
        .reserve(&plan.name)
        .map_err(|e| model_error(NAME, e))?;
    let auto = plan.learners.len() > 1;
    let mut candidates: Vec<(Option<TabularLearner>, Trained<Learned>, f64)> = Vec::new();
    for &learner in &plan.learners {
        let t0 = Instant::now();
        // Under `auto` each candidate's rows say which it is.
        let label = if auto {
            format!(
                "{}@{} ({})",
                reservation.name,
                reservation.version,
                learner_name(learner)
            )
        } else {
            format!("{}@{}", reservation.name, reservation.version)
        };
        let mut on_epoch = |r: &EpochReport| -> std::result::Result<(), GpuError> {
            let batch =
                epoch_batch(schema, &label, r).map_err(|e| GpuError::Data(e.to_string()))?;
            emit(batch).map_err(|e| GpuError::Data(e.to_string()))
        };
        let config = PurchaseConfig {
            tabular: learner.map(|learner| TabularSpec {
                learner,
                counts: (plan.use_sequence && plan.sequence_counts).then(sequence_counts),
            }),
            ..config.clone()
        };
        let (options, gbdt) = plan.options_for(learner);
        let trained = match learner {
            None => train(config, &rows, &labels, &keys, &options, &mut on_epoch)
                .map(|t| t.map(Learned::Network)),
            Some(TabularLearner::Logistic) => flashsql_gpu::logistic::train(
                config,
                &rows,
                &labels,
                &keys,
                &options,
                plan.l2,
                &mut on_epoch,
            )
            .map(|t| t.map(Learned::Logistic)),
            Some(TabularLearner::Gbdt) => flashsql_gpu::gbdt::train(
                config,
                &rows,
                &labels,
                &keys,
                &options,
                &gbdt,
                &mut on_epoch,
            )
            .map(|t| t.map(Learned::Gbdt)),
        }
        .map_err(|e| model_error(NAME, e))?;
        candidates.push((learner, trained, t0.elapsed().as_secs_f64()));
    }
    let comparison: Vec<Candidate> = candidates
        .iter()
        .map(|(learner, t, seconds)| {
            let kept = t.kept();
            Candidate {
                learner: learner_name(*learner).into(),
                valid_auc: kept.valid_auc,
                valid_logloss: t.calibrated.map_or(kept.valid_logloss, |(_, after)| after),
                training_seconds: *seconds,
                chosen: false,
            }
        })
        .collect();
    let chosen = choose(&comparison);
    let (_, trained, _) = candidates.swap_remove(chosen);
    let comparison: Vec<Candidate> = comparison
        .into_iter()
        .enumerate()
        .map(|(k, c)| Candidate {
            chosen: k == chosen,
            ..c
        })
        .collect();
    let label = format!("{}@{}", reservation.name, reservation.version);
    let kept = trained.kept();
    let manifest = Manifest {
        name: plan.name.clone(),
        version: reservation.version,
        kind: config.kind.name().into(),
        created_at_us: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64),
        // The trained model's own: it carries the calibration fitted after training.
        config: trained.model.config().clone(),
        metrics: Metrics {
            valid_auc: kept.valid_auc,
            valid_logloss: trained
                .calibrated
                .map_or(kept.valid_logloss, |(_, after)| after),
            uncalibrated_logloss: trained.calibrated.map(|(before, _)| before),
            candidates: if auto { comparison } else { Vec::new() },
        },
        seed: plan.options.seed,
        device: trained.device.to_string(),
        training_seconds: started.elapsed().as_secs_f64(),
        data_fingerprint: trained.fingerprint.clone(),
        train_rows: trained.train_rows,
        valid_rows: trained.valid_rows,
        split: if plan.by_time { "time" } else { "user" }.into(),
        best_epoch: trained.best_epoch,
        epochs: trained.reports.clone(),
        importance: trained.importance.clone(),
        encoder_from: match trained.model {
            Learned::Network(_) => plan.options.encoder_init.as_ref().map(|e| e.from.clone()),
            _ => None,
        },
    };
    let version = store
        .save(reservation, manifest, &trained.model)
        .map_err(|e| model_error(NAME, e))?;
    tracing::info!(model = %label, rows = n, seconds = started.elapsed().as_secs_f64(), "model trained");
    let decision = match (plan.deploy, incumbent) {
        (Deploy::Never, _) => None,
        (Deploy::Always, _) => Some("train_model (deploy => always)".to_string()),
        (Deploy::IfBetter, None) => Some("train_model (deploy => if_better): first version".into()),
        (Deploy::IfBetter, Some(old)) => {
            let valid = split(&keys, plan.options.valid_share, plan.options.seed).1;
            let rows = take_rows(&input, &valid)?;
            // A model that cannot score these rows (other inputs, another kind, a feature
            // width or category it does not know, dropped meanwhile) has no AUC here.
            let auc = |v: u32| {
                let spec = format!("{}@{v}", plan.name);
                validation_auc(store, &spec, &rows, config.kind).unwrap_or_else(|e| {
                    tracing::info!(model = %spec, error = %e, "cannot score the validation rows");
                    None
                })
            };
            let (challenger, champion) = (auc(version), auc(old));
            let compared = format!(
                "valid AUC {} (version {version}) vs {} (version {old}) on the same {} validation rows",
                shown(challenger),
                shown(champion),
                valid.len()
            );
            match (challenger, champion) {
                (Some(new), Some(cur)) if new > cur => {
                    Some(format!("train_model (deploy => if_better): {compared}"))
                }
                (Some(_), None) => Some(format!(
                    "train_model (deploy => if_better): version {old} cannot score these rows; {compared}"
                )),
                _ => {
                    tracing::info!(model = %label, %compared, "not deployed: not better");
                    None
                }
            }
        }
    };
    if let Some(reason) = decision {
        store
            .deploy(&plan.name, DeployTarget::Version(version), &reason)
            .map_err(|e| model_error(NAME, e))?;
    }
    Ok(())
}

/// AUC within this of the best counts as a tie, which the simpler learner wins.
const AUTO_TIE: f64 = 0.001;

/// The candidate `kind => 'auto'` keeps: the highest validation AUC, unless a simpler one
/// (earlier in the list) is within [`AUTO_TIE`] of it; without an AUC (one class in the
/// validation rows), the lowest log loss.
fn choose(candidates: &[Candidate]) -> usize {
    let best_auc = candidates
        .iter()
        .filter_map(|c| c.valid_auc)
        .fold(f64::NEG_INFINITY, f64::max);
    if best_auc.is_finite()
        && let Some(k) = candidates
            .iter()
            .position(|c| c.valid_auc.is_some_and(|a| a >= best_auc - AUTO_TIE))
    {
        return k;
    }
    candidates
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.valid_logloss.total_cmp(&b.1.valid_logloss))
        .map_or(0, |(k, _)| k)
}

fn shown(auc: Option<f64>) -> String {
    auc.map_or("undefined".into(), |a| format!("{a:.4}"))
}

/// The rows of `input` at `indices`.
fn take_rows(input: &RecordBatch, indices: &[usize]) -> Result<RecordBatch> {
    let idx =
        datafusion::arrow::array::UInt32Array::from_iter_values(indices.iter().map(|&i| i as u32));
    Ok(datafusion::arrow::compute::take_record_batch(input, &idx)?)
}

/// The AUC of model `spec` on `rows` (training rows with their labels), scored the way
/// `purchase_prob` scores; `None` when the model reads an input the rows lack, is of another
/// kind, or a class is missing.
fn validation_auc(
    store: &ModelStore,
    spec: &str,
    rows: &RecordBatch,
    kind: ModelKind,
) -> Result<Option<f64>> {
    let model = store.load(spec).map_err(|e| model_error(NAME, e))?;
    let config = model.scorer.config();
    if config.kind != kind {
        return Ok(None);
    }
    let mut arrays = Vec::new();
    for name in scoring_arguments(config) {
        match rows.column_by_name(name) {
            Some(a) => arrays.push(a.clone()),
            // Rows without sequences (a model trained with sequence => false) score as
            // users without history, as `purchase_prob(…, NULL, …)` does.
            None if name == "seq" => arrays.push(datafusion::arrow::array::new_null_array(
                &DataType::Null,
                rows.num_rows(),
            )),
            None => return Ok(None),
        }
    }
    let labels = floats(NAME, "label", &column(rows, "label")?)?;
    let scored = scoring_rows(NAME, config, &arrays, rows.num_rows())?;
    let probs = model
        .scorer
        .probabilities(&scored.rows)
        .map_err(|e| model_error(NAME, e))?;
    let mut pairs: Vec<(f64, f64)> = scored
        .kept
        .iter()
        .zip(probs)
        .filter_map(|(&r, p)| labels[r].map(|y| (p, y)))
        .collect();
    Ok(flashsql_gpu::metrics::auc(&mut pairs))
}

fn epoch_batch(schema: &SchemaRef, model: &str, r: &EpochReport) -> Result<RecordBatch> {
    Ok(RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from(vec![model])),
            Arc::new(Int32Array::from(vec![r.epoch as i32])),
            Arc::new(Float64Array::from(vec![r.train_loss])),
            Arc::new(Float64Array::from(vec![r.valid_loss])),
            Arc::new(Float64Array::from(vec![r.valid_auc])),
            Arc::new(Float64Array::from(vec![r.valid_logloss])),
            Arc::new(Float64Array::from(vec![r.seconds])),
            Arc::new(BooleanArray::from(vec![r.improved])),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn candidate(learner: &str, auc: Option<f64>, logloss: f64) -> Candidate {
        Candidate {
            learner: learner.into(),
            valid_auc: auc,
            valid_logloss: logloss,
            training_seconds: 0.0,
            chosen: false,
        }
    }

    /// The best AUC wins; a simpler learner within the tie margin wins over it; without
    /// AUCs, the lowest log loss.
    #[test]
    fn auto_keeps_the_best_and_breaks_ties_by_simplicity() {
        let c = |a: f64, b: f64, n: f64| {
            choose(&[
                candidate("logistic", Some(a), 0.5),
                candidate("gbdt", Some(b), 0.5),
                candidate("network", Some(n), 0.5),
            ])
        };
        assert_eq!(c(0.70, 0.78, 0.77), 1);
        assert_eq!(c(0.70, 0.77, 0.78), 2);
        assert_eq!(c(0.7795, 0.78, 0.7801), 0);
        assert_eq!(c(0.70, 0.7795, 0.7801), 1);
        let no_auc = [
            candidate("logistic", None, 0.52),
            candidate("gbdt", None, 0.50),
            candidate("network", None, 0.51),
        ];
        assert_eq!(choose(&no_auc), 1);
    }
}
