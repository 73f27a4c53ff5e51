//! flashsql's models, run through candle: on a CUDA GPU when the `cuda` feature is built and
//! a GPU is present, on the CPU otherwise.
//!
//! - [`device`]: choosing the device (`auto | cpu | cuda[:N]`), never silently;
//! - [`init`]: seeded weight initialisation (candle's CPU RNG cannot be seeded);
//! - [`encoder`]: the Conv1D behaviour-sequence encoder;
//! - [`frozen`]: its hand-written CPU forward pass for inference.

pub mod device;
pub mod encoder;
pub mod frozen;
pub mod init;

/// Errors of the model layer.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    #[error(
        "device 'cuda' was asked for, but this flashsql was built without CUDA (build with --features cuda, see scripts/build-gpu.sh)"
    )]
    CudaNotBuilt,
    #[error("CUDA device {ordinal} is not available: {reason}")]
    CudaUnavailable { ordinal: usize, reason: String },
    #[error("unknown device '{0}': use auto, cpu, cuda or cuda:N")]
    UnknownDevice(String),
    #[error("{0}")]
    Shape(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}
