//! The synthetic flash-sale world and its log generator.
//!
//! [`generate`] draws a deterministic world (users with latent types, items, flash-sale
//! campaigns with a randomised logging policy and limited inventory) and returns its tables as
//! Arrow record batches: the observable tables for schema `public` and the ground truth for
//! schema `truth`. See [`world`] for the exact purchase-response function.

pub mod generate;
pub mod scale;
pub mod world;

pub use generate::{Dataset, GeneratedTable, generate};
pub use scale::Scale;

use datafusion::arrow::error::ArrowError;

/// Errors of the data-set layer.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("unknown scale '{0}': expected one of tiny, small, medium, large")]
    UnknownScale(String),
    #[error("building Arrow data failed: {0}")]
    Arrow(#[from] ArrowError),
}
