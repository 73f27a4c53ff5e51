//! flashsql's SQL functions and the algorithms behind the decision functions.
//!
//! [`register_all`] is the one place functions are registered, so every process that plans
//! or executes SQL sees the same set.

pub mod aggregate_state;
pub mod array_text;
pub mod checked_arithmetic;
pub mod error;
pub mod experiments;
pub mod knapsack;
pub mod limits;
pub mod metrics;
pub mod models;
pub mod off_policy;
pub mod optimize;
pub mod pg_types;
pub mod plan_expressions;
pub mod preprocessing;
pub mod privacy;
pub mod relation;
pub mod sale;
pub mod sequence;
pub mod string_agg;
pub mod string_concat;
pub mod uplift;
pub mod vectors;

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::prelude::SessionContext;
use flashsql_gpu::store::ModelStore;

/// The schema of flashsql's system tables; unqualified names find them last.
pub const SYSTEM_SCHEMA: &str = "flashsql";

/// The relation functions that change stored state (models): read-only sessions refuse them.
pub const WRITING_FUNCTIONS: [&str; 4] = [
    models::train_sql::NAME,
    models::catalog::DROP_MODEL,
    models::catalog::DEPLOY_MODEL,
    LOAD_FILE,
];

/// `SELECT * FROM load_file(format, path, table => …)`: loads a file into a new table
/// (handled by the SQL layer, which owns the catalog).
pub const LOAD_FILE: &str = "load_file";

/// The parameter names, in order, of the functions whose options treat NULL as "not
/// given", so that the SQL layer can place `name => value` arguments that skip one (which
/// DataFusion's own resolution refuses): the experiment, preprocessing, off-policy, uplift
/// and privacy functions.
pub fn parameter_names(function: &str) -> Option<Vec<&'static str>> {
    experiments::parameter_names(function)
        .or_else(|| preprocessing::parameter_names(function))
        .or_else(|| off_policy::parameter_names(function))
        .or_else(|| uplift::parameter_names(function))
        .or_else(|| privacy::parameter_names(function))
}

/// Registers every flashsql function on a session, with `models` behind the model functions.
pub fn register_all(ctx: &SessionContext, models: &Arc<ModelStore>) -> Result<()> {
    limits::register(ctx);
    datafusion::execution::FunctionRegistry::register_expr_planner(
        &mut *ctx.state_ref().write(),
        Arc::new(string_concat::TextConcatPlanner::default()),
    )?;
    for udaf in metrics::all() {
        ctx.register_udaf(udaf);
    }
    ctx.register_udaf(sequence::udaf());
    ctx.register_udaf(string_agg::udaf());
    for udaf in experiments::all() {
        ctx.register_udaf(udaf);
    }
    ctx.register_udf(experiments::from_stats::udf());
    for udaf in off_policy::all()
        .into_iter()
        .chain(uplift::aggregates())
        .chain(privacy::laplace::all())
    {
        ctx.register_udaf(udaf);
    }
    for udwf in preprocessing::windows() {
        ctx.register_udwf(udwf);
    }
    ctx.register_udf(preprocessing::bucketize());
    for udf in vectors::all()
        .into_iter()
        .chain(privacy::pseudonymize::all())
        .chain(models::score::all(models))
    {
        ctx.register_udf(udf);
    }
    ctx.register_table(
        datafusion::common::TableReference::partial(SYSTEM_SCHEMA, "flashsql_models"),
        Arc::new(models::catalog::ModelsTable {
            store: models.clone(),
        }),
    )?;
    ctx.register_relation_planner(Arc::new(relation::RelationFunctions::new(vec![
        Arc::new(optimize::OptimizeDiscounts),
        Arc::new(sale::sql::SimulateFlashSale),
        Arc::new(sale::sql::NextDiscounts),
        Arc::new(models::train_sql::TrainModel {
            store: models.clone(),
        }),
        Arc::new(uplift::CurveFunction(uplift::curve::Kind::Qini)),
        Arc::new(uplift::CurveFunction(uplift::curve::Kind::Uplift)),
        Arc::new(models::catalog::DropModel {
            store: models.clone(),
        }),
        Arc::new(models::catalog::DeployModel {
            store: models.clone(),
        }),
        Arc::new(models::explain::ExplainModel {
            store: models.clone(),
        }),
        Arc::new(models::explain::ExplainPrediction {
            store: models.clone(),
        }),
    ])))
}
