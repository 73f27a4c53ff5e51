//! Why a model predicts what it does: `explain_model(name)` (which inputs matter, measured on
//! its validation rows when it was trained) and `explain_prediction(name, (SELECT …))` (how
//! much each column moved each row's logit).

use std::sync::Arc;

use datafusion::arrow::array::{
    Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, new_null_array,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::error::Result;
use flashsql_gpu::store::ModelStore;

use super::features::{model_error, scoring_arguments, scoring_rows};
use crate::relation::{Compute, Options, RelationFunction, all_at_once, named_column, user_error};

/// The SQL name of [`ExplainModel`].
pub const EXPLAIN_MODEL: &str = "explain_model";

/// `explain_model(name)`: how much each input matters to a stored model, measured on its
/// validation rows when it was trained — permutation importance for every kind (the rise of
/// the validation log loss when the input is shuffled) and, for a logistic model, each
/// column's coefficient on the standardised scale. Most important first within a measure.
#[derive(Debug)]
pub struct ExplainModel {
    pub store: Arc<ModelStore>,
}

impl RelationFunction for ExplainModel {
    fn name(&self) -> &'static str {
        EXPLAIN_MODEL
    }

    fn usage(&self) -> &'static str {
        "explain_model('name[@version]')"
    }

    fn takes_input(&self) -> bool {
        false
    }

    fn positional(&self) -> &'static [&'static str] {
        &["name"]
    }

    fn option_names(&self) -> &'static [&'static str] {
        &["name"]
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("model", DataType::Utf8, false),
            Field::new("measure", DataType::Utf8, false),
            Field::new("rank", DataType::Int32, false),
            Field::new("feature", DataType::Utf8, false),
            Field::new("importance", DataType::Float64, false),
            Field::new("coefficient", DataType::Float64, true),
        ]))
    }

    fn bind(&self, mut o: Options) -> Result<Compute> {
        let name = o.text("name")?.ok_or_else(|| {
            user_error(format!(
                "{EXPLAIN_MODEL}: write explain_model('name[@version]')"
            ))
        })?;
        o.finish()?;
        let store = self.store.clone();
        let schema = self.schema();
        Ok(all_at_once(move |_: &[RecordBatch]| {
            let (model, version) = store
                .resolve(&name)
                .map_err(|e| model_error(EXPLAIN_MODEL, e))?;
            let manifest = store
                .list()
                .into_iter()
                .find(|m| m.name == model && m.version == version)
                .ok_or_else(|| user_error(format!("{EXPLAIN_MODEL}: {name} was just dropped")))?;
            let mut rows = manifest.importance.clone();
            // Measures in their order of first appearance; most important first within each.
            let mut measures: Vec<String> = Vec::new();
            for r in &rows {
                if !measures.contains(&r.measure) {
                    measures.push(r.measure.clone());
                }
            }
            rows.sort_by(|a, b| {
                let m = |x: &str| measures.iter().position(|v| v == x);
                m(&a.measure)
                    .cmp(&m(&b.measure))
                    .then(b.value.total_cmp(&a.value))
                    .then(a.feature.cmp(&b.feature))
            });
            let mut rank = Vec::with_capacity(rows.len());
            for (k, r) in rows.iter().enumerate() {
                let first = k == 0 || rows[k - 1].measure != r.measure;
                rank.push(if first { 1 } else { rank[k - 1] + 1 });
            }
            let label = format!("{model}@{version}");
            Ok(RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|_| label.clone()),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|r| r.measure.clone()),
                    )),
                    Arc::new(Int32Array::from(rank)),
                    Arc::new(StringArray::from_iter_values(
                        rows.iter().map(|r| r.feature.clone()),
                    )),
                    Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.value))),
                    Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.coefficient))),
                ],
            )?)
        }))
    }
}

/// The SQL name of [`ExplainPrediction`].
pub const EXPLAIN_PREDICTION: &str = "explain_prediction";
const PREDICTION_USAGE: &str = "explain_prediction('name[@version]', (SELECT seq, category_id, price, discount [, time_left, hour] [, features] …))";

/// `explain_prediction(name, (SELECT …))`: for each input row (the columns the scoring
/// function takes, by name), how much each of the model's inputs added to its logit — a
/// logistic model's `coefficient × standardised value`, a gbdt model's exact TreeSHAP values,
/// a network's integrated gradients from the all-zero input — and a `(bias)` row; per input
/// row they sum to `ln(p / (1 − p))` of the probability `purchase_prob` / `propensity` give
/// it (a network's to its f32 rounding). Rows the scoring function scores NULL give none.
#[derive(Debug)]
pub struct ExplainPrediction {
    pub store: Arc<ModelStore>,
}

impl RelationFunction for ExplainPrediction {
    fn name(&self) -> &'static str {
        EXPLAIN_PREDICTION
    }

    fn usage(&self) -> &'static str {
        PREDICTION_USAGE
    }

    fn takes_input(&self) -> bool {
        true
    }

    fn positional(&self) -> &'static [&'static str] {
        &["name"]
    }

    fn option_names(&self) -> &'static [&'static str] {
        &["name"]
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("row", DataType::Int64, false),
            Field::new("feature", DataType::Utf8, false),
            Field::new("value", DataType::Float64, true),
            Field::new("contribution", DataType::Float64, false),
        ]))
    }

    fn bind(&self, mut o: Options) -> Result<Compute> {
        let spec = o
            .text("name")?
            .ok_or_else(|| user_error(format!("{EXPLAIN_PREDICTION}: write {PREDICTION_USAGE}")))?;
        o.finish()?;
        let store = self.store.clone();
        let schema = self.schema();
        Ok(all_at_once(move |batches: &[RecordBatch]| {
            let model = store
                .load(&spec)
                .map_err(|e| model_error(EXPLAIN_PREDICTION, e))?;
            let config = model.scorer.config();
            let Some(first) = batches.first() else {
                return Ok(RecordBatch::new_empty(schema.clone()));
            };
            let input = concat_batches(&first.schema(), batches)?;
            let n = input.num_rows();
            let needs = scoring_arguments(config).join(", ");
            let mut arrays = Vec::new();
            for name in scoring_arguments(config) {
                match input.column_by_name(name) {
                    Some(a) => arrays.push(a.clone()),
                    // A model trained without the sequence reads none.
                    None if name == "seq" && !config.use_sequence => {
                        arrays.push(new_null_array(&DataType::Null, n))
                    }
                    None => {
                        named_column(EXPLAIN_PREDICTION, &input, name, &needs)?;
                    }
                }
            }
            let scored = scoring_rows(EXPLAIN_PREDICTION, config, &arrays, n)?;
            let (columns, values, contributions) = model
                .scorer
                .contributions(&scored.rows)
                .map_err(|e| model_error(EXPLAIN_PREDICTION, e))?;
            let d = columns.len();
            let (mut row, mut feature, mut value, mut contribution) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for (k, &r) in scored.kept.iter().enumerate() {
                for j in 0..=d {
                    row.push(r as i64 + 1);
                    feature.push(columns.get(j).map_or("(bias)", |c| c.as_str()));
                    value.push(columns.get(j).and_then(|_| values[k * d + j]));
                    contribution.push(contributions[k * (d + 1) + j]);
                }
            }
            Ok(RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(Int64Array::from(row)),
                    Arc::new(StringArray::from(feature)),
                    Arc::new(Float64Array::from(value)),
                    Arc::new(Float64Array::from(contribution)),
                ],
            )?)
        }))
    }
}
