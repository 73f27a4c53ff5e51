//! A booster's trees laid out for scoring many rows at once.
//!
//! Walking one row down one tree is a chain of dependent loads and data-dependent branches:
//! forust's `predict_row_from_row_slice` spends its time waiting on the next node and on
//! mispredicted branches, one row at a time (65 % of a gbdt planning query's CPU). Here
//! every tree is one slice of a flat node array, a leaf points to itself, and a block of
//! rows goes down a tree together, one level at a time for as many levels as the tree is
//! deep: the rows' walks are independent, so the CPU overlaps their loads, and the child is
//! picked by indexing (`[right, left, missing][k]`) rather than by branching. The sums are
//! added in forust's order, so every row's margin is the same to the bit (tested).

use forust_ml::GradientBooster;
use forust_ml::categorical::CategorySet;

/// Rows walked down a tree together.
const BLOCK: usize = 32;

/// No category set: the node compares with its threshold.
const NUMERIC: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct FlatNode {
    /// The split value, or a leaf's weight.
    threshold: f64,
    feature: u32,
    /// Index into [`Forest::sets`] for a categorical split, else [`NUMERIC`].
    set: u32,
    /// Absolute indices of the children taken when the value is not below the threshold
    /// (or not in the set), when it is, and when it is missing; a leaf's are itself.
    children: [u32; 3],
}

/// The kept trees of a booster, flat ([`Forest::margins`]).
#[derive(Debug, Clone)]
pub struct Forest {
    nodes: Vec<FlatNode>,
    /// Each tree's root and the levels a walk takes to reach any of its leaves.
    trees: Vec<(u32, u32)>,
    sets: Vec<CategorySet>,
    base: f64,
}

impl Forest {
    /// The booster's trees; `None` when its missing value is not NaN (the walk here treats
    /// NaN as missing), so callers keep forust's own walk then.
    pub fn new(booster: &GradientBooster) -> Option<Forest> {
        if !booster.missing.is_nan() {
            return None;
        }
        let mut forest = Forest {
            nodes: Vec::new(),
            trees: Vec::with_capacity(booster.trees.len()),
            sets: Vec::new(),
            base: booster.base_score,
        };
        for tree in &booster.trees {
            let offset = forest.nodes.len() as u32;
            // forust numbers a tree's nodes by `num`, which is also their position.
            let mut depth = 0;
            for (i, node) in tree.nodes.iter().enumerate() {
                debug_assert_eq!(node.num, i);
                let own = offset + i as u32;
                let flat = if node.is_leaf {
                    FlatNode {
                        threshold: f64::from(node.weight_value),
                        feature: 0,
                        set: NUMERIC,
                        children: [own; 3],
                    }
                } else {
                    let set = match &node.left_categories {
                        Some(left) => {
                            forest.sets.push(left.clone());
                            (forest.sets.len() - 1) as u32
                        }
                        None => NUMERIC,
                    };
                    FlatNode {
                        threshold: node.split_value,
                        feature: node.split_feature as u32,
                        set,
                        children: [
                            offset + node.right_child as u32,
                            offset + node.left_child as u32,
                            offset + node.missing_node as u32,
                        ],
                    }
                };
                depth = depth.max(node.depth as u32);
                forest.nodes.push(flat);
            }
            forest.trees.push((offset, depth));
        }
        Some(forest)
    }

    /// The margin (base score plus every tree's leaf) of each row of the row-major `x`
    /// (`d` values a row, the booster's columns) into `out`.
    pub fn margins(&self, x: &[f64], d: usize, out: &mut [f64]) {
        debug_assert_eq!(x.len(), out.len() * d);
        for (rows, block) in x.chunks(BLOCK * d.max(1)).zip(out.chunks_mut(BLOCK)) {
            let n = block.len();
            let mut sum = [0.0f64; BLOCK];
            let mut at = [0u32; BLOCK];
            for &(root, depth) in &self.trees {
                at[..n].fill(root);
                for _ in 0..depth {
                    for (r, a) in at[..n].iter_mut().enumerate() {
                        let node = &self.nodes[*a as usize];
                        let v = rows[r * d + node.feature as usize];
                        let left = if node.set == NUMERIC {
                            v < node.threshold
                        } else {
                            self.sets[node.set as usize].contains(v)
                        };
                        let k = usize::from(left) | (usize::from(v.is_nan()) << 1);
                        *a = node.children[k];
                    }
                }
                for (s, a) in sum[..n].iter_mut().zip(&at[..n]) {
                    *s += self.nodes[*a as usize].threshold;
                }
            }
            for (o, s) in block.iter_mut().zip(&sum[..n]) {
                *o = self.base + s;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use forust_ml::Matrix;
    use rand::{Rng, SeedableRng};
    use std::collections::HashSet;

    /// Margins equal forust's own walk bit for bit: numeric and categorical splits,
    /// missing values sent either way, codes never seen, a partial last block.
    #[test]
    fn margins_are_forusts_to_the_bit() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        let (n, d) = (3001, 4);
        let mut cols = vec![Vec::with_capacity(n); d];
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let code = f64::from(rng.random_range(0..20u32));
            let a: f64 = rng.random();
            let b: f64 = if rng.random::<f64>() < 0.2 {
                f64::NAN
            } else {
                rng.random()
            };
            let c: f64 = rng.random();
            let z = if (code as u32).is_multiple_of(3) {
                1.0
            } else {
                -1.0
            } + 2.0 * a
                - b.max(0.5) * 3.0 * (b.is_nan() as u8 as f64 - 0.5)
                + c;
            y.push(if rng.random::<f64>() < 1.0 / (1.0 + (-z).exp()) {
                1.0
            } else {
                0.0
            });
            for (col, v) in cols.iter_mut().zip([code, a, b, c]) {
                col.push(v);
            }
        }
        let flat: Vec<f64> = cols.concat();
        let mut booster = GradientBooster::default()
            .set_iterations(40)
            .set_max_depth(5)
            .set_categorical_features(HashSet::from([0]));
        booster
            .fit(&Matrix::new(&flat, n, d), &y, &vec![1.0; n], None)
            .unwrap();
        assert!(
            booster
                .trees
                .iter()
                .any(|t| t.nodes.iter().any(|n| n.left_categories.is_some()))
        );
        let forest = Forest::new(&booster).unwrap();
        // Scored rows: the training rows plus unseen codes, non-codes and missing codes.
        let mut x: Vec<f64> = (0..n)
            .flat_map(|r| (0..d).map(move |j| (r, j)))
            .map(|(r, j)| cols[j][r])
            .collect();
        for extra in [
            [25.0, 0.3, 0.4, 0.5],
            [2.5, 0.9, f64::NAN, 0.1],
            [f64::NAN, 0.1, 0.2, 0.3],
        ] {
            x.extend(extra);
        }
        let rows = x.len() / d;
        let mut got = vec![0.0; rows];
        forest.margins(&x, d, &mut got);
        for (r, g) in got.iter().enumerate() {
            let row = &x[r * d..(r + 1) * d];
            let want = booster.base_score
                + booster
                    .trees
                    .iter()
                    .map(|t| t.predict_row_from_row_slice(row, &f64::NAN))
                    .sum::<f64>();
            assert_eq!(g.to_bits(), want.to_bits(), "row {r}");
        }
    }
}
