//! Beta–Bernoulli posteriors over purchase probabilities, one per (item, level), and the
//! seeded random streams every simulation and Thompson step draws from.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Beta, Distribution};

/// Purchase probability of one offer level: Beta(α, β), starting from the prior and counting
/// purchases (α) and offers without one (β).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BetaArm {
    pub alpha: f64,
    pub beta: f64,
}

impl BetaArm {
    /// The uniform prior Beta(1, 1).
    pub const UNIFORM: BetaArm = BetaArm {
        alpha: 1.0,
        beta: 1.0,
    };

    /// The posterior after `shown` offers with `sold` purchases.
    pub fn observed(prior: BetaArm, shown: f64, sold: f64) -> BetaArm {
        BetaArm {
            alpha: prior.alpha + sold,
            beta: prior.beta + (shown - sold),
        }
    }

    pub fn update(&mut self, bought: bool) {
        if bought {
            self.alpha += 1.0;
        } else {
            self.beta += 1.0;
        }
    }

    pub fn mean(&self) -> f64 {
        self.alpha / (self.alpha + self.beta)
    }

    pub fn sample(&self, rng: &mut impl Rng) -> f64 {
        // α, β ≥ 1 here by construction (prior ≥ 0 plus counts), so the distribution exists;
        // fall back to the mean rather than panic if a caller passes something degenerate.
        match Beta::new(self.alpha, self.beta) {
            Ok(b) => b.sample(rng),
            Err(_) => self.mean(),
        }
    }
}

/// An independent, reproducible stream for (seed, purpose, index): results do not depend on
/// thread count or on the order in which trials or items are processed.
pub fn stream(seed: u64, purpose: u64, index: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ purpose.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(index);
    rng
}
