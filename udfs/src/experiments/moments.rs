//! Running moments of a value and a covariate, per variant, merged exactly.
//!
//! Means and centred sums of squares and products are updated one row at a time (Welford)
//! and combined across partitions with Chan et al.'s formulas, so that a variance computed
//! from millions of large values (spend in cents, revenue) does not lose its digits to the
//! cancellation that Σy² − (Σy)²/n suffers.

use super::stats::Summary;

/// Moments of (y, x): `x` is the covariate of CUPED and 0 where there is none.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Moments {
    pub n: f64,
    pub mean_y: f64,
    pub mean_x: f64,
    /// Σ (y − ȳ)²
    pub m2_y: f64,
    /// Σ (x − x̄)²
    pub m2_x: f64,
    /// Σ (y − ȳ)(x − x̄)
    pub c_xy: f64,
}

/// Numbers per variant in a serialised partial state.
pub const WIDTH: usize = 6;

impl Moments {
    pub fn push(&mut self, y: f64, x: f64) {
        self.n += 1.0;
        let dy = y - self.mean_y;
        let dx = x - self.mean_x;
        self.mean_y += dy / self.n;
        self.mean_x += dx / self.n;
        self.m2_y += dy * (y - self.mean_y);
        self.m2_x += dx * (x - self.mean_x);
        self.c_xy += dx * (y - self.mean_y);
    }

    pub fn merge(&mut self, o: &Moments) {
        if o.n == 0.0 {
            return;
        }
        if self.n == 0.0 {
            *self = *o;
            return;
        }
        let n = self.n + o.n;
        let dy = o.mean_y - self.mean_y;
        let dx = o.mean_x - self.mean_x;
        let w = self.n * o.n / n;
        self.m2_y += o.m2_y + dy * dy * w;
        self.m2_x += o.m2_x + dx * dx * w;
        self.c_xy += o.c_xy + dx * dy * w;
        self.mean_y += dy * o.n / n;
        self.mean_x += dx * o.n / n;
        self.n = n;
    }

    pub fn to_array(self) -> [f64; WIDTH] {
        [
            self.n,
            self.mean_y,
            self.mean_x,
            self.m2_y,
            self.m2_x,
            self.c_xy,
        ]
    }

    pub fn from_slice(v: &[f64]) -> Moments {
        Moments {
            n: v[0],
            mean_y: v[1],
            mean_x: v[2],
            m2_y: v[3],
            m2_x: v[4],
            c_xy: v[5],
        }
    }

    /// Sample variance of y (ddof = 1); NaN below two rows.
    pub fn variance_y(&self) -> f64 {
        if self.n > 1.0 {
            self.m2_y / (self.n - 1.0)
        } else {
            f64::NAN
        }
    }

    /// Count, mean and sample variance of y.
    pub fn summary(&self) -> Summary {
        Summary {
            n: self.n,
            mean: self.mean_y,
            variance: self.variance_y(),
        }
    }

    /// CUPED's θ = cov(y, x) / var(x): NaN when x does not vary.
    pub fn theta(&self) -> f64 {
        if self.m2_x > 0.0 {
            self.c_xy / self.m2_x
        } else {
            f64::NAN
        }
    }

    /// The summary of y − θ·(x − centre): the mean moves by θ·(x̄ − centre) and the
    /// variance becomes var(y) − 2θ·cov(y, x) + θ²·var(x).
    pub fn adjusted(&self, theta: f64, centre: f64) -> Summary {
        let variance = if self.n > 1.0 {
            ((self.m2_y - 2.0 * theta * self.c_xy + theta * theta * self.m2_x) / (self.n - 1.0))
                .max(0.0)
        } else {
            f64::NAN
        };
        Summary {
            n: self.n,
            mean: self.mean_y - theta * (self.mean_x - centre),
            variance,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Merged partial moments equal the moments of all rows at once (to rounding), and
    /// large offsets keep their variance (the naive sums would lose it entirely).
    #[test]
    fn merging_equals_one_pass_and_keeps_digits() {
        let rows: Vec<(f64, f64)> = (0..1000)
            .map(|i| {
                let i = i as f64;
                (
                    1e6 + (i * 0.37).sin(),
                    5e5 + (i * 0.11).cos() + 0.3 * (i * 0.37).sin(),
                )
            })
            .collect();
        let mut all = Moments::default();
        rows.iter().for_each(|&(y, x)| all.push(y, x));
        let mut parts = [Moments::default(); 3];
        for (i, &(y, x)) in rows.iter().enumerate() {
            parts[i % 3].push(y, x);
        }
        let mut merged = Moments::default();
        parts.iter().for_each(|p| merged.merge(p));
        for (a, b) in merged.to_array().iter().zip(all.to_array()) {
            assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
        }
        // The sample variance of sin(0.37 i), i < 1000, is about 0.5.
        assert!(
            (all.variance_y() - 0.5).abs() < 0.02,
            "{}",
            all.variance_y()
        );
    }
}
