//! Flash-sale decisions while the sale runs: Thompson sampling under inventory and budget
//! constraints, and the simulator that scores pricing policies against the LP bound and a
//! clairvoyant.

pub mod gvr;
pub mod period_lp;
pub mod posterior;
pub mod simulate;
pub mod single;
pub mod sql;
pub mod thompson;
pub mod world;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SaleError {
    #[error("{0}")]
    Option(String),
    /// Nobody waits for the result any more (the query was cancelled).
    #[error("cancelled")]
    Cancelled,
}
