//! A linear layer whose weight the CPU keeps in panels of `PANEL` output
//! features, each `[in, PANEL]` and contiguous: the layout gemm's kernel
//! reads its left operand in (`y_panelᵀ = panelᵀ · xᵀ`), so it is read as one
//! stream without repacking. The `[out, in]` weight was repacked on every
//! call, and a transposed `[in, out]` one read with a stride of a whole row
//! per step, which at the text encoder's 77 tokens ran gemm at a third of
//! the speed (13 GFLOP/s on two cores against 42 in panels). Tasks are
//! (panel, block of rows) pairs, each a single-threaded product, and the
//! bias is written first and accumulated onto. Elsewhere candle's layer runs.

use std::fmt;
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;
use rayon::prelude::*;

use super::SharedOut;

/// Output features per panel: two of gemm's AVX-512 register blocks (4×16
/// rows each); 64 and 256 were no faster.
const PANEL: usize = 128;
/// Rows per task: enough for gemm to run at speed, few enough that a
/// block of the input stays in L2 across the panels.
const ROW_BLOCK: usize = 256;

#[derive(Clone)]
struct Panels {
    /// Panel `p` holds outputs `p·PANEL..` (the last may be narrower) as
    /// `[c_in, width]`, at `p·PANEL·c_in`.
    weight: Arc<Vec<f32>>,
    bias: Option<Arc<Vec<f32>>>,
    c_in: usize,
    c_out: usize,
}

impl fmt::Debug for Panels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Panels")
            .field("c_in", &self.c_in)
            .field("c_out", &self.c_out)
            .field("bias", &self.bias.is_some())
            .finish()
    }
}

#[derive(Debug, Clone)]
enum Weights {
    /// The CPU in f32.
    Panels(Panels),
    Candle(candle_nn::Linear),
}

#[derive(Debug, Clone)]
pub struct Linear {
    weights: Weights,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let weights = if weight.device().is_cpu() && weight.dtype() == DType::F32 {
            Weights::Panels(Panels::new(&weight, bias.as_ref())?)
        } else {
            Weights::Candle(candle_nn::Linear::new(weight, bias))
        };
        Ok(Self { weights })
    }

    /// `weight` `[out, in]` and `bias`, named and initialised like
    /// `candle_nn::linear`.
    pub fn load(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        let linear = candle_nn::linear(c_in, c_out, vb)?;
        Self::new(linear.weight().clone(), linear.bias().cloned())
    }

    /// Like `candle_nn::linear_no_bias`.
    pub fn load_no_bias(c_in: usize, c_out: usize, vb: VarBuilder) -> Result<Self> {
        let linear = candle_nn::linear_no_bias(c_in, c_out, vb)?;
        Self::new(linear.weight().clone(), None)
    }
}

impl Module for Linear {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        match &self.weights {
            Weights::Panels(panels) => xs.contiguous()?.apply_op1_no_bwd(panels),
            Weights::Candle(linear) => linear.forward(xs),
        }
    }
}

impl Panels {
    fn new(weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let (c_out, c_in) = weight.dims2()?;
        let rows = weight.to_vec2::<f32>()?;
        let mut packed = Vec::with_capacity(c_out * c_in);
        for first in (0..c_out).step_by(PANEL) {
            let outputs = &rows[first..(first + PANEL).min(c_out)];
            for i in 0..c_in {
                packed.extend(outputs.iter().map(|row| row[i]));
            }
        }
        let bias = match bias {
            Some(bias) => Some(Arc::new(bias.to_vec1::<f32>()?)),
            None => None,
        };
        Ok(Self {
            weight: Arc::new(packed),
            bias,
            c_in,
            c_out,
        })
    }
}

impl CustomOp1 for Panels {
    fn name(&self) -> &'static str {
        "wordup-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (c_in, c_out) = (self.c_in, self.c_out);
        let mut dims = layout.dims().to_vec();
        if dims.last() != Some(&c_in) {
            candle_core::bail!("linear: input {dims:?} for {c_in} features");
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("linear: the input must be contiguous");
        };
        let input = &storage.as_slice::<f32>()?[start..end];
        let rows = input.len() / c_in.max(1);
        let mut out = match &self.bias {
            Some(bias) => bias.repeat(rows),
            None => vec![0f32; rows * c_out],
        };
        let tasks: Vec<(usize, usize)> = (0..c_out)
            .step_by(PANEL)
            .flat_map(|first| (0..rows).step_by(ROW_BLOCK).map(move |row| (first, row)))
            .collect();
        let shared = SharedOut(out.as_mut_ptr());
        let read_out = self.bias.is_some();
        tasks.into_par_iter().for_each(|(first, row)| {
            let width = PANEL.min(c_out - first);
            let block = ROW_BLOCK.min(rows - row);
            let panel = &self.weight[first * c_in..][..c_in * width];
            let x = &input[row * c_in..][..block * c_in];
            #[allow(unsafe_code)]
            // SAFETY: the task writes outputs `first..first + width` of rows
            // `row..row + block` of `out` (rows × c_out) alone; `panel` is
            // c_in × width and `x` block × c_in.
            unsafe {
                gemm::gemm(
                    width,
                    block,
                    c_in,
                    shared.get().add(row * c_out + first),
                    c_out as isize,
                    1,
                    read_out,
                    panel.as_ptr(),
                    width as isize,
                    1,
                    x.as_ptr(),
                    c_in as isize,
                    1,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
        if let Some(last) = dims.last_mut() {
            *last = c_out;
        }
        Ok((CpuStorage::F32(out), Shape::from(dims)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn matches_candles_linear() -> Result<()> {
        let dev = Device::Cpu;
        // Outputs in one panel, in several with a narrower last one; rows
        // in one block and in several.
        for (dims, c_out) in [
            (vec![5, 7], 6),
            (vec![2, 77, 7], 6),
            (vec![2, 3, 4, 7], 6),
            (vec![1, 300, 7], 6),
            (vec![2, 77, 33], 300),
            (vec![1, 600, 20], 130),
        ] {
            let c_in = dims[dims.len() - 1];
            let x = Tensor::randn(0f32, 1.0, dims.as_slice(), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (c_out, c_in), &dev)?;
            let b = Tensor::randn(0f32, 1.0, c_out, &dev)?;
            for bias in [Some(b.clone()), None] {
                let expected = candle_nn::Linear::new(w.clone(), bias.clone()).forward(&x)?;
                let got = Linear::new(w.clone(), bias)?.forward(&x)?;
                assert_eq!(got.dims(), expected.dims());
                let diff = (got - expected)?
                    .abs()?
                    .flatten_all()?
                    .max(0)?
                    .to_scalar::<f32>()?;
                assert!(diff < 1e-4, "{dims:?}: max diff {diff}");
            }
        }
        Ok(())
    }
}
