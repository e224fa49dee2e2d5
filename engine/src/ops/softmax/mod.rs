//! Softmax over the last dimension: on the CPU in f32 with an exp the
//! compiler vectorises (at 512² the UNet's self-attention scores are 84M
//! values per layer; candle's CPU softmax calls libm's exp on each); on CUDA
//! in any float dtype, in f32 inside one kernel (`softmax.cu`). Elsewhere
//! candle's op runs.

#[cfg(feature = "cuda")]
mod cuda;

use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Result, Shape, Tensor};

/// e^x within 1e-6 relative for |x| ≤ 10 and 1e-5 up to |x| = 87 (the
/// rounding of x·log₂e), and exactly 0 below −87: a subnormal result would
/// make every later multiplication by it a hundred times slower (a causal
/// mask's probabilities slowed the text encoder's matmuls 1.5×). 2^n by the
/// exponent bits, and a degree-6 polynomial for e^y with |y| ≤ ln2/2.
#[inline(always)]
pub fn fast_exp(x: f32) -> f32 {
    // Adding 1.5·2²³ rounds t to an integer n, left in the low mantissa bits.
    const ROUND: f32 = 12_582_912.0;
    let t = (x * std::f32::consts::LOG2_E).clamp(-126.0, 126.0);
    let shifted = t + ROUND;
    let n = (shifted.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let y = (t - (shifted - ROUND)) * std::f32::consts::LN_2;
    let p = (1.0 / 720.0_f32).mul_add(y, 1.0 / 120.0);
    let p = p.mul_add(y, 1.0 / 24.0);
    let p = p.mul_add(y, 1.0 / 6.0);
    let p = p.mul_add(y, 0.5);
    let p = p.mul_add(y, 1.0);
    let p = p.mul_add(y, 1.0);
    let value = p * f32::from_bits(((n + 127) as u32) << 23);
    if x < -87.0 { 0.0 } else { value }
}

/// Below this a softmax term is dropped: e^−70 is under f32's precision next
/// to the row's largest term (e^0), and dividing it by a sum of up to 10⁵
/// terms keeps it clear of subnormals.
pub(super) const NEGLIGIBLE: f32 = -70.0;

struct Softmax;

impl CustomOp1 for Softmax {
    fn name(&self) -> &'static str {
        "wordup-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("softmax: the input must be contiguous");
        };
        let input = &storage.as_slice::<f32>()?[start..end];
        let width = layout.dims().last().copied().unwrap_or(1).max(1);
        let mut out = vec![0f32; input.len()];
        super::for_each_row(&mut out, input, width, |_, out, row| {
            super::with_fma(|| softmax_row(out, row))
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        storage: &candle_core::CudaStorage,
        layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        Ok((cuda::softmax_rows(storage, layout)?, layout.shape().clone()))
    }
}

#[inline(always)]
fn softmax_row(out: &mut [f32], row: &[f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for (o, &x) in out.iter_mut().zip(row) {
        let d = x - max;
        *o = if d < NEGLIGIBLE { 0.0 } else { fast_exp(d) };
    }
    let scale = 1.0 / out.iter().sum::<f32>();
    out.iter_mut().for_each(|o| *o *= scale);
}

/// Softmax over the last dimension, in the input's dtype (computed in f32).
pub fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    let ours = match xs.device() {
        Device::Cpu => xs.dtype() == DType::F32,
        Device::Cuda(_) => {
            cfg!(feature = "cuda") && matches!(xs.dtype(), DType::F32 | DType::F16 | DType::BF16)
        }
        _ => false,
    };
    if ours {
        xs.contiguous()?.apply_op1_no_bwd(&Softmax)
    } else {
        candle_nn::ops::softmax_last_dim(xs)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn exp_is_close_to_libms() {
        for i in -8700..=8700 {
            let x = i as f32 / 100.0;
            let (got, expected) = (fast_exp(x) as f64, (x as f64).exp());
            let tolerance = if x.abs() <= 10.0 { 1e-6 } else { 1e-5 };
            assert!(
                ((got - expected) / expected).abs() < tolerance,
                "exp({x}) = {got}, expected {expected}"
            );
        }
        assert_eq!(fast_exp(-87.5), 0.0);
        assert_eq!(fast_exp(f32::NEG_INFINITY), 0.0);
    }

    #[test]
    fn matches_candles_softmax() -> Result<()> {
        let xs = (Tensor::randn(0f32, 4.0, (3, 7, 33), &Device::Cpu)? - 50.0)?;
        let expected = candle_nn::ops::softmax_last_dim(&xs)?;
        let diff = (softmax_last_dim(&xs)? - expected)?
            .abs()?
            .flatten_all()?
            .max(0)?;
        assert!(diff.to_scalar::<f32>()? < 1e-6);
        Ok(())
    }
}
