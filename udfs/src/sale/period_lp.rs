//! The per-period LP of revenue management with one capacity (Ferreira, Simchi-Levi & Wang
//! 2018): offer level k with probability x_k to maximise Σ r_k·x_k subject to
//! Σ q_k·x_k ≤ c (expected demand within the capacity for this period) and Σ x_k ≤ 1 (the
//! rest of the time the item is held back). With two constraints a basic optimum has at most
//! two levels in use, so enumerating single levels and pairs that meet the capacity exactly
//! finds the optimum in O(K²) without a general LP solver.

/// A randomised offer: up to two levels and their probabilities (summing to ≤ 1; the rest
/// is "hold back"), with the LP value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    pub levels: [(usize, f64); 2],
    pub len: usize,
    pub value: f64,
}

impl Mix {
    pub const HOLD: Mix = Mix {
        levels: [(0, 0.0); 2],
        len: 0,
        value: 0.0,
    };

    pub fn levels(&self) -> &[(usize, f64)] {
        &self.levels[..self.len]
    }

    /// Σ_k f(k)·x_k over the levels in use.
    pub fn expect(&self, f: impl Fn(usize) -> f64) -> f64 {
        self.levels().iter().map(|&(k, x)| f(k) * x).sum()
    }

    /// Draws the level to offer from a uniform `u` in [0, 1); `None` means hold back.
    pub fn draw(&self, u: f64) -> Option<usize> {
        draw(self.levels(), u).map(|(k, _)| k)
    }
}

/// Draws from offer probabilities `(level, x)` with a uniform `u` in [0, 1): the level and
/// its probability, or `None` (hold back) once `u` passes their sum.
pub fn draw(levels: &[(usize, f64)], u: f64) -> Option<(usize, f64)> {
    let mut acc = 0.0;
    levels.iter().copied().find(|&(_, x)| {
        acc += x;
        u < acc
    })
}

/// The LP optimum for rewards `r`, demands `q` (both per level, `q ≥ 0`) and capacity `c ≥ 0`.
/// Ties go to the single level, then the lowest level index, so the answer is deterministic.
pub fn best_mix(r: &[f64], q: &[f64], c: f64) -> Mix {
    let mut best = Mix::HOLD;
    let mut consider = |m: Mix| {
        if m.value > best.value + 1e-15 * m.value.abs() {
            best = m;
        }
    };
    for k in 0..r.len() {
        if r[k] <= 0.0 {
            continue;
        }
        let x = if q[k] <= c { 1.0 } else { c / q[k] };
        consider(Mix {
            levels: [(k, x), (0, 0.0)],
            len: 1,
            value: r[k] * x,
        });
    }
    // Pairs meeting both constraints with equality: q_j < c < q_k.
    for j in 0..r.len() {
        if q[j] >= c {
            continue;
        }
        for k in 0..r.len() {
            if q[k] <= c || (r[j] <= 0.0 && r[k] <= 0.0) {
                continue;
            }
            let xk = (c - q[j]) / (q[k] - q[j]);
            let xj = 1.0 - xk;
            consider(Mix {
                levels: [
                    (j.min(k), if j < k { xj } else { xk }),
                    (j.max(k), if j < k { xk } else { xj }),
                ],
                len: 2,
                value: r[j] * xj + r[k] * xk,
            });
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ferreira et al.'s single-product example: prices 29.9 / 34.9 / 39.9 / 44.9 with purchase
    /// probabilities 0.8 / 0.6 / 0.3 / 0.1. At capacity 0.25 the optimum mixes 39.9 (¾) and
    /// 44.9 (¼): 0.75·11.97 + 0.25·4.49 = 10.10; at 0.5, 34.9 (⅔) and 39.9 (⅓): 17.95. Checked
    /// by hand and against a grid over all mixes.
    #[test]
    fn ferreira_single_product_lp() {
        let p = [29.9, 34.9, 39.9, 44.9];
        let q = [0.8, 0.6, 0.3, 0.1];
        let r: Vec<f64> = p.iter().zip(&q).map(|(p, q)| p * q).collect();
        let m = best_mix(&r, &q, 0.25);
        assert!((m.value - 10.1).abs() < 1e-12, "{m:?}");
        assert_eq!(m.levels(), &[(2, 0.75), (3, 0.25)]);
        // Capacity 0.5: between 0.6 (34.9) and 0.3 (39.9): x = 2/3 at 34.9.
        let m = best_mix(&r, &q, 0.5);
        let want = 20.94 * (2.0 / 3.0) + 11.97 / 3.0;
        assert!((m.value - want).abs() < 1e-12, "{m:?} vs {want}");
        // Unconstrained (capacity 1): the best single price, 29.9.
        let m = best_mix(&r, &q, 1.0);
        assert_eq!(m.levels(), &[(0, 1.0)]);
        // Grid search over (x0..x3) in steps of 0.02 never beats the enumeration.
        let steps = 50;
        let mut grid_best = 0.0f64;
        for a in 0..=steps {
            for b in 0..=steps - a {
                for c in 0..=steps - a - b {
                    for d in 0..=steps - a - b - c {
                        let x = [a, b, c, d].map(|v| v as f64 / steps as f64);
                        let demand: f64 = x.iter().zip(&q).map(|(x, q)| x * q).sum();
                        if demand <= 0.25 + 1e-12 {
                            let v: f64 = x.iter().zip(&r).map(|(x, r)| x * r).sum();
                            grid_best = grid_best.max(v);
                        }
                    }
                }
            }
        }
        assert!(grid_best <= 10.1 + 1e-9 && grid_best > 10.0, "{grid_best}");
    }

    #[test]
    fn draws_follow_the_mix() {
        let m = Mix {
            levels: [(1, 0.25), (3, 0.5)],
            len: 2,
            value: 0.0,
        };
        assert_eq!(m.draw(0.1), Some(1));
        assert_eq!(m.draw(0.3), Some(3));
        assert_eq!(m.draw(0.8), None);
        assert_eq!(best_mix(&[-1.0, 0.0], &[0.5, 0.5], 1.0), Mix::HOLD);
    }
}
