//! The demand curves of all items in one flat (CSR) layout: two `f64` arrays for the levels
//! and one offset per item. Ten million items × five levels take 880 MB this way, against
//! about twice that as one pair of `Vec`s per item.

use rayon::prelude::*;

/// The levels of every item: item `i` owns levels `offsets[i]..offsets[i + 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Curves {
    offsets: Vec<usize>,
    values: Vec<f64>,
    costs: Vec<f64>,
}

/// One item's levels: the value (objective) and cost (subsidy) of choosing each.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    pub values: &'a [f64],
    pub costs: &'a [f64],
}

impl Item<'_> {
    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `value − λ·cost` of level `k`: what the level is worth when the budget costs `lambda`
    /// per unit.
    pub fn score(&self, k: usize, lambda: f64) -> f64 {
        self.values[k] - lambda * self.costs[k]
    }
}

impl Default for Curves {
    fn default() -> Self {
        Curves::new()
    }
}

impl Curves {
    pub fn new() -> Curves {
        Curves::with_capacity(0, 0)
    }

    pub fn with_capacity(items: usize, levels: usize) -> Curves {
        let mut offsets = Vec::with_capacity(items + 1);
        offsets.push(0);
        Curves {
            offsets,
            values: Vec::with_capacity(levels),
            costs: Vec::with_capacity(levels),
        }
    }

    /// Appends one item given as (value, cost) per level.
    pub fn push(&mut self, levels: impl IntoIterator<Item = (f64, f64)>) {
        for (v, c) in levels {
            self.values.push(v);
            self.costs.push(c);
        }
        self.offsets.push(self.values.len());
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Total number of levels over all items.
    pub fn levels(&self) -> usize {
        self.values.len()
    }

    pub fn item(&self, i: usize) -> Item<'_> {
        let r = self.offsets[i]..self.offsets[i + 1];
        Item {
            values: &self.values[r.clone()],
            costs: &self.costs[r],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = Item<'_>> + '_ {
        (0..self.len()).map(|i| self.item(i))
    }

    /// The items in parallel, in chunks large enough to amortise the scheduling.
    pub fn par_iter(&self) -> impl IndexedParallelIterator<Item = Item<'_>> + '_ {
        (0..self.len())
            .into_par_iter()
            .with_min_len(4096)
            .map(|i| self.item(i))
    }

    /// Σ value and Σ cost of a choice of one level per item.
    pub fn totals(&self, choice: &[usize]) -> (f64, f64) {
        choice
            .par_iter()
            .with_min_len(4096)
            .enumerate()
            .map(|(i, &k)| {
                let it = self.item(i);
                (it.values[k], it.costs[k])
            })
            .reduce(|| (0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
}
