//! How much each input matters to a trained model, as `explain_model` reports it.
//!
//! Permutation importance works for every kind alike: shuffle one input across the
//! validation rows (keeping everything else) and measure how much the validation log loss
//! rises. It is measured on the inputs as SQL passes them (`seq`, `category_id`, `price`,
//! `discount`, …, each `features[k]`), so it answers the analyst's question — which of my
//! columns does this model rely on — whatever the model does with them inside.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::GpuError;
use crate::metrics::bce_with_logits;
use crate::purchase::{PurchaseConfig, Rows};

/// Shuffles per input; the importance is their mean.
const REPEATS: u64 = 3;

/// One input's importance by one measure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Importance {
    pub feature: String,
    /// `permutation`: the rise of the validation log loss when the input is shuffled;
    /// `coefficient`: |coefficient| on the standardised column (logistic models).
    pub measure: String,
    pub value: f64,
    /// The signed coefficient on the standardised column, for `coefficient`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub coefficient: Option<f64>,
}

/// An input of a model, as its scoring function takes it.
#[derive(Debug, Clone, Copy)]
enum Input {
    Seq,
    Category,
    Price,
    Discount,
    TimeLeft,
    Hour,
    /// `features[k]`, from 0.
    Feature(usize),
}

impl Input {
    /// Its name in SQL.
    fn name(self) -> String {
        match self {
            Input::Seq => "seq".into(),
            Input::Category => "category_id".into(),
            Input::Price => "price".into(),
            Input::Discount => "discount".into(),
            Input::TimeLeft => "time_left".into(),
            Input::Hour => "hour".into(),
            Input::Feature(k) => format!("features[{}]", k + 1),
        }
    }
}

/// The inputs a model reads.
fn inputs(config: &PurchaseConfig) -> Vec<Input> {
    let mut v = Vec::new();
    if config.use_sequence {
        v.push(Input::Seq);
    }
    if config.has_offer() {
        v.extend([Input::Category, Input::Price, Input::Discount]);
        if config.time_left {
            v.push(Input::TimeLeft);
        }
        if config.hour {
            v.push(Input::Hour);
        }
    }
    v.extend((0..config.features.len()).map(Input::Feature));
    v
}

/// `rows` with `input` shuffled across rows by `order`.
fn shuffled(rows: &Rows, input: Input, order: &[usize]) -> Rows {
    fn permute<T: Copy>(v: &[T], order: &[usize]) -> Vec<T> {
        order.iter().map(|&r| v[r]).collect()
    }
    let mut out = rows.clone();
    match input {
        Input::Seq => out.seq_of_row = permute(&rows.seq_of_row, order),
        Input::Category => {
            out.category = permute(&rows.category, order);
            if !rows.category_bucket.is_empty() {
                out.category_bucket = permute(&rows.category_bucket, order);
            }
        }
        Input::Price => out.price = permute(&rows.price, order),
        Input::Discount => out.discount = permute(&rows.discount, order),
        Input::TimeLeft => out.time_left = permute(&rows.time_left, order),
        Input::Hour => out.hour = permute(&rows.hour, order),
        Input::Feature(k) => {
            let w = rows.feature_width();
            for (r, &src) in order.iter().enumerate() {
                out.features[r * w + k] = rows.features[src * w + k];
            }
        }
    }
    out
}

/// Permutation importance of every input on `rows` (validation rows and their labels),
/// scored by `logits`; seeded, so the same model and rows give the same figures.
pub fn permutation(
    config: &PurchaseConfig,
    rows: &Rows,
    labels: &[f32],
    seed: u64,
    logits: &dyn Fn(&Rows) -> Result<Vec<f64>, GpuError>,
) -> Result<Vec<Importance>, GpuError> {
    let base = bce_with_logits(labels, &logits(rows)?);
    let mut out = Vec::new();
    for (k, input) in inputs(config).into_iter().enumerate() {
        let mut total = 0.0;
        for repeat in 0..REPEATS {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(0x7065_726d ^ ((k as u64) << 8) ^ repeat);
            let mut order: Vec<usize> = (0..rows.len()).collect();
            order.shuffle(&mut rng);
            total += bce_with_logits(labels, &logits(&shuffled(rows, input, &order))?) - base;
        }
        out.push(Importance {
            feature: input.name(),
            measure: "permutation".into(),
            value: total / REPEATS as f64,
            coefficient: None,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::purchase::ModelKind;

    /// A model that reads only `features[1]`: shuffling it costs, shuffling the other input
    /// costs exactly nothing.
    #[test]
    fn only_an_input_the_model_reads_matters() {
        let n = 400;
        let mut rows = Rows {
            sequences: vec![0; 4],
            seq_of_row: vec![0; n],
            ..Rows::default()
        };
        let mut labels = Vec::new();
        for r in 0..n {
            let a = (r % 7) as f32 - 3.0;
            rows.features.extend([a, (r % 5) as f32]);
            labels.push(if a > 0.0 { 1.0 } else { 0.0 });
        }
        let config = PurchaseConfig {
            kind: ModelKind::Propensity,
            encoder: crate::encoder::EncoderConfig::default(),
            seq_len: 4,
            use_sequence: false,
            categories: Vec::new(),
            category_dim: 8,
            hidden: [4, 4],
            log_price_mean: 0.0,
            log_price_sd: 1.0,
            time_left: false,
            hour: false,
            features: vec![crate::purchase::Scale { mean: 0.0, sd: 1.0 }; 2],
            calibration: None,
            affinity: None,
            tabular: None,
        };
        let logits = |rows: &Rows| -> Result<Vec<f64>, GpuError> {
            Ok(rows
                .features
                .chunks(2)
                .map(|f| 2.0 * f64::from(f[0]))
                .collect())
        };
        let imp = permutation(&config, &rows, &labels, 7, &logits).unwrap();
        assert_eq!(imp.len(), 2);
        assert_eq!(imp[0].feature, "features[1]");
        assert!(imp[0].value > 0.5, "{imp:?}");
        assert_eq!(imp[1].value, 0.0);
        assert_eq!(
            imp,
            permutation(&config, &rows, &labels, 7, &logits).unwrap()
        );
    }
}
