//! Coverage of the off-policy intervals where the truth is known: the synthetic world's
//! exposures (the default `small` world: 64,574) are logged again 200 times (seeded) by the world's own logging policy, the
//! purchase drawn from the world's true probability, and each log estimates the value of a
//! fixed target discount plan; the 95 % intervals of IPS, SNIPS and DR must cover the plan's
//! true value in about 95 % of the logs.

use std::collections::HashMap;

use flashsql_datasets::generate::{SEGMENTS, policy_probabilities};
use flashsql_datasets::world::{DISCOUNT_LEVELS, sigmoid};
use flashsql_datasets::{Dataset, Scale, generate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::estimate::{Estimator, OpeState, Round};
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int64Type};

/// One logged offer: what the logging policy could choose, and the true purchase logit
/// at discount 0 and its slope in the discount (the world's response is linear in it).
struct Context {
    levels: Vec<f64>,
    probs: Vec<f64>,
    logit0: f64,
    beta: f64,
    segment: usize,
}

fn column<'a>(d: &'a Dataset, schema: &str, table: &str, col: &str) -> Vec<&'a dyn Array> {
    d.table(schema, table)
        .expect("table")
        .batches
        .iter()
        .map(|b| b.column_by_name(col).expect("column").as_ref())
        .collect()
}

fn f64s(d: &Dataset, schema: &str, table: &str, col: &str) -> Vec<f64> {
    column(d, schema, table, col)
        .into_iter()
        .flat_map(|a| a.as_primitive::<Float64Type>().values().to_vec())
        .collect()
}

fn i64s(d: &Dataset, schema: &str, table: &str, col: &str) -> Vec<i64> {
    column(d, schema, table, col)
        .into_iter()
        .flat_map(|a| a.as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

fn contexts(d: &Dataset) -> Vec<Context> {
    let segments: Vec<usize> = column(d, "public", "users", "segment")
        .into_iter()
        .flat_map(|a| {
            let s = a.as_string::<i32>();
            (0..s.len())
                .map(|i| {
                    SEGMENTS
                        .iter()
                        .position(|&n| n == s.value(i))
                        .expect("segment")
                })
                .collect::<Vec<_>>()
        })
        .collect();
    let segment_of: HashMap<i64, usize> = i64s(d, "public", "users", "user_id")
        .into_iter()
        .zip(segments)
        .collect();
    let beta_of: HashMap<i64, f64> = i64s(d, "truth", "users", "user_id")
        .into_iter()
        .zip(f64s(d, "truth", "users", "discount_sensitivity"))
        .collect();
    let max_discount: HashMap<(i64, i64), f64> = i64s(d, "public", "campaigns", "campaign_id")
        .into_iter()
        .zip(i64s(d, "public", "campaigns", "item_id"))
        .zip(f64s(d, "public", "campaigns", "discount"))
        .collect();
    let users = i64s(d, "public", "exposures", "user_id");
    let campaigns = i64s(d, "public", "exposures", "campaign_id");
    let items = i64s(d, "public", "exposures", "item_id");
    let discounts = f64s(d, "public", "exposures", "discount");
    let true_probs = f64s(d, "truth", "exposures", "true_prob");
    (0..users.len())
        .map(|i| {
            let (segment, beta) = (segment_of[&users[i]], beta_of[&users[i]]);
            let max = max_discount[&(campaigns[i], items[i])];
            let levels: Vec<f64> = DISCOUNT_LEVELS
                .iter()
                .copied()
                .filter(|&l| l <= max + 1e-12)
                .collect();
            let probs = policy_probabilities(segment, &levels);
            let p = true_probs[i];
            Context {
                levels,
                probs,
                logit0: (p / (1.0 - p)).ln() - beta * discounts[i],
                beta,
                segment,
            }
        })
        .collect()
}

/// The target plan: 20 % for new and dormant users, 5 % for active and VIP ones (every
/// campaign allows at least 20 %).
fn target(c: &Context) -> f64 {
    if matches!(SEGMENTS[c.segment], "new" | "dormant") {
        0.2
    } else {
        0.05
    }
}

#[test]
fn intervals_cover_the_true_value_of_a_plan() {
    let world = generate(Scale::Small, 42).expect("small world");
    let contexts = contexts(&world);
    let n = contexts.len();
    assert!(n > 50_000, "{n} exposures");
    let truth = contexts
        .iter()
        .map(|c| sigmoid(c.logit0 + c.beta * target(c)))
        .sum::<f64>()
        / n as f64;
    let estimators = [Estimator::Ips, Estimator::Snips, Estimator::Dr];
    let mut covered = [0usize; 3];

    let runs = 200;
    for seed in 0..runs {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        // (level index, propensity, reward) per context
        let log: Vec<(f64, f64, f64)> = contexts
            .iter()
            .map(|c| {
                let mut u = rng.random::<f64>();
                let mut k = 0;
                while k + 1 < c.probs.len() && u >= c.probs[k] {
                    u -= c.probs[k];
                    k += 1;
                }
                let d = c.levels[k];
                let bought = rng.random::<f64>() < sigmoid(c.logit0 + c.beta * d);
                (d, c.probs[k], bought as u8 as f64)
            })
            .collect();
        // The reward model: the log's purchase rate at each discount level (misspecified:
        // it ignores who was shown the offer).
        let level = |d: f64| {
            DISCOUNT_LEVELS
                .iter()
                .position(|&l| (l - d).abs() < 1e-12)
                .expect("a world discount level")
        };
        let mut tally = [(0.0, 0.0); DISCOUNT_LEVELS.len()];
        for &(d, _, reward) in &log {
            let t = &mut tally[level(d)];
            *t = (t.0 + reward, t.1 + 1.0);
        }
        let q = |d: f64| {
            let (sum, count) = tally[level(d)];
            if count > 0.0 { sum / count } else { 0.0 }
        };
        for (e, hits) in estimators.iter().zip(covered.iter_mut()) {
            let mut state = OpeState::default();
            for (c, &(d, propensity, reward)) in contexts.iter().zip(&log) {
                let t = target(c);
                let round = Round {
                    reward,
                    propensity,
                    target_propensity: ((d - t).abs() < 1e-12) as u8 as f64,
                    estimated_reward: q(d),
                    estimated_value: q(t),
                };
                state.push(*e, &round, f64::INFINITY);
            }
            let r = state.result(*e, 0.05);
            if r.ci_low <= truth && truth <= r.ci_high {
                *hits += 1;
            }
        }
    }
    let shares: Vec<f64> = covered.iter().map(|&h| h as f64 / runs as f64).collect();
    println!(
        "true value {truth:.5} over {n} exposures; 95 % interval coverage in {runs} logs: \
         IPS {:.3}, SNIPS {:.3}, DR {:.3}",
        shares[0], shares[1], shares[2]
    );
    // 200 runs: the share's standard error at 0.95 is 0.015; three of them either side.
    for (e, s) in estimators.iter().zip(&shares) {
        assert!((0.90..=0.995).contains(s), "{e:?} covers {s}");
    }
}
