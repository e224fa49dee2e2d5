//! The convolution off the CPU (with its bias and an optional residual
//! added). In a cuDNN build on a CUDA device, each shape gets the fastest of
//! these, chosen once by timing them on its first call and then reused:
//! - candle's cuDNN convolution with each of five algorithms, the bias and
//!   residual then added as tensor ops (f16 accumulates in f16 there);
//! - ours ([`cudnn`]), accumulating f16 and bf16 in f32 on the tensor cores
//!   as PyTorch does: cuDNN's convolution with each of the five algorithms
//!   (f16 and bf16 only; in f32 it is candle's), and cuDNN's fused
//!   convolution + bias + residual (`cudnnConvolutionBiasActivationForward`).
//!
//! A candidate whose output strays from candle's (cuDNN's pick per call) on
//! the first call is not used for the shape.
//!
//! candle, given no algorithm, asks cuDNN for one on every call
//! (`cudnnGetConvolutionForwardAlgorithm_v7`), which cost 2.5–3 ms per call
//! on an H200, more than the 3×3 convolution itself (0.84–1.06 ms with a
//! fixed algorithm, `sd-bench parts`), 66 times per UNet step. Elsewhere
//! candle's convolution runs as is.

#[cfg(feature = "cudnn")]
mod cudnn;

use std::sync::LazyLock;
use std::time::Duration;

use candle_core::conv::CudnnFwdAlgo;
use candle_core::{DType, DeviceLocation, Result, Tensor};

use super::choice::{Chosen, time_if_accurate};

/// candle's algorithms timed for each new shape; the FFT algorithms are left
/// out (their workspaces grow with the image, and they are not chosen for
/// 3×3 or 1×1 kernels in f16).
const CANDLE_ALGOS: [CudnnFwdAlgo; 5] = [
    CudnnFwdAlgo::ImplicitPrecompGemm,
    CudnnFwdAlgo::ImplicitGemm,
    CudnnFwdAlgo::Gemm,
    CudnnFwdAlgo::Winograd,
    CudnnFwdAlgo::WinogradNonFused,
];

/// A candidate is kept for a shape only when its relative L2 distance to
/// candle's output (cuDNN's pick per call) is within this: accumulating in
/// f32 rather than f16, or another algorithm's rounding, moves it by about
/// 1e-3; a wrong layout by about 1 (a non-finite output fails too).
pub const TOLERANCE: f64 = 2e-2;

/// One way to run a convolution.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Candidate {
    /// candle's cuDNN convolution with this algorithm.
    Candle(CudnnFwdAlgo),
    /// One of our cuDNN calls.
    Ours(Call),
}

/// Which of our cuDNN calls (f16 and bf16 accumulate in f32 in both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// Convolution, bias and residual in one call (the implicit
    /// precomputed GEMM, the one algorithm cuDNN fuses them with).
    Fused,
    /// The convolution alone with this algorithm; bias and residual added
    /// as tensor ops.
    Plain(CudnnFwdAlgo),
}

/// A convolution's operands besides its input.
#[derive(Debug, Clone, Copy)]
pub struct ConvArgs<'a> {
    pub weight: &'a Tensor,
    pub bias: Option<&'a Tensor>,
    pub residual: Option<&'a Tensor>,
    pub padding: usize,
    pub stride: usize,
}

/// What a way of running is chosen for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConvKey {
    pub input: Vec<usize>,
    pub weight: Vec<usize>,
    pub padding: usize,
    pub stride: usize,
    pub bias: bool,
    pub residual: bool,
    pub dtype: DType,
    pub device: DeviceLocation,
}

static CHOSEN: LazyLock<Chosen<ConvKey, Candidate>> = LazyLock::new(Chosen::default);

/// `conv(x) + bias + residual`, run the way chosen for its shape on a CUDA
/// device in a cuDNN build, candle's way elsewhere.
pub fn conv2d(x: &Tensor, args: ConvArgs) -> Result<Tensor> {
    if !(cfg!(feature = "cudnn") && x.device().is_cuda()) {
        return candle_conv(x, args, None);
    }
    let key = ConvKey {
        input: x.dims().to_vec(),
        weight: args.weight.dims().to_vec(),
        padding: args.padding,
        stride: args.stride,
        bias: args.bias.is_some(),
        residual: args.residual.is_some(),
        dtype: x.dtype(),
        device: x.device().location(),
    };
    match CHOSEN.get_or_choose(&key, || trials(x, args)) {
        Some(Candidate::Candle(algo)) => candle_conv(x, args, Some(algo)).or_else(|error| {
            // cuDNN may refuse a kept algorithm later (another layout, less
            // memory for its workspace): it then picks one for the call.
            tracing::debug!(?algo, %error, "cuDNN refused the kept algorithm; it picks one");
            candle_conv(x, args, None)
        }),
        Some(Candidate::Ours(call)) => run(x, args, Candidate::Ours(call)).or_else(|error| {
            tracing::debug!(?call, %error, "our cuDNN convolution failed; candle's runs");
            candle_conv(x, args, None)
        }),
        None => candle_conv(x, args, None),
    }
}

/// One candidate's output.
fn run(x: &Tensor, args: ConvArgs, candidate: Candidate) -> Result<Tensor> {
    match candidate {
        Candidate::Candle(algo) => candle_conv(x, args, Some(algo)),
        Candidate::Ours(call) => ours_in(x, args, MemoryFormat::Nchw, call),
    }
}

/// How the tensors of our cuDNN calls are laid out in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryFormat {
    /// `[n, c, h, w]` activations, `[k, c, r, s]` weights: every model's.
    Nchw,
    /// `[n, h, w, c]` activations, `[k, r, s, c]` weights, which cuDNN's
    /// tensor-core kernels read without a transpose; only `sd-bench parts`
    /// runs it, to measure what a channels-last VAE would gain.
    Nhwc,
}

/// `conv(x) + bias + residual` by our cuDNN `call`, with every tensor in
/// `format`; an error outside cuDNN builds.
pub fn ours_in(x: &Tensor, args: ConvArgs, format: MemoryFormat, call: Call) -> Result<Tensor> {
    #[cfg(feature = "cudnn")]
    return cudnn::conv2d(x, args, format, call);
    #[cfg(not(feature = "cudnn"))]
    {
        let _ = (x, args, format, call);
        candle_core::bail!("our cuDNN convolution needs a cuDNN build")
    }
}

/// candle's convolution with `algo` (cuDNN's pick per call when None), then
/// the bias and the residual.
fn candle_conv(x: &Tensor, args: ConvArgs, algo: Option<CudnnFwdAlgo>) -> Result<Tensor> {
    let out = x.conv2d_with_algo(args.weight, args.padding, args.stride, 1, 1, algo)?;
    plus_bias_and_residual(out, args, MemoryFormat::Nchw)
}

/// `out + bias + residual` as tensor ops, the bias along `format`'s channels.
fn plus_bias_and_residual(out: Tensor, args: ConvArgs, format: MemoryFormat) -> Result<Tensor> {
    let out = match (args.bias, format) {
        (Some(bias), MemoryFormat::Nchw) => out.broadcast_add(&bias.reshape((1, (), 1, 1))?)?,
        (Some(bias), MemoryFormat::Nhwc) => out.broadcast_add(bias)?,
        (None, _) => out,
    };
    match args.residual {
        Some(residual) => out + residual,
        None => Ok(out),
    }
}

/// What is tried for a shape in `dtype`: candle's five algorithms, our
/// fused call, and in f16 and bf16 (where ours accumulate in f32 and
/// candle's f16 in f16) our call with each of the five.
fn candidates(dtype: DType) -> Vec<Candidate> {
    let mut candidates: Vec<Candidate> = CANDLE_ALGOS.map(Candidate::Candle).to_vec();
    candidates.push(Candidate::Ours(Call::Fused));
    if dtype != DType::F32 {
        candidates.extend(CANDLE_ALGOS.map(|algo| Candidate::Ours(Call::Plain(algo))));
    }
    candidates
}

/// Each candidate timed on `x`, those whose output strays from candle's own
/// (cuDNN's pick per call) beyond [`TOLERANCE`] left without a time.
fn trials(x: &Tensor, args: ConvArgs) -> Vec<(Candidate, Option<Duration>)> {
    let reference = match candle_conv(x, args, None).and_then(|r| r.to_dtype(DType::F32)) {
        Ok(reference) => reference,
        Err(error) => {
            tracing::debug!(%error, "candle's convolution failed; nothing to choose from");
            return Vec::new();
        }
    };
    candidates(x.dtype())
        .into_iter()
        .map(|candidate| {
            let run = || run(x, args, candidate);
            let time = time_if_accurate(&candidate, x.device(), &reference, TOLERANCE, run);
            (candidate, time)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ours_compete_in_every_dtype_and_plain_calls_only_where_they_accumulate_wider() {
        use Candidate::{Candle, Ours};
        for (dtype, count) in [(DType::F32, 6), (DType::F16, 11), (DType::BF16, 11)] {
            let all = candidates(dtype);
            assert_eq!(all.len(), count, "{dtype:?}");
            assert!(all.contains(&Ours(Call::Fused)), "{dtype:?}");
            for algo in CANDLE_ALGOS {
                assert!(all.contains(&Candle(algo)), "{dtype:?} {algo:?}");
                let plain = all.contains(&Ours(Call::Plain(algo)));
                assert_eq!(plain, dtype != DType::F32, "{dtype:?} {algo:?}");
            }
        }
    }
}
