//! Properties of the generated world: determinism, integrity, ranges, calibration of the
//! logged outcomes against the ground truth, and information in the behaviour sequences.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use datafusion::arrow::array::{
    Array, AsArray, BooleanArray, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{Float64Type, Int32Type, Int64Type};
use flashsql_datasets::generate::{HISTORY_DAYS, HISTORY_START_US, policy_probabilities};
use flashsql_datasets::world::DISCOUNT_LEVELS;
use flashsql_datasets::{Dataset, Scale, generate};

fn tiny() -> &'static Dataset {
    static D: OnceLock<Dataset> = OnceLock::new();
    D.get_or_init(|| generate(Scale::Tiny, 7).expect("tiny world"))
}

fn small() -> &'static Dataset {
    static D: OnceLock<Dataset> = OnceLock::new();
    D.get_or_init(|| generate(Scale::Small, 11).expect("small world"))
}

fn i64_col(d: &Dataset, schema: &str, table: &str, col: &str) -> Vec<Option<i64>> {
    let t = d.table(schema, table).expect("table");
    t.batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column_by_name(col)
                .expect("column")
                .as_primitive::<Int64Type>();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn f64_col(d: &Dataset, schema: &str, table: &str, col: &str) -> Vec<f64> {
    let t = d.table(schema, table).expect("table");
    t.batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(col)
                .expect("column")
                .as_primitive::<Float64Type>()
                .values()
                .to_vec()
        })
        .collect()
}

fn str_col(d: &Dataset, schema: &str, table: &str, col: &str) -> Vec<String> {
    let t = d.table(schema, table).expect("table");
    t.batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column_by_name(col)
                .expect("column")
                .as_any()
                .downcast_ref::<StringArray>()
                .expect("utf8")
                .clone();
            (0..a.len()).map(move |i| a.value(i).to_string())
        })
        .collect()
}

fn ts_col(d: &Dataset, schema: &str, table: &str, col: &str) -> Vec<i64> {
    let t = d.table(schema, table).expect("table");
    t.batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(col)
                .expect("column")
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("timestamp")
                .values()
                .to_vec()
        })
        .collect()
}

#[test]
fn same_seed_gives_identical_data_and_another_seed_does_not() {
    let a = tiny();
    let b = generate(Scale::Tiny, 7).expect("tiny world");
    assert_eq!(a.tables.len(), b.tables.len());
    for (x, y) in a.tables.iter().zip(&b.tables) {
        assert_eq!((x.schema, x.name), (y.schema, y.name));
        assert_eq!(x.batches, y.batches, "{}.{} differs", x.schema, x.name);
    }
    let c = generate(Scale::Tiny, 8).expect("tiny world");
    assert_ne!(
        a.table("public", "events").unwrap().batches,
        c.table("public", "events").unwrap().batches
    );
}

#[test]
fn tiny_and_small_have_the_documented_sizes() {
    let t = tiny();
    let rows = |d: &Dataset, n: &str| d.table("public", n).unwrap().num_rows();
    assert_eq!(rows(t, "users"), 1_000);
    assert_eq!(rows(t, "items"), 100);
    assert!(rows(t, "events") <= 100_000, "{}", rows(t, "events"));
    assert!(rows(t, "events") >= 20_000, "{}", rows(t, "events"));
    let s = small();
    assert_eq!(rows(s, "users"), 20_000);
    assert_eq!(rows(s, "items"), 1_000);
    let ev = rows(s, "events");
    assert!(
        (1_000_000..=3_000_000).contains(&ev),
        "small has {ev} events"
    );
}

#[test]
fn references_resolve() {
    for d in [tiny(), small()] {
        let users: HashSet<i64> = i64_col(d, "public", "users", "user_id")
            .into_iter()
            .flatten()
            .collect();
        let items: HashSet<i64> = i64_col(d, "public", "items", "item_id")
            .into_iter()
            .flatten()
            .collect();
        let campaigns: HashSet<(i64, i64)> = i64_col(d, "public", "campaigns", "campaign_id")
            .into_iter()
            .flatten()
            .zip(
                i64_col(d, "public", "campaigns", "item_id")
                    .into_iter()
                    .flatten(),
            )
            .collect();
        for u in i64_col(d, "public", "events", "user_id") {
            assert!(users.contains(&u.unwrap()));
        }
        for i in i64_col(d, "public", "events", "item_id")
            .into_iter()
            .flatten()
        {
            assert!(items.contains(&i));
        }
        let ev_c = i64_col(d, "public", "events", "campaign_id");
        let ev_i = i64_col(d, "public", "events", "item_id");
        for (c, i) in ev_c.iter().zip(&ev_i) {
            if let Some(c) = c {
                assert!(campaigns.contains(&(*c, i.unwrap())));
            }
        }
        let ex_u = i64_col(d, "public", "exposures", "user_id");
        let ex_i = i64_col(d, "public", "exposures", "item_id");
        let ex_c = i64_col(d, "public", "exposures", "campaign_id");
        for ((u, i), c) in ex_u.iter().zip(&ex_i).zip(&ex_c) {
            assert!(users.contains(&u.unwrap()));
            assert!(campaigns.contains(&(c.unwrap(), i.unwrap())));
        }
        // Every logged purchase in a sale is an exposure's outcome and vice versa.
        let bought = d
            .table("public", "exposures")
            .unwrap()
            .batches
            .iter()
            .fold(0, |n, b| {
                n + b
                    .column_by_name("purchased")
                    .unwrap()
                    .as_any()
                    .downcast_ref::<BooleanArray>()
                    .unwrap()
                    .true_count()
            });
        let kinds = str_col(d, "public", "events", "event_type");
        let sale_purchases = kinds
            .iter()
            .zip(&ev_c)
            .filter(|(k, c)| k.as_str() == "purchase" && c.is_some())
            .count();
        assert_eq!(bought, sale_purchases);
        // Units sold per campaign item equal purchases and never exceed the allotment's budget.
        let sold: i64 = i64_col(d, "public", "campaigns", "units_sold")
            .into_iter()
            .flatten()
            .sum();
        assert_eq!(sold as usize, bought);
    }
}

#[test]
fn values_are_in_range() {
    let d = small();
    let start = HISTORY_START_US;
    let end = HISTORY_START_US + HISTORY_DAYS * 86_400_000_000;
    for ts in ts_col(d, "public", "events", "ts") {
        assert!((start..end + 3_600_000_000).contains(&ts), "{ts}");
    }
    let kinds: HashSet<String> = str_col(d, "public", "events", "event_type")
        .into_iter()
        .collect();
    let expected: HashSet<String> = ["view", "search", "cart", "fav", "purchase"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert_eq!(kinds, expected);
    for (p, c) in f64_col(d, "public", "items", "base_price")
        .iter()
        .zip(f64_col(d, "public", "items", "unit_cost"))
    {
        assert!(*p > 0.0 && c > 0.0 && c < *p);
    }
    for x in f64_col(d, "public", "exposures", "discount") {
        assert!(DISCOUNT_LEVELS.contains(&x));
    }
    for x in f64_col(d, "public", "exposures", "propensity") {
        assert!(x > 0.0 && x <= 1.0);
    }
    for x in f64_col(d, "public", "exposures", "time_left") {
        assert!(x > 0.0 && x <= 1.0);
    }
    let segments: HashSet<String> = str_col(d, "public", "users", "segment")
        .into_iter()
        .collect();
    assert!(segments.len() == 4, "{segments:?}");
}

#[test]
fn logging_policy_probabilities_sum_to_one() {
    for seg in 0..4 {
        for k in 1..=DISCOUNT_LEVELS.len() {
            let p = policy_probabilities(seg, &DISCOUNT_LEVELS[..k]);
            let s: f64 = p.iter().sum();
            assert!((s - 1.0).abs() < 1e-12);
            assert!(p.iter().all(|&x| x >= 0.2 / k as f64 - 1e-12));
        }
    }
}

/// Logged outcomes agree with the true probabilities: in each decile of the true probability
/// the purchase rate is within 4 standard errors of the mean true probability, and the
/// Hosmer–Lemeshow statistic over the ten bins is below the χ²(10) 0.999 quantile (29.59).
#[test]
fn purchases_are_calibrated_to_the_truth() {
    let d = small();
    let p = f64_col(d, "truth", "exposures", "true_prob");
    let y: Vec<bool> = d
        .table("public", "exposures")
        .unwrap()
        .batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("purchased")
                .unwrap()
                .as_any()
                .downcast_ref::<BooleanArray>()
                .unwrap()
                .iter()
                .map(|v| v.unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(p.len(), y.len());
    assert!(p.len() > 50_000, "{} exposures", p.len());
    let mut idx: Vec<usize> = (0..p.len()).collect();
    idx.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut hl = 0.0;
    for bin in idx.chunks(idx.len().div_ceil(10)) {
        let n = bin.len() as f64;
        let expected: f64 = bin.iter().map(|&i| p[i]).sum();
        let observed = bin.iter().filter(|&&i| y[i]).count() as f64;
        let var: f64 = bin.iter().map(|&i| p[i] * (1.0 - p[i])).sum();
        assert!(
            (observed - expected).abs() <= 4.0 * var.sqrt() + 1.0,
            "bin of {n}: observed {observed}, expected {expected:.1}"
        );
        hl += (observed - expected).powi(2) / var.max(1e-9);
    }
    assert!(hl < 29.59, "Hosmer–Lemeshow {hl:.2}");
    // The response increases with discount: the logged purchase rate at the deepest discount
    // is higher than at none.
    let disc = f64_col(d, "public", "exposures", "discount");
    let rate = |lvl: f64| {
        let sel: Vec<usize> = (0..disc.len()).filter(|&i| disc[i] == lvl).collect();
        sel.iter().filter(|&&i| y[i]).count() as f64 / sel.len() as f64
    };
    assert!(
        rate(0.5) > rate(0.0) + 0.05,
        "{} vs {}",
        rate(0.5),
        rate(0.0)
    );
}

/// Nearest-centroid classification of the latent type from simple statistics of each user's
/// behaviour sequence (event mix, time of day, category concentration, session length),
/// trained on half of the users and scored on the other half, beats the majority class by a
/// clear margin.
#[test]
fn sequences_carry_the_latent_type() {
    let d = small();
    let truth = d.table("truth", "users").unwrap();
    let types: Vec<i32> = truth
        .batches
        .iter()
        .flat_map(|b| {
            b.column_by_name("type_id")
                .unwrap()
                .as_primitive::<Int32Type>()
                .values()
                .to_vec()
        })
        .collect();
    let n_users = types.len();
    let users = i64_col(d, "public", "events", "user_id");
    let kinds = str_col(d, "public", "events", "event_type");
    let cats = i64_col(d, "public", "events", "category_id");
    let ts = ts_col(d, "public", "events", "ts");
    const F: usize = 10;
    let mut feats = vec![[0.0f64; F]; n_users];
    let mut counts = vec![0.0f64; n_users];
    let mut cat_counts: Vec<HashMap<i64, f64>> = vec![HashMap::new(); n_users];
    let mut last_ts = vec![i64::MIN; n_users];
    let mut sessions = vec![0.0f64; n_users];
    for i in 0..users.len() {
        let u = users[i].unwrap() as usize - 1;
        let k = ["view", "search", "cart", "fav", "purchase"]
            .iter()
            .position(|x| *x == kinds[i])
            .unwrap();
        feats[u][k] += 1.0;
        let hour = (ts[i].rem_euclid(86_400_000_000)) as f64 / 3.6e9;
        let a = 2.0 * std::f64::consts::PI * hour / 24.0;
        feats[u][5] += a.cos();
        feats[u][6] += a.sin();
        *cat_counts[u].entry(cats[i].unwrap()).or_default() += 1.0;
        if ts[i].saturating_sub(last_ts[u]) > 1_800_000_000 {
            sessions[u] += 1.0;
        }
        last_ts[u] = ts[i];
        counts[u] += 1.0;
    }
    let mut rows = Vec::new();
    for u in 0..n_users {
        if counts[u] < 5.0 {
            continue;
        }
        let mut f = feats[u];
        for v in f.iter_mut().take(7) {
            *v /= counts[u];
        }
        let mut c: Vec<f64> = cat_counts[u].values().copied().collect();
        c.sort_by(|a, b| b.total_cmp(a));
        f[7] = c.iter().take(2).sum::<f64>() / counts[u];
        f[8] = counts[u] / sessions[u].max(1.0);
        f[9] = counts[u].ln();
        rows.push((u, f));
    }
    let (train, test): (Vec<_>, Vec<_>) = rows.iter().partition(|(u, _)| u % 2 == 0);
    let mut mean = [0.0; F];
    let mut sd = [0.0; F];
    for (_, f) in &train {
        for j in 0..F {
            mean[j] += f[j] / train.len() as f64;
        }
    }
    for (_, f) in &train {
        for j in 0..F {
            sd[j] += (f[j] - mean[j]).powi(2) / train.len() as f64;
        }
    }
    let z = |f: &[f64; F]| -> [f64; F] {
        let mut o = [0.0; F];
        for j in 0..F {
            o[j] = (f[j] - mean[j]) / sd[j].sqrt().max(1e-9);
        }
        o
    };
    let mut centroid = [[0.0f64; F]; 4];
    let mut n = [0.0f64; 4];
    for (u, f) in &train {
        let t = types[*u] as usize;
        let zf = z(f);
        for j in 0..F {
            centroid[t][j] += zf[j];
        }
        n[t] += 1.0;
    }
    for (c, count) in centroid.iter_mut().zip(&n) {
        for v in c.iter_mut() {
            *v /= count.max(1.0);
        }
    }
    let correct = test
        .iter()
        .filter(|(u, f)| {
            let zf = z(f);
            let best = (0..4)
                .min_by(|&a, &b| {
                    let da: f64 = (0..F).map(|j| (zf[j] - centroid[a][j]).powi(2)).sum();
                    let db: f64 = (0..F).map(|j| (zf[j] - centroid[b][j]).powi(2)).sum();
                    da.total_cmp(&db)
                })
                .unwrap();
            best == types[*u] as usize
        })
        .count();
    let acc = correct as f64 / test.len() as f64;
    let majority = (0..4)
        .map(|t| test.iter().filter(|(u, _)| types[*u] == t).count())
        .max()
        .unwrap() as f64
        / test.len() as f64;
    eprintln!("latent type accuracy {acc:.3} (majority class {majority:.3})");
    assert!(
        acc > majority + 0.25,
        "type accuracy {acc:.3} vs majority {majority:.3}"
    );
}

#[test]
fn unknown_scale_is_a_clear_error() {
    let e = "huge".parse::<Scale>().unwrap_err().to_string();
    assert!(e.contains("tiny, small, medium, large"), "{e}");
}
