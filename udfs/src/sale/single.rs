//! One product, K prices, one Bernoulli customer per period (Ferreira, Simchi-Levi & Wang
//! 2018, §5): the seller does not know the purchase probabilities and learns them while the
//! inventory runs down.

use rand::Rng;

use super::period_lp::best_mix;
use super::posterior::BetaArm;

/// Prices (after discount) and the true purchase probability at each.
#[derive(Debug, Clone, PartialEq)]
pub struct SingleProduct {
    pub prices: Vec<f64>,
    pub probs: Vec<f64>,
}

impl SingleProduct {
    /// The paper's example: 29.9 / 34.9 / 39.9 / 44.9 bought with probability
    /// 0.8 / 0.6 / 0.3 / 0.1.
    pub fn ferreira() -> SingleProduct {
        SingleProduct {
            prices: vec![29.9, 34.9, 39.9, 44.9],
            probs: vec![0.8, 0.6, 0.3, 0.1],
        }
    }

    /// The LP upper bound on expected revenue: T times the per-period LP at capacity I/T.
    pub fn lp_bound(&self, horizon: usize, inventory: u64) -> f64 {
        let r: Vec<f64> = self
            .prices
            .iter()
            .zip(&self.probs)
            .map(|(p, q)| p * q)
            .collect();
        horizon as f64 * best_mix(&r, &self.probs, inventory as f64 / horizon as f64).value
    }
}

/// How the seller picks the price each period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SinglePolicy {
    /// Always the same level.
    Fixed(usize),
    /// Myopic: the level with the best posterior-mean revenue, no exploration, inventory-blind.
    Greedy,
    /// Thompson sampling, LP with the initial capacity I/T every period.
    TsFixed,
    /// Thompson sampling, LP with the remaining capacity I_t/(T − t).
    TsUpdate,
    /// Thompson sampling that ignores inventory: the best sampled revenue.
    TsBlind,
    /// Knows the probabilities and re-solves the LP with the remaining capacity.
    Clairvoyant,
}

/// What one policy earned over one sale.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Outcome {
    pub revenue: f64,
    pub units: u64,
}

/// Runs `policy` against the customers' uniforms `u` (customer t buys at level k iff
/// `u[t] < probs[k]`: the same customers for every policy), drawing its own randomness from
/// `rng`.
pub fn run(
    sc: &SingleProduct,
    policy: SinglePolicy,
    inventory: u64,
    u: &[f64],
    rng: &mut impl Rng,
) -> Outcome {
    let k = sc.prices.len();
    let horizon = u.len();
    let mut arms = vec![BetaArm::UNIFORM; k];
    let mut theta = vec![0.0; k];
    let mut rewards = vec![0.0; k];
    let true_rewards: Vec<f64> = sc
        .prices
        .iter()
        .zip(&sc.probs)
        .map(|(p, q)| p * q)
        .collect();
    let mut left = inventory;
    let mut out = Outcome::default();
    for (t, &customer) in u.iter().enumerate() {
        if left == 0 {
            break;
        }
        let remaining_capacity = left as f64 / (horizon - t) as f64;
        let level = match policy {
            SinglePolicy::Fixed(level) => Some(level.min(k - 1)),
            SinglePolicy::Clairvoyant => {
                best_mix(&true_rewards, &sc.probs, remaining_capacity).draw(rng.random())
            }
            SinglePolicy::Greedy => argmax(k, |j| sc.prices[j] * arms[j].mean()),
            SinglePolicy::TsBlind | SinglePolicy::TsFixed | SinglePolicy::TsUpdate => {
                for j in 0..k {
                    theta[j] = arms[j].sample(rng);
                    rewards[j] = sc.prices[j] * theta[j];
                }
                match policy {
                    SinglePolicy::TsBlind => argmax(k, |j| rewards[j]),
                    SinglePolicy::TsFixed => {
                        let c = inventory as f64 / horizon as f64;
                        best_mix(&rewards, &theta, c).draw(rng.random())
                    }
                    _ => best_mix(&rewards, &theta, remaining_capacity).draw(rng.random()),
                }
            }
        };
        let Some(level) = level else {
            continue; // held back this period
        };
        let bought = customer < sc.probs[level];
        arms[level].update(bought);
        if bought {
            out.revenue += sc.prices[level];
            out.units += 1;
            left -= 1;
        }
    }
    out
}

/// The first index with the largest score.
fn argmax(k: usize, score: impl Fn(usize) -> f64) -> Option<usize> {
    (0..k).fold(None, |best: Option<usize>, j| match best {
        Some(b) if score(b) >= score(j) => Some(b),
        _ => Some(j),
    })
}
