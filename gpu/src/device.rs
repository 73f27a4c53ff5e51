//! Which device a model runs on. `cuda` where CUDA is not built or no GPU answers is an
//! error, not a silent fallback; `auto` falls back to the CPU and says so.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;

use crate::GpuError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceChoice {
    Auto,
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceChoice {
    type Err = GpuError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        match s.as_str() {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceChoice::Cuda)
                .ok_or_else(|| GpuError::UnknownDevice(s.clone())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceChoice::Auto => f.write_str("auto"),
            DeviceChoice::Cpu => f.write_str("cpu"),
            DeviceChoice::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Whether this binary carries candle's CUDA backend.
pub const CUDA_BUILT: bool = cfg!(feature = "cuda");

fn cuda(ordinal: usize) -> Result<Device, GpuError> {
    if !CUDA_BUILT {
        return Err(GpuError::CudaNotBuilt);
    }
    Device::new_cuda(ordinal).map_err(|e| GpuError::CudaUnavailable {
        ordinal,
        reason: e.to_string(),
    })
}

/// Opens the device for `choice` and returns it with what was actually used (`auto`
/// resolves to `cuda:0` or `cpu`).
pub fn open(choice: DeviceChoice) -> Result<(Device, DeviceChoice), GpuError> {
    match choice {
        DeviceChoice::Cpu => Ok((Device::Cpu, DeviceChoice::Cpu)),
        DeviceChoice::Cuda(n) => Ok((cuda(n)?, DeviceChoice::Cuda(n))),
        DeviceChoice::Auto => match cuda(0) {
            Ok(d) => Ok((d, DeviceChoice::Cuda(0))),
            Err(e) => {
                tracing::info!(reason = %e, "device auto: using the CPU");
                Ok((Device::Cpu, DeviceChoice::Cpu))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choices_parse_and_cuda_is_never_a_silent_fallback() {
        assert_eq!("AUTO".parse::<DeviceChoice>().unwrap(), DeviceChoice::Auto);
        assert_eq!(
            "cuda:2".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(2)
        );
        assert_eq!(
            "cuda".parse::<DeviceChoice>().unwrap(),
            DeviceChoice::Cuda(0)
        );
        assert!(matches!(
            "tpu".parse::<DeviceChoice>(),
            Err(GpuError::UnknownDevice(_))
        ));
        assert!("cuda:x".parse::<DeviceChoice>().is_err());
        let (_, used) = open(DeviceChoice::Cpu).unwrap();
        assert_eq!(used, DeviceChoice::Cpu);
        if !CUDA_BUILT {
            assert!(matches!(
                open(DeviceChoice::Cuda(0)),
                Err(GpuError::CudaNotBuilt)
            ));
            let (d, used) = open(DeviceChoice::Auto).unwrap();
            assert!(d.is_cpu());
            assert_eq!(used, DeviceChoice::Cpu);
        }
    }
}
