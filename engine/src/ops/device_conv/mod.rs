//! The convolution off the CPU (with its bias and an optional residual
//! added). In a cuDNN build on a CUDA device, each shape gets the fastest of
//! these, chosen once by timing them on its first call and then reused:
//! - candle's cuDNN convolution with each of five algorithms, the bias and
//!   residual then added as tensor ops (f16 accumulates in f16 there);
//! - ours ([`cudnn`]), accumulating f16 and bf16 in f32 on the tensor cores
//!   as PyTorch does: cuDNN's convolution with each of the five algorithms
//!   (f16 and bf16 only; in f32 it is candle's), and cuDNN's fused
//!   convolution + bias + residual (`cudnnConvolutionBiasActivationForward`);
//! - ours through cuDNN's graph API ([`cudnn_graph`]), as PyTorch calls it:
//!   the first [`GRAPH_RANKS`] engines cuDNN's heuristic offers for the
//!   shape, which include kernels the legacy algorithm names do not reach.
//! - our fused call and graph-API engines again on channels-last (NHWC)
//!   copies of the input and weight, the output copied back to NCHW.
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
#[cfg(feature = "cudnn")]
mod cudnn_graph;

use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use candle_core::conv::CudnnFwdAlgo;
use candle_core::{DType, DeviceLocation, Result, Tensor};

use super::choice::{Chosen, time_if_accurate};
use super::transpose::{to_channels_first, to_channels_last};

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

/// How many of the engines cuDNN's heuristic ranks for a shape are tried
/// through the graph API (its first pick, and the next one).
pub const GRAPH_RANKS: usize = 2;

/// Whether the graph-API engines are among the candidates (see
/// [`set_graph_api`]).
static GRAPH_API: AtomicBool = AtomicBool::new(true);

/// Whether shapes chosen from now on try cuDNN's graph-API engines
/// (`WORDUP_NO_CUDNN_GRAPH` turns them off, should a cuDNN release
/// misbehave on them); those already chosen keep their choice.
pub fn set_graph_api(on: bool) {
    GRAPH_API.store(on, Ordering::Relaxed);
}

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
    /// One of our cuDNN calls on channels-last copies: the input and the
    /// weight transposed to NHWC, the output back to NCHW. cuDNN's
    /// tensor-core kernels read NHWC; given NCHW it transposes inside or
    /// runs slower kernels, so this lets its NHWC engines compete.
    OursChannelsLast(Call),
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
    /// The convolution alone through cuDNN's graph API by the engine its
    /// heuristic ranks at this place (0 is its first pick); bias and
    /// residual added as tensor ops.
    Graph(usize),
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
        Some(ours @ (Candidate::Ours(_) | Candidate::OursChannelsLast(_))) => run(x, args, ours)
            .or_else(|error| {
                tracing::debug!(?ours, %error, "our cuDNN convolution failed; candle's runs");
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
        Candidate::OursChannelsLast(call) => channels_last(x, args, call),
    }
}

/// `conv(x) + bias + residual` for NCHW tensors by our `call` on NHWC
/// copies of the input and the weight, the output copied back.
fn channels_last(x: &Tensor, args: ConvArgs, call: Call) -> Result<Tensor> {
    channels_last_with(x, args, |x, args| {
        ours_in(x, args, MemoryFormat::Nhwc, call)
    })
}

/// `conv(x) + bias + residual` for NCHW tensors by `conv_nhwc` (the
/// convolution and bias, every tensor NHWC) on NHWC copies of the input and
/// the weight, the output copied back and the residual added.
fn channels_last_with(
    x: &Tensor,
    args: ConvArgs,
    conv_nhwc: impl FnOnce(&Tensor, ConvArgs) -> Result<Tensor>,
) -> Result<Tensor> {
    let (x_nhwc, weight) = (to_channels_last(x)?, to_channels_last(args.weight)?);
    let nhwc_args = ConvArgs {
        weight: &weight,
        residual: None,
        ..args
    };
    let out = to_channels_first(&conv_nhwc(&x_nhwc, nhwc_args)?)?;
    match args.residual {
        Some(residual) => out + residual,
        None => Ok(out),
    }
}

/// How the tensors of our cuDNN calls are laid out in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryFormat {
    /// `[n, c, h, w]` activations, `[k, c, r, s]` weights: every model's.
    Nchw,
    /// `[n, h, w, c]` activations, `[k, r, s, c]` weights, which cuDNN's
    /// tensor-core kernels read without a transpose; only `sd-bench parts`
    /// runs it, to measure what a channels-last VAE would gain.
    Nhwc,
}

impl MemoryFormat {
    /// The element strides of a logically `[n, c, h, w]` activation (or
    /// `[k, c, r, s]` weight) stored in this format, as cuDNN's graph API
    /// describes tensors.
    pub fn strides(self, [_, c, h, w]: [i64; 4]) -> [i64; 4] {
        match self {
            MemoryFormat::Nchw => [c * h * w, h * w, w, 1],
            MemoryFormat::Nhwc => [h * w * c, 1, w * c, c],
        }
    }
}

/// `conv(x) + bias + residual` by our cuDNN `call`, with every tensor in
/// `format`; an error outside cuDNN builds.
pub fn ours_in(x: &Tensor, args: ConvArgs, format: MemoryFormat, call: Call) -> Result<Tensor> {
    #[cfg(feature = "cudnn")]
    return match call {
        Call::Graph(rank) => cudnn_graph::conv2d(x, args, format, rank),
        _ => cudnn::conv2d(x, args, format, call),
    };
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
/// fused call, in f16 and bf16 (where ours accumulate in f32 and candle's
/// f16 in f16) our call with each of the five, and with `graph_api` the
/// heuristic's first [`GRAPH_RANKS`] engines; then the fused call and those
/// engines again on channels-last copies.
fn candidates(dtype: DType, graph_api: bool) -> Vec<Candidate> {
    let mut candidates: Vec<Candidate> = CANDLE_ALGOS.map(Candidate::Candle).to_vec();
    let mut ours = vec![Call::Fused];
    if dtype != DType::F32 {
        candidates.extend(CANDLE_ALGOS.map(|algo| Candidate::Ours(Call::Plain(algo))));
    }
    if graph_api {
        ours.extend((0..GRAPH_RANKS).map(Call::Graph));
    }
    candidates.extend(ours.iter().copied().map(Candidate::Ours));
    candidates.extend(ours.into_iter().map(Candidate::OursChannelsLast));
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
    candidates(x.dtype(), GRAPH_API.load(Ordering::Relaxed))
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
        use Candidate::{Candle, Ours, OursChannelsLast};
        let cases = [
            (DType::F32, false, 7),
            (DType::F16, false, 12),
            (DType::BF16, false, 12),
            (DType::F32, true, 11),
            (DType::F16, true, 16),
            (DType::BF16, true, 16),
        ];
        for (dtype, graph_api, count) in cases {
            let all = candidates(dtype, graph_api);
            assert_eq!(all.len(), count, "{dtype:?} {graph_api}");
            assert!(all.contains(&Ours(Call::Fused)), "{dtype:?}");
            assert!(all.contains(&OursChannelsLast(Call::Fused)), "{dtype:?}");
            for algo in CANDLE_ALGOS {
                assert!(all.contains(&Candle(algo)), "{dtype:?} {algo:?}");
                let plain = all.contains(&Ours(Call::Plain(algo)));
                assert_eq!(plain, dtype != DType::F32, "{dtype:?} {algo:?}");
            }
            for rank in 0..GRAPH_RANKS {
                for way in [Ours, OursChannelsLast] {
                    let graph = all.contains(&way(Call::Graph(rank)));
                    assert_eq!(graph, graph_api, "{dtype:?} rank {rank}");
                }
            }
            let distinct: std::collections::HashSet<_> = all.iter().collect();
            assert_eq!(distinct.len(), all.len(), "{dtype:?}: a candidate twice");
        }
    }

    #[test]
    fn a_channels_last_run_lays_out_its_copies_as_nhwc_and_answers_in_nchw() {
        let cpu = &candle_core::Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 3, 5, 6), cpu).unwrap();
        let weight = Tensor::randn(0f32, 1.0, (4, 3, 3, 3), cpu).unwrap();
        let bias = Tensor::randn(0f32, 1.0, 4, cpu).unwrap();
        let residual = Tensor::randn(0f32, 1.0, (2, 4, 5, 6), cpu).unwrap();
        let args = ConvArgs {
            weight: &weight,
            bias: Some(&bias),
            residual: Some(&residual),
            padding: 1,
            stride: 1,
        };
        // An NHWC convolution as cuDNN reads one: [n, h, w, c] input,
        // [k, r, s, c] weight, [n, h, w, k] output, the bias along k.
        let conv_nhwc = |x: &Tensor, args: ConvArgs| {
            assert!(args.residual.is_none(), "the residual is added in NCHW");
            let x = x.permute((0, 3, 1, 2))?;
            let weight = args.weight.permute((0, 3, 1, 2))?;
            let out = x.conv2d(&weight, args.padding, args.stride, 1, 1)?;
            plus_bias_and_residual(out.permute((0, 2, 3, 1))?, args, MemoryFormat::Nhwc)
        };
        let expected = candle_conv(&x, args, None).unwrap();
        let actual = channels_last_with(&x, args, conv_nhwc).unwrap();
        assert_eq!(actual.dims(), expected.dims());
        let diff = (actual - &expected).unwrap().abs().unwrap();
        let max = diff
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(max < 1e-4, "{max}");
    }

    #[test]
    fn strides_describe_each_layout_of_a_logically_nchw_tensor() {
        // [n, c, h, w] = [2, 3, 4, 5]
        let dims = [2, 3, 4, 5];
        assert_eq!(MemoryFormat::Nchw.strides(dims), [60, 20, 5, 1]);
        // channels innermost, then columns, then rows
        assert_eq!(MemoryFormat::Nhwc.strides(dims), [60, 1, 15, 3]);
    }
}
