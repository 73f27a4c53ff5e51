//! The purchase model end to end on seeded synthetic rows whose true probabilities are known:
//! the frozen scorer equals the tensor path, the model is monotone in the discount, training
//! is bitwise reproducible and learns close to the Bayes-optimal AUC, and the store keeps
//! versions durable and resolvable.

use candle_core::Device;
use flashsql_gpu::GpuError;
use flashsql_gpu::affinity::TokenLayout;
use flashsql_gpu::calibration::Platt;
use flashsql_gpu::device::DeviceChoice;
use flashsql_gpu::encoder::EncoderConfig;
use flashsql_gpu::metrics::auc;
use flashsql_gpu::purchase::{
    ModelKind, PurchaseConfig, PurchaseModel, Rows, Scale, category_vocabulary, pad_sequence,
};
use flashsql_gpu::scorer::Scorer;
use flashsql_gpu::store::{Manifest, Metrics, ModelStore};
use flashsql_gpu::train::{SplitKeys, TrainOptions, Trained, train};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const LEN: usize = 16;

fn config(categories: Vec<i64>, use_sequence: bool) -> PurchaseConfig {
    PurchaseConfig {
        kind: ModelKind::Purchase,
        encoder: EncoderConfig {
            vocab: 64,
            embed: 8,
            widths: vec![2, 3],
            channels: 8,
            dim: 8,
            factor_buckets: None,
        },
        seq_len: LEN,
        use_sequence,
        categories,
        category_dim: 4,
        hidden: [16, 8],
        log_price_mean: 3.0,
        log_price_sd: 0.5,
        time_left: true,
        hour: false,
        features: Vec::new(),
        calibration: None,
        affinity: None,
        tabular: None,
    }
}

/// `n` tokens of a user of latent type `kind`: 33..64 for type 1, 1..32 for type 0.
fn typed_sequence(rng: &mut ChaCha8Rng, kind: bool, n: usize) -> Vec<u32> {
    (0..n)
        .map(|_| {
            if kind {
                rng.random_range(33..64)
            } else {
                rng.random_range(1..33)
            }
        })
        .collect()
}

/// Users of two latent types: type 1 browses tokens 33..64, type 0 tokens 1..32; type 1
/// buys more and reacts more to the discount. Returns rows, labels, users and the true
/// probabilities.
fn world(n_users: usize, per_user: usize, seed: u64) -> (Rows, Vec<f32>, Vec<i64>, Vec<f64>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = Rows::default();
    let (mut labels, mut users, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..n_users {
        let kind = rng.random_bool(0.5);
        let n = rng.random_range(3..=LEN + 4);
        let seq = typed_sequence(&mut rng, kind, n);
        pad_sequence(&seq, LEN, &mut rows.sequences);
        for _ in 0..per_user {
            let cat = rng.random_range(0..3u32);
            let price: f32 = (3.0 + rng.random_range(-0.5..0.5f32)).exp();
            let d: f32 = [0.0, 0.1, 0.2, 0.3, 0.5][rng.random_range(0..5)];
            let t: f32 = rng.random();
            let logit = -2.0 + if kind { 1.0 } else { -0.5 } + 0.3 * f64::from(cat)
                - 0.8 * (f64::from(price).ln() - 3.0)
                + if kind { 6.0 } else { 1.0 } * f64::from(d)
                + 0.5 * f64::from(t);
            let p = 1.0 / (1.0 + (-logit).exp());
            rows.seq_of_row.push(u as u32);
            rows.category.push(cat + 1);
            rows.category_bucket
                .push(TEST_LAYOUT.bucket(i64::from(cat) * 10 + 10));
            rows.price.push(price);
            rows.discount.push(d);
            rows.time_left.push(t);
            labels.push(f32::from(u8::from(rng.random_bool(p))));
            users.push(u as i64);
            truth.push(p);
        }
    }
    (rows, labels, users, truth)
}

fn sigmoid(x: f32) -> f64 {
    1.0 / (1.0 + (-f64::from(x)).exp())
}

/// Asserts that the scorer's probabilities of `rows` are the tensor path's within 1e-5, and
/// returns them.
fn scorer_matches_tensor_path(model: &PurchaseModel, scorer: &Scorer, rows: &Rows) -> Vec<f64> {
    let all: Vec<usize> = (0..rows.len()).collect();
    let logits = model
        .logits(rows, &all, &Device::Cpu)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let probs = scorer.probabilities(rows).unwrap();
    assert_eq!(logits.len(), probs.len());
    for (l, p) in logits.iter().zip(&probs) {
        assert!((sigmoid(*l) - p).abs() < 1e-5, "{} vs {p}", sigmoid(*l));
    }
    probs
}

/// A token layout for the test vocabulary (64 tokens): 4 category buckets, 3 events.
const TEST_LAYOUT: TokenLayout = TokenLayout {
    category_buckets: 4,
    events: 3,
    purchase: 2,
};

/// The frozen scorer equals the tensor path (sigmoid of the logits) within 1e-5, with and
/// without the sequence and its category-affinity inputs.
#[test]
fn scorer_equals_the_tensor_path() {
    let (rows, _, _, _) = world(40, 5, 1);
    for (use_sequence, affinity) in [(true, Some(TEST_LAYOUT)), (true, None), (false, None)] {
        let config = PurchaseConfig {
            affinity,
            ..config(vec![10, 20, 30], use_sequence)
        };
        let model = PurchaseModel::seeded(config, 3, &Device::Cpu).unwrap();
        let scorer = Scorer::new(&model).unwrap();
        let probs = scorer_matches_tensor_path(&model, &scorer, &rows);
        // The same rows at other discounts: each row gets its own.
        let levels = [0.0f32, 0.1, 0.3, 0.5];
        let mut grid = rows.clone();
        for &d in &levels[1..] {
            grid.seq_of_row.extend_from_slice(&rows.seq_of_row);
            grid.category.extend_from_slice(&rows.category);
            grid.category_bucket
                .extend_from_slice(&rows.category_bucket);
            grid.price.extend_from_slice(&rows.price);
            grid.time_left.extend_from_slice(&rows.time_left);
            grid.discount.extend(std::iter::repeat_n(d, rows.len()));
        }
        scorer_matches_tensor_path(&model, &scorer, &grid);
        // A second call takes every sequence from the cache, and a call that mixes cached
        // and new sequences fills in only the new: the same numbers, bit for bit.
        assert_eq!(scorer.probabilities(&rows).unwrap(), probs);
        let (more, _, _, _) = world(60, 5, 9);
        let mixed = Rows {
            sequences: [rows.sequences.clone(), more.sequences.clone()].concat(),
            sequence_hashes: Vec::new(),
            seq_of_row: rows
                .seq_of_row
                .iter()
                .copied()
                .chain(more.seq_of_row.iter().map(|s| s + 40))
                .collect(),
            category: [rows.category.clone(), more.category.clone()].concat(),
            price: [rows.price.clone(), more.price.clone()].concat(),
            discount: [rows.discount.clone(), more.discount.clone()].concat(),
            time_left: [rows.time_left.clone(), more.time_left.clone()].concat(),
            hour: Vec::new(),
            features: Vec::new(),
            category_bucket: [rows.category_bucket.clone(), more.category_bucket.clone()].concat(),
        };
        let fresh = Scorer::new(&model).unwrap().probabilities(&mixed).unwrap();
        assert_eq!(scorer.probabilities(&mixed).unwrap(), fresh);
        assert_eq!(&fresh[..probs.len()], &probs[..]);
    }
}

/// On every row of several random models, P(buy) never falls as the discount deepens.
#[test]
fn probability_is_non_decreasing_in_discount() {
    let (mut rows, _, _, _) = world(50, 4, 2);
    let n = rows.len();
    let grid: Vec<f32> = (0..=20).map(|k| k as f32 * 0.05).collect();
    for seed in 0..5 {
        let model =
            PurchaseModel::seeded(config(vec![10, 20, 30], true), seed, &Device::Cpu).unwrap();
        let scorer = Scorer::new(&model).unwrap();
        let mut prev = vec![f64::NEG_INFINITY; n];
        for &d in &grid {
            rows.discount = vec![d; n];
            let p = scorer.probabilities(&rows).unwrap();
            for r in 0..n {
                assert!(
                    p[r] >= prev[r],
                    "seed {seed} row {r} discount {d}: {} < {}",
                    p[r],
                    prev[r]
                );
                prev[r] = p[r];
            }
        }
    }
}

/// The validation AUC of the epoch training kept.
fn kept_auc(t: &Trained) -> f64 {
    t.reports[t.best_epoch - 1]
        .valid_auc
        .expect("both classes in validation")
}

/// The AUC of the true probabilities on the validation rows of a split with `seed`.
fn bayes_auc(keys: &SplitKeys, seed: u64, truth: &[f64], labels: &[f32]) -> f64 {
    let (_, valid) = flashsql_gpu::train::split(keys, 0.2, seed);
    let mut scored: Vec<(f64, f64)> = valid
        .iter()
        .map(|&r| (truth[r], f64::from(labels[r])))
        .collect();
    auc(&mut scored).unwrap()
}

fn options(seed: u64) -> TrainOptions {
    TrainOptions {
        epochs: 12,
        batch_size: 256,
        learning_rate: 1e-2,
        seed,
        device: DeviceChoice::Cpu,
        ..TrainOptions::default()
    }
}

/// Same seed and rows, in any order: the same weights, bit for bit. Validation AUC comes within 0.02 of
/// the Bayes-optimal AUC (the true probabilities on the same rows), and the ablation without
/// the sequence encoder, which cannot see the latent type, scores clearly lower.
#[test]
fn training_is_reproducible_and_learns_the_latent_type() {
    let (rows, labels, users, truth) = world(1500, 6, 3);
    let keys = SplitKeys::User(users);
    let cats = category_vocabulary(&[1, 2, 3]);
    let cfg = config(cats, true);
    let mut seen = Vec::new();
    let a = train(cfg.clone(), &rows, &labels, &keys, &options(7), &mut |r| {
        seen.push(r.epoch);
        Ok(())
    })
    .unwrap();
    // The same rows in reverse order, as a parallel query might return them.
    let rev = |v: &[f32]| -> Vec<f32> { v.iter().rev().copied().collect() };
    let reversed = Rows {
        sequences: rows.sequences.clone(),
        sequence_hashes: Vec::new(),
        seq_of_row: rows.seq_of_row.iter().rev().copied().collect(),
        category: rows.category.iter().rev().copied().collect(),
        price: rev(&rows.price),
        discount: rev(&rows.discount),
        time_left: rev(&rows.time_left),
        hour: rev(&rows.hour),
        features: Vec::new(),
        category_bucket: rows.category_bucket.iter().rev().copied().collect(),
    };
    let SplitKeys::User(users) = &keys else {
        unreachable!()
    };
    let reversed_keys = SplitKeys::User(users.iter().rev().copied().collect());
    let b = train(
        cfg.clone(),
        &reversed,
        &rev(&labels),
        &reversed_keys,
        &options(7),
        &mut |_| Ok(()),
    )
    .unwrap();
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_eq!(seen, (1..=a.reports.len()).collect::<Vec<_>>());
    let wa = a.model.named_tensors().unwrap();
    let wb = b.model.named_tensors().unwrap();
    for ((na, ta), (nb, tb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        let (va, vb) = (
            ta.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            tb.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert!(
            va.iter().zip(&vb).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{na} differs"
        );
    }
    let bayes = bayes_auc(&keys, 7, &truth, &labels);
    let best = kept_auc(&a);
    assert!(best > bayes - 0.02, "model AUC {best} vs Bayes {bayes}");

    let blind = train(
        config(category_vocabulary(&[1, 2, 3]), false),
        &rows,
        &labels,
        &keys,
        &options(7),
        &mut |_| Ok(()),
    )
    .unwrap();
    let blind_auc = kept_auc(&blind);
    eprintln!(
        "valid AUC {best:.4}, Bayes {bayes:.4}, without sequences {blind_auc:.4}; epochs {}",
        a.reports.len()
    );
    assert!(
        best > blind_auc + 0.03,
        "with sequences {best}, without {blind_auc}"
    );

    // An error from the epoch callback stops training (a cancelled query).
    let stopped = train(cfg, &rows, &labels, &keys, &options(7), &mut |_| {
        Err(GpuError::Data("cancelled".into()))
    });
    assert!(matches!(stopped, Err(GpuError::Data(m)) if m == "cancelled"));
}

fn manifest(name: &str, config: PurchaseConfig) -> Manifest {
    Manifest {
        name: name.into(),
        version: 0,
        kind: "purchase".into(),
        created_at_us: 0,
        config,
        metrics: Metrics {
            valid_auc: Some(0.7),
            valid_logloss: 0.5,
            uncalibrated_logloss: None,
            candidates: Vec::new(),
        },
        seed: 1,
        device: "cpu".into(),
        training_seconds: 0.0,
        data_fingerprint: "0".into(),
        train_rows: 1,
        valid_rows: 1,
        split: "user".into(),
        best_epoch: 1,
        epochs: Vec::new(),
        importance: Vec::new(),
        encoder_from: None,
    }
}

/// Versions count up; `name` is the latest and `name@N` a pinned one; a loaded model scores
/// as the one saved; unknown names list the known ones; drop removes versions.
#[test]
fn the_store_versions_models() {
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path().join("models")).unwrap();
    let (rows, _, _, _) = world(20, 3, 4);
    let m1 = PurchaseModel::seeded(config(vec![1, 2, 3], true), 1, &Device::Cpu).unwrap();
    let m2 = PurchaseModel::seeded(config(vec![1, 2, 3], true), 2, &Device::Cpu).unwrap();
    let r1 = store.reserve("churn").unwrap();
    let r2 = store.reserve("churn").unwrap();
    assert_eq!((r1.version, r2.version), (1, 2));
    // A version being written is not listed, and an abandoned reservation leaves nothing.
    assert!(store.resolve("churn").is_err());
    drop(store.reserve("churn").unwrap());
    assert_eq!(
        store
            .save(
                r1,
                manifest("churn", m1.config().clone()),
                &m1.clone().into()
            )
            .unwrap(),
        1
    );
    assert_eq!(
        store
            .save(
                r2,
                manifest("churn", m2.config().clone()),
                &m2.clone().into()
            )
            .unwrap(),
        2
    );
    assert_eq!(
        std::fs::read_dir(dir.path().join("models/churn"))
            .unwrap()
            .count(),
        2
    );
    assert_eq!(store.resolve("churn").unwrap(), ("churn".into(), 2));
    assert_eq!(store.resolve("CHURN@1").unwrap(), ("churn".into(), 1));
    let want = Scorer::new(&m1).unwrap().probabilities(&rows).unwrap();
    // A second store on the same directory (a restarted server) loads from disk.
    let reopened = ModelStore::open(dir.path().join("models")).unwrap();
    let got = reopened
        .load("churn@1")
        .unwrap()
        .scorer
        .probabilities(&rows)
        .unwrap();
    assert_eq!(want, got);
    assert!(std::sync::Arc::ptr_eq(
        &reopened.load("churn@1").unwrap(),
        &reopened.load("churn@1").unwrap()
    ));
    match reopened.load("chrun") {
        Err(e @ GpuError::UnknownModel { .. }) => {
            let msg = e.to_string();
            assert!(msg.contains("churn@1, churn@2"), "{msg}");
        }
        other => panic!("expected an unknown model, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(
        store.resolve("churn@3"),
        Err(GpuError::UnknownModel { .. })
    ));
    assert!(matches!(
        store.resolve("../etc"),
        Err(GpuError::InvalidName(_))
    ));
    assert_eq!(store.list().len(), 2);
    assert_eq!(store.drop_model("churn", Some(2)).unwrap(), vec![2]);
    assert_eq!(store.resolve("churn").unwrap().1, 1);
    assert_eq!(store.drop_model("churn", None).unwrap(), vec![1]);
    assert!(store.list().is_empty());
    assert!(store.drop_model("churn", None).is_err());
}

/// A propensity model: the latent type from the sequence (factored embeddings) and a numeric
/// feature on a raw scale far from 0 (so standardisation matters). The frozen scorer equals
/// the tensor path; trained, it comes within 0.02 of the Bayes AUC, and each input carries
/// signal the other lacks.
#[test]
fn propensity_model_fuses_sequence_and_features() {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let mut rows = Rows::default();
    let (mut labels, mut users, mut truth) = (Vec::new(), Vec::new(), Vec::new());
    for u in 0..4000 {
        let kind = rng.random_bool(0.5);
        let n = rng.random_range(3..=LEN);
        let seq = typed_sequence(&mut rng, kind, n);
        pad_sequence(&seq, LEN, &mut rows.sequences);
        let x: f32 = 500.0 + 100.0 * rng.random_range(-1.0..1.0f32);
        let logit = -1.0 + if kind { 1.5 } else { -0.5 } + 2.0 * f64::from((x - 500.0) / 100.0);
        let p = 1.0 / (1.0 + (-logit).exp());
        rows.seq_of_row.push(u);
        rows.features.push(x);
        labels.push(f32::from(u8::from(rng.random_bool(p))));
        users.push(i64::from(u));
        truth.push(p);
    }
    let cfg = |use_sequence: bool, features: bool| {
        let mut c = config(Vec::new(), use_sequence);
        c.kind = ModelKind::Propensity;
        c.encoder.factor_buckets = Some(8);
        if features {
            c.features = vec![Scale::of(rows.features.iter().map(|&x| f64::from(x)))];
        }
        c
    };
    // A calibration is part of both paths.
    let model = PurchaseModel::seeded(cfg(true, true), 5, &Device::Cpu)
        .unwrap()
        .with_calibration(Some(Platt { a: 0.7, b: -0.2 }));
    let all: Vec<usize> = (0..rows.len()).collect();
    let logits = model
        .logits(&rows, &all, &Device::Cpu)
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let probs = Scorer::new(&model).unwrap().probabilities(&rows).unwrap();
    for (l, p) in logits.iter().zip(&probs) {
        assert!((sigmoid(*l) - p).abs() < 1e-5, "{} vs {p}", sigmoid(*l));
    }

    let keys = SplitKeys::User(users);
    let fit = |c: PurchaseConfig, rows: &Rows| {
        train(c, rows, &labels, &keys, &options(3), &mut |_| Ok(())).unwrap()
    };
    let trained = fit(cfg(true, true), &rows);
    let both = kept_auc(&trained);
    let sequence_only = kept_auc(&fit(
        cfg(true, false),
        &Rows {
            features: Vec::new(),
            ..rows.clone()
        },
    ));
    let feature_only = kept_auc(&fit(cfg(false, true), &rows));
    let bayes = bayes_auc(&keys, 3, &truth, &labels);
    let (_, valid) = flashsql_gpu::train::split(&keys, 0.2, 3);
    eprintln!(
        "propensity AUC {both:.4} (Bayes {bayes:.4}), sequence only {sequence_only:.4}, feature only {feature_only:.4}"
    );
    assert!(both > bayes - 0.02, "model AUC {both} vs Bayes {bayes}");
    assert!(both > sequence_only + 0.03 && both > feature_only + 0.03);

    // Platt calibration is the maximum-likelihood (a, b) on the validation rows, so there
    // the mean probability equals the share of positives (the intercept's score equation).
    let (before, after) = trained.calibrated.expect("calibrated");
    assert!(after <= before);
    let valid_rows = Rows {
        sequences: rows.sequences.clone(),
        seq_of_row: valid.iter().map(|&r| rows.seq_of_row[r]).collect(),
        features: valid.iter().map(|&r| rows.features[r]).collect(),
        ..Rows::default()
    };
    let p = Scorer::new(&trained.model)
        .unwrap()
        .probabilities(&valid_rows)
        .unwrap();
    let mean_p = p.iter().sum::<f64>() / p.len() as f64;
    let share = valid.iter().map(|&r| f64::from(labels[r])).sum::<f64>() / valid.len() as f64;
    assert!((mean_p - share).abs() < 1e-4, "mean p {mean_p} vs {share}");
}

/// The tabular kinds on the two-type world: each learns the types from the sequence counts
/// (validation AUC well above chance), never buys less at a deeper discount, and scores the
/// same after a round trip through the store and a reopened store.
#[test]
fn tabular_kinds_learn_store_and_stay_monotone() {
    use flashsql_gpu::learner::Learned;
    use flashsql_gpu::tabular::{SequenceCounts, TabularLearner, TabularSpec};
    let (rows, labels, users, _) = world(400, 6, 11);
    let keys = SplitKeys::User(users);
    let opts = TrainOptions {
        calibrate: false,
        seed: 3,
        ..TrainOptions::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let store = ModelStore::open(dir.path().join("models")).unwrap();
    for learner in [TabularLearner::Logistic, TabularLearner::Gbdt] {
        let config = PurchaseConfig {
            tabular: Some(TabularSpec {
                learner,
                counts: Some(SequenceCounts {
                    layout: TokenLayout {
                        category_buckets: 8,
                        events: 2,
                        purchase: 1,
                    },
                    gaps: 4,
                    events: vec!["a".into(), "b".into()],
                    horizons: vec!["h0".into(), "h1".into()],
                }),
            }),
            ..config(vec![1, 2, 3], true)
        };
        let trained: Trained<Learned> = match learner {
            TabularLearner::Logistic => flashsql_gpu::logistic::train(
                config,
                &rows,
                &labels,
                &keys,
                &opts,
                None,
                &mut |_| Ok(()),
            )
            .unwrap()
            .map(Learned::Logistic),
            TabularLearner::Gbdt => flashsql_gpu::gbdt::train(
                config,
                &rows,
                &labels,
                &keys,
                &opts,
                &flashsql_gpu::gbdt::GbdtParams {
                    trees: 200,
                    max_depth: 3,
                    ..Default::default()
                },
                &mut |_| Ok(()),
            )
            .unwrap()
            .map(Learned::Gbdt),
        };
        let auc = trained.kept().valid_auc.unwrap();
        assert!(auc > 0.75, "{learner:?}: validation AUC {auc}");
        assert!(
            trained
                .importance
                .iter()
                .any(|i| i.measure == "permutation")
        );
        let want = flashsql_gpu::learner::ModelScorer::new(&trained.model)
            .unwrap()
            .logits(&rows)
            .unwrap();
        let name = format!("tab_{}", learner.name());
        let r = store.reserve(&name).unwrap();
        store
            .save(
                r,
                manifest(&name, trained.model.config().clone()),
                &trained.model,
            )
            .unwrap();
        let reopened = ModelStore::open(dir.path().join("models")).unwrap();
        let loaded = reopened.load(&name).unwrap();
        assert_eq!(loaded.scorer.logits(&rows).unwrap(), want);
        let at = |d: f32| {
            let mut r = rows.clone();
            r.discount = vec![d; r.len()];
            loaded.scorer.probabilities(&r).unwrap()
        };
        let (low, high) = (at(0.0), at(0.5));
        assert!(low.iter().zip(&high).all(|(a, b)| a <= b), "{learner:?}");
    }
}
