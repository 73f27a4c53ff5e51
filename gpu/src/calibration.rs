//! Post-hoc Platt calibration: `p = σ(a·z + b)` on a trained model's logit z, with (a, b)
//! fitted by maximum likelihood on the validation rows.
//!
//! A network stopped early on validation loss still tends to be over- or under-confident;
//! two parameters fix most of that without touching the ranking (AUC is unchanged). `a` is
//! kept positive, so a purchase model's logit stays non-decreasing in the discount.

use serde::{Deserialize, Serialize};

/// The fitted map from a model's logit to a calibrated logit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Platt {
    pub a: f32,
    pub b: f32,
}

impl Platt {
    pub fn apply(&self, z: f64) -> f64 {
        f64::from(self.a) * z + f64::from(self.b)
    }

    /// Maximum-likelihood (a, b) for labels `y` (0/1) given logits `z`: Newton's method on
    /// the two-parameter logistic log-likelihood, with step halving so the loss never rises.
    /// `None` when the data cannot support a positive slope (one class only, or logits that
    /// rank the labels backwards) — the model is then left uncalibrated.
    pub fn fit(z: &[f64], y: &[f32]) -> Option<Platt> {
        let positives = y.iter().filter(|&&v| v > 0.5).count();
        if z.len() != y.len() || positives == 0 || positives == y.len() {
            return None;
        }
        let loss = |a: f64, b: f64| -> f64 {
            z.iter()
                .zip(y)
                .map(|(&z, &y)| {
                    let s = a * z + b;
                    s.max(0.0) - s * f64::from(y) + (-s.abs()).exp().ln_1p()
                })
                .sum::<f64>()
        };
        let (mut a, mut b) = (1.0f64, 0.0f64);
        let mut current = loss(a, b);
        for _ in 0..100 {
            // Gradient and Hessian of the summed log loss in (a, b).
            let (mut ga, mut gb, mut haa, mut hab, mut hbb) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for (&z, &y) in z.iter().zip(y) {
                let p = 1.0 / (1.0 + (-(a * z + b)).exp());
                let r = p - f64::from(y);
                let w = (p * (1.0 - p)).max(1e-12);
                ga += r * z;
                gb += r;
                haa += w * z * z;
                hab += w * z;
                hbb += w;
            }
            let det = haa * hbb - hab * hab;
            if det.abs() < 1e-12 {
                break;
            }
            let (da, db) = ((hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det);
            let mut step = 1.0;
            let mut moved = false;
            while step > 1e-6 {
                let (na, nb) = (a - step * da, b - step * db);
                let l = loss(na, nb);
                if l <= current {
                    moved = current - l > 1e-12 * current.max(1.0);
                    (a, b, current) = (na, nb, l);
                    break;
                }
                step /= 2.0;
            }
            if !moved {
                break;
            }
        }
        (a > 0.0 && a.is_finite() && b.is_finite()).then_some(Platt {
            a: a as f32,
            b: b as f32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic data: z_i = −4 + 8·i/n, labels from a fixed pattern that makes the
    /// positive rate rise with z. Reference values from scikit-learn 1.9.1,
    /// `LogisticRegression(C=1e12, tol=1e-12, max_iter=10000).fit(z[:, None], y)`; agreement
    /// to 1e-4.
    #[test]
    fn fit_matches_scikit_learn() {
        let n = 1000;
        let z: Vec<f64> = (0..n).map(|i| -4.0 + 8.0 * i as f64 / n as f64).collect();
        let y: Vec<f32> = (0..n)
            .map(|i| {
                let threshold = (i * 10 / n) as u64; // 0..9, rising with z
                f32::from(u8::from((i as u64 * 7919) % 11 < threshold + 1))
            })
            .collect();
        let p = Platt::fit(&z, &y).unwrap();
        let (a_ref, b_ref) = (REF_A, REF_B);
        assert!(
            (f64::from(p.a) - a_ref).abs() < 1e-4,
            "a {} vs {a_ref}",
            p.a
        );
        assert!(
            (f64::from(p.b) - b_ref).abs() < 1e-4,
            "b {} vs {b_ref}",
            p.b
        );
    }

    const REF_A: f64 = 0.549_327_767_332_615_6;
    const REF_B: f64 = 0.002_197_311_247_192_599_3;

    #[test]
    fn no_fit_without_both_classes_or_with_a_reversed_ranking() {
        let z = [-1.0, 0.0, 1.0, 2.0];
        assert_eq!(Platt::fit(&z, &[0.0; 4]), None);
        assert_eq!(Platt::fit(&z, &[1.0, 1.0, 0.0, 0.0]), None);
        let p = Platt::fit(&z, &[0.0, 1.0, 0.0, 1.0]).unwrap();
        assert!(p.a > 0.0);
    }
}
