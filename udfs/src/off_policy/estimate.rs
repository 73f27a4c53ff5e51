//! The off-policy estimators on running moments, so that one pass over the logs (and an
//! exact merge of partitions) gives the estimate, its standard error and the weight
//! diagnostics.
//!
//! Every estimator is a mean of per-round values, as the Open Bandit Pipeline defines them
//! (`obp.ope.estimators`), with w = π_e(a|x) / π_b(a|x) the importance weight of the logged
//! action, r its reward, q̂ = q̂(x, a) a model's reward for it and v̂ = Σ_a' π_e(a'|x) q̂(x, a')
//! the model's value of the target policy at x:
//!
//! | estimator | per-round value | option |
//! |---|---|---|
//! | IPS | min(w, clip) · r | `clip` (obp's `lambda_`) |
//! | SNIPS | w · r / mean(w) | — |
//! | DM | v̂ | — |
//! | DR | v̂ + min(w, clip) · (r − q̂) | `clip` |
//! | Switch-DR | v̂ + 1[w ≤ threshold] · w · (r − q̂) | `threshold` (obp's `lambda_`) |
//!
//! The standard error is the sample standard deviation (ddof = 1) of the per-round values
//! over √n, except for SNIPS, a ratio of means, whose error is the delta method's
//! √(Σ uᵢ² / (n(n − 1))) / mean(w) with uᵢ = wᵢ(rᵢ − V̂). Intervals are normal: V̂ ± z·se
//! (obp reports a percentile bootstrap instead; the normal interval needs no resampling and
//! is what the coverage test checks).

use crate::experiments::moments::{Moments, WIDTH};
use crate::experiments::stats::Estimate;

/// The estimators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Estimator {
    Ips,
    Snips,
    Dm,
    Dr,
    SwitchDr,
}

/// One logged round, as the estimators read it. `estimated_reward` and `estimated_value`
/// are 0 for the estimators that take no model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Round {
    pub reward: f64,
    pub propensity: f64,
    pub target_propensity: f64,
    pub estimated_reward: f64,
    pub estimated_value: f64,
}

/// Numbers in a serialised partial state: the moments, the rows clipped or switched, the
/// largest weight.
pub const STATE_WIDTH: usize = WIDTH + 2;

/// The running state of one estimator over one group.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct OpeState {
    /// y = the per-round value (w·r for SNIPS), x = the weight as the estimator uses it:
    /// clipped for IPS and DR, raw for SNIPS and Switch-DR (which switches, not clips).
    moments: Moments,
    /// Rows whose weight was clipped (IPS, DR) or switched to the model (Switch-DR).
    limited: f64,
    max_weight: f64,
}

/// What an estimator reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpeResult {
    pub estimate: f64,
    pub se: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub n: f64,
    /// Kish's effective sample size of the weights, (Σw)² / Σw²: how many rows of the
    /// target policy the reweighted log is worth. NaN for DM.
    pub effective_sample_size: f64,
    /// Near 1 when the propensities are right and the target's support is covered.
    pub mean_weight: f64,
    pub max_weight: f64,
    pub limited: f64,
}

impl Estimator {
    /// Whether the estimator reads importance weights (all but DM).
    pub fn weighted(self) -> bool {
        self != Estimator::Dm
    }

    /// Whether it reads a reward model (DM, DR, Switch-DR).
    pub fn modelled(self) -> bool {
        matches!(self, Estimator::Dm | Estimator::Dr | Estimator::SwitchDr)
    }
}

impl OpeState {
    /// Adds one round; `limit` is the clip (IPS, DR) or the switch threshold (Switch-DR),
    /// ∞ when not given.
    pub fn push(&mut self, estimator: Estimator, round: &Round, limit: f64) {
        let raw = if estimator.weighted() {
            round.target_propensity / round.propensity
        } else {
            0.0
        };
        self.max_weight = self.max_weight.max(raw);
        let residual = round.reward - round.estimated_reward;
        let (y, w) = match estimator {
            Estimator::Ips | Estimator::Dr => {
                let w = raw.min(limit);
                if raw > limit {
                    self.limited += 1.0;
                }
                let y = if estimator == Estimator::Ips {
                    w * round.reward
                } else {
                    round.estimated_value + w * residual
                };
                (y, w)
            }
            Estimator::Snips => (raw * round.reward, raw),
            Estimator::Dm => (round.estimated_value, 0.0),
            Estimator::SwitchDr => {
                let kept = raw <= limit;
                if !kept {
                    self.limited += 1.0;
                }
                let correction = if kept { raw * residual } else { 0.0 };
                (round.estimated_value + correction, raw)
            }
        };
        self.moments.push(y, w);
    }

    pub fn merge(&mut self, other: &OpeState) {
        self.moments.merge(&other.moments);
        self.limited += other.limited;
        self.max_weight = self.max_weight.max(other.max_weight);
    }

    pub fn is_empty(&self) -> bool {
        self.moments.n == 0.0
    }

    pub fn to_array(self) -> [f64; STATE_WIDTH] {
        let mut out = [0.0; STATE_WIDTH];
        out[..WIDTH].copy_from_slice(&self.moments.to_array());
        out[WIDTH] = self.limited;
        out[WIDTH + 1] = self.max_weight;
        out
    }

    /// The state serialised by [`OpeState::to_array`]; `None` when the slice is short.
    pub fn from_slice(v: &[f64]) -> Option<OpeState> {
        (v.len() >= STATE_WIDTH).then(|| OpeState {
            moments: Moments::from_slice(&v[..WIDTH]),
            limited: v[WIDTH],
            max_weight: v[WIDTH + 1],
        })
    }

    /// The estimate with its 1 − α normal interval; undefined parts are NaN (NULL in SQL).
    pub fn result(&self, estimator: Estimator, alpha: f64) -> OpeResult {
        let m = &self.moments;
        let n = m.n;
        let (estimate, se) = if estimator == Estimator::Snips {
            let v = m.mean_y / m.mean_x;
            let spread = (m.m2_y - 2.0 * v * m.c_xy + v * v * m.m2_x).max(0.0);
            let se = if n > 1.0 {
                (spread / (n * (n - 1.0))).sqrt() / m.mean_x
            } else {
                f64::NAN
            };
            (v, se)
        } else {
            (m.mean_y, (m.variance_y() / n).sqrt())
        };
        let e = Estimate::new(estimate, se, None, alpha);
        // No spread (a constant per-round value): the interval is the point itself.
        let (ci_low, ci_high) = if se == 0.0 {
            (estimate, estimate)
        } else {
            (e.ci_low, e.ci_high)
        };
        let weighted = estimator.weighted();
        let sum_squares = m.m2_x + n * m.mean_x * m.mean_x;
        let nan = f64::NAN;
        OpeResult {
            estimate,
            se,
            ci_low,
            ci_high,
            n,
            effective_sample_size: if weighted && sum_squares > 0.0 {
                n * n * m.mean_x * m.mean_x / sum_squares
            } else {
                nan
            },
            mean_weight: if weighted { m.mean_x } else { nan },
            max_weight: if weighted { self.max_weight } else { nan },
            limited: if weighted { self.limited } else { nan },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rounds() -> Vec<Round> {
        (0..500)
            .map(|i| {
                let f = i as f64;
                Round {
                    reward: ((f * 0.37).sin() > 0.3) as u8 as f64,
                    propensity: 0.05 + 0.9 * (0.5 + 0.5 * (f * 0.11).cos()),
                    target_propensity: 0.5 + 0.5 * (f * 0.07).sin(),
                    estimated_reward: 0.3 + 0.1 * (f * 0.05).cos(),
                    estimated_value: 0.35 + 0.05 * (f * 0.03).sin(),
                }
            })
            .collect()
    }

    /// The estimates equal the obp formulas written out over the rows, partitions merge
    /// exactly, and the standard errors equal the textbook ones (tolerance 1e-12 relative).
    #[test]
    fn estimates_match_the_formulas_and_merge() {
        let rows = rounds();
        let n = rows.len() as f64;
        let w: Vec<f64> = rows
            .iter()
            .map(|r| r.target_propensity / r.propensity)
            .collect();
        let clip = 3.0;
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let sd_mean = |v: &[f64]| {
            let m = mean(v);
            (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt()
        };
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-12 * b.abs().max(1e-300);
        let per_round = |e: Estimator, limit: f64| -> Vec<f64> {
            rows.iter()
                .zip(&w)
                .map(|(r, &w)| match e {
                    Estimator::Ips => w.min(limit) * r.reward,
                    Estimator::Snips => w * r.reward,
                    Estimator::Dm => r.estimated_value,
                    Estimator::Dr => {
                        r.estimated_value + w.min(limit) * (r.reward - r.estimated_reward)
                    }
                    Estimator::SwitchDr => {
                        r.estimated_value
                            + if w <= limit {
                                w * (r.reward - r.estimated_reward)
                            } else {
                                0.0
                            }
                    }
                })
                .collect()
        };
        for (e, limit) in [
            (Estimator::Ips, f64::INFINITY),
            (Estimator::Ips, clip),
            (Estimator::Dm, f64::INFINITY),
            (Estimator::Dr, clip),
            (Estimator::SwitchDr, clip),
        ] {
            let mut one = OpeState::default();
            let mut parts = [OpeState::default(); 3];
            for (i, r) in rows.iter().enumerate() {
                one.push(e, r, limit);
                parts[i % 3].push(e, r, limit);
            }
            let mut merged = OpeState::default();
            parts.iter().for_each(|p| merged.merge(p));
            let values = per_round(e, limit);
            for state in [one, merged] {
                let got = state.result(e, 0.05);
                assert!(close(got.estimate, mean(&values)), "{e:?} {got:?}");
                assert!(close(got.se, sd_mean(&values)), "{e:?} {got:?}");
                let half = 1.959963984540054 * got.se;
                assert!(close(got.ci_high - got.estimate, half), "{e:?}");
            }
        }
        let mut s = OpeState::default();
        rows.iter()
            .for_each(|r| s.push(Estimator::Snips, r, f64::INFINITY));
        let got = s.result(Estimator::Snips, 0.05);
        let wr = per_round(Estimator::Snips, f64::INFINITY);
        let v = wr.iter().sum::<f64>() / w.iter().sum::<f64>();
        assert!(close(got.estimate, v));
        let u2: f64 = rows
            .iter()
            .zip(&w)
            .map(|(r, w)| (w * (r.reward - v)).powi(2))
            .sum();
        assert!(close(got.se, (u2 / (n * (n - 1.0))).sqrt() / mean(&w)));
        let ess = w.iter().sum::<f64>().powi(2) / w.iter().map(|x| x * x).sum::<f64>();
        assert!(close(got.effective_sample_size, ess));
        assert!(got.effective_sample_size < n);
    }

    /// Clipping counts the rows it clips, and a uniform target over a uniform log has
    /// weights of exactly 1 (an effective sample size of n).
    #[test]
    fn diagnostics() {
        let rows = rounds();
        let mut s = OpeState::default();
        rows.iter().for_each(|r| s.push(Estimator::Ips, r, 3.0));
        let expected = rows
            .iter()
            .filter(|r| r.target_propensity / r.propensity > 3.0)
            .count() as f64;
        let got = s.result(Estimator::Ips, 0.05);
        assert_eq!(got.limited, expected);
        assert!(expected > 0.0);
        let mut u = OpeState::default();
        for r in &rows {
            let same = Round {
                target_propensity: 0.25,
                propensity: 0.25,
                ..*r
            };
            u.push(Estimator::Ips, &same, f64::INFINITY);
        }
        let got = u.result(Estimator::Ips, 0.05);
        assert_eq!(got.mean_weight, 1.0);
        assert!((got.effective_sample_size - rows.len() as f64).abs() < 1e-9);
        assert_eq!(got.limited, 0.0);
    }
}
