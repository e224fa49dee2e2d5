//! The CUDA side of the fused GroupNorm: `group_norm.cu`, compiled to PTX
//! by the build script and loaded once per device.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::cudarc::driver::{DeviceRepr, PushKernelArg, ValidAsZeroBits};
use candle_core::cuda_backend::{CudaDType, WrapErr, kernel_name};
use candle_core::{CudaStorage, DType, Layout, Result, WithDType};

use crate::ops::cuda_util::{contiguous_view, launch_config};

use super::{Extent, Grids, MAX_GRID_Y, THREADS, grids};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/group_norm.ptx"));
const MODULE: &str = "wordup_group_norm";

/// The three operands, each with its layout.
pub struct Operands<'a> {
    pub x: (&'a CudaStorage, &'a Layout),
    pub weight: (&'a CudaStorage, &'a Layout),
    pub bias: (&'a CudaStorage, &'a Layout),
}

pub fn group_norm(ops: Operands, extent: Extent, eps: f32, silu: bool) -> Result<CudaStorage> {
    match ops.x.0.dtype() {
        DType::F32 => run::<f32>(ops, extent, eps, silu),
        DType::F16 => run::<half::f16>(ops, extent, eps, silu),
        DType::BF16 => run::<half::bf16>(ops, extent, eps, silu),
        other => candle_core::bail!("group norm: no CUDA kernel for {other:?}"),
    }
}

// Kernel launches and uninitialised device buffers are unsafe FFI.
#[allow(unsafe_code)]
fn run<T: CudaDType + DeviceRepr + ValidAsZeroBits + WithDType>(
    ops: Operands,
    extent: Extent,
    eps: f32,
    silu: bool,
) -> Result<CudaStorage> {
    let device = ops.x.0.device.clone();
    let groups = extent.batch * extent.groups;
    let planes = extent.batch * extent.channels;
    if groups > MAX_GRID_Y || planes > MAX_GRID_Y {
        candle_core::bail!("group norm: {extent:?} has more planes than a CUDA grid holds");
    }
    let (x, weight, bias) = (
        contiguous_view::<T>(ops.x.0, ops.x.1, "group norm's input")?,
        contiguous_view::<T>(ops.weight.0, ops.weight.1, "group norm's weight")?,
        contiguous_view::<T>(ops.bias.0, ops.bias.1, "group norm's bias")?,
    );
    let Grids {
        splits,
        plane_blocks,
    } = grids(extent);
    let elements = extent.batch * extent.channels * extent.plane;
    if elements == 0 {
        // Nothing to normalise (and no first value to shift by).
        return Ok(CudaStorage::wrap_cuda_slice(
            device.alloc_zeros::<T>(0)?,
            device,
        ));
    }
    // SAFETY: each buffer is written in full by the launch before the one
    // that reads it (partials by the first, stats by the second, y by the last).
    let (mut partials, mut stats, mut y) = unsafe {
        (
            device.alloc::<f32>(2 * groups * splits)?,
            device.alloc::<f32>(2 * groups)?,
            device.alloc::<T>(elements)?,
        )
    };
    let (span, plane) = (extent.span() as u64, extent.plane as u64);
    let (groups_u32, splits_u32) = (groups as u32, splits as u32);
    let (channels, groups_per_image) = (extent.channels as u32, extent.groups as u32);
    let silu = i32::from(silu);

    let func =
        device.get_or_load_custom_func(&kernel_name::<T>("group_norm_partials"), MODULE, PTX)?;
    let mut launch = func.builder();
    launch.arg(&x).arg(&mut partials).arg(&span);
    let cfg = launch_config((splits_u32, groups_u32), THREADS);
    // SAFETY: the arguments match the kernel's signature in group_norm.cu.
    unsafe { launch.launch(cfg) }.w()?;

    let func =
        device.get_or_load_custom_func(&kernel_name::<T>("group_norm_stats"), MODULE, PTX)?;
    let mut launch = func.builder();
    launch
        .arg(&x)
        .arg(&partials)
        .arg(&mut stats)
        .arg(&groups_u32)
        .arg(&splits_u32)
        .arg(&span)
        .arg(&eps);
    let cfg = launch_config((groups_u32.div_ceil(THREADS), 1), THREADS);
    // SAFETY: as above.
    unsafe { launch.launch(cfg) }.w()?;

    let func =
        device.get_or_load_custom_func(&kernel_name::<T>("group_norm_apply"), MODULE, PTX)?;
    let mut launch = func.builder();
    launch
        .arg(&x)
        .arg(&mut y)
        .arg(&weight)
        .arg(&bias)
        .arg(&stats)
        .arg(&channels)
        .arg(&groups_per_image)
        .arg(&plane)
        .arg(&silu);
    let cfg = launch_config((plane_blocks as u32, planes as u32), THREADS);
    // SAFETY: as above.
    unsafe { launch.launch(cfg) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(y, device))
}
