//! Differentially private aggregates by the Laplace mechanism: `dp_count(x, epsilon)`,
//! `dp_sum(x, lower, upper, epsilon)`, `dp_avg(x, lower, upper, epsilon)`.
//!
//! Each adds Laplace(Δ/ε) noise to the exact aggregate, where Δ (the sensitivity) is how
//! much one person can move it: values are clamped to [lower, upper] so that one row moves
//! a sum by at most max(|lower|, |upper|), and `contributions => k` declares that the
//! query has capped every person at k rows (the SQL pattern is in docs/functions.md), which
//! multiplies Δ by k. `dp_avg` spends ε/2 on the count and ε/2 on the sum of values
//! centred on the middle of [lower, upper] (sensitivity (upper − lower)/2), as Google's
//! differential-privacy library's bounded mean does, and clamps its result to the bounds.
//!
//! The noise comes from the operating system's random source. `seed => n` makes it
//! reproducible for tests: the noise is then a function of the seed and the group's data,
//! which anyone who knows the seed can subtract — never use it on data that is released.
//!
//! The noise is drawn in floating point by inversion (−b·sgn(u)·ln(1 − 2|u|)); Mironov
//! (CCS 2012) shows that the gaps between floating-point results can leak the exact value
//! to an attacker who sees many outputs with enough precision; rounding the released
//! figures (to whole units for counts) is the documented mitigation here.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility,
};
use rand::rngs::OsRng;
use rand::{Rng, SeedableRng, TryRngCore};
use rand_chacha::ChaCha8Rng;

use crate::aggregate_state::{
    check_arity, constant_arg, list_of, list_state, list_states, named_signature_with,
    option_number,
};
use crate::error::{row_error, user_error};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Query {
    Count,
    Sum,
    Avg,
}

const ALL: [Query; 3] = [Query::Count, Query::Sum, Query::Avg];

impl Query {
    fn name(self) -> &'static str {
        match self {
            Query::Count => "dp_count",
            Query::Sum => "dp_sum",
            Query::Avg => "dp_avg",
        }
    }

    pub(super) fn named(function: &str) -> Option<Query> {
        ALL.into_iter().find(|q| q.name() == function)
    }

    /// Parameter names in order; the value comes first, the options after it.
    pub(super) fn params(self) -> Vec<&'static str> {
        match self {
            Query::Count => vec!["x", "epsilon", "contributions", "seed"],
            Query::Sum | Query::Avg => {
                vec!["x", "lower", "upper", "epsilon", "contributions", "seed"]
            }
        }
    }

    fn required(self) -> usize {
        self.params().len() - 2
    }
}

/// A Laplace(0, scale) draw from a uniform u in (0, 1).
pub fn laplace(scale: f64, u: f64) -> f64 {
    let centred = u - 0.5;
    -scale * centred.signum() * (1.0 - 2.0 * centred.abs()).ln()
}

/// A uniform draw in the open interval (0, 1), on a grid of 2⁻⁵³.
fn uniform(bits: u64) -> f64 {
    ((bits >> 11) as f64 + 0.5) / (1u64 << 53) as f64
}

/// Where the noise comes from.
#[derive(Debug, Clone, Copy)]
enum Noise {
    Os,
    Seeded(u64),
}

impl Noise {
    /// `count` uniform draws; a seeded source mixes the group's `data` into the seed so
    /// that groups get independent noise.
    fn uniforms(self, count: usize, data: &[f64]) -> Result<Vec<f64>> {
        match self {
            Noise::Os => (0..count)
                .map(|_| {
                    OsRng.try_next_u64().map(uniform).map_err(|e| {
                        DataFusionError::External(
                            format!("the operating system's random source failed: {e}").into(),
                        )
                    })
                })
                .collect(),
            Noise::Seeded(seed) => {
                let mixed = data
                    .iter()
                    .fold(splitmix(seed), |h, x| splitmix(h ^ x.to_bits()));
                let mut rng = ChaCha8Rng::seed_from_u64(mixed);
                Ok((0..count).map(|_| uniform(rng.random::<u64>())).collect())
            }
        }
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The checked options of one call.
#[derive(Debug, Clone, Copy)]
struct Mechanism {
    query: Query,
    lower: f64,
    upper: f64,
    epsilon: f64,
    contributions: f64,
    noise: Noise,
}

impl Mechanism {
    fn read(query: Query, args: &AccumulatorArgs) -> Result<Mechanism> {
        let name = query.name();
        let params = query.params();
        let number = |i: usize| -> Result<Option<f64>> {
            let value = constant_arg(args, i, name, params[i])?;
            Ok(value.as_ref().map(option_number))
        };
        let (lower, upper, first_option) = match query {
            Query::Count => (0.0, 0.0, 1),
            Query::Sum | Query::Avg => {
                let bound = |v: Option<f64>, what: &str| -> Result<f64> {
                    match v {
                        Some(x) if x.is_finite() => Ok(x),
                        _ => Err(user_error(format!(
                            "{name}: {what} must be a finite number: the bounds fix how \
                             much one row can change the result"
                        ))),
                    }
                };
                let lower = bound(number(1)?, "lower")?;
                let upper = bound(number(2)?, "upper")?;
                if lower > upper {
                    return Err(user_error(format!(
                        "{name}: lower ({lower}) must not exceed upper ({upper})"
                    )));
                }
                (lower, upper, 3)
            }
        };
        let epsilon = number(first_option)?.unwrap_or(f64::NAN);
        if !(epsilon > 0.0 && epsilon.is_finite()) {
            return Err(user_error(format!(
                "{name}: epsilon must be a positive number (the privacy budget), got {epsilon}"
            )));
        }
        let contributions = number(first_option + 1)?.unwrap_or(1.0);
        if !(contributions >= 1.0 && contributions.fract() == 0.0 && contributions < 1e9) {
            return Err(user_error(format!(
                "{name}: contributions must be a whole number of rows per person, at least 1, \
                 got {contributions}"
            )));
        }
        let noise = match number(first_option + 2)? {
            None => Noise::Os,
            // Read as a double: whole numbers up to 2^53 are exact.
            Some(s) if s >= 0.0 && s.fract() == 0.0 && s <= 9_007_199_254_740_992.0 => {
                Noise::Seeded(s as u64)
            }
            Some(s) => {
                return Err(user_error(format!(
                    "{name}: seed must be a whole number from 0 to 2^53, got {s}"
                )));
            }
        };
        Ok(Mechanism {
            query,
            lower,
            upper,
            epsilon,
            contributions,
            noise,
        })
    }

    /// The noisy result from the exact count and sum of clamped (for `dp_avg`, centred)
    /// values.
    fn release(&self, count: f64, sum: f64) -> Result<f64> {
        let k = self.contributions;
        let u = self.noise.uniforms(2, &[count, sum])?;
        Ok(match self.query {
            Query::Count => count + laplace(k / self.epsilon, u[0]),
            Query::Sum => {
                let delta = k * self.lower.abs().max(self.upper.abs());
                sum + laplace(delta / self.epsilon, u[0])
            }
            Query::Avg => {
                let half = self.epsilon / 2.0;
                let noisy_count = count + laplace(k / half, u[0]);
                let delta = k * (self.upper - self.lower) / 2.0;
                let noisy_sum = sum + laplace(delta / half, u[1]);
                let mid = (self.lower + self.upper) / 2.0;
                (mid + noisy_sum / noisy_count.max(1.0)).clamp(self.lower, self.upper)
            }
        })
    }
}

/// Every differentially private aggregate.
pub fn all() -> Vec<AggregateUDF> {
    ALL.into_iter()
        .map(|query| {
            // Volatile: two evaluations of the same query must draw fresh noise.
            let signature = named_signature_with(&query.params(), Volatility::Volatile);
            AggregateUDF::from(DpUdaf { query, signature })
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct DpUdaf {
    query: Query,
    signature: Signature,
}

impl AggregateUDFImpl for DpUdaf {
    fn name(&self) -> &str {
        self.query.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let q = self.query;
        check_arity(q.name(), &q.params(), q.required(), arg_types.len())?;
        // dp_count counts non-NULL values of any type; the rest read numbers.
        Ok(arg_types
            .iter()
            .enumerate()
            .map(|(i, t)| {
                if i == 0 && self.query == Query::Count {
                    t.clone()
                } else {
                    DataType::Float64
                }
            })
            .collect())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(DpAccumulator {
            mechanism: Mechanism::read(self.query, &args)?,
            count: 0.0,
            sum: 0.0,
            released: false,
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(vec![Arc::new(Field::new(
            format!("{}[count, sum]", args.name),
            list_of(DataType::Float64),
            true,
        ))])
    }
}

#[derive(Debug)]
struct DpAccumulator {
    mechanism: Mechanism,
    count: f64,
    sum: f64,
    /// A group's figure is released once: as a window function the aggregate would be
    /// evaluated for every row, and averaging many noisy copies of one count removes the
    /// noise.
    released: bool,
}

impl Accumulator for DpAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let m = &self.mechanism;
        if m.query == Query::Count {
            self.count += (values[0].len() - values[0].logical_null_count()) as f64;
            return Ok(());
        }
        let mid = if m.query == Query::Avg {
            (m.lower + m.upper) / 2.0
        } else {
            0.0
        };
        for x in values[0].as_primitive::<Float64Type>().iter().flatten() {
            if x.is_nan() {
                return Err(row_error(format!("{}: x must not be NaN", m.query.name())));
            }
            self.count += 1.0;
            self.sum += x.clamp(m.lower, m.upper) - mid;
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        for s in list_states::<Float64Type>(&states[0]) {
            if s.len() == 2 {
                self.count += s.value(0);
                self.sum += s.value(1);
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        Ok(vec![list_state::<Float64Type>(vec![self.count, self.sum])])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.released {
            return Err(user_error(format!(
                "{}: a private aggregate releases one figure per group; it cannot be a \
                 window function",
                self.mechanism.query.name()
            )));
        }
        self.released = true;
        Ok(ScalarValue::Float64(Some(
            self.mechanism.release(self.count, self.sum)?,
        )))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mechanism(query: Query, lower: f64, upper: f64, epsilon: f64, seed: u64) -> Mechanism {
        Mechanism {
            query,
            lower,
            upper,
            epsilon,
            contributions: 1.0,
            noise: Noise::Seeded(seed),
        }
    }

    /// The Laplace(b) CDF.
    fn cdf(x: f64, b: f64) -> f64 {
        if x < 0.0 {
            0.5 * (x / b).exp()
        } else {
            1.0 - 0.5 * (-x / b).exp()
        }
    }

    /// Kolmogorov–Smirnov distance between the sample and Laplace(b).
    fn ks(mut sample: Vec<f64>, b: f64) -> f64 {
        sample.sort_by(f64::total_cmp);
        let n = sample.len() as f64;
        sample
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let f = cdf(x, b);
                (f - i as f64 / n).abs().max(((i + 1) as f64 / n - f).abs())
            })
            .fold(0.0, f64::max)
    }

    /// The noise of dp_count and dp_sum, over 20,000 groups with distinct data, is
    /// Laplace(Δ/ε): the KS distance stays below the 0.1 % critical value 1.949/√n, while
    /// the same test tells Laplace(Δ/ε) from Laplace(1.1·Δ/ε) (the test has power).
    #[test]
    fn noise_is_laplace_of_sensitivity_over_epsilon() {
        let n = 20_000;
        let critical = 1.949 / (n as f64).sqrt();
        let count = mechanism(Query::Count, 0.0, 0.0, 0.5, 7);
        let noise: Vec<f64> = (0..n)
            .map(|i| count.release(i as f64, 0.0).expect("noise") - i as f64)
            .collect();
        let d = ks(noise.clone(), 1.0 / 0.5);
        assert!(d < critical, "count: KS {d} vs {critical}");
        let wrong = ks(noise, 1.1 / 0.5);
        assert!(
            wrong > critical,
            "KS cannot tell a 10 % wrong scale: {wrong}"
        );
        // dp_sum over [−3, 10]: Δ = 10.
        let sum = mechanism(Query::Sum, -3.0, 10.0, 2.0, 11);
        let noise: Vec<f64> = (0..n)
            .map(|i| sum.release(1.0, i as f64).expect("noise") - i as f64)
            .collect();
        let d = ks(noise, 10.0 / 2.0);
        assert!(d < critical, "sum: KS {d} vs {critical}");
    }

    /// Clamping bounds the sensitivity: one extreme row moves the exact (noise-free) sum
    /// by at most max(|lower|, |upper|), however large the row is.
    #[test]
    fn clamping_bounds_one_rows_influence() {
        let rows: Vec<f64> = (0..100).map(|i| (i as f64 * 0.7).sin() * 4.0).collect();
        let clamped_sum = |rows: &[f64]| rows.iter().map(|x| x.clamp(-2.0, 3.0)).sum::<f64>();
        let base = clamped_sum(&rows);
        for extreme in [1e12, -1e12, 3.0, -2.0, 0.0] {
            let mut with = rows.clone();
            with.push(extreme);
            assert!((clamped_sum(&with) - base).abs() <= 3.0 + 1e-12);
        }
        // dp_avg stays inside the bounds whatever the noise.
        let avg = mechanism(Query::Avg, -2.0, 3.0, 0.01, 3);
        for i in 0..1000 {
            let v = avg.release(2.0, i as f64 - 500.0).expect("noise");
            assert!((-2.0..=3.0).contains(&v), "{v}");
        }
    }

    /// A seed reproduces the noise; without one, two releases of the same data differ.
    #[test]
    fn seeded_noise_repeats_and_os_noise_does_not() {
        let m = mechanism(Query::Count, 0.0, 0.0, 1.0, 5);
        assert_eq!(
            m.release(10.0, 0.0).expect("noise"),
            m.release(10.0, 0.0).expect("noise")
        );
        let os = Mechanism {
            noise: Noise::Os,
            ..m
        };
        assert_ne!(
            os.release(10.0, 0.0).expect("noise"),
            os.release(10.0, 0.0).expect("noise")
        );
    }
}
