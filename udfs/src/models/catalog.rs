//! The models as SQL sees them: the `flashsql_models` table (read from the store at every
//! scan, so a model trained in one session is listed in all), `drop_model(name [, version])`
//! and `deploy_model(name, version | strategy)`.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::array::{
    Float64Array, Int32Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::physical_plan::ExecutionPlan;
use flashsql_gpu::store::{DeployTarget, ModelStore};

use super::features::model_error;
use crate::relation::{Compute, Options, RelationFunction, all_at_once, user_error};

/// `flashsql_models`: one row per stored model version.
#[derive(Debug)]
pub struct ModelsTable {
    pub store: Arc<ModelStore>,
}

fn models_schema() -> SchemaRef {
    let ts = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    Arc::new(Schema::new(vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("version", DataType::Int32, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("learner", DataType::Utf8, false),
        Field::new("created_at", ts, false),
        Field::new("metrics", DataType::Utf8, false),
        Field::new("valid_auc", DataType::Float64, true),
        Field::new("valid_logloss", DataType::Float64, false),
        Field::new("device", DataType::Utf8, false),
        Field::new("seed", DataType::Int64, false),
        Field::new("best_epoch", DataType::Int32, false),
        Field::new("train_rows", DataType::Int64, false),
        Field::new("valid_rows", DataType::Int64, false),
        Field::new("split", DataType::Utf8, false),
        Field::new("training_seconds", DataType::Float64, false),
        Field::new("data_fingerprint", DataType::Utf8, false),
        Field::new("deployed", DataType::Boolean, false),
        Field::new("deployment", DataType::Utf8, true),
    ]))
}

impl ModelsTable {
    fn batch(&self) -> Result<RecordBatch> {
        let models = self.store.list();
        // Per row: whether the bare name means this version, and the record of why (the
        // deployment that chose it, or "latest" when the name was never deployed).
        let deployed: Vec<(bool, Option<String>)> = models
            .iter()
            .map(|m| {
                let current = self.store.resolve(&m.name).ok().map(|(_, v)| v);
                if current != Some(m.version) {
                    return (false, None);
                }
                let why = self.store.deployed(&m.name).map_or(
                    "latest version (never deployed explicitly)".to_string(),
                    |d| d.reason,
                );
                (true, Some(why))
            })
            .collect();
        let s = |f: &dyn Fn(&flashsql_gpu::store::Manifest) -> String| {
            Arc::new(StringArray::from_iter_values(models.iter().map(f)))
        };
        Ok(RecordBatch::try_new(
            models_schema(),
            vec![
                s(&|m| m.name.clone()),
                Arc::new(Int32Array::from_iter_values(
                    models.iter().map(|m| m.version as i32),
                )),
                s(&|m| m.kind.clone()),
                s(&|m| {
                    flashsql_gpu::learner::learner_name(
                        m.config.tabular.as_ref().map(|t| t.learner),
                    )
                    .to_string()
                }),
                Arc::new(
                    TimestampMicrosecondArray::from_iter_values(
                        models.iter().map(|m| m.created_at_us),
                    )
                    .with_timezone("UTC"),
                ),
                s(&|m| serde_json::to_string(&m.metrics).unwrap_or_default()),
                Arc::new(Float64Array::from_iter(
                    models.iter().map(|m| m.metrics.valid_auc),
                )),
                Arc::new(Float64Array::from_iter_values(
                    models.iter().map(|m| m.metrics.valid_logloss),
                )),
                s(&|m| m.device.clone()),
                Arc::new(Int64Array::from_iter_values(
                    models.iter().map(|m| m.seed as i64),
                )),
                Arc::new(Int32Array::from_iter_values(
                    models.iter().map(|m| m.best_epoch as i32),
                )),
                Arc::new(Int64Array::from_iter_values(
                    models.iter().map(|m| m.train_rows as i64),
                )),
                Arc::new(Int64Array::from_iter_values(
                    models.iter().map(|m| m.valid_rows as i64),
                )),
                s(&|m| m.split.clone()),
                Arc::new(Float64Array::from_iter_values(
                    models.iter().map(|m| m.training_seconds),
                )),
                s(&|m| m.data_fingerprint.clone()),
                Arc::new(BooleanArray::from_iter(
                    deployed.iter().map(|(d, _)| Some(*d)),
                )),
                Arc::new(StringArray::from_iter(
                    deployed.iter().map(|(_, why)| why.clone()),
                )),
            ],
        )?)
    }
}

#[async_trait]
impl TableProvider for ModelsTable {
    fn schema(&self) -> SchemaRef {
        models_schema()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        MemTable::try_new(models_schema(), vec![vec![self.batch()?]])?
            .scan(state, projection, filters, limit)
            .await
    }
}

/// The SQL name of [`DropModel`].
pub const DROP_MODEL: &str = "drop_model";

/// `drop_model(name [, version])`: deletes one version or all; one row per deleted version.
#[derive(Debug)]
pub struct DropModel {
    pub store: Arc<ModelStore>,
}

impl RelationFunction for DropModel {
    fn name(&self) -> &'static str {
        DROP_MODEL
    }

    fn usage(&self) -> &'static str {
        "drop_model('name' [, version])"
    }

    fn takes_input(&self) -> bool {
        false
    }

    fn positional(&self) -> &'static [&'static str] {
        &["name", "version"]
    }

    fn option_names(&self) -> &'static [&'static str] {
        &["name", "version"]
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("version", DataType::Int32, false),
        ]))
    }

    fn bind(&self, mut o: Options) -> Result<Compute> {
        let name = o
            .text("name")?
            .ok_or_else(|| user_error("drop_model: write drop_model('name' [, version])"))?;
        let version = match o.count("version")? {
            Some(v) if v >= 1 && v <= u64::from(u32::MAX) => Some(v as u32),
            Some(v) => return Err(user_error(format!("drop_model: no version {v}"))),
            None => None,
        };
        o.finish()?;
        let store = self.store.clone();
        let schema = self.schema();
        Ok(all_at_once(move |_: &[RecordBatch]| {
            let dropped = store
                .drop_model(&name, version)
                .map_err(|e| model_error("drop_model", e))?;
            Ok(RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from_iter_values(
                        dropped.iter().map(|_| name.clone()),
                    )),
                    Arc::new(Int32Array::from_iter_values(
                        dropped.iter().map(|&v| v as i32),
                    )),
                ],
            )?)
        }))
    }
}

/// The SQL name of [`DeployModel`].
pub const DEPLOY_MODEL: &str = "deploy_model";
const DEPLOY_USAGE: &str =
    "deploy_model('name', version => N | strategy => 'best_score'|'most_recent'|'rollback')";

/// `deploy_model(name, version => N | strategy => …)`: sets which version the bare name
/// means from the next statement on; one row with the versions before and after.
#[derive(Debug)]
pub struct DeployModel {
    pub store: Arc<ModelStore>,
}

impl RelationFunction for DeployModel {
    fn name(&self) -> &'static str {
        DEPLOY_MODEL
    }

    fn usage(&self) -> &'static str {
        DEPLOY_USAGE
    }

    fn takes_input(&self) -> bool {
        false
    }

    fn positional(&self) -> &'static [&'static str] {
        &["name", "version"]
    }

    fn option_names(&self) -> &'static [&'static str] {
        &["name", "version", "strategy"]
    }

    fn schema(&self) -> SchemaRef {
        Arc::new(Schema::new(vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("previous_version", DataType::Int32, false),
            Field::new("version", DataType::Int32, false),
            Field::new("reason", DataType::Utf8, false),
        ]))
    }

    fn bind(&self, mut o: Options) -> Result<Compute> {
        let name = o
            .text("name")?
            .ok_or_else(|| user_error(format!("{DEPLOY_MODEL}: write {DEPLOY_USAGE}")))?;
        let version = match o.count("version")? {
            Some(v) if v >= 1 && v <= u64::from(u32::MAX) => Some(v as u32),
            Some(v) => return Err(user_error(format!("{DEPLOY_MODEL}: no version {v}"))),
            None => None,
        };
        let strategy = match o.text("strategy")? {
            None => None,
            Some(s) => Some(match s.to_ascii_lowercase().as_str() {
                "best_score" => DeployTarget::BestScore,
                "most_recent" => DeployTarget::MostRecent,
                "rollback" => DeployTarget::Rollback,
                other => {
                    return Err(user_error(format!(
                        "{DEPLOY_MODEL}: unknown strategy '{other}'; write {DEPLOY_USAGE}"
                    )));
                }
            }),
        };
        o.finish()?;
        let target = match (version, strategy) {
            (Some(v), None) => DeployTarget::Version(v),
            (None, Some(t)) => t,
            _ => {
                return Err(user_error(format!(
                    "{DEPLOY_MODEL}: give either a version or a strategy; write {DEPLOY_USAGE}"
                )));
            }
        };
        let store = self.store.clone();
        let schema = self.schema();
        Ok(all_at_once(move |_: &[RecordBatch]| {
            let (before, now) = store
                .deploy(&name, target, "deploy_model")
                .map_err(|e| model_error(DEPLOY_MODEL, e))?;
            tracing::info!(model = %name, from = before, to = now.version, reason = %now.reason, "model deployed");
            Ok(RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(vec![name.clone()])),
                    Arc::new(Int32Array::from(vec![before as i32])),
                    Arc::new(Int32Array::from(vec![now.version as i32])),
                    Arc::new(StringArray::from(vec![now.reason])),
                ],
            )?)
        }))
    }
}
