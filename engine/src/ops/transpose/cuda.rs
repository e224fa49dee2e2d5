//! The CUDA side of the batched transpose: `transpose.cu`, a block per
//! 32×32 tile of each matrix.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, LaunchConfig, PushKernelArg};
use candle_core::cuda_backend::{CudaDType, WrapErr, kernel_name};
use candle_core::{CudaStorage, DType, Layout, Result, WithDType};

use super::Matrices;
use crate::ops::cuda_util::contiguous_view;

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/transpose.ptx"));
const MODULE: &str = "wordup_transpose";

pub fn transpose(x: &CudaStorage, layout: &Layout, shape: Matrices) -> Result<CudaStorage> {
    match x.dtype() {
        DType::F32 => run::<f32>(x, layout, shape),
        DType::F16 => run::<half::f16>(x, layout, shape),
        DType::BF16 => run::<half::bf16>(x, layout, shape),
        other => candle_core::bail!("transpose: no CUDA kernel for {other:?}"),
    }
}

// A kernel launch and an uninitialised device buffer are unsafe FFI.
#[allow(unsafe_code)]
fn run<T: CudaDType + DeviceRepr + WithDType>(
    storage: &CudaStorage,
    layout: &Layout,
    shape: Matrices,
) -> Result<CudaStorage> {
    let device = storage.device().clone();
    let elements = shape.batch * shape.rows * shape.cols;
    if elements != layout.shape().elem_count() {
        candle_core::bail!("transpose: {shape:?} for {:?}", layout.dims());
    }
    let (Ok(rows), Ok(cols)) = (u32::try_from(shape.rows), u32::try_from(shape.cols)) else {
        candle_core::bail!("transpose: {shape:?} is too large for one launch");
    };
    let x = contiguous_view::<T>(storage, layout, "transpose's input")?;
    // SAFETY: the kernel writes every value of every matrix.
    let mut y = unsafe { device.alloc::<T>(elements)? };
    if elements > 0 {
        let (grid_dim, threads) = super::launch_dims(shape)?;
        let cfg = LaunchConfig {
            grid_dim,
            block_dim: (threads, 1, 1),
            shared_mem_bytes: 0,
        };
        let func =
            device.get_or_load_custom_func(&kernel_name::<T>("transpose_batched"), MODULE, PTX)?;
        let mut launch = func.builder();
        launch.arg(&x).arg(&mut y).arg(&rows).arg(&cols);
        // SAFETY: the arguments match the kernel's signature in transpose.cu.
        unsafe { launch.launch(cfg) }.w()?;
    }
    Ok(CudaStorage::wrap_cuda_slice(y, device))
}
