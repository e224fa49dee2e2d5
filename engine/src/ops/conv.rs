//! 2-D convolution. On the CPU in f32 it is ours: the input's rows are
//! unfolded tile by tile straight from NCHW (each tap of a row is one
//! contiguous copy) and multiplied by the weight as stored, with the product
//! written into the output in place, bias and an optional residual already
//! in it. candle 0.11's CPU path transposes the whole input to NHWC on one
//! thread, gathers its columns element by element and copies the product
//! back, which made the VAE decoder 3.5× slower than PyTorch. Elsewhere
//! (CUDA, f16) [`super::device_conv`] runs: on CUDA with cuDNN, the fastest
//! of candle's convolution and cuDNN's fused one, chosen once per shape.
//!
//! Padding is zeros, or circular (`--tile`): the input wrapped around on
//! both axes, then convolved without padding, on every device.
//!
//! What usually follows a convolution is fused into it on the CPU ([`Fused`]):
//! a nearest-neighbour upsampling of its input (read from the small input
//! while unfolding), a residual, and a ReLU or leaky ReLU applied to each tile
//! while it is in cache. At 512² each of those was a pass over a 64–256 MB
//! tensor, and candle's upsampling gathers element by element.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Conv2dConfig, VarBuilder};
use rayon::prelude::*;

use super::SharedOut;
use super::device_conv::{self, ConvArgs};

/// Output columns (pixels) per tile: a tile's unfolded input is
/// `c_in · k² · TILE_COLUMNS` floats, a few MB, and there are enough tiles
/// to keep every thread busy.
const TILE_COLUMNS: usize = 1024;

/// Shape of one convolution, everything the kernel needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub c_in: usize,
    pub height: usize,
    pub width: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub padding: usize,
    pub stride: usize,
    /// The input is read upsampled by this factor (nearest); 1 reads it as it is.
    pub upsample: usize,
}

impl ConvShape {
    /// Rows of the input as the convolution reads it (upsampled).
    pub fn in_height(&self) -> usize {
        self.height * self.upsample
    }
    /// Columns of the input as the convolution reads it (upsampled).
    pub fn in_width(&self) -> usize {
        self.width * self.upsample
    }
    pub fn out_height(&self) -> usize {
        (self.in_height() + 2 * self.padding - self.kernel) / self.stride + 1
    }
    pub fn out_width(&self) -> usize {
        (self.in_width() + 2 * self.padding - self.kernel) / self.stride + 1
    }
    fn is_pointwise(&self) -> bool {
        self.kernel == 1 && self.stride == 1 && self.padding == 0 && self.upsample == 1
    }
}

/// An activation applied to a convolution's output.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Activation {
    #[default]
    Identity,
    Relu,
    /// `max(x, slope·x)`, for a slope in [0, 1).
    LeakyRelu(f32),
}

impl Activation {
    fn apply(self, values: &mut [f32]) {
        match self {
            Activation::Identity => {}
            Activation::Relu => values.iter_mut().for_each(|v| *v = v.max(0.0)),
            Activation::LeakyRelu(slope) => values
                .iter_mut()
                .for_each(|v| *v = if *v < 0.0 { *v * slope } else { *v }),
        }
    }

    fn apply_to(self, xs: Tensor) -> Result<Tensor> {
        match self {
            Activation::Identity => Ok(xs),
            Activation::Relu => xs.relu(),
            Activation::LeakyRelu(slope) => xs.maximum(&(&xs * f64::from(slope))?),
        }
    }
}

/// What a convolution call does besides convolving: `act(conv(up(x)) + residual)`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Fused<'a> {
    /// Nearest-neighbour upsampling of the input by this factor first (0 or
    /// 1: none).
    pub upsample: usize,
    /// Added to the output (a skip connection), before the activation.
    pub residual: Option<&'a Tensor>,
    pub activation: Activation,
}

impl Fused<'_> {
    /// The activation alone.
    pub fn activation(activation: Activation) -> Fused<'static> {
        Fused {
            activation,
            ..Fused::default()
        }
    }

    /// Upsampling by `factor` alone.
    pub fn upsampled(factor: usize) -> Fused<'static> {
        Fused {
            upsample: factor,
            ..Fused::default()
        }
    }
}

/// What a convolution reads beyond its input's edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PaddingMode {
    #[default]
    Zeros,
    /// The opposite edge, on both axes: the output tiles seamlessly.
    Circular,
}

impl PaddingMode {
    /// Circular for a `--tile` request, zeros otherwise.
    pub fn tiled(tile: bool) -> PaddingMode {
        if tile {
            PaddingMode::Circular
        } else {
            PaddingMode::Zeros
        }
    }
}

/// A padding mode shared by all the convolutions of one model and switched
/// by its owner between runs. A switch rather than a `forward` argument,
/// because models are shared (`&self`) and the mode would otherwise have to
/// be threaded through every block's `forward`; sound as long as one run at
/// a time uses a model, as the pipeline's worker does. Clones share the mode.
#[derive(Debug, Clone, Default)]
pub struct PaddingSwitch(Arc<AtomicBool>);

impl PaddingSwitch {
    pub fn mode(&self) -> PaddingMode {
        PaddingMode::tiled(self.0.load(Ordering::Relaxed))
    }

    /// Sets the mode; returns the previous one.
    pub fn set(&self, mode: PaddingMode) -> PaddingMode {
        PaddingMode::tiled(
            self.0
                .swap(mode == PaddingMode::Circular, Ordering::Relaxed),
        )
    }
}

/// `xs` `[n, c, h, w]` padded by `before` rows and columns at the top and
/// left and `after` at the bottom and right, with zeros or wrapped around.
pub fn pad(xs: &Tensor, mode: PaddingMode, before: usize, after: usize) -> Result<Tensor> {
    match mode {
        PaddingMode::Zeros => xs
            .pad_with_zeros(3, before, after)?
            .pad_with_zeros(2, before, after),
        PaddingMode::Circular => wrap(&wrap(xs, 3, before, after)?, 2, before, after),
    }
}

/// `xs` with its last `before` slices along `dim` put in front and its first
/// `after` slices behind.
fn wrap(xs: &Tensor, dim: usize, before: usize, after: usize) -> Result<Tensor> {
    let size = xs.dim(dim)?;
    if before > size || after > size {
        candle_core::bail!("conv2d: cannot wrap a side of {size} around by {before} and {after}");
    }
    let mut parts = Vec::with_capacity(3);
    if before > 0 {
        parts.push(xs.narrow(dim, size - before, before)?);
    }
    parts.push(xs.clone());
    if after > 0 {
        parts.push(xs.narrow(dim, 0, after)?);
    }
    Tensor::cat(&parts, dim)
}

/// The weight and bias as contiguous host floats, kept beside the tensors
/// so that no call copies them.
#[derive(Debug)]
struct HostWeights {
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
}

/// A convolution layer (`weight` `[c_out, c_in, k, k]`, optional bias),
/// square kernels, no groups or dilation: what Stable Diffusion uses.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    padding: usize,
    stride: usize,
    host: Option<Arc<HostWeights>>,
    /// Zeros unless [`Conv2d::with_padding`] shared a model's switch.
    padding_mode: PaddingSwitch,
}

impl Conv2d {
    pub fn new(
        weight: Tensor,
        bias: Option<Tensor>,
        padding: usize,
        stride: usize,
    ) -> Result<Self> {
        let (_, _, kh, kw) = weight.dims4()?;
        if kh != kw {
            candle_core::bail!("conv2d: only square kernels are supported, got {kh}×{kw}");
        }
        let host = if weight.device().is_cpu() && weight.dtype() == DType::F32 {
            Some(Arc::new(HostWeights {
                weight: weight.flatten_all()?.to_vec1()?,
                bias: bias.as_ref().map(|b| b.to_vec1()).transpose()?,
            }))
        } else {
            None
        };
        Ok(Self {
            weight,
            bias,
            padding,
            stride,
            host,
            padding_mode: PaddingSwitch::default(),
        })
    }

    /// This convolution with its padding mode taken from `switch`.
    pub fn with_padding(mut self, switch: &PaddingSwitch) -> Self {
        self.padding_mode = switch.clone();
        self
    }

    /// The padding mode the next call runs with.
    pub fn padding_mode(&self) -> PaddingMode {
        self.padding_mode.mode()
    }

    /// Loads `weight` and `bias` like `candle_nn::conv2d` (same names, same
    /// initialisation for random models).
    pub fn load(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Self::load_with_bias(true, c_in, c_out, kernel, padding, stride, vb)
    }

    /// Loads `weight` alone, like `candle_nn::conv2d_no_bias`.
    pub fn load_no_bias(
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        Self::load_with_bias(false, c_in, c_out, kernel, padding, stride, vb)
    }

    fn load_with_bias(
        bias: bool,
        c_in: usize,
        c_out: usize,
        kernel: usize,
        padding: usize,
        stride: usize,
        vb: VarBuilder,
    ) -> Result<Self> {
        let cfg = Conv2dConfig {
            padding,
            stride,
            ..Default::default()
        };
        let conv = if bias {
            candle_nn::conv2d(c_in, c_out, kernel, cfg, vb)?
        } else {
            candle_nn::conv2d_no_bias(c_in, c_out, kernel, cfg, vb)?
        };
        Self::new(conv.weight().clone(), conv.bias().cloned(), padding, stride)
    }

    fn shape_for(&self, x: &Tensor, padding: usize, upsample: usize) -> Result<ConvShape> {
        let (batch, c_in, height, width) = x.dims4()?;
        let (c_out, w_in, kernel, _) = self.weight.dims4()?;
        if w_in != c_in {
            candle_core::bail!("conv2d: input has {c_in} channels, the weight expects {w_in}");
        }
        Ok(ConvShape {
            batch,
            c_in,
            height,
            width,
            c_out,
            kernel,
            padding,
            stride: self.stride,
            upsample,
        })
    }

    fn host_for(&self, x: &Tensor) -> Option<&Arc<HostWeights>> {
        self.host
            .as_ref()
            .filter(|_| x.device().is_cpu() && x.dtype() == DType::F32)
    }

    /// `conv(x) + residual`, the residual added inside the kernel on the
    /// CPU (a ResNet block's skip connection costs no extra pass).
    pub fn forward_plus(&self, x: &Tensor, residual: &Tensor) -> Result<Tensor> {
        self.forward_fused(
            x,
            Fused {
                residual: Some(residual),
                ..Fused::default()
            },
        )
    }

    /// `act(conv(up(x)) + residual)` as `fused` says, in one pass on the CPU.
    pub fn forward_fused(&self, x: &Tensor, fused: Fused) -> Result<Tensor> {
        let upsample = fused.upsample.max(1);
        // A circular padding wraps the input as read, so the upsampling
        // comes first; elsewhere candle's ops run anyway.
        if upsample > 1
            && (self.host_for(x).is_none() || self.padding_mode() == PaddingMode::Circular)
        {
            let (_, _, h, w) = x.dims4()?;
            let up = x.upsample_nearest2d(h * upsample, w * upsample)?;
            return self.forward_fused(
                &up,
                Fused {
                    upsample: 1,
                    ..fused
                },
            );
        }
        let (x, padding) = self.padded(x)?;
        match self.host_for(&x) {
            Some(host) => {
                let op = ConvOp {
                    shape: self.shape_for(&x, padding, upsample)?,
                    host,
                    activation: fused.activation,
                };
                let x = x.contiguous()?;
                match fused.residual {
                    Some(residual) => x.apply_op2_no_bwd(&residual.contiguous()?, &op),
                    None => x.apply_op1_no_bwd(&op),
                }
            }
            None => {
                let args = ConvArgs {
                    weight: &self.weight,
                    bias: self.bias.as_ref(),
                    residual: fused.residual,
                    padding,
                    stride: self.stride,
                };
                fused.activation.apply_to(device_conv::conv2d(&x, args)?)
            }
        }
    }

    /// The input as the kernel reads it and the padding left to the kernel:
    /// a circular padding is done here, on every device.
    fn padded(&self, x: &Tensor) -> Result<(Tensor, usize)> {
        match self.padding_mode() {
            PaddingMode::Circular if self.padding > 0 => Ok((
                pad(x, PaddingMode::Circular, self.padding, self.padding)?,
                0,
            )),
            _ => Ok((x.clone(), self.padding)),
        }
    }
}

impl Module for Conv2d {
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_fused(x, Fused::default())
    }
}

struct ConvOp<'a> {
    shape: ConvShape,
    host: &'a HostWeights,
    activation: Activation,
}

fn contiguous_f32<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
    let data = storage.as_slice::<f32>()?;
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => candle_core::bail!("conv2d: the input must be contiguous"),
    }
}

impl ConvOp<'_> {
    fn output_shape(&self) -> Shape {
        let s = self.shape;
        Shape::from((s.batch, s.c_out, s.out_height(), s.out_width()))
    }

    fn run(&self, input: &[f32], residual: Option<&[f32]>) -> Vec<f32> {
        let s = self.shape;
        let plane = s.out_height() * s.out_width();
        // Zeroed lazily by the OS: each tile's thread touches its own pages.
        let mut out = vec![0f32; s.batch * s.c_out * plane];
        let terms = Terms {
            bias: self.host.bias.as_deref(),
            residual,
            activation: self.activation,
        };
        conv2d(&s, input, &self.host.weight, terms, &mut out);
        out
    }
}

impl CustomOp1 for ConvOp<'_> {
    fn name(&self) -> &'static str {
        "wordup-conv2d"
    }
    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(storage, layout)?;
        Ok((CpuStorage::F32(self.run(input, None)), self.output_shape()))
    }
}

impl CustomOp2 for ConvOp<'_> {
    fn name(&self) -> &'static str {
        "wordup-conv2d-plus"
    }
    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let input = contiguous_f32(s1, l1)?;
        let residual = contiguous_f32(s2, l2)?;
        let shape = self.output_shape();
        if residual.len() != shape.elem_count() {
            candle_core::bail!("conv2d: the residual does not match the output {shape:?}");
        }
        Ok((CpuStorage::F32(self.run(input, Some(residual))), shape))
    }
}

/// What is added to a convolution's product and applied to it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Terms<'a> {
    /// Per output channel.
    pub bias: Option<&'a [f32]>,
    /// Shaped as the output.
    pub residual: Option<&'a [f32]>,
    pub activation: Activation,
}

/// `out = act(weight ⊛ up(input) + bias + residual)`, all NCHW, contiguous.
/// Each tile of output rows is set up, multiplied into and activated by one
/// thread, while it is in that thread's cache.
pub fn conv2d(s: &ConvShape, input: &[f32], weight: &[f32], terms: Terms, out: &mut [f32]) {
    let (oh, ow) = (s.out_height(), s.out_width());
    let plane = oh * ow;
    let depth = s.c_in * s.kernel * s.kernel;
    assert_eq!(input.len(), s.batch * s.c_in * s.height * s.width);
    assert_eq!(weight.len(), s.c_out * depth);
    assert_eq!(out.len(), s.batch * s.c_out * plane);
    if let Some(bias) = terms.bias {
        assert_eq!(bias.len(), s.c_out);
    }
    if let Some(residual) = terms.residual {
        assert_eq!(residual.len(), out.len());
    }
    let read_out = terms.bias.is_some() || terms.residual.is_some();

    // Tiles are runs of whole output rows of one image.
    let threads = rayon::current_num_threads().max(1);
    let mut rows = TILE_COLUMNS.div_ceil(ow).clamp(1, oh);
    while rows > 1 && s.batch * oh.div_ceil(rows) < 2 * threads {
        rows = rows.div_ceil(2);
    }
    let tiles: Vec<(usize, usize)> = (0..s.batch)
        .flat_map(|b| (0..oh).step_by(rows).map(move |r| (b, r)))
        .collect();
    let shared = SharedOut(out.as_mut_ptr());

    tiles.into_par_iter().for_each_init(
        || (Vec::new(), Vec::new()),
        |(columns, line), (b, first_row)| {
            let last_row = (first_row + rows).min(oh);
            let n = (last_row - first_row) * ow;
            let image = &input[b * s.c_in * s.height * s.width..][..s.c_in * s.height * s.width];
            let (rhs, rhs_rs): (&[f32], usize) = if s.is_pointwise() {
                (&image[first_row * s.width..], s.height * s.width)
            } else {
                columns.resize(depth * n, 0.0);
                unfold(s, image, first_row, last_row, columns, line);
                (columns.as_slice(), n)
            };
            let tile_start = b * s.c_out * plane + first_row * ow;
            // This tile's span of output channel `c`.
            // Every value of a span is written: here from the bias or the
            // residual, or by gemm when there is neither.
            if read_out {
                for c in 0..s.c_out {
                    #[allow(unsafe_code)]
                    // SAFETY: rows [first_row, last_row) of image `b` belong
                    // to this tile alone, in every channel; the span is inside
                    // `out`, and it is the only reference to it while it lives.
                    let span = unsafe { tile_span(shared, tile_start + c * plane, n) };
                    let bias = terms.bias.map_or(0.0, |bias| bias[c]);
                    match terms.residual {
                        Some(residual) => span
                            .iter_mut()
                            .zip(&residual[tile_start + c * plane..][..n])
                            .for_each(|(v, &r)| *v = r + bias),
                        None => span.fill(bias),
                    }
                }
            }
            #[allow(unsafe_code)]
            // SAFETY: as for the spans: the destination is this tile's rows in
            // every output channel; the pointers and strides stay inside
            // `out`, `weight` and `rhs`.
            unsafe {
                gemm::gemm(
                    s.c_out,
                    n,
                    depth,
                    shared.get().add(tile_start),
                    1,
                    plane as isize,
                    read_out,
                    weight.as_ptr(),
                    1,
                    depth as isize,
                    rhs.as_ptr(),
                    1,
                    rhs_rs as isize,
                    1.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            if terms.activation != Activation::Identity {
                for c in 0..s.c_out {
                    #[allow(unsafe_code)]
                    // SAFETY: as above; gemm has returned.
                    let span = unsafe { tile_span(shared, tile_start + c * plane, n) };
                    terms.activation.apply(span);
                }
            }
        },
    );
}

/// `n` values of the output from `start`: one output channel's part of a tile.
///
/// # Safety
/// The span must lie inside the output, belong to the calling tile alone,
/// and be the only reference to those values while it lives.
#[allow(unsafe_code)]
unsafe fn tile_span<'a>(out: SharedOut, start: usize, n: usize) -> &'a mut [f32] {
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts_mut(out.get().add(start), n) }
}

/// im2col for output rows `[first_row, last_row)` of one image: row
/// `(c·k + ky)·k + kx` holds the input pixel under tap (ky, kx) of channel c
/// for every output pixel of the tile, zero where the tap falls in the
/// padding. `line` holds an upsampled input row.
fn unfold(
    s: &ConvShape,
    image: &[f32],
    first_row: usize,
    last_row: usize,
    columns: &mut [f32],
    line: &mut Vec<f32>,
) {
    let ow = s.out_width();
    let n = (last_row - first_row) * ow;
    let k = s.kernel;
    for c in 0..s.c_in {
        let channel = &image[c * s.height * s.width..][..s.height * s.width];
        for ky in 0..k {
            let taps = &mut columns[(c * k + ky) * k * n..][..k * n];
            for (i, y) in (first_row..last_row).enumerate() {
                let iy = (y * s.stride + ky) as isize - s.padding as isize;
                if iy < 0 || iy >= s.in_height() as isize {
                    for kx in 0..k {
                        taps[kx * n + i * ow..][..ow].fill(0.0);
                    }
                    continue;
                }
                let source = &channel[iy as usize / s.upsample * s.width..][..s.width];
                let read: &[f32] = if s.upsample == 1 {
                    source
                } else {
                    line.clear();
                    line.extend(
                        source
                            .iter()
                            .flat_map(|&v| std::iter::repeat_n(v, s.upsample)),
                    );
                    line
                };
                for kx in 0..k {
                    fill_taps(s, read, kx, &mut taps[kx * n + i * ow..][..ow]);
                }
            }
        }
    }
}

/// `segment[x] = line[x·stride + kx − padding]`, zero outside the line.
fn fill_taps(s: &ConvShape, line: &[f32], kx: usize, segment: &mut [f32]) {
    let ow = segment.len();
    let width = line.len();
    let offset = kx as isize - s.padding as isize;
    // Output columns whose tap lands inside the line: lo ≤ x < hi.
    let lo = if offset < 0 {
        ((-offset) as usize).div_ceil(s.stride)
    } else {
        0
    };
    let hi = if (width as isize) > offset {
        ((width as isize - offset) as usize)
            .div_ceil(s.stride)
            .min(ow)
    } else {
        0
    };
    if lo >= hi {
        segment.fill(0.0);
        return;
    }
    segment[..lo].fill(0.0);
    segment[hi..].fill(0.0);
    let start = (lo * s.stride) as isize + offset;
    if s.stride == 1 {
        segment[lo..hi].copy_from_slice(&line[start as usize..start as usize + (hi - lo)]);
    } else {
        for (x, v) in segment[lo..hi].iter_mut().enumerate() {
            *v = line[start as usize + x * s.stride];
        }
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor};

    use super::*;

    /// Every kind of convolution Stable Diffusion has, against candle's own.
    #[test]
    fn matches_candles_convolution() -> Result<()> {
        let cases = [
            // (batch, c_in, h, w, c_out, kernel, padding, stride)
            (1, 3, 9, 7, 5, 3, 1, 1),
            (2, 8, 16, 16, 4, 3, 1, 1),
            (1, 4, 5, 6, 7, 1, 0, 1),
            (2, 6, 17, 9, 3, 3, 0, 2),
            (1, 5, 8, 8, 6, 3, 1, 2),
            (1, 16, 40, 33, 8, 3, 1, 1),
        ];
        for (batch, c_in, h, w, c_out, k, padding, stride) in cases {
            let dev = Device::Cpu;
            let x = Tensor::randn(0f32, 1.0, (batch, c_in, h, w), &dev)?;
            let weight = Tensor::randn(0f32, 1.0, (c_out, c_in, k, k), &dev)?;
            let bias = Tensor::randn(0f32, 1.0, c_out, &dev)?;
            let ours = Conv2d::new(weight.clone(), Some(bias.clone()), padding, stride)?;
            let expected = x
                .conv2d(&weight, padding, stride, 1, 1)?
                .broadcast_add(&bias.reshape((1, c_out, 1, 1))?)?;
            let got = ours.forward(&x)?;
            assert_eq!(got.dims(), expected.dims());
            let diff = (got - &expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert!(
                diff < 1e-4,
                "case {:?}: max diff {diff}",
                (batch, c_in, h, w, k, padding, stride)
            );

            let residual = Tensor::randn(0f32, 1.0, expected.dims(), &dev)?;
            let got = ours.forward_plus(&x, &residual)?;
            let diff = (got - (expected + residual)?)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-4, "residual case: max diff {diff}");
        }
        Ok(())
    }

    /// Upsampling, a residual and each activation fused into the kernel
    /// give what candle's ops give one after another.
    #[test]
    fn fused_terms_match_candles_ops() -> Result<()> {
        let cases = [
            // (batch, c_in, h, w, c_out, kernel, padding, stride, upsample)
            (1, 3, 5, 4, 5, 3, 1, 1, 2),
            (2, 8, 8, 7, 4, 3, 1, 1, 2),
            (1, 4, 3, 5, 6, 1, 0, 1, 2),
            (1, 5, 6, 6, 3, 3, 1, 2, 2),
            (1, 6, 4, 3, 4, 3, 1, 1, 3),
            (1, 16, 20, 17, 8, 3, 1, 1, 1),
        ];
        let activations = [
            Activation::Identity,
            Activation::Relu,
            Activation::LeakyRelu(0.2),
        ];
        for (batch, c_in, h, w, c_out, k, padding, stride, upsample) in cases {
            let dev = Device::Cpu;
            let x = Tensor::randn(0f32, 1.0, (batch, c_in, h, w), &dev)?;
            let weight = Tensor::randn(0f32, 1.0, (c_out, c_in, k, k), &dev)?;
            let bias = Tensor::randn(0f32, 1.0, c_out, &dev)?;
            let conv = x
                .upsample_nearest2d(h * upsample, w * upsample)?
                .conv2d(&weight, padding, stride, 1, 1)?
                .broadcast_add(&bias.reshape((1, c_out, 1, 1))?)?;
            let residual = Tensor::randn(0f32, 1.0, conv.dims(), &dev)?;
            for with_bias in [true, false] {
                let ours = Conv2d::new(
                    weight.clone(),
                    with_bias.then(|| bias.clone()),
                    padding,
                    stride,
                )?;
                let conv = if with_bias {
                    conv.clone()
                } else {
                    conv.broadcast_sub(&bias.reshape((1, c_out, 1, 1))?)?
                };
                for activation in activations {
                    for residual in [None, Some(&residual)] {
                        let sum = match residual {
                            Some(r) => (&conv + r)?,
                            None => conv.clone(),
                        };
                        let expected = match activation {
                            Activation::Identity => sum,
                            Activation::Relu => sum.relu()?,
                            Activation::LeakyRelu(slope) => {
                                sum.maximum(&(&sum * f64::from(slope))?)?
                            }
                        };
                        let fused = Fused {
                            upsample,
                            residual,
                            activation,
                        };
                        let got = ours.forward_fused(&x, fused)?;
                        assert_eq!(got.dims(), expected.dims());
                        let diff = max_diff(&got, &expected)?;
                        let case = (batch, c_in, h, w, k, padding, stride, upsample);
                        assert!(
                            diff < 1e-4,
                            "case {case:?} bias {with_bias} {fused:?}: max diff {diff}"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// With circular padding the input is upsampled before it is wrapped.
    #[test]
    fn circular_padding_wraps_the_upsampled_input() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 3, 4, 5), &dev)?;
        let weight = Tensor::randn(0f32, 1.0, (2, 3, 3, 3), &dev)?;
        let switch = PaddingSwitch::default();
        switch.set(PaddingMode::Circular);
        let ours = Conv2d::new(weight.clone(), None, 1, 1)?.with_padding(&switch);
        let expected =
            wrapped_by_hand(&x.upsample_nearest2d(8, 10)?, 1)?.conv2d(&weight, 0, 1, 1, 1)?;
        let got = ours.forward_fused(&x, Fused::upsampled(2))?;
        assert!(max_diff(&got, &expected)? < 1e-4);
        Ok(())
    }

    /// `x` wrapped around by `p` on both axes by gathering indices, apart
    /// from the code under test.
    fn wrapped_by_hand(x: &Tensor, p: usize) -> Result<Tensor> {
        let (_, _, h, w) = x.dims4()?;
        let indices = |n: usize| {
            let wrapped: Vec<u32> = (0..n + 2 * p).map(|i| ((i + n - p) % n) as u32).collect();
            Tensor::new(wrapped, x.device())
        };
        x.index_select(&indices(h)?, 2)?
            .index_select(&indices(w)?, 3)
    }

    /// Circular padding is candle's convolution of the input wrapped by
    /// hand, strided or not, with and without a residual; a switch shared
    /// at construction turns it on and off.
    #[test]
    fn circular_padding_matches_a_hand_wrapped_input() -> Result<()> {
        let cases = [
            // (batch, c_in, h, w, c_out, kernel, padding, stride)
            (1, 3, 9, 7, 5, 3, 1, 1),
            (2, 8, 16, 16, 4, 3, 1, 2),
            (1, 5, 8, 6, 6, 3, 1, 2),
            (1, 4, 6, 10, 3, 5, 2, 1),
            (1, 4, 5, 6, 7, 1, 0, 1),
        ];
        for (batch, c_in, h, w, c_out, k, padding, stride) in cases {
            let dev = Device::Cpu;
            let x = Tensor::randn(0f32, 1.0, (batch, c_in, h, w), &dev)?;
            let weight = Tensor::randn(0f32, 1.0, (c_out, c_in, k, k), &dev)?;
            let bias = Tensor::randn(0f32, 1.0, c_out, &dev)?;
            let switch = PaddingSwitch::default();
            let ours = Conv2d::new(weight.clone(), Some(bias.clone()), padding, stride)?
                .with_padding(&switch);
            let zeros = ours.forward(&x)?;
            assert_eq!(switch.set(PaddingMode::Circular), PaddingMode::Zeros);
            let expected = wrapped_by_hand(&x, padding)?
                .conv2d(&weight, 0, stride, 1, 1)?
                .broadcast_add(&bias.reshape((1, c_out, 1, 1))?)?;
            let got = ours.forward(&x)?;
            assert_eq!(got.dims(), zeros.dims());
            let diff = (&got - &expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
            let case = (batch, c_in, h, w, k, padding, stride);
            assert!(diff < 1e-4, "case {case:?}: max diff {diff}");
            let apart = (&got - &zeros)?.abs()?.max_all()?.to_scalar::<f32>()?;
            assert_eq!(
                apart > 0.1,
                padding > 0,
                "case {case:?}: {apart} from zeros"
            );

            let residual = Tensor::randn(0f32, 1.0, expected.dims(), &dev)?;
            let got = ours.forward_plus(&x, &residual)?;
            let diff = (got - (expected + &residual)?)?
                .abs()?
                .max_all()?
                .to_scalar::<f32>()?;
            assert!(diff < 1e-4, "residual case {case:?}: max diff {diff}");

            assert_eq!(switch.set(PaddingMode::Zeros), PaddingMode::Circular);
            assert_eq!(max_diff(&ours.forward(&x)?, &zeros)?, 0.0);
        }
        Ok(())
    }

    /// The asymmetric padding of the VAE's downsampling: one row and column
    /// at the bottom and right, taken from the top and left.
    #[test]
    fn pads_asymmetrically_with_either_mode() -> Result<()> {
        let x = Tensor::arange(0f32, 6.0, &Device::Cpu)?.reshape((1, 1, 2, 3))?;
        let rows = |t: Tensor| t.squeeze(0)?.squeeze(0)?.to_vec2::<f32>();
        assert_eq!(
            rows(pad(&x, PaddingMode::Circular, 0, 1)?)?,
            [
                [0.0, 1.0, 2.0, 0.0],
                [3.0, 4.0, 5.0, 3.0],
                [0.0, 1.0, 2.0, 0.0]
            ]
        );
        assert_eq!(
            rows(pad(&x, PaddingMode::Zeros, 0, 1)?)?,
            [
                [0.0, 1.0, 2.0, 0.0],
                [3.0, 4.0, 5.0, 0.0],
                [0.0, 0.0, 0.0, 0.0]
            ]
        );
        assert_eq!(
            rows(pad(&x, PaddingMode::Circular, 1, 0)?)?,
            [
                [5.0, 3.0, 4.0, 5.0],
                [2.0, 0.0, 1.0, 2.0],
                [5.0, 3.0, 4.0, 5.0]
            ]
        );
        assert!(pad(&x, PaddingMode::Circular, 3, 0).is_err());
        Ok(())
    }

    fn max_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        (a - b)?.abs()?.max_all()?.to_scalar::<f32>()
    }

    /// A strided (non-contiguous) input is read as what it stands for.
    #[test]
    fn accepts_a_transposed_input() -> Result<()> {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (1, 4, 6, 5), &dev)?.transpose(2, 3)?;
        let weight = Tensor::randn(0f32, 1.0, (3, 4, 3, 3), &dev)?;
        let expected = x.contiguous()?.conv2d(&weight, 1, 1, 1, 1)?;
        let got = Conv2d::new(weight, None, 1, 1)?.forward(&x)?;
        let diff = (got - expected)?.abs()?.max_all()?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "max diff {diff}");
        Ok(())
    }
}
