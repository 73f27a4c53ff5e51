//! flashsql's SQL functions and the algorithms behind the decision functions.
//!
//! [`register_all`] is the one place functions are registered, so every process that plans
//! or executes SQL sees the same set.

pub mod error;
pub mod knapsack;
pub mod metrics;
pub mod optimize;
pub mod relation;
pub mod sale;
pub mod sequence;
pub mod vectors;

use std::sync::Arc;

use datafusion::error::Result;
use datafusion::prelude::SessionContext;

/// Registers every flashsql function on a session.
pub fn register_all(ctx: &SessionContext) -> Result<()> {
    for udaf in metrics::all() {
        ctx.register_udaf(udaf);
    }
    ctx.register_udaf(sequence::udaf());
    for udf in vectors::all() {
        ctx.register_udf(udf);
    }
    ctx.register_relation_planner(Arc::new(relation::RelationFunctions::new(vec![
        Arc::new(optimize::OptimizeDiscounts),
        Arc::new(sale::sql::SimulateFlashSale),
        Arc::new(sale::sql::NextDiscounts),
    ])))
}
