//! GroupNorm, optionally followed by SiLU, in one op: on the CPU in f32 one
//! pass over each group (statistics in f64); on CUDA in any float dtype,
//! three launches (`group_norm.cu`: partial sums, statistics, one
//! normalising pass) with f32 statistics. candle-nn's GroupNorm is eight
//! tensor ops, each a full pass over the activations, and SiLU a ninth; at
//! the VAE decoder's full-resolution layers those passes cost as much as a
//! convolution. Elsewhere (CPU f16, Metal) candle's ops run.

#[cfg(feature = "cuda")]
mod cuda;

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Module, Result, Shape, Tensor};
use candle_nn::VarBuilder;

use super::softmax::fast_exp;

#[derive(Debug, Clone)]
pub struct GroupNorm {
    inner: candle_nn::GroupNorm,
    weight: Tensor,
    bias: Tensor,
    groups: usize,
    eps: f64,
}

impl GroupNorm {
    /// Loads `weight` and `bias` like `candle_nn::group_norm`.
    pub fn load(groups: usize, channels: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(channels, "weight", candle_nn::Init::Const(1.))?;
        let bias = vb.get_with_hints(channels, "bias", candle_nn::Init::Const(0.))?;
        Ok(Self {
            inner: candle_nn::GroupNorm::new(weight.clone(), bias.clone(), channels, groups, eps)?,
            weight,
            bias,
            groups,
            eps,
        })
    }

    /// Whether our op runs for `x` (else candle's ops do).
    fn fused(&self, x: &Tensor) -> bool {
        let same_dtype = x.dtype() == self.weight.dtype() && x.dtype() == self.bias.dtype();
        match x.device() {
            Device::Cpu => same_dtype && x.dtype() == DType::F32,
            // Each image's planes are one grid row of the kernel.
            Device::Cuda(_) => {
                same_dtype
                    && cfg!(feature = "cuda")
                    && matches!(x.dtype(), DType::F32 | DType::F16 | DType::BF16)
                    && x.rank() >= 3
                    && x.dims()[0] * x.dims()[1] <= MAX_GRID_Y
            }
            _ => false,
        }
    }

    fn run(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        if self.fused(x) {
            let op = GroupNormOp {
                groups: self.groups,
                eps: self.eps,
                silu,
            };
            return x
                .contiguous()?
                .apply_op3_no_bwd(&self.weight, &self.bias, &op);
        }
        self.forward_unfused(x, silu)
    }

    /// `silu(group_norm(x))`, the pair every ResNet block starts with.
    pub fn forward_silu(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, true)
    }

    /// candle's unfused ops, whatever the device: where our op does not
    /// run, and the reference it is measured against (`sd-bench parts`).
    pub fn forward_unfused(&self, x: &Tensor, silu: bool) -> Result<Tensor> {
        let y = self.inner.forward(x)?;
        if silu {
            candle_nn::ops::silu(&y)
        } else {
            Ok(y)
        }
    }
}

impl Module for GroupNorm {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.run(x, false)
    }
}

/// `x`, `weight` and `bias` in; `x` must be contiguous `[batch, channels, ...]`.
struct GroupNormOp {
    groups: usize,
    eps: f64,
    silu: bool,
}

/// What the op normalises: `batch` images of `channels` planes of `plane`
/// values each, in `groups` groups per image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Extent {
    batch: usize,
    channels: usize,
    plane: usize,
    groups: usize,
}

impl Extent {
    fn of(layout: &Layout, weights: usize, groups: usize) -> Result<Self> {
        let dims = layout.dims();
        if dims.len() < 3 {
            candle_core::bail!("group norm: expected [batch, channels, ...], got {dims:?}");
        }
        let channels = dims[1];
        if channels != weights || groups == 0 || !channels.is_multiple_of(groups) {
            candle_core::bail!(
                "group norm: {channels} channels for {weights} weights in {groups} groups"
            );
        }
        if !layout.is_contiguous() {
            candle_core::bail!("group norm: the input must be contiguous");
        }
        Ok(Self {
            batch: dims[0],
            channels,
            plane: dims[2..].iter().product(),
            groups,
        })
    }

    /// The values of one group, contiguous in NCHW.
    fn span(self) -> usize {
        self.channels / self.groups * self.plane
    }
}

/// Threads per block of every CUDA launch (a multiple of 32, as the block
/// sum needs).
const THREADS: u32 = 256;
/// About this many values per block of the CUDA partial sums.
const VALUES_PER_SPLIT: usize = 16 * 1024;
/// At most this many blocks per plane in the CUDA normalising pass: each
/// thread then loops over a few values, and the block's scale and shift are
/// read once.
const BLOCKS_PER_PLANE: usize = 64;
/// CUDA's limit on a grid's y dimension (the kernel's planes and groups).
const MAX_GRID_Y: usize = 65_535;

/// How the launches split the work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
struct Grids {
    /// Blocks summing each group.
    splits: usize,
    /// Blocks normalising each plane.
    plane_blocks: usize,
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
fn grids(extent: Extent) -> Grids {
    Grids {
        splits: extent.span().div_ceil(VALUES_PER_SPLIT).clamp(1, 1024),
        plane_blocks: extent
            .plane
            .div_ceil(THREADS as usize * 4)
            .clamp(1, BLOCKS_PER_PLANE),
    }
}

/// The contiguous values a layout covers.
fn contiguous<'a, T>(values: &'a [T], layout: &Layout, what: &str) -> Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&values[start..end]),
        None => candle_core::bail!("group norm: the {what} must be contiguous"),
    }
}

impl CustomOp3 for GroupNormOp {
    fn name(&self) -> &'static str {
        "wordup-group-norm"
    }

    fn cpu_fwd(
        &self,
        x: &CpuStorage,
        x_layout: &Layout,
        weight: &CpuStorage,
        weight_layout: &Layout,
        bias: &CpuStorage,
        bias_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let weight = contiguous(weight.as_slice::<f32>()?, weight_layout, "weight")?;
        let bias = contiguous(bias.as_slice::<f32>()?, bias_layout, "bias")?;
        let extent = Extent::of(x_layout, weight.len(), self.groups)?;
        let input = contiguous(x.as_slice::<f32>()?, x_layout, "input")?;
        let per_group = extent.channels / self.groups;
        let mut out = vec![0f32; input.len()];
        super::for_each_row(&mut out, input, extent.span(), |index, out, input| {
            let first = (index % self.groups) * per_group;
            let params = Params {
                weight: &weight[first..first + per_group],
                bias: &bias[first..first + per_group],
            };
            self.normalise_group(input, out, extent.plane, params);
        });
        Ok((CpuStorage::F32(out), x_layout.shape().clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        x: &candle_core::CudaStorage,
        x_layout: &Layout,
        weight: &candle_core::CudaStorage,
        weight_layout: &Layout,
        bias: &candle_core::CudaStorage,
        bias_layout: &Layout,
    ) -> Result<(candle_core::CudaStorage, Shape)> {
        let weights = weight_layout.shape().elem_count();
        let extent = Extent::of(x_layout, weights, self.groups)?;
        let out = cuda::group_norm(
            cuda::Operands {
                x: (x, x_layout),
                weight: (weight, weight_layout),
                bias: (bias, bias_layout),
            },
            extent,
            self.eps as f32,
            self.silu,
        )?;
        Ok((out, x_layout.shape().clone()))
    }
}

/// The weights and biases of one group's channels.
#[derive(Clone, Copy)]
struct Params<'a> {
    weight: &'a [f32],
    bias: &'a [f32],
}

impl GroupNormOp {
    fn normalise_group(&self, input: &[f32], out: &mut [f32], plane: usize, params: Params) {
        let n = input.len() as f64;
        let mean = lane_sum(input, |v| v, 0.0) / n;
        let var = lane_sum(input, |v| v * v, mean as f32) / n;
        let inv_std = 1.0 / (var + self.eps).sqrt();
        for (c, (out, input)) in out.chunks_mut(plane).zip(input.chunks(plane)).enumerate() {
            // y = x·scale + shift, with the mean folded into the shift.
            let scale = (inv_std * params.weight[c] as f64) as f32;
            let shift = (params.bias[c] as f64 - mean * inv_std * params.weight[c] as f64) as f32;
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

    #[test]
    fn every_group_and_plane_gets_blocks_within_the_limits() {
        // (batch, channels, plane, groups) → (splits, blocks per plane)
        let cases = [
            ((1, 128, 512 * 512, 32), (64, 64)),
            ((4, 320, 64 * 64, 32), (3, 4)),
            ((1, 4, 1, 2), (1, 1)),
            ((1, 32, 2048 * 2048 * 16, 1), (1024, 64)),
        ];
        for ((batch, channels, plane, groups), (splits, plane_blocks)) in cases {
            let extent = Extent {
                batch,
                channels,
                plane,
                groups,
            };
            assert_eq!(
                grids(extent),
                Grids {
                    splits,
                    plane_blocks
                },
                "{extent:?}"
            );
        }
    }
}
