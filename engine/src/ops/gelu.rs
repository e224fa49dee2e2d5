//! The exact (erf) GELU, and GEGLU (one half of a projection gated by the
//! GELU of the other), on the CPU in f32 with an erf the compiler can
//! vectorise. candle's CPU `gelu_erf` evaluates erf in f64, one element at a
//! time; in the text encoder's MLPs and the UNet's feed-forwards that cost as
//! much as a matmul. The loops run compiled for FMA (`with_fma`): on the
//! baseline target each `mul_add` of the erf was a libm call, which made the
//! text encoder's GELU cost as much as its 4096-wide product. Elsewhere
//! candle's ops run.

use candle_core::{CpuStorage, CustomOp1, D, DType, Layout, Result, Shape, Tensor};

/// Elements per parallel task.
const CHUNK: usize = 1 << 14;

/// erf as a rational function of x² on [-4, 4] (±1 beyond, to f32
/// precision); the minimax form Eigen and XLA use, within about 1e-7 of
/// the exact value.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let p = -2.726_142_3e-10_f32;
    let p = p.mul_add(x2, 2.770_681_4e-8);
    let p = p.mul_add(x2, -2.101_024e-6);
    let p = p.mul_add(x2, -5.692_506_4e-5);
    let p = p.mul_add(x2, -7.349_906e-4);
    let p = p.mul_add(x2, -2.954_6e-3);
    let p = p.mul_add(x2, -1.609_603_3e-2);
    let q = -1.456_607_2e-5_f32;
    let q = q.mul_add(x2, -2.133_740_6e-4);
    let q = q.mul_add(x2, -1.682_827e-3);
    let q = q.mul_add(x2, -7.373_329e-3);
    let q = q.mul_add(x2, -1.426_474e-2);
    x * p / q
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

fn is_cpu_f32(xs: &Tensor) -> bool {
    xs.device().is_cpu() && xs.dtype() == DType::F32
}

fn contiguous_input<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<f32>()?[start..end]),
        None => candle_core::bail!("gelu: the input must be contiguous"),
    }
}

struct Gelu;

impl CustomOp1 for Gelu {
    fn name(&self) -> &'static str {
        "wordup-gelu-erf"
    }
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_input(storage, layout)?;
        let mut out = vec![0f32; input.len()];
        super::for_each_row(&mut out, input, CHUNK, |_, out, input| {
            super::with_fma(|| {
                for (o, &x) in out.iter_mut().zip(input) {
                    *o = gelu(x);
                }
            })
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

/// `gelu(xs)` with the exact (erf) definition.
pub fn gelu_erf(xs: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(xs) {
        xs.contiguous()?.apply_op1_no_bwd(&Gelu)
    } else {
        xs.gelu_erf()
    }
}

struct Geglu;

impl CustomOp1 for Geglu {
    fn name(&self) -> &'static str {
        "wordup-geglu"
    }
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_input(storage, layout)?;
        let mut dims = layout.dims().to_vec();
        let width = dims.last().copied().unwrap_or(0);
        if width % 2 != 0 {
            candle_core::bail!("geglu: the last dimension ({width}) must be even");
        }
        let half = width / 2;
        let mut out = vec![0f32; input.len() / 2];
        super::for_each_row(&mut out, input, width, |_, out, row| {
            let (hidden, gate) = row.split_at(half);
            super::with_fma(|| {
                for ((o, &h), &g) in out.iter_mut().zip(hidden).zip(gate) {
                    *o = h * gelu(g);
                }
            })
        });
        if let Some(last) = dims.last_mut() {
            *last = half;
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

/// GEGLU: `hidden · gelu(gate)` where `hidden` and `gate` are the first and
/// second halves of `projected`'s last dimension.
pub fn geglu(projected: &Tensor) -> Result<Tensor> {
    if is_cpu_f32(projected) {
        projected.contiguous()?.apply_op1_no_bwd(&Geglu)
    } else {
        let half = projected.dim(D::Minus1)? / 2;
        projected.narrow(D::Minus1, 0, half)?
            * projected.narrow(D::Minus1, half, half)?.gelu_erf()?
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn erf_is_within_a_few_ulps_of_libms() {
        let worst = (-6000..=6000)
            .map(|i| i as f64 / 1000.0)
            .map(|x| (erf(x as f32) as f64 - libm_erf(x)).abs())
            .fold(0.0, f64::max);
        assert!(worst < 1e-6, "largest error {worst}");
    }

    /// erf from the f64 candle uses (its `gelu_erf` is the reference).
    fn libm_erf(x: f64) -> f64 {
        let t = Tensor::new(&[x], &Device::Cpu).unwrap();
        // gelu_erf(y) = y (1 + erf(y/√2)) / 2, so erf(x) = 2 gelu_erf(x√2)/(x√2) − 1.
        if x == 0.0 {
            return 0.0;
        }
        let y = x * std::f64::consts::SQRT_2;
        let g = (t * std::f64::consts::SQRT_2).unwrap().gelu_erf().unwrap();
        2.0 * g.to_vec1::<f64>().unwrap()[0] / y - 1.0
    }

    #[test]
    fn gelu_and_geglu_match_candles() -> Result<()> {
        let dev = Device::Cpu;
        let xs = (Tensor::randn(0f32, 3.0, (2, 5, 40), &dev)? * 1.0)?;
        let diff = (gelu_erf(&xs)? - xs.gelu_erf()?)?
            .abs()?
            .flatten_all()?
            .max(0)?;
        assert!(diff.to_scalar::<f32>()? < 1e-5);
        let expected = (xs.narrow(2, 0, 20)? * xs.narrow(2, 20, 20)?.gelu_erf()?)?;
        let got = geglu(&xs)?;
        assert_eq!(got.dims(), &[2, 5, 20]);
        let diff = (got - expected)?.abs()?.flatten_all()?.max(0)?;
        assert!(diff.to_scalar::<f32>()? < 1e-5);
        Ok(())
    }
}
