pub mod categorical;
mod histogram;
mod node;
mod partial_dependence;
mod shapley;

// Modules
pub mod binning;
pub mod constraints;
pub mod data;
pub mod errors;
pub mod gradientbooster;
pub mod grower;
pub mod metric;
pub mod objective;
pub mod sampler;
pub mod splitter;
pub mod tree;
pub mod utils;

// Individual classes, and functions
pub use data::Matrix;
pub use gradientbooster::GradientBooster;
