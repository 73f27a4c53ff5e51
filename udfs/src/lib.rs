//! flashsql's SQL functions and the algorithms behind the decision functions.
//!
//! So far: the discount-choice solvers ([`knapsack`]) that `optimize_discounts` will expose.

pub mod knapsack;
