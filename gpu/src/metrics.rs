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

/// Mean binary cross-entropy of probabilities, clipped to [1e-15, 1 − 1e-15] as
/// scikit-learn's `log_loss` does.
pub fn log_loss(labels: &[f32], probs: &[f64]) -> f64 {
    let eps = 1e-15;
    let total: f64 = labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| {
            let p = p.clamp(eps, 1.0 - eps);
            -(f64::from(y) * p.ln() + (1.0 - f64::from(y)) * (1.0 - p).ln())
        })
        .sum();
    total / labels.len().max(1) as f64
}
