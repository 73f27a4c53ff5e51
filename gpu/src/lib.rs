//! flashsql's models, run through candle: on a CUDA GPU when the `cuda` feature is built and
//! a GPU is present, on the CPU otherwise.
//!
//! - [`device`]: choosing the device (`auto | cpu | cuda[:N]`), never silently;
//! - [`init`]: seeded weight initialisation (candle's CPU RNG cannot be seeded);
//! - [`encoder`]: the Conv1D behaviour-sequence encoder;
//! - [`frozen`]: its hand-written CPU forward pass for inference;
//! - [`purchase`]: the purchase model, monotone in the discount by construction;
//!   [`affinity`]: its inputs on what a user did in the offer's category;
//! - [`scorer`]: its frozen CPU form for scoring; [`simd`]: which of their loops' builds
//!   the CPU runs;
//! - [`train`]: the training loop; [`metrics`]: AUC and log loss;
//! - [`calibration`]: Platt scaling of a trained model's logits;
//! - [`tabular`]: a model's inputs as named numeric columns, for the learners that read a
//!   table (hand-made sequence counts included); [`logistic`]: L2 logistic regression on
//!   them; [`gbdt`]: gradient-boosted trees on them; [`learner`]: every kind behind one face for the store and scoring;
//! - [`importance`]: permutation importance of a model's inputs (`explain_model`);
//! - [`store`]: versioned models on disk, cached per process.

pub mod affinity;
pub mod calibration;
pub mod device;
pub mod encoder;
pub mod forest;
pub mod frozen;
pub mod gbdt;
pub mod importance;
pub mod init;
pub mod learner;
pub mod logistic;
pub mod metrics;
pub mod purchase;
pub mod scorer;
pub mod simd;
pub mod store;
pub mod tabular;
pub mod train;

/// Errors of the model layer.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "device 'cuda' was asked for, but this flashsql was built without CUDA (build it with --features cuda)"
    )]
    CudaNotBuilt,
    #[error("CUDA device {ordinal} is not available: {reason}")]
    CudaUnavailable { ordinal: usize, reason: String },
    #[error("unknown device '{0}': use auto, cpu, cuda or cuda:N")]
    UnknownDevice(String),
    #[error("{0}")]
    Shape(String),
    /// Training data that cannot be trained on.
    #[error("{0}")]
    Data(String),
    /// An option naming a model that cannot serve it (an encoder of another shape, or none).
    #[error("{0}")]
    Incompatible(String),
    #[error("model '{spec}' does not exist; the models are: {known}")]
    UnknownModel { spec: String, known: String },
    #[error(
        "'{0}' is not a model name: use letters, digits and _ (not first), at most 63, optionally @version"
    )]
    InvalidName(String),
    #[error("model store: {0}")]
    Io(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
