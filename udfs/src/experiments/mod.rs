//! Experiment analysis in SQL: did the new discount plan beat the old one?
//!
//! Aggregates over one row per unit (user, session) of a live experiment:
//! `ab_test` (conversion rates), `ttest` (Welch, any metric), `cuped_ttest` (Welch on
//! CUPED-adjusted values), `sequential_test` (always-valid, for watching a running sale),
//! `bayes_ab` (Beta-Binomial chance to win and risk) each return a list with one struct per
//! non-control variant, so that `unnest` turns it into rows and `GROUP BY` gives one per
//! segment or day; `srm_test` (sample-ratio mismatch) and `cuped` return one struct. The
//! scalar `ttest_from_stats` tests experiment tables kept as (sum, sum of squares, count).
//!
//! Rows with a NULL in an argument are skipped. A group whose control variant has no rows
//! gives NULL; a statistic that is undefined (fewer than two rows, no variance) is NULL.

pub mod aggregates;
pub mod from_stats;
pub mod moments;
pub mod stats;

pub use aggregates::all;

/// The parameter names of an experiment function, in order (see
/// [`crate::parameter_names`]).
pub fn parameter_names(function: &str) -> Option<Vec<&'static str>> {
    if function == from_stats::NAME {
        return Some(from_stats::PARAMS.to_vec());
    }
    aggregates::Test::named(function).map(|t| t.params().iter().map(|(n, _)| *n).collect())
}
