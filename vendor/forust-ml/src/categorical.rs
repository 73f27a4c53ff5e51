//! Categorical features: splits that send a set of categories left.
//!
//! A categorical feature holds non-negative whole numbers (category codes); each distinct
//! code gets a bin of its own, so bin `b > 0` is the code `cuts[b - 1]`. A split sends a set
//! of categories left, found as LightGBM does for many categories: at a node, the
//! categories with enough rows are ordered by their gradient per hessian (smoothed) and
//! each prefix of that order, from either end, is tried as the left set — for log and
//! squared loss the best two-group partition lies on that order (Fisher 1958), found in one
//! pass where an ordinal split could only cut the codes' numbering. LightGBM's guards
//! against fitting noise come with it: rare categories are never chosen, the left set
//! holds at most 32 categories, each step of the scan adds at least 100 rows, and these
//! splits take a larger L2 penalty. Codes never seen at a node, and rare ones, go right.

use crate::errors::ForustError;
use crate::histogram::Bin;
use serde::{Deserialize, Serialize};
#[cfg(test)]
use std::collections::HashSet;

/// Added to a category's hessian when ordering categories, so that those with little
/// hessian sit near the middle of the order; also the fewest rows a category needs to be
/// chosen (LightGBM's `cat_smooth`, 10).
pub const CATEGORY_SMOOTHING: f32 = 10.0;

/// Added to the L2 penalty for splits on categorical features (LightGBM's `cat_l2`, 10).
pub const CATEGORY_L2: f32 = 10.0;

/// The most categories a split sends left (LightGBM's `max_cat_threshold`, 32).
pub const MAX_CATEGORIES_LEFT: usize = 32;

/// The fewest rows each step of the scan adds to the left set, and the fewest the right
/// side keeps (LightGBM's `min_data_per_group`, 100).
pub const MIN_ROWS_PER_GROUP: f32 = 100.0;

/// The largest category code a categorical feature may hold.
pub const MAX_CATEGORY: f64 = 65_532.0;

/// The categories a split sends left, as a bitset over their codes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct CategorySet {
    words: Vec<u64>,
}

impl CategorySet {
    /// The set of `codes` (whole numbers, at most [`MAX_CATEGORY`]).
    pub fn from_codes(codes: impl IntoIterator<Item = u32>) -> Self {
        let mut words = Vec::new();
        for c in codes {
            let (w, b) = (c as usize / 64, c % 64);
            if words.len() <= w {
                words.resize(w + 1, 0);
            }
            words[w] |= 1u64 << b;
        }
        CategorySet { words }
    }

    /// Whether `v` is one of the set's codes (a value that is no code is not).
    #[inline]
    pub fn contains(&self, v: f64) -> bool {
        if !(0.0..=MAX_CATEGORY).contains(&v) || v.fract() != 0.0 {
            return false;
        }
        let c = v as usize;
        self.words
            .get(c / 64)
            .is_some_and(|w| w & (1u64 << (c % 64)) != 0)
    }

    /// The set's codes, ascending.
    pub fn codes(&self) -> Vec<u32> {
        let mut out = Vec::new();
        for (w, word) in self.words.iter().enumerate() {
            for b in 0..64 {
                if word & (1u64 << b) != 0 {
                    out.push((w * 64 + b) as u32);
                }
            }
        }
        out
    }

    /// Which bins of a feature with `cuts` (one bin per code) go left; bin 0, missing, is
    /// decided by the node's missing direction instead and is `false` here.
    pub fn bins_left(&self, cuts: &[f64]) -> Vec<bool> {
        let mut out = vec![false; cuts.len() + 1];
        for (b, c) in cuts.iter().enumerate() {
            out[b + 1] = self.contains(*c);
        }
        out
    }
}

/// Checks that column `col` of `values` holds category codes (missing values aside).
pub fn check_codes(col: usize, values: &[f64], missing: &f64) -> Result<(), ForustError> {
    let code = |v: &f64| v.fract() == 0.0 && (0.0..=MAX_CATEGORY).contains(v);
    match values
        .iter()
        .find(|v| !crate::utils::is_missing(v, missing) && !code(v))
    {
        Some(v) => Err(ForustError::InvalidParameter(
            format!("categorical feature {col}"),
            format!("whole numbers from 0 to {MAX_CATEGORY}"),
            v.to_string(),
        )),
        None => Ok(()),
    }
}

/// The category bins a split may send left, in the order they are tried: those with at
/// least [`CATEGORY_SMOOTHING`] rows, ascending by gradient per (smoothed) hessian, ties by
/// bin. Rows are estimated from hessians as LightGBM does: `rows_per_hessian` is the
/// node's rows over its hessian sum.
pub(crate) fn ordered_bins(histogram: &[Bin<f32>], rows_per_hessian: f32) -> Vec<usize> {
    let ratio = |b: &Bin<f32>| b.gradient_sum / (b.hessian_sum + CATEGORY_SMOOTHING);
    let mut bins: Vec<usize> = (1..histogram.len())
        .filter(|&b| (histogram[b].hessian_sum * rows_per_hessian).round() >= CATEGORY_SMOOTHING)
        .collect();
    bins.sort_by(|&a, &b| {
        ratio(&histogram[a])
            .total_cmp(&ratio(&histogram[b]))
            .then(a.cmp(&b))
    });
    bins
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets_hold_their_codes_and_nothing_else() {
        let s = CategorySet::from_codes([0, 3, 64, 200]);
        assert_eq!(s.codes(), vec![0, 3, 64, 200]);
        for v in [0.0, 3.0, 64.0, 200.0] {
            assert!(s.contains(v));
        }
        for v in [1.0, 2.5, -3.0, 63.0, 65.0, 201.0, 1e9, f64::NAN] {
            assert!(!s.contains(v), "{v}");
        }
        assert_eq!(
            s.bins_left(&[0.0, 1.0, 3.0, 64.0, f64::MAX]),
            vec![false, true, false, true, true, false]
        );
    }

    #[test]
    fn codes_must_be_whole_and_in_range() {
        assert!(check_codes(0, &[0.0, 5.0, f64::NAN], &f64::NAN).is_ok());
        assert!(check_codes(0, &[0.0, 1.5], &f64::NAN).is_err());
        assert!(check_codes(0, &[-1.0], &f64::NAN).is_err());
        assert!(check_codes(0, &[70_000.0], &f64::NAN).is_err());
        assert!(check_codes(0, &[-1.0, 2.0], &-1.0).is_ok());
    }

    /// Rows whose P(1) is 0.8 for the codes in `good` and 0.2 for the others, with a
    /// second, uninformative column; codes 0..30, code 17 never appears.
    fn coded_rows(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<u32>) {
        use rand::{rngs::StdRng, Rng, SeedableRng};
        let good: Vec<u32> = (0..30).filter(|c| (c * 7) % 5 < 2 && *c != 17).collect();
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut code, mut noise, mut y) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let mut c: u32 = rng.gen_range(0..30);
            if c == 17 {
                c = 18;
            }
            let p = if good.contains(&c) { 0.8 } else { 0.2 };
            code.push(f64::from(c));
            noise.push(rng.gen::<f64>());
            y.push(if rng.gen::<f64>() < p { 1.0 } else { 0.0 });
        }
        code.extend(noise);
        (code, y, good)
    }

    /// One split on a categorical feature finds the good codes as one group, which an
    /// ordinal split on the same codes cannot; training-time predictions, `predict`,
    /// TreeSHAP and a JSON round trip agree; an unseen code goes right.
    #[test]
    fn a_split_groups_the_categories() {
        use crate::gradientbooster::{ContributionsMethod, GradientBooster};
        use crate::metric::Metric;
        use crate::Matrix;
        let n = 6000;
        let (x, y, good) = coded_rows(n, 7);
        let data = Matrix::new(&x, n, 2);
        let w = vec![1.0; n];
        let stump = |categorical: bool| {
            let mut b = GradientBooster::default()
                .set_iterations(1)
                .set_learning_rate(1.0)
                .set_max_depth(1)
                .set_categorical_features(if categorical {
                    HashSet::from([0])
                } else {
                    HashSet::new()
                });
            b.fit(&data, &y, &w, None).unwrap();
            b
        };
        let logloss =
            |b: &GradientBooster| crate::metric::log_loss(&y, &b.predict(&data, true), &w);
        let (cat, ord) = (stump(true), stump(false));
        let root = &cat.trees[0].nodes[0];
        assert_eq!(root.split_feature, 0);
        let left = root.left_categories.as_ref().unwrap().codes();
        let bad: Vec<u32> = (0..30).filter(|c| !good.contains(c) && *c != 17).collect();
        assert!(left == good || left == bad, "{left:?}");
        assert!(
            logloss(&cat) < logloss(&ord) - 0.05,
            "{} {}",
            logloss(&cat),
            logloss(&ord)
        );
        // Unseen codes (17, 99) and values that are no code go right.
        for v in [17.0, 99.0, 2.5] {
            assert_eq!(root.get_child_idx(&v, &f64::NAN), root.right_child);
        }

        let mut deep = GradientBooster::default()
            .set_iterations(25)
            .set_max_depth(3)
            .set_evaluation_metric(Some(Metric::LogLoss))
            .set_categorical_features(HashSet::from([0]));
        deep.fit(&data, &y, &w, Some(vec![(Matrix::new(&x, n, 2), &y, &w)]))
            .unwrap();
        let history = deep.evaluation_history.as_ref().unwrap();
        let last = history.data[history.data.len() - 1];
        assert!(
            (last - logloss(&deep)).abs() < 1e-9,
            "{last} {}",
            logloss(&deep)
        );
        let again = GradientBooster::from_json(&deep.json_dump().unwrap()).unwrap();
        assert_eq!(again.predict(&data, true), deep.predict(&data, true));
        let contributions = deep.predict_contributions(&data, ContributionsMethod::Shapley, true);
        for (row, p) in contributions.chunks(3).zip(deep.predict(&data, true)) {
            assert!((row.iter().sum::<f64>() - p).abs() < 1e-6);
        }
    }

    #[test]
    fn categorical_features_are_checked() {
        use crate::constraints::{Constraint, ConstraintMap};
        use crate::gradientbooster::GradientBooster;
        use crate::Matrix;
        let (mut x, y, _) = coded_rows(200, 1);
        let w = vec![1.0; 200];
        let mut monotone = ConstraintMap::new();
        monotone.insert(0, Constraint::Positive);
        let fit = |b: GradientBooster, x: &[f64]| {
            let mut b = b.set_categorical_features(HashSet::from([0]));
            b.fit(&Matrix::new(x, 200, 2), &y, &w, None)
        };
        assert!(fit(
            GradientBooster::default().set_monotone_constraints(Some(monotone)),
            &x
        )
        .is_err());
        assert!(fit(
            GradientBooster::default().set_create_missing_branch(true),
            &x
        )
        .is_err());
        x[3] = 2.5;
        assert!(fit(GradientBooster::default(), &x).is_err());
        x[3] = f64::NAN;
        assert!(fit(GradientBooster::default(), &x).is_ok());
    }
}
