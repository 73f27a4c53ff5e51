//! The tabular view of a model's inputs, for the learners that read a table of numbers rather
//! than a token sequence (logistic regression, and any other non-network kind): the offer's
//! numbers, the category affinity, hand-made counts summarising the behaviour sequence, and
//! the extra `features`, one named column each.
//!
//! The counts are what a careful analyst builds by hand from a behaviour log — how many
//! events of each type a user had, over several horizons, how recently each type last
//! happened, how broad their browsing is — read from the same tokens `behavior_sequence`
//! writes, so a tabular model takes exactly the inputs the network takes.

use std::convert::Infallible;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::GpuError;
use crate::affinity::{AFFINITY, TokenLayout};
use crate::purchase::{PurchaseConfig, Rows};
use crate::scorer::{CACHED_SEQUENCES, SequenceCache, rows_through};
use crate::train::{Prepared, SplitKeys, TrainOptions, prepare};

/// Which tabular learner a model is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TabularLearner {
    /// L2-regularised logistic regression on standardised columns ([`crate::logistic`]).
    Logistic,
    /// Gradient-boosted trees ([`crate::gbdt`]).
    Gbdt,
}

impl TabularLearner {
    pub fn name(self) -> &'static str {
        match self {
            TabularLearner::Logistic => "logistic",
            TabularLearner::Gbdt => "gbdt",
        }
    }
}

/// How a tabular model reads its inputs; `None` in a config means the network.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TabularSpec {
    pub learner: TabularLearner,
    /// The sequence counts, when the model reads the behaviour sequence.
    pub counts: Option<SequenceCounts>,
}

/// The hand-made counts of a token window and their names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SequenceCounts {
    pub layout: TokenLayout,
    /// Event names in token order.
    pub events: Vec<String>,
    /// Gap buckets in the layout (token groups = gap buckets × events).
    pub gaps: u32,
    /// Names of the cumulative age horizons: horizon k counts the tokens whose gap bucket is
    /// at most k (buckets past the last horizon count only in the totals).
    pub horizons: Vec<String>,
}

impl SequenceCounts {
    /// Columns: events in the window, distinct category buckets, then per event type its
    /// total, its count within each horizon and its recency (the smallest gap bucket it
    /// occurs in; one past the last bucket when it does not occur).
    pub fn width(&self) -> usize {
        2 + self.events.len() * (2 + self.horizons.len())
    }

    pub fn names(&self) -> Vec<String> {
        let mut names = vec!["seq_events".to_string(), "seq_categories".to_string()];
        for e in &self.events {
            names.push(format!("seq_{e}"));
            for h in &self.horizons {
                names.push(format!("seq_{e}_within_{h}"));
            }
            names.push(format!("seq_{e}_recency"));
        }
        names
    }

    /// Whether the layout can be read for a vocabulary of `vocab` tokens.
    pub fn check(&self, vocab: usize) -> Result<(), GpuError> {
        self.layout.check(vocab)?;
        if self.layout.events as usize != self.events.len()
            || (self.gaps * self.layout.events) as usize > 64
            || self.horizons.len() > self.gaps as usize
        {
            return Err(GpuError::Shape(format!(
                "{} event names, {} gap buckets and {} horizons for a layout of {} events",
                self.events.len(),
                self.gaps,
                self.horizons.len(),
                self.layout.events
            )));
        }
        Ok(())
    }

    /// The counts of one window (0 is padding), [`SequenceCounts::width`] values; counts
    /// as ln(1 + n).
    pub fn write(&self, window: &[u32], out: &mut [f64]) {
        let buckets = self.layout.category_buckets;
        let (shift, mask) = (buckets.trailing_zeros(), buckets - 1);
        let events = self.layout.events as usize;
        // Per (gap bucket, event) group, at most 64 groups (checked with the layout).
        let mut groups = [0u32; 64];
        let mut seen = vec![0u64; (buckets as usize).div_ceil(64)];
        let mut total = 0u32;
        for &t in window.iter().filter(|&&t| t != 0) {
            let u = t - 1;
            let b = (u & mask) as usize;
            seen[b / 64] |= 1 << (b % 64);
            groups[((u >> shift) as usize).min(63)] += 1;
            total += 1;
        }
        let gaps = self.gaps as usize;
        out[0] = f64::from(total).ln_1p();
        out[1] = f64::from(seen.iter().map(|w| w.count_ones()).sum::<u32>()).ln_1p();
        let mut k = 2;
        for e in 0..events {
            let count = |g: usize| if g < gaps { groups[g * events + e] } else { 0 };
            let all: u32 = (0..gaps).map(count).sum();
            out[k] = f64::from(all).ln_1p();
            k += 1;
            let mut within = 0u32;
            for h in 0..self.horizons.len() {
                within += count(h);
                out[k] = f64::from(within).ln_1p();
                k += 1;
            }
            let recency = (0..gaps).find(|&g| count(g) > 0).unwrap_or(gaps);
            out[k] = recency as f64;
            k += 1;
        }
    }
}

/// The columns a tabular model with this config reads, in order: for a purchase model
/// ln(price), discount, then time_left and the hour as sine and cosine when given (and, for
/// trees, the category's index in the model's vocabulary, 0 when unknown); the
/// category affinity (when read); the sequence counts (when read); the extra features.
pub fn column_names(config: &PurchaseConfig, spec: &TabularSpec) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    if config.has_offer() {
        names.extend(["ln_price".into(), "discount".into()]);
        if config.time_left {
            names.push("time_left".into());
        }
        if config.hour {
            names.extend(["hour_sin".into(), "hour_cos".into()]);
        }
        if reads_category(spec) {
            names.push("category_id".into());
        }
    }
    if config.affinity_layout().is_some() {
        names.extend([
            "affinity_share".into(),
            "affinity_events".into(),
            "affinity_purchases".into(),
        ]);
    }
    if let Some(c) = &spec.counts {
        names.extend(c.names());
    }
    names.extend((1..=config.features.len()).map(|k| format!("feature_{k}")));
    names
}

/// The columns trees split as categories (sets of codes, not ranges): the offer's category
/// index, when its vocabulary fits the booster's codes
/// ([`forust_ml::categorical::MAX_CATEGORY`]; a larger one is split as a number).
pub fn categorical_columns(config: &PurchaseConfig, spec: &TabularSpec) -> Vec<usize> {
    if !reads_category(spec)
        || config.categories.len() as f64 > forust_ml::categorical::MAX_CATEGORY
    {
        return Vec::new();
    }
    column_names(config, spec)
        .iter()
        .position(|c| c == "category_id")
        .into_iter()
        .collect()
}

/// Whether the learner reads the category itself (trees can split its index into groups; a
/// linear model could only weigh it as a number).
fn reads_category(spec: &TabularSpec) -> bool {
    spec.learner == TabularLearner::Gbdt
}

/// The index of the discount column (purchase models), which must not lower the logit.
pub fn discount_column(config: &PurchaseConfig) -> Option<usize> {
    config.has_offer().then_some(1)
}

/// The sequence counts of windows scored before, kept by a loaded tabular model between
/// batches: a planning grid meets every user once per batch (its rows ordered by offer),
/// so without it the counts — a logarithm per count — were computed for nearly every row.
#[derive(Debug)]
pub struct CountsCache(RwLock<SequenceCache<f64>>);

impl CountsCache {
    /// A cache for a model that reads sequence counts; `None` for one that does not.
    pub fn new(config: &PurchaseConfig, spec: &TabularSpec) -> Option<CountsCache> {
        spec.counts.as_ref().map(|c| {
            CountsCache(RwLock::new(SequenceCache::new(
                config.seq_len.max(1),
                c.width(),
                CACHED_SEQUENCES,
            )))
        })
    }
}

/// The design matrix of `rows`, row-major, one row per input row and one column per
/// [`column_names`] entry. The sequence counts are computed once per distinct sequence.
pub fn design(config: &PurchaseConfig, spec: &TabularSpec, rows: &Rows) -> Vec<f64> {
    design_with(config, spec, rows, None)
}

/// [`design`], the sequence counts of windows in `cache` read from it and the others kept
/// there.
pub fn design_with(
    config: &PurchaseConfig,
    spec: &TabularSpec,
    rows: &Rows,
    cache: Option<&CountsCache>,
) -> Vec<f64> {
    let d = column_names(config, spec).len();
    let len = config.seq_len.max(1);
    let counts: Option<(&SequenceCounts, Vec<f64>)> = spec
        .counts
        .as_ref()
        .map(|c| (c, sequence_counts(c, rows, len, cache)));
    let width = rows.feature_width();
    let mut x = vec![0.0f64; rows.len() * d];
    let mut affinity = [0.0f32; AFFINITY];
    for (r, out) in x.chunks_mut(d.max(1)).enumerate().take(rows.len()) {
        let mut k = 0;
        if config.has_offer() {
            out[0] = f64::from(rows.price[r].max(1e-6)).ln();
            out[1] = f64::from(rows.discount[r]);
            k = 2;
            if config.time_left {
                out[k] = f64::from(rows.time_left[r]);
                k += 1;
            }
            if config.hour {
                let a = f64::from(rows.hour[r]) * std::f64::consts::TAU / 24.0;
                out[k] = a.sin();
                out[k + 1] = a.cos();
                k += 2;
            }
            if reads_category(spec) {
                out[k] = f64::from(rows.category[r]);
                k += 1;
            }
        }
        let s = rows.seq_of_row[r] as usize;
        if let Some(layout) = config.affinity_layout() {
            let window = &rows.sequences[s * len..(s + 1) * len];
            layout.inputs(window, rows.category_bucket[r], &mut affinity);
            for (o, &a) in out[k..k + AFFINITY].iter_mut().zip(&affinity) {
                *o = f64::from(a);
            }
            k += AFFINITY;
        }
        if let Some((c, per_seq)) = &counts {
            let w = c.width();
            out[k..k + w].copy_from_slice(&per_seq[s * w..(s + 1) * w]);
            k += w;
        }
        for (o, &f) in out[k..k + width]
            .iter_mut()
            .zip(&rows.features[r * width..(r + 1) * width])
        {
            *o = f64::from(f);
        }
    }
    x
}

/// The counts of each of `rows.sequences` (`len` tokens each), `c.width()` apiece.
fn sequence_counts(
    c: &SequenceCounts,
    rows: &Rows,
    len: usize,
    cache: Option<&CountsCache>,
) -> Vec<f64> {
    let w = c.width();
    let counts_of = |windows: &[usize]| -> Result<Vec<f64>, Infallible> {
        let mut out = vec![0.0; windows.len() * w];
        for (&k, dst) in windows.iter().zip(out.chunks_mut(w)) {
            c.write(&rows.sequences[k * len..(k + 1) * len], dst);
        }
        Ok(out)
    };
    let Ok(counts) = match cache {
        Some(CountsCache(cache)) => {
            rows_through(cache, &rows.sequences, &rows.sequence_hashes, counts_of)
        }
        None => counts_of(&(0..rows.sequences.len() / len).collect::<Vec<_>>()),
    };
    counts
}

/// What every tabular learner trains on: the rows prepared as every kind prepares them
/// ([`prepare`]: content order, fingerprint, seeded split) and their design matrix.
pub(crate) struct TabularTraining {
    pub columns: Vec<String>,
    /// Row-major, one row per prepared row.
    pub x: Vec<f64>,
    pub prepared: Prepared,
}

/// Checks a tabular config and prepares its rows ([`TabularTraining`]).
pub(crate) fn prepare_tabular(
    config: &PurchaseConfig,
    rows: &Rows,
    labels: &[f32],
    keys: &SplitKeys,
    opts: &TrainOptions,
) -> Result<TabularTraining, GpuError> {
    let spec = config
        .tabular
        .clone()
        .ok_or_else(|| GpuError::Shape("a tabular model needs its tabular spec".into()))?;
    if let Some(c) = &spec.counts {
        c.check(config.encoder.vocab)?;
    }
    let columns = column_names(config, &spec);
    if columns.is_empty() {
        return Err(GpuError::Data(
            "the model has no inputs: give it a sequence (sequence => true), an offer or features"
                .into(),
        ));
    }
    let prepared = prepare(config, rows, labels, keys, opts)?;
    let x = design(config, &spec, &prepared.rows);
    Ok(TabularTraining {
        columns,
        x,
        prepared,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scorer::window_hash;

    fn counts() -> SequenceCounts {
        SequenceCounts {
            layout: TokenLayout {
                category_buckets: 64,
                events: 5,
                purchase: 4,
            },
            gaps: 8,
            events: ["view", "search", "fav", "cart", "purchase"]
                .map(String::from)
                .to_vec(),
            horizons: ["1min", "10min", "1h", "6h", "1d", "7d"]
                .map(String::from)
                .to_vec(),
        }
    }

    fn token(gap: u32, event: u32, category: u32) -> u32 {
        1 + (gap * 5 + event) * 64 + category
    }

    /// Counts per event type over cumulative horizons, recency and breadth, checked by hand.
    #[test]
    fn counts_a_window_by_event_horizon_and_recency() {
        let c = counts();
        assert!(c.check(2561).is_ok());
        assert_eq!(c.names().len(), c.width());
        let window = [
            0,
            token(7, 0, 3), // first event: a view, in the totals only
            token(2, 0, 3), // a view within 1 h
            token(0, 0, 9), // a view within 1 min
            token(4, 4, 9), // a purchase within 1 day
        ];
        let mut out = vec![f64::NAN; c.width()];
        c.write(&window, &mut out);
        let ln = |n: f64| n.ln_1p();
        assert_eq!(out[0], ln(4.0));
        assert_eq!(out[1], ln(2.0));
        // view: total 3; within 1min 1, 10min 1, 1h 2, 6h 2, 1d 2, 7d 2; recency bucket 0.
        assert_eq!(
            &out[2..10],
            &[
                ln(3.0),
                ln(1.0),
                ln(1.0),
                ln(2.0),
                ln(2.0),
                ln(2.0),
                ln(2.0),
                0.0
            ]
        );
        // search: nothing; recency one past the last bucket.
        assert_eq!(&out[10..18], &[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 8.0]);
        // purchase: one, within 1 day.
        let p = 2 + 4 * 8;
        assert_eq!(
            &out[p..p + 8],
            &[ln(1.0), 0.0, 0.0, 0.0, 0.0, ln(1.0), ln(1.0), 4.0]
        );
        // Padding only: no events, every recency past the end.
        c.write(&[0; 6], &mut out);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[9], 8.0);
    }

    /// Counts read back from the cache equal counts computed afresh, whether the caller
    /// hashed the windows or not; a cache that filled up starts over and stays right.
    #[test]
    fn cached_counts_are_the_computed_ones() {
        let c = counts();
        let len = 6;
        let windows: Vec<[u32; 6]> = (0..40u32)
            .map(|k| {
                [
                    0,
                    token(k % 8, k % 5, k % 64),
                    token(3, 4, 9),
                    token((k / 3) % 8, (k / 2) % 5, 7),
                    0,
                    token(k % 2, 0, k % 11),
                ]
            })
            .collect();
        let rows = |hashed: bool| Rows {
            sequences: windows.concat(),
            sequence_hashes: if hashed {
                windows.iter().map(|w| window_hash(w)).collect()
            } else {
                Vec::new()
            },
            ..Rows::default()
        };
        let fresh = sequence_counts(&c, &rows(false), len, None);
        for capacity in [100, 16] {
            let cache = CountsCache(RwLock::new(SequenceCache::new(len, c.width(), capacity)));
            for hashed in [true, false, true] {
                let got = sequence_counts(&c, &rows(hashed), len, Some(&cache));
                assert_eq!(got, fresh, "capacity {capacity}, hashed {hashed}");
            }
        }
    }
}
