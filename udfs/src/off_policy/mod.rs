//! Off-policy evaluation in SQL: what would a new discount or recommendation policy have
//! earned, estimated from logs that another policy produced?
//!
//! Aggregates over one row per logged round (an exposure: the action shown, its reward,
//! the logging policy's propensity and the target policy's probability of the same
//! action): `ope_ips`, `ope_snips`, `ope_dm`, `ope_dr`, `ope_switch_dr`. Each returns one
//! struct (estimate, standard error, interval, effective sample size and the weight
//! diagnostics) and works with `GROUP BY`. Rows with a NULL argument are skipped; a
//! propensity outside (0, 1] or a non-finite value is an error (22000).

pub mod aggregates;
pub mod estimate;

pub use aggregates::all;

/// The parameter names of an off-policy function, in order (see
/// [`crate::parameter_names`]).
pub fn parameter_names(function: &str) -> Option<Vec<&'static str>> {
    estimate::Estimator::named(function).map(|e| e.params())
}

#[cfg(test)]
mod coverage;
