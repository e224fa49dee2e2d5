//! The CUDA side of flash attention: `flash_attention.cu`, compiled to PTX
//! by the build script and loaded once per device.

use candle_core::backend::BackendStorage;
use candle_core::cuda_backend::WrapErr;
use candle_core::cuda_backend::cudarc::driver::PushKernelArg;
use candle_core::{CudaStorage, DType, Layout, Result};
use half::f16;

use crate::ops::cuda_util::{contiguous_view, launch_config};

use super::{FLASH_BLOCK, FLASH_DEPTH};

const PTX: &str = include_str!(concat!(env!("OUT_DIR"), "/flash_attention.ptx"));
const MODULE: &str = "wordup_flash_attention";
/// Four warps of 16 queries each: one block of FLASH_BLOCK queries.
const THREADS: u32 = 128;
/// The WMMA loads want 32-byte aligned rows: an operand must start at a
/// multiple of this many values into its buffer.
const ALIGNMENT: usize = 16;

/// softmax(q·kᵀ·scale)·v for `[q, k, v]` (each with its layout): q
/// `[heads, queries, 64]`, k and v `[heads, keys, 64]`, f16, contiguous.
pub fn flash_attention(operands: [(&CudaStorage, &Layout); 3], scale: f32) -> Result<CudaStorage> {
    let [(q, q_layout), (k, k_layout), (v, v_layout)] = operands;
    let (heads, queries, depth) = q_layout.shape().dims3()?;
    let (k_heads, keys, k_depth) = k_layout.shape().dims3()?;
    if q.dtype() != DType::F16 || k.dtype() != DType::F16 || v.dtype() != DType::F16 {
        candle_core::bail!("flash attention: f16 only");
    }
    if v_layout.shape().dims3()? != (heads, keys, FLASH_DEPTH)
        || (k_heads, k_depth, depth) != (heads, FLASH_DEPTH, FLASH_DEPTH)
        || !queries.is_multiple_of(FLASH_BLOCK)
        || !keys.is_multiple_of(FLASH_BLOCK)
        || heads * queries * keys == 0
    {
        candle_core::bail!(
            "flash attention: q {:?}, k {:?}, v {:?} do not fit the kernel",
            q_layout.dims(),
            k_layout.dims(),
            v_layout.dims()
        );
    }
    let (Ok(blocks), Ok(heads_u32), Ok(queries_u32), Ok(keys_u32)) = (
        u32::try_from(queries / FLASH_BLOCK),
        u32::try_from(heads),
        u32::try_from(queries),
        u32::try_from(keys),
    ) else {
        candle_core::bail!("flash attention: too large for one launch");
    };
    if heads_u32 > 65_535 {
        candle_core::bail!("flash attention: {heads} heads are more than a CUDA grid holds");
    }
    if [q_layout, k_layout, v_layout]
        .iter()
        .any(|layout| !layout.start_offset().is_multiple_of(ALIGNMENT))
    {
        candle_core::bail!("flash attention: an operand is not aligned for the kernel");
    }
    let device = q.device().clone();
    let (q, k, v) = (
        contiguous_view::<f16>(q, q_layout, "flash attention's q")?,
        contiguous_view::<f16>(k, k_layout, "flash attention's k")?,
        contiguous_view::<f16>(v, v_layout, "flash attention's v")?,
    );
    // SAFETY: every block writes each of its queries' rows in full.
    #[allow(unsafe_code)]
    let mut out = unsafe { device.alloc::<f16>(heads * queries * FLASH_DEPTH)? };
    // The kernel exponentiates with exp2.
    let scale_log2 = scale * std::f32::consts::LOG2_E;
    let func = device.get_or_load_custom_func("flash_attention_f16", MODULE, PTX)?;
    let mut launch = func.builder();
    launch
        .arg(&q)
        .arg(&k)
        .arg(&v)
        .arg(&mut out)
        .arg(&queries_u32)
        .arg(&keys_u32)
        .arg(&scale_log2);
    let cfg = launch_config((blocks, heads_u32), THREADS);
    // SAFETY: the arguments match the kernel's signature in
    // flash_attention.cu, and the shapes were checked above.
    #[allow(unsafe_code)]
    unsafe { launch.launch(cfg) }.w()?;
    Ok(CudaStorage::wrap_cuda_slice(out, device))
}
