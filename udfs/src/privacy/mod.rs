//! Sharing results without exposing customers: keyed pseudonyms for identifiers
//! ([`pseudonymize`]) and differentially private counts, sums and means ([`laplace`]).

pub mod laplace;
pub mod pseudonymize;

/// The parameter names of a private aggregate, in order (see [`crate::parameter_names`]).
pub fn parameter_names(function: &str) -> Option<Vec<&'static str>> {
    laplace::Query::named(function).map(|q| q.params())
}
