//! The CUDA side of softmax: `softmax.cu`, one block per row.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, WrapErr, kernel_name};
use candle_core::{CudaStorage, DType, Layout, Result, WithDType};

use crate::ops::cuda_util::{contiguous_view, launch_config};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/softmax.ptx"));
const MODULE: &str = "wordup_softmax";

pub fn softmax_rows(x: &CudaStorage, layout: &Layout) -> Result<CudaStorage> {
    match x.dtype() {
        DType::F32 => run::<f32>(x, layout),
        DType::F16 => run::<half::f16>(x, layout),
        DType::BF16 => run::<half::bf16>(x, layout),
        other => candle_core::bail!("softmax: no CUDA kernel for {other:?}"),
    }
}

/// Threads per row: enough to cover a row of `width` in a few passes.
fn threads_for(width: usize) -> u32 {
    match width {
        0..128 => 32,
        128..1024 => 128,
        _ => 256,
    }
}

// A kernel launch and an uninitialised device buffer are unsafe FFI.
#[allow(unsafe_code)]
fn run<T: CudaDType + DeviceRepr + WithDType>(
    storage: &CudaStorage,
    layout: &Layout,
) -> Result<CudaStorage> {
    let device = storage.device().clone();
    let width = layout.dims().last().copied().unwrap_or(1);
    let elements = layout.shape().elem_count();
    let rows = elements / width.max(1);
    let (Ok(width_u32), Ok(rows_u32)) = (u32::try_from(width), u32::try_from(rows)) else {
        candle_core::bail!("softmax: {:?} is too large for one launch", layout.dims());
    };
    let x = contiguous_view::<T>(storage, layout, "softmax's input")?;
    // SAFETY: the kernel writes every value of every row.
    let mut y = unsafe { device.alloc::<T>(elements)? };
    if rows > 0 && width > 0 {
        let func =
            device.get_or_load_custom_func(&kernel_name::<T>("softmax_rows"), MODULE, PTX)?;
        let mut launch = func.builder();
        launch.arg(&x).arg(&mut y).arg(&width_u32);
        let cfg = launch_config((rows_u32, 1), threads_for(width));
        // SAFETY: the arguments match the kernel's signature in softmax.cu.
        unsafe { launch.launch(cfg) }.w()?;
    }
    Ok(CudaStorage::wrap_cuda_slice(y, device))
}
