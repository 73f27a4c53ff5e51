//! `purchase_prob(model, seq, category_id, price, discount [, time_left [, hour]] [, features])`,
//! `propensity(model, seq [, features])` and `user_embedding(seq [, model])`: one model call
//! per batch of rows, each distinct sequence encoded once.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, AsArray, Float32Array, Float64Array, ListArray};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::simplify::{ExprSimplifyResult, SimplifyContext};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use flashsql_gpu::GpuError;
use flashsql_gpu::purchase::ModelKind;
use flashsql_gpu::store::{LoadedModel, ModelStore};

use super::features::{model_error, scoring_arguments, scoring_rows, sequences};
use crate::error::user_error;

const PROB_USAGE: &str = "purchase_prob(model text, seq int[], category_id bigint, price double, discount double [, time_left double [, hour double]] [, features double[]])";
const PROPENSITY_USAGE: &str = "propensity(model text, seq int[] [, features double[]])";
const EMBED_USAGE: &str = "user_embedding(seq int[] [, model text])";

/// The model store a function reads, compared by identity (DataFusion compares functions to
/// tell whether two expressions are the same).
#[derive(Debug, Clone)]
struct Store(Arc<ModelStore>);

impl PartialEq for Store {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

impl Eq for Store {}

impl std::hash::Hash for Store {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.0).hash(state);
    }
}

pub fn all(store: &Arc<ModelStore>) -> Vec<ScalarUDF> {
    vec![
        ScalarUDF::from(Probability {
            kind: ModelKind::Purchase,
            store: Store(store.clone()),
            signature: Signature::variadic_any(Volatility::Stable),
        }),
        ScalarUDF::from(Probability {
            kind: ModelKind::Propensity,
            store: Store(store.clone()),
            signature: Signature::variadic_any(Volatility::Stable),
        }),
        ScalarUDF::from(UserEmbedding {
            store: Store(store.clone()),
            signature: Signature::variadic_any(Volatility::Stable),
        }),
    ]
}

/// The model argument: one name for the whole call.
fn model_name(function: &str, arg: &ColumnarValue) -> Result<String> {
    let bad = || {
        user_error(format!(
            "{function}: the model must be a model name in quotes, the same for every row"
        ))
    };
    match arg {
        ColumnarValue::Scalar(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
        ) => Ok(s.clone()),
        ColumnarValue::Array(a) => {
            let names = cast(a, &DataType::Utf8).map_err(|_| bad())?;
            let names = names.as_string::<i32>();
            match names.iter().next() {
                Some(Some(first)) if names.iter().all(|n| n == Some(first)) => {
                    Ok(first.to_string())
                }
                _ => Err(bad()),
            }
        }
        _ => Err(bad()),
    }
}

/// Pins the model argument at position `at` to the version the name means now
/// (`'name'` → `'name@3'`), so that a query keeps the version it was planned with while
/// another session deploys a new one. Unknown names and parameters are left alone (the
/// error comes when the query runs).
fn pin_model(
    store: &ModelStore,
    udf: impl ScalarUDFImpl + 'static,
    mut args: Vec<Expr>,
    at: usize,
) -> ExprSimplifyResult {
    let name = match args.get(at) {
        Some(Expr::Literal(
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
            _,
        )) if !s.contains('@') => s.clone(),
        _ => return ExprSimplifyResult::Original(args),
    };
    let Ok((resolved, version)) = store.resolve(&name) else {
        return ExprSimplifyResult::Original(args);
    };
    args[at] = Expr::Literal(
        ScalarValue::Utf8(Some(format!("{resolved}@{version}"))),
        None,
    );
    ExprSimplifyResult::Simplified(Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::new(ScalarUDF::new_from_impl(udf)),
        args,
    )))
}

fn load(function: &str, store: &ModelStore, spec: &str) -> Result<Arc<LoadedModel>> {
    store.load(spec).map_err(|e| model_error(function, e))
}

/// A model's probability per row: `purchase_prob` for purchase models, `propensity` for
/// propensity models. The arguments after the model are the inputs it was trained on, in
/// the order [`scoring_arguments`] gives.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Probability {
    kind: ModelKind,
    store: Store,
    signature: Signature,
}

impl Probability {
    fn usage(&self) -> &'static str {
        match self.kind {
            ModelKind::Purchase => PROB_USAGE,
            ModelKind::Propensity => PROPENSITY_USAGE,
        }
    }

    /// The other kind's function, for an error that points at it.
    fn function_of(kind: ModelKind) -> &'static str {
        match kind {
            ModelKind::Purchase => "purchase_prob",
            ModelKind::Propensity => "propensity",
        }
    }
}

impl ScalarUDFImpl for Probability {
    fn name(&self) -> &str {
        Probability::function_of(self.kind)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        Ok(pin_model(&self.store.0, self.clone(), args, 0))
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let list = |t: &DataType| {
            matches!(
                t,
                DataType::List(_) | DataType::LargeList(_) | DataType::Null
            )
        };
        let number = |t: &DataType| t.is_numeric() || *t == DataType::Null;
        let (fixed, most) = match self.kind {
            ModelKind::Purchase => (5, 8),
            ModelKind::Propensity => (2, 3),
        };
        let n = args.len();
        // After the fixed arguments only numbers, then one optional list (the features).
        let tail_ok = args.get(fixed..).is_none_or(|tail| {
            tail.iter().enumerate().all(|(k, t)| {
                if k + 1 == tail.len() {
                    list(t) || number(t)
                } else {
                    number(t)
                }
            })
        });
        let ok = (fixed..=most).contains(&n)
            && matches!(
                args[0],
                DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
            )
            && list(&args[1])
            && args[2..fixed.min(n)].iter().all(number)
            && tail_ok;
        if !ok {
            let given: Vec<String> = args.iter().map(|t| t.to_string()).collect();
            return Err(user_error(format!(
                "{}: expected {}, got ({})",
                self.name(),
                self.usage(),
                given.join(", ")
            )));
        }
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let name = Probability::function_of(self.kind);
        let n = args.number_rows;
        let spec = model_name(name, &args.args[0])?;
        let model = load(name, &self.store.0, &spec)?;
        let config = model.scorer.config();
        if config.kind != self.kind {
            return Err(user_error(format!(
                "{name}: model {spec} is a {} model; score it with {}(...)",
                config.kind.name(),
                Probability::function_of(config.kind)
            )));
        }
        let wanted = scoring_arguments(config);
        if args.args.len() != wanted.len() + 1 {
            return Err(user_error(format!(
                "{name}: model {spec} takes {} arguments: (model, {})",
                wanted.len() + 1,
                wanted.join(", ")
            )));
        }
        let arrays: Vec<ArrayRef> = args.args[1..]
            .iter()
            .map(|a| a.to_array(n))
            .collect::<Result<_>>()?;
        let scored = scoring_rows(name, config, &arrays, n)?;
        let probs = model
            .scorer
            .probabilities(&scored.rows)
            .map_err(|e| model_error(name, e))?;
        let mut out: Vec<Option<f64>> = vec![None; n];
        for (&r, p) in scored.kept.iter().zip(probs) {
            out[r] = Some(p);
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(out))))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct UserEmbedding {
    store: Store,
    signature: Signature,
}

impl ScalarUDFImpl for UserEmbedding {
    fn name(&self) -> &str {
        "user_embedding"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn simplify(&self, args: Vec<Expr>, _info: &SimplifyContext) -> Result<ExprSimplifyResult> {
        Ok(pin_model(&self.store.0, self.clone(), args, 1))
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        let ok = matches!(args.len(), 1 | 2)
            && matches!(
                args[0],
                DataType::List(_) | DataType::LargeList(_) | DataType::Null
            )
            && args.get(1).is_none_or(|t| {
                matches!(t, DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8)
            });
        if !ok {
            let given: Vec<String> = args.iter().map(|t| t.to_string()).collect();
            return Err(user_error(format!(
                "user_embedding: expected {EMBED_USAGE}, got ({})",
                given.join(", ")
            )));
        }
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Float32,
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let spec = match args.args.get(1) {
            Some(a) => model_name("user_embedding", a)?,
            None => latest_encoder(&self.store.0)?,
        };
        let model = load("user_embedding", &self.store.0, &spec)?;
        let config = model.scorer.config();
        let seq = args.args[0].to_array(n)?;
        let windows = sequences("user_embedding", &seq, config.seq_len, config.encoder.vocab)?;
        let vectors = model
            .scorer
            .user_vectors(&windows.tokens)
            .map_err(|e| model_error("user_embedding", e))?
            .ok_or_else(|| {
                user_error(format!(
                    "user_embedding: model {spec} has no sequence encoder (a tabular kind, or trained with sequence => false)"
                ))
            })?;
        let d = config.encoder.dim;
        let mut values = Vec::with_capacity(n * d);
        for &k in &windows.of_row {
            values.extend_from_slice(&vectors[k as usize * d..(k as usize + 1) * d]);
        }
        let field = Arc::new(Field::new_list_field(DataType::Float32, true));
        let offsets = OffsetBuffer::from_lengths(std::iter::repeat_n(d, n));
        // A NULL sequence is a user without history: it has an embedding too (all padding).
        let list = ListArray::try_new(field, offsets, Arc::new(Float32Array::from(values)), None)?;
        Ok(ColumnarValue::Array(Arc::new(list)))
    }
}

/// The most recently trained model with a sequence encoder.
fn latest_encoder(store: &ModelStore) -> Result<String> {
    store
        .list()
        .iter()
        .filter(|m| m.config.use_sequence && m.config.tabular.is_none())
        .max_by_key(|m| (m.created_at_us, m.version))
        .map(|m| format!("{}@{}", m.name, m.version))
        .ok_or_else(|| {
            model_error(
                "user_embedding",
                GpuError::UnknownModel {
                    spec: "(latest with a sequence encoder)".into(),
                    known: "none: train one with train_model".into(),
                },
            )
        })
}
