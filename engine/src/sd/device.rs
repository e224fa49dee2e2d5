//! Device and precision: f16 on CUDA (the fp16 weight variants where a
//! model has them), f32 on CPU, where half precision is slow.

use candle_core::{DType, Device};

use crate::error::Result;
use crate::sd::source::Variant;

/// The best device this build can use: CUDA or Metal when compiled in and
/// present, else the CPU. A GPU build on a host without a usable GPU (no
/// driver, no device) says so and runs on the CPU rather than failing.
pub fn best_device(force_cpu: bool) -> Result<Device> {
    if force_cpu {
        return Ok(Device::Cpu);
    }
    if candle_core::utils::cuda_is_available() {
        match Device::new_cuda(0) {
            Ok(device) => return Ok(device),
            Err(e) => {
                tracing::warn!(error = %e, "built with CUDA but no GPU is usable; running on the CPU")
            }
        }
    }
    if candle_core::utils::metal_is_available() {
        match Device::new_metal(0) {
            Ok(device) => return Ok(device),
            Err(e) => {
                tracing::warn!(error = %e, "built with Metal but no GPU is usable; running on the CPU")
            }
        }
    }
    Ok(Device::Cpu)
}

pub fn default_dtype(device: &Device) -> DType {
    if device.is_cpu() {
        DType::F32
    } else {
        DType::F16
    }
}

/// Which weight files fit a dtype.
pub fn variant_for(dtype: DType) -> Variant {
    match dtype {
        DType::F16 | DType::BF16 => Variant::PreferFp16,
        _ => Variant::Full,
    }
}

/// A precision by its name on the command line: f32, f16 or bf16.
pub fn parse_dtype(name: &str) -> std::result::Result<DType, String> {
    match name {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(format!("unknown dtype {other:?}: use f32, f16 or bf16")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtypes_parse_by_name_and_others_are_refused() {
        for (name, dtype) in [
            ("f32", DType::F32),
            ("f16", DType::F16),
            ("bf16", DType::BF16),
        ] {
            assert_eq!(parse_dtype(name), Ok(dtype));
        }
        assert!(parse_dtype("fp8").unwrap_err().contains("fp8"));
    }
}
