//! Seeded weight initialisation. candle's CPU random generator cannot be seeded, so initial
//! weights are drawn here from a seeded ChaCha stream (one stream per tensor name, so adding
//! a layer does not change the others) and copied to the device: the same seed gives
//! bitwise-identical weights on every machine.

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::GpuError;

/// The FNV-1a hash's starting value.
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

/// FNV-1a of `bytes`, continuing from `h` (start from [`FNV_OFFSET`]).
pub(crate) fn fnv1a(h: u64, bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(h, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

fn stream(seed: u64, name: &str) -> ChaCha8Rng {
    // FNV-1a of the name picks the stream.
    let h = fnv1a(FNV_OFFSET, name.as_bytes());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(h);
    rng
}

/// Glorot-uniform weights of `shape` (fan in, fan out given), from (seed, name).
pub fn glorot(
    seed: u64,
    name: &str,
    shape: &[usize],
    fan_in: usize,
    fan_out: usize,
    device: &Device,
) -> Result<Tensor, GpuError> {
    let a = (6.0 / (fan_in + fan_out) as f64).sqrt() as f32;
    let mut rng = stream(seed, name);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(-a..a)).collect();
    Ok(Tensor::from_vec(v, shape, device)?)
}

/// Zeros (biases).
pub fn zeros(shape: &[usize], device: &Device) -> Result<Tensor, GpuError> {
    Ok(Tensor::zeros(shape, candle_core::DType::F32, device)?)
}

/// Tensor `name` of stored or training weights, checked against the shape the model expects:
/// weights from another model or version fail with the tensor's name, not deep in a matmul.
pub fn named_tensor(
    named: &HashMap<String, Tensor>,
    name: &str,
    shape: &[usize],
) -> Result<Tensor, GpuError> {
    let t = named
        .get(name)
        .ok_or_else(|| GpuError::Shape(format!("the weights have no tensor {name}")))?;
    if t.dims() != shape {
        return Err(GpuError::Shape(format!(
            "tensor {name} has shape {:?}, expected {shape:?}",
            t.dims()
        )));
    }
    Ok(t.clone())
}
