//! Model-evaluation metrics as SQL aggregates: `auc(label, score)`, `log_loss(label, p)`,
//! `brier(label, p)` and `ece(label, p [, bins])`. They aggregate in parallel like any other
//! aggregate (partial states merge), skip rows where an argument is NULL, and fail on a label
//! other than 0/1 or a probability outside [0, 1] (SQLSTATE 22000), since a silently wrong
//! metric is worse than none.
//!
//! Definitions follow scikit-learn, so that results can be compared with it directly:
//! `auc` is the ROC AUC with tied scores counted half (the Mann–Whitney statistic with
//! average ranks; NULL when one class is missing); `log_loss` clips p to [ε, 1 − ε] with
//! ε = 2.2e-16; `brier` is the mean squared error of p; `ece` is Σ_b (n_b / n)·|ȳ_b − p̄_b|
//! over `bins` equal-width bins (default 10; bin = min(⌊p·bins⌋, bins − 1)).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Float64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, TypeSignature, Volatility,
};

use flashsql_gpu::metrics::{auc, log_loss_term};

use crate::aggregate_state::{constant_arg, list_state, list_states};

use crate::error::{row_error, user_error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    Auc,
    LogLoss,
    Brier,
    Ece,
}

impl Metric {
    fn name(self) -> &'static str {
        match self {
            Metric::Auc => "auc",
            Metric::LogLoss => "log_loss",
            Metric::Brier => "brier",
            Metric::Ece => "ece",
        }
    }
}

/// One metric as an aggregate function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MetricUdaf {
    metric: Metric,
    signature: Signature,
}

impl MetricUdaf {
    pub fn new(metric: Metric) -> MetricUdaf {
        let signature = match metric {
            Metric::Ece => Signature::one_of(
                vec![TypeSignature::Any(2), TypeSignature::Any(3)],
                Volatility::Immutable,
            ),
            _ => Signature::any(2, Volatility::Immutable),
        };
        MetricUdaf { metric, signature }
    }
}

/// The four metric aggregates.
pub fn all() -> Vec<AggregateUDF> {
    [Metric::Auc, Metric::LogLoss, Metric::Brier, Metric::Ece]
        .into_iter()
        .map(|m| AggregateUDF::from(MetricUdaf::new(m)))
        .collect()
}

impl AggregateUDFImpl for MetricUdaf {
    fn name(&self) -> &str {
        self.metric.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let bins = match constant_arg(&args, 2, "ece", "bins")? {
            None => 10,
            Some(v) => match v.cast_to(&DataType::Float64) {
                Ok(ScalarValue::Float64(Some(b))) if b >= 1.0 && b.fract() == 0.0 && b <= 1e6 => {
                    b as usize
                }
                _ => {
                    return Err(user_error(format!(
                        "ece: bins must be a whole number between 1 and 10^6, got {v}"
                    )));
                }
            },
        };
        Ok(Box::new(MetricAccumulator::new(self.metric, bins)))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        // One list of numbers whose layout depends on the metric (see `MetricAccumulator`).
        Ok(vec![Arc::new(Field::new(
            format!("{}[state]", args.name),
            DataType::List(Arc::new(Field::new_list_field(DataType::Float64, true))),
            true,
        ))])
    }
}

/// The running state. `auc` keeps every (score, label) pair; the means keep (Σ, n); `ece`
/// keeps (count, Σ label, Σ p) for each bin that has rows — only those, so that a million
/// bins in each of many groups cost what their rows cost, not 24 MB per group allocated
/// before the memory pool could refuse it. As a state list: `auc` [s0, y0, s1, y1, …], means
/// [Σ, n], `ece` [b, n_b, Σy_b, Σp_b, …] for its non-empty bins b.
#[derive(Debug)]
struct MetricAccumulator {
    metric: Metric,
    pairs: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
    /// `ece`'s number of bins (the call's constant `bins`).
    n_bins: usize,
    bins: BTreeMap<usize, [f64; 3]>,
}

fn floats(a: &ArrayRef) -> Result<Float64Array> {
    Ok(cast(a, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

impl MetricAccumulator {
    fn new(metric: Metric, bins: usize) -> MetricAccumulator {
        MetricAccumulator {
            metric,
            pairs: Vec::new(),
            sum: 0.0,
            count: 0.0,
            n_bins: bins,
            bins: BTreeMap::new(),
        }
    }

    fn add(&mut self, y: f64, x: f64) -> Result<()> {
        let name = self.metric.name();
        if y != 0.0 && y != 1.0 {
            return Err(row_error(format!("{name}: labels must be 0 or 1, got {y}")));
        }
        match self.metric {
            Metric::Auc => {
                if x.is_nan() {
                    return Err(row_error("auc: a score is NaN"));
                }
                self.pairs.push((x, y));
            }
            _ if !(0.0..=1.0).contains(&x) => {
                return Err(row_error(format!(
                    "{name}: probabilities must be in [0, 1], got {x}"
                )));
            }
            Metric::LogLoss => {
                self.sum += log_loss_term(y, x);
                self.count += 1.0;
            }
            Metric::Brier => {
                self.sum += (x - y) * (x - y);
                self.count += 1.0;
            }
            Metric::Ece => {
                let n = self.n_bins;
                let b = ((x * n as f64).floor() as usize).min(n - 1);
                let bin = self.bins.entry(b).or_default();
                bin[0] += 1.0;
                bin[1] += y;
                bin[2] += x;
            }
        }
        Ok(())
    }
}

impl Accumulator for MetricAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let (labels, xs) = (floats(&values[0])?, floats(&values[1])?);
        for i in 0..labels.len() {
            if labels.is_valid(i) && xs.is_valid(i) {
                self.add(labels.value(i), xs.value(i))?;
            }
        }
        Ok(())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        let v = match self.metric {
            Metric::Auc => auc(&mut self.pairs),
            Metric::LogLoss | Metric::Brier => (self.count > 0.0).then(|| self.sum / self.count),
            Metric::Ece => {
                // Σ_b (n_b / n)·|mean label_b − mean p_b| = Σ_b |Σy_b − Σp_b| / n.
                let n: f64 = self.bins.values().map(|b| b[0]).sum();
                (n > 0.0).then(|| self.bins.values().map(|b| (b[1] - b[2]).abs()).sum::<f64>() / n)
            }
        };
        Ok(ScalarValue::Float64(v))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.pairs.capacity() * std::mem::size_of::<(f64, f64)>()
            // A B-tree entry: the key, the value and about a node's share of overhead.
            + self.bins.len() * (std::mem::size_of::<(usize, [f64; 3])>() + 16)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let values: Vec<f64> = match self.metric {
            Metric::Auc => self.pairs.iter().flat_map(|&(s, y)| [s, y]).collect(),
            Metric::LogLoss | Metric::Brier => vec![self.sum, self.count],
            Metric::Ece => self
                .bins
                .iter()
                .flat_map(|(&b, v)| [b as f64, v[0], v[1], v[2]])
                .collect(),
        };
        Ok(vec![list_state::<Float64Type>(values)])
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for part in list_states::<Float64Type>(&states[0]) {
            let v = part.values();
            match self.metric {
                Metric::Auc => self.pairs.extend(v.chunks_exact(2).map(|c| (c[0], c[1]))),
                Metric::LogLoss | Metric::Brier => {
                    self.sum += v[0];
                    self.count += v[1];
                }
                Metric::Ece => {
                    for c in v.chunks_exact(4) {
                        let bin = self.bins.entry(c[0] as usize).or_default();
                        for (total, x) in bin.iter_mut().zip(&c[1..]) {
                            *total += x;
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// An `ece` group holds only the bins its rows fall in: a million bins cost nothing until
    /// used (each group used to allocate 24 MB at once, outside the memory pool: a GROUP BY
    /// with many groups grew the server by gigabytes past its statement timeout).
    #[test]
    fn ece_state_grows_with_rows_not_bins() {
        let mut acc = MetricAccumulator::new(Metric::Ece, 1_000_000);
        let empty = acc.size();
        assert!(empty < 1024, "an empty group: {empty} bytes");
        acc.add(1.0, 0.25).unwrap();
        acc.add(0.0, 0.75).unwrap();
        assert!(acc.size() < empty + 256, "two rows: {} bytes", acc.size());
        // Two bins, each |Σy − Σp| = 0.75, over two rows.
        assert_eq!(acc.evaluate().unwrap(), ScalarValue::Float64(Some(0.75)));
    }

    /// Split into partial states and merged, every metric equals the one-pass result.
    #[test]
    fn partial_states_merge_exactly() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let y: Vec<f64> = (0..1000).map(|_| f64::from(rng.random_bool(0.4))).collect();
        let p: Vec<f64> = (0..1000).map(|_| rng.random::<f64>()).collect();
        let arr = |v: &[f64]| -> ArrayRef { Arc::new(Float64Array::from(v.to_vec())) };
        for m in [Metric::Auc, Metric::LogLoss, Metric::Brier, Metric::Ece] {
            let mut whole = MetricAccumulator::new(m, 7);
            whole.update_batch(&[arr(&y), arr(&p)]).unwrap();
            let mut merged = MetricAccumulator::new(m, 7);
            // The last part saw no rows, as a partition may.
            for (ys, ps) in y.chunks(300).zip(p.chunks(300)).chain([(&[][..], &[][..])]) {
                let mut part = MetricAccumulator::new(m, 7);
                part.update_batch(&[arr(ys), arr(ps)]).unwrap();
                let state = part.state().unwrap();
                merged.merge_batch(&[state[0].to_array().unwrap()]).unwrap();
            }
            let (a, b) = (whole.evaluate().unwrap(), merged.evaluate().unwrap());
            let (ScalarValue::Float64(Some(a)), ScalarValue::Float64(Some(b))) = (a, b) else {
                panic!("{m:?}: no value");
            };
            assert!(
                (a - b).abs() <= 1e-12 * a.abs().max(1.0),
                "{m:?}: {a} vs {b}"
            );
        }
        let mut bad = MetricAccumulator::new(Metric::Brier, 10);
        let e = bad.update_batch(&[arr(&[2.0]), arr(&[0.5])]).unwrap_err();
        assert!(e.to_string().contains("labels must be 0 or 1"), "{e}");
        let e = bad.update_batch(&[arr(&[1.0]), arr(&[1.5])]).unwrap_err();
        assert!(
            e.to_string().contains("probabilities must be in [0, 1]"),
            "{e}"
        );
    }
}
