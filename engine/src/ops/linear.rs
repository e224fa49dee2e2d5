//! A linear layer whose weight the CPU keeps transposed (`[in, out]`). gemm
//! multiplies `x · Wᵀ` with the stored `[out, in]` weight only after
//! repacking it on every call, which for the text encoder's 77 tokens cost
//! more than the product (2–3× slower than PyTorch per layer); `[in, out]`
//! is the layout its kernel reads directly. Elsewhere candle's layer runs.

use candle_core::{D, DType, Module, Result, Tensor};
use candle_nn::VarBuilder;

/// Below this many rows (the text encoder's 77 tokens, say) gemm splits the
/// work between threads poorly; the output's columns are split between
/// two single-threaded products instead.
const FEW_ROWS: usize = 256;

#[derive(Debug, Clone)]
enum Weights {
    /// `[in, out]`, contiguous: the CPU in f32.
    Transposed {
        weight_t: Tensor,
        bias: Option<Tensor>,
    },
    Candle(candle_nn::Linear),
}

#[derive(Debug, Clone)]
pub struct Linear {
    weights: Weights,
}

impl Linear {
    pub fn new(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        let weights = if weight.device().is_cpu() && weight.dtype() == DType::F32 {
            Weights::Transposed {
                weight_t: weight.t()?.contiguous()?,
                bias,
            }
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
            Weights::Transposed { weight_t, bias } => {
                let ys = if xs.elem_count() / xs.dim(D::Minus1)? < FEW_ROWS {
                    halves(xs, weight_t)?
                } else {
                    xs.broadcast_matmul(weight_t)?
                };
                match bias {
                    Some(bias) => ys.broadcast_add(bias),
                    None => Ok(ys),
                }
            }
            Weights::Candle(linear) => linear.forward(xs),
        }
    }
}

/// `xs · weight_t`, the two halves of the output's columns computed on two
/// threads (rayon runs gemm's own splitting inline when both are busy).
fn halves(xs: &Tensor, weight_t: &Tensor) -> Result<Tensor> {
    let n = weight_t.dim(1)?;
    if n < 2 || rayon::current_num_threads() < 2 {
        return xs.broadcast_matmul(weight_t);
    }
    let (left, right) = rayon::join(
        || xs.broadcast_matmul(&weight_t.narrow(1, 0, n / 2)?),
        || xs.broadcast_matmul(&weight_t.narrow(1, n / 2, n - n / 2)?),
    );
    Tensor::cat(&[left?, right?], D::Minus1)
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;

    #[test]
    fn matches_candles_linear() -> Result<()> {
        let dev = Device::Cpu;
        // Few rows (split in halves) and many (one product).
        for dims in [
            vec![5, 7],
            vec![2, 77, 7],
            vec![2, 3, 4, 7],
            vec![1, 300, 7],
        ] {
            let x = Tensor::randn(0f32, 1.0, dims.as_slice(), &dev)?;
            let w = Tensor::randn(0f32, 1.0, (6, 7), &dev)?;
            let b = Tensor::randn(0f32, 1.0, 6, &dev)?;
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
