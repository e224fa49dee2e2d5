//! Our cuDNN calls, in which f16 and bf16 accumulate in f32 on the tensor
//! cores (cuDNN's PSEUDO_HALF_CONFIG, as PyTorch runs them) where candle's
//! accumulate f16 in f16:
//! - [`Call::Fused`]: the fused convolution + bias + residual
//!   (`cudnnConvolutionBiasActivationForward`, identity activation, which
//!   cuDNN runs with the implicit precomputed GEMM), one pass over the
//!   output where candle makes three;
//! - [`Call::Plain`]: `cudnnConvolutionForward` with a given algorithm, the
//!   bias and residual then added as tensor ops.
//!
//! The models run them NCHW, as every other op of ours.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use candle_core::conv::CudnnFwdAlgo;
use candle_core::cuda_backend::cudarc::cudnn::{
    ConvBiasActivationForward, ConvForward, Cudnn, CudnnDataType, sys,
};
use candle_core::cuda_backend::cudarc::driver::{CudaSlice, CudaView, DeviceRepr, ValidAsZeroBits};
use candle_core::cuda_backend::{CudaDType, DeviceId};
use candle_core::op::BackpropOp;
use candle_core::{CudaDevice, CudaStorage, DType, Layout, Result, Storage, Tensor, WithDType};

use super::{Call, ConvArgs, MemoryFormat};
use crate::ops::cuda_util::contiguous_view;

thread_local! {
    // cuDNN handles are neither Send nor Sync: one per thread and device,
    // on the device's stream (so our calls stay in order with candle's).
    static HANDLES: RefCell<HashMap<DeviceId, Arc<Cudnn>>> = RefCell::new(HashMap::new());
}

fn handle(device: &CudaDevice) -> Result<Arc<Cudnn>> {
    HANDLES.with(|handles| {
        if let Some(handle) = handles.borrow().get(&device.id()) {
            return Ok(handle.clone());
        }
        let handle = Cudnn::new(device.cuda_stream())?;
        handles.borrow_mut().insert(device.id(), handle.clone());
        Ok(handle)
    })
}

/// `conv(x) + bias + residual` by `call`, with `x`, the weight, the
/// residual and the output in `format`.
pub fn conv2d(x: &Tensor, args: ConvArgs, format: MemoryFormat, call: Call) -> Result<Tensor> {
    match x.dtype() {
        DType::F32 => conv2d_as::<f32>(x, args, format, call),
        DType::F16 => conv2d_as::<half::f16>(x, args, format, call),
        DType::BF16 => conv2d_as::<half::bf16>(x, args, format, call),
        other => candle_core::bail!("our cuDNN convolution does not take {other:?}"),
    }
}

fn algorithm(algo: CudnnFwdAlgo) -> sys::cudnnConvolutionFwdAlgo_t {
    use sys::cudnnConvolutionFwdAlgo_t as A;
    match algo {
        CudnnFwdAlgo::ImplicitGemm => A::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM,
        CudnnFwdAlgo::ImplicitPrecompGemm => A::CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        CudnnFwdAlgo::Gemm => A::CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
        CudnnFwdAlgo::Direct => A::CUDNN_CONVOLUTION_FWD_ALGO_DIRECT,
        CudnnFwdAlgo::Fft => A::CUDNN_CONVOLUTION_FWD_ALGO_FFT,
        CudnnFwdAlgo::FftTiling => A::CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING,
        CudnnFwdAlgo::Winograd => A::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD,
        CudnnFwdAlgo::WinogradNonFused => A::CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
        CudnnFwdAlgo::Count => A::CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
    }
}

/// The shapes of one call, as cuDNN takes them (logically NCHW whatever
/// the format), and the output tensor's shape.
pub(super) struct Dims {
    pub x: [i32; 4],
    pub w: [i32; 4],
    pub y: [i32; 4],
    pub out_shape: Vec<usize>,
}

pub(super) fn dims(x: &Tensor, args: &ConvArgs, format: MemoryFormat) -> Result<Dims> {
    let ((n, c, h, w), (k, c_w, r, s)) = match format {
        MemoryFormat::Nchw => (x.dims4()?, args.weight.dims4()?),
        MemoryFormat::Nhwc => {
            let (n, h, w, c) = x.dims4()?;
            let (k, r, s, c_w) = args.weight.dims4()?;
            ((n, c, h, w), (k, c_w, r, s))
        }
    };
    if c != c_w {
        candle_core::bail!("convolution: {c} input channels for a {c_w}-channel kernel");
    }
    let out = |side: usize, kernel: usize| match (side + 2 * args.padding).checked_sub(kernel) {
        Some(span) if args.stride > 0 => Ok(span / args.stride + 1),
        _ => Err(candle_core::Error::Msg(format!(
            "convolution: a {kernel}-wide kernel over {side} values padded by {}",
            args.padding
        ))),
    };
    let int = |v: usize| i32::try_from(v).map_err(candle_core::Error::wrap);
    let (oh, ow) = (out(h, r)?, out(w, s)?);
    Ok(Dims {
        x: [int(n)?, int(c)?, int(h)?, int(w)?],
        w: [int(k)?, int(c)?, int(r)?, int(s)?],
        y: [int(n)?, int(k)?, int(oh)?, int(ow)?],
        out_shape: match format {
            MemoryFormat::Nchw => vec![n, k, oh, ow],
            MemoryFormat::Nhwc => vec![n, oh, ow, k],
        },
    })
}

/// The contiguous values of a CUDA tensor's storage.
pub(super) fn view<'a, T: CudaDType>(
    storage: &'a Storage,
    layout: &Layout,
) -> Result<CudaView<'a, T>> {
    match storage {
        Storage::Cuda(storage) => {
            contiguous_view(storage, layout, "our cuDNN convolution's operands")
        }
        _ => candle_core::bail!("our cuDNN convolution runs on CUDA tensors only"),
    }
}

/// A CUDA tensor of `shape` over `slice`.
pub(super) fn tensor<T: CudaDType>(
    slice: CudaSlice<T>,
    device: CudaDevice,
    shape: Vec<usize>,
) -> Tensor {
    let storage = CudaStorage::wrap_cuda_slice(slice, device);
    Tensor::from_storage(Storage::Cuda(storage), shape, BackpropOp::none(), false)
}

/// A convolution's output buffer of `out_len` values and its workspace of
/// `workspace_len` bytes (at least one), both uninitialised.
///
/// # Safety
/// The call they are for must write all of the output before it is read.
#[allow(unsafe_code)]
pub(super) unsafe fn output_and_workspace<T: DeviceRepr>(
    device: &CudaDevice,
    out_len: usize,
    workspace_len: usize,
) -> Result<(CudaSlice<T>, CudaSlice<u8>)> {
    // SAFETY: per this function's contract.
    unsafe {
        Ok((
            device.alloc::<T>(out_len)?,
            device.alloc::<u8>(workspace_len.max(1))?,
        ))
    }
}

// The cuDNN calls and uninitialised device buffers are unsafe FFI.
#[allow(unsafe_code)]
fn conv2d_as<T>(x: &Tensor, args: ConvArgs, format: MemoryFormat, call: Call) -> Result<Tensor>
where
    T: CudaDType + CudnnDataType + DeviceRepr + ValidAsZeroBits + WithDType,
{
    let dims = dims(x, &args, format)?;
    let x = x.contiguous()?;
    let weight = args.weight.contiguous()?;
    let residual = args.residual.map(Tensor::contiguous).transpose()?;
    if let Some(residual) = &residual
        && residual.dims() != dims.out_shape.as_slice()
    {
        candle_core::bail!(
            "convolution: a residual of {:?} for {:?}",
            residual.dims(),
            dims.out_shape
        );
    }
    let device = match x.device() {
        candle_core::Device::Cuda(device) => device.clone(),
        _ => candle_core::bail!("our cuDNN convolution runs on CUDA tensors only"),
    };
    let out_len: usize = dims.y.iter().map(|&d| d as usize).product();
    let (one, zero) = (T::from_f64(1.0), T::from_f64(0.0));

    let cudnn = handle(&device)?;
    let layout = match format {
        MemoryFormat::Nchw => sys::cudnnTensorFormat_t::CUDNN_TENSOR_NCHW,
        MemoryFormat::Nhwc => sys::cudnnTensorFormat_t::CUDNN_TENSOR_NHWC,
    };
    let mut conv = cudnn.create_conv2d::<f32>(
        [args.padding as i32; 2],
        [args.stride as i32; 2],
        [1, 1],
        sys::cudnnConvolutionMode_t::CUDNN_CROSS_CORRELATION,
    )?;
    if x.dtype() != DType::F32 {
        conv.set_math_type(sys::cudnnMathType_t::CUDNN_TENSOR_OP_MATH)?;
    }
    let x_desc = cudnn.create_4d_tensor::<T>(layout, dims.x)?;
    let w_desc = cudnn.create_4d_filter::<T>(layout, dims.w)?;
    let y_desc = cudnn.create_4d_tensor::<T>(layout, dims.y)?;
    // Read locks held through the call: sound while no operand shares its
    // storage with another that a writer waits on (inference writes none).
    let (x_storage, x_layout) = x.storage_and_layout();
    let (w_storage, w_layout) = weight.storage_and_layout();
    let (x_view, w_view) = (
        view::<T>(&x_storage, x_layout)?,
        view::<T>(&w_storage, w_layout)?,
    );

    let algo = match call {
        Call::Plain(algo) => algo,
        Call::Fused => CudnnFwdAlgo::ImplicitPrecompGemm,
        Call::Graph(_) => candle_core::bail!("a graph-API engine is not a legacy cuDNN call"),
    };
    let Call::Fused = call else {
        let op = ConvForward {
            conv: &conv,
            x: &x_desc,
            w: &w_desc,
            y: &y_desc,
        };
        let workspace_len = op.get_workspace_size(algorithm(algo))?;
        // SAFETY: cuDNN writes all of y and uses the workspace as scratch.
        let (mut y, mut workspace) =
            unsafe { output_and_workspace::<T>(&device, out_len, workspace_len)? };
        // SAFETY: each buffer matches its descriptor's dtype, shape and
        // contiguous layout, checked or built above.
        unsafe {
            op.launch(
                algorithm(algo),
                Some(&mut workspace),
                (one, zero),
                &x_view,
                &w_view,
                &mut y,
            )?;
        }
        let out = tensor(y, device, dims.out_shape.clone());
        return super::plus_bias_and_residual(out, args, format);
    };

    // Absent operands are zeros; with alpha2 = 0 cuDNN scales z away, and
    // zeros keep a NaN of a fresh buffer from surviving 0·z. (The safe call
    // cannot pass y as z; the fill is one write, where candle's bias alone
    // is a read and a write of the output.)
    let channels = dims.y[1] as usize;
    let zeros_bias = match args.bias {
        Some(_) => None,
        None => Some(Tensor::zeros(channels, x.dtype(), x.device())?),
    };
    let bias = args
        .bias
        .or(zeros_bias.as_ref())
        .expect("a bias or zeros")
        .contiguous()?;
    let zeros_z = match &residual {
        Some(_) => None,
        None => Some(Tensor::zeros(
            dims.out_shape.clone(),
            x.dtype(),
            x.device(),
        )?),
    };
    let z = residual
        .as_ref()
        .or(zeros_z.as_ref())
        .expect("a residual or zeros");
    let act = cudnn.create_activation::<f32>(
        sys::cudnnActivationMode_t::CUDNN_ACTIVATION_IDENTITY,
        sys::cudnnNanPropagation_t::CUDNN_NOT_PROPAGATE_NAN,
        0.0,
    )?;
    let z_desc = cudnn.create_4d_tensor::<T>(layout, dims.y)?;
    // A [1, k, 1, 1] bias is the same bytes in either format.
    let bias_desc = cudnn.create_4d_tensor::<T>(layout, [1, dims.y[1], 1, 1])?;
    let op = ConvBiasActivationForward {
        conv: &conv,
        act: &act,
        x: &x_desc,
        w: &w_desc,
        z: &z_desc,
        bias: &bias_desc,
        y: &y_desc,
    };
    let workspace_len = op.get_workspace_size(algorithm(algo))?;
    let (z_storage, z_layout) = z.storage_and_layout();
    let (bias_storage, bias_layout) = bias.storage_and_layout();
    let (z_view, bias_view) = (
        view::<T>(&z_storage, z_layout)?,
        view::<T>(&bias_storage, bias_layout)?,
    );
    // SAFETY: cuDNN writes all of y and uses the workspace as scratch.
    let (mut y, mut workspace) =
        unsafe { output_and_workspace::<T>(&device, out_len, workspace_len)? };
    let alpha2 = if residual.is_some() { one } else { zero };
    // SAFETY: each buffer matches its descriptor's dtype, shape and
    // contiguous layout, checked or built above.
    unsafe {
        op.launch(
            algorithm(algo),
            Some(&mut workspace),
            (one, alpha2),
            &x_view,
            &w_view,
            &z_view,
            &bias_view,
            &mut y,
        )?;
    }
    Ok(tensor(y, device, dims.out_shape))
}
