//! GroupNorm, optionally followed by SiLU, in one pass over each group on
//! the CPU in f32 (statistics in f64). candle-nn's GroupNorm is eight tensor
//! ops, each a full pass over the activations, and SiLU a ninth; at the VAE
//! decoder's full-resolution layers those passes cost as much as a
//! convolution. Elsewhere (CUDA, f16) candle's ops run.

use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;

use super::softmax::fast_exp;

#[derive(Debug)]
struct HostParams {
    weight: Vec<f32>,
    bias: Vec<f32>,
}

#[derive(Debug, Clone)]
pub struct GroupNorm {
    inner: candle_nn::GroupNorm,
    groups: usize,
    eps: f64,
    host: Option<Arc<HostParams>>,
}

impl GroupNorm {
    /// Loads `weight` and `bias` like `candle_nn::group_norm`.
    pub fn load(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.))?;
        let bias = vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.))?;
        let host = if weight.device().is_cpu() && weight.dtype() == DType::F32 {
            Some(Arc::new(HostParams {
                weight: weight.to_vec1()?,
                bias: bias.to_vec1()?,
            }))
        } else {
            None
        };
        Ok(Self {
            inner: candle_nn::GroupNorm::new(weight, bias, channels, groups, eps)?,
            groups,
            eps,
            host,
        })
    }

    fn run(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        match &self.host {
            Some(host) if x.device().is_cpu() && x.dtype() == DType::F32 => {
                x.contiguous()?.apply_op1_no_bwd(&GroupNormOp {
                    groups: self.groups,
                    eps: self.eps,
                    silu,
                    host,
                })
            }
            _ => {
                let y = self.inner.forward(x)?;
                if silu {
                    candle_nn::ops::silu(&y)
                } else {
                    Ok(y)
                }
            }
        }
    }

    /// `silu(group_norm(x))`, the pair every ResNet block starts with.
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, true)
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, false)
    }
}

struct GroupNormOp<'a> {
    groups: usize,
    eps: f64,
    silu: bool,
    host: &'a HostParams,
}

impl CustomOp1 for GroupNormOp<'_> {
    fn name(&self) -> &'static str {
        "wordup-group-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let dims = layout.dims();
        if dims.len() < 3 {
            candle_core::bail!("group norm: expected [batch, channels, ...], got {dims:?}");
        }
        let channels = dims[1];
        if channels != self.host.weight.len() || !channels.is_multiple_of(self.groups) {
            candle_core::bail!(
                "group norm: {channels} channels for {} weights in {} groups",
                self.host.weight.len(),
                self.groups
            );
        }
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("group norm: the input must be contiguous");
        };
        let input = &storage.as_slice::<f32>()?[start..end];
        let spatial: usize = dims[2..].iter().product();
        let per_group = channels / self.groups;
        let mut out = vec![0f32; input.len()];
        super::for_each_row(&mut out, input, per_group * spatial, |index, out, input| {
            let first_channel = (index % self.groups) * per_group;
            self.normalise_group(input, out, spatial, first_channel);
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

impl GroupNormOp<'_> {
    fn normalise_group(&self, input: &[f32], out: &mut [f32], spatial: usize, first: usize) {
        let n = input.len() as f64;
        let mean = lane_sum(input, |v| v, 0.0) / n;
        let var = lane_sum(input, |v| v * v, mean as f32) / n;
        let inv_std = 1.0 / (var + self.eps).sqrt();
        for (c, (out, input)) in out
            .chunks_mut(spatial)
            .zip(input.chunks(spatial))
            .enumerate()
        {
            // y = x·scale + shift, with the mean folded into the shift.
            let scale = (inv_std * self.host.weight[first + c] as f64) as f32;
            let shift = (self.host.bias[first + c] as f64
                - mean * inv_std * self.host.weight[first + c] as f64)
                as f32;
            if self.silu {
                // fast_exp's mul_adds are libm calls unless compiled for FMA.
                super::with_fma(|| {
                    for (o, &x) in out.iter_mut().zip(input) {
                        let y = x * scale + shift;
                        *o = y / (1.0 + fast_exp(-y));
                    }
                })
            } else {
                for (o, &x) in out.iter_mut().zip(input) {
                    *o = x * scale + shift;
                }
            }
        }
    }
}

/// Σ f(x − center) over `xs`, in sixteen f32 lanes per block of 1024 (which
/// the compiler vectorises) and f64 across blocks, so that a group of
/// millions of values keeps its precision.
fn lane_sum(xs: &[f32], f: impl Fn(f32) -> f32, center: f32) -> f64 {
    const LANES: usize = 16;
    let mut total = 0f64;
    for block in xs.chunks(1024) {
        let mut lanes = [0f32; LANES];
        let mut chunks = block.chunks_exact(LANES);
        for chunk in &mut chunks {
            for (lane, &x) in lanes.iter_mut().zip(chunk) {
                *lane += f(x - center);
            }
        }
        let rest: f32 = chunks.remainder().iter().map(|&x| f(x - center)).sum();
        total += (lanes.iter().sum::<f32>() + rest) as f64;
    }
    total
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device, Tensor};
    use candle_nn::VarMap;

    use super::*;

    #[test]
    fn matches_candles_group_norm_and_silu() -> Result<()> {
        // (batch, channels, h, w, groups); values far from zero mean, as
        // activations deep in a network are, test the variance's precision.
        for (batch, channels, h, w, groups) in
            [(1, 8, 5, 7, 4), (2, 64, 16, 16, 32), (3, 6, 1, 9, 3)]
        {
            let dev = Device::Cpu;
            let varmap = VarMap::new();
            let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
            GroupNorm::load(groups, channels, 1e-6, vb.clone())?;
            for var in varmap.all_vars() {
                var.set(&Tensor::randn(0f32, 1.0, var.dims(), &dev)?)?;
            }
            // Loaded again: the host copy of the parameters is made at load.
            let ours = GroupNorm::load(groups, channels, 1e-6, vb)?;
            let weight = ours.inner.clone();
            let x = (Tensor::randn(0f32, 3.0, (batch, channels, h, w), &dev)? + 20.0)?;
            let expected = weight.forward(&x)?;
            let diff = (ours.forward(&x)? - &expected)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-4, "group norm: max diff {diff}");
            let expected = candle_nn::ops::silu(&expected)?;
            let diff = (ours.forward_silu(&x)? - expected)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-4, "group norm + silu: max diff {diff}");
        }
        Ok(())
    }
}
