//! Metrics the training loop reports and the SQL aggregates compute: one implementation
//! serves both, so `valid_auc` from `train_model` and `auc(...)` in SQL cannot disagree.

/// ROC AUC by average ranks (ties count half); `None` when a class is missing.
pub fn auc(pairs: &mut [(f64, f64)]) -> Option<f64> {
    pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let positives: f64 = pairs.iter().map(|p| p.1).sum();
    let negatives = pairs.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return None;
    }
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < pairs.len() {
        let mut j = i;
        while j < pairs.len() && pairs[j].0 == pairs[i].0 {
            j += 1;
        }
        // Ranks i+1 … j share their average.
        let avg_rank = (i + 1 + j) as f64 / 2.0;
        let pos: f64 = pairs[i..j].iter().map(|p| p.1).sum();
        rank_sum += avg_rank * pos;
        i = j;
    }
    Some((rank_sum - positives * (positives + 1.0) / 2.0) / (positives * negatives))
}

/// The log loss of one probability, clipped to [ε, 1 − ε] with ε the f64 machine epsilon as
/// scikit-learn (≥ 1.5) clips float64 input.
pub fn log_loss_term(label: f64, p: f64) -> f64 {
    let p = p.clamp(f64::EPSILON, 1.0 - f64::EPSILON);
    -(label * p.ln() + (1.0 - label) * (1.0 - p).ln())
}

/// Mean [`log_loss_term`] of probabilities.
pub fn log_loss(labels: &[f32], probs: &[f64]) -> f64 {
    let total: f64 = labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| log_loss_term(f64::from(y), p))
        .sum();
    total / labels.len().max(1) as f64
}

/// Mean binary cross-entropy of logits, relu(z) − z·y + ln(1 + e^−|z|): exact for any
/// logit, where the log loss of a probability saturates at the clipping.
pub fn bce_with_logits(labels: &[f32], logits: &[f64]) -> f64 {
    let total: f64 = labels
        .iter()
        .zip(logits)
        .map(|(&y, &z)| z.max(0.0) - z * f64::from(y) + (-z.abs()).exp().ln_1p())
        .sum();
    total / labels.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// AUC against its definition, counted over all (positive, negative) pairs (tolerance
    /// 1e-12), on seeded data with many ties.
    #[test]
    fn auc_equals_pair_counting() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut pairs: Vec<(f64, f64)> = (0..800)
            .map(|_| {
                let y = f64::from(rng.random_bool(0.3));
                ((rng.random_range(0..20) as f64 + y * 3.0) / 10.0, y)
            })
            .collect();
        let (mut wins, mut n) = (0.0, 0.0);
        for &(sp, yp) in &pairs {
            for &(sn, yn) in &pairs {
                if yp == 1.0 && yn == 0.0 {
                    n += 1.0;
                    wins += if sp > sn {
                        1.0
                    } else if sp == sn {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        let got = auc(&mut pairs).unwrap();
        assert!((got - wins / n).abs() < 1e-12, "{got} vs {}", wins / n);
        assert_eq!(auc(&mut [(0.3, 1.0), (0.5, 1.0)]), None);
    }

    /// The logit form equals the log loss of the probabilities away from saturation.
    #[test]
    fn bce_of_logits_equals_log_loss_of_probabilities() {
        let labels = [1.0f32, 0.0, 1.0, 0.0];
        let logits = [2.0, -1.5, -0.3, 4.0];
        let probs: Vec<f64> = logits
            .iter()
            .map(|z: &f64| 1.0 / (1.0 + (-z).exp()))
            .collect();
        let (a, b) = (bce_with_logits(&labels, &logits), log_loss(&labels, &probs));
        assert!((a - b).abs() < 1e-12, "{a} vs {b}");
    }
}
