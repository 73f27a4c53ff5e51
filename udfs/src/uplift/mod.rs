//! Uplift metrics: how well a score ranks customers by the effect a treatment (an e-mail, a
//! discount) has on them, judged on a randomised experiment. `qini_auc` and `uplift_auc`
//! are aggregates (one number per group); `qini_curve` and `uplift_curve` are table
//! functions with one row per point of the curve.

pub mod curve;
pub mod sql;

pub use sql::{CurveFunction, aggregates, parameter_names};
